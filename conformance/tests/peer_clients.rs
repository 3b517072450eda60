//! Our server (the everything fixture, built on mcp-core like every server of ours) driven by
//! clients nobody here wrote: the official TypeScript SDK, the official Python SDK in both
//! protocol eras, and the MCP Inspector CLI, over every transport each of them has.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::PathBuf, process::Stdio, time::Duration};

use mcp_conformance::{peers, process::HttpProcess};
use serde_json::Value;
use tokio::process::Command;

const EVERYTHING: &str = env!("CARGO_BIN_EXE_mcp-everything");
const SIMPLE_TEXT: &str = "This is a simple text response for testing.";
const STATIC_TEXT: &str = "This is the content of the static text resource.";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

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

/// The three targets of a matrix row: stdio (the binary), Streamable HTTP and legacy SSE.
fn targets(server: &HttpProcess) -> [(&'static str, String); 3] {
    [
        ("stdio", EVERYTHING.to_owned()),
        ("http", server.url("/mcp")),
        ("sse", server.url("/sse")),
    ]
}

#[tokio::test]
async fn typescript_sdk_client_over_stdio_http_and_sse() {
    let (node, dir) = blocking(|| {
        (
            peers::node22().unwrap(),
            peers::ensure_node_peers().unwrap(),
        )
    })
    .await;
    let server = HttpProcess::start(EVERYTHING.as_ref(), &[]).await.unwrap();
    for (transport, target) in targets(&server) {
        // Over stdio the arguments after the target are the server's; over HTTP, a token.
        let server_args: &[&str] = if transport == "stdio" {
            &["--log-level", "warn"]
        } else {
            &[]
        };
        let mut command = Command::new(&node);
        command
            .arg(dir.join("client.mjs"))
            .args([transport, &target])
            .args(server_args)
            .env("MCP_PEER_CALLS", calls())
            .env("MCP_PEER_READS", reads());
        let what = format!("TypeScript SDK over {transport}");
        let report: Value = serde_json::from_str(run_peer(command, &what).await.trim()).unwrap();
        check_report(&report, &what, Some("2025-11-25"));
    }
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test]
async fn python_sdk_client_in_both_eras_over_stdio_http_and_sse() {
    let python = blocking(|| peers::python_peer().unwrap()).await;
    let script = peers::python_peers_dir().join("client.py");
    let server = HttpProcess::start(EVERYTHING.as_ref(), &[]).await.unwrap();
    for (transport, target) in targets(&server) {
        for (mode, era) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
            let mut command = Command::new(&python);
            command
                .arg(&script)
                .args([transport, &target])
                .env("MCP_PEER_MODE", mode)
                .env("MCP_PEER_CALLS", calls())
                .env("MCP_PEER_READS", reads());
            let what = format!("Python SDK ({mode}) over {transport}");
            let stdout = run_peer(command, &what).await;
            let report: Value = serde_json::from_str(stdout.trim()).unwrap();
            check_report(&report, &what, Some(era));
        }
    }
    assert!(server.terminate().await.unwrap().success());
}

async fn inspector(node: &PathBuf, target: &[&str], method: &[&str]) -> Value {
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

#[tokio::test]
async fn inspector_cli_over_stdio_http_and_sse() {
    let node = blocking(|| {
        peers::ensure_node_peers().unwrap();
        peers::node22().unwrap()
    })
    .await;
    let server = HttpProcess::start(EVERYTHING.as_ref(), &[]).await.unwrap();
    // The Inspector tells the transport from the target: a command, `/mcp` or `/sse`.
    for (transport, target) in targets(&server) {
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
        let prompt = inspector(
            &node,
            &target,
            &[
                "--method",
                "prompts/get",
                "--prompt-name",
                "test_prompt_with_arguments",
                "--prompt-args",
                "arg1=a",
                "arg2=b",
            ],
        )
        .await;
        assert_eq!(
            prompt["messages"][0]["content"]["text"], "Prompt with arguments: arg1='a', arg2='b'",
            "{transport}"
        );
    }
    assert!(server.terminate().await.unwrap().success());
}
