//! `tracing` to stderr, never stdout: on stdio, stdout carries nothing but protocol messages.

use tracing_subscriber::EnvFilter;

use crate::args::LogLevel;

/// Installs a stderr `tracing` subscriber.
///
/// `level` (from `--log-level`) wins over `RUST_LOG`; with neither, `info` for our code and
/// `warn` for rmcp's per-message chatter. Calling it twice is harmless (the second call keeps the
/// first subscriber), so tests and binaries can both call it.
pub fn init_logging(level: Option<LogLevel>) {
    let filter = match level {
        Some(level) => EnvFilter::new(level.as_str()),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"))
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
