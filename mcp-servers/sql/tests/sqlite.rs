//! `mcp-sql` on SQLite through the protocol: every tool, paging, and the attacks, each of which
//! must fail and leave the database file byte-for-byte unchanged.

use crate::support;

use std::{path::Path, time::Duration};

use crate::support::{all_refused, cancel_a_slow_query, count_t, ok, refused};
use mcp_core::testing::{TestClient, text};
use mcp_server_sql::{Database, Options, Target};
use rmcp::model::{ReadResourceRequestParams, ResourceContents};
use serde_json::{Value, json};

const ODD_TABLE: &str = "x\"; DROP TABLE t; --";

/// A database with a bit of everything: keys, an index, a view, a blob, an odd table name.
fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("shop.db");
    let db = rusqlite::Connection::open(&path).unwrap();
    db.execute_batch(&format!(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL DEFAULT 1.5, data BLOB);
         CREATE TABLE orders (
             id INTEGER PRIMARY KEY,
             customer_id INTEGER NOT NULL REFERENCES t(id),
             total_cents INTEGER
         );
         CREATE INDEX orders_by_customer ON orders(customer_id);
         CREATE VIEW big_spenders AS SELECT customer_id, sum(total_cents) AS spent FROM orders GROUP BY 1;
         CREATE TABLE \"{}\" (v TEXT);
         INSERT INTO t (name, score, data) VALUES ('Ann', 2.5, x'00ff10'), ('Bob', NULL, NULL);
         WITH RECURSIVE n(i) AS (SELECT 3 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)
           INSERT INTO t (id, name) SELECT i, 'user ' || i FROM n;
         INSERT INTO orders (customer_id, total_cents) VALUES (1, 1200), (1, 300), (2, 50);",
        ODD_TABLE.replace('"', "\"\"")
    ))
    .unwrap();
    path
}

/// An in-process server on a SQLite file.
async fn server(path: &Path, options: Options) -> TestClient {
    support::server(&path.display().to_string(), options).await
}

#[tokio::test]
async fn the_tools_answer_with_structured_data_and_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let client = server(&path, Options::default()).await;

    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(
        tools,
        [
            "describe_table",
            "explain",
            "list_databases",
            "list_tables",
            "query",
            "search_objects"
        ],
        "read-only lists no execute"
    );

    let listed = client.call("list_tables", json!({})).await.unwrap();
    let tables = &ok(&listed)["tables"];
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big_spenders", "orders", "t", ODD_TABLE]);
    assert_eq!(tables[2]["estimated_rows"], 2500);
    assert_eq!(tables[0]["kind"], "view");
    assert!(text(&listed).contains("t (table, ~2500 rows)"));

    let described = client
        .call("describe_table", json!({ "table": "orders" }))
        .await
        .unwrap();
    let orders = ok(&described);
    assert_eq!(orders["primary_key"], json!(["id"]));
    assert_eq!(orders["columns"][1]["name"], "customer_id");
    assert_eq!(orders["columns"][1]["nullable"], false);
    assert_eq!(
        orders["foreign_keys"][0],
        json!({"columns": ["customer_id"], "references_table": "t", "references_columns": ["id"]})
    );
    assert_eq!(orders["indexes"][0]["name"], "orders_by_customer");
    assert_eq!(orders["indexes"][0]["columns"], json!(["customer_id"]));
    let t = client
        .call("describe_table", json!({ "table": "t" }))
        .await
        .unwrap();
    assert_eq!(ok(&t)["columns"][2]["default"], "1.5");

    let found = client
        .call("search_objects", json!({ "pattern": "customer" }))
        .await
        .unwrap();
    let found = ok(&found);
    assert!(
        found["matches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["table"] == "orders" && m["column"] == "customer_id"),
        "{found}"
    );
    let spenders = client
        .call("search_objects", json!({ "pattern": "big*" }))
        .await
        .unwrap();
    assert_eq!(ok(&spenders)["matches"][0]["kind"], "view");

    let rows = client
        .call(
            "query",
            json!({ "sql": "SELECT id, name, score, data, 1 + 1 AS two FROM t WHERE id <= ?1 ORDER BY id", "params": [2] }),
        )
        .await
        .unwrap();
    let data = ok(&rows);
    assert_eq!(
        data["rows"],
        json!([[1, "Ann", 2.5, "\\x00ff10", 2], [2, "Bob", null, null, 2]])
    );
    assert_eq!(data["columns"][0], json!({"name": "id", "type": "INTEGER"}));
    assert_eq!(
        data["columns"][4]["type"], "integer",
        "expression columns get a type"
    );
    assert_eq!(data["truncated"], false);
    assert_eq!(
        text(&rows),
        "id | name | score | data | two\n1 | Ann | 2.5 | \\x00ff10 | 2\n2 | Bob | NULL | NULL | 2\n(2 rows)"
    );

    let plan = client
        .call(
            "explain",
            json!({ "sql": "SELECT * FROM orders WHERE customer_id = ?1" }),
        )
        .await
        .unwrap();
    assert!(
        text(&plan).contains("orders_by_customer"),
        "{}",
        text(&plan)
    );

    // The schema as resources.
    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "sql://tables"));
    let odd = resources
        .iter()
        .find(|r| r.name.starts_with(ODD_TABLE))
        .unwrap();
    let read = client
        .read_resource(ReadResourceRequestParams::new(odd.uri.clone()))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text: body, .. } = &read.contents[0] else {
        panic!("text expected");
    };
    let described: Value = serde_json::from_str(body).unwrap();
    assert_eq!(described["name"], ODD_TABLE);
    assert_eq!(described["columns"][0]["name"], "v");
}

#[tokio::test]
async fn long_results_come_in_pages_under_the_row_and_byte_limits() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let client = server(&path, Options::default()).await;

    let first = client
        .call("query", json!({ "sql": "SELECT id FROM t ORDER BY id" }))
        .await
        .unwrap();
    let page = ok(&first);
    assert_eq!(
        page["rows"].as_array().unwrap().len(),
        1000,
        "max_rows defaults to 1,000"
    );
    assert_eq!(page["truncated"], true);
    assert_eq!(page["next_cursor"], "1000");
    assert!(text(&first).contains("cursor \"1000\""));

    let mut seen = 1000;
    let mut cursor = "1000".to_owned();
    loop {
        let next = client
            .call(
                "query",
                json!({ "sql": "SELECT id FROM t ORDER BY id", "cursor": cursor, "max_rows": 700 }),
            )
            .await
            .unwrap();
        let page = ok(&next);
        let rows = page["rows"].as_array().unwrap();
        assert_eq!(
            rows[0][0],
            seen + 1,
            "pages continue where the last stopped"
        );
        seen += rows.len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, 2500);

    // Wide rows stop at the byte limit, long before the row limit.
    let wide = client
        .call(
            "query",
            json!({ "sql": "SELECT id, printf('%.2000c', 'x') AS wide FROM t ORDER BY id" }),
        )
        .await
        .unwrap();
    let page = ok(&wide);
    let count = page["rows"].as_array().unwrap().len();
    assert!(count < 200 && count > 10, "{count} rows of 2 KB");
    assert_eq!(page["truncated"], true);
    assert!(text(&wide).len() < 300 * 1024);

    let bad = refused(
        &client,
        "query",
        json!({ "sql": "SELECT 1", "cursor": "soon" }),
    )
    .await;
    assert!(bad.contains("cursor"), "{bad}");
}

#[tokio::test]
async fn every_attack_fails_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let before = std::fs::read(&path).unwrap();
    let options = Options {
        timeout: Duration::from_millis(500),
        ..Options::default()
    };
    let client = server(&path, options).await;
    let attach_target = dir.path().join("other.db");

    let attacks = [
        ("COMMIT; DROP TABLE t", "one statement"),
        ("SELECT 1; DELETE FROM t", "one statement"),
        ("DELETE FROM t", "read-only statement"),
        ("DROP TABLE t", "read-only statement"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "syntax error",
        ),
        (
            "INSERT INTO t (name) VALUES ('x') RETURNING id",
            "read-only statement",
        ),
        (
            "UPDATE t SET name = 'x' RETURNING id",
            "read-only statement",
        ),
        (
            &format!("ATTACH DATABASE '{}' AS other", attach_target.display()),
            "not authorized",
        ),
        ("PRAGMA writable_schema = 1", "not authorized"),
        ("PRAGMA query_only = 0", "not authorized"),
        ("PRAGMA journal_mode = WAL", "not authorized"),
        ("SELECT load_extension('/tmp/evil.so')", "not authorized"),
        ("VACUUM INTO '/tmp/copy.db'", "read-only statement"),
        ("BEGIN IMMEDIATE", "read-only statement"),
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
            "timeout",
        ),
    ];
    all_refused(&client, &attacks).await;
    let explained = refused(
        &client,
        "explain",
        json!({ "sql": "SELECT 1; DROP TABLE t" }),
    )
    .await;
    assert!(explained.contains("one statement"), "{explained}");
    let missing = refused(
        &client,
        "describe_table",
        json!({ "table": "x\"; DROP TABLE t; --x" }),
    )
    .await;
    assert!(missing.contains("no table or view named"), "{missing}");
    // The odd name is a name, not SQL: described like any other.
    let odd = client
        .call("describe_table", json!({ "table": ODD_TABLE }))
        .await
        .unwrap();
    assert_eq!(ok(&odd)["name"], ODD_TABLE);
    let unknown = client
        .call("execute", json!({ "sql": "DELETE FROM t" }))
        .await;
    assert!(unknown.is_err() || unknown.unwrap().is_error == Some(true));

    // Still answering after all that, and nothing changed.
    let count = client
        .call("query", json!({ "sql": "SELECT count(*) AS n FROM t" }))
        .await
        .unwrap();
    assert_eq!(ok(&count)["rows"][0][0], 2500);
    drop(client);
    assert!(!attach_target.exists(), "ATTACH created a file");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the database file changed"
    );
}

#[tokio::test]
async fn errors_carry_the_engines_message_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let client = server(&path, Options::default()).await;
    let typo = refused(
        &client,
        "query",
        json!({ "sql": "SELECT id,\n  nmae FROM t" }),
    )
    .await;
    assert!(typo.contains("no such column: nmae"), "{typo}");
    assert!(typo.contains("line 2, column 3"), "{typo}");
    // explain sends the SQL behind a prefix; the position is still the caller's.
    let planned = refused(
        &client,
        "explain",
        json!({ "sql": "SELECT id,\n  nmae FROM t" }),
    )
    .await;
    assert!(planned.contains("line 2, column 3"), "{planned}");
    let params = refused(
        &client,
        "query",
        json!({ "sql": "SELECT * FROM t WHERE id = ?1", "params": [] }),
    )
    .await;
    assert!(
        params.contains("1 parameter(s) but params has 0"),
        "{params}"
    );
}

#[tokio::test]
async fn writes_go_through_execute_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    let options = Options {
        allow_write: true,
        ..Options::default()
    };
    let client = server(&path, options).await;
    let tools = client.list_all_tools().await.unwrap();
    let execute = tools.iter().find(|t| t.name == "execute").unwrap();
    let annotations = execute.annotations.as_ref().unwrap();
    assert_eq!(annotations.destructive_hint, Some(true));
    assert_eq!(annotations.read_only_hint, Some(false));
    let query = tools.iter().find(|t| t.name == "query").unwrap();
    assert_eq!(
        query.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );

    let created = client
        .call(
            "execute",
            json!({ "sql": "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)" }),
        )
        .await
        .unwrap();
    ok(&created);
    let inserted = client
        .call(
            "execute",
            json!({ "sql": "INSERT INTO notes (body) VALUES (?1), (?2)", "params": ["a", "b'); DROP TABLE notes; --"] }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&inserted)["rows_affected"], 2);
    // query stays read-only even on a writable server.
    let message = refused(&client, "query", json!({ "sql": "DELETE FROM notes" })).await;
    assert!(message.contains("read-only statement"), "{message}");
    let two = refused(
        &client,
        "execute",
        json!({ "sql": "DELETE FROM notes; DROP TABLE notes" }),
    )
    .await;
    assert!(two.contains("one statement"), "{two}");
    let rows = client
        .call(
            "query",
            json!({ "sql": "SELECT body FROM notes ORDER BY id" }),
        )
        .await
        .unwrap();
    assert_eq!(
        ok(&rows)["rows"],
        json!([["a"], ["b'); DROP TABLE notes; --"]])
    );
}

#[tokio::test]
async fn a_missing_or_foreign_file_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let error = Database::open(&Target::Sqlite(missing.clone()), Options::default())
        .await
        .err()
        .unwrap();
    assert!(error.message.contains("no SQLite database at"), "{error}");
    assert!(error.hint.unwrap().contains("--allow-write"));
    assert!(
        !missing.exists(),
        "a read-only server must not create the file"
    );

    let text_file = dir.path().join("notes.txt");
    std::fs::write(
        &text_file,
        "not a database, just text that is long enough ".repeat(40),
    )
    .unwrap();
    let error = Database::open(&Target::Sqlite(text_file), Options::default())
        .await
        .err()
        .unwrap();
    assert!(error.message.contains("not a database"), "{error}");
}

/// A cancelled call stops its statement: the next call on the same connection is answered
/// instead of waiting out a ten-minute timeout.
#[tokio::test]
async fn a_cancelled_query_stops_and_frees_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let mut wire = cancel_a_slow_query(
        &path.display().to_string(),
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    )
    .await;
    // Generous: without the cancellation this waits the full 600 s timeout.
    assert_eq!(count_t(&mut wire, Duration::from_secs(60)).await, 2500);
    wire.close().await;
}

/// Finding 5 of the attack run: `SELECT zeroblob(999000000)` answered 2 GB after 79 s (the first
/// row was taken whatever its size, and its hex conversion ran past the timeout). Now the
/// engine refuses values past 64 MB, and a row too big for an answer is refused before it is
/// converted, first row included; the server goes on serving.
#[tokio::test]
async fn a_huge_value_is_refused_before_it_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture(dir.path());
    let options = Options {
        timeout: Duration::from_secs(5),
        ..Options::default()
    };
    let client = server(&path, options).await;
    all_refused(
        &client,
        &[
            ("SELECT zeroblob(999000000)", "too big"),
            ("SELECT randomblob(500000000)", "too big"),
            ("SELECT length(zeroblob(999000000))", "too big"),
            (
                "SELECT randomblob(1000000)",
                "more than the 262144 bytes one answer carries",
            ),
            (
                "SELECT 1, zeroblob(200000), 'x'",
                "more than the 262144 bytes one answer carries",
            ),
        ],
    )
    .await;
    // A big row after small ones ends the page; asked for on its own, it is refused.
    let sql = "SELECT v FROM (SELECT 1 AS k, 'small' AS v UNION ALL SELECT 2, hex(zeroblob(300000))) ORDER BY k";
    let first = client.call("query", json!({ "sql": sql })).await.unwrap();
    let page = ok(&first);
    assert_eq!(page["rows"], json!([["small"]]));
    assert_eq!(page["next_cursor"], "1");
    let next = refused(&client, "query", json!({ "sql": sql, "cursor": "1" })).await;
    assert!(next.contains("row 2 is about"), "{next}");
    assert!(next.contains("substr"), "{next}");
    // Still serving.
    let count = client
        .call("query", json!({ "sql": "SELECT count(*) FROM t" }))
        .await
        .unwrap();
    assert!(ok(&count)["rows"][0][0].as_i64().unwrap() > 0);
}
