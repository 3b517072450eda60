//! `mcp-fs` against the official Node server (`@modelcontextprotocol/server-filesystem`, pinned in
//! `conformance/peers/node`), side by side in one run, same client (rmcp over stdio), same data:
//!
//! (a) 2,000 sequential `read_text_file` calls of a 4 KB file;
//! (b) `directory_tree` and `search_files` on a generated tree of 50,000 files;
//! (c) cold start: spawn to the first `tools/list` answer.
//!
//! Run with `cargo bench -p mcp-server-fs --bench vs_official`; it writes
//! `mcp-servers/fs/BENCHMARKS.md`. Times are medians; the ratio is official ÷ ours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use mcp_conformance::{
    bench::{self, median, ms, node_version},
    peers,
};
use mcp_core::testing::{NetworkClient, tool_call};
use rmcp::{ServiceExt, model::ClientConfig, transport::TokioChildProcess};
use tokio::process::Command;

const READS: usize = 2_000;
const ROUNDS: usize = 5;
const COLD_STARTS: usize = 10;

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
    let started = Instant::now();
    let result = client.call_tool(tool_call(tool, arguments)).await.unwrap();
    let elapsed = started.elapsed();
    assert_ne!(result.is_error, Some(true), "{tool}");
    let size = serde_json::to_string(&result.content).unwrap().len();
    client.cancel().await.unwrap();
    (elapsed, size)
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

#[tokio::main]
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

    let data = tempfile::tempdir().unwrap();
    let dir = data.path().canonicalize().unwrap();
    std::fs::write(dir.join("small.txt"), "0123456789abcdef".repeat(256)).unwrap();
    let tree = dir.join("tree");
    generate_tree(&tree);

    let mut rows = Vec::new();
    // Interleaved rounds, so both meet the same machine weather.
    let mut a = [Vec::new(), Vec::new()];
    let mut floor = [Vec::new(), Vec::new()];
    let mut tree_times = [Vec::new(), Vec::new()];
    let mut search_times = [Vec::new(), Vec::new()];
    let mut sizes = [(0, 0), (0, 0)];
    for _ in 0..ROUNDS {
        for (i, contender) in contenders.iter().enumerate() {
            a[i].push(reads(contender, &dir).await);
            floor[i].push(pings(contender, &dir).await);
            let (t, tree_size) = one_call(
                contender,
                &dir,
                "directory_tree",
                serde_json::json!({ "path": tree.display().to_string() }),
            )
            .await;
            tree_times[i].push(t);
            let (s, search_size) = one_call(
                contender,
                &dir,
                "search_files",
                serde_json::json!({ "path": tree.display().to_string(), "pattern": "**/*.rs" }),
            )
            .await;
            search_times[i].push(s);
            sizes[i] = (tree_size, search_size);
        }
    }
    let mut cold = [Vec::new(), Vec::new()];
    for _ in 0..COLD_STARTS {
        for (i, contender) in contenders.iter().enumerate() {
            cold[i].push(cold_start(contender, &dir).await);
        }
    }

    let throughput = |d: Duration| READS as f64 / d.as_secs_f64();
    let (ours_a, theirs_a) = (median(a[0].clone()), median(a[1].clone()));
    rows.push(format!(
        "| (a) {READS} × read_text_file, 4 KB | {:.0} calls/s ({}) | {:.0} calls/s ({}) | **{:.1}×** |",
        throughput(ours_a),
        ms(ours_a),
        throughput(theirs_a),
        ms(theirs_a),
        theirs_a.as_secs_f64() / ours_a.as_secs_f64()
    ));
    let (ours_p, theirs_p) = (median(floor[0].clone()), median(floor[1].clone()));
    rows.push(format!(
        "| (a, floor) {READS} × ping: client and transport alone | {:.0} calls/s ({}) | {:.0} calls/s ({}) | {:.1}× |",
        throughput(ours_p),
        ms(ours_p),
        throughput(theirs_p),
        ms(theirs_p),
        theirs_p.as_secs_f64() / ours_p.as_secs_f64()
    ));
    for (label, times, size) in [
        (
            "(b) directory_tree, 50,000 files",
            &tree_times,
            sizes.map(|s| s.0),
        ),
        (
            "(b) search_files `**/*.rs`, 50,000 files",
            &search_times,
            sizes.map(|s| s.1),
        ),
    ] {
        let (o, t) = (median(times[0].clone()), median(times[1].clone()));
        rows.push(format!(
            "| {label} | {} ({} KB out) | {} ({} KB out) | **{:.1}×** |",
            ms(o),
            size[0] / 1024,
            ms(t),
            size[1] / 1024,
            t.as_secs_f64() / o.as_secs_f64()
        ));
    }
    let (o, t) = (median(cold[0].clone()), median(cold[1].clone()));
    rows.push(format!(
        "| (c) cold start to first tools/list | {} | {} | **{:.1}×** |",
        ms(o),
        ms(t),
        t.as_secs_f64() / o.as_secs_f64()
    ));

    let report = format!(
        "# mcp-fs benchmarks\n\n\
         `{}` against the official `{}` (`@modelcontextprotocol/server-filesystem`, version pinned in \
         `conformance/peers/node/package-lock.json`, on Node {}), measured side by side in one run by \
         `cargo bench -p mcp-server-fs --bench vs_official`: same client (rmcp over stdio), same files, \
         rounds interleaved. Medians of {ROUNDS} rounds ((a), (b)) and {COLD_STARTS} starts ((c)). \
         Ratio = official time ÷ ours (higher is better for mcp-fs). Machine: {} cores, shared and noisy; \
         only the ratios mean much.\n\n\
         | workload | mcp-fs | official | ratio |\n|---|---|---|---|\n{}\n",
        ours.name,
        official.name,
        node_version(&node),
        bench::cores(),
        rows.join("\n")
    );
    bench::write_report(Path::new(env!("CARGO_MANIFEST_DIR")), &report).unwrap();
}
