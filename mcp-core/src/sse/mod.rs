//! The legacy HTTP+SSE transport of protocol 2024-11-05, which rmcp no longer ships: `GET /sse`
//! opens an event stream whose first event, `endpoint`, names the URL (`/messages?sessionId=…`)
//! where the client then POSTs its messages; every server message comes back as a `message` event.
//!
//! Older clients and many hosted servers still speak it, so both sides live here.

mod client;
mod server;

pub use client::{SseClientError, SseClientOptions, connect_sse};
pub(crate) use server::router;

/// Path of the event stream.
pub const SSE_PATH: &str = "/sse";
/// Path the client posts its messages to.
pub const MESSAGES_PATH: &str = "/messages";
