//! `mcp tools` and `mcp call` against real servers: the conformance fixture over Streamable HTTP,
//! legacy SSE and a bare `url` (tried both ways), the official Python SDK's server over stdio, and
//! servers that cannot start.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::support;

use crate::support::{Flag, eventually};
use mcp_conformance::{everything::Everything, peers};
use mcp_core::{HttpServer, ServeArgs, Transport};
use rmcp::{
    ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::{ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
};
use serde_json::{Value, json};
use tokio::process::Command;

const MCP: &str = env!("CARGO_BIN_EXE_mcp");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn mcp(config: &Path, args: &[&str]) -> Run {
    let output = Command::new(MCP)
        .arg("--config")
        .arg(config)
        .args(args)
        // Keep the servers' stderr logs out of the user's cache.
        .env("XDG_CACHE_HOME", config.parent().unwrap())
        // Task records and tokens stay in the test's directory too.
        .env("XDG_STATE_HOME", config.parent().unwrap())
        .env("XDG_CONFIG_HOME", config.parent().unwrap())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js, npm and python3 (the official SDK peers); .ci/run runs it"]
async fn tools_and_calls_over_every_transport_and_a_failing_server() {
    let fixture = HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http(
            "127.0.0.1:0".parse().unwrap(),
            &[Transport::Http, Transport::Sse],
        ),
    )
    .await
    .unwrap();
    let python = tokio::task::spawn_blocking(|| peers::python_peer().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".mcp.json");
    std::fs::write(
        &config,
        json!({"mcpServers": {
            "fx-http": {"type": "http", "url": fixture.url("/mcp")},
            "fx-sse": {"type": "sse", "url": fixture.url("/sse")},
            "fx-auto": {"url": fixture.url("/sse")},
            "py": {"command": python.display().to_string(),
                   "args": [peers::python_peers_dir().join("server.py").display().to_string(), "stdio"]},
            "missing": {"command": "surely-not-a-command-mcp-test"},
            "dies": {"command": "sh", "args": ["-c", "echo 'fatal: no API key configured' >&2; exit 3"]}
        }})
        .to_string(),
    )
    .unwrap();

    // All servers at once: the two that fail are reported, the rest listed.
    let tools = mcp(&config, &["tools", "--json"]).await;
    assert_eq!(
        tools.code, 3,
        "a failed server makes the exit code 3: {}",
        tools.stderr
    );
    let listed: Vec<Value> = serde_json::from_str(&tools.stdout).unwrap();
    for server in ["fx-http", "fx-sse", "fx-auto"] {
        assert!(
            listed
                .iter()
                .any(|t| t["server"] == server && t["name"] == "test_simple_text"),
            "{server}: {}",
            tools.stdout
        );
    }
    assert!(
        listed
            .iter()
            .any(|t| t["server"] == "py" && t["name"] == "echo")
    );
    assert!(
        tools
            .stderr
            .contains("missing: command \"surely-not-a-command-mcp-test\" was not found on PATH"),
        "{}",
        tools.stderr
    );
    assert!(
        tools.stderr.contains("fatal: no API key configured"),
        "the dead server's stderr is shown: {}",
        tools.stderr
    );

    // One server's tools, human-readable.
    let one = mcp(&config, &["tools", "py"]).await;
    assert_eq!(one.code, 0, "{}", one.stderr);
    assert!(
        one.stdout.lines().any(|l| l.starts_with("py\techo\t")),
        "{}",
        one.stdout
    );

    // Calls: JSON arguments, key=value arguments, a tool error, an unknown server.
    let echoed = mcp(&config, &["call", "py", "echo", r#"{"text": "über ✓"}"#]).await;
    assert_eq!(
        (echoed.code, echoed.stdout.trim()),
        (0, "über ✓"),
        "{}",
        echoed.stderr
    );
    let sum = mcp(&config, &["call", "py", "add", "a=2", "b=40", "--json"]).await;
    assert_eq!(sum.code, 0, "{}", sum.stderr);
    let result: Value = serde_json::from_str(&sum.stdout).unwrap();
    assert_eq!(result["content"][0]["text"], "42");
    let simple = mcp(&config, &["call", "fx-sse", "test_simple_text"]).await;
    assert_eq!(simple.code, 0, "{}", simple.stderr);
    assert!(
        simple.stdout.contains("simple text response"),
        "{}",
        simple.stdout
    );
    let failed = mcp(&config, &["call", "fx-http", "test_error_handling"]).await;
    assert_eq!(failed.code, 1, "a tool error exits 1: {}", failed.stdout);
    let unknown = mcp(&config, &["call", "nope", "x"]).await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no server named \"nope\""),
        "{}",
        unknown.stderr
    );
    let bad = mcp(&config, &["call", "py", "echo", "not-a-pair"]).await;
    assert_eq!(bad.code, 2);
    let unreachable = mcp(&config, &["call", "missing", "x"]).await;
    assert_eq!(unreachable.code, 3, "{}", unreachable.stderr);

    // Resources and prompts.
    let resources = mcp(&config, &["resources", "fx-http", "--json"]).await;
    assert_eq!(resources.code, 0, "{}", resources.stderr);
    let resources: Vec<Value> = serde_json::from_str(&resources.stdout).unwrap();
    assert!(resources.iter().any(|r| r["uri"] == "test://static-text"));
    // Without a server: the one that has it answers, though two servers are broken.
    let read = mcp(&config, &["read", "peer://greeting"]).await;
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_eq!(read.stdout.trim(), "Hello from the Python SDK.");
    let blob = mcp(&config, &["read", "fx-sse", "test://static-binary"]).await;
    assert_eq!(blob.code, 0, "{}", blob.stderr);
    assert!(
        blob.stdout.starts_with("<image/png blob"),
        "{}",
        blob.stdout
    );
    let nowhere = mcp(&config, &["read", "fx-http", "test://nope"]).await;
    assert_eq!(nowhere.code, 3, "{}", nowhere.stdout);
    let prompts = mcp(&config, &["prompts", "fx-http"]).await;
    assert_eq!(prompts.code, 0, "{}", prompts.stderr);
    assert!(
        prompts
            .stdout
            .lines()
            .any(|l| l.starts_with("fx-http\ttest_prompt_with_arguments\targ1 arg2")),
        "{}",
        prompts.stdout
    );
    let prompt = mcp(
        &config,
        &[
            "prompt",
            "fx-http",
            "test_prompt_with_arguments",
            "arg1=paris",
            "arg2=rome",
        ],
    )
    .await;
    assert_eq!(prompt.code, 0, "{}", prompt.stderr);
    assert!(
        prompt.stdout.starts_with("user: ")
            && prompt.stdout.contains("paris")
            && prompt.stdout.contains("rome"),
        "{}",
        prompt.stdout
    );

    fixture.shutdown().await.unwrap();
}

/// A tool that runs until it is dropped, and says when that happened.
#[derive(Clone)]
struct Slow {
    started: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Slow {
    #[tool(description = "Waits for a long time")]
    async fn wait(&self) -> String {
        let _flag = Flag(self.dropped.clone());
        self.started.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(600)).await;
        "done".to_owned()
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Slow {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_or_interrupted_call_is_cancelled_on_the_server() {
    let slow = Slow {
        started: Arc::new(AtomicBool::new(false)),
        dropped: Arc::new(AtomicBool::new(false)),
        tool_router: Slow::tool_router(),
    };
    let server = HttpServer::start(
        slow.clone(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".mcp.json");
    std::fs::write(
        &config,
        json!({"mcpServers": {"slow": {"type": "http", "url": server.url("/mcp")}}}).to_string(),
    )
    .unwrap();

    // --timeout: exit 3, and the server's work is dropped.
    let timed_out = mcp(&config, &["--timeout", "1", "call", "slow", "wait"]).await;
    assert_eq!(timed_out.code, 3, "{}", timed_out.stderr);
    assert!(
        timed_out.stderr.contains("did not answer within 1 s"),
        "{}",
        timed_out.stderr
    );
    assert!(
        eventually(&slow.dropped).await,
        "the server never saw the cancellation"
    );

    // Ctrl-C: exit 130, and the server's work is dropped.
    slow.started.store(false, Ordering::SeqCst);
    slow.dropped.store(false, Ordering::SeqCst);
    let child = Command::new(MCP)
        .arg("--config")
        .arg(&config)
        .args(["call", "slow", "wait"])
        .env("XDG_CACHE_HOME", dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::interrupt_and_check(child, &slow.started, &slow.dropped).await;
    server.shutdown().await.unwrap();
}

/// Tasks (SEP-2663) from the command line: `mcp call` follows a task to its result (status on
/// stderr), `--detach` prints the task and `mcp tasks get --wait` follows it later, `mcp tasks
/// cancel` stops one, and a task-only tool that ends with a tool error exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_become_tasks_are_followed_detached_and_cancelled() {
    let fixture = HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join(".mcp.json");
    std::fs::write(
        &config,
        json!({ "mcpServers": { "fx": { "type": "http", "url": fixture.url("/mcp") } } })
            .to_string(),
    )
    .unwrap();

    let followed = mcp(
        &config,
        &[
            "call",
            "fx",
            "slow_compute",
            r#"{"seconds": 0.3, "label": "a"}"#,
        ],
    )
    .await;
    assert_eq!(followed.code, 0, "{}", followed.stderr);
    assert_eq!(followed.stdout.trim(), "slow_compute(a) done after 0.3s");
    assert!(followed.stderr.contains("task "), "{}", followed.stderr);
    assert!(
        followed.stderr.contains("computing a"),
        "{}",
        followed.stderr
    );

    let detached = mcp(
        &config,
        &[
            "--json",
            "call",
            "--detach",
            "fx",
            "slow_compute",
            r#"{"seconds": 0.3}"#,
        ],
    )
    .await;
    assert_eq!(detached.code, 0, "{}", detached.stderr);
    let created: Value = serde_json::from_str(&detached.stdout).unwrap();
    let id = created["taskId"].as_str().unwrap().to_owned();
    let later = mcp(&config, &["tasks", "get", "fx", &id, "--wait"]).await;
    assert_eq!(later.code, 0, "{}", later.stderr);
    assert_eq!(later.stdout.trim(), "slow_compute(compute) done after 0.3s");

    let long = mcp(
        &config,
        &[
            "--json",
            "call",
            "--detach",
            "fx",
            "slow_compute",
            r#"{"seconds": 60}"#,
        ],
    )
    .await;
    let created: Value = serde_json::from_str(&long.stdout).unwrap();
    let id = created["taskId"].as_str().unwrap().to_owned();
    let cancelled = mcp(&config, &["tasks", "cancel", "fx", &id]).await;
    assert_eq!(cancelled.code, 0, "{}", cancelled.stderr);
    let status = mcp(&config, &["tasks", "get", "fx", &id]).await;
    assert!(status.stdout.contains("\tcancelled"), "{}", status.stdout);

    let failing = mcp(&config, &["call", "fx", "failing_job"]).await;
    assert_eq!(failing.code, 1, "{}", failing.stderr);
    assert!(
        failing.stdout.contains("always fails"),
        "{}",
        failing.stdout
    );

    let unknown = mcp(&config, &["tasks", "get", "fx", "no-such-task"]).await;
    assert_eq!(unknown.code, 3, "{}", unknown.stderr);

    // The tasks mcp started, newest first, each with its status now: the cancelled one, the
    // detached one done, the followed one done (failing_job's task too, if it was one).
    let listed = mcp(&config, &["--json", "tasks", "list"]).await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    let slow: Vec<&Value> = listed
        .iter()
        .filter(|row| row["tool"] == "slow_compute")
        .collect();
    assert_eq!(slow.len(), 3, "{listed:?}");
    assert_eq!(slow[0]["task"], id.as_str());
    assert_eq!(slow[0]["status"], "cancelled");
    assert_eq!(slow[1]["status"], "completed");
    assert!(listed.iter().all(|row| row["server"] == "fx"));
    let limited = mcp(&config, &["--json", "tasks", "list", "fx", "--limit", "1"]).await;
    let limited: Vec<Value> = serde_json::from_str(&limited.stdout).unwrap();
    assert_eq!(limited.len(), 1);
    fixture.shutdown().await.unwrap();
}
