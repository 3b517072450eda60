//! The integration tests of `mcp-server-docs`, in one binary so that the crate and its
//! dependencies are linked once. A new test goes in the module of its subject; one that needs a
//! service or model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `attacks`: attacks on the server, through the protocol, as a hostile client or a hostile
//!   file would try them.
//! - `collections`: named collections through the binary (no model).
//! - `deps`: dependency docs from lock files (no model; the real SDK peers' in the gated test).
//! - `formats`: docx, epub, notebooks, reStructuredText and zip archives (no model).
//! - `index`: the index with the real model.
//! - `protocol`: `mcp-docs` under the peer clients and the official suite (its RESULTS.md row).
//! - `server`: the `mcp-docs` binary.
//! - `store`: the PostgreSQL store's own cases (needs `MCP_DOCS_TEST_STORE`; with it, every
//!   other module runs on that store too).
//! - `web`: web sources, crawled from a site served on 127.0.0.1 (no model).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod attacks;
mod collections;
mod deps;
mod formats;
mod index;
mod protocol;
mod server;
mod store;
mod support;
mod web;
