//! `mcp run` and `mcp chat` end to end: the real `mcp` binary, real MCP servers (the conformance
//! fixture, the official Python SDK's server, and a test server whose tools change, hang and ask
//! for roots), and a fake model API speaking the real OpenAI and Anthropic wire formats.

use crate::fake_llm;
use crate::support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::fake_llm::{FakeLlm, call, calls, text};
use crate::support::{Flag, command, eventually, mcp, workspace_binary, write_config};
use mcp_conformance::{everything::Everything, peers};
use mcp_core::{HttpServer, ServeArgs, Transport};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// `mcp run` against the fake model over the OpenAI format, with the test's key.
fn run_args<'a>(llm: &'a FakeLlm, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--base-url",
        &llm.base_url,
        "--model",
        "fake-model",
        "--api-key-env",
        "FAKE_KEY",
    ];
    args.extend_from_slice(extra);
    args
}

/// The messages of a recorded request, as one string to search.
fn said(request: &fake_llm::Recorded) -> String {
    request.body["messages"].to_string()
}

/// The tool names a request offered the model (either format).
fn offered(request: &fake_llm::Recorded) -> Vec<String> {
    request.body["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["function"]["name"].as_str().or(t["name"].as_str()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

async fn fixture() -> HttpServer {
    HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap()
}

/// The fixture over Streamable HTTP (`fx`) and the Python SDK's server over stdio (`py`), in a
/// config in a new directory.
async fn fixture_and_python() -> (HttpServer, tempfile::TempDir) {
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let py = tokio::task::spawn_blocking(python_server).await.unwrap();
    write_config(
        dir.path(),
        json!({"fx": {"type": "http", "url": fx.url("/mcp")}, "py": py}),
    );
    (fx, dir)
}

fn python_server() -> Value {
    let python = peers::python_peer().unwrap();
    json!({"command": python.display().to_string(),
           "args": [peers::python_peers_dir().join("server.py").display().to_string(), "stdio"]})
}

/// A server whose tools change (`unlock` adds `secret`), hang (`wait`), and ask for roots.
#[derive(Clone, Default)]
struct Lab {
    unlocked: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

fn lab_tool(name: &str, description: &str, read_only: bool) -> Tool {
    serde_json::from_value(json!({
        "name": name, "description": description,
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "annotations": {"readOnlyHint": read_only}
    }))
    .unwrap()
}

fn reply(text: String) -> Result<CallToolResponse, ErrorData> {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
}

impl ServerHandler for Lab {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = vec![
            lab_tool("echo", "Echoes, from Rust", true),
            lab_tool("wait", "Waits a long time", true),
            lab_tool("unlock", "Adds the secret tool", false),
            lab_tool("roots", "Lists the client's roots", true),
        ];
        if self.unlocked.load(Ordering::SeqCst) {
            tools.push(lab_tool("secret", "Tells the secret", true));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match request.name.as_ref() {
            "echo" => reply(format!("rust echo: {text}")),
            "wait" => {
                let _flag = Flag(self.dropped.clone());
                self.started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(600)).await;
                reply("done".into())
            }
            "unlock" => {
                self.unlocked.store(true, Ordering::SeqCst);
                let _ = context.peer.notify_tool_list_changed().await;
                reply("unlocked".into())
            }
            "secret" if self.unlocked.load(Ordering::SeqCst) => reply("the secret is 1234".into()),
            #[allow(deprecated)]
            "roots" => {
                let roots = context
                    .peer
                    .list_roots()
                    .await
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                reply(serde_json::to_string(&roots).unwrap())
            }
            other => Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        }
    }
}

/// The lab over Streamable HTTP.
async fn lab() -> (Lab, HttpServer) {
    lab_over(Transport::Http).await
}

async fn lab_over(transport: Transport) -> (Lab, HttpServer) {
    let lab = Lab::default();
    let server = HttpServer::start(
        lab.clone(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[transport]),
    )
    .await
    .unwrap();
    (lab, server)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 (the Python SDK peer); .ci/run runs it"]
async fn a_multi_step_task_over_two_servers_with_parallel_calls_and_a_name_collision() {
    let fx = fixture().await;
    let (_lab, lab_server) = lab().await;
    let dir = tempfile::tempdir().unwrap();
    let py = tokio::task::spawn_blocking(python_server).await.unwrap();
    write_config(
        dir.path(),
        json!({"fx": {"type": "http", "url": fx.url("/mcp")},
               "lab": {"type": "http", "url": lab_server.url("/mcp")},
               "py": py}),
    );
    let llm = FakeLlm::start(vec![
        // Three calls at once; `echo` exists on two servers.
        calls(&[
            ("py__add", json!({"a": 2, "b": 40})),
            ("lab__echo", json!({"text": "hi"})),
            ("py__echo", json!({"text": "hi"})),
        ]),
        call("fx__test_simple_text", json!({})),
        text("All done: 42."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--approve", "auto", "--json", "add 2 and 40"]),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["answer"], "All done: 42.");

    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test"));
    assert_eq!(requests[0].body["stream"], true);
    let tools = offered(&requests[0]);
    for name in ["py__add", "py__echo", "lab__echo", "fx__test_simple_text"] {
        assert!(tools.iter().any(|t| t == name), "{name} not in {tools:?}");
    }
    assert!(tools.iter().all(|t| valid_name(t)), "{tools:?}");
    // Each result went back under its own call id, from the right server.
    let results: Vec<(String, String)> = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        results,
        vec![
            ("call_0".to_owned(), "42".to_owned()),
            ("call_1".to_owned(), "rust echo: hi".to_owned()),
            ("call_2".to_owned(), "hi".to_owned()),
        ]
    );
    assert!(said(&requests[2]).contains("This is a simple text response for testing."));
    // The transcript says which server answered each call.
    let transcript = out["transcript"].as_array().unwrap();
    let first_calls = transcript[1]["tool_calls"].as_array().unwrap();
    assert_eq!(first_calls[1]["server"], "lab");
    assert_eq!(first_calls[2]["server"], "py");
    assert!(run.stderr.contains("→ lab.echo"), "{}", run.stderr);

    lab_server.shutdown().await.unwrap();
    fx.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 (the Python SDK peer); .ci/run runs it"]
async fn anthropic_wire_format_and_a_tool_error_the_model_recovers_from() {
    let (fx, dir) = fixture_and_python().await;
    let llm = FakeLlm::start(vec![
        call("fx__test_error_handling", json!({})),
        call("py__echo", json!({"text": "recovered"})),
        text("Recovered after the error."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(
            &llm,
            &["--api", "anthropic", "--approve", "auto", "try the tools"],
        ),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "Recovered after the error.");
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.path == "/v1/messages"));
    assert_eq!(requests[0].authorization.as_deref(), Some("sk-test"));
    assert!(offered(&requests[0]).contains(&"py__echo".to_owned()));
    let second = said(&requests[1]);
    assert!(
        second.contains("tool_result")
            && second.contains("This tool intentionally returns an error"),
        "{second}"
    );
    assert!(said(&requests[2]).contains("recovered"));
    assert!(
        run.stderr.contains("error: This tool intentionally"),
        "{}",
        run.stderr
    );
    fx.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_tool_times_out_and_ctrl_c_cancels_the_running_call() {
    let (lab, lab_server) = lab().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({"lab": {"type": "http", "url": lab_server.url("/mcp")}}),
    );

    // The timeout: the model hears it, and the server's work is dropped.
    let llm = FakeLlm::start(vec![call("lab__wait", json!({})), text("It timed out.")]).await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--timeout", "2", "wait for it"]),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "It timed out.");
    assert!(
        said(&llm.requests()[1]).contains("did not answer within 2 s and was cancelled"),
        "{:?}",
        llm.requests()[1].body
    );
    assert!(
        eventually(&lab.dropped).await,
        "the server never saw the cancellation"
    );

    // Ctrl-C during the call: exit 130, the call cancelled on the server.
    lab.started.store(false, Ordering::SeqCst);
    lab.dropped.store(false, Ordering::SeqCst);
    let llm = FakeLlm::start(vec![call("lab__wait", json!({})), text("unreachable")]).await;
    let child = command(dir.path(), &run_args(&llm, &["wait for it"]))
        .spawn()
        .unwrap();
    support::interrupt_and_check(child, &lab.started, &lab.dropped).await;
    assert_eq!(
        llm.requests().len(),
        1,
        "no model request after the interrupt"
    );
    lab_server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs python3 (the Python SDK peer); .ci/run runs it"]
async fn approvals_limits_and_a_tool_call_written_as_text() {
    let (fx, dir) = fixture_and_python().await;

    // `run` by default runs read-only tools only: echo (no readOnlyHint) is refused, the
    // fixture's read-only tool runs.
    let llm = FakeLlm::start(vec![
        calls(&[
            ("py__echo", json!({"text": "x"})),
            ("fx__test_simple_text", json!({})),
        ]),
        text("ok"),
    ])
    .await;
    let run = mcp(dir.path(), &run_args(&llm, &["go"]), "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let second = said(&llm.requests()[1]);
    assert!(
        second.contains("Not run: echo is not marked read-only"),
        "{second}"
    );
    assert!(
        second.contains("This is a simple text response"),
        "{second}"
    );

    // --approve ask: the user answers on stdin; no, then yes.
    let llm = FakeLlm::start(vec![
        call("py__echo", json!({"text": "first"})),
        call("py__echo", json!({"text": "second"})),
        text("ok"),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--approve", "ask", "go"]),
        "n\ny\n",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("allow py.echo?"), "{}", run.stderr);
    let requests = llm.requests();
    assert!(said(&requests[1]).contains("the user declined this call"));
    let answered: Vec<&str> = requests[2].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(answered.last(), Some(&"second"), "{answered:?}");

    // The step limit stops a model that never stops calling tools.
    let llm = FakeLlm::start(vec![
        call("fx__test_simple_text", json!({})),
        call("fx__test_simple_text", json!({})),
        call("fx__test_simple_text", json!({})),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--max-steps", "2", "loop"]),
        "",
    )
    .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("stopped after 2 model requests"),
        "{}",
        run.stderr
    );
    assert_eq!(llm.requests().len(), 2);

    // A long result keeps its head and tail and says what was cut.
    let long = format!("BEGIN{}END", "x".repeat(50_000));
    let llm = FakeLlm::start(vec![call("py__echo", json!({"text": long})), text("ok")]).await;
    let run = mcp(
        dir.path(),
        &run_args(
            &llm,
            &["--approve", "auto", "--max-result-bytes", "1000", "go"],
        ),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let tool_message = llm.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tool_message.len() <= 1000, "{} bytes", tool_message.len());
    assert!(tool_message.starts_with("BEGIN") && tool_message.ends_with("END"));
    assert!(
        tool_message.contains("cut from the middle"),
        "{tool_message}"
    );

    // A model that writes its tool call as text is told apart from an answer, once.
    let llm = FakeLlm::start(vec![
        text(r#"{"name": "py__echo", "arguments": {"text": "hi"}}"#),
        text("never asked"),
    ])
    .await;
    let run = mcp(dir.path(), &run_args(&llm, &["go"]), "").await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("as text instead of making a tool call"),
        "{}",
        run.stderr
    );
    assert_eq!(llm.requests().len(), 1, "it must not loop");
    fx.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_ask_back_sampling_elicitation_roots_and_report_progress_logs_and_new_tools() {
    let fx = fixture().await;
    // The lab over legacy SSE, where its `tools/list_changed` and the answer to `unlock` share
    // one stream, in order. Over Streamable HTTP rmcp sends that notification on the GET stream,
    // another connection, so it may arrive after the answer (the client then follows it before
    // the model request after next); only the one-stream order makes the check below exact.
    let (_lab, lab_server) = lab_over(Transport::Sse).await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({"fx": {"type": "http", "url": fx.url("/mcp")},
               "lab": {"type": "sse", "url": lab_server.url("/sse")}}),
    );
    let llm = FakeLlm::start(vec![
        call("fx__test_sampling", json!({"prompt": "What is 2+2?"})),
        // The sampling request, answered by the same model.
        text("4"),
        call("fx__test_elicitation", json!({"message": "Who are you?"})),
        call("fx__test_tool_with_progress", json!({})),
        call("fx__test_tool_with_logging", json!({})),
        call("lab__unlock", json!({})),
        call("lab__secret", json!({})),
        call("lab__roots", json!({})),
        text("done"),
    ])
    .await;
    // Answers, in order: allow sampling tool, consent to sampling, allow elicitation tool,
    // answer the form (two fields), allow progress, allow logging, allow unlock, secret, roots.
    let stdin = "y\ny\ny\na\nalice\nalice\ny\ny\ny\ny\ny\n";
    // Sampling, roots and server logs belong to the handshake era (the stateless revision
    // removed them).
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--era", "handshake", "--approve", "ask", "go"]),
        stdin,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.trim(), "done", "{}", run.stderr);
    let requests = llm.requests();
    assert_eq!(
        requests.len(),
        9,
        "{:#?}",
        requests.iter().map(said).collect::<Vec<_>>()
    );
    // Sampling: consent asked, the model asked without tools and without streaming.
    assert!(
        run.stderr.contains("fx asks to use the model"),
        "{}",
        run.stderr
    );
    assert_ne!(requests[1].body["stream"], true);
    assert!(said(&requests[1]).contains("What is 2+2?"));
    assert!(said(&requests[2]).contains("LLM response: 4"));
    // Elicitation: asked in the terminal.
    assert!(
        run.stderr.contains("fx asks: Who are you?"),
        "{}",
        run.stderr
    );
    let third = said(&requests[3]);
    assert!(
        third.contains("action=accept") && third.contains("alice"),
        "{third}"
    );
    // Progress and logs on stderr.
    assert!(run.stderr.contains("fx: progress 50/100"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Tool processing data"),
        "{}",
        run.stderr
    );
    // tools/list_changed is followed before the next model request.
    assert!(!offered(&requests[5]).contains(&"lab__secret".to_owned()));
    assert!(offered(&requests[6]).contains(&"lab__secret".to_owned()));
    assert!(said(&requests[7]).contains("the secret is 1234"));
    // Roots: the working directory.
    let cwd = url::Url::from_directory_path(dir.path().canonicalize().unwrap()).unwrap();
    assert!(
        said(&requests[8]).contains(cwd.as_str()),
        "{}",
        said(&requests[8])
    );

    lab_server.shutdown().await.unwrap();
    fx.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_streams_answers_runs_slash_commands_and_reconnects_a_dropped_server() {
    // Legacy SSE: when the server goes away the stream ends and the connection is gone for good
    // (Streamable HTTP sessions are re-made by rmcp itself).
    let sse = |address| ServeArgs::http(address, &[Transport::Sse]);
    let fx = HttpServer::start(Everything::sessions(), &sse("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let address = fx.local_addr();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({"fx": {"type": "sse", "url": fx.url("/sse")}}),
    );
    let llm = FakeLlm::start(vec![
        call("fx__test_simple_text", json!({})),
        text("The fixture answered."),
        call("fx__test_simple_text", json!({})),
        text("It answered again."),
    ])
    .await;
    let mut child = command(
        dir.path(),
        &[
            "chat",
            "--base-url",
            &llm.base_url,
            "--model",
            "fake-model",
            "--api-key-env",
            "FAKE_KEY",
        ],
    )
    .spawn()
    .unwrap();
    let mut input = child.stdin.take().unwrap();
    // Chat asks before each call by default: the answers come on the same stdin as the prompts
    // (no, then always).
    input.write_all(b"ask the fixture\nn\n").await.unwrap();
    for _ in 0..400 {
        if llm.requests().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(llm.requests().len(), 2);
    // The server goes away and comes back on the same address: a new process, no session.
    fx.shutdown().await.unwrap();
    let fx = HttpServer::start(Everything::sessions(), &sse(address))
        .await
        .unwrap();
    input
        .write_all(b"again please\na\n/tools\n/servers\n/save saved.json\n/clear\n/exit\n")
        .await
        .unwrap();
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("The fixture answered."), "{stdout}");
    assert!(stdout.contains("It answered again."), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("fx: the connection dropped") && stderr.contains("reconnected"),
        "{stderr}"
    );
    assert!(
        said(&llm.requests()[3]).contains("This is a simple text response"),
        "{stderr}"
    );
    assert!(stdout.contains("fx__test_simple_text\t"), "{stdout}");
    // rustyline writes its prompt to stdout when the terminal is one it cannot drive
    // (TERM=dumb), so a line may start with it.
    assert!(
        stdout
            .lines()
            .any(|l| l.trim_start_matches("you> ").starts_with("fx\t")),
        "{stdout}"
    );
    assert!(stdout.contains("(conversation cleared)"), "{stdout}");
    let saved: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("saved.json")).unwrap())
            .unwrap();
    assert_eq!(saved[0]["content"], "ask the fixture");
    // The second turn carried the first as context.
    assert!(said(&llm.requests()[2]).contains("The fixture answered."));
    assert!(said(&llm.requests()[1]).contains("the user declined this call"));
    assert!(stderr.contains("allow fx.test_simple_text?"), "{stderr}");
    fx.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_over_our_own_servers_the_example_mcp_fs_and_mcp_sql() {
    let (hello, fs, sql) = (
        workspace_binary("hello"),
        workspace_binary("mcp-fs"),
        workspace_binary("mcp-sql"),
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("notes")).unwrap();
    std::fs::write(root.join("notes/code.txt"), "The launch code is 7421.\n").unwrap();
    let db = root.join("shop.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
             INSERT INTO orders (total) VALUES (10.5), (20.0), (30.25);",
        )
        .unwrap();
    write_config(
        dir.path(),
        json!({
            "hello": {"command": hello.display().to_string()},
            "fs": {"command": fs.display().to_string(), "args": [root.display().to_string()]},
            "sql": {"command": sql.display().to_string(), "args": [format!("sqlite:{}", db.display())]}
        }),
    );
    let written = root.join("notes/new.txt");
    let llm = FakeLlm::start(vec![
        calls(&[
            ("hello__greet", json!({"name": "Ada"})),
            (
                "fs__read_text_file",
                json!({"path": root.join("notes/code.txt")}),
            ),
            (
                "sql__query",
                json!({"sql": "SELECT count(*) AS n, sum(total) AS s FROM orders"}),
            ),
            // `run` never writes unless told: refused, and the file is not made.
            ("fs__write_file", json!({"path": written, "content": "x"})),
        ]),
        text("Ada was greeted; the code is 7421; 3 orders."),
    ])
    .await;
    let run = mcp(dir.path(), &run_args(&llm, &["--json", "gather facts"]), "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = llm.requests();
    let tools = offered(&requests[0]);
    for name in [
        "hello__greet",
        "fs__read_text_file",
        "fs__write_file",
        "sql__query",
    ] {
        assert!(tools.contains(&name.to_owned()), "{name} not in {tools:?}");
    }
    let results: Vec<String> = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0], "Hello, Ada!");
    assert!(
        results[1].contains("The launch code is 7421."),
        "{}",
        results[1]
    );
    assert!(results[2].contains("60.75"), "{}", results[2]);
    assert!(
        results[3].starts_with("Not run: write_file"),
        "{}",
        results[3]
    );
    assert!(!written.exists());
}

/// Per-server `tools.allow` / `tools.deny` (globs): a tool left out is neither listed by
/// `mcp tools`, nor offered to the model by `mcp run`, nor callable, by the model or by
/// `mcp call`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_left_out_by_allow_and_deny_are_neither_offered_nor_callable() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({ "fx": {
            "type": "http",
            "url": fx.url("/mcp"),
            "tools": { "allow": ["test_*", "greet"], "deny": ["test_error_*", "test_*_logging"] }
        }}),
    );
    let listed = mcp(dir.path(), &["tools", "fx"], "").await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains("\ttest_simple_text\t"),
        "{}",
        listed.stdout
    );
    assert!(listed.stdout.contains("\tgreet\t"), "{}", listed.stdout);
    for gone in [
        "test_error_handling",
        "test_tool_with_logging",
        "json_schema_2020_12_tool",
        "slow_compute",
    ] {
        assert!(
            !listed.stdout.contains(&format!("\t{gone}\t")),
            "{gone}: {}",
            listed.stdout
        );
    }

    let refused = mcp(dir.path(), &["call", "fx", "test_error_handling", "{}"], "").await;
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("tools.allow / tools.deny"),
        "{}",
        refused.stderr
    );

    let llm = FakeLlm::start(vec![
        call("fx__test_error_handling", json!({})),
        text("Could not use it."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--approve", "auto", "use the tools"]),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = llm.requests();
    let first = offered(&requests[0]);
    assert!(
        first.contains(&"fx__test_simple_text".to_owned()),
        "{first:?}"
    );
    assert!(
        !first.iter().any(|name| name.contains("test_error")),
        "{first:?}"
    );
    // The model named it anyway: it is told the tool does not exist, and nothing ran.
    let second = said(&requests[1]);
    assert!(second.contains("fx__test_error_handling"), "{second}");
    assert!(
        !second.contains("intentionally returns an error"),
        "{second}"
    );
    fx.shutdown().await.unwrap();
}

/// `mcp run --output stream-json`: every line is one JSON object valid against the published
/// schema (`mcp-client/schema/stream-json.schema.json`), the tool call and its result come in
/// order, and the last line is the answer, or the error with the exit code `run` gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_json_lines_follow_the_published_schema() {
    let schema: Value =
        serde_json::from_str(include_str!("../schema/stream-json.schema.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({ "fx": { "type": "http", "url": fx.url("/mcp") } }),
    );
    let events = |stdout: &str| -> Vec<Value> {
        stdout
            .lines()
            .map(|line| {
                let event: Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let errors: Vec<String> = validator
                    .iter_errors(&event)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{line}: {errors:?}");
                event
            })
            .collect()
    };

    let llm = FakeLlm::start(vec![
        call("fx__test_simple_text", json!({})),
        text("It said hello."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(
            &llm,
            &["--output", "stream-json", "--approve", "auto", "try it"],
        ),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let seen = events(&run.stdout);
    let kinds: Vec<&str> = seen.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let call_at = kinds
        .iter()
        .position(|k| *k == "tool_call")
        .expect("a tool call");
    let result_at = kinds
        .iter()
        .position(|k| *k == "tool_result")
        .expect("a result");
    assert!(call_at < result_at, "{kinds:?}");
    assert_eq!(seen[call_at]["tool"], "test_simple_text");
    assert!(
        seen[result_at]["text"]
            .as_str()
            .unwrap()
            .contains("simple text response")
    );
    assert_eq!(
        seen.last().unwrap(),
        &json!({ "type": "answer", "text": "It said hello." })
    );

    let llm = FakeLlm::start(vec![call("fx__test_simple_text", json!({}))]).await;
    let stopped = mcp(
        dir.path(),
        &run_args(
            &llm,
            &[
                "--output",
                "stream-json",
                "--approve",
                "auto",
                "--max-steps",
                "1",
                "try",
            ],
        ),
        "",
    )
    .await;
    assert_eq!(stopped.code, 4, "{}", stopped.stderr);
    let seen = events(&stopped.stdout);
    assert_eq!(seen.last().unwrap()["type"], "error", "{seen:?}");
    fx.shutdown().await.unwrap();
}

/// `mcp chat` saves its conversation after every answer (owner-only, in the state dir) and
/// `mcp chat --resume` takes it up: the model is sent the earlier exchange with the new message;
/// a bad id is refused before anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_resumed_carries_on_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), json!({}));
    let chat = |llm: &FakeLlm, extra: &[&str]| {
        let mut args = vec![
            "chat",
            "--base-url",
            &llm.base_url,
            "--model",
            "fake-model",
            "--api-key-env",
            "FAKE_KEY",
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    let llm = FakeLlm::start(vec![text("Paris is the capital of France.")]).await;
    let args = chat(&llm, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = mcp(dir.path(), &args, "what is the capital of France?\n/exit\n").await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let sessions = dir.path().join("mcp-toolkit/sessions");
    let saved: Vec<_> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let llm = FakeLlm::start(vec![text("About two million people.")]).await;
    let args = chat(&llm, &["--resume"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let second = mcp(
        dir.path(),
        &args,
        "and how many people live there?\n/exit\n",
    )
    .await;
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stderr.contains("resumed session"),
        "{}",
        second.stderr
    );
    let sent = said(&llm.requests()[0]);
    assert!(sent.contains("capital of France"), "{sent}");
    assert!(sent.contains("Paris is the capital"), "{sent}");
    assert!(sent.contains("how many people"), "{sent}");

    let args = chat(&llm, &["--resume", "../../etc/passwd"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let bad = mcp(dir.path(), &args, "").await;
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// Tasks in the agent: a call the server runs as a task reaches the model as "running, follow it
/// with task_status"; the model follows it with that tool (waiting) and gets the result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_follows_a_task_with_the_task_status_tool() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({ "fx": { "type": "http", "url": fx.url("/mcp") } }),
    );
    let llm = FakeLlm::start(vec![
        call("fx__slow_compute", json!({ "seconds": 0.3, "label": "pi" })),
        call("task_status", json!({ "server": "fx", "wait_seconds": 30 })),
        text("Done."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--approve", "auto", "compute pi"]),
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = llm.requests();
    assert!(
        offered(&requests[0]).contains(&"task_status".to_owned()),
        "{:?}",
        offered(&requests[0])
    );
    let after_call = said(&requests[1]);
    assert!(after_call.contains("runs as a task on fx"), "{after_call}");
    let after_status = said(&requests[2]);
    assert!(
        after_status.contains("slow_compute(pi) done after 0.3s"),
        "{after_status}"
    );
    fx.shutdown().await.unwrap();
}

/// A call that asks first (an input-required round, answered in the terminal) and then runs as
/// a task: the answer goes back with the server's state, the task reaches the model, and the
/// model follows it to its result (rmcp's own input loop refuses a task at the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_asks_and_then_becomes_a_task_is_followed() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({ "fx": { "type": "http", "url": fx.url("/mcp") } }),
    );
    let llm = FakeLlm::start(vec![
        call("fx__test_input_required_then_task", json!({})),
        call("task_status", json!({ "server": "fx", "wait_seconds": 30 })),
        text("Done."),
    ])
    .await;
    let run = mcp(
        dir.path(),
        &run_args(&llm, &["--approve", "auto", "label it"]),
        "a\nquartz\n",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("fx asks: Which label?"),
        "{}",
        run.stderr
    );
    let requests = llm.requests();
    let after_call = said(&requests[1]);
    assert!(after_call.contains("runs as a task on fx"), "{after_call}");
    let after_status = said(&requests[2]);
    assert!(after_status.contains("labelled quartz"), "{after_status}");
    fx.shutdown().await.unwrap();
}

/// Tool schemas reach the model as the server wrote them: a JSON Schema 2020-12 schema keeps
/// `$schema`, `$defs` (with `$anchor`), `$ref`, `additionalProperties`, `allOf`/`anyOf` and
/// `if`/`then`/`else`, nothing dereferenced or dropped on the way (SEP-1613, SEP-2106).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_schemas_reach_the_model_as_the_server_wrote_them() {
    let fx = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        json!({ "fx": { "type": "http", "url": fx.url("/mcp") } }),
    );
    let listed = mcp(dir.path(), &["--json", "tools", "fx"], "").await;
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let written = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["name"] == "json_schema_2020_12_tool")
        .expect("the fixture's 2020-12 tool")["inputSchema"]
        .clone();
    for keyword in ["$schema", "$defs", "additionalProperties", "allOf", "if"] {
        assert!(written.get(keyword).is_some(), "{keyword}: {written}");
    }

    let llm = FakeLlm::start(vec![text("Seen.")]).await;
    let run = mcp(dir.path(), &run_args(&llm, &["look at the tools"]), "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let requests = llm.requests();
    let offered = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|tool| tool["function"]["name"] == "fx__json_schema_2020_12_tool")
        .expect("offered to the model")["function"]["parameters"]
        .clone();
    assert_eq!(offered, written);
    fx.shutdown().await.unwrap();
}
