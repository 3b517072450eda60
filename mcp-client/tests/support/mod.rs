//! What the client's tests share: a server-side flag set when a call's work is dropped, waiting
//! for one, and Ctrl-C sent to a running `mcp`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// Sets its flag when dropped: held by a tool's work, it tells the test the work was cancelled.
pub struct Flag(pub Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Whether `flag` is set within ten seconds.
pub async fn eventually(flag: &AtomicBool) -> bool {
    for _ in 0..200 {
        if flag.load(Ordering::SeqCst) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Once a call has reached the server (`started`), sends SIGINT to `child` (a running `mcp`) and
/// checks that it exits 130 and that the server dropped the call's work (`dropped`).
pub async fn interrupt_and_check(
    child: tokio::process::Child,
    started: &AtomicBool,
    dropped: &AtomicBool,
) {
    assert!(
        eventually(started).await,
        "the call never reached the server"
    );
    let status = tokio::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        eventually(dropped).await,
        "Ctrl-C did not cancel the call on the server"
    );
}
