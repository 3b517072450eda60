//! What the client's tests share: a server-side flag set when a call's work is dropped, waiting
//! for one, and Ctrl-C sent to a running `mcp`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{io::AsyncWriteExt as _, process::Command};

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

/// The `mcp` binary in a test directory: its config `.mcp.json` there, every XDG directory
/// there, no model settings from the environment.
pub const MCP: &str = env!("CARGO_BIN_EXE_mcp");

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(MCP);
    command
        .arg("--config")
        .arg(dir.join(".mcp.json"))
        .args(args)
        .current_dir(dir)
        .env("XDG_CACHE_HOME", dir)
        .env("XDG_STATE_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        // mcp-fs's undo journal.
        .env("XDG_DATA_HOME", dir)
        .env("FAKE_KEY", "sk-test")
        .env_remove("OPENAI_API_KEY")
        .env_remove("MCP_MODEL")
        .env_remove("MCP_API")
        .env_remove("MCP_BASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

pub async fn mcp(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut child = command(dir, args).spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("mcp hung")
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn write_config(dir: &Path, servers: Value) {
    std::fs::write(
        dir.join(".mcp.json"),
        json!({ "mcpServers": servers }).to_string(),
    )
    .unwrap();
}

/// A binary of another package in this workspace, built next to `mcp` by
/// `cargo test --workspace` (a package cannot name another's binaries).
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let path = Path::new(MCP).with_file_name(name);
    assert!(
        path.is_file(),
        "{name} was not built next to mcp: run `cargo test --workspace` (or `cargo build -p` its \
         package first)"
    );
    path
}
