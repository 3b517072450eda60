//! `mcp-finetune` as hosts run it: the peer clients' interop row of `conformance/RESULTS.md`,
//! and the official suite's scenarios that apply to any server, both lines, over HTTP.

use mcp_conformance::{
    interop::{self, Probe, ServerUnderTest, ToolProbe},
    process::HttpProcess,
};
use serde_json::json;

const MCP_FINETUNE: &str = env!("CARGO_BIN_EXE_mcp-finetune");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn peer_clients_and_the_official_generic_scenarios_are_green_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let allowed = dir.path().join("datasets");
    std::fs::create_dir(&allowed).unwrap();
    let args: Vec<String> = [
        "serve",
        "--threads",
        "1",
        "--data-dir",
        &dir.path().join("data").display().to_string(),
        "--allow-dir",
        &allowed.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let process = HttpProcess::start(MCP_FINETUNE.as_ref(), &arg_refs)
        .await
        .unwrap();
    let server = ServerUnderTest {
        name: "mcp-finetune".to_owned(),
        program: MCP_FINETUNE.into(),
        args: args.clone(),
        base_url: process.url(""),
    };
    let probe = Probe {
        tools: [
            "validate_dataset",
            "create_job",
            "get_job",
            "cancel_job",
            "list_backends",
        ]
        .map(str::to_owned)
        .to_vec(),
        call: (
            ToolProbe::new("list_backends", json!({})),
            "local".to_owned(),
        ),
        failing_call: ToolProbe::new("validate_dataset", json!({ "path": "/etc/passwd" })),
        read: None,
    };
    let checked = interop::check_server(
        &server,
        &probe,
        "cargo test -p mcp-server-finetune -- --include-ignored protocol::",
        "Each cell lists the tools, lists the backends, and is refused a dataset outside the allowed directories (`isError`); `mcp-finetune` has resources only per job, and no job here.",
    )
    .await;
    assert!(process.terminate().await.unwrap().success());
    checked.unwrap();
}
