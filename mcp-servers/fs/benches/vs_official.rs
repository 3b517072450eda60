//! `mcp-fs` against the official Node server (`@modelcontextprotocol/server-filesystem`, pinned in
//! `conformance/peers/node`), side by side in one run, same client for both (three clients: a lean
//! one, the TypeScript SDK's, rmcp's), over stdio, same data:
//!
//! (a) 2,000 sequential `read_text_file` calls of a 4 KB file;
//! (b) `directory_tree` and `search_files` on a generated tree of 50,000 files;
//! (c) cold start: spawn to the first `tools/list` answer.
//!
//! Run with `cargo bench -p mcp-server-fs --bench vs_official`; it writes
//! `mcp-servers/fs/BENCHMARKS.md`. Times are medians; the ratio is official ÷ ours. With
//! `MCP_BENCH_BASELINE=LABEL=PATH` (an `mcp-fs` built from an earlier commit) the report also
//! sets this build beside that one, in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use mcp_conformance::{
    bench::{self, RawClient, median, ms, node_version, warmed_median},
    peers,
};
use mcp_core::testing::{NetworkClient, tool_call};
use rmcp::{ServiceExt, model::ClientConfig, transport::TokioChildProcess};
use tokio::process::Command;

const READS: usize = 2_000;
const ROUNDS: usize = 5;
const COLD_STARTS: usize = 10;
/// Timed calls per server in (b), after one that warms it.
const WARM_CALLS: usize = 3;

struct Contender {
    name: &'static str,
    command: Vec<PathBuf>,
}

impl Contender {
    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .arg(dir)
            .stderr(Stdio::null());
        command
    }

    async fn connect(&self, dir: &Path) -> NetworkClient {
        let transport = TokioChildProcess::new(self.command(dir)).unwrap();
        ClientConfig::default().serve(transport).await.unwrap()
    }
}

/// 50 directories × 10 subdirectories × 100 files.
fn generate_tree(root: &Path) {
    for a in 0..50 {
        for b in 0..10 {
            let dir = root.join(format!("dir{a:02}")).join(format!("sub{b}"));
            std::fs::create_dir_all(&dir).unwrap();
            for c in 0..100 {
                let extension = if c % 10 == 0 { "rs" } else { "txt" };
                std::fs::write(dir.join(format!("file{c:03}.{extension}")), "x").unwrap();
            }
        }
    }
}

async fn reads(contender: &Contender, dir: &Path) -> Duration {
    let client = contender.connect(dir).await;
    let file = dir.join("small.txt").display().to_string();
    let started = Instant::now();
    for _ in 0..READS {
        let result = client
            .call_tool(tool_call(
                "read_text_file",
                serde_json::json!({ "path": file }),
            ))
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true));
    }
    let elapsed = started.elapsed();
    client.cancel().await.unwrap();
    elapsed
}

/// The floor under (a): the same number of `ping` round trips, which do no file work.
async fn pings(contender: &Contender, dir: &Path) -> Duration {
    let client = contender.connect(dir).await;
    let started = Instant::now();
    for _ in 0..READS {
        client
            .send_request(rmcp::model::ClientRequest::PingRequest(Default::default()))
            .await
            .unwrap();
    }
    let elapsed = started.elapsed();
    client.cancel().await.unwrap();
    elapsed
}

async fn one_call(
    contender: &Contender,
    dir: &Path,
    tool: &str,
    arguments: serde_json::Value,
) -> (Duration, usize) {
    let client = contender.connect(dir).await;
    // A running server, as hosts keep them: one call to warm it, then the median of a few.
    client
        .call_tool(tool_call(tool, arguments.clone()))
        .await
        .unwrap();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..WARM_CALLS {
        let started = Instant::now();
        let result = client
            .call_tool(tool_call(tool, arguments.clone()))
            .await
            .unwrap();
        times.push(started.elapsed());
        assert_ne!(result.is_error, Some(true), "{tool}");
        size = serde_json::to_string(&result.content).unwrap().len();
    }
    client.cancel().await.unwrap();
    (median(times), size)
}

/// The same workloads through the lean client (blocking, on a thread of its own).
fn raw_client(contender: &Contender, dir: &Path) -> RawClient {
    let mut command = std::process::Command::new(&contender.command[0]);
    command.args(&contender.command[1..]).arg(dir);
    RawClient::spawn(&mut command).unwrap()
}

fn raw_reads(contender: &Contender, dir: &Path) -> Duration {
    let mut client = raw_client(contender, dir);
    let file = dir.join("small.txt").display().to_string();
    let started = Instant::now();
    for _ in 0..READS {
        client
            .call_tool("read_text_file", serde_json::json!({ "path": file }))
            .unwrap();
    }
    started.elapsed()
}

fn raw_pings(contender: &Contender, dir: &Path) -> Duration {
    let mut client = raw_client(contender, dir);
    let started = Instant::now();
    for _ in 0..READS {
        client.request("ping", serde_json::json!({})).unwrap();
    }
    started.elapsed()
}

/// A call on a server that has already answered it once, median of a few: a long-running
/// server, as hosts keep them (the cold process is (c)'s subject).
fn raw_one_call(
    contender: &Contender,
    dir: &Path,
    tool: &str,
    arguments: serde_json::Value,
) -> Duration {
    let mut client = raw_client(contender, dir);
    warmed_median(WARM_CALLS, || {
        client.call_tool(tool, arguments.clone()).unwrap();
    })
}

/// The official TypeScript SDK's client (`conformance/peers/node/bench-client.mjs`), the client
/// JavaScript hosts build on: `warm` untimed calls, then the time of each of `times` calls.
fn ts_calls(
    node: &Path,
    contender: &Contender,
    dir: &Path,
    tool: &str,
    arguments: serde_json::Value,
    (warm, times): (usize, usize),
) -> Vec<Duration> {
    let spec =
        serde_json::json!({ "name": tool, "arguments": arguments, "warm": warm, "times": times });
    let output = std::process::Command::new(node)
        .arg(peers::node_peers_dir().join("bench-client.mjs"))
        .arg(spec.to_string())
        .args(&contender.command)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {tool}: {}",
        contender.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["ms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ms| Duration::from_secs_f64(ms.as_f64().unwrap() / 1000.0))
        .collect()
}

async fn cold_start(contender: &Contender, dir: &Path) -> Duration {
    let started = Instant::now();
    let client = contender.connect(dir).await;
    let tools = client.list_all_tools().await.unwrap();
    let elapsed = started.elapsed();
    assert!(!tools.is_empty());
    client.cancel().await.unwrap();
    elapsed
}

/// The lean client's rounds over two servers, interleaved so that both meet the same weather.
fn lean_rounds(
    contenders: [&Contender; 2],
    rounds: usize,
    dir: &Path,
    tree_args: &serde_json::Value,
    search_args: &serde_json::Value,
) -> Measured {
    let mut lean = Measured::default();
    for _ in 0..rounds {
        for (i, contender) in contenders.iter().enumerate() {
            lean.reads[i].push(raw_reads(contender, dir));
            lean.pings[i].push(raw_pings(contender, dir));
            let call = |tool, arguments| raw_one_call(contender, dir, tool, arguments);
            lean.tree[i].push(call("directory_tree", tree_args.clone()));
            lean.search[i].push(call("search_files", search_args.clone()));
        }
    }
    lean
}

/// (c) for two servers, interleaved.
async fn cold_starts(contenders: [&Contender; 2], starts: usize, dir: &Path) -> [Vec<Duration>; 2] {
    let mut cold = [Vec::new(), Vec::new()];
    for _ in 0..starts {
        for (i, contender) in contenders.iter().enumerate() {
            cold[i].push(cold_start(contender, dir).await);
        }
    }
    cold
}

/// One client's measurements of both servers (ours first): (a), its ping floor, and (b).
#[derive(Default)]
struct Measured {
    reads: [Vec<Duration>; 2],
    pings: [Vec<Duration>; 2],
    tree: [Vec<Duration>; 2],
    search: [Vec<Duration>; 2],
}

impl Measured {
    /// The table's rows, ratios with `digits` decimals; with the answers' sizes
    /// (directory_tree, search_files) if known.
    fn rows(&self, sizes: Option<[(usize, usize); 2]>, digits: usize) -> Vec<String> {
        vec![
            calls_row(
                &format!("(a) {READS} × read_text_file, 4 KB"),
                &self.reads,
                true,
                digits,
            ),
            calls_row(
                &format!("(a, floor) {READS} × ping: client and transport alone"),
                &self.pings,
                false,
                digits,
            ),
            time_row(
                "(b) directory_tree, 50,000 files",
                &self.tree,
                sizes.map(|s| s.map(|s| s.0)),
                digits,
            ),
            time_row(
                "(b) search_files `**/*.rs`, 50,000 files",
                &self.search,
                sizes.map(|s| s.map(|s| s.1)),
                digits,
            ),
        ]
    }
}

/// A row of `READS` calls: throughput and time for each server, and the ratio.
fn calls_row(label: &str, times: &[Vec<Duration>; 2], bold: bool, digits: usize) -> String {
    let (o, t) = (median(times[0].clone()), median(times[1].clone()));
    let throughput = |d: Duration| READS as f64 / d.as_secs_f64();
    let ratio = t.as_secs_f64() / o.as_secs_f64();
    format!(
        "| {label} | {:.0} calls/s ({}) | {:.0} calls/s ({}) | {} |",
        throughput(o),
        ms(o),
        throughput(t),
        ms(t),
        if bold {
            format!("**{ratio:.digits$}×**")
        } else {
            format!("{ratio:.digits$}×")
        }
    )
}

/// A row of one call's time for each server (and its answer's size), and the ratio.
fn time_row(
    label: &str,
    times: &[Vec<Duration>; 2],
    size: Option<[usize; 2]>,
    digits: usize,
) -> String {
    let (o, t) = (median(times[0].clone()), median(times[1].clone()));
    let out = |i: usize| {
        size.map(|s| format!(" ({} KB out)", s[i] / 1024))
            .unwrap_or_default()
    };
    format!(
        "| {label} | {}{} | {}{} | **{:.digits$}×** |",
        ms(o),
        out(0),
        ms(t),
        out(1),
        t.as_secs_f64() / o.as_secs_f64()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let node = tokio::task::spawn_blocking(|| {
        peers::ensure_node_peers().unwrap();
        peers::node22().unwrap()
    })
    .await
    .unwrap();
    let ours = Contender {
        name: "mcp-fs",
        command: vec![
            PathBuf::from(env!("CARGO_BIN_EXE_mcp-fs")),
            "--max-entries".into(),
            "100000".into(),
        ],
    };
    let official = Contender {
        name: "server-filesystem (Node)",
        command: vec![node.clone(), peers::node_bin("mcp-server-filesystem")],
    };
    let contenders = [&ours, &official];
    let baseline = bench::baseline().map(|(label, binary)| {
        let base = Contender {
            name: "baseline",
            command: vec![binary, "--max-entries".into(), "100000".into()],
        };
        (label, base)
    });

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().canonicalize().unwrap();
    std::fs::write(dir.join("small.txt"), "0123456789abcdef".repeat(256)).unwrap();
    let tree = dir.join("tree");
    generate_tree(&tree);

    // Interleaved rounds, so both meet the same machine weather.
    let tree_args = serde_json::json!({ "path": tree.display().to_string() });
    let search_args =
        serde_json::json!({ "path": tree.display().to_string(), "pattern": "**/*.rs" });
    let file = serde_json::json!({ "path": dir.join("small.txt").display().to_string() });
    let mut rmcp = Measured::default();
    let mut sizes = [(0, 0), (0, 0)];
    for _ in 0..ROUNDS {
        for (i, contender) in contenders.iter().enumerate() {
            rmcp.reads[i].push(reads(contender, &dir).await);
            rmcp.pings[i].push(pings(contender, &dir).await);
            let (t, tree_size) =
                one_call(contender, &dir, "directory_tree", tree_args.clone()).await;
            rmcp.tree[i].push(t);
            let (s, search_size) =
                one_call(contender, &dir, "search_files", search_args.clone()).await;
            rmcp.search[i].push(s);
            sizes[i] = (tree_size, search_size);
        }
    }
    // The lean client: the same workloads, the client's own cost as small as it gets.
    let lean = lean_rounds(contenders, ROUNDS, &dir, &tree_args, &search_args);
    // The official TypeScript SDK's client: the same workloads again.
    let mut typescript = Measured::default();
    for _ in 0..ROUNDS {
        for (i, contender) in contenders.iter().enumerate() {
            let calls =
                |tool, arguments, counts| ts_calls(&node, contender, &dir, tool, arguments, counts);
            let all = (0, READS);
            let warmed = (1, WARM_CALLS);
            typescript.reads[i].push(calls("read_text_file", file.clone(), all).iter().sum());
            typescript.pings[i].push(calls("ping", serde_json::json!({}), all).iter().sum());
            typescript.tree[i].push(median(calls("directory_tree", tree_args.clone(), warmed)));
            typescript.search[i].push(median(calls("search_files", search_args.clone(), warmed)));
        }
    }
    let cold = cold_starts(contenders, COLD_STARTS, &dir).await;
    let against_baseline = match &baseline {
        Some((label, base)) => {
            let pair = [&ours, base];
            let lean = lean_rounds(pair, bench::BASELINE_ROUNDS, &dir, &tree_args, &search_args);
            let mut rows = lean.rows(None, 2);
            rows.push(time_row(
                "(c) cold start to first tools/list",
                &cold_starts(pair, bench::BASELINE_COLD_STARTS, &dir).await,
                None,
                2,
            ));
            bench::baseline_section(
                label,
                "through the lean client (cold starts through rmcp's)",
                &["workload", "this build", "baseline", "ratio"],
                &rows,
            )
        }
        None => String::new(),
    };

    let mut rmcp_rows = rmcp.rows(Some(sizes), 1);
    rmcp_rows.push(time_row(
        "(c) cold start to first tools/list",
        &cold,
        None,
        1,
    ));

    let report = format!(
        "# mcp-fs benchmarks\n\n\
         `{}` against the official `{}` (`@modelcontextprotocol/server-filesystem`, version pinned in \
         `conformance/peers/node/package-lock.json`, on Node {}), measured side by side in one run by \
         `cargo bench -p mcp-server-fs --bench vs_official`: same files, same client for both, over stdio, \
         rounds interleaved. Medians of {ROUNDS} rounds ((a); (b): each round a fresh server that \
         answers once to warm up, then the median of {WARM_CALLS} calls, as hosts keep servers \
         running) and {COLD_STARTS} starts ((c)). \
         Ratio = official time ÷ ours (higher is better for mcp-fs). Machine: {} cores, shared and noisy; \
         only the ratios mean much. Both servers may use more than one core: mcp-fs walks a tree's \
         top-level subdirectories on up to four threads, and Node runs the official server's file \
         system calls on libuv's thread pool, off its JavaScript thread.\n\n\
         Three clients, each the same for both servers. A round trip costs the client's own work \
         and the thread wake-ups on both sides as well as the server's work; the first is the same \
         for both servers and dilutes their difference (each table's ping row is that floor), so \
         the lean client shows the servers best, and the SDKs' clients show what their hosts see.\n\n\
         ## The lean client\n\n\
         `mcp_conformance::bench::RawClient`: newline-delimited JSON-RPC over the pipes, blocking, one \
         request at a time, each answer read whole and checked to be well-formed JSON (scanned, not built \
         into a tree).\n\n\
         | workload | mcp-fs | official | ratio |\n|---|---|---|---|\n{}\n\n\
         ## The official TypeScript SDK's client\n\n\
         `conformance/peers/node/bench-client.mjs`: the client JavaScript hosts build on, on Node; \
         it lists the tools as a host does, then calls; each answer is parsed whole (`JSON.parse`) \
         and checked against the SDK's result schema. Same rounds as above.\n\n\
         | workload | mcp-fs | official | ratio |\n|---|---|---|---|\n{}\n\n\
         ## rmcp's client\n\n\
         rmcp (the official Rust SDK) on a single-threaded Tokio runtime, each answer deserialized \
         whole. rmcp reads a message through untagged enums, which buffer it into serde's generic \
         tree before building the result, and `structuredContent` becomes a JSON tree: for \
         `directory_tree` that is 50,000 objects from mcp-fs (its structured output is the tree) \
         against one string from the official server (whose structured content is its text again), \
         and most of the time of mcp-fs's row is the client's.\n\n\
         | workload | mcp-fs | official | ratio |\n|---|---|---|---|\n{}\n{against_baseline}",
        ours.name,
        official.name,
        node_version(&node),
        bench::cores(),
        lean.rows(None, 1).join("\n"),
        typescript.rows(None, 1).join("\n"),
        rmcp_rows.join("\n"),
    );
    bench::write_report(Path::new(env!("CARGO_MANIFEST_DIR")), &report).unwrap();
}
