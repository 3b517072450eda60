//! `mcp-fs`: the filesystem server.
use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// Answers such as `directory_tree`'s are built from hundreds of thousands of small allocations;
/// glibc's allocator spent a third of that call's time in malloc and free (perf), mimalloc
/// makes the call about 1.5x faster.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use mcp_server_fs::{FsServer, Journal, Limits, Policy, Sandbox, Settings};

/// A filesystem MCP server: read, write, edit, list, search and grep files inside the allowed
/// directories, and nowhere else.
///
/// Directories come from the command line; a client that offers roots replaces them (and
/// `roots/list_changed` is followed), as with the official server.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Directories the server may access (a client's roots narrow them). `DIR:ro` makes one
    /// read-only: its files can be read, and no tool writes, moves, copies into or deletes
    /// anything in it (a directory whose name really ends in `:ro` is taken as it is).
    #[arg(value_name = "DIR")]
    dirs: Vec<PathBuf>,

    /// Offer only the tools that read: no write, edit, move, copy, delete or mkdir.
    #[arg(long)]
    read_only: bool,

    /// Where undo's journal is kept (snapshots of what the write tools changed), one per
    /// allowed directory [default: $XDG_DATA_HOME/mcp-toolkit/mcp-fs]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Bytes of snapshots undo's journal keeps per directory; past it the oldest changes are
    /// forgotten, and a file over a quarter of it is changed without a copy (its change cannot
    /// be undone).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024 * 1024)]
    journal_max_bytes: u64,

    /// Keep no journal: the write tools leave no copies, and undo cannot undo.
    #[arg(long)]
    no_journal: bool,

    /// Keep paths matching GLOB from every tool (repeatable): absent from listings, trees,
    /// searches and grep, and refused to read, write, move or copy, also through links and in
    /// any letter case. A relative glob is anchored at each directory: '**/.env' anywhere,
    /// 'secrets' that directory and all in it.
    #[arg(long, value_name = "GLOB")]
    deny: Vec<String>,

    /// Bytes of text per answer; longer files and results come in pages with a cursor.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_text_bytes)]
    max_text_bytes: usize,

    /// Entries per directory listing or search answer.
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_entries)]
    max_entries: usize,

    /// Largest file read_media_file returns.
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_media_bytes)]
    max_media_bytes: u64,

    #[command(flatten)]
    serve: mcp_core::ServeArgs,
}

/// One worker thread: a quick call (a 4 KB read) is then read, answered and written on one
/// thread, without the cross-thread wake-ups that were most of its latency with two (141 µs a
/// round trip against 101 here). Calls that may take long run through `block_in_place`
/// (`mcp_core::blocking::in_place`), which hands the worker's duties to another thread meanwhile.
fn main() -> ExitCode {
    let cli = Cli::parse();
    mcp_core::server_main("mcp-fs", cli.serve.log_level, 1, run(cli))
}

/// The directories, and which of them are read-only (`DIR:ro`).
fn split_read_only(dirs: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut all = Vec::new();
    let mut read_only = Vec::new();
    for dir in dirs {
        let text = dir.to_string_lossy();
        match text.strip_suffix(":ro") {
            Some(stripped) if !dir.is_dir() => {
                all.push(PathBuf::from(stripped));
                read_only.push(PathBuf::from(stripped));
            }
            _ => all.push(dir.clone()),
        }
    }
    (all, read_only)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (dirs, read_only_dirs) = split_read_only(&cli.dirs);
    let sandbox = Sandbox::new(&dirs)?;
    let policy = Policy::new(&cli.deny, &dirs, &read_only_dirs).map_err(anyhow::Error::msg)?;
    if sandbox.is_empty() {
        tracing::warn!("no directories given: waiting for the client to offer roots");
    }
    let journal = (!cli.no_journal && !cli.read_only).then(|| {
        let dir = cli.data_dir.clone().unwrap_or_else(|| {
            mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Data).join("mcp-fs")
        });
        Journal::new(&dir, cli.journal_max_bytes.max(1024))
    });
    let limits = Limits {
        max_text_bytes: cli.max_text_bytes.max(1024),
        max_entries: cli.max_entries.max(1),
        max_media_bytes: cli.max_media_bytes,
    };
    mcp_core::serve(
        FsServer::sessions_with(
            sandbox,
            Settings {
                limits,
                read_only: cli.read_only,
                policy,
                journal,
            },
        ),
        cli.serve,
    )
    .await?;
    Ok(())
}
