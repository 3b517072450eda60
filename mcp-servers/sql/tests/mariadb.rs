//! `mcp-sql` on a real MariaDB: every tool through the protocol, the attacks failing with the
//! database unchanged (checked with `mariadb-dump`), a user that can write refused unless
//! allowed, the password from `MYSQL_PWD`, deny lists checked against the user's privileges,
//! writes only where allowed, a cancelled query killed on the server.
//!
//! The server comes from `MCP_SQL_TEST_MARIADB` (a root URL; `.ci/run` starts one), or else the
//! test starts a throwaway one with `tests/mariadb.sh` (needs Debian's `mariadb-server`).

use std::{process::Command, time::Duration};

use crate::support::{
    all_refused, assert_unchanged, cancel_a_slow_query, count_t,
    mariadb::{admin, dump, run, url_for},
    ok, refused, server,
};
use mcp_core::testing::text;
use mcp_server_sql::{Database, DenyRule, Options, Target};
use mysql_async::prelude::Queryable;
use rmcp::{ServiceExt, model::ClientConfig, transport::TokioChildProcess};
use serde_json::json;

const MCP_SQL: &str = env!("CARGO_BIN_EXE_mcp-sql");

/// A fresh database `name` with a small shop, a user `{name}_reader` that may only read it
/// (password `reader`) and `{name}_writer` that may write (password `writer`).
async fn fresh_database(name: &str) -> String {
    run(
        "mysql",
        &[
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"),
            format!("DROP USER IF EXISTS '{name}_reader'@'%', '{name}_writer'@'%'"),
            format!("CREATE USER '{name}_reader'@'%' IDENTIFIED BY 'reader'"),
            format!("CREATE USER '{name}_writer'@'%' IDENTIFIED BY 'writer'"),
            format!("GRANT SELECT, SHOW VIEW ON {name}.* TO '{name}_reader'@'%'"),
            format!("GRANT SELECT, INSERT, UPDATE, DELETE ON {name}.* TO '{name}_writer'@'%'"),
        ],
    )
    .await;
    run(
        name,
        &[
            "CREATE TABLE t (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40) NOT NULL, \
               email VARCHAR(80), created DATETIME NOT NULL DEFAULT '2026-01-02 03:04:05')"
                .to_owned(),
            "CREATE TABLE orders (id BIGINT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL, \
               total DECIMAL(10, 2), meta JSON, photo BLOB, took TIME, \
               CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES t (id), \
               INDEX orders_by_customer (customer_id))"
                .to_owned(),
            "CREATE VIEW big_spenders AS SELECT customer_id, SUM(total) AS spent FROM orders GROUP BY customer_id"
                .to_owned(),
            "INSERT INTO t (name, email) SELECT concat('user ', seq), concat('u', seq, '@example.com') \
               FROM seq_1_to_2500"
                .to_owned(),
            "INSERT INTO orders (customer_id, total, meta, photo, took) VALUES \
               (1, 12.50, '{\"gift\": true}', x'00ff', '26:00:00'), (1, 3.00, NULL, NULL, NULL), \
               (2, 0.50, '[]', NULL, NULL)"
                .to_owned(),
            "CREATE PROCEDURE wipe() BEGIN COMMIT; DELETE FROM orders; END".to_owned(),
            "CREATE FUNCTION sneaky() RETURNS INT MODIFIES SQL DATA BEGIN DELETE FROM orders; RETURN 1; END"
                .to_owned(),
            "ANALYZE TABLE t, orders".to_owned(),
        ],
    )
    .await;
    name.to_owned()
}

fn reader(name: &str) -> String {
    url_for(name, Some((&format!("{name}_reader"), "reader")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB (MCP_SQL_TEST_MARIADB or Debian's mariadb-server); .ci/run runs it"]
async fn the_tools_answer_on_mariadb() {
    let name = fresh_database("mcp_maria_tools").await;
    let client = server(&reader(&name), Options::default()).await;

    let listed = client.call("list_tables", json!({})).await.unwrap();
    let tables = &ok(&listed)["tables"];
    let names: Vec<&str> = tables
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["big_spenders", "orders", "t"]);
    assert_eq!(tables[0]["kind"], "view");
    assert_eq!(tables[2]["schema"], name);

    let described = client
        .call("describe_table", json!({ "table": "orders" }))
        .await
        .unwrap();
    let orders = ok(&described);
    assert_eq!(orders["primary_key"], json!(["id"]));
    assert_eq!(orders["columns"][2]["type"], "decimal(10,2)");
    assert_eq!(
        orders["foreign_keys"][0],
        json!({"columns": ["customer_id"], "references_table": "t", "references_columns": ["id"]})
    );
    assert!(
        orders["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "orders_by_customer" && i["columns"] == json!(["customer_id"]))
    );
    let found = client
        .call("search_objects", json!({ "pattern": "CUSTOMER" }))
        .await
        .unwrap();
    assert!(
        ok(&found)["matches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["table"] == "orders" && m["column"] == "customer_id"),
        "{}",
        text(&found)
    );

    // Values keep their meaning: decimals exactly, bytes as hex, times past 24 h (MariaDB's JSON
    // is text with a check, and comes as its text).
    let typed = client
        .call(
            "query",
            json!({ "sql": "SELECT o.id, t.name, o.total, o.meta, o.photo, o.took, t.created \
                             FROM orders o JOIN t ON t.id = o.customer_id WHERE o.customer_id = ? ORDER BY o.id",
                    "params": [1] }),
        )
        .await
        .unwrap();
    let typed = ok(&typed);
    assert_eq!(
        typed["rows"][0],
        json!([
            1,
            "user 1",
            "12.50",
            "{\"gift\": true}",
            "\\x00ff",
            "26:00:00",
            "2026-01-02 03:04:05"
        ])
    );
    assert_eq!(typed["columns"][2]["type"], "decimal");

    // Pages by cursor.
    let first = client
        .call(
            "query",
            json!({ "sql": "SELECT id FROM t ORDER BY id", "max_rows": 1000 }),
        )
        .await
        .unwrap();
    let first = ok(&first);
    assert_eq!(first["rows"].as_array().unwrap().len(), 1000);
    let second = client
        .call(
            "query",
            json!({ "sql": "SELECT id FROM t ORDER BY id", "cursor": first["next_cursor"] }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&second)["rows"][0][0], 1001);

    let plan = client
        .call(
            "explain",
            json!({ "sql": "SELECT * FROM orders WHERE customer_id = ?", "params": [1] }),
        )
        .await
        .unwrap();
    let plan = text(&plan);
    assert!(plan.contains("orders_by_customer"), "{plan}");

    let databases = client.call("list_databases", json!({})).await.unwrap();
    assert_eq!(ok(&databases)["databases"][0]["engine"], "mariadb");
    assert!(
        ok(&databases)["databases"][0]["size_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// The attacks, as root (the strongest case: only the read-only transaction, the one-statement
/// binary protocol and the rows-only rule stand in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB; .ci/run runs it"]
async fn every_attack_fails_and_the_database_is_unchanged() {
    let name = fresh_database("mcp_maria_attacks").await;
    let before = dump(&name);
    let options = Options {
        timeout: Duration::from_secs(1),
        allow_privileged_role: true,
        ..Options::default()
    };
    let client = server(&url_for(&name, None), options).await;
    let pwned = std::env::temp_dir().join(format!("mcp-sql-maria-pwned-{}", std::process::id()));
    let attacks = [
        ("COMMIT; DROP TABLE t", "one statement per call"),
        ("SELECT 1; DELETE FROM t", "one statement per call"),
        // MariaDB refuses a change at PREPARE inside a read-only transaction.
        ("DELETE FROM t", "READ ONLY transaction"),
        ("DELETE FROM t RETURNING id", "READ ONLY transaction"),
        (
            "INSERT INTO t (name) VALUES ('x') RETURNING id",
            "READ ONLY transaction",
        ),
        (
            "SET STATEMENT tx_read_only = 0 FOR DELETE FROM t RETURNING id",
            "READ ONLY transaction",
        ),
        (
            "SET SESSION tx_read_only = 0",
            "read-only statement|READ ONLY transaction",
        ),
        (
            "CREATE TABLE u AS SELECT 1 AS x",
            "read-only statement|READ ONLY transaction",
        ),
        ("DROP TABLE t", "read-only statement|READ ONLY transaction"),
        ("TRUNCATE t", "read-only statement|READ ONLY transaction"),
        ("CALL wipe()", "read-only statement|READ ONLY transaction"),
        ("SELECT sneaky()", "READ ONLY transaction"),
        (
            "LOCK TABLES t WRITE",
            "read-only statement|READ ONLY transaction",
        ),
        (
            "HANDLER t OPEN",
            "read-only statement|READ ONLY transaction",
        ),
        (
            &format!("SELECT * FROM t INTO OUTFILE '{}'", pwned.display()),
            "read-only statement|READ ONLY transaction",
        ),
        ("SELECT sleep(600)", "timeout"),
        (
            "SET STATEMENT max_statement_time = 0 FOR SELECT sleep(600)",
            "timeout",
        ),
    ];
    // MariaDB refuses some statements at PREPARE in a read-only transaction, others prepare
    // without a result and are refused by us: either is a refusal by the engine's rules.
    all_refused(&client, &attacks).await;
    // explain plans a DELETE (MariaDB explains one) without running it: the rows stay (the
    // count and the dump below).
    let planned = client
        .call("explain", json!({ "sql": "DELETE FROM t" }))
        .await
        .unwrap();
    assert!(
        planned.is_error == Some(true) || text(&planned).contains("| t |"),
        "{}",
        text(&planned)
    );
    let missing = refused(
        &client,
        "describe_table",
        json!({ "table": "t`; DROP TABLE t; --" }),
    )
    .await;
    assert!(missing.contains("no table or view named"), "{missing}");

    // Still serving after the timeouts and errors; the server killed what ran past them.
    let count = client
        .call("query", json!({ "sql": "SELECT count(*) FROM t" }))
        .await
        .unwrap();
    assert_eq!(ok(&count)["rows"][0][0], 2500);
    drop(client);
    let mut root = admin(&name).await;
    let sleeping: Vec<String> = root
        .query("SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO LIKE '%sleep(600)%' AND INFO NOT LIKE '%PROCESSLIST%'")
        .await
        .unwrap();
    assert!(sleeping.is_empty(), "still running: {sleeping:?}");
    assert!(!pwned.exists(), "INTO OUTFILE ran");
    assert_unchanged(&before, &dump(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB; .ci/run runs it"]
async fn a_user_that_can_write_is_refused_and_the_password_comes_from_the_environment() {
    let name = fresh_database("mcp_maria_roles").await;
    for url in [
        url_for(&name, None),
        url_for(&name, Some((&format!("{name}_writer"), "writer"))),
    ] {
        let target = Target::parse(&url).unwrap();
        let error = Database::open(&target, Options::default())
            .await
            .err()
            .expect("a user that can write was served read-only");
        assert!(
            error.message.contains("refusing to serve read-only"),
            "{}",
            error.message
        );
        for options in [
            Options {
                allow_privileged_role: true,
                ..Options::default()
            },
            Options {
                allow_write: true,
                ..Options::default()
            },
        ] {
            assert!(Database::open(&target, options).await.is_ok());
        }
    }

    // The binary takes the password from MYSQL_PWD, never shows it, and serves the reader.
    let mut url = url::Url::parse(&reader(&name)).unwrap();
    url.set_password(None).unwrap();
    let wrong = Command::new(MCP_SQL)
        .arg(url.as_str())
        .env("MYSQL_PWD", "not-the-password")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("Access denied"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    let mut command = tokio::process::Command::new(MCP_SQL);
    command
        .arg(url.as_str())
        .env("MYSQL_PWD", "reader")
        .stderr(std::process::Stdio::null());
    let client = ClientConfig::default()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    let result = client
        .call_tool(mcp_core::testing::tool_call(
            "query",
            json!({ "sql": "SELECT current_user(), count(*) FROM t" }),
        ))
        .await
        .unwrap();
    assert_eq!(
        result.structured_content.unwrap()["rows"][0],
        json!([format!("{name}_reader@%"), 2500])
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB; .ci/run runs it"]
async fn a_deny_list_is_checked_against_the_users_privileges() {
    let name = fresh_database("mcp_maria_deny").await;
    let target = Target::parse(&reader(&name)).unwrap();
    let deny = |rules: &[&str]| -> Vec<DenyRule> {
        rules.iter().map(|r| DenyRule::parse(r).unwrap()).collect()
    };
    let error = Database::open_denying(&target, Options::default(), &deny(&["t.email"]))
        .await
        .err()
        .expect("served a user that reads a denied column");
    assert!(
        error.message.contains(&format!("{name}.t.email")),
        "{}",
        error.message
    );
    // big_spenders reads orders, not t.email: its definition is visible (SHOW VIEW), so it is
    // not named.
    assert!(!error.message.contains("big_spenders"), "{}", error.message);
    let hint = error.hint.unwrap();
    let grant =
        format!("GRANT SELECT (`id`, `name`, `created`) ON `{name}`.`t` TO '{name}_reader'@'%';");
    assert!(hint.contains(&grant), "{hint}");
    // The grant is on the whole database: revoked there, then given table by table.
    run(
        "mysql",
        &[
            format!("REVOKE SELECT ON {name}.* FROM '{name}_reader'@'%'"),
            format!("GRANT SELECT ON {name}.orders TO '{name}_reader'@'%'"),
            format!("GRANT SELECT ON {name}.big_spenders TO '{name}_reader'@'%'"),
            grant.trim_end_matches(';').to_owned(),
        ],
    )
    .await;
    let opened = Database::open_denying(&target, Options::default(), &deny(&["t.email"]))
        .await
        .unwrap();
    let served = mcp_server_sql::Served::new("main", opened, target.display(), Options::default())
        .with_deny(deny(&["t.email"]));
    let client =
        mcp_core::testing::connect(mcp_server_sql::SqlServer::serving(vec![served], None).unwrap())
            .await
            .unwrap();
    for sql in [
        "SELECT * FROM t",
        "SELECT upper(email) FROM t",
        "SELECT group_concat(email) FROM t",
        "SELECT id FROM t WHERE email LIKE 'u1%'",
        "SELECT (SELECT email FROM t LIMIT 1)",
    ] {
        let message = refused(&client, "query", json!({ "sql": sql })).await;
        assert!(
            message.contains("command denied") || message.contains("ERROR 114"),
            "{sql}: {message}"
        );
    }
    let allowed = client
        .call(
            "query",
            json!({ "sql": "SELECT id, name FROM t ORDER BY id LIMIT 1" }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&allowed)["rows"], json!([[1, "user 1"]]));

    // A view (with its definer's rights) that reads the column is another way to it.
    run(
        &name,
        &[
            "CREATE VIEW contacts AS SELECT id, email AS address FROM t".to_owned(),
            format!("GRANT SELECT ON {name}.contacts TO '{name}_reader'@'%'"),
        ],
    )
    .await;
    let error = Database::open_denying(&target, Options::default(), &deny(&["t.email"]))
        .await
        .err()
        .unwrap();
    assert!(
        error
            .message
            .contains(&format!("through the view {name}.contacts")),
        "{}",
        error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs MariaDB; .ci/run runs it"]
async fn writes_go_through_execute_when_allowed_and_a_cancelled_query_is_killed() {
    let name = fresh_database("mcp_maria_writes").await;
    let writer = url_for(&name, Some((&format!("{name}_writer"), "writer")));
    let options = Options {
        allow_write: true,
        ..Options::default()
    };
    let client = server(&writer, options).await;
    let written = client
        .call(
            "execute",
            json!({ "sql": "UPDATE t SET name = ? WHERE id <= ?", "params": ["renamed", 3] }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&written)["rows_affected"], 3);
    let failed = refused(
        &client,
        "execute",
        json!({ "sql": "INSERT INTO orders (customer_id) VALUES (?)", "params": [999999] }),
    )
    .await;
    assert!(failed.contains("foreign key"), "{failed}");
    // query stays read-only on a writable server.
    let message = refused(
        &client,
        "query",
        json!({ "sql": "DELETE FROM t RETURNING id" }),
    )
    .await;
    assert!(message.contains("READ ONLY"), "{message}");

    let mut wire = cancel_a_slow_query(&reader(&name), "SELECT sleep(600)").await;
    assert_eq!(count_t(&mut wire, Duration::from_secs(30)).await, 2500);
    let mut root = admin(&name).await;
    let mut still: Vec<String> = Vec::new();
    for _ in 0..50 {
        still = root
            .query(
                "SELECT INFO FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT sleep(600)'",
            )
            .await
            .unwrap();
        if still.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(still.is_empty(), "the cancelled query still runs");
}
