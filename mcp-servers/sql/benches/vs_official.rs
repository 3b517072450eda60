//! `mcp-sql` against the reference servers, side by side in one run, same client (rmcp over
//! stdio), same data:
//!
//! - SQLite: `mcp-server-sqlite` (PyPI), on the same file;
//! - PostgreSQL: `@modelcontextprotocol/server-postgres` (npm), on the same database.
//!
//! (a) 1,000 sequential point-lookup queries; (b) one query returning 10,000 rows; (c) cold start
//! to the first `tools/list` answer. Run with `cargo bench -p mcp-server-sql --bench vs_official`;
//! it writes `mcp-servers/sql/BENCHMARKS.md`. Times are medians; the ratio is theirs ÷ ours.
//! With `MCP_BENCH_BASELINE=LABEL=PATH` (an `mcp-sql` built from an earlier commit) the report
//! also sets this build beside that one, in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use mcp_conformance::{
    bench::{self, RawClient, median, ms, node_version, warmed_median},
    peers,
};
use mcp_core::testing::{NetworkClient, tool_call};
use rmcp::{ServiceExt, model::ClientConfig, transport::TokioChildProcess};
use serde_json::json;
use tokio::process::Command;

const LOOKUPS: usize = 1_000;
const ROWS: usize = 100_000;
const BIG: usize = 10_000;
const ROUNDS: usize = 5;
const COLD_STARTS: usize = 10;
/// Rounds and cold starts against a reference, and against a baseline build.
const PEER: (usize, usize) = (ROUNDS, COLD_STARTS);
const BASELINE: (usize, usize) = (bench::BASELINE_ROUNDS, bench::BASELINE_COLD_STARTS);
/// Timed runs of (b) per server, after one that warms it.
const WARM_CALLS: usize = 5;

struct Contender {
    name: String,
    command: Vec<String>,
    /// The query tool's name and its SQL argument's name.
    tool: &'static str,
    argument: &'static str,
}

impl Contender {
    async fn connect(&self) -> NetworkClient {
        let mut command = Command::new(&self.command[0]);
        command.args(&self.command[1..]).stderr(Stdio::null());
        ClientConfig::default()
            .serve(TokioChildProcess::new(command).unwrap())
            .await
            .unwrap()
    }

    async fn query(&self, client: &NetworkClient, sql: &str) -> usize {
        let result = client
            .call_tool(tool_call(self.tool, json!({ self.argument: sql })))
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true), "{}: {result:?}", self.name);
        serde_json::to_string(&result.content).unwrap().len()
    }
}

async fn lookups(contender: &Contender) -> Duration {
    let client = contender.connect().await;
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let id = (i * 7919) % ROWS + 1;
        contender
            .query(&client, &format!("SELECT * FROM items WHERE id = {id}"))
            .await;
    }
    let elapsed = started.elapsed();
    client.cancel().await.unwrap();
    elapsed
}

/// The big query on a running server, as hosts keep them: one run to warm it, then the median
/// of a few.
async fn big(contender: &Contender) -> (Duration, usize) {
    let client = contender.connect().await;
    let sql = format!("SELECT * FROM items WHERE id <= {BIG} ORDER BY id");
    contender.query(&client, &sql).await;
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..WARM_CALLS {
        let started = Instant::now();
        size = contender.query(&client, &sql).await;
        times.push(started.elapsed());
    }
    client.cancel().await.unwrap();
    (median(times), size)
}

impl Contender {
    /// The same contender run by another build of the same server.
    fn with_binary(&self, binary: &Path) -> Self {
        let mut command = vec![binary.display().to_string()];
        command.extend(self.command[1..].iter().cloned());
        Self {
            name: "baseline".into(),
            command,
            tool: self.tool,
            argument: self.argument,
        }
    }

    /// The lean client (blocking; the benchmark's runtime has nothing else to do meanwhile).
    fn raw(&self) -> RawClient {
        let mut command = std::process::Command::new(&self.command[0]);
        command.args(&self.command[1..]);
        RawClient::spawn(&mut command).unwrap()
    }

    fn raw_query(&self, client: &mut RawClient, sql: &str) -> usize {
        client
            .call_tool(self.tool, json!({ self.argument: sql }))
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn raw_lookups(contender: &Contender) -> Duration {
    let mut client = contender.raw();
    let started = Instant::now();
    for i in 0..LOOKUPS {
        let id = (i * 7919) % ROWS + 1;
        contender.raw_query(&mut client, &format!("SELECT * FROM items WHERE id = {id}"));
    }
    started.elapsed()
}

/// [`big`] through the lean client.
fn raw_big(contender: &Contender) -> Duration {
    let mut client = contender.raw();
    let sql = format!("SELECT * FROM items WHERE id <= {BIG} ORDER BY id");
    warmed_median(WARM_CALLS, || {
        contender.raw_query(&mut client, &sql);
    })
}

/// PostgreSQL alone, no MCP server: the bench process sends each statement itself, in one
/// round trip (an unnamed statement, Parse/Bind/Execute/Sync in one write; no transaction
/// around it). No server can answer faster than its database: the reference's time over this
/// is a ceiling on any server's ratio. Returns (a)'s and (b)'s times, medians over rounds.
async fn database_alone(url: &str) -> (Duration, Duration) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let big_sql = format!("SELECT * FROM items WHERE id <= {BIG} ORDER BY id");
    client.query_typed(&big_sql, &[]).await.unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for i in 0..LOOKUPS {
            let id = (i * 7919) % ROWS + 1;
            let sql = format!("SELECT * FROM items WHERE id = {id}");
            assert_eq!(client.query_typed(&sql, &[]).await.unwrap().len(), 1);
        }
        a.push(started.elapsed());
        let mut runs = Vec::new();
        for _ in 0..WARM_CALLS {
            let started = Instant::now();
            assert_eq!(client.query_typed(&big_sql, &[]).await.unwrap().len(), BIG);
            runs.push(started.elapsed());
        }
        b.push(median(runs));
    }
    (median(a), median(b))
}

async fn cold_start(contender: &Contender) -> Duration {
    let started = Instant::now();
    let client = contender.connect().await;
    let tools = client.list_all_tools().await.unwrap();
    let elapsed = started.elapsed();
    assert!(!tools.is_empty());
    client.cancel().await.unwrap();
    elapsed
}

/// Rows for one engine's pair of contenders, measured in `rounds` interleaved rounds (and
/// `starts` cold starts), ratios with `digits` decimals; and the reference's (a) and (b) times
/// with the lean client.
async fn measure(
    engine: &str,
    contenders: [&Contender; 2],
    (rounds, starts): (usize, usize),
    digits: usize,
) -> (Vec<String>, [Duration; 2]) {
    let mut a = [Vec::new(), Vec::new()];
    let mut b = [Vec::new(), Vec::new()];
    let mut sizes = [0, 0];
    for _ in 0..rounds {
        for (i, contender) in contenders.iter().enumerate() {
            a[i].push(lookups(contender).await);
            let (time, size) = big(contender).await;
            b[i].push(time);
            sizes[i] = size;
        }
    }
    let mut raw_a = [Vec::new(), Vec::new()];
    let mut raw_b = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, contender) in contenders.iter().enumerate() {
            raw_a[i].push(raw_lookups(contender));
            raw_b[i].push(raw_big(contender));
        }
    }
    let mut cold = [Vec::new(), Vec::new()];
    for _ in 0..starts {
        for (i, contender) in contenders.iter().enumerate() {
            cold[i].push(cold_start(contender).await);
        }
    }
    let throughput = |d: Duration| LOOKUPS as f64 / d.as_secs_f64();
    let (oa, ta) = (median(a[0].clone()), median(a[1].clone()));
    let (ob, tb) = (median(b[0].clone()), median(b[1].clone()));
    let (oc, tc) = (median(cold[0].clone()), median(cold[1].clone()));
    let ratio = |theirs: Duration, ours: Duration| theirs.as_secs_f64() / ours.as_secs_f64();
    let (rao, rat) = (median(raw_a[0].clone()), median(raw_a[1].clone()));
    let (rbo, rbt) = (median(raw_b[0].clone()), median(raw_b[1].clone()));
    let rows = vec![
        format!(
            "| {engine} | (a) {LOOKUPS} point lookups | lean | {:.0} q/s ({}) | {:.0} q/s ({}) | **{:.digits$}×** |",
            throughput(rao),
            ms(rao),
            throughput(rat),
            ms(rat),
            ratio(rat, rao)
        ),
        format!(
            "| {engine} | (b) one query, {BIG} rows | lean | {} | {} | **{:.digits$}×** |",
            ms(rbo),
            ms(rbt),
            ratio(rbt, rbo)
        ),
        format!(
            "| {engine} | (a) {LOOKUPS} point lookups | rmcp | {:.0} q/s ({}) | {:.0} q/s ({}) | **{:.digits$}×** |",
            throughput(oa),
            ms(oa),
            throughput(ta),
            ms(ta),
            ratio(ta, oa)
        ),
        format!(
            "| {engine} | (b) one query, {BIG} rows | rmcp | {} ({} KB out) | {} ({} KB out) | **{:.digits$}×** |",
            ms(ob),
            sizes[0] / 1024,
            ms(tb),
            sizes[1] / 1024,
            ratio(tb, ob)
        ),
        format!(
            "| {engine} | (c) cold start to first tools/list | rmcp | {} | {} | **{:.digits$}×** |",
            ms(oc),
            ms(tc),
            ratio(tc, oc)
        ),
    ];
    (rows, [rat, rbt])
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (node, python) = tokio::task::spawn_blocking(|| {
        peers::ensure_node_peers().unwrap();
        (
            peers::node22().unwrap(),
            peers::python_bench_peer().unwrap(),
        )
    })
    .await
    .unwrap();
    let ours_binary = env!("CARGO_BIN_EXE_mcp-sql").to_owned();
    // The references answer every row at once: lift our page limits so the work is the same.
    let ours_flags = ["--max-rows", "100000", "--max-bytes", "1000000000"].map(str::to_owned);

    // SQLite: one file for both.
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("items.db");
    {
        let db = rusqlite::Connection::open(&file).unwrap();
        db.execute_batch(&format!(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, qty INTEGER);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {ROWS})
               INSERT INTO items SELECT i, 'item ' || i, i * 0.25, i % 97 FROM n;"
        ))
        .unwrap();
    }
    let file = file.display().to_string();
    let mut command = vec![ours_binary.clone()];
    command.extend(ours_flags.clone());
    command.push(file.clone());
    let ours_sqlite = Contender {
        name: "mcp-sql".into(),
        command,
        tool: "query",
        argument: "sql",
    };
    let reference_sqlite = Contender {
        name: "mcp-server-sqlite".into(),
        command: vec![
            python
                .with_file_name("mcp-server-sqlite")
                .display()
                .to_string(),
            "--db-path".into(),
            file,
        ],
        tool: "read_query",
        argument: "query",
    };
    let (mut rows, _) = measure("SQLite", [&ours_sqlite, &reference_sqlite], PEER, 1).await;
    let baseline = bench::baseline();
    let mut baseline_rows = Vec::new();
    if let Some((_, binary)) = &baseline {
        let base = ours_sqlite.with_binary(binary);
        baseline_rows.extend(
            measure("SQLite", [&ours_sqlite, &base], BASELINE, 2)
                .await
                .0,
        );
    }

    // PostgreSQL: one database for both.
    let admin = support::pg::admin("postgres").await;
    admin
        .batch_execute("DROP DATABASE IF EXISTS mcp_bench WITH (FORCE)")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE mcp_bench")
        .await
        .unwrap();
    support::pg::admin("mcp_bench")
        .await
        .batch_execute(&format!(
            "CREATE TABLE items (id integer PRIMARY KEY, name text, price double precision, qty integer);
             INSERT INTO items SELECT i, 'item ' || i, i * 0.25, i % 97 FROM generate_series(1, {ROWS}) i;
             ANALYZE items;"
        ))
        .await
        .unwrap();
    let url = support::pg::url_for("mcp_bench", None);
    let mut command = vec![ours_binary];
    command.extend(ours_flags);
    // The same superuser the reference connects as.
    command.push("--allow-privileged-role".to_owned());
    command.push(url.clone());
    let ours_pg = Contender {
        name: "mcp-sql".into(),
        command,
        tool: "query",
        argument: "sql",
    };
    let reference_pg = Contender {
        name: "server-postgres".into(),
        command: vec![
            node.display().to_string(),
            peers::node_peers_dir()
                .join("node_modules/@modelcontextprotocol/server-postgres/dist/index.js")
                .display()
                .to_string(),
            url,
        ],
        tool: "query",
        argument: "sql",
    };
    let (pg_rows, [reference_a, reference_b]) =
        measure("PostgreSQL", [&ours_pg, &reference_pg], PEER, 1).await;
    rows.extend(pg_rows);
    if let Some((_, binary)) = &baseline {
        let base = ours_pg.with_binary(binary);
        baseline_rows.extend(
            measure("PostgreSQL", [&ours_pg, &base], BASELINE, 2)
                .await
                .0,
        );
    }
    let against_baseline = match &baseline {
        Some((label, _)) => bench::baseline_section(
            label,
            "with the same flags, data and clients",
            &[
                "engine",
                "workload",
                "client",
                "this build",
                "baseline",
                "ratio",
            ],
            &baseline_rows,
        ),
        None => String::new(),
    };
    let (alone_a, alone_b) = database_alone(&support::pg::url_for("mcp_bench", None)).await;
    let ceiling = |reference: Duration, alone: Duration| {
        format!("{:.1}×", reference.as_secs_f64() / alone.as_secs_f64())
    };
    let alone_rows = [
        format!(
            "| (a) {LOOKUPS} point lookups | {:.0} q/s ({}) | {} | **{}** |",
            LOOKUPS as f64 / alone_a.as_secs_f64(),
            ms(alone_a),
            ms(reference_a),
            ceiling(reference_a, alone_a)
        ),
        format!(
            "| (b) one query, {BIG} rows | {} | {} | **{}** |",
            ms(alone_b),
            ms(reference_b),
            ceiling(reference_b, alone_b)
        ),
    ];

    let report = format!(
        "# mcp-sql benchmarks\n\n\
         `mcp-sql` against the reference servers, measured side by side in one run by \
         `cargo bench -p mcp-server-sql --bench vs_official`: the same client for both (two clients: \
         `lean`, `mcp_conformance::bench::RawClient`, JSON-RPC over the pipes with each answer scanned \
         whole, which leaves the servers' difference least diluted by the client's own cost; and \
         `rmcp`, the official Rust SDK's client on a single-threaded runtime, each answer \
         deserialized whole), over stdio, same \
         data ({ROWS} rows of `items(id, name, price, qty)`), rounds interleaved. SQLite: \
         `mcp-server-sqlite` (PyPI, pinned in `conformance/peers/python/bench-requirements.txt`) \
         on the same file. PostgreSQL {}: `@modelcontextprotocol/server-postgres` (npm, pinned in \
         `conformance/peers/node/package-lock.json`, on Node {}) on the same database. `mcp-sql` \
         runs with its page limits lifted (`--max-rows 100000 --max-bytes 1000000000`) so that (b) \
         returns all {BIG} rows as the references do. Medians of {ROUNDS} rounds ((a); (b): each \
         round a fresh server that runs the query once to warm up, then the median of \
         {WARM_CALLS} runs, as hosts keep servers running) and {COLD_STARTS} starts ((c)). \
         Ratio = reference time ÷ ours (higher is better for mcp-sql). Machine: {} cores, shared \
         and noisy; only the ratios mean much.\n\n\
         | engine | workload | client | mcp-sql | reference | ratio |\n|---|---|---|---|---|---|\n{}\n\n\
         ## PostgreSQL alone: the ceiling on any server's ratio\n\n\
         The same statements sent by the benchmark itself through tokio-postgres, each in one round \
         trip (an unnamed statement: Parse, Bind, Execute and Sync in one write), with no MCP server \
         and no transaction around them, in the same run. No server answers faster than its \
         database, so the reference's time (lean client) over this one bounds the ratio any server \
         can reach against it, whatever language it is written in.\n\n\
         | workload | PostgreSQL alone | reference (lean) | highest possible ratio |\n|---|---|---|---|\n{}\n{against_baseline}",
        server_version().await,
        node_version(&node),
        bench::cores(),
        rows.join("\n"),
        alone_rows.join("\n")
    );
    bench::write_report(Path::new(env!("CARGO_MANIFEST_DIR")), &report).unwrap();
}

async fn server_version() -> String {
    support::pg::admin("postgres")
        .await
        .query_one("SHOW server_version", &[])
        .await
        .map(|row| row.get::<_, String>(0))
        .unwrap_or_default()
}
