//! The protocol layer every binary of the MCP toolkit stands on.
//!
//! [`rmcp`] (the official Rust SDK) owns the protocol: message types, framing, version
//! negotiation across both eras, the `#[tool]` macros. This crate adds what every server and
//! client of ours shares, so that an author writes tool bodies and one call:
//!
//! - [`ServeArgs`] + [`serve()`]: one clap argument group and one function that serves a handler on
//!   stdio, Streamable HTTP (`/mcp`) or legacy HTTP+SSE (`/sse` + `/messages`), with shutdown on
//!   end of input, SIGINT or SIGTERM, and logs on stderr only.
//! - HTTP hardening for every listener: loopback unless told otherwise, `Host`/`Origin`
//!   allow-lists (DNS-rebinding protection, 403), optional bearer token (401), body limit (413),
//!   request timeout (408), `/health`.
//! - [`connect_sse`]: the legacy SSE client transport that rmcp dropped.
//! - [`ToolError`] (an `isError: true` result a model can act on; [`tool::Hinted`] errors
//!   become one with `?`), [`OutputCap`] (paging with a cursor) and
//!   [`tool::truncation_notice`] (the one wording for a cut output).
//! - [`Sandbox`]: paths a peer names, confined beneath the directories the command line allows
//!   (symlinks and `..` that lead out fail in the kernel), and regular files read with a cap.
//! - [`blocking`]: the rule for blocking work in a tool body; [`text`]: text from a peer made
//!   safe for a terminal; [`main()`]: the `main` of a binary with subcommands.
//! - [`testing`]: an in-process client/server pair over the real protocol.
//!
//! Those five modules (`blocking`, `sandbox`, `testing`, `text`, `tool`) are namespaces of their
//! own; the rest of the crate's offer is re-exported here.
//!
//! A whole server:
//!
//! ```no_run
//! use clap::Parser;
//! use rmcp::{ServerHandler, handler::server::{router::tool::ToolRouter, wrapper::Parameters},
//!            model::*, schemars, tool, tool_handler, tool_router};
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct ShoutArgs { /** What to shout. */ text: String }
//!
//! #[derive(Clone)]
//! struct Shout { tool_router: ToolRouter<Self> }
//!
//! #[tool_router]
//! impl Shout {
//!     #[tool(description = "Upper-cases a text.", annotations(read_only_hint = true))]
//!     fn shout(&self, Parameters(args): Parameters<ShoutArgs>) -> String { args.text.to_uppercase() }
//! }
//!
//! #[tool_handler]
//! impl ServerHandler for Shout {
//!     fn get_info(&self) -> ServerConfig { ServerConfig::new(ServerCapabilities::builder().enable_tools().build()) }
//! }
//!
//! #[derive(Parser)]
//! struct Cli { #[command(flatten)] serve: mcp_core::ServeArgs }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), mcp_core::ServeError> {
//!     mcp_core::serve(Shout { tool_router: Shout::tool_router() }, Cli::parse().serve).await
//! }
//! ```

#![warn(missing_docs)]

mod args;
pub mod auth;
pub mod blocking;
pub mod changes;
mod channel;
pub mod dirs;
mod guarded;
mod http_policy;
pub mod input;
mod logging;
mod message;
#[cfg(feature = "postgres")]
pub mod pg_tls;
pub mod resource;
pub mod sandbox;
mod serve;
mod sessions;
mod sse;
mod stdio;
pub mod tasks;
pub mod testing;
pub mod text;
pub mod tool;

pub use args::{LogLevel, ServeArgs, Transport};
pub use changes::Changes;
pub use channel::{ChannelTransport, ConnectionClosed};
pub use guarded::{Guarded, MAX_IN_FLIGHT};
pub use http_policy::PolicyError;
pub use logging::{init_logging, init_logging_with, main, server_main};
pub use sandbox::{Sandbox, SandboxError};
pub use serve::{HEALTH_PATH, HttpServer, MCP_PATH, ServeError, serve};
pub use sessions::{PerSession, Sessions, per_session};
pub use sse::{SseClientError, SseClientOptions, connect_sse};
pub use tool::{OutputCap, Page, ToolError, structured, structured_value};

/// The SDK underneath, re-exported so servers build against the same version.
pub use rmcp;
