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

/// Held by every test that runs the official suite or other Node/Python peers, so that they run
/// one at a time: the suite's checks wait a fixed 1.5 s for a notification (a `subscriptions/
/// listen` stream's `prompts/list_changed`, …), which two peer-heavy tests side by side on two
/// cores made it miss (a false WARNING, seen once in CI).
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static PEERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    PEERS.lock().await
}

mod fixture;
mod matrix;
mod mcp_check;
mod oauth;
mod official_suite;
mod tasks;
