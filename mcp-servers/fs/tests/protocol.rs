//! `mcp-fs` as hosts run it: the official suite's generic server scenarios over HTTP, our own
//! `mcp-check` over stdio, and a huge file that must not blow up the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mcp_conformance::{
    check::{self, Status, Target},
    process::HttpProcess,
    suite,
};
use mcp_core::testing::{connect, text};
use mcp_server_fs::{FsServer, Limits, Sandbox};
use serde_json::json;

const MCP_FS: &str = env!("CARGO_BIN_EXE_mcp-fs");

#[tokio::test]
async fn passes_the_official_generic_scenarios_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let dir_arg = dir.path().display().to_string();
    let server = HttpProcess::start(MCP_FS.as_ref(), &[&dir_arg])
        .await
        .unwrap();
    let report = suite::run_scenarios(&server.url("/mcp"), &suite::GENERIC_SERVER_SCENARIOS)
        .await
        .unwrap();
    report.all_passed(&suite::GENERIC_SERVER_SCENARIOS).unwrap();
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test]
async fn mcp_check_finds_nothing_wrong_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let options = check::Options::new(Target::Stdio(vec![
        MCP_FS.to_owned(),
        dir.path().display().to_string(),
    ]));
    let report = check::run(&options).await;
    assert!(report.passed(), "{}", report.table());
    for id in [
        "tool-names",
        "tool-input-schemas",
        "tool-output-schemas",
        "stdout-hygiene",
        "invalid-params",
        "large-argument",
    ] {
        assert_eq!(
            report.status_of(id),
            Some(Status::Pass),
            "{id}\n{}",
            report.table()
        );
    }
}

#[tokio::test]
async fn a_2_gib_file_comes_back_one_page_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.log");
    // Sparse: 2 GiB of zeros that take no disk.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let sandbox = Sandbox::new(&[dir.path()]).unwrap();
    let client = connect(FsServer::new(sandbox, Limits::default(), false))
        .await
        .unwrap();
    let page = client
        .call(
            "read_text_file",
            json!({ "path": huge.display().to_string() }),
        )
        .await
        .unwrap();
    let shown = text(&page);
    assert!(
        shown.len() < 300 * 1024,
        "{} bytes in one answer",
        shown.len()
    );
    assert!(
        shown.contains("of 2147483648; call again with cursor"),
        "{}",
        &shown[shown.len() - 200..]
    );
    let tail = client
        .call(
            "read_text_file",
            json!({ "path": huge.display().to_string(), "tail": 3 }),
        )
        .await
        .unwrap();
    assert!(text(&tail).len() < 300 * 1024);
    let media = client
        .call(
            "read_media_file",
            json!({ "path": huge.display().to_string() }),
        )
        .await
        .unwrap();
    assert_eq!(media.is_error, Some(true));
}
