//! `mcp-sql` on a real PostgreSQL: every tool through the protocol, every attack failing with
//! the database unchanged (checked with `pg_dump`), writes only with `--allow-write`, and the
//! password from `PGPASSWORD`.
//!
//! The server comes from `MCP_SQL_TEST_PG` (a superuser URL; `.ci/run` starts one), or else the
//! test starts a throwaway cluster itself with `tests/pg-cluster.sh` (needs Debian's `postgresql`
//! package). Nothing is skipped.

use crate::support;

use std::{process::Command, time::Duration};

use crate::support::{
    all_refused, assert_unchanged, cancel_a_slow_query, count_t, ok,
    pg::{admin, url_for},
    refused, server,
};
use mcp_core::testing::text;
use mcp_server_sql::{Database, DenyRule, Options, Target};
use rmcp::{
    ServiceExt,
    model::{ClientConfig, ReadResourceRequestParams, ResourceContents},
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

const MCP_SQL: &str = env!("CARGO_BIN_EXE_mcp-sql");
const ODD_TABLE: &str = "x\"; DROP TABLE t; --";

/// A fresh database named `name` with the shop schema, and a role `{name}_reader` that may only
/// read it (password `reader`).
async fn fresh_database(name: &str) -> String {
    let root = admin("postgres").await;
    // One statement per call: DROP and CREATE DATABASE refuse to run in a transaction block.
    for statement in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
        // Counts calls of `counted` (below) in pg_stat_user_functions, for tests that check
        // how many rows were computed.
        format!("ALTER DATABASE {name} SET track_functions = 'all'"),
        format!("DROP ROLE IF EXISTS {name}_reader"),
        format!("CREATE ROLE {name}_reader LOGIN PASSWORD 'reader'"),
    ] {
        root.batch_execute(&statement).await.unwrap();
    }
    let db = admin(name).await;
    db.batch_execute(&format!(
        "CREATE TYPE status AS ENUM ('open', 'paid');
         CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE,
                         created timestamptz NOT NULL DEFAULT '2026-01-02T03:04:05Z');
         CREATE TABLE orders (
             id bigserial PRIMARY KEY,
             customer_id int NOT NULL REFERENCES t(id),
             total numeric(10, 2),
             tags text[],
             meta jsonb,
             state status NOT NULL DEFAULT 'open',
             ref uuid,
             took interval,
             photo bytea
         );
         CREATE INDEX orders_by_customer ON orders (customer_id, state);
         CREATE VIEW big_spenders AS SELECT customer_id, sum(total) AS spent FROM orders GROUP BY 1;
         CREATE SCHEMA sales;
         CREATE TABLE sales.regions (code char(2) PRIMARY KEY, label varchar(40));
         CREATE TABLE \"{odd}\" (v text);
         INSERT INTO t (name, email) SELECT 'user ' || i, 'u' || i || '@example.com' FROM generate_series(1, 2500) i;
         INSERT INTO orders (customer_id, total, tags, meta, state, ref, took, photo) VALUES
           (1, 12.50, ARRAY['a', 'b'], '{{\"gift\": true}}', 'paid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:00:00', '\\x00ff'),
           (1, 3.00, NULL, NULL, 'open', NULL, NULL, NULL),
           (2, 0.50, ARRAY[]::text[], '[]', 'open', NULL, NULL, NULL);
         INSERT INTO sales.regions VALUES ('EU', 'Europe');
         CREATE FUNCTION counted(x int) RETURNS int LANGUAGE plpgsql AS $f$ BEGIN RETURN x; END $f$;
         ANALYZE;
         GRANT USAGE ON SCHEMA public, sales TO {name}_reader;
         GRANT SELECT ON ALL TABLES IN SCHEMA public, sales TO {name}_reader;",
        odd = ODD_TABLE.replace('"', "\"\"")
    ))
    .await
    .unwrap();
    name.to_owned()
}

/// Everything in the database, schema and data, as `pg_dump` prints it.
fn dump(database: &str) -> String {
    let output = Command::new("pg_dump")
        .arg("--no-comments")
        .arg(url_for(database, None))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump fences its output with a random key (`\restrict …`) each run: leave it out.
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn the_tools_answer_on_postgres() {
    let name = fresh_database("mcp_tools").await;
    let client = server(
        &url_for(&name, Some((&format!("{name}_reader"), Some("reader")))),
        Options::default(),
    )
    .await;

    let listed = client.call("list_tables", json!({})).await.unwrap();
    let tables = ok(&listed)["tables"].as_array().unwrap().clone();
    let names: Vec<String> = tables
        .iter()
        .map(|t| {
            format!(
                "{}.{}",
                t["schema"].as_str().unwrap(),
                t["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            "public.big_spenders",
            "public.orders",
            "public.t",
            &format!("public.{ODD_TABLE}"),
            "sales.regions"
        ]
    );
    let t = tables.iter().find(|t| t["name"] == "t").unwrap();
    assert_eq!(
        t["estimated_rows"], 2500,
        "from the statistics ANALYZE wrote"
    );
    let only_sales = client
        .call("list_tables", json!({ "schema": "sales" }))
        .await
        .unwrap();
    assert_eq!(ok(&only_sales)["tables"].as_array().unwrap().len(), 1);

    let described = client
        .call("describe_table", json!({ "table": "orders" }))
        .await
        .unwrap();
    let orders = ok(&described);
    assert_eq!(orders["schema"], "public");
    assert_eq!(orders["primary_key"], json!(["id"]));
    assert_eq!(
        orders["columns"][2],
        json!({"name": "total", "type": "numeric(10,2)", "nullable": true})
    );
    assert_eq!(orders["columns"][5]["default"], "'open'::status");
    assert_eq!(
        orders["foreign_keys"][0],
        json!({"columns": ["customer_id"], "references_table": "t", "references_columns": ["id"]})
    );
    let index = orders["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "orders_by_customer")
        .unwrap();
    assert_eq!(index["columns"], json!(["customer_id", "state"]));
    assert!(
        index["definition"]
            .as_str()
            .unwrap()
            .starts_with("CREATE INDEX")
    );
    let regions = client
        .call(
            "describe_table",
            json!({ "table": "regions", "schema": "sales" }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&regions)["columns"][0]["type"], "character(2)");

    let found = client
        .call("search_objects", json!({ "pattern": "CUSTOMER" }))
        .await
        .unwrap();
    assert!(
        ok(&found)["matches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["table"] == "orders"
                && m["column"] == "customer_id"
                && m["type"] == "integer"),
        "{}",
        text(&found)
    );

    let rows = client
        .call(
            "query",
            json!({
                "sql": "SELECT o.id, t.name, o.total, o.tags, o.meta, o.state, o.ref, o.took, o.photo, t.created
                        FROM orders o JOIN t ON t.id = o.customer_id
                        WHERE o.customer_id = $1 AND o.total > $2 ORDER BY o.id",
                "params": [1, "1.00"]
            }),
        )
        .await
        .unwrap();
    let data = ok(&rows);
    assert_eq!(
        data["rows"],
        json!([
            [1, "user 1", "12.50", ["a", "b"], {"gift": true}, "paid",
             "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "1 day 02:00:00", "\\x00ff", "2026-01-02T03:04:05+00:00"],
            [2, "user 1", "3.00", null, null, "open", null, null, null, "2026-01-02T03:04:05+00:00"]
        ])
    );
    assert_eq!(
        data["columns"][2],
        json!({"name": "total", "type": "numeric"})
    );
    assert!(
        text(&rows).starts_with("id | name | total | tags"),
        "{}",
        text(&rows)
    );
    // Without parameters a query goes through a cursor (one round trip): the same answer.
    let literal = client
        .call(
            "query",
            json!({
                "sql": "SELECT o.id, t.name, o.total, o.tags, o.meta, o.state, o.ref, o.took, o.photo, t.created
                        FROM orders o JOIN t ON t.id = o.customer_id
                        WHERE o.customer_id = 1 AND o.total > '1.00' ORDER BY o.id"
            }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&literal), data);
    // An empty answer still names its columns; a statement no cursor can hold still runs.
    let empty = client
        .call(
            "query",
            json!({ "sql": "SELECT id, name, created FROM t WHERE false" }),
        )
        .await
        .unwrap();
    let prepared_empty = client
        .call(
            "query",
            json!({ "sql": "SELECT id, name, created FROM t WHERE id = $1", "params": [-1] }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&empty)["rows"], json!([]));
    assert_eq!(ok(&empty)["columns"].as_array().unwrap().len(), 3);
    assert_eq!(ok(&empty)["columns"], ok(&prepared_empty)["columns"]);
    let shown = client
        .call("query", json!({ "sql": "SHOW statement_timeout" }))
        .await
        .unwrap();
    assert_eq!(ok(&shown)["rows"].as_array().unwrap().len(), 1);

    // Paging: 2,500 rows in pages of 1,000.
    let first = client
        .call("query", json!({ "sql": "SELECT id FROM t ORDER BY id" }))
        .await
        .unwrap();
    assert_eq!(ok(&first)["rows"].as_array().unwrap().len(), 1000);
    assert_eq!(ok(&first)["next_cursor"], "1000");
    let last = client
        .call(
            "query",
            json!({ "sql": "SELECT id FROM t ORDER BY id", "cursor": "2000" }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&last)["rows"][0][0], 2001);
    assert_eq!(ok(&last)["truncated"], false);
    // Only the page (and one row more) is computed, not the whole result: each computed row
    // calls `counted`, whose calls PostgreSQL's statistics count (they are not rolled back).
    let page = client
        .call(
            "query",
            json!({ "sql": "SELECT id, counted(id) FROM t", "max_rows": 10 }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&page)["rows"].as_array().unwrap().len(), 10);
    assert_eq!(ok(&page)["truncated"], true);
    let observer = support::pg::admin(&name).await;
    let mut calls: i64 = 0;
    // A backend reports its statistics when idle, at most once a second.
    for _ in 0..100 {
        calls = observer
            .query_one(
                "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_user_functions \
                 WHERE funcname = 'counted'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if calls > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls, 11);

    let plan = client
        .call(
            "explain",
            json!({ "sql": "SELECT * FROM orders WHERE customer_id = $1", "params": [1] }),
        )
        .await
        .unwrap();
    assert!(text(&plan).contains("Scan"), "{}", text(&plan));

    let resources = client.list_all_resources().await.unwrap();
    let regions = resources
        .iter()
        .find(|r| r.uri == "sql://table/sales/regions")
        .unwrap();
    let read = client
        .read_resource(ReadResourceRequestParams::new(regions.uri.clone()))
        .await
        .unwrap();
    let ResourceContents::TextResourceContents { text: body, .. } = &read.contents[0] else {
        panic!("text expected");
    };
    assert_eq!(
        serde_json::from_str::<Value>(body).unwrap()["primary_key"],
        json!(["code"])
    );
}

/// Every attack from the issue, as a superuser (the strongest case: only the read-only
/// transaction, the extended protocol and the rows-only rule stand in the way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn every_attack_fails_and_the_database_is_unchanged() {
    let name = fresh_database("mcp_attacks").await;
    let before = dump(&name);
    let options = Options {
        timeout: Duration::from_secs(1),
        allow_privileged_role: true,
        ..Options::default()
    };
    let client = server(&url_for(&name, None), options).await;
    let pwned = std::env::temp_dir().join(format!("mcp-sql-pwned-{}", std::process::id()));

    let attacks = [
        ("COMMIT; DROP TABLE t", "cannot insert multiple commands"),
        ("SELECT 1; DELETE FROM t", "cannot insert multiple commands"),
        ("SELECT * FROM t; COMMIT", "cannot insert multiple commands"),
        ("DELETE FROM t", "read-only statement"),
        ("DELETE FROM t RETURNING id", "read-only transaction"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "read-only transaction",
        ),
        ("SET transaction_read_only = off", "read-only statement"),
        (
            "SELECT set_config('transaction_read_only', 'off', true)",
            "read-write mode",
        ),
        (
            &format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", pwned.display()),
            "read-only statement",
        ),
        ("COPY t TO STDOUT", "read-only statement"),
        ("DO $$ BEGIN DELETE FROM t; END $$", "read-only statement"),
        ("SELECT nextval('t_id_seq')", "read-only transaction"),
        ("CREATE TABLE u AS SELECT 1 AS x", "read-only statement"),
        ("SELECT pg_sleep(600)", "timeout"),
    ];
    all_refused(&client, &attacks).await;
    let explained = refused(
        &client,
        "explain",
        json!({ "sql": "SELECT 1; DROP TABLE t" }),
    )
    .await;
    assert!(explained.contains("multiple commands"), "{explained}");
    let analyzed = refused(
        &client,
        "explain",
        json!({ "sql": "ANALYZE DELETE FROM t" }),
    )
    .await;
    assert!(analyzed.contains("read-only transaction"), "{analyzed}");
    let missing = refused(
        &client,
        "describe_table",
        json!({ "table": "t\"; DROP TABLE t; --" }),
    )
    .await;
    assert!(missing.contains("no table or view named"), "{missing}");
    let odd = client
        .call("describe_table", json!({ "table": ODD_TABLE }))
        .await
        .unwrap();
    assert_eq!(ok(&odd)["name"], ODD_TABLE);
    let typo = refused(
        &client,
        "query",
        json!({ "sql": "SELECT id,\n  nmae FROM t" }),
    )
    .await;
    assert!(typo.contains("column \"nmae\" does not exist"), "{typo}");
    assert!(typo.contains("line 2, column 3"), "{typo}");
    // explain sends the SQL behind a prefix; the position is still the caller's.
    let planned = refused(
        &client,
        "explain",
        json!({ "sql": "SELECT id,\n  nmae FROM t" }),
    )
    .await;
    assert!(planned.contains("line 2, column 3"), "{planned}");
    let unknown = client
        .call("execute", json!({ "sql": "DELETE FROM t" }))
        .await;
    assert!(unknown.is_err() || unknown.unwrap().is_error == Some(true));

    // Still serving after the timeouts and errors, and nothing changed.
    let count = client
        .call("query", json!({ "sql": "SELECT count(*) FROM t" }))
        .await
        .unwrap();
    assert_eq!(ok(&count)["rows"][0][0], 2500);
    drop(client);
    assert!(!pwned.exists(), "COPY TO PROGRAM ran");
    assert_unchanged(&before, &dump(&name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn writes_go_through_execute_in_a_transaction_when_allowed() {
    let name = fresh_database("mcp_writes").await;
    let options = Options {
        allow_write: true,
        ..Options::default()
    };
    let client = server(&url_for(&name, None), options).await;
    let inserted = client
        .call(
            "execute",
            json!({ "sql": "INSERT INTO t (name, email) VALUES ($1, $2), ($3, NULL)",
                    "params": ["Zoë", "z@example.com", "x'); DROP TABLE t; --"] }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&inserted)["rows_affected"], 2);
    let failed = refused(
        &client,
        "execute",
        json!({ "sql": "UPDATE t SET email = 'same@example.com' WHERE id < 3" }),
    )
    .await;
    assert!(failed.contains("duplicate key"), "{failed}");
    let two = refused(
        &client,
        "execute",
        json!({ "sql": "DELETE FROM t; DROP TABLE t" }),
    )
    .await;
    assert!(two.contains("multiple commands"), "{two}");
    let still = refused(
        &client,
        "query",
        json!({ "sql": "DELETE FROM t RETURNING id" }),
    )
    .await;
    assert!(still.contains("read-only transaction"), "{still}");
    let rows = client
        .call(
            "query",
            json!({ "sql": "SELECT name FROM t WHERE id > 2500 ORDER BY id" }),
        )
        .await
        .unwrap();
    assert_eq!(
        ok(&rows)["rows"],
        json!([["Zoë"], ["x'); DROP TABLE t; --"]])
    );
    let untouched = client
        .call(
            "query",
            json!({ "sql": "SELECT count(*) FROM t WHERE email = 'same@example.com'" }),
        )
        .await
        .unwrap();
    assert_eq!(
        ok(&untouched)["rows"][0][0],
        0,
        "the failed UPDATE was rolled back"
    );
}

/// The binary as a host runs it: URL without the password, which comes from `PGPASSWORD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn the_binary_takes_the_password_from_the_environment() {
    let name = fresh_database("mcp_binary").await;
    let url = url_for(&name, Some((&format!("{name}_reader"), None)));

    let mut command = tokio::process::Command::new(MCP_SQL);
    command
        .arg(&url)
        .env("PGPASSWORD", "reader")
        .stderr(std::process::Stdio::null());
    let client = ClientConfig::default()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert!(!tools.contains(&"execute".to_owned()));
    let result = client
        .call_tool(mcp_core::testing::tool_call(
            "query",
            json!({ "sql": "SELECT current_user, count(*) FROM t" }),
        ))
        .await
        .unwrap();
    assert_eq!(
        result.structured_content.unwrap()["rows"][0],
        json!([format!("{name}_reader"), 2500])
    );
    client.cancel().await.unwrap();

    // A wrong password is a clear error at startup, and the password is not echoed.
    let output = tokio::process::Command::new(MCP_SQL)
        .arg(url_for(
            &name,
            Some((&format!("{name}_reader"), Some("hunter2"))),
        ))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

/// A cancelled call stops its statement on the server (PostgreSQL's cancel request), and the
/// server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn a_cancelled_query_is_cancelled_on_the_server() {
    let name = fresh_database("mcp_cancel").await;
    let reader = url_for(&name, Some((&format!("{name}_reader"), Some("reader"))));
    let mut wire = cancel_a_slow_query(&reader, "SELECT pg_sleep(300) AS slept").await;

    // The sleep is gone from the server (bounded wait: it would otherwise run for 300 s).
    let observer = admin(&name).await;
    let mut sleeping = -1;
    for _ in 0..100 {
        sleeping = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = 'mcp-sql' AND query LIKE '%pg_sleep(300)%' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0);
        if sleeping == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sleeping, 0, "the cancelled statement is still running");

    assert_eq!(count_t(&mut wire, Duration::from_secs(30)).await, 2500);
    wire.close().await;
}

/// Finding 3 of the attack run: a read-only server as a role that can write is refused (such a
/// role writes through `dblink_exec`, whose connection the read-only transaction does not
/// cover) unless `allow_privileged_role` is given; a role with only SELECT grants is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn a_role_that_can_write_is_refused_unless_allowed() {
    let name = fresh_database("mcp_privileged").await;
    let db = admin(&name).await;
    db.batch_execute(&format!(
        "CREATE EXTENSION IF NOT EXISTS dblink;
         DROP ROLE IF EXISTS {name}_owner; DROP ROLE IF EXISTS {name}_inserter;
         CREATE ROLE {name}_owner LOGIN PASSWORD 'owner';
         CREATE ROLE {name}_inserter LOGIN PASSWORD 'inserter';
         GRANT USAGE, CREATE ON SCHEMA public TO {name}_owner;
         GRANT USAGE ON SCHEMA public, sales TO {name}_inserter;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO {name}_inserter;
         GRANT INSERT ON sales.regions TO {name}_inserter;"
    ))
    .await
    .unwrap();
    let owner_db = tokio_postgres::connect(
        &url_for(&name, Some((&format!("{name}_owner"), Some("owner")))),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(owner_db.1);
    owner_db
        .0
        .batch_execute("CREATE TABLE mine (x int)")
        .await
        .unwrap();

    for (user, password, why) in [
        (None, "", "is a superuser"),
        (
            Some(format!("{name}_owner")),
            "owner",
            "can write to public.mine",
        ),
        (
            Some(format!("{name}_inserter")),
            "inserter",
            "can write to sales.regions",
        ),
    ] {
        let url = match &user {
            None => url_for(&name, None),
            Some(user) => url_for(&name, Some((user, Some(password)))),
        };
        let target = Target::parse(&url).unwrap();
        let refused = Database::open(&target, Options::default()).await;
        let error = refused.err().expect("a role that can write was served");
        assert!(
            error.message.contains("refusing to serve read-only"),
            "{}",
            error.message
        );
        assert!(error.message.contains(why), "{}", error.message);
        assert!(
            error
                .hint
                .as_deref()
                .unwrap_or_default()
                .contains("--allow-privileged-role"),
            "{error:?}"
        );
        // With the flag it serves, and --allow-write needs no flag.
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
    // The binary says so and exits, as the attack run's superuser would have met it.
    let output = Command::new(MCP_SQL)
        .arg(url_for(&name, None))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to serve read-only"), "{stderr}");
    assert!(stderr.contains("dblink"), "{stderr}");

    // A role with only SELECT grants is served.
    let reader = url_for(&name, Some((&format!("{name}_reader"), Some("reader"))));
    let client = server(&reader, Options::default()).await;
    let count = client
        .call("query", json!({ "sql": "SELECT count(*) FROM t" }))
        .await
        .unwrap();
    assert_eq!(ok(&count)["rows"][0][0], 2500);
}

/// Finding 3, continued: nothing a call does to its session outlives it on the pooled
/// connection (an advisory lock, a setting), and a statement that fails inside the transaction
/// is reported with its own error, not "current transaction is aborted".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn session_state_does_not_leak_and_the_first_error_is_reported() {
    let name = fresh_database("mcp_session").await;
    let reader = url_for(&name, Some((&format!("{name}_reader"), Some("reader"))));
    let client = server(&reader, Options::default()).await;

    let locked = client
        .call("query", json!({ "sql": "SELECT pg_advisory_lock(4242)" }))
        .await
        .unwrap();
    ok(&locked);
    let observer = admin(&name).await;
    let mut free = false;
    for _ in 0..100 {
        free = observer
            .query_one("SELECT pg_try_advisory_lock(4242)", &[])
            .await
            .unwrap()
            .get(0);
        if free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(free, "the advisory lock outlived the call that took it");

    let set = client
        .call(
            "query",
            json!({ "sql": "SELECT set_config('search_path', 'sales', false)" }),
        )
        .await
        .unwrap();
    ok(&set);
    // Every pooled connection, however the pool hands them out.
    for _ in 0..8 {
        let shown = client
            .call("query", json!({ "sql": "SHOW search_path" }))
            .await
            .unwrap();
        assert_eq!(ok(&shown)["rows"][0][0], "\"$user\", public");
    }

    all_refused(
        &client,
        &[
            ("SELECT * FROM t FOR UPDATE", "read-only transaction"),
            (
                "SELECT id FROM t LIMIT 1 FOR SHARE",
                "read-only transaction",
            ),
            (
                "SELECT pg_read_file('/etc/passwd')",
                "permission denied for function pg_read_file",
            ),
        ],
    )
    .await;
    for sql in [
        "SELECT * FROM t FOR UPDATE",
        "SELECT pg_read_file('/etc/passwd')",
    ] {
        let message = refused(&client, "query", json!({ "sql": sql })).await;
        assert!(
            !message.contains("transaction is aborted"),
            "{sql}: {message}"
        );
    }
}

/// PostgreSQL enforces a deny list through the role's privileges: the server does not start
/// while the role can read a denied column, directly or through a view, and says what to run.
#[tokio::test]
#[ignore = "needs PostgreSQL (MCP_SQL_TEST_PG or Debian's postgresql package); .ci/run runs it"]
async fn a_deny_list_is_checked_against_the_roles_privileges() {
    let name = fresh_database("mcp_deny").await;
    let reader = url_for(&name, Some((&format!("{name}_reader"), Some("reader"))));
    let target = Target::parse(&reader).unwrap();
    let deny = |rules: &[&str]| -> Vec<DenyRule> {
        rules.iter().map(|r| DenyRule::parse(r).unwrap()).collect()
    };
    let open = |rules: Vec<DenyRule>, options: Options| {
        let target = target.clone();
        async move { Database::open_denying(&target, options, &rules).await }
    };

    // The reader was granted SELECT on every table: refused, with the statements that fix it.
    let error = open(deny(&["T.Email"]), Options::default())
        .await
        .err()
        .expect("served a role that reads a denied column");
    assert!(
        error.message.contains("public.t.email"),
        "{}",
        error.message
    );
    let hint = error.hint.clone().unwrap();
    let revoke = format!("REVOKE SELECT ON public.t FROM {name}_reader;");
    let grant = format!("GRANT SELECT (id, name, created) ON public.t TO {name}_reader;");
    assert!(hint.contains(&revoke) && hint.contains(&grant), "{hint}");
    let db = admin(&name).await;
    db.batch_execute(&format!("{revoke} {grant}"))
        .await
        .unwrap();

    // A view that shows the column is another way to read it.
    db.batch_execute(&format!(
        "CREATE VIEW contacts AS SELECT id, email AS address FROM t;
         GRANT SELECT ON contacts TO {name}_reader;"
    ))
    .await
    .unwrap();
    let error = open(deny(&["t.email"]), Options::default())
        .await
        .err()
        .expect("served a role that reads a denied column through a view");
    assert!(
        error.message.contains("through the view public.contacts"),
        "{}",
        error.message
    );
    db.batch_execute(&format!("REVOKE SELECT ON contacts FROM {name}_reader"))
        .await
        .unwrap();

    // Now the engine enforces it, whatever the statement.
    let opened = open(deny(&["t.email"]), Options::default()).await.unwrap();
    let served = mcp_server_sql::Served::new("main", opened, target.display(), Options::default())
        .with_deny(deny(&["t.email"]));
    let client =
        mcp_core::testing::connect(mcp_server_sql::SqlServer::serving(vec![served], None).unwrap())
            .await
            .unwrap();
    for sql in [
        "SELECT * FROM t",
        "SELECT upper(email) FROM t",
        "SELECT string_agg(email, ',') FROM t",
        "SELECT id FROM t WHERE email LIKE 'u1%'",
        "SELECT (SELECT email FROM t LIMIT 1)",
        "SELECT * FROM contacts",
        "SELECT to_jsonb(t) FROM t",
    ] {
        let message = refused(&client, "query", json!({ "sql": sql })).await;
        assert!(message.contains("permission denied"), "{sql}: {message}");
    }
    let allowed = client
        .call(
            "query",
            json!({ "sql": "SELECT id, name FROM t ORDER BY id LIMIT 1" }),
        )
        .await
        .unwrap();
    assert_eq!(ok(&allowed)["rows"], json!([[1, "user 1"]]));

    // A whole table, which a view reads too; and a superuser reads everything, flag or not.
    let error = open(deny(&["orders"]), Options::default())
        .await
        .err()
        .unwrap();
    assert!(
        error.message.contains("public.orders.customer_id (rule")
            && error
                .message
                .contains("through the view public.big_spenders"),
        "{}",
        error.message
    );
    let superuser = Target::parse(&url_for(&name, None)).unwrap();
    let privileged = Options {
        allow_privileged_role: true,
        ..Options::default()
    };
    let error = Database::open_denying(&superuser, privileged, &deny(&["t.email"]))
        .await
        .err()
        .unwrap();
    assert!(
        error.message.contains("public.t.email"),
        "{}",
        error.message
    );
}
