//! The `mcp` client's library.
//!
//! - [`config`]: the hosts' config files (Claude Desktop, Cursor, Claude Code, VS Code), with
//!   variable expansion.
//! - [`connect`]: stdio, Streamable HTTP and legacy SSE connections, all servers at once.
//! - [`handler`]: answers to servers' requests (elicitation, sampling, roots) and notifications.
//! - [`provider`]: the model, over an OpenAI-compatible or the Anthropic API, streamed.
//! - [`agent`]: the tool-calling loop: approvals, limits, timeouts, reconnects.
//! - [`terminal`]: the agent's terminal face (streamed answers, questions, progress bars).
//! - [`limits`]: long tool results cut to their head and tail, saying what was cut.
//! - [`names`]: every server's tools in one model-facing namespace (`server__tool`, ≤ 64
//!   characters, a map back).

pub mod agent;
pub mod config;
pub mod connect;
pub mod handler;
pub mod limits;
pub mod names;
pub mod provider;
pub mod terminal;
