//! The integration tests of `mcp-client`, in one binary so that the crate and its dependencies
//! are linked once. A new test goes in the module of its subject; one that needs a service or
//! model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `agent`: `mcp run` and `mcp chat` end to end.
//! - `cli`: the `mcp` binary on real config files.
//! - `conformance`: the official suite's client scenarios, run against
//!   `mcp-conformance-client` (built on this crate's library); the verdicts go to a section of
//!   `conformance/RESULTS.md`.
//! - `connect`: `mcp tools` and `mcp call` against real servers.
//! - `flow`: `mcp flow` (workflows) checked, run over mcp-fs and the fake model, resumed.
//! - `oauth`: OAuth end to end against a real authorization server, and a hostile one.
//! - `peer_servers`: the `mcp` binary against servers nobody here wrote.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod cli;
mod conformance;
mod connect;
mod fake_llm;
mod flow;
mod oauth;
mod peer_servers;
mod support;
