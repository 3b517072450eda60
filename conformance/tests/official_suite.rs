//! The official conformance suite, run for real: it catches a server without DNS-rebinding
//! protection, and the generic scenarios hold over every listener configuration. (The whole suite
//! on the fixture runs in `matrix.rs`, which records it in RESULTS.md.)

use mcp_conformance::{
    everything::Everything,
    suite::{self, GENERIC_SERVER_SCENARIOS},
};
use mcp_core::{HttpServer, ServeArgs, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn the_suite_catches_a_server_without_dns_rebinding_protection() {
    // Proof that the harness reports real failures: the same fixture behind rmcp's bare
    // Streamable HTTP service with host checks turned off fails the rebinding scenario.
    use rmcp::transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    };
    let service = StreamableHttpService::new(
        || Ok(Everything::default()),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().disable_allowed_hosts(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let app = axum::Router::new().route_service("/mcp", service);
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    let report = suite::run_scenarios(&url, &["dns-rebinding-protection", "ping"])
        .await
        .unwrap();
    task.abort();
    let failed: Vec<&str> = report.failed().iter().map(|(name, _)| *name).collect();
    assert_eq!(failed, ["dns-rebinding-protection"], "{}", report.table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn generic_scenarios_pass_over_every_listener_configuration() {
    // The same listener code every real server uses, with legacy SSE beside it and a token-less
    // default: the generic scenarios must hold in each.
    let args = ServeArgs::http(
        "127.0.0.1:0".parse().unwrap(),
        &[Transport::Http, Transport::Sse],
    );
    let server = HttpServer::start(mcp_core::per_session(Everything::default), &args)
        .await
        .unwrap();
    let report = suite::run_scenarios(&server.url("/mcp"), &GENERIC_SERVER_SCENARIOS)
        .await
        .unwrap();
    server.shutdown().await.unwrap();
    report.all_passed(&GENERIC_SERVER_SCENARIOS).unwrap();
}
