//! `mcp-sql`: the SQL server.
use std::{process::ExitCode, time::Duration};

use clap::Parser;
use mcp_server_sql::{Config, Database, Export, Options, Served, SqlServer, Target};

/// A SQL MCP server: SQLite (embedded), PostgreSQL or MariaDB/MySQL, read-only unless told.
///
/// Examples:
///   mcp-sql data/app.db
///   mcp-sql sqlite:data/app.db --allow-write
///   PGPASSWORD=… mcp-sql postgres://reader@127.0.0.1:5432/shop
///   mcp-sql --config sql.toml          # several databases, deny lists, SSH, custom tools
#[derive(Parser)]
#[command(version, verbatim_doc_comment)]
struct Cli {
    /// The database: a SQLite file (`sqlite:path` or a plain path), `postgres://user@host/db`
    /// or `mysql://user@host/db` (MariaDB or MySQL). A PostgreSQL password may come from
    /// PGPASSWORD, a MariaDB one from MYSQL_PWD, instead of the URL.
    #[arg(
        value_name = "DATABASE_URL",
        env = "MCP_SQL_URL",
        hide_env_values = true,
        required_unless_present = "config",
        conflicts_with = "config"
    )]
    database: Option<String>,

    /// A config file (TOML): several databases, each with read_only, max_rows, timeout, deny
    /// and ssh; export_dir; tools declared as SQL with named parameters. The README's mcp-sql
    /// section has a full example.
    #[arg(long, value_name = "FILE", env = "MCP_SQL_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Offer the `execute` tool and open SQLite writable (creating the file if missing). With
    /// --config, each database's read_only says this instead.
    #[arg(long, conflicts_with = "config")]
    allow_write: bool,

    /// Offer `export_query`, writing files into this directory (and nowhere else). With
    /// --config, export_dir says this instead.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    export_dir: Option<std::path::PathBuf>,

    /// Largest file one export may write.
    #[arg(long, value_name = "BYTES", default_value_t = mcp_server_sql::DEFAULT_MAX_EXPORT_BYTES)]
    max_export_bytes: u64,

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
    let fail = |e: mcp_server_sql::DbError| anyhow::anyhow!(describe(&e));
    let server = match (&cli.config, &cli.database) {
        (Some(path), _) => {
            let mut config = Config::load(path).map_err(fail)?;
            config.max_export_bytes.get_or_insert(cli.max_export_bytes);
            SqlServer::open(&config, options).await.map_err(fail)?
        }
        (None, Some(url)) => {
            let target = Target::parse(url).map_err(fail)?;
            let db = Database::open(&target, options).await.map_err(fail)?;
            tracing::info!(database = %target.display(), write = options.allow_write, "opened");
            let export = cli
                .export_dir
                .as_deref()
                .map(|dir| Export::new(dir, Some(cli.max_export_bytes)))
                .transpose()
                .map_err(fail)?;
            let served = Served::new("main", db, target.display(), options);
            SqlServer::serving(vec![served], export).map_err(fail)?
        }
        (None, None) => anyhow::bail!("give a DATABASE_URL or --config FILE"),
    };
    mcp_core::serve(server, cli.serve).await?;
    Ok(())
}

fn describe(error: &mcp_server_sql::DbError) -> String {
    match &error.hint {
        Some(hint) => format!("{}\n  hint: {hint}", error.message),
        None => error.message.clone(),
    }
}
