//! Helpers for tool bodies: errors a model can act on, and output that cannot flood its context.
//!
//! A parameter an HTTP proxy or gateway should see without reading the body (a tenant, a region)
//! is marked in the tool's input schema with `x-mcp-header` (SEP-2243): clients then send it as an
//! `Mcp-Param-<Name>` header as well, and the Streamable HTTP server refuses (-32020) a call whose
//! header is missing, broken or different from the body. With schemars:
//!
//! ```
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct QueryArgs {
//!     /// The region to query; sent as `Mcp-Param-Region` too.
//!     #[schemars(extend("x-mcp-header" = "Region"))]
//!     region: String,
//! }
//! let schema = schemars::schema_for!(QueryArgs);
//! assert_eq!(schema.as_value()["properties"]["region"]["x-mcp-header"], "Region");
//! ```

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, IntoContents, Tool};

/// A tool failure, reported to the model as an `isError: true` result rather than a JSON-RPC
/// error, so that it can read the message and try again differently.
///
/// Return it from a `#[tool]` method as the error of a `Result`:
///
/// ```
/// use mcp_core::ToolError;
///
/// fn divide(a: f64, b: f64) -> Result<String, ToolError> {
///     if b == 0.0 {
///         return Err(ToolError::new("cannot divide by zero").with_hint("pass a non-zero `b`"));
///     }
///     Ok((a / b).to_string())
/// }
/// assert_eq!(divide(1.0, 0.0).unwrap_err().to_string(), "cannot divide by zero. Hint: pass a non-zero `b`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", .hint.as_ref().map(|h| format!(". Hint: {h}")).unwrap_or_default())]
pub struct ToolError {
    message: String,
    hint: Option<String>,
}

impl ToolError {
    /// What went wrong, with the value it concerns (`no such file: /a/b`).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    /// What the model should do instead (`call list_directory to see the names`).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What to do instead, if the error says.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

/// An error a tool body passes on with `?`: its message is what the model reads, and it may say
/// what to do instead. A server implements it beside its own error type, once, instead of
/// mapping errors in every tool.
///
/// ```
/// use mcp_core::{ToolError, tool::Hinted};
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("no job {0}")]
/// struct NoJob(String);
///
/// impl Hinted for NoJob {
///     fn hint(&self) -> Option<String> {
///         Some("list_jobs shows the ids".into())
///     }
/// }
///
/// fn get(id: &str) -> Result<String, ToolError> {
///     Err(NoJob(id.to_owned()))?
/// }
/// assert_eq!(get("j1").unwrap_err().to_string(), "no job j1. Hint: list_jobs shows the ids");
/// ```
pub trait Hinted: std::fmt::Display {
    /// What the model should do instead, when this error knows.
    fn hint(&self) -> Option<String> {
        None
    }
}

impl<E: Hinted> From<E> for ToolError {
    fn from(error: E) -> Self {
        let hint = error.hint();
        let error = ToolError::new(error.to_string());
        match hint {
            Some(hint) => error.with_hint(hint),
            None => error,
        }
    }
}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.to_string())]
    }
}

/// One page of a capped output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The page, followed by a truncation notice when more remains.
    pub text: String,
    /// Whether the output went on past this page.
    pub truncated: bool,
    /// Pass this back as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

/// Caps tool output at a byte budget, with an explicit notice and a cursor to continue.
///
/// The cursor is the byte offset where the next page starts, so it only makes sense for output
/// that is the same when produced again (a file, a sorted listing).
///
/// ```
/// use mcp_core::OutputCap;
///
/// let listing = "line one\nline two\nline three\n";
/// let cap = OutputCap::new(20);
/// let first = cap.page(listing, None).unwrap();
/// assert!(first.truncated);
/// assert!(first.text.starts_with("line one\nline two\n[truncated: showing bytes 0.."));
/// let next = cap.page(listing, first.next_cursor.as_deref()).unwrap();
/// assert_eq!(next.text, "line three\n");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    max_bytes: usize,
}

impl OutputCap {
    /// A cap of `max_bytes` per page (at least 1).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes: max_bytes.max(1),
        }
    }

    /// The byte budget of one page.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The first budget's worth of `text`, with a notice that says what to do instead when more
    /// was cut: for output that cannot be paged (a search that would run again differently).
    pub fn truncate(&self, text: &str, advice: &str) -> (String, bool) {
        if text.len() <= self.max_bytes {
            return (text.to_owned(), false);
        }
        let end = self.cut(text);
        let mut head = text[..end].to_owned();
        if !head.ends_with('\n') {
            head.push('\n');
        }
        head.push_str(&truncation_notice(
            format_args!("{end} of {} bytes", text.len()),
            None,
            Some(advice),
        ));
        (head, true)
    }

    /// Where a page of `text` (longer than the budget) ends: after a whole line when one ends in
    /// the last quarter of the budget, never inside a character, and never at 0.
    fn cut(&self, text: &str) -> usize {
        let mut end = floor_char_boundary(text, self.max_bytes);
        if let Some(newline) = text[..end].rfind('\n')
            && newline + 1 >= end - end / 4
        {
            end = newline + 1;
        }
        if end == 0 {
            // A single character wider than the budget: still make progress.
            end = text.chars().next().map_or(text.len(), char::len_utf8);
        }
        end
    }

    /// The page of `text` that starts at `cursor` (the start when `None`).
    pub fn page(&self, text: &str, cursor: Option<&str>) -> Result<Page, ToolError> {
        let start = match cursor {
            None => 0,
            Some(cursor) => parse_cursor(cursor, text)?,
        };
        let rest = &text[start..];
        if rest.len() <= self.max_bytes {
            return Ok(Page {
                text: rest.to_owned(),
                truncated: false,
                next_cursor: None,
            });
        }
        let end = self.cut(rest);
        let next = start + end;
        let mut page = rest[..end].to_owned();
        if !page.ends_with('\n') {
            page.push('\n');
        }
        page.push_str(&truncation_notice(
            format_args!("bytes {start}..{next} of {}", text.len()),
            Some(&next.to_string()),
            None,
        ));
        Ok(Page {
            text: page,
            truncated: true,
            next_cursor: Some(next.to_string()),
        })
    }
}

/// The one notice that ends an output cut short, whatever the tool: what it shows, then how to
/// get the rest: the cursor to call again with, other advice, or both.
///
/// ```
/// use mcp_core::tool::truncation_notice;
///
/// assert_eq!(
///     truncation_notice("entries 0..2 of 5", Some("2"), None),
///     "[truncated: showing entries 0..2 of 5; call again with cursor \"2\" to continue]"
/// );
/// assert_eq!(
///     truncation_notice("10 of 25 entries", None, Some("use list_directory to page")),
///     "[truncated: showing 10 of 25 entries; use list_directory to page]"
/// );
/// ```
pub fn truncation_notice(
    shown: impl std::fmt::Display,
    cursor: Option<&str>,
    advice: Option<&str>,
) -> String {
    match (cursor, advice) {
        (Some(cursor), Some(advice)) => format!(
            "[truncated: showing {shown}; call again with cursor \"{cursor}\" to continue, or {advice}]"
        ),
        (Some(cursor), None) => {
            format!("[truncated: showing {shown}; call again with cursor \"{cursor}\" to continue]")
        }
        (None, Some(advice)) => format!("[truncated: showing {shown}; {advice}]"),
        (None, None) => format!("[truncated: showing {shown}]"),
    }
}

fn invalid_cursor(cursor: &str) -> ToolError {
    ToolError::new(format!("invalid cursor {cursor:?}")).with_hint(
        "pass the cursor from the previous truncated result unchanged, or omit it to start over",
    )
}

/// The offset an offset cursor names (0 without one), for tools that page by offset themselves
/// (a file read a window at a time, a long listing).
pub fn parse_offset(cursor: Option<&str>) -> Result<usize, ToolError> {
    match cursor {
        None => Ok(0),
        Some(cursor) => cursor.trim().parse().map_err(|_| invalid_cursor(cursor)),
    }
}

fn parse_cursor(cursor: &str, text: &str) -> Result<usize, ToolError> {
    let offset = parse_offset(Some(cursor))?;
    if offset > text.len() || !text.is_char_boundary(offset) {
        return Err(invalid_cursor(cursor));
    }
    Ok(offset)
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// A tool result that is data: `text` for the model and for clients that read only text, `data`
/// as its structured content.
pub fn structured(text: impl Into<String>, data: &impl serde::Serialize) -> CallToolResult {
    structured_value(text, serde_json::to_value(data).unwrap_or_default())
}

/// [`structured`] with the data already as JSON (moved in, not copied).
pub fn structured_value(text: impl Into<String>, data: serde_json::Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(text.into())]);
    result.structured_content = Some(data);
    result
}

/// Makes `tool`'s schemas ones every client can compile: schemars marks Rust's number types
/// with formats of its own (`uint64`, `int32`, `double`…) that JSON Schema does not define, and
/// the TypeScript SDK's validator (ajv, in the hosts built on it) logs a warning for each one when
/// it lists the tools. Those formats are dropped; the bounds schemars writes beside them
/// (`minimum`, `maximum`) stay, so the schemas say the same.
///
/// [`serve`](crate::serve()) applies it to every tool a handler lists ([`Guarded`](crate::Guarded)
/// does), so a server author never calls it.
pub fn make_portable(tool: &mut Tool) {
    drop_rust_formats(Arc::make_mut(&mut tool.input_schema));
    if let Some(output) = &mut tool.output_schema {
        drop_rust_formats(Arc::make_mut(output));
    }
}

/// The formats schemars gives Rust's number types (none of them JSON Schema's).
const RUST_FORMATS: [&str; 16] = [
    "int", "int8", "int16", "int32", "int64", "int128", "uint", "uint8", "uint16", "uint32",
    "uint64", "uint128", "float", "double", "float32", "float64",
];

/// Removes [`RUST_FORMATS`] from a schema and its subschemas, leaving values (`default`,
/// `examples`, `const`, `enum`) as they are.
fn drop_rust_formats(schema: &mut serde_json::Map<String, serde_json::Value>) {
    if schema
        .get("format")
        .and_then(|format| format.as_str())
        .is_some_and(|format| RUST_FORMATS.contains(&format))
    {
        schema.remove("format");
    }
    for (key, value) in schema.iter_mut() {
        match key.as_str() {
            "default" | "examples" | "const" | "enum" => {}
            // Maps of names to subschemas: a property may be called `default` or `examples`.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let serde_json::Value::Object(named) = value {
                    named.values_mut().for_each(drop_rust_formats_below);
                }
            }
            _ => drop_rust_formats_below(value),
        }
    }
}

fn drop_rust_formats_below(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(object) => drop_rust_formats(object),
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_rust_formats_below),
        _ => {}
    }
}

/// What a server may ask of a client mid-call, each a client capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCapability {
    /// `sampling`: the client's model answers a prompt.
    Sampling,
    /// `elicitation`: the user answers a form or opens a URL.
    Elicitation,
    /// `roots`: the client names its directories.
    Roots,
}

impl ClientCapability {
    /// Its name in `ClientCapabilities`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sampling => "sampling",
            Self::Elicitation => "elicitation",
            Self::Roots => "roots",
        }
    }

    fn declared_in(self, capabilities: &rmcp::model::ClientCapabilities) -> bool {
        match self {
            Self::Sampling => capabilities.sampling.is_some(),
            Self::Elicitation => capabilities.elicitation.is_some(),
            Self::Roots => capabilities.roots.is_some(),
        }
    }
}

/// Refuses a request whose client did not declare `capability`: the protocol's
/// MissingRequiredClientCapabilityError (-32021), whose `data.requiredCapabilities` names it
/// (`{"sampling": {}}`); rmcp's Streamable HTTP server answers it with 400, as the 2026-07-28
/// revision requires. A tool that would ask the client for something calls this first, in either
/// era: the capabilities come from the request's `_meta` (2026-07-28) or from the session's
/// `initialize` (handshake era).
pub fn require_client_capability(
    context: &rmcp::service::RequestContext<rmcp::RoleServer>,
    capability: ClientCapability,
) -> Result<(), rmcp::ErrorData> {
    if context
        .client_capabilities()
        .is_some_and(|declared| capability.declared_in(&declared))
    {
        return Ok(());
    }
    let mut required = rmcp::model::ClientCapabilities::default();
    match capability {
        ClientCapability::Sampling => required.sampling = Some(Default::default()),
        ClientCapability::Elicitation => required.elicitation = Some(Default::default()),
        ClientCapability::Roots => required.roots = Some(Default::default()),
    }
    let mut error = rmcp::ErrorData::missing_required_client_capability(required);
    error.message = format!(
        "this needs the client's {} capability, which the client did not declare",
        capability.name()
    )
    .into();
    Err(error)
}

/// Whether a log message at `level` may go to the client of this request. In the 2026-07-28
/// revision only when the request's `_meta` asked for a level (`io.modelcontextprotocol/logLevel`),
/// and then at or above it (SEP-2575: no log messages unasked). In the handshake era at or above
/// the level the session set with `logging/setLevel` (`session_level`), or at every level when
/// it set none.
// Logging is deprecated by SEP-2577 (rmcp marks its types so), but both revisions still carry it.
#[allow(deprecated)]
pub fn may_log(
    context: &rmcp::service::RequestContext<rmcp::RoleServer>,
    session_level: Option<rmcp::model::LoggingLevel>,
    level: rmcp::model::LoggingLevel,
) -> bool {
    let floor = if crate::input::stateless(context) {
        match context.meta.log_level() {
            Some(asked) => asked,
            None => return false,
        }
    } else {
        match session_level {
            Some(set) => set,
            None => return true,
        }
    };
    severity(level) >= severity(floor)
}

/// RFC 5424's order of the levels, debug lowest.
#[allow(deprecated)]
pub fn severity(level: rmcp::model::LoggingLevel) -> u8 {
    use rmcp::model::LoggingLevel::*;
    match level {
        Debug => 0,
        Info => 1,
        Notice => 2,
        Warning => 3,
        Error => 4,
        Critical => 5,
        Alert => 6,
        Emergency => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_untouched() {
        let page = OutputCap::new(100).page("hello", None).unwrap();
        assert_eq!(page.text, "hello");
        assert!(!page.truncated);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn pages_cover_the_whole_text_exactly_once() {
        let text: String = (0..500).map(|i| format!("entry number {i} ✓\n")).collect();
        let cap = OutputCap::new(1000);
        let mut cursor = None;
        let mut rebuilt = String::new();
        let mut pages = 0;
        loop {
            let page = cap.page(&text, cursor.as_deref()).unwrap();
            pages += 1;
            match page.next_cursor {
                Some(next) => {
                    let body = page.text.rsplit_once("[truncated").unwrap().0;
                    let start: usize = cursor.as_deref().map_or(0, |c: &str| c.parse().unwrap());
                    let next_offset: usize = next.parse().unwrap();
                    rebuilt.push_str(&text[start..next_offset]);
                    assert!(body.len() <= 1001, "page body of {} bytes", body.len());
                    cursor = Some(next);
                }
                None => {
                    rebuilt.push_str(&page.text);
                    break;
                }
            }
        }
        assert_eq!(rebuilt, text);
        assert!(pages > 5);
    }

    #[test]
    fn never_splits_a_character() {
        let text = "ééééé";
        let page = OutputCap::new(3).page(text, None).unwrap();
        assert!(page.text.starts_with('é'));
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let wide = OutputCap::new(1).page("€x", None).unwrap();
        assert_eq!(wide.next_cursor.as_deref(), Some("3"));
    }

    #[test]
    fn truncation_without_a_cursor_gives_the_advice() {
        let cap = OutputCap::new(10);
        let (short, cut) = cap.truncate("short", "narrow it");
        assert_eq!((short.as_str(), cut), ("short", false));
        let (long, cut) = cap.truncate("line one\nline two\n", "narrow it");
        assert!(cut);
        assert_eq!(
            long,
            "line one\n[truncated: showing 9 of 18 bytes; narrow it]"
        );
    }

    #[test]
    fn bad_cursors_are_tool_errors() {
        let cap = OutputCap::new(4);
        for cursor in ["abc", "-1", "999", "1"] {
            let err = cap.page("éabc", Some(cursor)).unwrap_err();
            assert!(err.to_string().contains("invalid cursor"), "{err}");
        }
    }

    #[test]
    fn rust_number_formats_leave_the_schemas_and_nothing_else_does() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "size": { "type": "integer", "format": "uint64", "minimum": 0 },
                "when": { "type": "string", "format": "date-time" },
                "ratio": { "type": ["number", "null"], "format": "double" },
                "format": { "type": "string", "default": "uint8" },
                "items": { "type": "array", "items": { "type": "integer", "format": "int32" } },
                "either": { "anyOf": [{ "type": "integer", "format": "uint" }, { "type": "null" }] },
                "settings": { "type": "object", "default": { "format": "uint64" } },
                "examples": { "type": "integer", "format": "uint", "examples": [{ "format": "uint" }] },
                "default": { "type": "number", "format": "double" }
            },
            "$defs": { "Entry": { "properties": { "n": { "format": "uint16", "maximum": 65535 } } } }
        });
        let serde_json::Value::Object(object) = &mut schema else {
            unreachable!()
        };
        drop_rust_formats(object);
        assert_eq!(
            schema,
            serde_json::json!({
                "type": "object",
                "properties": {
                    "size": { "type": "integer", "minimum": 0 },
                    "when": { "type": "string", "format": "date-time" },
                    "ratio": { "type": ["number", "null"] },
                    "format": { "type": "string", "default": "uint8" },
                    "items": { "type": "array", "items": { "type": "integer" } },
                    "either": { "anyOf": [{ "type": "integer" }, { "type": "null" }] },
                    "settings": { "type": "object", "default": { "format": "uint64" } },
                    "examples": { "type": "integer", "examples": [{ "format": "uint" }] },
                    "default": { "type": "number" }
                },
                "$defs": { "Entry": { "properties": { "n": { "maximum": 65535 } } } }
            })
        );
    }

    #[test]
    fn tool_error_reads_as_one_sentence_with_hint() {
        let err = ToolError::new("no such file: /a").with_hint("call list_directory first");
        assert_eq!(
            err.to_string(),
            "no such file: /a. Hint: call list_directory first"
        );
        assert_eq!(ToolError::new("plain").to_string(), "plain");
    }
}
