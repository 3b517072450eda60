//! `tracing` to stderr, never stdout: on stdio, stdout carries nothing but protocol messages.

use tracing_subscriber::EnvFilter;

use crate::args::LogLevel;

/// Installs a stderr `tracing` subscriber.
///
/// `level` (from `--log-level`) wins over `RUST_LOG`; with neither, `info` for our code and
/// `warn` for rmcp's per-message chatter. Calling it twice is harmless (the second call keeps the
/// first subscriber), so tests and binaries can both call it.
pub fn init_logging(level: Option<LogLevel>) {
    match level {
        Some(level) => install(EnvFilter::new(level.as_str())),
        None => init_logging_with("info,rmcp=warn"),
    }
}

/// [`init_logging`] with `default` (an `EnvFilter` directive such as `warn,rmcp=off`) used when
/// `RUST_LOG` is not set. For programs whose own messages already say what failed.
pub fn init_logging_with(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    install(filter);
}

/// The `main` of a binary with subcommands: logs on stderr at `level` ([`init_logging`]), then
/// `run`, whose exit code is the process's; an error is printed on stderr as
/// `NAME: what failed: why` (an `anyhow` error with its causes) and the process exits 2.
///
/// ```no_run
/// # fn run() -> anyhow::Result<std::process::ExitCode> { Ok(std::process::ExitCode::SUCCESS) }
/// fn main() -> std::process::ExitCode {
///     mcp_core::main("my-server", None, run)
/// }
/// ```
pub fn main<E: std::fmt::Display>(
    name: &str,
    level: Option<LogLevel>,
    run: impl FnOnce() -> Result<std::process::ExitCode, E>,
) -> std::process::ExitCode {
    init_logging(level);
    run().unwrap_or_else(|error| {
        eprintln!("{name}: {error:#}");
        std::process::ExitCode::from(2)
    })
}

fn install(filter: EnvFilter) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
