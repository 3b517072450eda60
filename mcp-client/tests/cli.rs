//! The `mcp` binary on real config files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const MCP: &str = env!("CARGO_BIN_EXE_mcp");

#[test]
fn servers_lists_a_claude_desktop_config_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claude_desktop_config.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {
            "files": {"command": "mcp-fs", "args": ["${MCP_TEST_ROOT:-/tmp}"]},
            "remote": {"url": "http://127.0.0.1:9/mcp"}
        }}"#,
    )
    .unwrap();
    let output = Command::new(MCP)
        .args(["servers", "--json", "--config"])
        .arg(&file)
        .env("MCP_TEST_ROOT", "/srv/notes")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed[0]["name"], "files");
    assert_eq!(listed[0]["transport"], "stdio");
    assert_eq!(listed[0]["target"], "mcp-fs /srv/notes");
    assert_eq!(listed[1]["transport"], "http|sse");
}

#[test]
fn an_unset_variable_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".mcp.json");
    std::fs::write(
        &file,
        r#"{"mcpServers": {"gh": {"command": "gh-mcp", "env": {"T": "${MCP_TEST_SURELY_UNSET}"}}}}"#,
    )
    .unwrap();
    let output = Command::new(MCP)
        .args(["servers", "--config"])
        .arg(&file)
        .env_remove("MCP_TEST_SURELY_UNSET")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("MCP_TEST_SURELY_UNSET is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("\"gh\""), "{stderr}");
}
