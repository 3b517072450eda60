//! The official suite's client scenarios, run against `mcp-conformance-client` (built on this
//! crate's library): the 0.1.16 line's four, and every client scenario the 0.2 line requires
//! at 2026-07-28 and at 2025-11-25, held to `conformance/expected-failures.txt`; the verdicts go
//! to a section of `conformance/RESULTS.md`.

use mcp_conformance::{interop, suite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (the official SDK peers); .ci/run runs it"]
async fn the_official_client_scenarios_pass_and_are_recorded() {
    let client = env!("CARGO_BIN_EXE_mcp-conformance-client");
    let stable = suite::run_client_scenarios(client, &suite::CLIENT_SCENARIOS)
        .await
        .unwrap();
    let mut body = format!(
        "## Our client (`mcp-client`) × the official suite's client scenarios\n\n\
         Written by `cargo test -p mcp-client -- --include-ignored conformance::`: the suite \
         serves each scenario and runs `mcp-conformance-client <url>`, a thin driver over the \
         `mcp` client's connection code. What may fail is in `expected-failures.txt`.\n\n\
         ### 0.1.16\n\n{} checks SUCCESS, {} FAILURE, {} WARNING.\n\n{}",
        stable.count("SUCCESS"),
        stable.count("FAILURE"),
        stable.count("WARNING"),
        stable.table()
    );
    let baseline = suite::Baseline::load().unwrap();
    let mut surprises = Vec::new();
    for revision in ["2026-07-28", "2025-11-25"] {
        let report = suite::run_client_requirements(client, revision)
            .await
            .unwrap();
        // What the suite lists as required at each revision: 33 and 19 scenarios.
        let required = if revision == "2026-07-28" { 33 } else { 19 };
        assert!(
            report.scenarios.len() >= required,
            "{revision}: only {} scenarios ran\n{}",
            report.scenarios.len(),
            report.table()
        );
        let failed: std::collections::BTreeSet<&str> =
            report.failed().into_iter().map(|(name, _)| name).collect();
        body.push_str(&format!(
            "\n### 0.2.0-alpha.12, required at {revision}\n\n{} scenarios ran, {} passed: \
             {} checks SUCCESS, {} FAILURE, {} WARNING.\n\n{}",
            report.scenarios.len(),
            report.scenarios.len() - failed.len(),
            report.count("SUCCESS"),
            report.count("FAILURE"),
            report.count("WARNING"),
            report.table()
        ));
        if let Err(surprise) = baseline.check("mcp-conformance-client", revision, &report) {
            surprises.push(surprise);
        }
    }
    interop::record_section("mcp-client", &body).unwrap();
    stable.all_passed(&suite::CLIENT_SCENARIOS).unwrap();
    assert!(surprises.is_empty(), "{}", surprises.join("\n"));
}
