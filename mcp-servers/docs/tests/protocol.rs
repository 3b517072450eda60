//! `mcp-docs` as hosts run it (BM25 only: no model needed): the peer clients' interop row of
//! `conformance/RESULTS.md`, and the official suite's scenarios that apply to any server, both
//! lines, over HTTP.

use mcp_conformance::{
    interop::{self, Probe, ServerUnderTest, ToolProbe},
    process::HttpProcess,
};
use serde_json::json;

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn peer_clients_and_the_official_generic_scenarios_are_green_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("notes");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("alpha.md"), "# Alpha\n\nüber ✓ from mcp-docs\n").unwrap();
    let root = root.display().to_string();
    // Each process its own index: the first one to open a folder's index holds it.
    let args = |data: &str| -> Vec<String> {
        let data = dir.path().join(data).display().to_string();
        ["serve", &root, "--bm25-only", "--data-dir", &data]
            .map(str::to_owned)
            .to_vec()
    };
    let http_args = args("http-index");
    let http_args: Vec<&str> = http_args.iter().map(String::as_str).collect();
    let process = HttpProcess::start(MCP_DOCS.as_ref(), &http_args)
        .await
        .unwrap();
    let server = ServerUnderTest {
        name: "mcp-docs".to_owned(),
        program: MCP_DOCS.into(),
        args: args("index"),
        base_url: process.url(""),
    };
    let probe = Probe {
        tools: ["search", "get_document", "list_sources", "reindex"]
            .map(str::to_owned)
            .to_vec(),
        call: (
            ToolProbe::new("get_document", json!({ "path": "alpha.md" })),
            "über ✓ from mcp-docs".to_owned(),
        ),
        failing_call: ToolProbe::new("get_document", json!({ "path": "../outside.md" })),
        read: Some((
            "docs://alpha.md".to_owned(),
            "# Alpha\n\nüber ✓ from mcp-docs\n".to_owned(),
        )),
    };
    let checked = interop::check_server(
        &server,
        &probe,
        "cargo test -p mcp-server-docs -- --include-ignored protocol::",
        "BM25 only, over a folder of one note. Each cell lists the tools, reads the note with `get_document`, is refused a path outside the folder (`isError`), and reads it as the `docs://alpha.md` resource.",
    )
    .await;
    assert!(process.terminate().await.unwrap().success());
    checked.unwrap();
}
