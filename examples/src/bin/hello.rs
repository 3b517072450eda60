//! `hello`: the smallest useful MCP server, written the way we want every server written.
use clap::Parser;
use mcp_core::{ServeArgs, ToolError};
use rmcp::{ServerHandler, handler::server::wrapper::Parameters, schemars};
use rmcp::{tool, tool_handler, tool_router};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct GreetArgs {
    /// Who to greet, as they like to be called.
    name: String,
    /// Language of the greeting: `en` (default), `fr` or `de`.
    language: Option<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: i64,
    b: i64,
}

#[derive(Clone)]
struct Hello;

#[tool_router]
impl Hello {
    #[tool(
        description = "Greet someone by name.",
        annotations(read_only_hint = true)
    )]
    fn greet(&self, Parameters(args): Parameters<GreetArgs>) -> Result<String, ToolError> {
        let greeting = match args.language.as_deref().unwrap_or("en") {
            "en" => "Hello",
            "fr" => "Bonjour",
            "de" => "Hallo",
            other => {
                return Err(ToolError::new(format!("unknown language {other:?}"))
                    .with_hint("use en, fr or de"));
            }
        };
        Ok(format!("{greeting}, {}!", args.name))
    }

    #[tool(
        description = "Add two integers exactly.",
        annotations(read_only_hint = true)
    )]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> Result<String, ToolError> {
        a.checked_add(b)
            .map(|sum| sum.to_string())
            .ok_or_else(|| ToolError::new("the sum overflows 64 bits"))
    }
}

#[tool_handler(name = "hello")]
impl ServerHandler for Hello {}

/// A tiny MCP server with a `greet` and an `add` tool.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mcp_core::serve(Hello, cli.serve).await?;
    Ok(())
}
