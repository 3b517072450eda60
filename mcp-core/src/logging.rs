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
/// `NAME: what failed: why` (an error with its causes, as [`server_main`] prints them) and the
/// process exits 2.
///
/// ```no_run
/// # fn run() -> anyhow::Result<std::process::ExitCode> { Ok(std::process::ExitCode::SUCCESS) }
/// fn main() -> std::process::ExitCode {
///     mcp_core::main("my-server", None, run)
/// }
/// ```
pub fn main<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    name: &str,
    level: Option<LogLevel>,
    run: impl FnOnce() -> Result<std::process::ExitCode, E>,
) -> std::process::ExitCode {
    init_logging(level);
    run().unwrap_or_else(|error| {
        eprintln!("{name}: {}", causes(error.into().as_ref()));
        std::process::ExitCode::from(2)
    })
}

/// The `main` of a server binary: logs on stderr at `level` ([`init_logging`]), then runs `run`
/// (which opens what the server needs and ends in [`serve`](crate::serve())) on a Tokio runtime
/// with `workers` worker threads. It exits 0 when serving ends (end of input on stdio, SIGINT,
/// SIGTERM) and 1 with `NAME: what failed: why` on stderr when `run` fails.
///
/// One worker suits a server whose calls are mostly quick: a call is then read, answered and
/// written on one thread, and long work leaves it through [`crate::blocking`].
///
/// ```no_run
/// # #[derive(Clone)] struct Server;
/// # impl rmcp::ServerHandler for Server {}
/// fn main() -> std::process::ExitCode {
///     let args = mcp_core::ServeArgs::default();
///     mcp_core::server_main("my-server", args.log_level, 1, async move {
///         mcp_core::serve(Server, args).await
///     })
/// }
/// ```
pub fn server_main<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
    name: &str,
    level: Option<LogLevel>,
    workers: usize,
    run: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    init_logging(level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(runtime) => runtime
            .block_on(run)
            .map_err(|error| causes(error.into().as_ref())),
        Err(error) => Err(format!("cannot start the async runtime: {error}")),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{name}: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `what failed: why: why that`, leaving out a cause whose words the message already holds
/// (errors that print their source themselves).
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = String::new();
    let mut next = Some(error);
    while let Some(cause) = next {
        next = cause.source();
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn install(filter: EnvFilter) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_the_message_already_shows_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot use /x: {source}")]
        struct Shows {
            source: std::io::Error,
        }
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let shown = Shows { source: io() };
        assert_eq!(super::causes(&shown), format!("cannot use /x: {}", io()));

        #[derive(Debug, thiserror::Error)]
        #[error("reading /x")]
        struct Hides {
            source: std::io::Error,
        }
        let chained = Hides { source: io() };
        assert_eq!(super::causes(&chained), format!("reading /x: {}", io()));
    }
}
