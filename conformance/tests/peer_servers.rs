//! Our client side (rmcp's client with mcp-core's transports, what the `mcp` client stands on)
//! against servers nobody here wrote: the official reference server `server-everything` and a
//! server built with the official Python SDK, over each transport they offer, in both eras.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{process::Stdio, time::Duration};

use mcp_conformance::peers;
use mcp_core::{
    SseClientOptions,
    testing::{Era, NetworkClient, connect_http, connect_legacy_sse, text, tool_call},
};
use rmcp::{
    model::{ClientConfig, ProtocolVersion, ReadResourceRequestParams, ResourceContents},
    service::{ClientLifecycleMode, serve_client_with_lifecycle},
    transport::TokioChildProcess,
};
use tokio::process::{Child, Command};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

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

#[tokio::test]
async fn reference_server_everything_over_stdio() {
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

#[tokio::test]
async fn python_sdk_server_over_stdio_in_both_eras() {
    let python = blocking(|| peers::python_peer().unwrap()).await;
    for era in [Era::Handshake, Era::Stateless] {
        let mut command = Command::new(&python);
        command
            .arg(peers::python_peers_dir().join("server.py"))
            .arg("stdio");
        let client = stdio_client(command, era).await;
        exercise_python(&client, &format!("stdio {era:?}")).await;
        client.cancel().await.unwrap();
    }
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

#[tokio::test]
async fn python_sdk_server_over_streamable_http_in_both_eras() {
    let server = PythonHttp::start("http").await;
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_http(&server.url("/mcp"), era, None).await.unwrap();
        exercise_python(&client, &format!("http {era:?}")).await;
        client.cancel().await.unwrap();
    }
}

#[tokio::test]
async fn python_sdk_server_over_legacy_sse() {
    let server = PythonHttp::start("sse").await;
    let client = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    exercise_python(&client, "legacy sse").await;
    client.cancel().await.unwrap();
}
