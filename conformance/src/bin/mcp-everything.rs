//! `mcp-everything`: the conformance suite's fixture server, on any transport.
use clap::Parser;
use mcp_conformance::everything::Everything;

/// Serves every MCP feature the official conformance suite tests, under the names it expects.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    serve: mcp_core::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mcp_core::serve(Everything::sessions(), cli.serve).await?;
    Ok(())
}
