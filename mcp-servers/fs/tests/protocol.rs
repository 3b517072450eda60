//! `mcp-fs` as hosts run it: the peer clients' interop row and the official suite's generic
//! server scenarios over HTTP, our own
//! `mcp-check` over stdio, and a huge file that must not blow up the server.

use mcp_conformance::{
    check::{self, Status, Target},
    interop::{self, Probe, ServerUnderTest, ToolProbe},
    process::HttpProcess,
};
use mcp_core::testing::{connect, text};
use mcp_server_fs::{FsServer, Limits, Sandbox};
use serde_json::json;

const MCP_FS: &str = env!("CARGO_BIN_EXE_mcp-fs");

/// The interop row of `conformance/RESULTS.md` for `mcp-fs`: every peer client over every
/// transport lists the tools, reads a file and is refused a path outside the root; and the
/// official suite's scenarios that apply to any server, over HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn peer_clients_and_the_official_generic_scenarios_are_green_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "über ✓ from mcp-fs\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "outside").unwrap();
    let root_arg = root.display().to_string();
    // The undo journal in the test's directory, not the user's.
    let data_arg = dir.path().join("data").display().to_string();

    let process = HttpProcess::start(MCP_FS.as_ref(), &[&root_arg, "--data-dir", &data_arg])
        .await
        .unwrap();
    let server = ServerUnderTest {
        name: "mcp-fs".to_owned(),
        program: MCP_FS.into(),
        args: vec![root_arg.clone(), "--data-dir".to_owned(), data_arg.clone()],
        base_url: process.url(""),
    };
    let probe = Probe {
        tools: [
            "read_text_file",
            "write_file",
            "edit_file",
            "directory_tree",
            "grep",
        ]
        .map(str::to_owned)
        .to_vec(),
        call: (
            ToolProbe::new(
                "read_text_file",
                json!({ "path": root.join("notes.txt").display().to_string() }),
            ),
            "über ✓ from mcp-fs".to_owned(),
        ),
        failing_call: ToolProbe::new(
            "read_text_file",
            json!({ "path": dir.path().join("secret.txt").display().to_string() }),
        ),
        read: None,
    };
    let checked = interop::check_server(
        &server,
        &probe,
        "cargo test -p mcp-server-fs -- --include-ignored protocol::",
        "Each cell lists the tools, reads a file in the allowed directory and is refused one outside it (`isError`); `mcp-fs` has no resources to read.",
    )
    .await;
    assert!(process.terminate().await.unwrap().success());
    checked.unwrap();
}

#[tokio::test]
async fn mcp_check_finds_nothing_wrong_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let data = tempfile::tempdir().unwrap();
    let options = check::Options::new(Target::Stdio(vec![
        MCP_FS.to_owned(),
        dir.path().display().to_string(),
        "--data-dir".to_owned(),
        data.path().display().to_string(),
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
