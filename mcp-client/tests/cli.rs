//! The `mcp` binary on real config files.

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

/// `mcp servers | head -1`: a reader that goes away is no failure (it was exit 2, "usage",
/// with "Broken pipe" on stderr); an output that cannot be written is exit 74 and says so.
#[test]
fn a_closed_stdout_is_success_and_a_full_one_is_an_output_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(".mcp.json");
    std::fs::write(&file, r#"{"mcpServers": {"a": {"command": "a-mcp"}}}"#).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = Command::new(MCP)
        .args(["servers", "--config"])
        .arg(&file)
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let output = Command::new(MCP)
        .args(["servers", "--config"])
        .arg(&file)
        .stdout(full)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(74));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("writing the output"), "{stderr}");
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

/// The hostile server example (`examples/hostile_server.rs`), which `cargo test` builds beside
/// this test.
fn hostile(dir: &std::path::Path, args: &[&str]) -> std::path::PathBuf {
    let server = std::path::Path::new(MCP)
        .parent()
        .unwrap()
        .join("examples/hostile_server");
    assert!(
        server.is_file(),
        "{} is missing: `cargo test -p mcp-client` builds it (or `cargo build -p mcp-client --example hostile_server`)",
        server.display()
    );
    let config = dir.join(format!("hostile-{}.json", args[0]));
    std::fs::write(
        &config,
        serde_json::json!({"mcpServers": {"h": {"command": server, "args": args}}}).to_string(),
    )
    .unwrap();
    config
}

/// `mcp` on `config`, keeping the servers' logs beside it rather than in the user's cache.
fn run(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(MCP)
        .arg("--config")
        .arg(config)
        .env("XDG_CACHE_HOME", config.parent().unwrap())
        .args(["--timeout", "30"])
        .args(args)
        .output()
        .unwrap()
}

/// Finding 9 of the attack run: `mcp` wrote a server's escape sequences straight to the
/// terminal (clear the screen, set the title, write the clipboard, hide text, overwrite the line
/// before). Every command shows them escaped, on stdout and stderr, and `--json` stays JSON.
#[test]
fn a_servers_escape_sequences_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let config = hostile(dir.path(), &["escapes"]);
    let evil = "evil\x1b[H\x1b[2J\x1b]0;pwned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[8mhidden\x1b[0m\x1b[1A\r\u{9b}2K";
    for args in [
        vec!["tools"],
        vec!["call", "h", evil, "{}"],
        vec!["call", "h", "no-such-tool", "{}"],
        vec!["servers"],
    ] {
        let output = run(&config, &args);
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains('\x1b')
                    && !text.contains('\x07')
                    && !text.contains('\r')
                    && !text.contains('\u{9b}'),
                "{args:?} {stream}: {text:?}"
            );
        }
        if args[0] != "servers" {
            let shown = String::from_utf8_lossy(&output.stdout);
            let shown_err = String::from_utf8_lossy(&output.stderr);
            assert!(
                shown.contains("\\u{1b}]0;pwned") || shown_err.contains("\\u{1b}"),
                "{args:?}: {shown} / {shown_err}"
            );
        }
    }
    let listed = run(&config, &["tools", "--json"]);
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(
        !text.contains('\x1b') && !text.contains('\u{9b}'),
        "{text:?}"
    );
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value[0]["name"], evil);
}

/// Finding 10: a result over rmcp's 16 MiB line cap was dropped and reported as "did not answer
/// within 60 s"; a schema nested 3,000 deep hung the listing. Each now fails at once with an
/// error that says what was wrong.
#[test]
fn oversized_and_too_deep_answers_get_errors_that_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let big = hostile(dir.path(), &["big", "20000000"]);
    let output = run(&big, &["call", "h", "echo", "{}"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("answer is 200000"), "{stderr}");
    assert!(stderr.contains("over the 16777216"), "{stderr}");
    assert!(!stderr.contains("did not answer"), "{stderr}");
    // Under the cap, the whole answer.
    let fine = hostile(dir.path(), &["big", "12000000"]);
    let output = run(&fine, &["call", "h", "echo", "{}"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), 12_000_001);

    let deep = hostile(dir.path(), &["deep", "3000"]);
    let output = run(&deep, &["tools"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nests 6005 levels deep"), "{stderr}");
    // A $ref cycle is only data: listed as it is.
    let cycle = hostile(dir.path(), &["cycle", "0"]);
    let output = run(&cycle, &["tools", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value[0]["inputSchema"]["$defs"]["node"]["properties"]["next"]["$ref"],
        "#/$defs/node"
    );
}
