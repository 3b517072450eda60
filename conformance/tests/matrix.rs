//! The interop matrix: our server driven by clients nobody here wrote, and our client side
//! driving servers nobody here wrote, plus the official suite's verdicts on the fixture. The test
//! regenerates `conformance/RESULTS.md` from what it saw, then fails on any red cell.
//!
//! Peers, pinned in `conformance/peers/`: the official TypeScript SDK, the official Python SDK
//! (both protocol eras), the MCP Inspector CLI, the reference server `server-everything`, and a
//! server built with the Python SDK.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use mcp_conformance::{everything::Everything, peers, process::HttpProcess, suite};
use mcp_core::{
    HttpServer, ServeArgs, SseClientOptions, Transport,
    testing::{Era, NetworkClient, connect_http, connect_legacy_sse, text, tool_call},
};
use rmcp::{
    model::{ClientConfig, ProtocolVersion, ReadResourceRequestParams, ResourceContents},
    service::{ClientLifecycleMode, serve_client_with_lifecycle},
    transport::TokioChildProcess,
};
use serde_json::Value;
use tokio::process::{Child, Command};

const EVERYTHING: &str = env!("CARGO_BIN_EXE_mcp-everything");
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
const STATIC_TEXT: &str = "This is the content of the static text resource.";
const TRANSPORTS: [&str; 3] = ["stdio", "http", "sse"];

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ---- Our server, peer clients ---------------------------------------------------------------

/// Runs a peer and returns its stdout, failing the test with its stderr if it fails.
async fn run_peer(mut command: Command, what: &str) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        command.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{what} hung"))
    .unwrap_or_else(|error| panic!("{what} did not start: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The checks every cell of the matrix makes on an SDK client's report.
fn check_report(report: &Value, what: &str, era: Option<&str>) {
    if let Some(era) = era {
        assert_eq!(report["protocolVersion"], era, "{what}");
    }
    assert_eq!(report["server"]["name"], "mcp-everything", "{what}");
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"test_simple_text"), "{what}: {tools:?}");
    assert!(tools.len() >= 14, "{what}: {tools:?}");
    assert_eq!(
        report["calls"][0]["result"]["content"][0]["text"], SIMPLE_TEXT,
        "{what}"
    );
    assert_eq!(report["calls"][1]["result"]["isError"], true, "{what}");
    assert_eq!(
        report["reads"][0]["result"]["contents"][0]["text"], STATIC_TEXT,
        "{what}"
    );
}

fn calls() -> String {
    serde_json::json!([
        {"name": "test_simple_text", "arguments": {}},
        {"name": "test_error_handling", "arguments": {}},
    ])
    .to_string()
}

fn reads() -> String {
    serde_json::json!(["test://static-text"]).to_string()
}

/// What a peer client connects to: the binary for stdio, an endpoint of `base` otherwise.
fn target(base: &str, transport: &str) -> String {
    match transport {
        "stdio" => EVERYTHING.to_owned(),
        "http" => format!("{base}/mcp"),
        _ => format!("{base}/sse"),
    }
}

async fn typescript_cell(base: String, transport: &'static str) {
    let (node, dir) = blocking(|| {
        (
            peers::node22().unwrap(),
            peers::ensure_node_peers().unwrap(),
        )
    })
    .await;
    // Over stdio the arguments after the target are the server's; over HTTP, a token.
    let server_args: &[&str] = if transport == "stdio" {
        &["--log-level", "warn"]
    } else {
        &[]
    };
    let mut command = Command::new(&node);
    command
        .arg(dir.join("client.mjs"))
        .args([transport, &target(&base, transport)])
        .args(server_args)
        .env("MCP_PEER_CALLS", calls())
        .env("MCP_PEER_READS", reads());
    let what = format!("TypeScript SDK over {transport}");
    let report: Value = serde_json::from_str(run_peer(command, &what).await.trim()).unwrap();
    check_report(&report, &what, Some("2025-11-25"));
}

async fn python_cell(base: String, transport: &'static str, mode: &'static str, era: &'static str) {
    let python = blocking(|| peers::python_peer().unwrap()).await;
    let mut command = Command::new(&python);
    command
        .arg(peers::python_peers_dir().join("client.py"))
        .args([transport, &target(&base, transport)])
        .env("MCP_PEER_MODE", mode)
        .env("MCP_PEER_CALLS", calls())
        .env("MCP_PEER_READS", reads());
    let what = format!("Python SDK ({mode}) over {transport}");
    let report: Value = serde_json::from_str(run_peer(command, &what).await.trim()).unwrap();
    check_report(&report, &what, Some(era));
}

async fn inspector(node: &Path, target: &[&str], method: &[&str]) -> Value {
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
    serde_json::from_str(run_peer(command, &what).await.trim())
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

async fn inspector_cell(base: String, transport: &'static str) {
    let node = blocking(|| {
        peers::ensure_node_peers().unwrap();
        peers::node22().unwrap()
    })
    .await;
    // The Inspector tells the transport from the target: a command, `/mcp` or `/sse`.
    let target = target(&base, transport);
    let target = [target.as_str()];
    let tools = inspector(&node, &target, &["--method", "tools/list"]).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"json_schema_2020_12_tool"),
        "{transport}: {names:?}"
    );
    let called = inspector(
        &node,
        &target,
        &["--method", "tools/call", "--tool-name", "test_simple_text"],
    )
    .await;
    assert_eq!(called["content"][0]["text"], SIMPLE_TEXT, "{transport}");
    let read = inspector(
        &node,
        &target,
        &["--method", "resources/read", "--uri", "test://static-text"],
    )
    .await;
    assert_eq!(read["contents"][0]["text"], STATIC_TEXT, "{transport}");
}

// ---- Peer servers, our client side ----------------------------------------------------------

fn lifecycle(era: Era) -> ClientLifecycleMode {
    match era {
        Era::Handshake => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    }
}

async fn stdio_client(mut command: Command, era: Era) -> NetworkClient {
    command.stderr(Stdio::null());
    let transport = TokioChildProcess::new(command).unwrap();
    serve_client_with_lifecycle(ClientConfig::default(), transport, lifecycle(era))
        .await
        .unwrap()
}

async fn read_text(client: &NetworkClient, uri: &str) -> String {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri.to_owned()))
        .await
        .unwrap();
    match &result.contents[0] {
        ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{uri}: expected text, got {other:?}"),
    }
}

/// List, call and read against the Python peer server.
async fn exercise_python(client: &NetworkClient, what: &str) {
    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(tools, ["add", "echo"], "{what}");
    let echoed = client
        .call_tool(tool_call("echo", serde_json::json!({"text": "über ✓"})))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "über ✓", "{what}");
    let sum = client
        .call_tool(tool_call("add", serde_json::json!({"a": 2, "b": 40})))
        .await
        .unwrap();
    assert_eq!(text(&sum), "42", "{what}");
    let bad = client
        .call_tool(tool_call("add", serde_json::json!({"a": "two", "b": 40})))
        .await;
    assert!(
        bad.as_ref().is_err() || bad.as_ref().unwrap().is_error == Some(true),
        "{what}: wrong argument types must be refused: {bad:?}"
    );
    assert_eq!(
        read_text(client, "peer://greeting").await,
        "Hello from the Python SDK.",
        "{what}"
    );
}

async fn reference_everything_cell() {
    let node = blocking(|| {
        peers::ensure_node_peers().unwrap();
        peers::node22().unwrap()
    })
    .await;
    let mut command = Command::new(node);
    command
        .arg(peers::node_bin("mcp-server-everything"))
        .arg("stdio");
    let client = stdio_client(command, Era::Handshake).await;
    let info = client.peer_info().unwrap();
    assert_eq!(
        info.server_info.as_ref().unwrap().name,
        "mcp-servers/everything"
    );

    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"), "{tools:?}");
    let echoed = client
        .call_tool(tool_call(
            "echo",
            serde_json::json!({"message": "from rmcp"}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "Echo: from rmcp");
    let sum = client
        .call_tool(tool_call("get-sum", serde_json::json!({"a": 2, "b": 3})))
        .await
        .unwrap();
    assert!(text(&sum).contains('5'), "{}", text(&sum));

    let resources = client.list_all_resources().await.unwrap();
    let first = resources
        .first()
        .expect("the reference server lists resources");
    let read = client
        .read_resource(ReadResourceRequestParams::new(first.uri.clone()))
        .await
        .unwrap();
    assert!(!read.contents.is_empty());
    let prompts = client.list_all_prompts().await.unwrap();
    assert!(!prompts.is_empty());
    client.cancel().await.unwrap();
}

async fn python_stdio_cell(era: Era) {
    let python = blocking(|| peers::python_peer().unwrap()).await;
    let mut command = Command::new(&python);
    command
        .arg(peers::python_peers_dir().join("server.py"))
        .arg("stdio");
    let client = stdio_client(command, era).await;
    exercise_python(&client, &format!("stdio {era:?}")).await;
    client.cancel().await.unwrap();
}

/// The Python peer serving HTTP on a free port; killed when dropped.
struct PythonHttp {
    _child: Child,
    port: u16,
}

impl PythonHttp {
    async fn start(kind: &str) -> Self {
        let python = blocking(|| peers::python_peer().unwrap()).await;
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let child = Command::new(python)
            .arg(peers::python_peers_dir().join("server.py"))
            .args([kind, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "the Python {kind} server did not start listening"
        );
        Self {
            _child: child,
            port,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn python_http_cell(era: Era) {
    let server = PythonHttp::start("http").await;
    let client = connect_http(&server.url("/mcp"), era, None).await.unwrap();
    exercise_python(&client, &format!("http {era:?}")).await;
    client.cancel().await.unwrap();
}

async fn python_sse_cell() {
    let server = PythonHttp::start("sse").await;
    let client = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    exercise_python(&client, "legacy sse").await;
    client.cancel().await.unwrap();
}

// ---- The matrix ------------------------------------------------------------------------------

/// One cell: what ran, and why it failed if it did.
struct Cell {
    row: String,
    column: String,
    failure: Option<String>,
}

/// Runs a cell in a task of its own, so a failing assertion fails that cell only.
async fn cell(row: &str, column: &str, work: impl Future<Output = ()> + Send + 'static) -> Cell {
    let failure = match tokio::spawn(work).await {
        Ok(()) => None,
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

fn grid(cells: &[Cell], columns: &[&str]) -> String {
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

/// The pinned peers and their versions, from the lock and requirements files.
fn pinned_versions() -> Vec<String> {
    let lock: Value = serde_json::from_str(
        &std::fs::read_to_string(peers::node_peers_dir().join("package-lock.json")).unwrap(),
    )
    .unwrap();
    let mut versions: Vec<String> = lock["packages"][""]["dependencies"]
        .as_object()
        .unwrap()
        .keys()
        .map(|name| {
            let version = lock["packages"][format!("node_modules/{name}")]["version"]
                .as_str()
                .unwrap_or("?");
            format!("`{name}` {version} (npm)")
        })
        .collect();
    let requirements =
        std::fs::read_to_string(peers::python_peers_dir().join("requirements.txt")).unwrap();
    versions.extend(
        requirements
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| format!("`{}` (PyPI)", line.trim())),
    );
    versions
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix_is_all_green_and_recorded_in_results_md() {
    let server = HttpProcess::start(EVERYTHING.as_ref(), &[]).await.unwrap();
    let base = server.url("");
    let mut ours = Vec::new();
    for transport in TRANSPORTS {
        let b = || base.clone();
        ours.push(
            cell(
                "TypeScript SDK (2025-11-25)",
                transport,
                typescript_cell(b(), transport),
            )
            .await,
        );
        ours.push(
            cell(
                "Python SDK, auto (2026-07-28)",
                transport,
                python_cell(b(), transport, "auto", "2026-07-28"),
            )
            .await,
        );
        ours.push(
            cell(
                "Python SDK, legacy (2025-11-25)",
                transport,
                python_cell(b(), transport, "legacy", "2025-11-25"),
            )
            .await,
        );
        ours.push(
            cell(
                "MCP Inspector CLI",
                transport,
                inspector_cell(b(), transport),
            )
            .await,
        );
    }
    assert!(server.terminate().await.unwrap().success());

    let columns = [
        "stdio, handshake",
        "stdio, stateless",
        "http, handshake",
        "http, stateless",
        "sse, handshake",
    ];
    let theirs = vec![
        cell(
            "`server-everything` (TypeScript SDK)",
            columns[0],
            reference_everything_cell(),
        )
        .await,
        cell(
            "Python SDK server",
            columns[0],
            python_stdio_cell(Era::Handshake),
        )
        .await,
        cell(
            "Python SDK server",
            columns[1],
            python_stdio_cell(Era::Stateless),
        )
        .await,
        cell(
            "Python SDK server",
            columns[2],
            python_http_cell(Era::Handshake),
        )
        .await,
        cell(
            "Python SDK server",
            columns[3],
            python_http_cell(Era::Stateless),
        )
        .await,
        cell("Python SDK server", columns[4], python_sse_cell()).await,
    ];

    let fixture = HttpServer::start(
        Everything::default(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let listed = suite::list_server_scenarios().await.unwrap();
    let report = suite::run_all(&fixture.url("/mcp")).await.unwrap();
    fixture.shutdown().await.unwrap();

    let results = format!(
        "# Conformance results\n\n\
         Regenerated by `cargo test -p mcp-conformance --test matrix` (part of `cargo test --workspace`); \
         do not edit by hand. Each cell lists the tools, calls a tool and a failing tool, and reads a \
         resource; the Inspector cells list, call and read.\n\n\
         Pinned peers: {}.\n\n\
         ## Our server (`mcp-everything`, on mcp-core) × peer clients\n\n{}\n\
         ## Peer servers × our client side (rmcp with mcp-core's transports)\n\n{}\n\
         ## The official suite (`--suite all`) on `mcp-everything`\n\n\
         {} of {} listed scenarios ran: {} checks SUCCESS, {} FAILURE, {} WARNING, {} INFO.\n\n{}",
        pinned_versions().join(", "),
        grid(&ours, &TRANSPORTS),
        grid(&theirs, &columns),
        report.scenarios.len(),
        listed.len(),
        report.count("SUCCESS"),
        report.count("FAILURE"),
        report.count("WARNING"),
        report.count("INFO"),
        report.table(),
    );
    std::fs::write(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"),
        results,
    )
    .unwrap();

    let failures: Vec<String> = ours
        .iter()
        .chain(&theirs)
        .filter_map(|c| {
            c.failure
                .as_ref()
                .map(|f| format!("{} / {}: {f}", c.row, c.column))
        })
        .collect();
    assert!(failures.is_empty(), "red cells:\n{}", failures.join("\n"));
    assert!(
        listed.len() >= 32,
        "the pinned suite lists {} server scenarios",
        listed.len()
    );
    report.all_passed(&listed).unwrap();
}
