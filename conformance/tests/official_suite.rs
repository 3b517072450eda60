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
    let _alone = crate::one_at_a_time().await;
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
    let _alone = crate::one_at_a_time().await;
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

/// The 0.2 line on the fixture, `--requirements 2026-07-28` (every required scenario, the Tasks
/// extension's and the pending ones) and `--requirements 2025-11-25`: what fails is exactly what
/// `expected-failures.txt` lists (nothing, today), recorded in RESULTS.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn the_2026_suite_on_the_fixture_meets_its_baseline() {
    let _alone = crate::one_at_a_time().await;
    let server = HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let url = server.url("/mcp");
    let mut body = String::from(
        "## The official suite's 0.2 line (`--requirements`) on `mcp-everything`\n\n\
         Written by `cargo test -p mcp-conformance -- --include-ignored \
         official_suite::the_2026_suite`. A scenario passes when none of its checks is a FAILURE \
         or WARNING; what may fail is in `expected-failures.txt`.\n",
    );
    let baseline = mcp_conformance::suite::Baseline::load().unwrap();
    let mut surprises = Vec::new();
    for revision in ["2026-07-28", "2025-11-25"] {
        let report = suite::run_requirements(&url, revision).await.unwrap();
        assert!(
            report.scenarios.len() >= if revision == "2025-11-25" { 31 } else { 50 },
            "{revision}: only {} scenarios ran\n{}",
            report.scenarios.len(),
            report.table()
        );
        body.push_str(&format!(
            "\n### `--requirements {revision}`\n\n{} scenarios ran: {} checks SUCCESS, {} FAILURE, \
             {} WARNING, {} INFO.\n\n{}",
            report.scenarios.len(),
            report.count("SUCCESS"),
            report.count("FAILURE"),
            report.count("WARNING"),
            report.count("INFO"),
            report.table()
        ));
        if let Err(surprise) = baseline.check("mcp-everything", revision, &report) {
            surprises.push(surprise);
        }
    }
    server.shutdown().await.unwrap();
    mcp_conformance::interop::record_section("suite-2026", &body).unwrap();
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}
