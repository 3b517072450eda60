//! Blocking work in a tool body, and the rule for it.
//!
//! rmcp runs each request as a task on the server's runtime, so a tool body that blocks (file
//! I/O, a SQLite step, a tantivy search, a model) holds a runtime thread while it does. The rule:
//!
//! - Work that borrows the handler and is usually quick, but sometimes long (a big tree, a big
//!   file), runs [`in_place`]: the thread hands its other tasks to another worker for the
//!   duration, and quick calls keep the latency of never crossing threads.
//! - Work that owns what it uses and may run long (a reindex, an embedding model) runs
//!   [`on_pool`], on tokio's blocking pool. It goes on after its caller has gone (a thread
//!   cannot be stopped), so work that can run for minutes must also watch a stop flag, as
//!   `mcp-finetune`'s dataset check does.

use crate::ToolError;

/// Runs `work` on this thread, telling the runtime to move its other tasks elsewhere meanwhile
/// (`block_in_place`); inline where there is no other worker to move them to (a current-thread
/// runtime, as in tests).
pub fn in_place<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Runs `work` on the blocking pool and waits for it; a panic in it becomes a tool error that
/// says `what` stopped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let sum = mcp_core::blocking::on_pool("the sum", || (1..=10).sum::<u32>()).await;
/// assert_eq!(sum.unwrap(), 55);
/// # }
/// ```
pub async fn on_pool<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ToolError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ToolError::new(format!("{what} stopped: {error}")))
}
