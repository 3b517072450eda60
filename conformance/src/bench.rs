//! What our side-by-side benchmarks (`mcp-servers/*/benches/vs_official.rs`) share: medians,
//! milliseconds, the peer's Node.js version, the machine's cores, and writing the report.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

/// The median of `samples` (the upper one of an even count); zero for none.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// A long-running server's time for `run`, as hosts keep servers running: one untimed run to
/// warm it, then the median of `runs` timed ones.
pub fn warmed_median(runs: usize, mut run: impl FnMut()) -> Duration {
    run();
    median(
        (0..runs)
            .map(|_| {
                let started = std::time::Instant::now();
                run();
                started.elapsed()
            })
            .collect(),
    )
}

/// `12.3 ms`.
pub fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// `node --version` of the Node.js that ran the peer.
pub fn node_version(node: &Path) -> String {
    std::process::Command::new(node)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The cores the benchmark ran on (0 when unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

/// Rounds of the comparison with a baseline build: three times a peer table's five, as the
/// differences it looks for are a few percent and a round's noise on a shared machine is more.
pub const BASELINE_ROUNDS: usize = 15;
/// Cold starts of that comparison.
pub const BASELINE_COLD_STARTS: usize = 30;

/// The build to set beside this one, from `MCP_BENCH_BASELINE=[LABEL=]PATH`: the same server
/// built from an earlier commit (LABEL names it in the report, PATH is its binary). "No slower
/// than before" is then measured in one run, in the same machine weather, instead of read off an
/// old report: ratios against a peer move by a quarter from one run to the next on a shared
/// machine, for the same code.
pub fn baseline() -> Option<(String, PathBuf)> {
    let value = std::env::var("MCP_BENCH_BASELINE").ok()?;
    Some(match value.split_once('=') {
        Some((label, path)) => (label.to_owned(), PathBuf::from(path)),
        None => (value.clone(), PathBuf::from(value)),
    })
}

/// The report's section setting this build beside the [`baseline`] `label`: what the ratio
/// means, then a table of `columns` (its first ones naming the workload, then this build,
/// baseline, ratio) with `rows`. `how` says how both were measured.
pub fn baseline_section(label: &str, how: &str, columns: &[&str], rows: &[String]) -> String {
    format!(
        "\n## This build against a baseline build\n\n\
         This build against `{label}` (given as `MCP_BENCH_BASELINE`), the same server built from \
         an earlier commit, {how}, {BASELINE_ROUNDS} rounds interleaved in this same run \
         (medians; cold starts {BASELINE_COLD_STARTS}). Ratio = the baseline's time ÷ this \
         build's: 1.00 is as fast, below 1.00 slower. Ratios against a peer move by a tenth to a \
         quarter from one run to the next on a shared machine for the same code; this table is \
         what says whether a change made the server slower.\n\n\
         | {} |\n|{}\n{}\n",
        columns.join(" | "),
        "---|".repeat(columns.len()),
        rows.join("\n")
    )
}

/// Prints `report` and writes it to `BENCHMARKS.md` in `crate_dir`.
pub fn write_report(crate_dir: &Path, report: &str) -> std::io::Result<()> {
    #[allow(clippy::print_stdout)]
    {
        println!("{report}");
    }
    std::fs::write(crate_dir.join("BENCHMARKS.md"), report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_milliseconds() {
        let ms_ = Duration::from_millis;
        assert_eq!(median(vec![ms_(5), ms_(1), ms_(3)]), ms_(3));
        assert_eq!(median(Vec::new()), Duration::ZERO);
        assert_eq!(ms(Duration::from_micros(12_340)), "12.3 ms");
    }

    #[test]
    fn a_warmed_median_runs_once_more_than_it_times() {
        let mut runs = 0;
        warmed_median(4, || runs += 1);
        assert_eq!(runs, 5);
    }
}

/// The leanest client a server can have: newline-delimited JSON-RPC over the child's pipes,
/// blocking, one request at a time, each answer read whole and checked to be well-formed JSON
/// (scanned, not built into a tree). Benchmarks use it beside rmcp's client so that the client's
/// own cost, the same for both servers, dilutes the servers' difference as little as possible.
pub struct RawClient {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    line: Vec<u8>,
    next_id: u64,
}

impl RawClient {
    /// Spawns `command` (stderr discarded) and completes the handshake.
    pub fn spawn(command: &mut std::process::Command) -> std::io::Result<Self> {
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut client = Self {
            child,
            stdin,
            stdout: std::io::BufReader::with_capacity(1 << 20, stdout),
            line: Vec::new(),
            next_id: 0,
        };
        client.request(
            "initialize",
            serde_json::json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "1"},
            }),
        )?;
        client
            .send(&serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(client)
    }

    fn send(&mut self, message: &serde_json::Value) -> std::io::Result<()> {
        use std::io::Write;
        let mut bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        self.stdin.write_all(&bytes)?;
        self.stdin.flush()
    }

    /// Sends a request and reads its answer; returns the answer's size in bytes. An error
    /// answer, or a tool result with `isError`, is an error.
    pub fn request(&mut self, method: &str, params: serde_json::Value) -> std::io::Result<usize> {
        use std::io::BufRead;
        self.next_id += 1;
        let id = self.next_id;
        self.send(
            &serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
        )?;
        loop {
            self.line.clear();
            if self.stdout.read_until(b'\n', &mut self.line)? == 0 {
                return Err(std::io::Error::other("the server closed its output"));
            }
            // Read whole, nothing kept but the envelope: id, error, and the result's isError.
            let envelope: Envelope = serde_json::from_slice(&self.line)
                .map_err(|error| std::io::Error::other(format!("malformed answer: {error}")))?;
            // Notifications and requests from the server are read past.
            if envelope.id.is_none() || (envelope.result.is_none() && envelope.error.is_none()) {
                continue;
            }
            if envelope.error.is_some() || envelope.result.is_some_and(|r| r.is_error == Some(true))
            {
                let end = self.line.len().min(500);
                return Err(std::io::Error::other(
                    String::from_utf8_lossy(&self.line[..end]).into_owned(),
                ));
            }
            return Ok(self.line.len());
        }
    }

    /// [`request`](Self::request) of `tools/call` for `name` with `arguments`: the answer's size
    /// in bytes; an error answer or a tool error is an error.
    pub fn call_tool(
        &mut self,
        name: &str,
        arguments: serde_json::Value,
    ) -> std::io::Result<usize> {
        self.request(
            "tools/call",
            serde_json::json!({"name": name, "arguments": arguments}),
        )
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    id: Option<serde::de::IgnoredAny>,
    error: Option<serde::de::IgnoredAny>,
    result: Option<ResultHead>,
}

#[derive(serde::Deserialize)]
struct ResultHead {
    #[serde(rename = "isError")]
    is_error: Option<bool>,
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
