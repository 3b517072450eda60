//! `mcp flow`: workflow files checked with their lines, run durably over a real server of ours
//! (mcp-fs) and the fake model API, resumed without running again what ended.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

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

use crate::fake_llm::{FakeLlm, text};
use crate::support::{mcp, workspace_binary, write_config};

/// A config with mcp-fs over `root`.
fn fs_config(dir: &Path, root: &Path) {
    write_config(
        dir,
        json!({"fs": {"command": workspace_binary("mcp-fs").display().to_string(),
                      "args": [root.display().to_string()]}}),
    );
}

/// The runs in `store`, newest first (`mcp flow list --json`).
async fn runs(root: &Path, store: &Path) -> Value {
    let listed = mcp(
        root,
        &["--json", "flow", "list", "--store", store.to_str().unwrap()],
        "",
    )
    .await;
    serde_json::from_str(&listed.stdout).unwrap()
}

/// A run's recorded steps (`mcp flow show --json`): each step's (or item's) tries and status.
async fn tries(root: &Path, store: &Path, run: &str) -> Vec<(String, Option<u64>, u64, String)> {
    let shown = mcp(
        root,
        &[
            "--json",
            "flow",
            "show",
            run,
            "--store",
            store.to_str().unwrap(),
        ],
        "",
    )
    .await;
    let trace: Value = serde_json::from_str(&shown.stdout).unwrap();
    trace["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["item"].as_u64(),
                s["attempts"].as_u64().unwrap(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The tries and status of `step` (item `item`) among [`tries`].
fn of(
    trace: &[(String, Option<u64>, u64, String)],
    step: &str,
    item: Option<u64>,
) -> (u64, String) {
    trace
        .iter()
        .find(|(s, i, _, _)| s == step && *i == item)
        .map(|(_, _, n, status)| (*n, status.clone()))
        .unwrap_or_else(|| panic!("no {step} {item:?} in {trace:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs_config(&root, &root);
    let bad = root.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad
inputs:
  path: string
steps:
  - id: first
    call: fs.read_text_file
    with:
      path: ${{ steps.later.text }}
  - id: typo
    call: fs.read_txt_file
  - id: wrong
    call: fs.read_text_file
    with:
      path: 12
  - id: missing
    llm: Summarize ${{ steps.nowhere.text }}
  - id: later
    call: fs.read_text_file
    with: {path: \"${{ inputs.path }}\"}
",
    )
    .unwrap();
    let run = mcp(
        &root,
        &["--json", "flow", "check", bad.to_str().unwrap()],
        "",
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let problems: Vec<(u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["line"].as_u64().unwrap(),
                p["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // The graph and the templates first (no server needed): a reference to a later step is a
    // cycle, one to no step at all is named.
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_eq!(problems[0].0, 8, "{problems:#?}");
    assert!(problems[0].1.contains("runs after first"), "{problems:#?}");
    assert_eq!(problems[1].0, 16, "{problems:#?}");
    assert!(problems[1].1.contains("no step nowhere"), "{problems:#?}");

    // With the graph mended, the server's side: the unknown tool, the argument of the wrong type.
    let text = std::fs::read_to_string(&bad)
        .unwrap()
        .replace("${{ steps.later.text }}", "${{ inputs.path }}")
        .replace("${{ steps.nowhere.text }}", "${{ steps.wrong.text }}");
    std::fs::write(&bad, text).unwrap();
    let run = mcp(&root, &["flow", "check", bad.to_str().unwrap()], "").await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[0].ends_with("bad.yaml:9: step typo: fs has no tool read_txt_file (it has: ")
            || lines[0].contains("bad.yaml:9: step typo: fs has no tool read_txt_file"),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].contains("bad.yaml:14: step wrong: argument path = 12"),
        "{}",
        run.stdout
    );
    // A run starts only from a file that checks.
    let refused = mcp(
        &root,
        &["flow", "run", bad.to_str().unwrap(), "-i", "path=x"],
        "",
    )
    .await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("does not check"),
        "{}",
        refused.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_recorded_and_resumed_without_running_again_what_ended() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    fs_config(&root, &root);
    std::fs::create_dir(root.join("notes")).unwrap();
    std::fs::write(root.join("notes/a.txt"), "Apples are red.").unwrap();
    let flow = root.join("digest.yaml");
    std::fs::write(
        &flow,
        "name: digest
inputs:
  dir: {type: string}
  files: {type: array, description: the files to read}
steps:
  - id: read
    for_each: ${{ inputs.files }}
    concurrency: 2
    call: fs.read_text_file
    with: {path: \"${{ inputs.dir }}/${{ item }}\"}
  - id: summary
    llm: \"Summarize in one line: ${{ steps.read.items | map(attribute='text') | join(' / ') }}\"
    schema: {type: object, required: [summary], properties: {summary: {type: string}}}
  - id: save
    call: fs.write_file
    with:
      path: ${{ inputs.dir }}/summary.txt
      content: ${{ steps.summary.structured.summary }}
  - id: skipped
    if: ${{ steps.read.items | length > 5 }}
    call: fs.read_text_file
    with: {path: \"${{ inputs.dir }}/a.txt\"}
",
    )
    .unwrap();
    let llm = FakeLlm::start(vec![
        // Not the schema's JSON: told so, the model answers again.
        text("Here is a summary: fruit."),
        text("{\"summary\": \"Fruit is colourful.\"}"),
    ])
    .await;
    let store = root.join("runs.sqlite");
    let notes = root.join("notes");
    let args = |command: &'static str| -> Vec<String> {
        vec![
            "flow".into(),
            command.into(),
            "--store".into(),
            store.display().to_string(),
            "--base-url".into(),
            llm.base_url.clone(),
            "--model".into(),
            "fake-model".into(),
            "--api-key-env".into(),
            "FAKE_KEY".into(),
        ]
    };
    let mut first = args("run");
    first.extend([
        flow.display().to_string(),
        "-i".into(),
        format!("dir={}", notes.display()),
        "-i".into(),
        "files=[\"a.txt\", \"b.txt\"]".into(),
    ]);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    // b.txt is not there yet: the second item fails, the run fails there.
    let run = mcp(&root, &first, "").await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("mcp flow resume"), "{}", run.stderr);
    assert!(
        llm.requests().is_empty(),
        "nothing after the failed step ran"
    );

    // What a server sends may hold markup: the HTML trace shows it as text.
    std::fs::write(
        root.join("notes/b.txt"),
        "Bananas are yellow. <script>alert(1)</script>",
    )
    .unwrap();
    let mut again = args("resume");
    again.extend(["--last".to_owned(), "--json".to_owned()]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    let run = mcp(&root, &again, "").await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        std::fs::read_to_string(root.join("notes/summary.txt")).unwrap(),
        "Fruit is colourful."
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 2);
    let asked = requests[1].body["messages"].to_string();
    assert!(
        asked.contains("does not satisfy the JSON Schema"),
        "{asked}"
    );
    assert!(
        requests[0].body["messages"]
            .to_string()
            .contains("Apples are red. / Bananas are yellow.")
    );

    // What the steps read and wrote is its owner's alone.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&store).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    // The trace: a.txt was read once (in the first run), b.txt twice (failed, then read).
    let runs = runs(&root, &store).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["status"], "succeeded");
    let id = runs["runs"][0]["id"].as_str().unwrap().to_owned();
    let trace = tries(&root, &store, &id).await;
    assert_eq!(of(&trace, "read", Some(0)), (1, "succeeded".to_owned()));
    assert_eq!(of(&trace, "read", Some(1)), (2, "succeeded".to_owned()));
    assert_eq!(of(&trace, "summary", None), (1, "succeeded".to_owned()));
    assert_eq!(of(&trace, "save", None), (1, "succeeded".to_owned()));
    assert_eq!(of(&trace, "skipped", None).1, "skipped");
    let text_trace = mcp(
        &root,
        &["flow", "show", &id, "--store", store.to_str().unwrap()],
        "",
    )
    .await;
    assert!(
        text_trace.stdout.contains("summary"),
        "{}",
        text_trace.stdout
    );
    assert!(
        text_trace.stdout.contains("Fruit is colourful."),
        "{}",
        text_trace.stdout
    );
}

/// The pids of `pid`'s children.
fn children(pid: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A run killed with SIGKILL (the client and its server, as a crash would) in the middle of a
/// step, then resumed: every step that had ended ran once (counted by the rows it inserted), the
/// step in flight is not run again until asked (it is not idempotent), and the output is an
/// uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_step_resumes_with_each_ended_step_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let sql = workspace_binary("mcp-sql");
    let flow = root.join("ledger.yaml");
    std::fs::write(
        &flow,
        "name: ledger
steps:
  - id: first
    call: db.execute
    with: {sql: \"INSERT INTO log (step) VALUES ('first')\"}
  - id: slow
    call: db.execute
    with:
      sql: >-
        INSERT INTO log (step) SELECT 'slow' FROM (WITH RECURSIVE c(x) AS
        (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) SELECT max(x) FROM c)
  - id: last
    call: db.execute
    with: {sql: \"INSERT INTO log (step) VALUES ('last')\"}
  - id: count
    call: db.query
    with: {sql: \"SELECT step, count(*) AS n FROM log GROUP BY step ORDER BY step\"}
",
    )
    .unwrap();
    let database = |name: &str| {
        let path = root.join(name);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE log (step TEXT NOT NULL)")
            .unwrap();
        path
    };
    let configure = |db: &Path| {
        write_config(
            &root,
            json!({"db": {"command": sql.display().to_string(),
                          "args": [format!("sqlite:{}", db.display()), "--allow-write", "--timeout", "300"]}}),
        );
    };
    let store = root.join("runs.sqlite");
    let run_args = [
        "flow",
        "run",
        flow.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];

    // The reference: a run never interrupted.
    let reference = database("reference.db");
    configure(&reference);
    let whole = mcp(&root, &run_args, "").await;
    assert_eq!(whole.code, 0, "{}", whole.stderr);
    assert!(whole.stdout.contains("slow"), "{}", whole.stdout);

    let crashed = database("crashed.db");
    configure(&crashed);
    let mut child = crate::support::command(&root, &run_args).spawn().unwrap();
    let pid = child.id().unwrap();
    // Until the slow step is under way (its start is in the store before it runs).
    let mut in_flight = false;
    for _ in 0..600 {
        if let Ok(db) = rusqlite::Connection::open(&store) {
            in_flight = db
                .query_row(
                    "SELECT count(*) FROM steps JOIN runs ON runs.id = steps.run
                     WHERE steps.step = 'slow' AND steps.status = 'running' AND runs.status = 'running'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .unwrap_or(0)
                > 0;
        }
        if in_flight {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(in_flight, "the slow step never started");
    let servers = children(pid);
    assert!(!servers.is_empty(), "mcp-sql runs under mcp");
    for server in servers {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(server).unwrap(),
            rustix::process::Signal::KILL,
        )
        .unwrap();
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let rows = |step: &str| -> i64 {
        rusqlite::Connection::open(&crashed)
            .unwrap()
            .query_row("SELECT count(*) FROM log WHERE step = ?1", [step], |row| {
                row.get(0)
            })
            .unwrap()
    };
    assert_eq!((rows("first"), rows("slow"), rows("last")), (1, 0, 0));

    // Resumed: the step in flight is not idempotent (execute says so), so the run stops and
    // says how to go on; nothing ran.
    let resume = [
        "flow",
        "resume",
        "--last",
        "--store",
        store.to_str().unwrap(),
    ];
    let stopped = mcp(&root, &resume, "").await;
    assert_eq!(stopped.code, 4, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("was in flight") && stopped.stderr.contains("--retry-in-flight"),
        "{}",
        stopped.stderr
    );
    assert_eq!((rows("first"), rows("slow"), rows("last")), (1, 0, 0));
    let mut again = resume.to_vec();
    again.push("--retry-in-flight");
    let resumed = mcp(&root, &again, "").await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!((rows("first"), rows("slow"), rows("last")), (1, 1, 1));
    assert_eq!(resumed.stdout, whole.stdout);
}

/// A server whose one tool, `work`, takes a little while and counts the calls under way at once.
#[derive(Clone, Default)]
struct Counter {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    /// `hang` was called; its work was dropped (the call cancelled).
    started: Arc<std::sync::atomic::AtomicBool>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
    /// `work`'s first calls wait (up to 5 s) until this many are under way at once; 0: none.
    gate: Arc<AtomicUsize>,
    /// `flaky` answers with an error this many times first.
    failures: Arc<AtomicUsize>,
}

impl ServerHandler for Counter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tool: Tool = serde_json::from_value(json!({
            "name": "work", "description": "Works on n for a moment",
            "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            "annotations": {"readOnlyHint": true}
        }))
        .unwrap();
        let hang: Tool = serde_json::from_value(json!({
            "name": "hang", "description": "Never answers",
            "inputSchema": {"type": "object"}
        }))
        .unwrap();
        let more: Vec<Tool> = [
            ("flaky", "Fails a few times, then works"),
            ("slow", "Answers after `seconds`"),
        ]
        .into_iter()
        .map(|(name, description)| {
            serde_json::from_value(json!({
                "name": name, "description": description,
                "inputSchema": {"type": "object", "properties": {"seconds": {"type": "number"}}}
            }))
            .unwrap()
        })
        .collect();
        Ok(ListToolsResult::with_all_items(
            [vec![tool, hang], more].concat(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match request.name.as_ref() {
            "hang" => {
                let _flag = crate::support::Flag(self.dropped.clone());
                self.started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
            "flaky" => {
                let left = self.failures.load(Ordering::SeqCst);
                if left > 0 {
                    self.failures.store(left - 1, Ordering::SeqCst);
                    return Ok(CallToolResult::error(vec![ContentBlock::text("not yet")]).into());
                }
                return Ok(CallToolResult::success(vec![ContentBlock::text("worked")]).into());
            }
            "slow" => {
                let seconds = request
                    .arguments
                    .as_ref()
                    .and_then(|a| a.get("seconds"))
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                self.started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
                return Ok(CallToolResult::success(vec![ContentBlock::text("slept")]).into());
            }
            _ => {}
        }
        let n = request
            .arguments
            .as_ref()
            .and_then(|a| a.get("n"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // The first calls wait for each other (up to 5 s) until `gate` are under way at once:
        // a client that allows that many reaches it however loaded the machine, one that
        // serializes its calls never does.
        let gate = self.gate.load(Ordering::SeqCst);
        for _ in 0..500 {
            if self.most.load(Ordering::SeqCst) >= gate {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("{}", n * 2))]).into())
    }
}

/// A [`Counter`] over Streamable HTTP, configured in `root` as `lab`.
async fn counter_server(root: &Path) -> (Counter, HttpServer) {
    let counter = Counter::default();
    let server = HttpServer::start(
        counter.clone(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    write_config(
        root,
        json!({"lab": {"type": "http", "url": server.url("/mcp")}}),
    );
    (counter, server)
}

/// The peak resident memory of a process while it runs (Linux's VmHWM, polled).
async fn peak_kib(pid: u32, done: &std::sync::atomic::AtomicBool) -> u64 {
    let mut peak = 0;
    while !done.load(Ordering::SeqCst) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

/// `for_each` over 1,000 items with `concurrency: 8`: at most 8 calls at once (and 8 reached),
/// every item called once and its result in order, and the client's memory about what 100 items
/// take (each item's context is made when it starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn for_each_respects_its_concurrency_and_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (counter, _server) = counter_server(&root).await;
    counter.gate.store(8, Ordering::SeqCst);
    let flow = root.join("many.yaml");
    std::fs::write(
        &flow,
        "name: many
inputs:
  count: integer
steps:
  - id: each
    for_each: ${{ range(inputs.count) | list }}
    concurrency: 8
    call: lab.work
    with: {n: \"${{ item }}\"}
  - id: total
    if: ${{ steps.each.items | length > 5000 }}
    call: lab.work
    with: {n: 0}
  - id: last
    call: lab.work
    with: {n: \"${{ steps.each.items | map(attribute='text') | map('int') | sum }}\"}
",
    )
    .unwrap();
    let store = root.join("runs.sqlite");
    let mut peaks = Vec::new();
    for count in [100u64, 1000] {
        counter.most.store(0, Ordering::SeqCst);
        counter.calls.store(0, Ordering::SeqCst);
        let input = format!("count={count}");
        let args = [
            "--json",
            "flow",
            "run",
            flow.to_str().unwrap(),
            "-i",
            &input,
            "--store",
            store.to_str().unwrap(),
        ];
        let child = crate::support::command(&root, &args).spawn().unwrap();
        let pid = child.id().unwrap();
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch = {
            let done = done.clone();
            tokio::spawn(async move { peak_kib(pid, &done).await })
        };
        let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .expect("mcp hung")
            .unwrap();
        done.store(true, Ordering::SeqCst);
        let peak = watch.await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        let items = report["steps"]["each"]["items"].as_array().unwrap();
        assert_eq!(items.len() as u64, count);
        // In order, whatever order they ended in.
        assert!(items.iter().enumerate().all(|(i, r)| {
            r["text"].as_str().and_then(|t| t.parse::<u64>().ok()) == Some(2 * i as u64)
        }));
        // The sum of 2i over 0..count, doubled by the last call.
        assert_eq!(
            report["steps"]["last"]["text"],
            (count * (count - 1) * 2).to_string()
        );
        assert_eq!(report["steps"]["total"]["skipped"], true);
        assert_eq!(counter.calls.load(Ordering::SeqCst) as u64, count + 1);
        assert_eq!(
            counter.most.load(Ordering::SeqCst),
            8,
            "at most 8 at once, and 8 reached"
        );
        peaks.push(peak);
    }
    eprintln!("peak resident memory, 100 and 1,000 items: {peaks:?} KiB");
    assert!(peaks[0] > 0);
    assert!(
        (peaks[1] as f64) < 1.5 * peaks[0] as f64,
        "1,000 items took {} KiB, 100 took {} KiB",
        peaks[1],
        peaks[0]
    );
}

/// `mcp flow serve DIR`: the workflows as tools (an input schema from their inputs), called
/// through `mcp call` itself, which follows the run as a task to its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_are_served_as_tools_and_run_as_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let flows = root.join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::create_dir(root.join("notes")).unwrap();
    std::fs::write(root.join("notes/a.txt"), "alpha").unwrap();
    std::fs::write(
        flows.join("copy.yaml"),
        "name: copy
description: Copies a note to another file.
inputs:
  from: {type: string, description: the note to copy}
  to: {type: string}
  upper: {type: boolean, default: false}
steps:
  - id: read
    call: fs.read_text_file
    with: {path: \"${{ inputs.from }}\"}
  - id: write
    call: fs.write_file
    with:
      path: ${{ inputs.to }}
      content: ${{ steps.read.text | upper if inputs.upper else steps.read.text }}
",
    )
    .unwrap();
    // The workflows' own servers, in a config of their own.
    let inner = root.join("inner");
    std::fs::create_dir(&inner).unwrap();
    fs_config(&inner, &root);
    let store = root.join("runs.sqlite");
    write_config(
        &root,
        json!({"flows": {"command": crate::support::MCP, "args": [
            "--config", inner.join(".mcp.json").display().to_string(),
            "flow", "serve", flows.display().to_string(), "--store", store.display().to_string()]}}),
    );
    let tools = mcp(&root, &["--json", "tools", "flows"], "").await;
    assert_eq!(tools.code, 0, "{}", tools.stderr);
    let listed: Value = serde_json::from_str(&tools.stdout).unwrap();
    let tool = listed.to_string();
    assert!(tool.contains("Copies a note to another file."), "{tool}");
    assert!(tool.contains("\"required\":[\"from\",\"to\"]"), "{tool}");

    let to = root.join("notes/b.txt");
    let from = root.join("notes/a.txt");
    let called = mcp(
        &root,
        &[
            "call",
            "flows",
            "copy",
            &format!("from={}", from.display()),
            &format!("to={}", to.display()),
            "upper=true",
        ],
        "",
    )
    .await;
    assert_eq!(called.code, 0, "{}\n{}", called.stdout, called.stderr);
    // It ran as a task, whose status names the run and its step.
    assert!(
        called.stderr.contains(": task ") && called.stderr.contains(": run run-"),
        "{}",
        called.stderr
    );
    assert_eq!(std::fs::read_to_string(&to).unwrap(), "ALPHA");
    // The run is in the store, as `mcp flow run` would have left it.
    let runs = runs(&root, &store).await;
    assert_eq!(runs["runs"][0]["workflow"], "copy", "{runs}");
    assert_eq!(runs["runs"][0]["status"], "succeeded", "{runs}");
    // A bad input is the caller's error, named.
    let bad = mcp(&root, &["call", "flows", "copy", "from=x"], "").await;
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr.contains("to:") || bad.stdout.contains("to:"),
        "{}\n{}",
        bad.stdout,
        bad.stderr
    );
}

/// The repository's examples (`examples/flows/`), run as a user would run them.
fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/flows")
        .join(name)
        .canonicalize()
        .unwrap()
}

/// `data-report.yaml`: mcp-sql's tables counted item by item, the model's report from the
/// counts (what it was sent is checked), saved by mcp-fs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_report_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let db = root.join("shop.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL);
             INSERT INTO orders (total) VALUES (10.5), (20.0), (30.25);
             CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT);
             INSERT INTO customers (name) VALUES ('Ada'), ('Grace');",
        )
        .unwrap();
    write_config(
        &root,
        json!({
            "db": {"command": workspace_binary("mcp-sql").display().to_string(),
                   "args": [format!("sqlite:{}", db.display())]},
            "files": {"command": workspace_binary("mcp-fs").display().to_string(),
                      "args": [root.display().to_string()]},
        }),
    );
    let llm = FakeLlm::start(vec![text(
        "{\"report\": \"Two tables: customers (2 rows), orders (3 rows).\"}",
    )])
    .await;
    let flow = example("data-report.yaml");
    let out = root.join("report.md");
    let checked = mcp(&root, &["flow", "check", flow.to_str().unwrap()], "").await;
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
    let run = mcp(
        &root,
        &[
            "flow",
            "run",
            flow.to_str().unwrap(),
            "-i",
            &format!("out={}", out.display()),
            "--base-url",
            &llm.base_url,
            "--model",
            "fake-model",
            "--api-key-env",
            "FAKE_KEY",
            "--store",
            root.join("runs.sqlite").to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let asked = llm.requests()[0].body["messages"].to_string();
    assert!(
        asked.contains("- customers: 2 rows") && asked.contains("- orders: 3 rows"),
        "{asked}"
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "Two tables: customers (2 rows), orders (3 rows)."
    );
}

/// `tune-evaluate-export.yaml` on mcp-finetune's tiny model: the approval (given with --yes;
/// without a terminal and without it, the run stops there), training, the evaluation, and the
/// GGUF export, each step's result reaching the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tune_evaluate_export_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let finetune = workspace_binary("mcp-finetune");
    let tiny = root.join("tiny");
    let made = std::process::Command::new(&finetune)
        .arg("create-tiny-model")
        .arg(&tiny)
        .output()
        .unwrap();
    assert!(made.status.success());
    let lines: Vec<String> = (0..12)
        .map(|i| {
            json!({"messages": [{"role": "user", "content": format!("Count from {i}.")},
                                {"role": "assistant", "content": format!("{} {} {}", i, i + 1, i + 2)}]})
            .to_string()
        })
        .collect();
    let train = root.join("train.jsonl");
    std::fs::write(&train, lines.join("\n")).unwrap();
    write_config(
        &root,
        json!({"finetune": {"command": finetune.display().to_string(),
            "args": ["serve", "--allow-dir", root.display().to_string(),
                     "--data-dir", root.join("data").display().to_string()]}}),
    );
    let flow = example("tune-evaluate-export.yaml");
    let store = root.join("runs.sqlite");
    let model = format!("model={}", tiny.display());
    let train_input = format!("train={}", train.display());
    let test_input = format!("test={}", train.display());
    let mut args = vec![
        "flow",
        "run",
        flow.to_str().unwrap(),
        "-i",
        &model,
        "-i",
        &train_input,
        "-i",
        &test_input,
        "-i",
        "epochs=2",
        "--store",
        store.to_str().unwrap(),
    ];
    // No terminal, no --yes: the run stops at the approval, before anything is trained.
    let stopped = mcp(&root, &args, "").await;
    assert_eq!(stopped.code, 4, "{}", stopped.stderr);
    assert!(
        stopped.stderr.contains("waiting for approval: Train"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped.stderr.contains("on 12 examples (0 errors"),
        "{}",
        stopped.stderr
    );
    assert!(
        !root.join("data/jobs").exists()
            || std::fs::read_dir(root.join("data/jobs"))
                .unwrap()
                .next()
                .is_none()
    );
    // Resumed with --yes: the check is not run again, the rest runs.
    args = vec![
        "--json",
        "flow",
        "resume",
        "--last",
        "--yes",
        "--store",
        store.to_str().unwrap(),
    ];
    let run = mcp(&root, &args, "").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let steps = &report["steps"];
    assert_eq!(
        steps["train"]["structured"]["job"]["status"], "succeeded",
        "{report}"
    );
    assert!(
        steps["evaluate"]["structured"]["tuned"]["contains"].is_number(),
        "{report}"
    );
    let export = &steps["export"]["structured"]["job"];
    assert_eq!(export["status"], "succeeded", "{report}");
    let gguf = export["artifacts"][0]["path"].as_str().unwrap();
    assert!(
        gguf.ends_with("-q8_0.gguf") && std::fs::read(gguf).unwrap().starts_with(b"GGUF"),
        "{report}"
    );
}

/// `docs-answer.yaml` over mcp-docs (BM25 here: the hermetic tier has no embedding model): the
/// passages found are read and numbered for the model, whose cited answer is the run's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_answer_example_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("handbook")).unwrap();
    std::fs::write(
        root.join("handbook/policies.md"),
        "# Vacation\n\nEmployees get 25 days of paid vacation a year. Unused days carry over until March.\n\n# Expenses\n\nFile expenses within 30 days, with receipts.\n",
    )
    .unwrap();
    write_config(
        &root,
        json!({"docs": {"command": workspace_binary("mcp-docs").display().to_string(),
            "args": ["serve", "--bm25-only", "--data-dir", root.join("index").display().to_string(),
                     format!("handbook={}", root.join("handbook").display())]}}),
    );
    let llm = FakeLlm::start(vec![text(
        "{\"answer\": \"25 days a year; unused days carry over until March.\", \"citations\": [1]}",
    )])
    .await;
    let flow = example("docs-answer.yaml");
    let run = mcp(
        &root,
        &[
            "--json",
            "flow",
            "run",
            flow.to_str().unwrap(),
            "-i",
            "question=How many vacation days do I get?",
            "--base-url",
            &llm.base_url,
            "--model",
            "fake-model",
            "--api-key-env",
            "FAKE_KEY",
            "--store",
            root.join("runs.sqlite").to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let asked = llm.requests()[0].body["messages"].to_string();
    assert!(asked.contains("[1] policies.md, lines 3-3:"), "{asked}");
    assert!(
        asked.contains("Employees get 25 days of paid vacation"),
        "{asked}"
    );
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        report["steps"]["answer"]["structured"]["citations"],
        json!([1]),
        "{report}"
    );
}

/// The official reference server (`server-everything`, TypeScript SDK) as steps: a tool with
/// structured content, a prompt, a resource, and its long-running operation, killed with SIGKILL
/// mid-way: that tool is annotated idempotent, so the resumed run runs it again without asking,
/// and nothing that had ended runs twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and the official SDK peers; .ci/run runs it"]
async fn the_official_everything_server_as_steps() {
    let node = tokio::task::spawn_blocking(|| {
        mcp_conformance::peers::ensure_node_peers().unwrap();
        mcp_conformance::peers::node22().unwrap()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    write_config(
        &root,
        json!({"everything": {"command": node,
            "args": [mcp_conformance::peers::node_bin("mcp-server-everything"), "stdio"]}}),
    );
    let flow = root.join("everything.yaml");
    std::fs::write(
        &flow,
        "name: everything
steps:
  - id: weather
    call: everything.get-structured-content
    with: {location: Chicago}
  - id: greeting
    prompt: everything.simple-prompt
  - id: doc
    read: demo://resource/static/document/features.md
    server: everything
  - id: long
    call: everything.trigger-long-running-operation
    with: {duration: 8, steps: 4}
  - id: echo
    call: everything.echo
    with: {message: \"${{ steps.weather.structured.conditions }} / ${{ steps.greeting.text }} / ${{ steps.doc.text | length > 0 }}\"}
",
    )
    .unwrap();
    let store = root.join("runs.sqlite");
    let checked = mcp(&root, &["flow", "check", flow.to_str().unwrap()], "").await;
    assert_eq!(checked.code, 0, "{}{}", checked.stdout, checked.stderr);
    let run_args = [
        "flow",
        "run",
        flow.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ];
    let mut child = crate::support::command(&root, &run_args).spawn().unwrap();
    let pid = child.id().unwrap();
    let mut in_flight = false;
    for _ in 0..600 {
        if let Ok(db) = rusqlite::Connection::open(&store) {
            in_flight = db
                .query_row(
                    "SELECT count(*) FROM steps WHERE step = 'long' AND status = 'running'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .unwrap_or(0)
                > 0;
        }
        if in_flight {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(in_flight, "the long step never started");
    for server in children(pid) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(server).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let resumed = mcp(
        &root,
        &[
            "--json",
            "flow",
            "resume",
            "--last",
            "--store",
            store.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let report: Value = serde_json::from_str(&resumed.stdout).unwrap();
    let echoed = report["steps"]["echo"]["text"].as_str().unwrap();
    assert!(
        echoed.starts_with("Echo: ")
            && echoed.contains("This is a simple prompt without arguments.")
            && echoed.ends_with("/ true"),
        "{report}"
    );
    assert!(
        report["steps"]["weather"]["structured"]["temperature"].is_number(),
        "{report}"
    );
    let trace = tries(&root, &store, report["run"].as_str().unwrap()).await;
    let counts: Vec<u64> = ["weather", "greeting", "doc", "long", "echo"]
        .iter()
        .map(|step| of(&trace, step, None).0)
        .collect();
    assert_eq!(counts, [1, 1, 1, 2, 1], "{trace:?}");
}

/// Ctrl-C during a run cancels the call under way on its server, exits 130, and leaves the run
/// cancelled in the store, to be resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_call_on_its_server_and_leaves_the_run_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (counter, _server) = counter_server(&root).await;
    let flow = root.join("hang.yaml");
    std::fs::write(
        &flow,
        "name: hang\nsteps:\n  - id: first\n    call: lab.work\n    with: {n: 1}\n  - id: stuck\n    call: lab.hang\n",
    )
    .unwrap();
    let store = root.join("runs.sqlite");
    let child = crate::support::command(
        &root,
        &[
            "flow",
            "run",
            flow.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    crate::support::interrupt_and_check(child, &counter.started, &counter.dropped).await;
    let runs = runs(&root, &store).await;
    assert_eq!(runs["runs"][0]["status"], "cancelled", "{runs}");
}

/// `retry`, `timeout` and `continue_on_error` as declared: a tool error tried again (on
/// `tool_error`) until it works, a hung call cut at its timeout and tried once more, then left
/// behind as an error while the run goes on; and a tool error not named in `retry.on` fails at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_timeout_and_continue_on_error_behave_as_declared() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (counter, _server) = counter_server(&root).await;
    counter.failures.store(2, Ordering::SeqCst);
    let flow = root.join("control.yaml");
    std::fs::write(
        &flow,
        "name: control
steps:
  - id: flaky
    call: lab.flaky
    retry: {attempts: 3, backoff: 10ms, on: [tool_error]}
  - id: stuck
    call: lab.hang
    timeout: 300ms
    retry: {attempts: 2, backoff: 10ms, on: timeout}
    continue_on_error: true
  - id: after
    call: lab.work
    with: {n: 21}
",
    )
    .unwrap();
    let store = root.join("runs.sqlite");
    let run = mcp(
        &root,
        &[
            "--json",
            "flow",
            "run",
            flow.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["steps"]["flaky"]["text"], "worked", "{report}");
    assert!(
        report["steps"]["stuck"]["error"]
            .as_str()
            .unwrap()
            .contains("timeout"),
        "{report}"
    );
    assert_eq!(report["steps"]["after"]["text"], "42", "{report}");
    let trace = tries(&root, &store, report["run"].as_str().unwrap()).await;
    assert_eq!(of(&trace, "flaky", None), (3, "succeeded".to_owned()));
    assert_eq!(of(&trace, "stuck", None), (2, "failed".to_owned()));

    // Not on tool_error: one try, and the run fails there.
    counter.failures.store(1, Ordering::SeqCst);
    std::fs::write(
        &flow,
        "name: control\nsteps:\n  - id: flaky\n    call: lab.flaky\n    retry: {attempts: 3, on: [transport]}\n  - id: after\n    call: lab.work\n    with: {n: 1}\n",
    )
    .unwrap();
    let failed = mcp(
        &root,
        &[
            "flow",
            "run",
            flow.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
        "",
    )
    .await;
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    assert!(
        failed.stderr.contains("answered with an error: not yet"),
        "{}",
        failed.stderr
    );
    assert_eq!(counter.failures.load(Ordering::SeqCst), 0, "tried once");
}

/// `mcp flow cancel` from another process: the run stops before its next step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cancelled_from_elsewhere_stops_before_its_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (counter, _server) = counter_server(&root).await;
    let flow = root.join("long.yaml");
    std::fs::write(
        &flow,
        "name: long\nsteps:\n  - id: slow\n    call: lab.slow\n    with: {seconds: 2}\n  - id: after\n    call: lab.work\n    with: {n: 1}\n",
    )
    .unwrap();
    let store = root.join("runs.sqlite");
    let child = crate::support::command(
        &root,
        &[
            "flow",
            "run",
            flow.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    assert!(
        crate::support::eventually(&counter.started).await,
        "the slow step never started"
    );
    let id = runs(&root, &store).await["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let cancel = mcp(
        &root,
        &["flow", "cancel", &id, "--store", store.to_str().unwrap()],
        "",
    )
    .await;
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    let output = child.wait_with_output().await.unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        counter.calls.load(Ordering::SeqCst),
        0,
        "the step after it did not run"
    );
    let after = runs(&root, &store).await;
    assert_eq!(after["runs"][0]["status"], "cancelled", "{after}");
}
