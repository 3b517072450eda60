//! The HTTP listener end to end: Streamable HTTP in both protocol eras, legacy SSE through our
//! own client, and every hardening rule tested by attacking it.

use std::time::Duration;

use mcp_core::{
    HttpServer, ServeArgs, SseClientOptions, Transport,
    testing::{Era, NetworkClient, connect_http, connect_legacy_sse, text, tool_call},
};
use rmcp::{
    ServerHandler, handler::server::wrapper::Parameters, model::ProtocolVersion, schemars, tool,
    tool_handler, tool_router,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    text: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    millis: u64,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct RepeatArgs {
    bytes: usize,
}

#[derive(Clone)]
struct Probe;

#[tool_router]
impl Probe {
    #[tool(description = "Returns its input.")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Answers with that many bytes.")]
    fn repeat(&self, Parameters(RepeatArgs { bytes }): Parameters<RepeatArgs>) -> String {
        "z".repeat(bytes)
    }

    #[tool(description = "Panics, like a buggy tool.")]
    fn explode(&self) -> String {
        let empty: Vec<String> = Vec::new();
        empty[0].clone()
    }

    #[tool(description = "Sleeps, then answers.")]
    async fn sleep(&self, Parameters(SleepArgs { millis }): Parameters<SleepArgs>) -> String {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        format!("slept {millis} ms")
    }
}

#[tool_handler(name = "probe")]
impl ServerHandler for Probe {}

fn args(transports: &[Transport]) -> ServeArgs {
    ServeArgs::http("127.0.0.1:0".parse().unwrap(), transports)
}

async fn start(args: ServeArgs) -> HttpServer {
    HttpServer::start(Probe, &args).await.unwrap()
}

async fn echo_round_trip(client: &NetworkClient, word: &str) {
    let tools = client.list_all_tools().await.unwrap();
    let mut names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["echo", "explode", "repeat", "sleep"]);
    let result = client
        .call_tool(tool_call("echo", serde_json::json!({ "text": word })))
        .await
        .unwrap();
    assert_eq!(text(&result), word);
    assert_ne!(result.is_error, Some(true));
}

#[tokio::test]
async fn streamable_http_serves_both_protocol_eras() {
    let server = start(args(&[Transport::Http])).await;
    let handshake = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    assert_eq!(
        handshake.peer_info().unwrap().protocol_version,
        ProtocolVersion::V_2025_11_25
    );
    echo_round_trip(&handshake, "handshake era").await;

    let stateless = connect_http(&server.url("/mcp"), Era::Stateless, None)
        .await
        .unwrap();
    echo_round_trip(&stateless, "stateless era").await;

    handshake.cancel().await.unwrap();
    stateless.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn legacy_sse_round_trip_with_concurrent_sessions() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
                .await
                .unwrap(),
        );
    }
    let calls = clients.iter().enumerate().map(|(i, client)| async move {
        echo_round_trip(client, &format!("session {i}")).await;
    });
    futures::future::join_all(calls).await;
    // The same listener still speaks Streamable HTTP.
    let modern = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    echo_round_trip(&modern, "both on one port").await;
    for client in clients {
        client.cancel().await.unwrap();
    }
    modern.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sse_only_listener_has_no_streamable_endpoint() {
    let server = start(args(&[Transport::Sse])).await;
    let response = reqwest::Client::new()
        .post(server.url("/mcp"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.shutdown().await.unwrap();
}

fn initialize_body() -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "attacker", "version": "1" },
        },
    })
}

/// POSTs `body` to the Streamable HTTP endpoint at `url` as a client would (in `session` when
/// given), and hands back the response unread.
async fn post_mcp(url: &str, session: Option<&str>, body: &serde_json::Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .json(body);
    if let Some(session) = session {
        request = request.header("Mcp-Session-Id", session);
    }
    request.send().await.unwrap()
}

async fn post_initialize(url: &str, headers: &[(&str, String)]) -> (reqwest::StatusCode, String) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .json(&initialize_body());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    // Only read a body that ends on its own: an accepted initialize opens a stream.
    let body = if status.is_success() {
        String::new()
    } else {
        response.text().await.unwrap()
    };
    (status, body)
}

#[tokio::test]
async fn dns_rebinding_hosts_and_foreign_origins_get_403_everywhere() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    let port = server.local_addr().port();
    let evil = [
        vec![("Host", "evil.example.com".to_owned())],
        vec![("Host", format!("evil.example.com:{port}"))],
        vec![
            ("Host", format!("evil.example.com:{port}")),
            ("Origin", "http://evil.example.com".to_owned()),
        ],
        vec![("Origin", "http://evil.example.com".to_owned())],
        vec![("Origin", format!("http://localhost:{}", port + 1))],
        vec![("Origin", "null".to_owned())],
        vec![("Host", format!("localhost:{}", port + 1))],
    ];
    for path in ["/mcp", "/messages?sessionId=x", "/health"] {
        for headers in &evil {
            let (status, body) = post_initialize(&server.url(path), headers).await;
            assert_eq!(status, 403, "{path} {headers:?}");
            assert!(body.contains("not allowed"), "{body}");
        }
    }
    let sse = reqwest::Client::new()
        .get(server.url("/sse"))
        .header("Host", "evil.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 403);

    // What the conformance suite sends for a legitimate client.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        let headers = [("Host", host.clone()), ("Origin", format!("http://{host}"))];
        let (status, _) = post_initialize(&server.url("/mcp"), &headers).await;
        assert!(status.is_success(), "{host}: {status}");
    }
    // The server is still fine.
    let client = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    echo_round_trip(&client, "still serving").await;
    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bearer_token_is_required_on_mcp_routes() {
    let mut serve_args = args(&[Transport::Http, Transport::Sse]);
    serve_args.auth_token = Some("correct horse".to_owned());
    let server = start(serve_args).await;

    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong".to_owned())],
        vec![("Authorization", "Bearer correct hors".to_owned())],
        vec![("Authorization", "Basic Y29ycmVjdCBob3JzZQ==".to_owned())],
    ] {
        let (status, body) = post_initialize(&server.url("/mcp"), &headers).await;
        assert_eq!(status, 401, "{headers:?}");
        assert!(body.contains("Unauthorized"), "{body}");
    }
    let refused = reqwest::get(server.url("/sse")).await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let refused = mcp_core::connect_sse(&server.url("/sse"), SseClientOptions::default()).await;
    assert!(matches!(
        refused,
        Err(mcp_core::SseClientError::Status { status: 401, .. })
    ));

    // Health checks need no token.
    let health = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(health.status(), 200);

    let client = connect_http(&server.url("/mcp"), Era::Handshake, Some("correct horse"))
        .await
        .unwrap();
    echo_round_trip(&client, "authorized").await;
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", "Bearer correct horse".parse().unwrap());
    let options = SseClientOptions {
        headers,
        ..SseClientOptions::default()
    };
    let legacy = connect_legacy_sse(&server.url("/sse"), options)
        .await
        .unwrap();
    echo_round_trip(&legacy, "authorized legacy").await;
    client.cancel().await.unwrap();
    legacy.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_get_413_and_the_server_keeps_serving() {
    let mut serve_args = args(&[Transport::Http, Transport::Sse]);
    serve_args.max_body_bytes = 4096;
    let server = start(serve_args).await;
    let huge = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "echo", "arguments": { "text": "x".repeat(10_000) } },
    });
    for path in ["/mcp", "/messages?sessionId=x"] {
        let response = reqwest::Client::new()
            .post(server.url(path))
            .header("Accept", "application/json, text/event-stream")
            .json(&huge)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
    }
    // Chunked, without a Content-Length to refuse early.
    let chunks = futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1000]))),
    );
    let response = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);

    let client = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    echo_round_trip(&client, "small enough").await;
    client.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn malformed_messages_get_json_rpc_errors_over_http() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    let response = reqwest::Client::new()
        .post(server.url("/mcp"))
        .header("Accept", "application/json, text/event-stream")
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert_eq!(body["id"], serde_json::Value::Null);

    // A live legacy session, then garbage posted to it.
    let legacy = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    let unknown = reqwest::Client::new()
        .post(server.url("/messages?sessionId=nope"))
        .json(&serde_json::json!({"jsonrpc": "2.0", "method": "ping", "id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let missing = reqwest::Client::new()
        .post(server.url("/messages"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    echo_round_trip(&legacy, "after garbage").await;
    legacy.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_posted_to_a_live_sse_session_is_a_parse_error() {
    let server = start(args(&[Transport::Sse])).await;
    // Read the endpoint event by hand to learn the session URL.
    let mut stream = reqwest::get(server.url("/sse")).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("sessionId=") || !seen.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    let endpoint = seen
        .lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(endpoint.starts_with("/messages?sessionId="), "{endpoint}");
    let response = reqwest::Client::new()
        .post(server.url(&endpoint))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert!(body.as_object().unwrap().contains_key("id"));
    let ping = reqwest::Client::new()
        .post(server.url(&endpoint))
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 5, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 202);
    drop(stream);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_tools_outlive_the_request_timeout_but_slow_clients_do_not() {
    let mut serve_args = args(&[Transport::Http, Transport::Sse]);
    serve_args.request_timeout = 1;
    let server = start(serve_args).await;

    // The timeout bounds how long a response takes to start; a tool may work longer.
    let client = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    let result = client
        .call_tool(tool_call("sleep", serde_json::json!({ "millis": 2500 })))
        .await
        .unwrap();
    assert_eq!(text(&result), "slept 2500 ms");
    let legacy = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    let result = legacy
        .call_tool(tool_call("sleep", serde_json::json!({ "millis": 2500 })))
        .await
        .unwrap();
    assert_eq!(text(&result), "slept 2500 ms");

    // A client that announces a body and never sends it is cut off.
    let mut socket = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\"",
        server.local_addr()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("the server must answer a stalled request")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    client.cancel().await.unwrap();
    legacy.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_ends_open_sessions_and_streams() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    let legacy = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    let modern = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    echo_round_trip(&legacy, "before").await;
    echo_round_trip(&modern, "before").await;
    let started = std::time::Instant::now();
    server.shutdown().await.unwrap();
    // Well inside the grace period: nothing was left hanging.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), legacy.waiting())
        .await
        .expect("the legacy client must notice the server is gone");
    assert!(ended.is_ok());
    drop(modern);
}

#[tokio::test]
async fn refuses_non_loopback_addresses_unless_told() {
    let serve_args = ServeArgs::http("0.0.0.0:0".parse().unwrap(), &[Transport::Http]);
    let refused = HttpServer::start(Probe, &serve_args).await;
    assert!(matches!(
        refused,
        Err(mcp_core::ServeError::NotLoopback { .. })
    ));
    let message = refused.err().unwrap().to_string();
    assert!(message.contains("--allow-remote"), "{message}");

    let mut serve_args = serve_args;
    serve_args.allow_remote = true;
    let server = HttpServer::start(Probe, &serve_args).await.unwrap();
    server.shutdown().await.unwrap();

    let stdio_and_http = ServeArgs::http(
        "127.0.0.1:0".parse().unwrap(),
        &[Transport::Stdio, Transport::Http],
    );
    assert!(matches!(
        HttpServer::start(Probe, &stdio_and_http).await,
        Err(mcp_core::ServeError::StdioCombined)
    ));
}

#[tokio::test]
async fn health_reports_ok() {
    let server = start(args(&[Transport::Http])).await;
    let health: serde_json::Value = reqwest::get(server.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_tool_is_answered_over_http_and_sse() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    let modern = connect_http(&server.url("/mcp"), Era::Handshake, None)
        .await
        .unwrap();
    let legacy = connect_legacy_sse(&server.url("/sse"), SseClientOptions::default())
        .await
        .unwrap();
    for client in [&modern, &legacy] {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.call_tool(tool_call("explode", serde_json::json!({}))),
        )
        .await
        .expect("a panicking tool must still be answered");
        assert!(
            answer
                .unwrap_err()
                .to_string()
                .contains("tools/call explode")
        );
        echo_round_trip(client, "after the panic").await;
    }
    modern.cancel().await.unwrap();
    legacy.cancel().await.unwrap();
    server.shutdown().await.unwrap();
}

/// Reads a legacy SSE stream's `endpoint` event: the URL to post to.
async fn sse_endpoint(stream: &mut reqwest::Response) -> String {
    let mut seen = String::new();
    while !seen.contains("sessionId=") || !seen.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    seen.lines()
        .find_map(|line| line.strip_prefix("data: "))
        .unwrap()
        .trim()
        .to_owned()
}

/// Finding 6 of the attack run: 40,000 sessions from one client held 2.49 GB. Sessions are
/// capped (`--max-sessions`), a new one beyond the cap gets 503 with Retry-After, on Streamable
/// HTTP and on legacy SSE alike, and the open ones keep working.
#[tokio::test]
async fn sessions_beyond_the_cap_get_503_with_retry_after() {
    let mut serve_args = args(&[Transport::Http, Transport::Sse]);
    serve_args.max_sessions = 3;
    let server = start(serve_args).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(
            connect_http(&server.url("/mcp"), Era::Handshake, None)
                .await
                .unwrap(),
        );
    }
    let response = post_mcp(&server.url("/mcp"), None, &initialize_body()).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "30");
    assert!(response.text().await.unwrap().contains("--max-sessions"));
    for client in &clients {
        echo_round_trip(client, "still served").await;
    }
    // The stateless era opens no session, so it is not refused.
    let stateless = connect_http(&server.url("/mcp"), Era::Stateless, None)
        .await
        .unwrap();
    echo_round_trip(&stateless, "stateless").await;

    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = reqwest::get(server.url("/sse")).await.unwrap();
        assert_eq!(stream.status(), 200);
        sse_endpoint(&mut stream).await;
        streams.push(stream);
    }
    let refused = reqwest::get(server.url("/sse")).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "30");
    // A session that ends frees its place.
    drop(streams.pop());
    let mut admitted = false;
    for _ in 0..100 {
        let response = reqwest::get(server.url("/sse")).await.unwrap();
        if response.status() == 200 {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "a closed SSE session did not free its place");
    server.shutdown().await.unwrap();
}

/// Finding 11: a request with two Host headers was judged by the first; it is refused (400).
#[tokio::test]
async fn two_host_headers_get_400() {
    let server = start(args(&[Transport::Http, Transport::Sse])).await;
    for path in ["/mcp", "/sse", "/health"] {
        let mut socket = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nHost: evil.example\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
            server.local_addr()
        );
        socket.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
            .await
            .expect("no answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("more than one Host"), "{path}: {answer}");
    }
    server.shutdown().await.unwrap();
}

/// Finding 11: legacy SSE's `/messages` cut bodies at axum's 2 MB although --max-body-bytes is 4
/// MiB. One limit on every endpoint.
#[tokio::test]
async fn one_body_limit_on_every_endpoint() {
    let server = start(args(&[Transport::Sse])).await;
    let mut stream = reqwest::get(server.url("/sse")).await.unwrap();
    let endpoint = sse_endpoint(&mut stream).await;
    let text = "x".repeat(3 * 1024 * 1024);
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}}});
    let accepted = reqwest::Client::new()
        .post(server.url(&endpoint))
        .json(&call)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202, "a 3 MB body under the 4 MiB limit");
    let over = serde_json::json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "x".repeat(5 * 1024 * 1024)}}});
    let refused = reqwest::Client::new()
        .post(server.url(&endpoint))
        .json(&over)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    drop(stream);
    server.shutdown().await.unwrap();
}

/// Finding 6: half-sent requests were held forever (20,000 of them: 406 MB). Headers that do not
/// arrive within the request timeout close the connection, and connections past the cap are
/// closed as soon as they are accepted.
#[tokio::test]
async fn slow_headers_and_too_many_connections_are_cut_off() {
    let mut serve_args = args(&[Transport::Http]);
    serve_args.request_timeout = 1;
    serve_args.max_sessions = 1;
    let cap = serve_args.max_connections();
    let server = start(serve_args).await;

    // Headers begun and never finished: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buffer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read(&mut buffer))
        .await
        .expect("a connection with unfinished headers was held")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buffer[..read]);
    assert!(read == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // The cap: `cap` connections are held (each until its own header timeout), the next ones
    // are closed at once, without an answer.
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(
            tokio::net::TcpStream::connect(server.local_addr())
                .await
                .unwrap(),
        );
    }
    let mut extra = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(20), extra.read(&mut buffer))
        .await
        .expect("a connection past the cap was held");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(held);
    // And the server still answers.
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(response) = reqwest::get(server.url("/health")).await
            && response.status() == 200
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy);
    server.shutdown().await.unwrap();
}

/// Finding 6: a legacy SSE client that never reads its stream made the server keep every answer
/// (600 posts of 1.5 MB: 984 MB). Once its queue is full the session is dropped.
#[tokio::test]
async fn an_sse_client_that_does_not_read_is_dropped() {
    let server = start(args(&[Transport::Sse])).await;
    let mut stream = reqwest::get(server.url("/sse")).await.unwrap();
    let endpoint = sse_endpoint(&mut stream).await;
    let client = reqwest::Client::new();
    // The handshake, reading its answer; after it, nothing more is read.
    let initialize = client
        .post(server.url(&endpoint))
        .json(&initialize_body())
        .send()
        .await
        .unwrap();
    assert_eq!(initialize.status(), 202);
    let mut seen = String::new();
    while !seen.contains("\"id\":1") {
        let chunk = stream.chunk().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let initialized = client
        .post(server.url(&endpoint))
        .json(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(initialized.status(), 202);
    // Large answers, never read: the socket's buffers fill, then the session's queue.
    let text = "y".repeat(1024 * 1024);
    let mut ended = false;
    for id in 0..600 {
        let call = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}});
        let status = client
            .post(server.url(&endpoint))
            .json(&call)
            .send()
            .await
            .unwrap()
            .status();
        if status == 404 {
            ended = true;
            break;
        }
        assert_eq!(status, 202);
    }
    assert!(
        ended,
        "600 answers of 1 MB were queued for a client that reads nothing"
    );
    drop(stream);
    server.shutdown().await.unwrap();
}

/// Finding 6, on Streamable HTTP: a client that does not read its answers made the server hold
/// them as long as the connection stayed open (any number of connections, each with an answer of
/// any size). A connection whose client takes nothing for the request timeout while an answer
/// waits is closed, and the answer dropped.
#[tokio::test]
async fn a_streamable_http_client_that_does_not_read_is_dropped() {
    const ANSWER: usize = 32 * 1024 * 1024;
    let mut serve_args = args(&[Transport::Http]);
    serve_args.request_timeout = 1;
    let server = start(serve_args).await;
    let url = server.url("/mcp");
    let initialize = post_mcp(&url, None, &initialize_body()).await;
    assert_eq!(initialize.status(), 200);
    let session = initialize.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(initialize.text().await.unwrap().contains("\"id\":1"));
    let initialized = post_mcp(
        &url,
        Some(&session),
        &serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(initialized.status(), 202);

    // A call whose answer is far larger than the sockets' buffers, on a connection whose reader
    // takes nothing for well past the timeout.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.local_addr()).await.unwrap();
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "repeat", "arguments": {"bytes": ANSWER}}})
    .to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\n\
         Content-Length: {}\r\n\r\n{call}",
        server.local_addr(),
        call.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Now read what comes: the connection ends before the answer does.
    let mut buffer = vec![0; 64 * 1024];
    let mut received = 0;
    while received < ANSWER {
        match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buffer))
            .await
            .expect("the connection was held without the answer being sent")
        {
            Ok(0) | Err(_) => break,
            Ok(read) => received += read,
        }
    }
    assert!(
        received < ANSWER,
        "the whole answer was kept for a client that read nothing for 5 s"
    );

    // The session lives on: a reading client gets its answers.
    let echoed = post_mcp(
        &url,
        Some(&session),
        &serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "still here"}}}),
    )
    .await;
    assert_eq!(echoed.status(), 200);
    assert!(echoed.text().await.unwrap().contains("still here"));
    server.shutdown().await.unwrap();
}

/// Per-session bound: a session has at most MAX_IN_FLIGHT tool calls running; one more is
/// answered at once with an error that says so, and the others finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_runs_at_most_max_in_flight_requests() {
    let client = std::sync::Arc::new(mcp_core::testing::connect(Probe).await.unwrap());
    let extra = 5;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..mcp_core::MAX_IN_FLIGHT + extra {
        let client = client.clone();
        calls.spawn(async move {
            client
                .call_tool(tool_call("sleep", serde_json::json!({ "millis": 6000 })))
                .await
        });
    }
    let (mut slept, mut refused) = (0, 0);
    while let Some(joined) = calls.join_next().await {
        match joined.unwrap() {
            Ok(result) if text(&result) == "slept 6000 ms" => slept += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(error) => {
                assert!(error.to_string().contains("requests running"), "{error}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, extra);
    assert_eq!(slept, mcp_core::MAX_IN_FLIGHT);
}

/// SEP-2575: a request in the 2026-07-28 revision for a method that revision removed gets 404
/// and JSON-RPC -32601 with its own id, whatever its params; the handshake era is untouched.
#[tokio::test]
async fn methods_removed_in_2026_are_answered_404_method_not_found() {
    let server = start(args(&[Transport::Http])).await;
    let url = server.url(mcp_core::MCP_PATH);
    let meta = serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    for (id, method) in [
        "initialize",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
    ]
    .into_iter()
    .enumerate()
    {
        let response = reqwest::Client::new()
            .post(&url)
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", method)
            .json(&serde_json::json!({
                "jsonrpc": "2.0", "id": 500 + id, "method": method, "params": { "_meta": meta }
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            reqwest::StatusCode::NOT_FOUND,
            "{method}"
        );
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], -32601, "{method}: {body}");
        assert_eq!(body["id"], 500 + id, "{method}: {body}");
    }
    // A well-formed initialize (the old shape, read whole) is removed just the same.
    let (status, body) =
        post_initialize(&url, &[("MCP-Protocol-Version", "2026-07-28".to_owned())]).await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("-32601"), "{body}");
    // The handshake era still starts with initialize.
    let (status, body) = post_initialize(&url, &[]).await;
    assert!(status.is_success(), "{status} {body}");
    server.shutdown().await.unwrap();
}
