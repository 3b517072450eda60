//! The `mcp` binary against servers nobody here wrote: the reference `server-everything`
//! (TypeScript SDK) over stdio, and the official Python SDK's server over stdio, Streamable HTTP
//! and legacy SSE. Each cell lists the tools, calls one and reads a resource; the grid is a
//! section of `conformance/RESULTS.md`.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use mcp_conformance::{
    interop::{self, Cell},
    peers,
    process::PythonServer,
};
use serde_json::{Value, json};
use tokio::process::Command;

const MCP: &str = env!("CARGO_BIN_EXE_mcp");

/// `mcp --config CONFIG ARGS…`: exit code and stdout, or an error with stderr.
async fn mcp(config: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(MCP)
        .arg("--config")
        .arg(config)
        .args(args)
        .env("XDG_CACHE_HOME", config.parent().unwrap())
        .env("XDG_STATE_HOME", config.parent().unwrap())
        .env("XDG_CONFIG_HOME", config.parent().unwrap())
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "mcp {args:?} exited {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// List, call `tool` with `arguments` expecting `answer`, and read a resource (`uri`, or the
/// first one the server lists) expecting `text` when given.
async fn exercise(
    config: PathBuf,
    server: &'static str,
    tool: &'static str,
    arguments: Value,
    answer: &'static str,
    read: Option<(&'static str, &'static str)>,
) -> anyhow::Result<()> {
    let tools: Vec<Value> =
        serde_json::from_str(&mcp(&config, &["tools", server, "--json"]).await?)?;
    ensure!(
        tools.iter().any(|t| t["name"] == tool),
        "{tool} is not listed"
    );
    let called = mcp(&config, &["call", server, tool, &arguments.to_string()]).await?;
    ensure!(called.contains(answer), "{tool} answered {called:?}");
    match read {
        Some((uri, text)) => {
            let body = mcp(&config, &["read", server, uri]).await?;
            ensure!(body.trim() == text, "{uri} read as {body:?}");
        }
        None => {
            let listed: Vec<Value> =
                serde_json::from_str(&mcp(&config, &["resources", server, "--json"]).await?)?;
            let uri = listed
                .first()
                .and_then(|r| r["uri"].as_str())
                .context("no resources listed")?;
            let body = mcp(&config, &["read", server, uri, "--json"]).await?;
            let contents: Value = serde_json::from_str(&body)?;
            ensure!(
                contents["contents"]
                    .as_array()
                    .is_some_and(|c| !c.is_empty()),
                "{uri} read as {body}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn mcp_drives_the_reference_and_python_servers_over_every_transport() {
    let (node, python) = tokio::task::spawn_blocking(|| {
        peers::ensure_node_peers().unwrap();
        (peers::node22().unwrap(), peers::python_peer().unwrap())
    })
    .await
    .unwrap();
    let http = PythonServer::start("http").await.unwrap();
    let sse = PythonServer::start("sse").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".mcp.json");
    let script = peers::python_peers_dir().join("server.py");
    std::fs::write(
        &config,
        json!({"mcpServers": {
            "everything": {"command": node, "args": [peers::node_bin("mcp-server-everything"), "stdio"]},
            "py-stdio": {"command": python, "args": [script, "stdio"]},
            "py-http": {"type": "http", "url": http.url("/mcp")},
            "py-sse": {"type": "sse", "url": sse.url("/sse")},
        }})
        .to_string(),
    )
    .unwrap();

    let python_read = Some(("peer://greeting", "Hello from the Python SDK."));
    let echo = || json!({"text": "über ✓"});
    let cells: Vec<Cell> = vec![
        interop::cell(
            "`server-everything` (TypeScript SDK)",
            "stdio",
            exercise(
                config.clone(),
                "everything",
                "echo",
                json!({"message": "hi"}),
                "Echo: hi",
                None,
            ),
        )
        .await,
        interop::cell(
            "Python SDK server",
            "stdio",
            exercise(
                config.clone(),
                "py-stdio",
                "echo",
                echo(),
                "über ✓",
                python_read,
            ),
        )
        .await,
        interop::cell(
            "Python SDK server",
            "http",
            exercise(
                config.clone(),
                "py-http",
                "echo",
                echo(),
                "über ✓",
                python_read,
            ),
        )
        .await,
        interop::cell(
            "Python SDK server",
            "sse",
            exercise(
                config.clone(),
                "py-sse",
                "echo",
                echo(),
                "über ✓",
                python_read,
            ),
        )
        .await,
    ];
    interop::record_section(
        "mcp-client-peers",
        &format!(
            "## Peer servers × our `mcp` client\n\n\
             Written by `cargo test -p mcp-client -- --include-ignored peer_servers::`: the `mcp` binary lists \
             the tools (`mcp tools`), calls one (`mcp call`) and reads a resource (`mcp read`), \
             speaking whichever protocol era the server offers (`--era auto`).\n\n{}",
            interop::grid(&cells, &interop::TRANSPORTS)
        ),
    )
    .unwrap();
    let failures = interop::failures(&cells);
    assert!(failures.is_empty(), "red cells:\n{}", failures.join("\n"));
}
