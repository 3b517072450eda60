//! `mcp`: the terminal client. This first part reads the hosts' config files.
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mcp_client::config::{self, ProcessVariables, Transport, UrlKind};

/// Connect to the MCP servers your hosts already know (Claude Desktop, Cursor, Claude Code,
/// VS Code) and work with them from the terminal.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A config file to read (repeatable). Without it, the search path is read: ./.mcp.json,
    /// ./.cursor/mcp.json, ./.vscode/mcp.json, ~/.cursor/mcp.json, then Claude Desktop's file.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Vec<PathBuf>,

    /// Print JSON for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The configured servers, where each comes from and how it is reached.
    Servers,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let files = if cli.config.is_empty() {
        let here = std::env::current_dir()?;
        config::search_path(&here)
            .into_iter()
            .filter(|p| p.is_file())
            .collect()
    } else {
        cli.config.clone()
    };
    if files.is_empty() {
        anyhow::bail!(
            "no config file found; pass --config FILE (a Claude Desktop, Cursor, Claude Code or VS Code MCP config)"
        );
    }
    let config::Loaded { servers, shadowed } = config::load_all(&files, &ProcessVariables)?;
    match cli.command {
        Command::Servers => {
            let mut out = std::io::stdout().lock();
            use std::io::Write as _;
            if cli.json {
                let list: Vec<_> = servers
                    .iter()
                    .map(|s| {
                        let (transport, target) = describe(&s.transport);
                        serde_json::json!({
                            "name": s.name, "transport": transport, "target": target,
                            "source": s.source.display().to_string(),
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for s in &servers {
                    let (transport, target) = describe(&s.transport);
                    writeln!(
                        out,
                        "{}\t{transport}\t{target}\t({})",
                        s.name,
                        s.source.display()
                    )?;
                }
            }
            for (name, source) in shadowed {
                eprintln!(
                    "note: {name} in {} is shadowed by an earlier file",
                    source.display()
                );
            }
        }
    }
    Ok(())
}

fn describe(transport: &Transport) -> (&'static str, String) {
    match transport {
        Transport::Stdio { command, args, .. } => {
            let mut line = command.clone();
            for arg in args {
                line.push(' ');
                line.push_str(arg);
            }
            ("stdio", line)
        }
        Transport::Url { url, kind, .. } => (
            match kind {
                UrlKind::Http => "http",
                UrlKind::Sse => "sse",
                UrlKind::Auto => "http|sse",
            },
            url.clone(),
        ),
    }
}
