//! The agent's face in a terminal: the answer streams to stdout; tool calls, results, notices,
//! servers' logs and progress go to stderr; questions (approvals, forms, sampling consent) are
//! asked on stderr and answered on stdin, one at a time. Without a terminal on stderr, progress is
//! plain lines instead of bars, so logs and tests can read it.

// Logging notifications are deprecated by the 2026-07-28 revision (SEP-2577); handshake-era
// servers still send them.
#![allow(deprecated)]

use std::{
    collections::HashMap,
    io::{IsTerminal as _, Write as _},
    sync::Mutex,
};

use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rmcp::model::{
    ElicitRequestParams, ElicitResult, ElicitationAction, LoggingMessageNotificationParam,
    ProgressNotificationParam,
};
use serde_json::{Map, Value};

use crate::agent::{Decision, Ui};

/// Longest argument or result line shown for a tool call.
const SHOWN: usize = 240;

/// The terminal [`Ui`].
pub struct TerminalUi {
    /// Stream the model's text to stdout (chat); `run` prints only the final answer.
    stream_text: bool,
    /// One question at a time.
    asking: tokio::sync::Mutex<()>,
    bars: Mutex<HashMap<String, ProgressBar>>,
    fancy: bool,
}

impl TerminalUi {
    /// A terminal front end; `stream_text` prints the model's text as it arrives.
    pub fn new(stream_text: bool) -> Self {
        Self {
            stream_text,
            asking: tokio::sync::Mutex::new(()),
            bars: Mutex::new(HashMap::new()),
            fancy: std::io::stderr().is_terminal(),
        }
    }

    /// Asks on stderr, reads one line from stdin; `None` at end of input.
    async fn ask(&self, prompt: String) -> Option<String> {
        let _one = self.asking.lock().await;
        eprint!("{}", mcp_core::text::visible(&prompt));
        let _ = std::io::stderr().flush();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line.trim().to_owned()),
            }
        })
        .await
        .ok()
        .flatten()
    }

    async fn fill_form(&self, server: &str, message: &str, schema: &Value) -> ElicitResult {
        say!("{server} asks: {message}");
        let choice = self
            .ask("  [a]nswer, [d]ecline or [c]ancel? ".to_owned())
            .await;
        match choice.as_deref().map(str::to_lowercase).as_deref() {
            Some("a" | "answer" | "") => {}
            Some("d" | "decline") => return ElicitResult::new(ElicitationAction::Decline),
            _ => return ElicitResult::new(ElicitationAction::Cancel),
        }
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut content = Map::new();
        let empty = Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        for (name, property) in properties {
            let is_required = required.contains(&name.as_str());
            let mut tries = 0;
            loop {
                let Some(line) = self.ask(field_prompt(name, property, is_required)).await else {
                    return ElicitResult::new(ElicitationAction::Cancel);
                };
                if line.is_empty() {
                    if let Some(default) = property.get("default") {
                        content.insert(name.clone(), default.clone());
                        break;
                    }
                    if !is_required {
                        break;
                    }
                }
                match parse_field(&line, property) {
                    Ok(value) => {
                        content.insert(name.clone(), value);
                        break;
                    }
                    Err(why) => {
                        tries += 1;
                        if tries == 3 {
                            say!("  {why}; declining the form");
                            return ElicitResult::new(ElicitationAction::Decline);
                        }
                        say!("  {why}");
                    }
                }
            }
        }
        ElicitResult::new(ElicitationAction::Accept).with_content(Value::Object(content))
    }
}

fn field_prompt(name: &str, property: &Value, required: bool) -> String {
    let mut prompt = format!("  {name}");
    if let Some(description) = property["description"]
        .as_str()
        .or(property["title"].as_str())
    {
        prompt.push_str(&format!(" ({description})"));
    }
    let mut hints = Vec::new();
    if let Some(options) = options(property) {
        hints.push(options.join("|"));
    } else if let Some(kind) = property["type"].as_str() {
        hints.push(kind.to_owned());
    }
    if let Some(default) = property.get("default") {
        hints.push(format!("default {default}"));
    } else if !required {
        hints.push("optional".to_owned());
    }
    format!("{prompt} [{}]: ", hints.join(", "))
}

/// The values an enum field accepts (`enum`, `oneOf`/`anyOf` of `const`, or an array's items).
fn options(property: &Value) -> Option<Vec<String>> {
    let property = if property["type"] == "array" {
        &property["items"]
    } else {
        property
    };
    if let Some(values) = property["enum"].as_array() {
        return Some(
            values
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        );
    }
    let list = property["oneOf"]
        .as_array()
        .or(property["anyOf"].as_array())?;
    Some(
        list.iter()
            .filter_map(|option| option["const"].as_str())
            .map(str::to_owned)
            .collect(),
    )
}

/// A typed value from what the user typed.
fn parse_field(line: &str, property: &Value) -> Result<Value, String> {
    let allowed = options(property);
    let check = |value: &str| match &allowed {
        Some(allowed) if !allowed.iter().any(|a| a == value) => {
            Err(format!("{value:?} is not one of {}", allowed.join(", ")))
        }
        _ => Ok(Value::String(value.to_owned())),
    };
    match property["type"].as_str() {
        Some("integer") => line
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{line:?} is not a whole number")),
        Some("number") => line
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{line:?} is not a number")),
        Some("boolean") => match line.to_lowercase().as_str() {
            "y" | "yes" | "true" => Ok(Value::Bool(true)),
            "n" | "no" | "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{line:?} is not yes or no")),
        },
        Some("array") => line
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(check)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        _ => check(line),
    }
}

fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    let mut shown: String = line.chars().take(SHOWN).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

impl Ui for TerminalUi {
    fn text(&self, delta: &str) {
        if self.stream_text {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(mcp_core::text::visible(delta).as_bytes());
            let _ = out.flush();
        }
    }

    fn tool_call(&self, server: &str, tool: &str, arguments: &Value) {
        say!("→ {server}.{tool} {}", shorten(&arguments.to_string()));
    }

    fn tool_result(&self, server: &str, tool: &str, is_error: bool, text: &str) {
        // A call that ended takes its progress bars with it, finished or not.
        if let Ok(mut bars) = self.bars.lock() {
            let prefix = format!("{server}/");
            bars.retain(|key, bar| {
                let keep = !key.starts_with(&prefix);
                if !keep {
                    bar.finish_and_clear();
                }
                keep
            });
        }
        let marker = if is_error { "error: " } else { "" };
        say!("← {server}.{tool}: {marker}{}", shorten(text));
    }

    fn notice(&self, message: &str) {
        say!("note: {message}");
    }

    fn approve<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        _arguments: &'a Value,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let answer = self
                .ask(format!(
                    "  allow {server}.{tool}? [y]es, [n]o, [a]lways for this tool: "
                ))
                .await;
            match answer.as_deref().map(str::to_lowercase).as_deref() {
                Some("y" | "yes") => Decision::Yes,
                Some("a" | "always") => Decision::Always,
                _ => Decision::No,
            }
        })
    }

    fn elicit<'a>(
        &'a self,
        server: &'a str,
        request: ElicitRequestParams,
    ) -> BoxFuture<'a, ElicitResult> {
        Box::pin(async move {
            match request {
                ElicitRequestParams::FormElicitationParams {
                    message,
                    requested_schema,
                    ..
                } => {
                    let schema = serde_json::to_value(&requested_schema).unwrap_or_default();
                    self.fill_form(server, &message, &schema).await
                }
                ElicitRequestParams::UrlElicitationParams { message, url, .. } => {
                    say!("{server} asks you to open {url}\n  {message}");
                    match self.ask("  done there? [y/N] ".to_owned()).await.as_deref() {
                        Some("y" | "Y" | "yes") => ElicitResult::new(ElicitationAction::Accept),
                        _ => ElicitResult::new(ElicitationAction::Decline),
                    }
                }
                _ => {
                    say!("{server} asked for input of a kind this client does not know");
                    ElicitResult::new(ElicitationAction::Decline)
                }
            }
        })
    }

    fn consent_to_sampling<'a>(&'a self, server: &'a str, preview: &'a str) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            say!("{server} asks to use the model with:");
            for line in preview.lines() {
                say!("  | {line}");
            }
            matches!(
                self.ask("  send it? [y/N] ".to_owned()).await.as_deref(),
                Some("y" | "Y" | "yes")
            )
        })
    }

    fn progress(&self, server: &str, progress: &ProgressNotificationParam) {
        let message = progress.message.as_deref().unwrap_or("");
        if !self.fancy {
            match progress.total {
                Some(total) => {
                    say!("{server}: progress {}/{total} {message}", progress.progress)
                }
                None => say!("{server}: progress {} {message}", progress.progress),
            }
            return;
        }
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        let key = format!("{server}/{}", progress.progress_token.0);
        let bar = bars.entry(key.clone()).or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{prefix} {wide_bar} {pos}/{len} {msg}")
            {
                bar.set_style(style);
            }
            bar.set_prefix(mcp_core::text::visible_line(server).into_owned());
            bar
        });
        if let Some(total) = progress.total {
            bar.set_length(total as u64);
        }
        bar.set_position(progress.progress as u64);
        bar.set_message(mcp_core::text::visible_line(message).into_owned());
        if progress
            .total
            .is_some_and(|total| progress.progress >= total)
        {
            bar.finish_and_clear();
            bars.remove(&key);
        }
    }

    fn log(&self, server: &str, message: &LoggingMessageNotificationParam) {
        let level = serde_json::to_value(message.level).unwrap_or_default();
        let text = match &message.data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        say!("{server} [{}] {text}", level.as_str().unwrap_or("log"));
    }
}

/// Writes `text` and a newline to stderr, with what a terminal would act on shown as escapes
/// (the [`crate::say!`] macro's body).
pub fn say_line(text: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{}", mcp_core::text::visible(text));
}

/// The [`Ui`] of `mcp run --output stream-json`: every event as one JSON object on a line of
/// stdout (the schema is `mcp-client/schema/stream-json.schema.json`), for scripts; questions
/// (approvals, forms, sampling consent) are asked as by [`TerminalUi`], on stderr.
pub struct StreamJsonUi {
    asking: TerminalUi,
    out: Mutex<()>,
}

impl StreamJsonUi {
    /// The stream-json front end.
    pub fn new() -> Self {
        Self {
            asking: TerminalUi::new(false),
            out: Mutex::new(()),
        }
    }

    /// Writes one event (JSON escapes what a server or model sent: the line stays one line).
    pub fn emit(&self, event: Value) {
        let _one = self.out.lock();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{event}");
        let _ = out.flush();
    }
}

impl Default for StreamJsonUi {
    fn default() -> Self {
        Self::new()
    }
}

impl Ui for StreamJsonUi {
    fn text(&self, delta: &str) {
        self.emit(serde_json::json!({ "type": "text", "delta": delta }));
    }

    fn tool_call(&self, server: &str, tool: &str, arguments: &Value) {
        self.emit(serde_json::json!({
            "type": "tool_call", "server": server, "tool": tool, "arguments": arguments
        }));
    }

    fn tool_result(&self, server: &str, tool: &str, is_error: bool, text: &str) {
        self.emit(serde_json::json!({
            "type": "tool_result", "server": server, "tool": tool, "is_error": is_error, "text": text
        }));
    }

    fn notice(&self, message: &str) {
        self.emit(serde_json::json!({ "type": "notice", "message": message }));
    }

    fn approve<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        arguments: &'a Value,
    ) -> BoxFuture<'a, Decision> {
        self.asking.approve(server, tool, arguments)
    }

    fn elicit<'a>(
        &'a self,
        server: &'a str,
        request: ElicitRequestParams,
    ) -> BoxFuture<'a, ElicitResult> {
        self.asking.elicit(server, request)
    }

    fn consent_to_sampling<'a>(&'a self, server: &'a str, preview: &'a str) -> BoxFuture<'a, bool> {
        self.asking.consent_to_sampling(server, preview)
    }

    fn progress(&self, server: &str, progress: &ProgressNotificationParam) {
        self.emit(serde_json::json!({
            "type": "progress", "server": server, "progress": progress.progress,
            "total": progress.total, "message": progress.message
        }));
    }

    fn log(&self, server: &str, message: &rmcp::model::LoggingMessageNotificationParam) {
        let text = match &message.data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        self.emit(serde_json::json!({ "type": "log", "server": server, "message": text }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_typed_and_enums_checked() {
        assert_eq!(
            parse_field("42", &json!({"type": "integer"})),
            Ok(json!(42))
        );
        assert!(parse_field("4.5", &json!({"type": "integer"})).is_err());
        assert_eq!(
            parse_field("yes", &json!({"type": "boolean"})),
            Ok(json!(true))
        );
        let status = json!({"type": "string", "enum": ["active", "inactive"]});
        assert_eq!(parse_field("active", &status), Ok(json!("active")));
        assert!(parse_field("gone", &status).is_err());
        let multi = json!({"type": "array", "items": {"anyOf": [{"const": "a"}, {"const": "b"}]}});
        assert_eq!(parse_field("a, b", &multi), Ok(json!(["a", "b"])));
    }
}
