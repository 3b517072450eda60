//! The integration tests of `mcp-server-fs`, in one binary so that the crate and its dependencies
//! are linked once. A new test goes in the module of its subject; one that needs a service or
//! model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `protocol`: `mcp-fs` as hosts run it.
//! - `sandbox_attacks`: every known way out of a filesystem sandbox, tried through the
//!   protocol.
//! - `tools`: every tool through the protocol, under the official server's names and argument
//!   shapes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod protocol;
mod sandbox_attacks;
mod tools;
