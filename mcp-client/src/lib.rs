//! The `mcp` client's library.
//!
//! - [`config`]: the hosts' config files (Claude Desktop, Cursor, Claude Code, VS Code), with
//!   variable expansion.
//!
//! - [`connect`]: stdio, Streamable HTTP and legacy SSE connections, all servers at once.
//! - [`handler`]: answers to servers' requests (elicitation so far).
//! - [`limits`]: long tool results cut to their head and tail, saying what was cut.
//! - [`names`]: every server's tools in one model-facing namespace (`server__tool`, ≤ 64
//!   characters, a map back).
//!
//! The agent lands next (see the README).

pub mod config;
pub mod connect;
pub mod handler;
pub mod limits;
pub mod names;
