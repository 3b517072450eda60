//! The integration tests of `mcp-core`, in one binary so that the crate and its dependencies are
//! linked once. A new test goes in the module of its subject; one that needs a service or model
//! files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `changes`: `Changes` under pressure: listening streams capped, places freed.
//! - `harness`: the in-process harness, used the way a server author would use it.
//! - `http`: the HTTP listener end to end.
//! - `input`: asking the user mid-call in both eras, and the requestState between rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod changes;
mod harness;
mod http;
mod input;
