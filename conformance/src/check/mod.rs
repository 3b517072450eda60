//! `mcp-check`: checks any MCP server against the protocol, over stdio or Streamable HTTP,
//! where the official suite does not look: both protocol eras, every tool's name, description
//! and schemas, stdout hygiene, malformed input, cancellation, pagination, large arguments.
//!
//! ```no_run
//! # async fn run() {
//! use mcp_conformance::check::{Options, Target, run};
//!
//! let report = run(&Options::new(Target::Stdio(vec!["my-server".into()]))).await;
//! print!("{}", report.table());
//! assert!(report.passed());
//! # }
//! ```

pub mod wire;

use std::{collections::HashSet, time::Duration};

use serde::Serialize;
use serde_json::{Value, json};

use wire::Wire;
pub use wire::WireError;

/// The server to check.
#[derive(Debug, Clone)]
pub enum Target {
    /// A command (and its arguments) speaking MCP on stdio.
    Stdio(Vec<String>),
    /// A Streamable HTTP endpoint, with extra headers (`Authorization`, …).
    Http {
        /// The endpoint.
        url: String,
        /// Headers sent with every request.
        headers: Vec<(String, String)>,
    },
}

/// What to check, and how patiently.
#[derive(Debug, Clone)]
pub struct Options {
    /// The server to check.
    pub target: Target,
    /// A tool that takes a while, and its arguments, to check that cancellation stops it.
    pub slow_tool: Option<(String, Value)>,
    /// How long to wait for an ordinary answer.
    pub timeout: Duration,
}

impl Options {
    /// Checks `target` with the default patience (10 s) and no slow tool.
    pub fn new(target: Target) -> Self {
        Self {
            target,
            slow_tool: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Met.
    Pass,
    /// Allowed by the spec, but worth fixing (a SHOULD, not a MUST).
    Warn,
    /// Broken: a MUST of the spec.
    Fail,
    /// Not applicable to this server.
    Skip,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        })
    }
}

/// One check and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The check's name (`initialize-version`, …).
    pub id: &'static str,
    /// Its verdict.
    pub status: Status,
    /// What was seen.
    pub detail: String,
}

/// Every verdict of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The server's `initialize` answer, when it gave one.
    pub server: Option<Value>,
    /// Every check's verdict, in the order they ran.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// No check failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(|o| o.status != Status::Fail)
    }

    /// The verdict of check `id`, if it ran.
    pub fn status_of(&self, id: &str) -> Option<Status> {
        self.outcomes.iter().find(|o| o.id == id).map(|o| o.status)
    }

    fn record(&mut self, id: &'static str, status: Status, detail: impl Into<String>) {
        self.outcomes.push(Outcome {
            id,
            status,
            detail: detail.into(),
        });
    }

    /// A plain-text table, one line per check, and a summary line.
    pub fn table(&self) -> String {
        let width = self.outcomes.iter().map(|o| o.id.len()).max().unwrap_or(0);
        let mut out = String::new();
        if let Some(server) = &self.server {
            out.push_str(&format!(
                "server: {} {}\n",
                server["name"].as_str().unwrap_or("?"),
                server["version"].as_str().unwrap_or("")
            ));
        }
        for outcome in &self.outcomes {
            out.push_str(&format!(
                "{:<width$}  {}  {}\n",
                outcome.id, outcome.status, outcome.detail
            ));
        }
        let count = |status| self.outcomes.iter().filter(|o| o.status == status).count();
        out.push_str(&format!(
            "{} passed, {} failed, {} warned, {} skipped\n",
            count(Status::Pass),
            count(Status::Fail),
            count(Status::Warn),
            count(Status::Skip)
        ));
        out
    }
}

const HANDSHAKE_VERSION: &str = "2025-11-25";
const STATELESS_VERSION: &str = "2026-07-28";
/// The longest tool name that still fits model APIs' 64 characters after a `server__` prefix.
const MAX_PREFIXED_NAME: usize = 64 - "server__".len();

fn request(id: impl Into<Value>, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id.into(), "method": method, "params": params })
}

fn stateless_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
        "io.modelcontextprotocol/clientInfo": { "name": "mcp-check", "version": env!("CARGO_PKG_VERSION") },
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

fn error_code(answer: &Value) -> Option<i64> {
    answer.get("error")?.get("code")?.as_i64()
}

/// Runs every check against the target.
pub async fn run(options: &Options) -> Report {
    let mut report = Report::default();
    let mut noise = Vec::new();
    match connect(&options.target).await {
        Ok(mut wire) => {
            handshake_checks(&mut wire, options, &mut report).await;
            noise.extend(wire.unsolicited().noise);
            wire.close().await;
        }
        Err(error) => report.record(
            "initialize",
            Status::Fail,
            format!("cannot connect: {error}"),
        ),
    }
    match connect(&options.target).await {
        Ok(mut wire) => {
            stateless_checks(&mut wire, options, &mut report).await;
            noise.extend(wire.unsolicited().noise);
            wire.close().await;
        }
        Err(error) => report.record(
            "stateless-discover",
            Status::Fail,
            format!("cannot connect: {error}"),
        ),
    }
    if matches!(options.target, Target::Stdio(_)) {
        if noise.is_empty() {
            report.record(
                "stdout-hygiene",
                Status::Pass,
                "stdout carried only JSON-RPC messages",
            );
        } else {
            report.record(
                "stdout-hygiene",
                Status::Fail,
                format!(
                    "{} line(s) on stdout that are not JSON-RPC messages (logs belong on stderr), first: {:?}",
                    noise.len(),
                    noise[0]
                ),
            );
        }
    }
    report
}

async fn connect(target: &Target) -> Result<Wire, WireError> {
    match target {
        Target::Stdio(command) => Wire::spawn(command).await,
        Target::Http { url, headers } => Ok(Wire::http(url, headers)),
    }
}

async fn handshake_checks(wire: &mut Wire, options: &Options, report: &mut Report) {
    let timeout = options.timeout;
    let result = match wire
        .initialize(HANDSHAKE_VERSION, "mcp-check", timeout)
        .await
    {
        Ok(result) => result,
        Err(error) => {
            report.record("initialize", Status::Fail, error.to_string());
            return;
        }
    };
    report.server = Some(result["serverInfo"].clone());
    report.record(
        "initialize",
        Status::Pass,
        format!(
            "protocol {}",
            result["protocolVersion"].as_str().unwrap_or_default()
        ),
    );

    match wire.request(request(2, "ping", json!({})), timeout).await {
        Ok(answer) if answer["result"].is_object() => {
            report.record("ping", Status::Pass, "answered {}")
        }
        Ok(answer) => report.record("ping", Status::Fail, format!("unexpected answer: {answer}")),
        Err(error) => report.record("ping", Status::Fail, error.to_string()),
    }

    let tools = list_everything(wire, &result["capabilities"], timeout, report).await;
    if result["capabilities"].get("tools").is_none() {
        for id in [
            "tools-list",
            "tool-names",
            "tool-descriptions",
            "tool-input-schemas",
            "tool-output-schemas",
        ] {
            report.record(id, Status::Skip, "the server declares no tools capability");
        }
    }
    if !tools.is_empty() {
        check_tools(&tools, report);
    }

    malformed_input_checks(wire, timeout, report).await;
    large_argument_check(wire, &tools, report).await;
    cancellation_check(wire, &tools, options, report).await;
}

/// Reads every page of a list method (`tools/list` → `tools`), following cursors. Fails on an
/// error, a cursor that comes back (a loop), or an item listed twice.
async fn read_all_pages(
    wire: &mut Wire,
    timeout: Duration,
    method: &str,
    key: &str,
    identity: &str,
) -> Result<(Vec<Value>, usize), String> {
    let mut items = Vec::new();
    let mut cursors = HashSet::new();
    let mut cursor: Option<Value> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(cursor) => json!({ "cursor": cursor }),
            None => json!({}),
        };
        let answer = wire
            .request(
                request(format!("{method}-{pages}"), method, params),
                timeout,
            )
            .await
            .map_err(|error| format!("{method}: {error}"))?;
        let page = answer["result"][key]
            .as_array()
            .ok_or_else(|| format!("{method}: no `{key}` array in {answer}"))?;
        items.extend(page.iter().cloned());
        pages += 1;
        match answer["result"].get("nextCursor").filter(|c| !c.is_null()) {
            None => break,
            Some(next) if !cursors.insert(next.to_string()) || pages >= 100 => {
                return Err(format!("{method}: cursors loop (cursor {next} came back)"));
            }
            Some(next) => cursor = Some(next.clone()),
        }
    }
    let mut seen = HashSet::new();
    let duplicates: Vec<&str> = items
        .iter()
        .filter_map(|item| item[identity].as_str())
        .filter(|id| !seen.insert(*id))
        .collect();
    if !duplicates.is_empty() {
        return Err(format!(
            "{method}: listed twice across pages: {duplicates:?}"
        ));
    }
    Ok((items, pages))
}

/// How a list method treats a cursor it never issued: the spec asks for -32602.
async fn bogus_cursor(wire: &mut Wire, timeout: Duration, method: &str) -> (Status, String) {
    let bogus = request(
        "bad-cursor",
        method,
        json!({ "cursor": "mcp-check/not-a-cursor" }),
    );
    match wire.request(bogus, timeout).await {
        Ok(answer) if error_code(&answer) == Some(-32602) => (
            Status::Pass,
            format!("{method}: an invalid cursor gets -32602"),
        ),
        Ok(answer) if answer.get("error").is_some() => (
            Status::Warn,
            format!(
                "{method}: an invalid cursor should get -32602 (Invalid params), got {}",
                answer["error"]
            ),
        ),
        Ok(_) => (
            Status::Warn,
            format!("{method}: an invalid cursor was accepted; the spec asks for -32602"),
        ),
        Err(error) => (
            Status::Fail,
            format!("{method}: an invalid cursor got no answer: {error}"),
        ),
    }
}

/// Lists tools, resources and prompts (those the server declares), records `tools-list` and
/// `pagination`, and returns the tools.
async fn list_everything(
    wire: &mut Wire,
    capabilities: &Value,
    timeout: Duration,
    report: &mut Report,
) -> Vec<Value> {
    let mut tools = Vec::new();
    let mut verdicts: Vec<(Status, String)> = Vec::new();
    let lists = [
        ("tools", "tools/list", "name"),
        ("resources", "resources/list", "uri"),
        ("prompts", "prompts/list", "name"),
    ];
    for (capability, method, identity) in lists {
        if capabilities.get(capability).is_none() {
            continue;
        }
        match read_all_pages(wire, timeout, method, capability, identity).await {
            Ok((items, pages)) => {
                if capability == "tools" {
                    report.record(
                        "tools-list",
                        Status::Pass,
                        format!("{} tool(s) in {pages} page(s)", items.len()),
                    );
                    tools = items;
                }
                verdicts.push(bogus_cursor(wire, timeout, method).await);
            }
            Err(reason) => {
                if capability == "tools" {
                    report.record("tools-list", Status::Fail, reason.clone());
                }
                verdicts.push((Status::Fail, reason));
            }
        }
    }
    if verdicts.is_empty() {
        report.record("pagination", Status::Skip, "the server declares no lists");
    } else {
        let worst = [Status::Fail, Status::Warn, Status::Pass]
            .into_iter()
            .find(|status| verdicts.iter().any(|(s, _)| s == status))
            .unwrap_or(Status::Pass);
        let details: Vec<String> = verdicts
            .into_iter()
            .filter(|(status, _)| *status == worst)
            .map(|(_, detail)| detail)
            .collect();
        report.record("pagination", worst, details.join("; "));
    }
    tools
}

/// The spec's tool-name rule (SEP-986): 1 to 128 of `A-Z a-z 0-9 _ - .`.
fn valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn schema_problem(schema: &Value) -> Option<String> {
    if schema.get("type") != Some(&json!("object")) {
        return Some("its type is not \"object\"".to_owned());
    }
    match jsonschema::meta::validator_for(schema) {
        Err(error) => return Some(format!("unknown or unusable $schema: {error}")),
        Ok(meta) => {
            if let Err(error) = meta.validate(schema) {
                return Some(format!("not a valid JSON Schema: {error}"));
            }
        }
    }
    jsonschema::validator_for(schema)
        .err()
        .map(|error| format!("cannot be compiled: {error}"))
}

fn check_tools(tools: &[Value], report: &mut Report) {
    let name_of = |tool: &Value| tool["name"].as_str().unwrap_or("<no name>").to_owned();

    let mut bad_names = Vec::new();
    let mut long_names = Vec::new();
    let mut dotted = Vec::new();
    for tool in tools {
        let name = name_of(tool);
        if !valid_tool_name(&name) {
            bad_names.push(name);
        } else if name.len() > MAX_PREFIXED_NAME {
            long_names.push(name);
        } else if name.contains('.') {
            dotted.push(name);
        }
    }
    if !bad_names.is_empty() {
        report.record(
            "tool-names",
            Status::Fail,
            format!("names outside the spec's 1-128 `A-Za-z0-9_-.`: {bad_names:?}"),
        );
    } else if !long_names.is_empty() {
        report.record(
            "tool-names",
            Status::Fail,
            format!("longer than {MAX_PREFIXED_NAME}, so over 64 with a `server__` prefix: {long_names:?}"),
        );
    } else if !dotted.is_empty() {
        report.record(
            "tool-names",
            Status::Warn,
            format!("model APIs reject `.` in tool names: {dotted:?}"),
        );
    } else {
        report.record(
            "tool-names",
            Status::Pass,
            "all names valid and short enough to prefix",
        );
    }

    let undescribed: Vec<String> = tools
        .iter()
        .filter(|t| {
            t["description"]
                .as_str()
                .is_none_or(|d| d.trim().is_empty())
        })
        .map(name_of)
        .collect();
    if undescribed.is_empty() {
        report.record(
            "tool-descriptions",
            Status::Pass,
            "every tool has a description",
        );
    } else {
        report.record(
            "tool-descriptions",
            Status::Fail,
            format!("no description: {undescribed:?}"),
        );
    }

    let bad_inputs: Vec<String> = tools
        .iter()
        .filter_map(|t| match t.get("inputSchema") {
            None => Some(format!("{}: no inputSchema", name_of(t))),
            Some(schema) => schema_problem(schema).map(|p| format!("{}: {p}", name_of(t))),
        })
        .collect();
    if bad_inputs.is_empty() {
        report.record(
            "tool-input-schemas",
            Status::Pass,
            "every input schema is a valid object schema",
        );
    } else {
        report.record("tool-input-schemas", Status::Fail, bad_inputs.join("; "));
    }

    let with_output: Vec<&Value> = tools
        .iter()
        .filter(|t| t.get("outputSchema").is_some())
        .collect();
    let bad_outputs: Vec<String> = with_output
        .iter()
        .filter_map(|t| schema_problem(&t["outputSchema"]).map(|p| format!("{}: {p}", name_of(t))))
        .collect();
    if with_output.is_empty() {
        report.record(
            "tool-output-schemas",
            Status::Skip,
            "no tool declares an output schema",
        );
    } else if bad_outputs.is_empty() {
        report.record(
            "tool-output-schemas",
            Status::Pass,
            format!("{} output schema(s) valid", with_output.len()),
        );
    } else {
        report.record("tool-output-schemas", Status::Fail, bad_outputs.join("; "));
    }
}

/// Whether the server still answers a ping.
async fn still_alive(wire: &mut Wire, timeout: Duration) -> bool {
    matches!(
        wire.request(request("alive", "ping", json!({})), timeout).await,
        Ok(answer) if answer["result"].is_object()
    )
}

async fn malformed_input_checks(wire: &mut Wire, timeout: Duration, report: &mut Report) {
    let cases: [(&'static str, String, Option<Value>, i64, &str); 4] = [
        (
            "invalid-json",
            r#"{"jsonrpc": "2.0", "id": "mcp-check-truncated", "method": "ping""#.to_owned(),
            None,
            -32700,
            "Parse error",
        ),
        (
            "invalid-request",
            r#"{"jsonrpc": "2.0", "id": "mcp-check-bad-request", "method": 42}"#.to_owned(),
            Some(json!("mcp-check-bad-request")),
            -32600,
            "Invalid Request",
        ),
        (
            "unknown-method",
            request("mcp-check-unknown", "mcp-check/no-such-method", json!({})).to_string(),
            Some(json!("mcp-check-unknown")),
            -32601,
            "Method not found",
        ),
        (
            "invalid-params",
            request("mcp-check-bad-params", "tools/call", json!({ "name": 42 })).to_string(),
            Some(json!("mcp-check-bad-params")),
            -32602,
            "Invalid params",
        ),
    ];
    for (id, raw, request_id, code, name) in cases {
        let answer = wire
            .send_raw(&raw, request_id.as_ref(), Duration::from_secs(3))
            .await;
        let (status, detail) = match answer {
            Ok(Some(answer)) if error_code(&answer) == Some(code) => {
                (Status::Pass, format!("{code} {name}"))
            }
            Ok(Some(answer)) => match error_code(&answer) {
                Some(other) => (
                    Status::Fail,
                    format!("expected {code} {name}, got {other}: {}", answer["error"]),
                ),
                None => (
                    Status::Fail,
                    format!("expected {code} {name}, got a result: {answer}"),
                ),
            },
            Ok(None) => (Status::Fail, format!("no answer; expected {code} {name}")),
            Err(error) => (Status::Fail, format!("{error}; expected {code} {name}")),
        };
        if still_alive(wire, timeout).await {
            report.record(id, status, detail);
        } else {
            report.record(
                id,
                Status::Fail,
                format!("{detail}; then the server stopped answering pings"),
            );
            return;
        }
    }
}

/// The tool and the arguments to send it a 1 MiB string: a string property of its input schema
/// when it has one.
fn large_call(tools: &[Value], payload: &str) -> Option<Value> {
    let tool = tools.first()?;
    let property = tool["inputSchema"]["properties"]
        .as_object()
        .and_then(|props| {
            props
                .iter()
                .find(|(_, schema)| schema["type"] == "string")
                .map(|(name, _)| name.clone())
        })
        .unwrap_or_else(|| "mcp_check_padding".to_owned());
    Some(json!({ "name": tool["name"], "arguments": { property: payload } }))
}

async fn large_argument_check(wire: &mut Wire, tools: &[Value], report: &mut Report) {
    let payload = "x".repeat(1024 * 1024);
    let (message, what) = match large_call(tools, &payload) {
        Some(params) => {
            let what = format!("tools/call {} with a 1 MiB argument", params["name"]);
            (request("mcp-check-large", "tools/call", params), what)
        }
        None => (
            request(
                "mcp-check-large",
                "ping",
                json!({ "_meta": { "mcp-check/padding": payload } }),
            ),
            "ping with 1 MiB of _meta".to_owned(),
        ),
    };
    let answer = wire.request(message, Duration::from_secs(30)).await;
    let alive = still_alive(wire, Duration::from_secs(10)).await;
    match (answer, alive) {
        (Ok(_), true) => report.record(
            "large-argument",
            Status::Pass,
            format!("{what}: answered, still serving"),
        ),
        (Ok(_), false) => report.record(
            "large-argument",
            Status::Fail,
            format!("{what}: answered, then stopped answering"),
        ),
        (Err(error), _) if !wire.alive() => report.record(
            "large-argument",
            Status::Fail,
            format!("{what}: the server died ({error})"),
        ),
        (Err(error), alive) => report.record(
            "large-argument",
            Status::Fail,
            format!(
                "{what}: {error}{}",
                if alive {
                    ""
                } else {
                    ", and no longer answers pings"
                }
            ),
        ),
    }
}

async fn cancellation_check(
    wire: &mut Wire,
    tools: &[Value],
    options: &Options,
    report: &mut Report,
) {
    let (name, arguments, slow) = match &options.slow_tool {
        Some((name, arguments)) => (json!(name), arguments.clone(), true),
        None => match tools.first() {
            Some(tool) => (tool["name"].clone(), json!({}), false),
            None => {
                report.record("cancellation", Status::Skip, "no tools to cancel");
                return;
            }
        },
    };
    let call = request(
        "mcp-check-cancel",
        "tools/call",
        json!({ "name": name, "arguments": arguments }),
    );
    let cancel = json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": { "requestId": "mcp-check-cancel", "reason": "mcp-check cancels this call" },
    });
    // Start the call, cancel it while it runs, then see whether its answer still comes.
    let wait = Duration::from_secs(if slow { 3 } else { 1 });
    let answered = match wire.call_then_cancel(call, cancel, wait).await {
        Ok(answered) => answered,
        Err(error) => {
            report.record(
                "cancellation",
                Status::Fail,
                format!("could not call then cancel {name}: {error}"),
            );
            return;
        }
    };
    let alive = still_alive(wire, options.timeout).await;
    let (status, detail) = match (alive, slow, answered) {
        (false, ..) => (Status::Fail, "the server stopped answering after a cancellation".to_owned()),
        (true, true, true) => (
            Status::Warn,
            format!("{name} still answered after notifications/cancelled (the spec says it should not)"),
        ),
        (true, true, false) => (Status::Pass, format!("{name} stopped answering once cancelled")),
        (true, false, _) => (
            Status::Pass,
            "a cancelled call left the server healthy (name a slow tool with --slow-tool to check it stops)".to_owned(),
        ),
    };
    report.record("cancellation", status, detail);
}

async fn stateless_checks(wire: &mut Wire, options: &Options, report: &mut Report) {
    wire.set_http_header("MCP-Protocol-Version", Some(STATELESS_VERSION.to_owned()));
    let discover = request(1, "server/discover", json!({ "_meta": stateless_meta() }));
    wire.set_http_header("Mcp-Method", Some("server/discover".to_owned()));
    let answer = match wire.request(discover, options.timeout).await {
        Ok(answer) => answer,
        Err(error) => {
            report.record(
                "stateless-discover",
                Status::Fail,
                format!("server/discover got no answer: {error}"),
            );
            return;
        }
    };
    if answer.get("error").is_some() {
        report.record(
            "stateless-discover",
            Status::Warn,
            format!(
                "the server speaks only the handshake era (server/discover: {})",
                answer["error"]
            ),
        );
        return;
    }
    let supported = answer["result"]["supportedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !supported.contains(&json!(STATELESS_VERSION)) {
        report.record(
            "stateless-discover",
            Status::Warn,
            format!("server/discover answered without {STATELESS_VERSION} among {supported:?}"),
        );
        return;
    }
    wire.set_http_header("Mcp-Method", Some("tools/list".to_owned()));
    let list = request(2, "tools/list", json!({ "_meta": stateless_meta() }));
    match wire.request(list, options.timeout).await {
        Ok(answer) if answer["result"]["tools"].is_array() || answer["result"].is_object() => {
            report.record(
                "stateless-discover",
                Status::Pass,
                format!(
                    "server/discover, then tools/list with per-request _meta ({STATELESS_VERSION})"
                ),
            )
        }
        Ok(answer) => report.record(
            "stateless-discover",
            Status::Fail,
            format!("tools/list with per-request _meta failed: {answer}"),
        ),
        Err(error) => report.record(
            "stateless-discover",
            Status::Fail,
            format!("tools/list with _meta: {error}"),
        ),
    }
}
