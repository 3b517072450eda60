//! The `hello` binary end to end, as hosts run it: spawned over stdio, and as an HTTP listener
//! serving Streamable HTTP and legacy SSE, with our client side (rmcp + mcp-core) and with the
//! official TypeScript SDK as peers, in both protocol eras.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use mcp_conformance::{peers, process::HttpProcess, suite};
use mcp_core::{
    SseClientOptions,
    testing::{Era, NetworkClient, connect_http, connect_legacy_sse, text, tool_call},
};
use rmcp::{
    model::{ClientConfig, ProtocolVersion},
    service::{ClientLifecycleMode, serve_client_with_lifecycle},
    transport::TokioChildProcess,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");

/// Lists the tools and calls both, as any host would first do.
async fn exercise(client: &NetworkClient) {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["add", "greet"]);
    let greeting = client
        .call_tool(tool_call(
            "greet",
            serde_json::json!({"name": "Ada", "language": "fr"}),
        ))
        .await
        .unwrap();
    assert_eq!(text(&greeting), "Bonjour, Ada!");
    let sum = client
        .call_tool(tool_call("add", serde_json::json!({"a": 40, "b": 2})))
        .await
        .unwrap();
    assert_eq!(text(&sum), "42");
    let refused = client
        .call_tool(tool_call(
            "greet",
            serde_json::json!({"name": "Ada", "language": "xx"}),
        ))
        .await
        .unwrap();
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("use en, fr or de"));
}

#[tokio::test]
async fn stdio_with_rmcp_in_both_eras() {
    let stateless = ClientLifecycleMode::Discover {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
    };
    for lifecycle in [ClientLifecycleMode::Initialize, stateless] {
        let mut command = Command::new(HELLO);
        command.stderr(Stdio::null());
        let transport = TokioChildProcess::new(command).unwrap();
        let client = serve_client_with_lifecycle(ClientConfig::default(), transport, lifecycle)
            .await
            .unwrap();
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
}

/// `hello` on piped stdio, with its stdin and a line reader over its stdout. It logs at `trace`
/// (to stderr), so any log line that strayed onto stdout would break the JSON checks.
fn spawn_stdio() -> (Child, ChildStdin, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(HELLO)
        .args(["--log-level", "trace"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, stdin, stdout)
}

/// Raw JSON-RPC over the binary's stdin/stdout, including what a broken client would send.
#[tokio::test]
async fn stdio_answers_bad_input_and_keeps_serving() {
    let (mut child, mut stdin, mut stdout) = spawn_stdio();
    let mut exchange = async |line: &str| -> serde_json::Value {
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .expect("the server must answer")
            .unwrap()
            .expect("stdout closed");
        serde_json::from_str(&answer).expect("stdout carries only JSON-RPC")
    };

    let init = exchange(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "hello");

    let garbage = exchange("{this is not json").await;
    assert_eq!(garbage["error"]["code"], -32700);
    assert!(garbage.as_object().unwrap().contains_key("id"));
    assert_eq!(garbage["id"], serde_json::Value::Null);

    let unknown = exchange(r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method"}"#).await;
    assert_eq!(unknown["error"]["code"], -32601);
    assert_eq!(unknown["id"], 2);

    let wrong_type = exchange(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"add","arguments":{"a":"forty","b":2}}}"#).await;
    assert_eq!(wrong_type["id"], 3);
    assert_eq!(wrong_type["result"]["isError"], true);
    let message = wrong_type["result"]["content"][0]["text"].as_str().unwrap();
    assert!(message.contains("invalid type"), "{message}");

    let missing = exchange(r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"greet","arguments":{}}}"#).await;
    assert_eq!(missing["result"]["isError"], true);
    assert!(
        missing["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("name")
    );

    let no_tool = exchange(
        r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
    )
    .await;
    assert_eq!(no_tool["id"], 5);
    assert!(no_tool.get("error").is_some());

    let bad_params = exchange(r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":7}"#).await;
    assert_eq!(bad_params["error"]["code"], -32602);
    assert_eq!(bad_params["id"], 6);

    // Still serving after all that.
    let ok = exchange(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}"#).await;
    assert_eq!(ok["result"]["content"][0]["text"], "3");

    // End of input ends the server cleanly.
    drop(stdin);
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the server must exit at end of input")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// A `hello` HTTP listener (Streamable HTTP and legacy SSE) on a free port.
async fn start_http(extra: &[&str]) -> HttpProcess {
    HttpProcess::start(HELLO.as_ref(), extra).await.unwrap()
}

#[tokio::test]
async fn http_and_sse_with_our_clients_then_sigterm() {
    let server = start_http(&[]).await;
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_http(&server.url("/mcp"), era, None).await.unwrap();
        exercise(&client).await;
        client.cancel().await.unwrap();
    }
    let legacy = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    exercise(&legacy).await;

    // A web page on another origin cannot drive it (DNS rebinding / CSRF).
    let refused = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("Origin", "https://evil.example.com")
        .header("Accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // SIGTERM with a legacy session still open: a clean, prompt exit.
    let started = Instant::now();
    let status = server.terminate().await.unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(8));
    drop(legacy);
}

#[tokio::test]
async fn stdio_server_exits_cleanly_on_sigterm_and_sigint() {
    for signal in ["-TERM", "-INT"] {
        let (mut child, mut stdin, mut stdout) = spawn_stdio();
        stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
            .await
            .unwrap();
        let pong = stdout.next_line().await.unwrap().unwrap();
        assert!(pong.contains("\"id\":1"), "{pong}");
        let pid = child.id().unwrap().to_string();
        let sent = Command::new("kill")
            .args([signal, &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the stdio server must exit on a signal while stdin is still open")
            .unwrap();
        assert!(status.success(), "{signal}: {status}");
        // Nothing but protocol messages ever reached stdout.
        assert_eq!(stdout.next_line().await.unwrap(), None);
        drop(stdin);
    }
}

// ---- The official TypeScript SDK as the client --------------------------------------------

fn ts_calls() -> String {
    serde_json::json!([
        {"name": "greet", "arguments": {"name": "Ada", "language": "de"}},
        {"name": "greet", "arguments": {"name": "Ada", "language": "xx"}},
        {"name": "add", "arguments": {"a": "forty", "b": 2}},
        {"name": "add", "arguments": {"a": 9007199254740000i64, "b": 1}},
    ])
    .to_string()
}

async fn run_ts_client(args: &[&str]) -> std::process::Output {
    let (node, dir) = tokio::task::spawn_blocking(|| {
        let node = peers::node22().unwrap();
        (node, peers::ensure_node_peers().unwrap())
    })
    .await
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(node)
            .arg(dir.join("client.mjs"))
            .args(args)
            .env("MCP_PEER_CALLS", ts_calls())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the TypeScript client must finish")
    .expect("node is needed for the TypeScript SDK peer tests")
}

fn check_ts_report(output: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "TypeScript client failed: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["protocolVersion"], "2025-11-25");
    assert_eq!(report["server"]["name"], "hello");
    let mut tools: Vec<&str> = report["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(tools, ["add", "greet"]);
    let calls = report["calls"].as_array().unwrap();
    assert_eq!(calls[0]["result"]["content"][0]["text"], "Hallo, Ada!");
    assert_eq!(calls[1]["result"]["isError"], true);
    assert!(
        calls[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("unknown language")
    );
    assert_eq!(calls[2]["result"]["isError"], true, "{}", calls[2]);
    assert_eq!(calls[3]["result"]["content"][0]["text"], "9007199254740001");
}

#[tokio::test]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn typescript_sdk_over_stdio() {
    let output = run_ts_client(&["stdio", HELLO, "--log-level", "warn"]).await;
    check_ts_report(&output);
}

#[tokio::test]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn typescript_sdk_over_streamable_http_and_legacy_sse() {
    let server = start_http(&[]).await;
    check_ts_report(&run_ts_client(&["http", &server.url("/mcp")]).await);
    check_ts_report(&run_ts_client(&["sse", &server.url("/sse")]).await);
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn typescript_sdk_with_a_bearer_token() {
    let server = start_http(&["--auth-token", "tea-for-two"]).await;
    check_ts_report(&run_ts_client(&["http", &server.url("/mcp"), "tea-for-two"]).await);
    check_ts_report(&run_ts_client(&["sse", &server.url("/sse"), "tea-for-two"]).await);
    for transport in ["http", "sse"] {
        let path = if transport == "http" { "/mcp" } else { "/sse" };
        let refused = run_ts_client(&[transport, &server.url(path), "wrong"]).await;
        assert!(
            !refused.status.success(),
            "{transport} with a wrong token must fail"
        );
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("401") || stderr.contains("Unauthorized"),
            "{stderr}"
        );
    }
    // And our own client with the token.
    let client = connect_http(&server.url("/mcp"), Era::Handshake, Some("tea-for-two"))
        .await
        .unwrap();
    exercise(&client).await;
    client.cancel().await.unwrap();
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn passes_the_official_suites_generic_server_scenarios() {
    let server = start_http(&[]).await;
    let report = suite::run_scenarios(&server.url("/mcp"), &suite::GENERIC_SERVER_SCENARIOS)
        .await
        .unwrap();
    report.all_passed(&suite::GENERIC_SERVER_SCENARIOS).unwrap();
    assert!(server.terminate().await.unwrap().success());
}
