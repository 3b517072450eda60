//! What the protocol tests share: the server as a child process with rmcp as its client, tool
//! calls, and fixtures (a tiny model, a small dataset).
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use mcp_core::testing::ProgressRecorder;
use rmcp::{
    RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

pub const MCP_FINETUNE: &str = env!("CARGO_BIN_EXE_mcp-finetune");

pub type Client = RunningService<RoleClient, ProgressRecorder>;

pub struct Server {
    pub client: Client,
    pub recorder: ProgressRecorder,
    pub pid: u32,
}

pub async fn start(data: &Path) -> Server {
    start_with(data, &[]).await
}

/// The server, its client declaring the Tasks extension (create_job answers with a task).
pub async fn start_following_tasks(data: &Path) -> Server {
    start_as(data, &[], &[], ProgressRecorder::with_tasks()).await
}

/// The server with extra `serve` flags.
pub async fn start_with_flags(data: &Path, flags: &[&str]) -> Server {
    start_as(data, &[], flags, ProgressRecorder::default()).await
}

/// The server with extra environment (SLURM_CONF).
pub async fn start_with(data: &Path, env: &[(&str, &Path)]) -> Server {
    start_as(data, env, &[], ProgressRecorder::default()).await
}

async fn start_as(
    data: &Path,
    env: &[(&str, &Path)],
    flags: &[&str],
    recorder: ProgressRecorder,
) -> Server {
    let mut command = tokio::process::Command::new(MCP_FINETUNE);
    command
        .args(["serve", "--threads", "1", "--data-dir"])
        .arg(data)
        // The fixtures are beside the data directory.
        .arg("--allow-dir")
        .arg(data.parent().unwrap())
        .args(flags)
        .envs(env.iter().map(|(k, v)| (*k, *v)));
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = transport.id().unwrap();
    let client = recorder.clone().serve(transport).await.unwrap();
    Server {
        client,
        recorder,
        pid,
    }
}

pub async fn call(client: &Client, name: &str, arguments: Value) -> CallToolResult {
    let mut request = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(map) = arguments {
        request = request.with_arguments(map);
    }
    client.call_tool(request).await.unwrap()
}

pub fn data(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.structured_content.clone().unwrap()
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A tiny model and a 12-example chat dataset in `dir`.
pub fn fixtures(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny");
    let status = std::process::Command::new(MCP_FINETUNE)
        .arg("create-tiny-model")
        .arg(&model)
        .status()
        .unwrap();
    assert!(status.success());
    let train = dir.join("train.jsonl");
    let lines: Vec<String> = (0..12)
        .map(|i| {
            json!({"messages": [
                {"role": "user", "content": format!("Count from {i}.")},
                {"role": "assistant", "content": format!("{} {} {}", i, i + 1, i + 2)},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&train, lines.join("\n") + "\n").unwrap();
    (model, train)
}

/// Polls get_job until the job has done `step` steps.
pub async fn until_step(client: &Client, job: &str, step: u64) {
    for _ in 0..600 {
        let view = data(&call(client, "get_job", json!({"job": job})).await);
        if view["step"].as_u64().unwrap_or(0) >= step {
            return;
        }
        assert!(
            view["status"] == "running" || view["status"] == "queued",
            "{view}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} never reached step {step}");
}

/// Every metrics event's step, through all pages of list_events.
pub async fn all_metric_steps(client: &Client, job: &str) -> Vec<u64> {
    let mut steps = Vec::new();
    let mut after = 0;
    loop {
        let page = data(
            &call(
                client,
                "list_events",
                json!({"job": job, "after": after, "limit": 1000}),
            )
            .await,
        );
        let events = page["events"].as_array().unwrap();
        let Some(last) = events.last() else {
            return steps;
        };
        after = last["seq"].as_u64().unwrap();
        steps.extend(metric_steps(&page));
    }
}

/// A job's event messages, oldest first.
pub async fn event_messages(client: &Client, job: &str) -> Vec<String> {
    let events = data(&call(client, "list_events", json!({"job": job, "limit": 1000})).await);
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

pub fn metric_steps(client_events: &Value) -> Vec<u64> {
    client_events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "metrics")
        .map(|e| e["data"]["step"].as_u64().unwrap())
        .collect()
}

pub fn kill9(pid: u32) {
    assert!(signal_and_wait(pid, "KILL"), "{pid} outlived SIGKILL");
}

/// Sends `signal` (`KILL`, `TERM`) to `pid` and waits up to two seconds for it to be gone.
pub fn signal_and_wait(pid: u32, signal: &str) -> bool {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Until it is gone (a zombie of ours is reaped by tokio's child handling when dropped).
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Resumes a job cancelled at step `stopped_at`, waits for its end, and checks that it went on
/// from that checkpoint: it succeeded, and every later step up to `total` came once. Returns the
/// resumed job.
pub async fn resume_to_end(client: &Client, job: &str, stopped_at: u64, total: u64) -> Value {
    let resumed = data(
        &call(
            client,
            "resume_job",
            json!({"job": job, "wait_seconds": 600}),
        )
        .await,
    );
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    let steps = all_metric_steps(client, job).await;
    let after: Vec<u64> = steps.into_iter().filter(|s| *s > stopped_at).collect();
    assert_eq!(after, (stopped_at + 1..=total).collect::<Vec<_>>());
    resumed
}

/// A long LoRA job on `backend`, cancelled after step 5 (it checkpoints and stops), then
/// resumed to its end: the backend's reference of the first run and of the resumed one, which
/// must differ (a new run of the backend).
pub async fn cancel_midway_and_resume(
    client: &Client,
    model: &Path,
    train: &Path,
    backend: &str,
) -> (String, String) {
    let long =
        json!({"n_epochs": 300, "batch_size": 4, "learning_rate": 0.01, "checkpoint_every": 1000});
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train,
                   "hyperparameters": long, "backend": backend}),
        )
        .await,
    );
    let id = created["job"]["id"].as_str().unwrap().to_owned();
    until_step(client, &id, 5).await;
    let cancelled = data(
        &call(
            client,
            "cancel_job",
            json!({"job": id, "wait_seconds": 120}),
        )
        .await,
    );
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let stopped_at = cancelled["step"].as_u64().unwrap();
    let resumed = resume_to_end(client, &id, stopped_at, 900).await;
    let (first, second) = (
        cancelled["backend_ref"].as_str().unwrap().to_owned(),
        resumed["backend_ref"].as_str().unwrap().to_owned(),
    );
    assert_ne!(first, second, "a new {backend} run for the resumed job");
    (first, second)
}

/// The `list_backends` entry of `name`, which must be available.
pub async fn available_backend(client: &Client, name: &str) -> Value {
    let backends = data(&call(client, "list_backends", json!({})).await);
    let entry = backends["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .unwrap_or_else(|| panic!("no backend {name} in {backends}"))
        .clone();
    assert_eq!(entry["available"], true, "{backends}");
    entry
}

/// A 30-step LoRA job on `backend`, waited for, with a GGUF file in `quantize`: the job, which
/// succeeded, with its three artifacts, its backend reference `backend:…`, and every step once.
pub async fn lora_job_on(
    client: &Client,
    model: &Path,
    train: &Path,
    backend: &str,
    quantize: &str,
) -> Value {
    let hp = json!({"n_epochs": 10, "batch_size": 4, "learning_rate": 0.01, "lora_rank": 8, "checkpoint_every": 10});
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train, "hyperparameters": hp,
                   "backend": backend, "quantize": quantize, "wait_seconds": 300}),
        )
        .await,
    );
    let job = created["job"].clone();
    assert_eq!(job["status"], "succeeded", "{created}");
    assert!(
        job["backend_ref"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{backend}:")),
        "{job}"
    );
    let kinds: Vec<&str> = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lora_adapter", "model", "gguf"]);
    assert!(
        std::fs::read(job["artifacts"][2]["path"].as_str().unwrap())
            .unwrap()
            .starts_with(b"GGUF")
    );
    let steps = all_metric_steps(client, job["id"].as_str().unwrap()).await;
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());
    job
}
