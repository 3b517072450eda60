//! The integration tests of `mcp-conformance`, in one binary so that the crate and its
//! dependencies are linked once. A new test goes in the module of its subject; one that needs a
//! service or model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `fixture`: the fixture's tools as the suite's scenarios expect them.
//! - `matrix`: the interop matrix.
//! - `mcp_check`: `mcp-check` finds nothing wrong with a correct server, and finds every
//!   defect of a deliberately broken one.
//! - `oauth`: the OAuth resource server against a real authorization server (oidc-provider).
//! - `official_suite`: the official conformance suite, run for real.
//! - `tasks`: the Tasks extension through the fixture's task tools, and a store that outlives a
//!   SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixture;
mod matrix;
mod mcp_check;
mod oauth;
mod official_suite;
mod tasks;
