//! `mcp-sql` as hosts run it: the peer clients' interop row (written to
//! `conformance/RESULTS.md`), the official suite's scenarios that apply to any server over HTTP,
//! and our own `mcp-check` over stdio, on a SQLite database.

use mcp_conformance::{
    check::{self, Status, Target},
    interop::{self, Probe, ServerUnderTest, ToolProbe},
    process::HttpProcess,
};
use serde_json::json;

const MCP_SQL: &str = env!("CARGO_BIN_EXE_mcp-sql");

fn database(dir: &std::path::Path) -> String {
    let path = dir.join("peers.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(
        "CREATE TABLE greetings (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
         INSERT INTO greetings (text) VALUES ('über ✓ from mcp-sql');",
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn peer_clients_and_the_official_generic_scenarios_are_green_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let process = HttpProcess::start(MCP_SQL.as_ref(), &[&db]).await.unwrap();
    let server = ServerUnderTest {
        name: "mcp-sql".to_owned(),
        program: MCP_SQL.into(),
        args: vec![db.clone()],
        base_url: process.url(""),
    };
    let probe = Probe {
        tools: [
            "list_tables",
            "describe_table",
            "search_objects",
            "query",
            "explain",
        ]
        .map(str::to_owned)
        .to_vec(),
        call: (
            ToolProbe::new(
                "query",
                json!({ "sql": "SELECT text FROM greetings WHERE id = ?1", "params": [1] }),
            ),
            "über ✓ from mcp-sql".to_owned(),
        ),
        failing_call: ToolProbe::new("query", json!({ "sql": "DELETE FROM greetings" })),
        read: Some((
            "sql://tables".to_owned(),
            serde_json::to_string_pretty(&json!({
                "tables": [{ "name": "greetings", "kind": "table", "estimated_rows": 1 }]
            }))
            .unwrap(),
        )),
    };
    let checked = interop::check_server(
        &server,
        &probe,
        "cargo test -p mcp-server-sql -- --include-ignored protocol::",
        "On SQLite. Each cell lists the tools, runs a parameterized `query`, is refused a `DELETE` (`isError`), and reads the `sql://tables` resource.",
    )
    .await;
    assert!(process.terminate().await.unwrap().success());
    checked.unwrap();
}

#[tokio::test]
async fn mcp_check_finds_nothing_wrong_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let options = check::Options::new(Target::Stdio(vec![MCP_SQL.to_owned(), db]));
    let report = check::run(&options).await;
    assert!(report.passed(), "{}", report.table());
    for id in [
        "tool-names",
        "tool-input-schemas",
        "stdout-hygiene",
        "invalid-params",
    ] {
        assert_eq!(
            report.status_of(id),
            Some(Status::Pass),
            "{id}\n{}",
            report.table()
        );
    }
}
