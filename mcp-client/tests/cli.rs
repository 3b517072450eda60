//! The `mcp` binary on real config files.

use std::process::Command;

use serde_json::json;

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
        // Task records and tokens stay in the test's directory too.
        .env("XDG_STATE_HOME", config.parent().unwrap())
        .env("XDG_CONFIG_HOME", config.parent().unwrap())
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

/// `mcp add` / `mcp remove` into each host's file: the entry in the host's own format (read back
/// by our loader, which reads the hosts' formats), the command's absolute path, everything else
/// in the file kept, the old text backed up beside, a name that exists refused without --force,
/// and what a host cannot say (a URL for Claude Desktop) refused with the file unchanged.
#[test]
fn add_and_remove_write_each_hosts_own_format() {
    #[cfg(unix)]
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mcp = |args: &[&str]| {
        Command::new(MCP)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let no_variables = |_: &str| None;
    struct Vars<F: Fn(&str) -> Option<String>>(F);
    impl<F: Fn(&str) -> Option<String>> mcp_client::config::Variables for Vars<F> {
        fn env(&self, name: &str) -> Option<String> {
            (self.0)(name)
        }
        fn input(&self, _: &mcp_client::config::Input) -> Option<String> {
            None
        }
    }
    let vars = Vars(no_variables);
    let sh = which::which("sh").unwrap();
    for (host, file, key) in [
        ("claude-desktop", "claude_desktop_config.json", "mcpServers"),
        ("cursor", "cursor.json", "mcpServers"),
        ("claude-code", ".mcp.json", "mcpServers"),
        ("vscode", ".vscode/mcp.json", "servers"),
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let before =
            json!({ "theme": "dark", key: { "kept": { "command": "/bin/true", "args": [] } } });
        std::fs::write(&path, before.to_string()).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let file = path.display().to_string();
        let added = mcp(&[
            "add", "notes", "--host", host, "--file", &file, "--env", "A=1", "--", "sh", "-c",
            "exit 0",
        ]);
        assert!(
            added.status.success(),
            "{host}: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        let servers = mcp_client::config::load(&path, &vars).unwrap();
        let notes = servers.iter().find(|s| s.name == "notes").unwrap();
        match &notes.transport {
            mcp_client::config::Transport::Stdio {
                command, args, env, ..
            } => {
                assert_eq!(command, &sh.display().to_string(), "{host}");
                assert_eq!(args, &["-c", "exit 0"], "{host}");
                assert_eq!(env.get("A").map(String::as_str), Some("1"), "{host}");
            }
            other => panic!("{host}: {other:?}"),
        }
        assert!(servers.iter().any(|s| s.name == "kept"), "{host}");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written["theme"], "dark", "{host}");
        // The host's file keeps who may read it; the copy of the old text is the owner's only.
        #[cfg(unix)]
        {
            let mode = |p: &str| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o640, "{host}");
            assert_eq!(mode(&format!("{file}.bak")), 0o600, "{host}");
        }
        let backup = std::fs::read_to_string(format!("{file}.bak")).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&backup).unwrap(),
            before
        );

        let again = mcp(&["add", "notes", "--host", host, "--file", &file, "--", "sh"]);
        assert_eq!(again.status.code(), Some(2), "{host}");
        assert!(
            String::from_utf8_lossy(&again.stderr).contains("--force"),
            "{host}"
        );

        if host == "claude-desktop" {
            let text = std::fs::read_to_string(&path).unwrap();
            let url = mcp(&[
                "add",
                "web",
                "--host",
                host,
                "--file",
                &file,
                "--url",
                "https://example.com/mcp",
            ]);
            assert_eq!(url.status.code(), Some(2));
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "unchanged");
        } else {
            let url = mcp(&[
                "add",
                "web",
                "--host",
                host,
                "--file",
                &file,
                "--url",
                "https://example.com/mcp",
                "--header",
                "Authorization=Bearer ${TOKEN}",
            ]);
            assert!(
                url.status.success(),
                "{host}: {}",
                String::from_utf8_lossy(&url.stderr)
            );
            let with_token = Vars(|name: &str| (name == "TOKEN").then(|| "t0k".to_owned()));
            let servers = mcp_client::config::load(&path, &with_token).unwrap();
            let web = servers.iter().find(|s| s.name == "web").unwrap();
            match &web.transport {
                mcp_client::config::Transport::Url { url, headers, .. } => {
                    assert_eq!(url, "https://example.com/mcp");
                    assert_eq!(headers["Authorization"], "Bearer t0k", "{host}");
                }
                other => panic!("{host}: {other:?}"),
            }
        }

        let removed = mcp(&["remove", "notes", "--host", host, "--file", &file]);
        assert!(removed.status.success(), "{host}");
        let gone = mcp(&["remove", "notes", "--host", host, "--file", &file]);
        assert_eq!(gone.status.code(), Some(2), "{host}");
    }
}
