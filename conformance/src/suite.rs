//! Runs the official conformance suite (`@modelcontextprotocol/conformance`, pinned in
//! `peers/node`) against a Streamable HTTP URL and reads its verdicts.
//!
//! Two lines of the suite are pinned side by side: 0.1.16, which measures the handshake era
//! (2025-11-25), and [`Line::Next`] (0.2.0-alpha.12, installed as `conformance-next`), which
//! measures the 2026-07-28 revision, its extensions (Tasks) and the pending scenarios, and again
//! 2025-11-25 by `--requirements`.
//!
//! Exit codes alone are lenient, so the verdict is read from the `checks.json` the suite writes
//! per scenario: a scenario passes when none of its checks is a FAILURE or a WARNING. What may
//! fail is written down in `conformance/expected-failures.txt` ([`Baseline`]), strictly: a
//! failure it does not list fails the build, and so does a listed one that passes.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::peers::{PeerError, ensure_node_peers, node_peers_dir, node22};

/// A pinned line of the official suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// 0.1.16: the handshake era.
    Stable,
    /// 0.2.0-alpha.12: the 2026-07-28 revision, Tasks, pending scenarios.
    Next,
}

impl Line {
    /// The suite's entry script: by path, as both lines name their executable `conformance`.
    fn script(self) -> PathBuf {
        node_peers_dir().join(match self {
            Self::Stable => "node_modules/@modelcontextprotocol/conformance/dist/index.js",
            Self::Next => "node_modules/conformance-next/dist/index.js",
        })
    }
}

/// The 2026-07-28 scenarios that apply to any server, whatever its tools (each real server's
/// own test runs them; what they cannot pass is in the baseline, with why).
pub const GENERIC_2026_SCENARIOS: [&str; 5] = [
    "tools-list",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
    "server-stateless",
];

/// The scenarios that apply to any server, whatever its tools: every server of ours passes them.
pub const GENERIC_SERVER_SCENARIOS: [&str; 5] = [
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
];

/// Why the suite could not be run (its verdicts are in [`SuiteReport`]).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// The suite's Node.js peer could not be made ready.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Running the suite failed.
    #[error("running the conformance suite failed: {0}")]
    Io(#[from] std::io::Error),
    /// The suite's report could not be read.
    #[error("the conformance suite wrote an unreadable {path}: {reason}")]
    BadReport {
        /// The report file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The suite listed no scenarios.
    #[error("`conformance list --server` printed no scenarios")]
    NoScenarios,
}

/// One check of one scenario, as the suite reported it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Check {
    /// The check's name.
    pub id: String,
    /// SUCCESS, FAILURE, WARNING or INFO.
    pub status: String,
    /// Why it failed, when it did.
    #[serde(default, rename = "errorMessage")]
    pub error_message: Option<String>,
}

/// The suite's verdicts, by scenario.
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// Each scenario's checks, by scenario name.
    pub scenarios: BTreeMap<String, Vec<Check>>,
}

impl SuiteReport {
    /// Scenarios with a FAILURE or WARNING check.
    pub fn failed(&self) -> Vec<(&str, &Check)> {
        self.scenarios
            .iter()
            .flat_map(|(name, checks)| checks.iter().map(move |check| (name.as_str(), check)))
            .filter(|(_, check)| matches!(check.status.as_str(), "FAILURE" | "WARNING"))
            .collect()
    }

    /// `Ok` when every one of `expected` ran and none has a FAILURE or WARNING check; otherwise
    /// what is missing or failed, with the table.
    pub fn all_passed<S: AsRef<str>>(&self, expected: &[S]) -> Result<(), String> {
        let missing: Vec<&str> = expected
            .iter()
            .map(AsRef::as_ref)
            .filter(|name| !self.scenarios.contains_key(*name))
            .collect();
        let failed = self.failed();
        if missing.is_empty() && failed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "no verdict: {missing:?}\nfailed or warned: {failed:#?}\n{}",
            self.table()
        ))
    }

    /// How many checks, over every scenario, have `status` (`SUCCESS`, `FAILURE`, …).
    pub fn count(&self, status: &str) -> usize {
        self.scenarios
            .values()
            .flatten()
            .filter(|check| check.status == status)
            .count()
    }

    /// A Markdown table: one row per scenario.
    pub fn table(&self) -> String {
        let mut table = String::from(
            "| scenario | success | failure | warning | info |\n|---|---|---|---|---|\n",
        );
        for (name, checks) in &self.scenarios {
            let n = |status: &str| checks.iter().filter(|c| c.status == status).count();
            table.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                n("SUCCESS"),
                n("FAILURE"),
                n("WARNING"),
                n("INFO")
            ));
        }
        table
    }
}

/// The server scenarios this version of the suite knows.
pub async fn list_server_scenarios() -> Result<Vec<String>, SuiteError> {
    let node = node22()?;
    ensure_node_peers()?;
    let output = tokio::process::Command::new(node)
        .arg(Line::Stable.script())
        .args(["list", "--server"])
        .output()
        .await?;
    listed(&String::from_utf8_lossy(&output.stdout))
}

/// The scenario names of a `conformance list` output (`  - name [versions]` lines).
fn listed(listing: &str) -> Result<Vec<String>, SuiteError> {
    let names: Vec<String> = listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter_map(|entry| entry.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        return Err(SuiteError::NoScenarios);
    }
    Ok(names)
}

/// Runs `--suite all` against `url` (an `http://…/mcp` endpoint).
pub async fn run_all(url: &str) -> Result<SuiteReport, SuiteError> {
    run(url, &["--suite", "all"]).await
}

/// Runs [`Line::Next`] with `--requirements REVISION` (`2026-07-28`, `2025-11-25`): every
/// scenario that revision requires, and for 2026-07-28 the extension and pending ones too.
pub async fn run_requirements(url: &str, revision: &str) -> Result<SuiteReport, SuiteError> {
    invoke(
        Line::Next,
        &["server", "--url", url, "--requirements", revision],
    )
    .await
}

/// Runs the given scenarios of [`Line::Next`] in the 2026-07-28 revision, one after the other.
pub async fn run_scenarios_2026(url: &str, scenarios: &[&str]) -> Result<SuiteReport, SuiteError> {
    let mut report = SuiteReport::default();
    for scenario in scenarios {
        let args = [
            "server",
            "--url",
            url,
            "--scenario",
            scenario,
            "--spec-version",
            "2026-07-28",
        ];
        report
            .scenarios
            .extend(invoke(Line::Next, &args).await?.scenarios);
    }
    Ok(report)
}

/// Runs the given scenarios against `url`, one after the other.
pub async fn run_scenarios(url: &str, scenarios: &[&str]) -> Result<SuiteReport, SuiteError> {
    let mut report = SuiteReport::default();
    for scenario in scenarios {
        report
            .scenarios
            .extend(run(url, &["--scenario", scenario]).await?.scenarios);
    }
    Ok(report)
}

/// The official client scenarios every client of ours must pass.
pub const CLIENT_SCENARIOS: [&str; 4] = [
    "initialize",
    "tools_call",
    "elicitation-sep1034-client-defaults",
    "sse-retry",
];

/// Runs the client scenarios [`Line::Next`] requires for `revision`, one after the other at
/// that revision's wire. (`client --requirements` runs them side by side, and a client's answer
/// to a server's request then now and again misses the mock's timeout on a loaded machine.)
pub async fn run_client_requirements(
    command: &str,
    revision: &str,
) -> Result<SuiteReport, SuiteError> {
    let node = node22()?;
    ensure_node_peers()?;
    let output = tokio::process::Command::new(node)
        .arg(Line::Next.script())
        .args(["list", "--client", "--requirements", revision])
        .output()
        .await?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let client_part = listing.split("Client scenarios").nth(1).unwrap_or_default();
    // The required ones, then those run but not scored that are a client's (`… [client]`):
    // extensions need `--force` at a revision (they are on no revision's timeline).
    let (required, unscored) = client_part
        .split_once("never scored")
        .unwrap_or((client_part, ""));
    let mut scenarios: Vec<(String, bool)> = listed(required)?
        .into_iter()
        .map(|name| (name, false))
        .collect();
    scenarios.extend(
        unscored
            .lines()
            .filter(|line| line.trim_end().ends_with("[client]"))
            .filter_map(|line| line.trim().strip_prefix("- "))
            .filter_map(|entry| entry.split_whitespace().next())
            .map(|name| (name.to_owned(), true)),
    );
    let mut report = SuiteReport::default();
    for (scenario, force) in &scenarios {
        let mut args = vec![
            "client",
            "--command",
            command,
            "--scenario",
            scenario,
            "--spec-version",
            revision,
        ];
        if *force {
            args.push("--force");
        }
        report
            .scenarios
            .extend(invoke(Line::Next, &args).await?.scenarios);
    }
    Ok(report)
}

/// Runs client scenarios: the suite starts its own server for each and runs `command
/// <server-url>` with `MCP_CONFORMANCE_SCENARIO` set.
pub async fn run_client_scenarios(
    command: &str,
    scenarios: &[&str],
) -> Result<SuiteReport, SuiteError> {
    let mut report = SuiteReport::default();
    for scenario in scenarios {
        report.scenarios.extend(
            invoke(
                Line::Stable,
                &["client", "--command", command, "--scenario", scenario],
            )
            .await?
            .scenarios,
        );
    }
    Ok(report)
}

async fn run(url: &str, selection: &[&str]) -> Result<SuiteReport, SuiteError> {
    let mut args = vec!["server", "--url", url];
    args.extend_from_slice(selection);
    invoke(Line::Stable, &args).await
}

/// Runs the suite's `line` with `args` and reads the verdicts it wrote.
async fn invoke(line: Line, args: &[&str]) -> Result<SuiteReport, SuiteError> {
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let node = node22()?;
    ensure_node_peers()?;
    let out = std::env::temp_dir().join(format!(
        "mcp-conformance-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&out);
    let output = tokio::process::Command::new(node)
        .arg(line.script())
        .args(args)
        .arg("-o")
        .arg(&out)
        .kill_on_drop(true)
        .output()
        .await?;
    tracing::debug!(stdout = %String::from_utf8_lossy(&output.stdout), "conformance suite output");
    let report = read_reports(&out);
    let _ = std::fs::remove_dir_all(&out);
    report
}

fn read_reports(out: &Path) -> Result<SuiteReport, SuiteError> {
    let mut report = SuiteReport::default();
    read_reports_in(out, "", &mut report)?;
    Ok(report)
}

/// The reports in `out`, each scenario named with `prefix` (`auth/`: the suite writes the
/// scenarios of a group in a directory of the group's name).
fn read_reports_in(out: &Path, prefix: &str, report: &mut SuiteReport) -> Result<(), SuiteError> {
    let entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        // No output directory at all: the suite ran no scenario.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for entry in entries {
        let dir: PathBuf = entry?.path();
        let checks_path = dir.join("checks.json");
        if prefix.is_empty() && dir.is_dir() && !checks_path.exists() {
            let group = dir
                .file_name()
                .map(|name| format!("{}/", name.to_string_lossy()))
                .unwrap_or_default();
            read_reports_in(&dir, &group, report)?;
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&checks_path) else {
            continue;
        };
        let checks: Vec<Check> =
            serde_json::from_str(&text).map_err(|error| SuiteError::BadReport {
                path: checks_path.display().to_string(),
                reason: error.to_string(),
            })?;
        let name = dir
            .file_name()
            .map(|name| {
                let name = name.to_string_lossy();
                if prefix.is_empty() {
                    scenario_name(&name)
                } else {
                    // Inside a group the name is the scenario's own (`client-credentials-…`).
                    format!("{prefix}{}", strip_timestamp(&name))
                }
            })
            .unwrap_or_default();
        report.scenarios.insert(name, checks);
    }
    Ok(())
}

/// What may fail, from `conformance/expected-failures.txt`: one `TARGET REVISION SCENARIO` per
/// line, each with its reason after `#`.
#[derive(Debug, Clone, Default)]
pub struct Baseline {
    entries: Vec<(String, String, String)>,
}

impl Baseline {
    /// The file in this crate.
    pub fn load() -> Result<Self, String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("expected-failures.txt");
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("reading {}: {error}", path.display()))?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let (entry, reason) = line.split_once('#').unwrap_or((line, ""));
            let words: Vec<&str> = entry.split_whitespace().collect();
            match words.as_slice() {
                [] => continue,
                [target, revision, scenario] if !reason.trim().is_empty() => entries.push((
                    (*target).to_owned(),
                    (*revision).to_owned(),
                    (*scenario).to_owned(),
                )),
                _ => {
                    return Err(format!(
                        "expected-failures.txt line {}: want `TARGET REVISION SCENARIO # why`, got {line:?}",
                        number + 1
                    ));
                }
            }
        }
        Ok(Self { entries })
    }

    /// `Ok` when the scenarios of `report` that failed for `target` in `revision` are exactly
    /// the listed ones among those that ran; else each surprise, both ways.
    pub fn check(&self, target: &str, revision: &str, report: &SuiteReport) -> Result<(), String> {
        let listed: Vec<&str> = self
            .entries
            .iter()
            .filter(|(t, r, _)| t == target && r == revision)
            .map(|(_, _, scenario)| scenario.as_str())
            .collect();
        let failed: std::collections::BTreeSet<&str> =
            report.failed().into_iter().map(|(name, _)| name).collect();
        let mut surprises = Vec::new();
        for scenario in &failed {
            if !listed.contains(scenario) {
                let why: Vec<String> = report
                    .failed()
                    .into_iter()
                    .filter(|(name, _)| name == scenario)
                    .map(|(_, check)| {
                        let message = check.error_message.as_deref().unwrap_or("");
                        format!("    {} {}: {message}", check.status, check.id)
                    })
                    .collect();
                surprises.push(format!(
                    "{target} {revision} {scenario}: fails, and the baseline does not list it\n{}",
                    why.join("\n")
                ));
            }
        }
        for scenario in listed {
            if report.scenarios.contains_key(scenario) && !failed.contains(scenario) {
                surprises.push(format!(
                    "{target} {revision} {scenario}: passes now; take it out of expected-failures.txt"
                ));
            }
        }
        if surprises.is_empty() {
            Ok(())
        } else {
            Err(format!("{}\n{}", surprises.join("\n"), report.table()))
        }
    }
}

/// `server-tools-list-2026-11-29T22-53-24-718Z` → `tools-list`.
fn scenario_name(dir: &str) -> String {
    let name = dir
        .strip_prefix("server-")
        .or_else(|| dir.strip_prefix("client-"))
        .unwrap_or(dir);
    strip_timestamp(name)
}

/// `tools-list-2026-11-29T22-53-24-718Z` → `tools-list`.
fn strip_timestamp(name: &str) -> String {
    let bytes = name.as_bytes();
    // The timestamp suffix starts with `-YYYY-MM-DDT`.
    let cut = (0..bytes.len()).find(|&i| {
        bytes.len() >= i + 12
            && bytes[i] == b'-'
            && bytes[i + 1..i + 5].iter().all(u8::is_ascii_digit)
            && bytes[i + 5] == b'-'
            && bytes[i + 8] == b'-'
            && bytes[i + 11] == b'T'
    });
    name[..cut.unwrap_or(name.len())].to_owned()
}

#[cfg(test)]
mod tests {
    use super::{Baseline, Check, SuiteReport, scenario_name};

    fn report(verdicts: &[(&str, &str)]) -> SuiteReport {
        let mut report = SuiteReport::default();
        for (scenario, status) in verdicts {
            report.scenarios.insert(
                (*scenario).to_owned(),
                vec![Check {
                    id: "c".to_owned(),
                    status: (*status).to_owned(),
                    error_message: None,
                }],
            );
        }
        report
    }

    #[test]
    fn the_baseline_is_strict_both_ways() {
        let baseline = Baseline::parse(
            "# comment\nmcp-fs 2026-07-28 caching # no prompts\n\nmcp-fs 2025-11-25 ping # why\n",
        )
        .unwrap();
        let expected = report(&[("caching", "FAILURE"), ("tools-list", "SUCCESS")]);
        baseline.check("mcp-fs", "2026-07-28", &expected).unwrap();
        let surprise = report(&[("caching", "FAILURE"), ("tools-list", "WARNING")]);
        let error = baseline
            .check("mcp-fs", "2026-07-28", &surprise)
            .unwrap_err();
        assert!(error.contains("tools-list: fails"), "{error}");
        let mended = report(&[("caching", "SUCCESS")]);
        let error = baseline.check("mcp-fs", "2026-07-28", &mended).unwrap_err();
        assert!(error.contains("caching: passes now"), "{error}");
        // Another target's or revision's entries do not excuse a failure.
        let error = baseline
            .check("mcp-sql", "2026-07-28", &expected)
            .unwrap_err();
        assert!(error.contains("caching: fails"), "{error}");
        // A listed scenario that did not run is neither.
        baseline
            .check("mcp-fs", "2025-11-25", &report(&[]))
            .unwrap();
        assert!(
            Baseline::parse("mcp-fs 2026-07-28 caching\n").is_err(),
            "a reason is required"
        );
    }

    #[test]
    fn scenario_names_lose_prefix_and_timestamp() {
        assert_eq!(
            scenario_name("server-tools-list-2026-11-29T22-53-24-718Z"),
            "tools-list"
        );
        assert_eq!(
            scenario_name("server-server-sse-polling-2026-01-02T00-00-00-000Z"),
            "server-sse-polling"
        );
        assert_eq!(scenario_name("server-ping"), "ping");
        assert_eq!(
            scenario_name("client-sse-retry-2026-11-30T02-00-00-000Z"),
            "sse-retry"
        );
    }
}
