//! `mcp-sql --config`: several databases in one server, tools declared as SQL, deny lists the
//! engine enforces, and exports, on SQLite (the engines that need a service have their own
//! modules). Every feature through the protocol, with the attacks.

use std::{path::Path, time::Duration};

use crate::support::{ok, refused};
use mcp_conformance::check::wire::Wire;
use mcp_core::testing::{TestClient, connect, text};
use mcp_server_sql::{Config, Options, SqlServer};
use serde_json::{Value, json};

/// `shop.db`: customers with personal data, a view and a table that copy it, payments;
/// `notes.db`: a table to write to.
fn fixtures(dir: &Path) {
    let shop = rusqlite::Connection::open(dir.join("shop.db")).unwrap();
    shop.execute_batch(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, email TEXT);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER, status TEXT, total INTEGER);
         CREATE TABLE payments (id INTEGER PRIMARY KEY, card TEXT);
         CREATE VIEW contacts AS SELECT id, email AS address FROM customers;
         CREATE VIEW names AS SELECT id, name FROM customers;
         INSERT INTO customers VALUES (1, 'Ann', 'ann@example.com'), (2, 'Bob', 'bob@example.com');
         INSERT INTO orders VALUES (1, 1, 'open', 1200), (2, 1, 'shipped', 300), (3, 2, 'open', 50);
         INSERT INTO payments VALUES (1, '4111111111111111');",
    )
    .unwrap();
    let notes = rusqlite::Connection::open(dir.join("notes.db")).unwrap();
    notes
        .execute_batch(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT);
             CREATE TABLE signups (person_id INTEGER);
             CREATE TABLE audit (line TEXT);
             CREATE TRIGGER copy_email AFTER INSERT ON signups BEGIN
               INSERT INTO audit SELECT email FROM people WHERE id = new.person_id;
             END;
             INSERT INTO people VALUES (1, 'carol@example.com');",
        )
        .unwrap();
}

fn config_text(dir: &Path) -> String {
    format!(
        r#"
export_dir = "{exports}"

[databases.shop]
url = "sqlite:{shop}"
deny = ["customers.email", "payments"]

[databases.notes]
url = "sqlite:{notes}"
read_only = false
max_rows = 2
deny = ["people.email"]

[[tools]]
name = "orders_of"
description = "A customer's orders"
sql = "SELECT id, status, total FROM orders WHERE customer_id = :customer AND status = :status ORDER BY id"
[tools.params.customer]
type = "integer"
description = "The customer's id"
[tools.params.status]
type = "string"
enum = ["open", "shipped"]
default = "open"

[[tools]]
name = "find_customer"
description = "Customers by name"
sql = "SELECT id, name FROM customers WHERE name = :name"
[tools.params.name]
type = "string"

[[tools]]
name = "add_note"
description = "Adds a note"
database = "notes"
write = true
sql = "INSERT INTO notes (body) VALUES (:body)"
[tools.params.body]
type = "string"
"#,
        exports = dir.join("exports").display(),
        shop = dir.join("shop.db").display(),
        notes = dir.join("notes.db").display(),
    )
}

async fn server(dir: &Path) -> TestClient {
    fixtures(dir);
    std::fs::create_dir_all(dir.join("exports")).unwrap();
    let config = Config::parse(&config_text(dir), &|_| None).unwrap();
    connect(SqlServer::open(&config, Options::default()).await.unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn one_server_serves_several_databases_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let client = server(dir.path()).await;

    let listed = client.call("list_databases", json!({})).await.unwrap();
    let databases = &ok(&listed)["databases"];
    assert_eq!(databases[0]["name"], "shop");
    assert_eq!(databases[0]["engine"], "sqlite");
    assert_eq!(databases[0]["read_only"], true);
    assert_eq!(databases[0]["default"], true);
    assert_eq!(
        databases[0]["denied"],
        json!(["customers.email", "payments"])
    );
    assert!(databases[0]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(databases[1]["name"], "notes");
    assert_eq!(databases[1]["read_only"], false);
    assert_eq!(databases[1]["default"], false);

    // Every built-in tool takes `database`; the first database is the default.
    let tools = client.list_all_tools().await.unwrap();
    for tool in &tools {
        if [
            "query",
            "list_tables",
            "describe_table",
            "execute",
            "export_query",
        ]
        .contains(&tool.name.as_ref())
        {
            assert!(
                tool.input_schema["properties"]
                    .as_object()
                    .unwrap()
                    .contains_key("database"),
                "{}",
                tool.name
            );
        }
    }
    let tables = |value: &Value| -> Vec<String> {
        value["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let default = client.call("list_tables", json!({})).await.unwrap();
    assert!(tables(ok(&default)).contains(&"orders".to_owned()));
    let notes = client
        .call("list_tables", json!({"database": "notes"}))
        .await
        .unwrap();
    assert!(tables(ok(&notes)).contains(&"notes".to_owned()));
    let unknown = refused(
        &client,
        "query",
        json!({"sql": "SELECT 1", "database": "nope"}),
    )
    .await;
    assert!(
        unknown.contains("nope") && unknown.contains("shop, notes"),
        "{unknown}"
    );

    // Writes: only where the config allows them, with that database's own row limit.
    let read_only = refused(
        &client,
        "execute",
        json!({"sql": "DELETE FROM orders", "database": "shop"}),
    )
    .await;
    assert!(read_only.contains("read-only"), "{read_only}");
    let written = client
        .call(
            "execute",
            json!({"sql": "INSERT INTO notes (body) VALUES (?1), (?1), (?1)", "params": ["x"], "database": "notes"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&written)["rows_affected"], 3);
    let paged = client
        .call(
            "query",
            json!({"sql": "SELECT id FROM notes ORDER BY id", "database": "notes"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&paged)["rows"].as_array().unwrap().len(), 2);
    assert_eq!(ok(&paged)["truncated"], true);
    let orders = rusqlite::Connection::open(dir.path().join("shop.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(orders, 3);
}

#[tokio::test]
async fn config_tools_have_schemas_and_bind_every_argument() {
    let dir = tempfile::tempdir().unwrap();
    let client = server(dir.path()).await;
    let tools = client.list_all_tools().await.unwrap();
    let orders_of = tools.iter().find(|t| t.name == "orders_of").unwrap();
    assert_eq!(
        Value::Object((*orders_of.input_schema).clone()),
        json!({
            "type": "object",
            "properties": {
                "customer": {"type": "integer", "description": "The customer's id"},
                "status": {"type": "string", "enum": ["open", "shipped"], "default": "open"}
            },
            "required": ["customer"],
            "additionalProperties": false
        })
    );
    let annotations = orders_of.annotations.as_ref().unwrap();
    assert_eq!(annotations.read_only_hint, Some(true));
    let add_note = tools.iter().find(|t| t.name == "add_note").unwrap();
    assert_eq!(
        add_note.annotations.as_ref().unwrap().read_only_hint,
        Some(false)
    );

    let open = client
        .call("orders_of", json!({"customer": 1}))
        .await
        .unwrap();
    assert_eq!(
        ok(&open)["rows"],
        json!([[1, "open", 1200]]),
        "the default status"
    );
    let shipped = client
        .call("orders_of", json!({"customer": 1, "status": "shipped"}))
        .await
        .unwrap();
    assert_eq!(ok(&shipped)["rows"], json!([[2, "shipped", 300]]));

    // Injection: a value is a value, whatever it holds.
    for name in [
        "Ann' OR '1'='1",
        "x'; DROP TABLE customers; --",
        "' UNION SELECT 1, email FROM customers --",
    ] {
        let found = client
            .call("find_customer", json!({"name": name}))
            .await
            .unwrap();
        assert_eq!(ok(&found)["rows"], json!([]), "{name}");
    }
    for (arguments, expected) in [
        (json!({"customer": "1 OR 1=1"}), "type"),
        (json!({"customer": 1.5}), "type"),
        (
            json!({"customer": 1, "status": "open' OR '1'='1"}),
            "one of",
        ),
        (
            json!({"customer": 1, "sql": "DROP TABLE orders"}),
            "takes no argument",
        ),
        (json!({}), "needs \"customer\""),
    ] {
        let message = refused(&client, "orders_of", arguments.clone()).await;
        assert!(message.contains(expected), "{arguments}: {message}");
    }
    let body = "'); DROP TABLE notes; --";
    let added = client
        .call("add_note", json!({"body": body}))
        .await
        .unwrap();
    assert_eq!(ok(&added)["rows_affected"], 1);
    let stored: String = rusqlite::Connection::open(dir.path().join("notes.db"))
        .unwrap()
        .query_row("SELECT body FROM notes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, body);
    let customers = rusqlite::Connection::open(dir.path().join("shop.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM customers", [], |r| r.get::<_, i64>(0))
        .unwrap();
    assert_eq!(customers, 2);
}

#[tokio::test]
async fn denied_columns_cannot_be_read_by_any_route() {
    let dir = tempfile::tempdir().unwrap();
    let client = server(dir.path()).await;
    let attacks = [
        "SELECT * FROM customers",
        "SELECT email FROM customers",
        "SELECT EMAIL FROM Customers",
        "SELECT upper(email) FROM customers",
        "SELECT group_concat(email) FROM customers",
        "SELECT id FROM customers WHERE email LIKE 'a%'",
        "SELECT id FROM customers ORDER BY email",
        "SELECT (SELECT email FROM customers LIMIT 1)",
        "SELECT * FROM (SELECT * FROM customers)",
        "WITH c AS (SELECT * FROM customers) SELECT id FROM c",
        "SELECT c.* FROM orders o JOIN customers c ON c.id = o.customer_id",
        "SELECT * FROM contacts",
        "SELECT id FROM contacts WHERE address IS NOT NULL",
        "SELECT json_group_array(json_object('e', email)) FROM customers",
        "SELECT count(*) FROM payments",
        "SELECT card FROM payments",
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM payments)",
    ];
    for sql in attacks {
        let message = refused(&client, "query", json!({"sql": sql})).await;
        assert!(
            message.contains("deny rule \"customers.email\"")
                || message.contains("deny rule \"payments\""),
            "{sql}: {message}"
        );
        // The other tools that take SQL are held to the same list.
        let planned = client.call("explain", json!({"sql": sql})).await.unwrap();
        assert_eq!(planned.is_error, Some(true), "explain {sql}");
        let exported = client
            .call(
                "export_query",
                json!({"sql": sql, "format": "csv", "path": "leak.csv"}),
            )
            .await
            .unwrap();
        assert_eq!(exported.is_error, Some(true), "export {sql}");
    }
    assert!(!dir.path().join("exports/leak.csv").exists());

    // What is not denied still reads, views included.
    let allowed = client
        .call(
            "query",
            json!({"sql": "SELECT c.id, c.name, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id ORDER BY c.id"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&allowed)["rows"], json!([[1, "Ann", 2], [2, "Bob", 1]]));
    let view = client
        .call(
            "query",
            json!({"sql": "SELECT name FROM names ORDER BY id"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&view)["rows"], json!([["Ann"], ["Bob"]]));
    let described = client
        .call("describe_table", json!({"table": "customers"}))
        .await
        .unwrap();
    let columns = &ok(&described)["columns"];
    assert_eq!(columns[2]["name"], "email");
    assert_eq!(columns[2]["denied"], true);
    assert!(columns[1].get("denied").is_none());
    assert!(text(&described).contains("email TEXT (denied"));

    // A trigger that would copy a denied column is refused with the statement that fires it.
    let fired = refused(
        &client,
        "execute",
        json!({"sql": "INSERT INTO signups VALUES (1)", "database": "notes"}),
    )
    .await;
    assert!(fired.contains("people.email"), "{fired}");
    let notes = rusqlite::Connection::open(dir.path().join("notes.db")).unwrap();
    let copied: i64 = notes
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    let signed: i64 = notes
        .query_row("SELECT count(*) FROM signups", [], |r| r.get(0))
        .unwrap();
    assert_eq!((copied, signed), (0, 0));
}

#[tokio::test]
async fn exports_stream_every_row_and_stay_in_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let client = server(dir.path()).await;
    let exports = dir.path().join("exports");
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000) \
               SELECT i AS id, 'line, \"quoted\"' || char(10) || i AS text, \
               CASE WHEN i % 2 = 0 THEN NULL ELSE i * 0.5 END AS half FROM n";

    let csv_export = client
        .call(
            "export_query",
            json!({"sql": sql, "format": "csv", "path": "out/all.csv"}),
        )
        .await
        .unwrap();
    let summary = ok(&csv_export);
    assert_eq!(summary["rows"], 10_000);
    assert_eq!(summary["first_rows"].as_array().unwrap().len(), 5);
    assert_eq!(summary["columns"][1]["name"], "text");
    let written = std::fs::read(exports.join("out/all.csv")).unwrap();
    assert_eq!(summary["bytes"], written.len());
    let mut reader = csv::Reader::from_reader(written.as_slice());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id", "text", "half"]
    );
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 10_000);
    assert_eq!(&records[0][1], "line, \"quoted\"\n1");
    assert_eq!(&records[0][2], "0.5");
    assert_eq!(&records[1][2], "", "NULL is an empty field");

    let jsonl = client
        .call(
            "export_query",
            json!({"sql": "SELECT id, name, 1 AS id FROM customers ORDER BY id", "format": "jsonl", "path": "c.jsonl"}),
        )
        .await
        .unwrap();
    assert_eq!(ok(&jsonl)["rows"], 2);
    let lines: Vec<Value> = std::fs::read_to_string(exports.join("c.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0], json!({"id": 1, "name": "Ann", "id_2": 1}));

    // An existing file is kept unless overwrite says otherwise.
    let kept = refused(
        &client,
        "export_query",
        json!({"sql": "SELECT 1", "format": "csv", "path": "c.jsonl"}),
    )
    .await;
    assert!(kept.contains("exists"), "{kept}");
    assert!(
        std::fs::read_to_string(exports.join("c.jsonl"))
            .unwrap()
            .contains("Ann")
    );
    let replaced = client
        .call(
            "export_query",
            json!({"sql": "SELECT 1 AS one", "format": "csv", "path": "c.jsonl", "overwrite": true}),
        )
        .await
        .unwrap();
    ok(&replaced);
    assert_eq!(
        std::fs::read_to_string(exports.join("c.jsonl")).unwrap(),
        "one\n1\n"
    );

    // Escapes: by `..`, by an absolute path, by a symbolic link in the path or as the last
    // component.
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("target.csv"), "precious").unwrap();
    std::os::unix::fs::symlink(&outside, exports.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("target.csv"), exports.join("last.csv")).unwrap();
    for path in [
        "../outside/x.csv".to_owned(),
        "out/../../outside/x.csv".to_owned(),
        outside.join("x.csv").display().to_string(),
        "/etc/passwd".to_owned(),
        "link/x.csv".to_owned(),
        "link/../../outside/x.csv".to_owned(),
    ] {
        let message = refused(
            &client,
            "export_query",
            json!({"sql": "SELECT 1", "format": "csv", "path": path, "overwrite": true}),
        )
        .await;
        assert!(
            message.contains("outside") || message.contains("leads"),
            "{path}: {message}"
        );
    }
    let relinked = refused(
        &client,
        "export_query",
        json!({"sql": "SELECT 2 AS two", "format": "csv", "path": "last.csv", "overwrite": true}),
    )
    .await;
    assert!(relinked.contains("leads outside"), "{relinked}");
    assert_eq!(
        std::fs::read_to_string(outside.join("target.csv")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "nothing was written outside"
    );

    // A statement that writes, or fails halfway, leaves no file and no temporary file.
    for sql in [
        "DELETE FROM orders",
        "SELECT 1 UNION ALL SELECT abs(-9223372036854775808)",
    ] {
        refused(
            &client,
            "export_query",
            json!({"sql": sql, "format": "jsonl", "path": "failed.jsonl"}),
        )
        .await;
    }
    let leftovers: Vec<String> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.') || name.starts_with("failed"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn an_export_stops_at_its_byte_limit_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    let exports = dir.path().join("exports");
    std::fs::create_dir(&exports).unwrap();
    let text = format!(
        "export_dir = \"{}\"\nmax_export_bytes = 100000\n[databases.shop]\nurl = \"{}\"\n",
        exports.display(),
        dir.path().join("shop.db").display()
    );
    let config = Config::parse(&text, &|_| None).unwrap();
    let client = connect(SqlServer::open(&config, Options::default()).await.unwrap())
        .await
        .unwrap();
    let message = refused(
        &client,
        "export_query",
        json!({"sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT i, randomblob(100) FROM n",
               "format": "csv", "path": "endless.csv"}),
    )
    .await;
    assert!(message.contains("100000 byte limit"), "{message}");
    assert_eq!(std::fs::read_dir(&exports).unwrap().count(), 0);
}

#[tokio::test]
async fn the_binary_reads_a_config_and_names_its_mistakes() {
    let dir = tempfile::tempdir().unwrap();
    fixtures(dir.path());
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    let path = dir.path().join("sql.toml");
    std::fs::write(&path, config_text(dir.path())).unwrap();
    let binary = env!("CARGO_BIN_EXE_mcp-sql");
    let mut wire = Wire::spawn(&[
        binary.to_owned(),
        "--config".to_owned(),
        path.display().to_string(),
    ])
    .await
    .unwrap();
    wire.initialize("2025-11-25", "mcp-sql-test", Duration::from_secs(10))
        .await
        .unwrap();
    let called = wire
        .request(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                   "params": {"name": "orders_of", "arguments": {"customer": 2}}}),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        called["result"]["structuredContent"]["rows"],
        json!([[3, "open", 50]])
    );

    // A typo names its line; a variable's value never reaches the output.
    let run = |text: String, env: &[(&str, &str)]| {
        std::fs::write(&path, text).unwrap();
        let mut command = std::process::Command::new(binary);
        command.arg("--config").arg(&path).env_remove("MCP_SQL_URL");
        for (k, v) in env {
            command.env(k, v);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let typo = run(
        config_text(dir.path()).replace("read_only = false", "read_onyl = false"),
        &[],
    );
    assert!(
        typo.contains("read_onyl") && typo.contains("line 10"),
        "{typo}"
    );
    let unset = run(
        "[databases.a]\nurl = \"postgres://u:${MCP_SQL_TEST_UNSET}@127.0.0.1:1/db\"\n".into(),
        &[],
    );
    assert!(unset.contains("${MCP_SQL_TEST_UNSET}"), "{unset}");
    let hidden = run(
        "[databases.a]\nurl = \"postgres://u:${MCP_SQL_TEST_SECRET}@127.0.0.1:1/db\"\n".into(),
        &[("MCP_SQL_TEST_SECRET", "hunter2-secret")],
    );
    assert!(hidden.contains("cannot connect"), "{hidden}");
    assert!(!hidden.contains("hunter2"), "{hidden}");
}
