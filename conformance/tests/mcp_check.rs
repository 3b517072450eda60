//! `mcp-check` finds nothing wrong with a correct server, and finds every defect of a
//! deliberately broken one.

use std::process::Stdio;

use mcp_conformance::{
    check::{Options, Status, Target, run},
    process::HttpProcess,
};

const CHECK: &str = env!("CARGO_BIN_EXE_mcp-check");
const EVERYTHING: &str = env!("CARGO_BIN_EXE_mcp-everything");

fn broken(defects: &str) -> Options {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/broken_server.py"
    );
    let command = vec![
        "env".to_owned(),
        format!("BROKEN={defects}"),
        "python3".to_owned(),
        script.to_owned(),
    ];
    let mut options = Options::new(Target::Stdio(command));
    options.slow_tool = Some(("slow".to_owned(), serde_json::json!({})));
    options.timeout = std::time::Duration::from_secs(5);
    options
}

#[tokio::test]
async fn the_everything_fixture_passes_over_stdio_and_http() {
    let stdio = run(&Options::new(Target::Stdio(vec![EVERYTHING.to_owned()]))).await;
    assert!(stdio.passed(), "{}", stdio.table());
    assert_eq!(
        stdio.status_of("stateless-discover"),
        Some(Status::Pass),
        "{}",
        stdio.table()
    );
    assert_eq!(stdio.status_of("stdout-hygiene"), Some(Status::Pass));

    let server = HttpProcess::start(EVERYTHING.as_ref(), &["--auth-token", "sesame"])
        .await
        .unwrap();
    let http = run(&Options::new(Target::Http {
        url: server.url("/mcp"),
        headers: vec![("Authorization".to_owned(), "Bearer sesame".to_owned())],
    }))
    .await;
    assert!(http.passed(), "{}", http.table());
    for id in [
        "initialize",
        "invalid-json",
        "invalid-request",
        "unknown-method",
        "invalid-params",
        "large-argument",
    ] {
        assert_eq!(
            http.status_of(id),
            Some(Status::Pass),
            "{id}\n{}",
            http.table()
        );
    }
    // Without the token, nothing works, and mcp-check says so.
    let refused = run(&Options::new(Target::Http {
        url: server.url("/mcp"),
        headers: Vec::new(),
    }))
    .await;
    assert_eq!(
        refused.status_of("initialize"),
        Some(Status::Fail),
        "{}",
        refused.table()
    );
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test]
#[ignore = "needs python3 (the defective servers are Python scripts); .ci/run runs it"]
async fn a_correct_minimal_server_passes() {
    let _alone = crate::one_at_a_time().await;
    let report = run(&broken("")).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(
        report.status_of("cancellation"),
        Some(Status::Pass),
        "{}",
        report.table()
    );
    assert_eq!(
        report.status_of("pagination"),
        Some(Status::Pass),
        "{}",
        report.table()
    );
    // A handshake-only server is allowed, with a warning.
    assert_eq!(
        report.status_of("stateless-discover"),
        Some(Status::Warn),
        "{}",
        report.table()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 (the defective servers are Python scripts); .ci/run runs it"]
async fn every_defect_is_caught_by_the_right_check() {
    let _alone = crate::one_at_a_time().await;
    let cases = [
        ("stdout-noise", "stdout-hygiene", Status::Fail),
        ("bad-tool-name", "tool-names", Status::Fail),
        ("long-tool-name", "tool-names", Status::Fail),
        ("no-description", "tool-descriptions", Status::Fail),
        ("bad-schema", "tool-input-schemas", Status::Fail),
        ("silent-parse", "invalid-json", Status::Fail),
        ("wrong-codes", "unknown-method", Status::Fail),
        ("wrong-codes", "invalid-params", Status::Fail),
        ("lenient-params", "invalid-params", Status::Fail),
        ("crash-on-large", "large-argument", Status::Fail),
        ("die-on-cancel", "cancellation", Status::Fail),
        ("loop-cursor", "pagination", Status::Fail),
        ("answer-cancelled", "cancellation", Status::Warn),
    ];
    // Each case is its own server process, mostly waiting: run them side by side.
    let reports = futures::future::join_all(cases.iter().map(|(defect, ..)| async move {
        let options = broken(defect);
        run(&options).await
    }))
    .await;
    for ((defect, check, expected), report) in cases.iter().zip(reports) {
        assert_eq!(
            report.status_of(check),
            Some(*expected),
            "{defect} → {check}\n{}",
            report.table()
        );
        if *expected == Status::Fail {
            assert!(!report.passed());
        }
    }
}

#[tokio::test]
#[ignore = "needs python3 (the defective servers are Python scripts); .ci/run runs it"]
async fn the_binary_prints_a_table_or_json_and_exits_by_verdict() {
    let _alone = crate::one_at_a_time().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/broken_server.py"
    );
    let ok = tokio::process::Command::new(CHECK)
        .args(["--json", "--", EVERYTHING])
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(report["server"]["name"], "mcp-everything");
    assert!(report["outcomes"].as_array().unwrap().len() >= 15);

    let failing = tokio::process::Command::new(CHECK)
        .args([
            "--",
            "env",
            "BROKEN=bad-schema,stdout-noise",
            "python3",
            script,
        ])
        .stderr(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(failing.status.code(), Some(1));
    let table = String::from_utf8_lossy(&failing.stdout);
    assert!(table.contains("tool-input-schemas   FAIL"), "{table}");
    assert!(table.contains("stdout-hygiene       FAIL"), "{table}");

    let usage = tokio::process::Command::new(CHECK).output().await.unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("--url"));
}
