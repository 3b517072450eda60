//! What our side-by-side benchmarks (`mcp-servers/*/benches/vs_official.rs`) share: medians,
//! milliseconds, the peer's Node.js version, the machine's cores, and writing the report.

use std::{path::Path, time::Duration};

/// The median of `samples` (the upper one of an even count); zero for none.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
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
}
