//! The interop matrix: any server of ours driven by clients nobody here wrote (the official
//! TypeScript SDK, the official Python SDK in both protocol eras, the MCP Inspector CLI) over
//! stdio, Streamable HTTP and legacy SSE, and the shared `conformance/RESULTS.md` every server's
//! test writes its own section of.
//!
//! A server's test describes the server ([`ServerUnderTest`]) and what a client should see
//! ([`Probe`]) and calls [`check_server`], which runs the peer clients and the suite's generic
//! scenarios and records the server's section; the pieces ([`peer_client_cells`], [`grid`],
//! [`record_section`]) serve tests with other shapes, like the fixture's.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, ensure};
use serde_json::Value;
use tokio::process::Command;

use crate::{peers, process::HttpProcess};

/// The transports every peer client is run over, in column order.
pub const TRANSPORTS: [&str; 3] = ["stdio", "http", "sse"];

/// A server of ours as the peers reach it: a command for stdio, a running HTTP server (both
/// `/mcp` and `/sse`, as [`crate::process::HttpProcess`] starts it) otherwise.
#[derive(Debug, Clone)]
pub struct ServerUnderTest {
    /// The `serverInfo.name` it reports.
    pub name: String,
    /// The binary, for stdio.
    pub program: PathBuf,
    /// The arguments a host passes it over stdio.
    pub args: Vec<String>,
    /// `http://127.0.0.1:PORT` of the same server serving HTTP and legacy SSE.
    pub base_url: String,
}

impl ServerUnderTest {
    fn target(&self, transport: &str) -> String {
        match transport {
            "stdio" => self.program.display().to_string(),
            "http" => format!("{}/mcp", self.base_url),
            _ => format!("{}/sse", self.base_url),
        }
    }

    /// What follows the target on a peer's command line: the server's arguments over stdio.
    fn rest(&self, transport: &str) -> &[String] {
        if transport == "stdio" {
            &self.args
        } else {
            &[]
        }
    }
}

/// A tool call a cell makes.
#[derive(Debug, Clone)]
pub struct ToolProbe {
    /// The tool's name.
    pub name: String,
    /// Its arguments.
    pub arguments: Value,
}

impl ToolProbe {
    /// A call of `name` with `arguments`.
    pub fn new(name: &str, arguments: Value) -> Self {
        Self {
            name: name.to_owned(),
            arguments,
        }
    }
}

/// What every cell checks: the tools listed, a call and the text it answers, a call that must come
/// back as a tool error (`isError: true`), and optionally a resource and its text.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Tools that must be listed.
    pub tools: Vec<String>,
    /// A call that succeeds, and a fragment of its first text content.
    pub call: (ToolProbe, String),
    /// A call that must be answered with `isError: true`.
    pub failing_call: ToolProbe,
    /// A resource URI and its text, if the server has resources.
    pub read: Option<(String, String)>,
}

/// One cell of a matrix: what ran, and why it failed if it did.
#[derive(Debug)]
pub struct Cell {
    /// The row (the server, or the client, under test).
    pub row: String,
    /// The column (the peer and transport).
    pub column: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Runs a cell in a task of its own, so an error or a panicking assertion fails that cell only.
pub async fn cell(
    row: &str,
    column: &str,
    work: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) -> Cell {
    let failure = match tokio::spawn(work).await {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(format!("{error:#}")),
        Err(error) => Some(match error.try_into_panic() {
            Ok(panic) => panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".to_owned()),
            Err(error) => error.to_string(),
        }),
    };
    Cell {
        row: row.to_owned(),
        column: column.to_owned(),
        failure,
    }
}

/// Every peer client × every transport against `server`: the TypeScript SDK (handshake era),
/// the Python SDK in `auto` (2026-07-28) and `legacy` (2025-11-25) modes, the Inspector CLI.
pub async fn peer_client_cells(server: &ServerUnderTest, probe: &Probe) -> Vec<Cell> {
    let mut cells = Vec::new();
    for transport in TRANSPORTS {
        let (s, p) = (server.clone(), probe.clone());
        cells.push(
            cell(
                "TypeScript SDK (2025-11-25)",
                transport,
                typescript_cell(s, p, transport),
            )
            .await,
        );
        for (row, mode, era) in [
            ("Python SDK, auto (2026-07-28)", "auto", "2026-07-28"),
            ("Python SDK, legacy (2025-11-25)", "legacy", "2025-11-25"),
        ] {
            let (s, p) = (server.clone(), probe.clone());
            cells.push(cell(row, transport, python_cell(s, p, transport, mode, era)).await);
        }
        let (s, p) = (server.clone(), probe.clone());
        cells.push(
            cell(
                "MCP Inspector CLI",
                transport,
                inspector_cell(s, p, transport),
            )
            .await,
        );
    }
    cells
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, peers::PeerError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// Runs a peer and returns its stdout; an error carries its stderr.
/// Runs a peer to its end; its standard output and standard error.
async fn run_peer(mut command: Command, what: &str) -> anyhow::Result<(String, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        command.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| anyhow!("{what} hung for 90 s"))?
    .with_context(|| format!("{what} did not start"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    ensure!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status,
    );
    Ok((stdout, stderr))
}

fn peer_env(command: &mut Command, probe: &Probe) {
    let call = |p: &ToolProbe| serde_json::json!({"name": p.name, "arguments": p.arguments});
    let calls = serde_json::json!([call(&probe.call.0), call(&probe.failing_call)]);
    let reads: Vec<&str> = probe.read.iter().map(|(uri, _)| uri.as_str()).collect();
    command
        .env("MCP_PEER_CALLS", calls.to_string())
        .env("MCP_PEER_READS", serde_json::json!(reads).to_string());
}

fn tool_names(tools: &Value) -> anyhow::Result<Vec<&str>> {
    tools
        .as_array()
        .context("no tools array")?
        .iter()
        .map(|t| t["name"].as_str().context("a tool without a name"))
        .collect()
}

fn check_tools(tools: &Value, probe: &Probe) -> anyhow::Result<()> {
    let names = tool_names(tools)?;
    for expected in &probe.tools {
        ensure!(
            names.contains(&expected.as_str()),
            "{expected} is not listed: {names:?}"
        );
    }
    Ok(())
}

fn check_called(result: &Value, expected: &str) -> anyhow::Result<()> {
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    ensure!(
        text.contains(expected) && result["isError"] != true,
        "expected text containing {expected:?}, got {result}"
    );
    Ok(())
}

fn check_read(result: &Value, expected: &str) -> anyhow::Result<()> {
    ensure!(
        result["contents"][0]["text"] == expected,
        "expected {expected:?}, got {result}"
    );
    Ok(())
}

/// The checks every SDK client cell makes on the client's JSON report.
fn check_report(
    report: &Value,
    server: &ServerUnderTest,
    probe: &Probe,
    era: &str,
) -> anyhow::Result<()> {
    ensure!(
        report["protocolVersion"] == era,
        "negotiated {}, expected {era}",
        report["protocolVersion"]
    );
    ensure!(
        report["server"]["name"] == server.name.as_str(),
        "server name {}",
        report["server"]["name"]
    );
    check_tools(&report["tools"], probe)?;
    check_called(&report["calls"][0]["result"], &probe.call.1).context("the call")?;
    ensure!(
        report["calls"][1]["result"]["isError"] == true,
        "the failing call was answered {}",
        report["calls"][1]
    );
    if let Some((uri, text)) = &probe.read {
        check_read(&report["reads"][0]["result"], text)
            .with_context(|| format!("reading {uri}"))?;
    }
    Ok(())
}

async fn typescript_cell(
    server: ServerUnderTest,
    probe: Probe,
    transport: &'static str,
) -> anyhow::Result<()> {
    let (node, dir) = blocking(|| Ok((peers::node22()?, peers::ensure_node_peers()?))).await?;
    let mut command = Command::new(&node);
    command
        .arg(dir.join("client.mjs"))
        .args([transport, &server.target(transport)])
        .args(server.rest(transport));
    peer_env(&mut command, &probe);
    let what = format!("TypeScript SDK over {transport}");
    let (stdout, stderr) = run_peer(command, &what).await?;
    // The SDK compiles the tools' output schemas when it lists them, and warns (in every host
    // built on it) about what its validator does not know.
    ensure!(
        !stderr.contains("unknown format"),
        "the TypeScript SDK could not read a tool's schema:\n{stderr}"
    );
    let report: Value = serde_json::from_str(stdout.trim())?;
    check_report(&report, &server, &probe, "2025-11-25")
}

async fn python_cell(
    server: ServerUnderTest,
    probe: Probe,
    transport: &'static str,
    mode: &'static str,
    era: &'static str,
) -> anyhow::Result<()> {
    let python = blocking(peers::python_peer).await?;
    let mut command = Command::new(&python);
    command
        .arg(peers::python_peers_dir().join("client.py"))
        .args([transport, &server.target(transport)])
        .args(server.rest(transport))
        .env("MCP_PEER_MODE", mode);
    peer_env(&mut command, &probe);
    let what = format!("Python SDK ({mode}) over {transport}");
    let report: Value = serde_json::from_str(run_peer(command, &what).await?.0.trim())?;
    check_report(&report, &server, &probe, era)
}

async fn inspector(node: &Path, target: &[String], method: &[String]) -> anyhow::Result<Value> {
    let mut command = Command::new(node);
    command
        .arg(peers::node_bin("mcp-inspector"))
        .arg("--cli")
        .args(target)
        .args(method)
        // Keep the Inspector's catalog out of the user's home.
        .env(
            "MCP_CATALOG_PATH",
            std::env::temp_dir().join(format!("mcp-inspector-{}.json", std::process::id())),
        );
    let what = format!("Inspector CLI {target:?} {method:?}");
    let (stdout, _) = run_peer(command, &what).await?;
    serde_json::from_str(stdout.trim()).with_context(|| format!("{what} printed {stdout}"))
}

/// The Inspector's `--tool-arg key=value` pairs; non-string values as JSON.
fn tool_args(arguments: &Value) -> Vec<String> {
    let Some(object) = arguments.as_object() else {
        return Vec::new();
    };
    object
        .iter()
        .flat_map(|(key, value)| {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            ["--tool-arg".to_owned(), format!("{key}={value}")]
        })
        .collect()
}

async fn inspector_cell(
    server: ServerUnderTest,
    probe: Probe,
    transport: &'static str,
) -> anyhow::Result<()> {
    let node = blocking(|| {
        peers::ensure_node_peers()?;
        peers::node22()
    })
    .await?;
    // The Inspector tells the transport from the target: a command, `/mcp` or `/sse`.
    let mut target = vec![server.target(transport)];
    target.extend(server.rest(transport).iter().cloned());
    let method = |m: &str| vec!["--method".to_owned(), m.to_owned()];

    let tools = inspector(&node, &target, &method("tools/list")).await?;
    check_tools(&tools["tools"], &probe)?;

    let (call, expected) = &probe.call;
    let mut args = method("tools/call");
    args.extend(["--tool-name".to_owned(), call.name.clone()]);
    args.extend(tool_args(&call.arguments));
    check_called(&inspector(&node, &target, &args).await?, expected).context("the call")?;

    if let Some((uri, text)) = &probe.read {
        let mut args = method("resources/read");
        args.extend(["--uri".to_owned(), uri.clone()]);
        check_read(&inspector(&node, &target, &args).await?, text)
            .with_context(|| format!("reading {uri}"))?;
    }
    Ok(())
}

/// A real server's whole interop check, as every server's own test runs it: the peer clients
/// over every transport, then the official suite's scenarios that apply to any server, against
/// the server started on its own with `--transport http` (as the issue asks), both recorded as
/// the section named after the server.
/// `written_by` names the test; `about` says what the cells do with this server. Fails with
/// every red cell and failing check.
pub async fn check_server(
    server: &ServerUnderTest,
    probe: &Probe,
    written_by: &str,
    about: &str,
) -> anyhow::Result<()> {
    let cells = peer_client_cells(server, probe).await;
    let args: Vec<&str> = server.args.iter().map(String::as_str).collect();
    let http_only = HttpProcess::start_with(&server.program, "http", &args).await?;
    let url = http_only.url("/mcp");
    let report = crate::suite::run_scenarios(&url, &crate::suite::GENERIC_SERVER_SCENARIOS).await;
    let next = crate::suite::run_scenarios_2026(&url, &crate::suite::GENERIC_2026_SCENARIOS).await;
    let stopped = http_only.terminate().await?;
    let (report, next) = (report?, next?);
    ensure!(stopped.success(), "the http-only server exited {stopped}");
    record_section(
        &server.name,
        &format!(
            "## `{}` × peer clients\n\n\
             Written by `{written_by}`. {about}\n\n{}\n\
             The official suite's scenarios that apply to any server, run with `--transport http`: \
             {} checks SUCCESS, {} FAILURE, {} WARNING.\n\n{}\n\
             The 0.2 line's 2026-07-28 scenarios that apply to any server: {} checks SUCCESS, {} \
             FAILURE, {} WARNING (what fails, and why, is in `expected-failures.txt`).\n\n{}",
            server.name,
            grid(&cells, &TRANSPORTS),
            report.count("SUCCESS"),
            report.count("FAILURE"),
            report.count("WARNING"),
            report.table(),
            next.count("SUCCESS"),
            next.count("FAILURE"),
            next.count("WARNING"),
            next.table(),
        ),
    )?;
    let red = failures(&cells);
    ensure!(red.is_empty(), "red cells:\n{}", red.join("\n"));
    report
        .all_passed(&crate::suite::GENERIC_SERVER_SCENARIOS)
        .map_err(|failed| anyhow!(failed))?;
    crate::suite::Baseline::load()
        .and_then(|baseline| baseline.check(&server.name, "2026-07-28", &next))
        .map_err(|surprise| anyhow!(surprise))
}

/// A markdown table of `cells`: rows in the order first seen, `pass`, `**FAIL**` or `n/a`.
pub fn grid(cells: &[Cell], columns: &[&str]) -> String {
    let mut rows: Vec<&str> = Vec::new();
    for cell in cells {
        if !rows.contains(&cell.row.as_str()) {
            rows.push(&cell.row);
        }
    }
    let mut out = format!(
        "| | {} |\n|---|{}\n",
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
    for row in rows {
        out.push_str(&format!("| {row} |"));
        for column in columns {
            let mark = match cells.iter().find(|c| c.row == row && c.column == *column) {
                Some(Cell { failure: None, .. }) => "pass",
                Some(Cell {
                    failure: Some(_), ..
                }) => "**FAIL**",
                None => "n/a",
            };
            out.push_str(&format!(" {mark} |"));
        }
        out.push('\n');
    }
    out
}

/// The red cells, one line each, for a test's failure message.
pub fn failures(cells: &[Cell]) -> Vec<String> {
    cells
        .iter()
        .filter_map(|c| {
            c.failure
                .as_ref()
                .map(|f| format!("{} / {}: {f}", c.row, c.column))
        })
        .collect()
}

/// The pinned peers and their versions, from the lock and requirements files.
pub fn pinned_versions() -> anyhow::Result<Vec<String>> {
    let lock_path = peers::node_peers_dir().join("package-lock.json");
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(&lock_path)
            .with_context(|| format!("reading {}", lock_path.display()))?,
    )?;
    let mut versions: Vec<String> = lock["packages"][""]["dependencies"]
        .as_object()
        .context("no dependencies in the lock file")?
        .keys()
        .map(|name| {
            let entry = &lock["packages"][format!("node_modules/{name}")];
            let version = entry["version"].as_str().unwrap_or("?");
            // An alias (two versions of one package side by side) names the real package.
            match entry["name"].as_str().filter(|real| real != name) {
                Some(real) => format!("`{real}` {version} (npm, as `{name}`)"),
                None => format!("`{name}` {version} (npm)"),
            }
        })
        .collect();
    let requirements_path = peers::python_peers_dir().join("requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    versions.extend(
        requirements
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| format!("`{}` (PyPI)", line.trim())),
    );
    Ok(versions)
}

/// `conformance/RESULTS.md`.
fn results_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md")
}

fn header() -> anyhow::Result<String> {
    Ok(format!(
        "# Conformance results\n\n\
         Regenerated by the tests (`cargo test --workspace`); do not edit by hand. Each section is \
         written by the test named in it. In the peer-client tables each cell lists the tools, \
         calls a tool and a tool that must fail, and reads a resource when the server has any; the \
         Inspector cells list, call and read.\n\n\
         Pinned peers: {}.\n",
        pinned_versions()?.join(", ")
    ))
}

/// Replaces the section `key` of `conformance/RESULTS.md` (appending it if new) with `body`,
/// keeping every other section; the header is rewritten from the pinned versions.
pub fn record_section(key: &str, body: &str) -> anyhow::Result<()> {
    let path = results_path();
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let updated = replace_section(&header()?, &old, key, body);
    // Write beside, then rename: a test killed midway leaves the old file whole.
    let temp = path.with_extension("md.tmp");
    std::fs::write(&temp, updated).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn marker(key: &str, end: bool) -> String {
    format!("<!-- {}section {key} -->", if end { "end " } else { "" })
}

/// The sections of `old` (text between markers), with `key`'s replaced or appended.
fn replace_section(header: &str, old: &str, key: &str, body: &str) -> String {
    let mut sections: Vec<(String, String)> = Vec::new();
    let mut rest = old;
    while let Some(start) = rest.find("<!-- section ") {
        let after = &rest[start + "<!-- section ".len()..];
        let Some(close) = after.find(" -->") else {
            break;
        };
        let name = after[..close].to_owned();
        let content_start = close + " -->".len();
        let end_marker = marker(&name, true);
        let Some(end) = after[content_start..].find(&end_marker) else {
            break;
        };
        let content = after[content_start..content_start + end].trim().to_owned();
        rest = &after[content_start + end + end_marker.len()..];
        sections.push((name, content));
    }
    match sections.iter_mut().find(|(name, _)| name == key) {
        Some(section) => section.1 = body.trim().to_owned(),
        None => sections.push((key.to_owned(), body.trim().to_owned())),
    }
    let mut out = header.trim_end().to_owned();
    out.push('\n');
    for (name, content) in sections {
        out.push_str(&format!(
            "\n{}\n{content}\n{}\n",
            marker(&name, false),
            marker(&name, true)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_in_place_and_a_new_one_appended() {
        let first = replace_section("# H", "", "a", "A1");
        let second = replace_section("# H", &first, "b", "B1");
        let third = replace_section("# H2", &second, "a", "A2\n");
        assert_eq!(
            third,
            "# H2\n\n<!-- section a -->\nA2\n<!-- end section a -->\n\n\
             <!-- section b -->\nB1\n<!-- end section b -->\n"
        );
        assert_eq!(replace_section("# H2", &third, "a", "A2"), third);
    }

    #[test]
    fn tool_arguments_become_inspector_flags() {
        assert_eq!(
            tool_args(&serde_json::json!({"path": "/a b", "head": 3})),
            ["--tool-arg", "path=/a b", "--tool-arg", "head=3"]
        );
    }
}
