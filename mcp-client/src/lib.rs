//! The `mcp` client's library.
//!
//! - [`config`]: the hosts' config files (Claude Desktop, Cursor, Claude Code, VS Code), with
//!   variable expansion.
//! - [`connect`]: stdio, Streamable HTTP and legacy SSE connections, all servers at once.
//! - [`frames`]: a stdio server's output checked line by line, so an answer rmcp would drop
//!   (too big, nested too deep) fails its call at once with a message saying so.
//! - [`handler`]: answers to servers' requests (elicitation, sampling, roots) and notifications.
//! - [`provider`]: the model, over an OpenAI-compatible or the Anthropic API, streamed.
//! - [`agent`]: the tool-calling loop: approvals, limits, timeouts, reconnects.
//! - [`terminal`]: the agent's terminal face (streamed answers, questions, progress bars).
//! - [`started`]: the tasks `mcp` started, for `mcp tasks list`.
//! - [`limits`]: long tool results cut to their head and tail, saying what was cut.
//! - [`keyring`]: the OS keyring, where OAuth tokens are kept when there is one.
//! - [`oauth`]: OAuth 2.1 for HTTP servers (discovery, registration, the browser's approval,
//!   step-up, tokens kept per server).
//! - [`flow`]: workflows, declared multi-step pipelines over tools and the model.
//! - [`names`]: every server's tools in one model-facing namespace (`server__tool`, ≤ 64
//!   characters, a map back).

#![warn(missing_docs)]

/// `eprintln!` for text that may hold what a server (or a model) sent: every character a
/// terminal would act on is shown as an escape instead ([`mcp_core::text::visible`]), so a
/// tool's name, description, result or log line cannot clear the screen, set the title, write
/// the clipboard or rewrite what was shown.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::terminal::say_line(&format!($($arg)*))
    };
}

pub mod agent;
pub mod config;
pub mod connect;
pub mod flow;
mod frames;
pub mod handler;
pub mod install;
pub mod keyring;
mod limits;
mod names;
pub mod oauth;
pub mod provider;
pub mod started;
pub mod terminal;

/// Who may read a file [`write_whole`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Its owner only (0600), whatever it was: tokens, conversations, what tools read.
    Owner,
    /// As the file was (its permission bits kept); a new file 0644: a host's config file.
    AsBefore,
}

/// Writes `bytes` to `path` whole or not at all: a temporary file beside it, synced, then
/// renamed over it, so a reader (or a crash) never sees half of it.
pub fn write_whole(path: &std::path::Path, bytes: &[u8], readers: Readers) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    // tempfile makes its files owner-only (0600) on Unix.
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    if readers == Readers::AsBefore {
        match std::fs::metadata(path) {
            Ok(existing) => file.as_file().set_permissions(existing.permissions())?,
            #[cfg(unix)]
            Err(_) => {
                use std::os::unix::fs::PermissionsExt as _;
                file.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))?;
            }
            #[cfg(not(unix))]
            Err(_) => {}
        }
    }
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
