//! The official suite's client scenarios, run against `mcp-conformance-client` (built on this
//! crate's library); the verdicts go to a section of `conformance/RESULTS.md`.

use mcp_conformance::{interop, suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn the_official_client_scenarios_pass_and_are_recorded() {
    let client = env!("CARGO_BIN_EXE_mcp-conformance-client");
    let report = suite::run_client_scenarios(client, &suite::CLIENT_SCENARIOS)
        .await
        .unwrap();
    interop::record_section(
        "mcp-client",
        &format!(
            "## Our client (`mcp-client`) × the official suite's client scenarios\n\n\
             Written by `cargo test -p mcp-client -- --include-ignored conformance::`: the suite serves each \
             scenario and runs `mcp-conformance-client <url>`. {} checks SUCCESS, {} FAILURE, {} \
             WARNING.\n\n{}",
            report.count("SUCCESS"),
            report.count("FAILURE"),
            report.count("WARNING"),
            report.table()
        ),
    )
    .unwrap();
    report.all_passed(&suite::CLIENT_SCENARIOS).unwrap();
}
