//! `mcp-fs`: a filesystem MCP server with the official server's tools (same names and
//! arguments, so prompts written for it keep working), a sandbox that holds, and ripgrep's
//! content search.
//!
//! Every path is matched to an allowed directory by whole components, then used only through
//! that directory's [`cap_std::fs::Dir`], which resolves it beneath the directory in the kernel:
//! prefix siblings, `..`, symlinks pointing out (even ones swapped in mid-request) all fail.
//! Walks go down from such a directory one listed name at a time, never through a link.
//!
//! What it offers: [`FsServer`] with its [`Limits`], over a [`Sandbox`]; [`FsError`] is how a
//! tool fails. Inside (private modules): `server` (the tools, by concern: read, browse, write),
//! `ops` (file operations through the sandbox: atomic writes, windows, listings), `edit`
//! (line-based edits), `search` (names, contents with ripgrep's searcher, heads and tails),
//! `walk` (directory walks that never follow a link out).
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use mcp_server_fs::{FsServer, Limits, Sandbox};
//!
//! let sandbox = Sandbox::new(&["/home/me/project"])?;
//! // One server per session, each following its own client's roots.
//! let sessions = FsServer::sessions(sandbox, Limits::default(), false);
//! mcp_core::serve(sessions, mcp_core::ServeArgs::default()).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod edit;
mod error;
mod journal;
mod ops;
pub mod policy;
mod search;
mod server;
mod walk;

pub use error::FsError;
pub use journal::Journal;
pub use mcp_core::sandbox::{self, Sandbox, SandboxError};
pub use policy::Policy;
pub use server::{FsServer, Limits, Settings, WRITE_TOOLS};
