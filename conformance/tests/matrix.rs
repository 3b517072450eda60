//! The interop matrix: our server driven by clients nobody here wrote, and our client side
//! driving servers nobody here wrote, plus the official suite's verdicts on the fixture. The test
//! regenerates `conformance/RESULTS.md` from what it saw, then fails on any red cell.
//!
//! Peers, pinned in `conformance/peers/`: the official TypeScript SDK, the official Python SDK
//! (both protocol eras), the MCP Inspector CLI, the reference server `server-everything`, and a
//! server built with the Python SDK.

use std::process::Stdio;

use mcp_conformance::{
    everything::Everything,
    interop::{self, Cell, Probe, ServerUnderTest, ToolProbe},
    peers,
    process::{HttpProcess, PythonServer},
    suite,
};
use mcp_core::{
    HttpServer, ServeArgs, SseClientOptions, Transport,
    testing::{Era, NetworkClient, connect_http, connect_legacy_sse, text, tool_call},
};
use rmcp::{
    model::{ClientConfig, ProtocolVersion, ReadResourceRequestParams, ResourceContents},
    service::{ClientLifecycleMode, serve_client_with_lifecycle},
    transport::TokioChildProcess,
};
use serde_json::json;
use tokio::process::Command;

const EVERYTHING: &str = env!("CARGO_BIN_EXE_mcp-everything");
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
const STATIC_TEXT: &str = "This is the content of the static text resource.";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
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

async fn python_http_cell(era: Era) {
    let server = PythonServer::start("http").await.unwrap();
    let client = connect_http(&server.url("/mcp"), era, None).await.unwrap();
    exercise_python(&client, &format!("http {era:?}")).await;
    client.cancel().await.unwrap();
}

async fn python_sse_cell() {
    let server = PythonServer::start("sse").await.unwrap();
    let client = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    exercise_python(&client, "legacy sse").await;
    client.cancel().await.unwrap();
}

// ---- The matrix ------------------------------------------------------------------------------

/// A cell whose checks are assertions.
async fn asserted(
    row: &str,
    column: &str,
    work: impl Future<Output = ()> + Send + 'static,
) -> Cell {
    interop::cell(row, column, async {
        work.await;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn interop_matrix_is_all_green_and_recorded_in_results_md() {
    let _alone = crate::one_at_a_time().await;
    let process = HttpProcess::start(EVERYTHING.as_ref(), &[]).await.unwrap();
    let server = ServerUnderTest {
        name: "mcp-everything".to_owned(),
        program: EVERYTHING.into(),
        // Not `--log-level`: the Inspector CLI would take that flag as its own.
        args: Vec::new(),
        base_url: process.url(""),
    };
    let probe = Probe {
        tools: vec![
            "test_simple_text".to_owned(),
            "json_schema_2020_12_tool".to_owned(),
        ],
        call: (
            ToolProbe::new("test_simple_text", json!({})),
            SIMPLE_TEXT.to_owned(),
        ),
        failing_call: ToolProbe::new("test_error_handling", json!({})),
        read: Some(("test://static-text".to_owned(), STATIC_TEXT.to_owned())),
    };
    let ours = interop::peer_client_cells(&server, &probe).await;
    assert!(process.terminate().await.unwrap().success());

    let columns = [
        "stdio, handshake",
        "stdio, stateless",
        "http, handshake",
        "http, stateless",
        "sse, handshake",
    ];
    let theirs = vec![
        asserted(
            "`server-everything` (TypeScript SDK)",
            columns[0],
            reference_everything_cell(),
        )
        .await,
        asserted(
            "Python SDK server",
            columns[0],
            python_stdio_cell(Era::Handshake),
        )
        .await,
        asserted(
            "Python SDK server",
            columns[1],
            python_stdio_cell(Era::Stateless),
        )
        .await,
        asserted(
            "Python SDK server",
            columns[2],
            python_http_cell(Era::Handshake),
        )
        .await,
        asserted(
            "Python SDK server",
            columns[3],
            python_http_cell(Era::Stateless),
        )
        .await,
        asserted("Python SDK server", columns[4], python_sse_cell()).await,
    ];

    let fixture = HttpServer::start(
        mcp_core::per_session(Everything::default),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let listed = suite::list_server_scenarios().await.unwrap();
    let report = suite::run_all(&fixture.url("/mcp")).await.unwrap();
    fixture.shutdown().await.unwrap();

    interop::record_section(
        "mcp-everything",
        &format!(
            "## The fixture (`mcp-everything`, on mcp-core) × peer clients\n\n\
             Written by `cargo test -p mcp-conformance -- --include-ignored matrix::`.\n\n{}",
            interop::grid(&ours, &interop::TRANSPORTS)
        ),
    )
    .unwrap();
    interop::record_section(
        "our-client",
        &format!(
            "## Peer servers × our client side (rmcp with mcp-core's transports)\n\n\
             Written by `cargo test -p mcp-conformance -- --include-ignored matrix::`.\n\n{}",
            interop::grid(&theirs, &columns)
        ),
    )
    .unwrap();
    interop::record_section(
        "suite",
        &format!(
            "## The official suite (`--suite all`) on `mcp-everything`\n\n\
             Written by `cargo test -p mcp-conformance -- --include-ignored matrix::`. \
             {} of {} listed scenarios ran: {} checks SUCCESS, {} FAILURE, {} WARNING, {} INFO.\n\n{}",
            report.scenarios.len(),
            listed.len(),
            report.count("SUCCESS"),
            report.count("FAILURE"),
            report.count("WARNING"),
            report.count("INFO"),
            report.table(),
        ),
    )
    .unwrap();

    let mut failures = interop::failures(&ours);
    failures.extend(interop::failures(&theirs));
    assert!(failures.is_empty(), "red cells:\n{}", failures.join("\n"));
    assert!(
        listed.len() >= 32,
        "the pinned suite lists {} server scenarios",
        listed.len()
    );
    report.all_passed(&listed).unwrap();
}
