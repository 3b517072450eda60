//! Protocol checks for MCP servers and clients.
//!
//! - [`everything`]: the fixture server the official conformance suite
//!   (`@modelcontextprotocol/conformance`) expects, built on mcp-core; binary `mcp-everything`.
//! - [`bench`]: what our side-by-side benchmarks share.
//! - [`check`]: our own checks of any server (binary `mcp-check`).
//! - [`interop`]: any server of ours × the peer clients, and the shared `RESULTS.md`.
//! - [`peers`]: the official SDKs and tools used as peers in tests, pinned and installed on use.
//! - [`process`]: a server binary run as a child, as a host runs it.
//! - [`suite`]: runs the official suite against a URL and reads its verdicts.
//!
//! ```no_run
//! # async fn run() -> Result<(), mcp_core::ServeError> {
//! let args = mcp_core::ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[mcp_core::Transport::Http]);
//! let sessions = mcp_conformance::everything::Everything::sessions();
//! let server = mcp_core::HttpServer::start(sessions, &args).await?;
//! // npx @modelcontextprotocol/conformance server --url {server.url("/mcp")} --suite all
//! # server.shutdown().await }
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod check;
pub mod everything;
pub mod interop;
pub mod peers;
pub mod process;
pub mod suite;
