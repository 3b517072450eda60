//! `mcp-everything`: the conformance suite's fixture server, on any transport.
use clap::Parser;
use mcp_conformance::everything::Everything;
use mcp_core::tasks::Tasks;

/// Serves every MCP feature the official conformance suite tests, under the names it expects.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Keep tasks in this SQLite file (they outlive the server; a task whose work was cut off
    /// by a restart ends failed). Default: in memory.
    #[arg(long, value_name = "FILE")]
    tasks_db: Option<std::path::PathBuf>,
    #[command(flatten)]
    serve: mcp_core::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let tasks = match &cli.tasks_db {
        Some(path) => Tasks::open(path, |_| None)?,
        None => Tasks::in_memory()?,
    };
    mcp_core::serve(Everything::sessions_with(tasks), cli.serve).await?;
    Ok(())
}
