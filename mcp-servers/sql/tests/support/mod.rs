//! Helpers shared by the tests and the benchmark.
#![allow(dead_code)]

pub mod mariadb;
pub mod pg;

use std::time::Duration;

use mcp_conformance::check::wire::Wire;
use mcp_core::testing::{TestClient, connect, text};
use mcp_server_sql::{Database, Options, SqlServer, Target};
use rmcp::model::CallToolResult;
use serde_json::{Value, json};

/// A free TCP port on 127.0.0.1, as the kernel picks one.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a service the tests run themselves (`SCRIPT start DIR PORT`) and returns what the
/// script printed (its URL). A watcher runs `SCRIPT stop DIR` and removes `base` once this
/// process is gone: a static is never dropped.
// The watcher outlives this process by design.
#[allow(clippy::zombie_processes)]
pub fn start_throwaway(
    script: &std::path::Path,
    dir: &std::path::Path,
    base: &std::path::Path,
    hint: &str,
) -> String {
    let output = std::process::Command::new(script)
        .arg("start")
        .arg(dir)
        .arg(free_port().to_string())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "could not start it ({hint}):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{script}' stop '{dir}'; rm -rf '{base}'",
            pid = std::process::id(),
            script = script.display(),
            dir = dir.display(),
            base = base.display()
        ))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// An in-process server on the database `url` names, and a client of it.
pub async fn server(url: &str, options: Options) -> TestClient {
    let target = Target::parse(url).unwrap();
    let db = Database::open(&target, options).await.unwrap();
    connect(SqlServer::new(db, target, options)).await.unwrap()
}

/// A successful call's structured content.
pub fn ok(result: &CallToolResult) -> &Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    result.structured_content.as_ref().unwrap()
}

/// Calls `tool` and returns the text of the tool error it must answer with.
pub async fn refused(client: &TestClient, tool: &str, arguments: Value) -> String {
    let result = client.call(tool, arguments.clone()).await.unwrap();
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {arguments} was not refused: {}",
        text(&result)
    );
    text(&result)
}

/// Each `(sql, expected)`: `query` refuses it with `expected` in the message (or one of
/// `expected`'s `|`-separated alternatives).
pub async fn all_refused(client: &TestClient, attacks: &[(&str, &str)]) {
    for (sql, expected) in attacks {
        let message = refused(client, "query", json!({ "sql": sql })).await;
        assert!(
            expected.split('|').any(|e| message.contains(e)),
            "{sql}: expected {expected:?} in {message}"
        );
    }
}

/// Runs the `mcp-sql` binary on `database` with a ten-minute timeout, starts `slow_sql` as a
/// `query`, cancels it, and checks it was not answered. Returns the connection to go on with.
pub async fn cancel_a_slow_query(database: &str, slow_sql: &str) -> Wire {
    let mut wire = Wire::spawn(&[
        env!("CARGO_BIN_EXE_mcp-sql").to_owned(),
        "--timeout".to_owned(),
        "600".to_owned(),
        database.to_owned(),
    ])
    .await
    .unwrap();
    wire.initialize("2025-11-25", "mcp-sql-test", Duration::from_secs(10))
        .await
        .unwrap();
    let answered = wire
        .call_then_cancel(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                   "params": {"name": "query", "arguments": {"sql": slow_sql}}}),
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 7}}),
            Duration::from_secs(1),
        )
        .await
        .unwrap();
    assert!(!answered, "a cancelled request is not answered");
    wire
}

/// `SELECT count(*) FROM t` over `wire`, waiting at most `within` (a hang bound, not a timing).
pub async fn count_t(wire: &mut Wire, within: Duration) -> Value {
    let next = wire
        .request(
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                   "params": {"name": "query", "arguments": {"sql": "SELECT count(*) FROM t"}}}),
            within,
        )
        .await
        .unwrap();
    next["result"]["structuredContent"]["rows"][0][0].clone()
}

/// Fails, naming the first line that differs, when a database's dump after the attacks is not
/// the dump before them.
pub fn assert_unchanged(before: &str, after: &str) {
    let (mut a, mut b) = (before.lines(), after.lines());
    for number in 1.. {
        match (a.next(), b.next()) {
            (None, None) => return,
            (x, y) if x == y => {}
            (x, y) => panic!(
                "the database changed at line {number} of its dump:\n  before: {}\n  after:  {}",
                x.unwrap_or("<end>"),
                y.unwrap_or("<end>")
            ),
        }
    }
}
