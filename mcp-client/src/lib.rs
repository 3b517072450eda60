//! The `mcp` client's library.
//!
//! - [`config`]: the hosts' config files (Claude Desktop, Cursor, Claude Code, VS Code), with
//!   variable expansion.
//!
//! Connections, the commands that call servers and the agent land next (see the README).

pub mod config;
