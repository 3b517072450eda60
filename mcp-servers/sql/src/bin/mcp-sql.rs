//! `mcp-sql`: the SQL server.
use std::{process::ExitCode, time::Duration};

use clap::Parser;
use mcp_server_sql::{Database, Options, SqlServer, Target};

/// A SQL MCP server: SQLite (embedded) or PostgreSQL, read-only unless --allow-write.
///
/// Examples:
///   mcp-sql data/app.db
///   mcp-sql sqlite:data/app.db --allow-write
///   PGPASSWORD=… mcp-sql postgres://reader@127.0.0.1:5432/shop
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The database: a SQLite file (`sqlite:path` or a plain path) or `postgres://user@host/db`.
    /// A PostgreSQL password may come from PGPASSWORD instead of the URL.
    #[arg(
        value_name = "DATABASE_URL",
        env = "MCP_SQL_URL",
        hide_env_values = true
    )]
    database: String,

    /// Offer the `execute` tool and open SQLite writable (creating the file if missing).
    #[arg(long)]
    allow_write: bool,

    /// PostgreSQL: serve read-only even when the role could write (a superuser, a table owner,
    /// INSERT/UPDATE/DELETE/TRUNCATE grants). Refused without it, since such a role writes
    /// through dblink or postgres_fdw, which open connections the read-only transaction does
    /// not cover. Prefer a role with only SELECT grants.
    #[arg(long)]
    allow_privileged_role: bool,

    /// Seconds a statement may run before the engine cancels it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,

    /// Most rows one query answer carries (more come with a cursor).
    #[arg(long, value_name = "N", default_value_t = Options::default().max_rows)]
    max_rows: usize,

    /// Most bytes of row data one query answer carries.
    #[arg(long, value_name = "BYTES", default_value_t = Options::default().max_bytes)]
    max_bytes: usize,

    #[command(flatten)]
    serve: mcp_core::ServeArgs,
}

/// Answers of many rows are built from many small allocations; mimalloc serves them faster
/// than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One worker thread: the protocol, PostgreSQL's connection tasks and the answers share it, so a
/// quick query makes no more thread hops than it must (SQLite's work goes to the blocking pool,
/// where dropping a cancelled request interrupts it).
fn main() -> ExitCode {
    let cli = Cli::parse();
    mcp_core::server_main("mcp-sql", cli.serve.log_level, 1, run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0) {
        anyhow::bail!("--timeout must be a positive number of seconds");
    }
    let options = Options {
        allow_write: cli.allow_write,
        allow_privileged_role: cli.allow_privileged_role,
        timeout: Duration::from_secs_f64(cli.timeout),
        max_rows: cli.max_rows.max(1),
        max_bytes: cli.max_bytes.max(1024),
    };
    let target = Target::parse(&cli.database).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    let db = Database::open(&target, options)
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))?;
    tracing::info!(database = %target.display(), write = options.allow_write, "opened");
    mcp_core::serve(SqlServer::new(db, target, options), cli.serve).await?;
    Ok(())
}

fn describe(error: &mcp_server_sql::DbError) -> String {
    match &error.hint {
        Some(hint) => format!("{}\n  hint: {hint}", error.message),
        None => error.message.clone(),
    }
}
