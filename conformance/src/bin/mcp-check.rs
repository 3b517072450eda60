//! `mcp-check`: checks an MCP server against the protocol.
#![allow(
    clippy::print_stdout,
    reason = "a command-line tool whose output is its report"
)]
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use mcp_conformance::check::{Options, Target, run};

/// Checks an MCP server against the protocol, in both eras, where the official suite does not
/// look: tool names, descriptions and schemas, stdout hygiene, malformed input, cancellation,
/// pagination, a 1 MiB argument. Exits 1 when a check fails, 2 when it cannot run.
///
/// Examples:
///   mcp-check -- npx -y @modelcontextprotocol/server-everything
///   mcp-check --url http://127.0.0.1:8000/mcp --header "Authorization: Bearer $TOKEN"
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// Check a Streamable HTTP endpoint instead of spawning a command.
    #[arg(long, value_name = "URL", conflicts_with = "command")]
    url: Option<String>,

    /// Extra HTTP header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "HEADER", requires = "url")]
    headers: Vec<String>,

    /// A slow tool and its JSON arguments (`NAME` or `NAME={"secs":5}`), to check that a
    /// cancelled call stops.
    #[arg(long, value_name = "TOOL")]
    slow_tool: Option<String>,

    /// Seconds to wait for an ordinary answer.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// The server command and its arguments, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn parse_options(cli: &Cli) -> anyhow::Result<Options> {
    let target = match (&cli.url, cli.command.is_empty()) {
        (Some(url), _) => {
            let headers = cli
                .headers
                .iter()
                .map(|header| {
                    header
                        .split_once(':')
                        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                        .with_context(|| format!("--header {header:?} is not `Name: value`"))
                })
                .collect::<anyhow::Result<_>>()?;
            Target::Http {
                url: url.clone(),
                headers,
            }
        }
        (None, false) => Target::Stdio(cli.command.clone()),
        (None, true) => bail!("nothing to check: give a command after `--`, or --url"),
    };
    let mut options = Options::new(target);
    options.timeout = Duration::from_secs(cli.timeout);
    if let Some(slow) = &cli.slow_tool {
        let (name, arguments) = match slow.split_once('=') {
            Some((name, json)) => (
                name.to_owned(),
                serde_json::from_str(json)
                    .with_context(|| format!("--slow-tool arguments are not JSON: {json}"))?,
            ),
            None => (slow.clone(), serde_json::json!({})),
        };
        options.slow_tool = Some((name, arguments));
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mcp_core::init_logging(None);
    let cli = Cli::parse();
    let options = match parse_options(&cli) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("mcp-check: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let report = run(&options).await;
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("mcp-check: {error}");
                return std::process::ExitCode::from(2);
            }
        }
    } else {
        print!("{}", report.table());
    }
    if report.passed() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
