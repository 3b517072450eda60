//! The Tasks extension (SEP-2663) as mcp-core serves it, through the fixture's task tools: a
//! task's life, questions inside a task, cancellation that stops the work, the refusals, and a
//! store that outlives a SIGKILL.

use std::time::Duration;

use mcp_conformance::everything::Everything;
use mcp_core::testing::{Era, TestClient, connect_client, tool_call};
use rmcp::{
    ServiceError,
    model::{
        CallToolResponse, CancelTaskParams, ClientCapabilities, ClientConfig, GetTaskParams,
        GetTaskResult, TaskPayload, TaskStatus, UpdateTaskParams,
    },
};
use serde_json::json;

fn with_tasks() -> ClientConfig {
    let mut config = ClientConfig::default();
    config.capabilities = ClientCapabilities::builder()
        .enable_elicitation()
        .enable_tasks()
        .build();
    config
}

async fn start_task(client: &TestClient, tool: &str, arguments: serde_json::Value) -> String {
    match client
        .call_tool_once(tool_call(tool, arguments))
        .await
        .unwrap()
    {
        CallToolResponse::Task(created) => {
            assert_eq!(created.task.status, TaskStatus::Working);
            created.task.task_id
        }
        other => panic!("{tool}: expected a task, got {other:?}"),
    }
}

async fn get(client: &TestClient, id: &str) -> GetTaskResult {
    client.get_task(GetTaskParams::new(id)).await.unwrap()
}

/// Polls until the task leaves `working` (or 10 s pass).
async fn settled(client: &TestClient, id: &str) -> GetTaskResult {
    for _ in 0..200 {
        let task = get(client, id).await;
        if task.task.status() != TaskStatus::Working {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("task {id} still working after 10 s");
}

fn result_text(task: &GetTaskResult) -> String {
    match &task.task.payload {
        TaskPayload::Completed { result } => result["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        other => panic!("not completed: {other:?}"),
    }
}

fn protocol_error(error: ServiceError) -> rmcp::ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => panic!("not a protocol error: {other}"),
    }
}

#[tokio::test]
async fn a_task_runs_to_its_result_and_a_failure_is_told_apart_from_a_tool_error() {
    let client = connect_client(Everything::default(), with_tasks(), Era::Stateless)
        .await
        .unwrap();
    let id = start_task(
        &client,
        "slow_compute",
        json!({ "seconds": 0.2, "label": "x" }),
    )
    .await;
    let working = get(&client, &id).await;
    assert_eq!(working.task.status(), TaskStatus::Working);
    assert_eq!(
        working.task.task.status_message.as_deref(),
        Some("computing x")
    );
    let done = settled(&client, &id).await;
    assert_eq!(result_text(&done), "slow_compute(x) done after 0.2s");

    let failing = start_task(&client, "failing_job", json!({})).await;
    let ended = settled(&client, &failing).await;
    match &ended.task.payload {
        TaskPayload::Completed { result } => assert_eq!(result["isError"], true),
        other => panic!("a tool error completes the task: {other:?}"),
    }
    let broken = start_task(&client, "protocol_error_job", json!({})).await;
    let ended = settled(&client, &broken).await;
    match &ended.task.payload {
        TaskPayload::Failed { error } => assert_eq!(error["code"], -32603),
        other => panic!("a protocol error fails the task: {other:?}"),
    }
}

#[tokio::test]
async fn a_task_asks_and_waits_for_every_answer() {
    let client = connect_client(Everything::default(), with_tasks(), Era::Stateless)
        .await
        .unwrap();
    let id = start_task(&client, "multi_input", json!({})).await;
    let asking = settled(&client, &id).await;
    let TaskPayload::InputRequired { input_requests } = &asking.task.payload else {
        panic!("{asking:?}");
    };
    assert_eq!(
        input_requests.keys().collect::<Vec<_>>(),
        ["input-a", "input-b"]
    );
    let answer = |key: &str, value: &str| {
        let responses = serde_json::from_value(json!({
            key: { "action": "accept", "content": { "value": value } },
            "not-asked": { "action": "accept" }
        }))
        .unwrap();
        UpdateTaskParams::new(id.clone(), responses)
    };
    client.update_task(answer("input-a", "1")).await.unwrap();
    let half = get(&client, &id).await;
    let TaskPayload::InputRequired { input_requests } = &half.task.payload else {
        panic!("still waiting for B: {half:?}");
    };
    assert_eq!(input_requests.keys().collect::<Vec<_>>(), ["input-b"]);
    client.update_task(answer("input-b", "2")).await.unwrap();
    let done = settled(&client, &id).await;
    assert_eq!(result_text(&done), "multi_input: a = 1, b = 2");
}

#[tokio::test]
async fn cancel_stops_the_work_and_is_idempotent() {
    let client = connect_client(Everything::default(), with_tasks(), Era::Stateless)
        .await
        .unwrap();
    let id = start_task(&client, "slow_compute", json!({ "seconds": 30 })).await;
    client
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .unwrap();
    assert_eq!(get(&client, &id).await.task.status(), TaskStatus::Cancelled);
    // Cancelled again, and cancelled after it ended: the same empty acknowledgement.
    client
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .unwrap();
    let asking = start_task(&client, "confirm_delete", json!({ "filename": "a" })).await;
    settled(&client, &asking).await;
    client
        .cancel_task(CancelTaskParams::new(asking.clone()))
        .await
        .unwrap();
    let cancelled = get(&client, &asking).await;
    assert_eq!(cancelled.task.status(), TaskStatus::Cancelled);
    // A late answer to a withdrawn question changes nothing.
    let late = serde_json::from_value(
        json!({ "confirm": { "action": "accept", "content": { "confirm": true } } }),
    )
    .unwrap();
    client
        .update_task(UpdateTaskParams::new(asking.clone(), late))
        .await
        .unwrap();
    assert_eq!(
        get(&client, &asking).await.task.status(),
        TaskStatus::Cancelled
    );
}

#[tokio::test]
async fn unknown_ids_and_clients_without_the_extension_are_refused() {
    let client = connect_client(Everything::default(), with_tasks(), Era::Stateless)
        .await
        .unwrap();
    for id in ["no-such-task", "", "'; DROP TABLE tasks; --"] {
        let error = client.get_task(GetTaskParams::new(id)).await.unwrap_err();
        assert_eq!(protocol_error(error).code.0, -32602, "{id:?}");
        let error = client
            .cancel_task(CancelTaskParams::new(id))
            .await
            .unwrap_err();
        assert_eq!(protocol_error(error).code.0, -32602, "{id:?}");
    }
    for era in [Era::Handshake, Era::Stateless] {
        let plain = connect_client(Everything::default(), ClientConfig::default(), era)
            .await
            .unwrap();
        let error = plain.get_task(GetTaskParams::new("x")).await.unwrap_err();
        assert_eq!(protocol_error(error).code.0, -32021, "{era:?}");
        let error = plain
            .call_tool(tool_call("failing_job", json!({})))
            .await
            .unwrap_err();
        let error = protocol_error(error);
        assert_eq!(error.code.0, -32021, "{era:?}");
        assert!(
            error.message.contains("io.modelcontextprotocol/tasks"),
            "{error:?}"
        );
        // A tool that may run either way answers in the call itself.
        let inline = plain
            .call_tool(tool_call("slow_compute", json!({ "seconds": 0 })))
            .await
            .unwrap();
        assert_eq!(
            mcp_core::testing::text(&inline),
            "slow_compute(compute) done after 0s"
        );
    }
}

/// The task store outlives the server: killed with SIGKILL mid-task and started again on the
/// same file, it still answers `tasks/get` for the tasks it had, a finished one as it ended and
/// the one whose work the kill cut off as failed (the fixture cannot resume work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_outlive_a_sigkill() {
    use rmcp::transport::StreamableHttpClientTransport;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tasks.sqlite");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = || {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-everything"))
            .args([
                "--transport",
                "http",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--tasks-db")
            .arg(&db)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        async move {
            for _ in 0..200 {
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return child;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("mcp-everything exited: {status}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("mcp-everything did not listen");
        }
    };
    let connect = || async {
        let transport =
            StreamableHttpClientTransport::from_uri(format!("http://127.0.0.1:{port}/mcp"));
        rmcp::serve_client_with_lifecycle(
            with_tasks(),
            transport,
            rmcp::service::ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
    };
    let task_of = |response: CallToolResponse| match response {
        CallToolResponse::Task(created) => created.task.task_id,
        other => panic!("expected a task: {other:?}"),
    };

    let mut server = start().await;
    let client = connect().await;
    let quick = task_of(
        client
            .call_tool_once(tool_call("slow_compute", json!({ "seconds": 0 })))
            .await
            .unwrap(),
    );
    let slow = task_of(
        client
            .call_tool_once(tool_call("slow_compute", json!({ "seconds": 60 })))
            .await
            .unwrap(),
    );
    for _ in 0..100 {
        let task = client
            .get_task(GetTaskParams::new(quick.clone()))
            .await
            .unwrap();
        if task.task.status() == TaskStatus::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(client);
    let pid = server.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    server.wait().await.unwrap();

    let _server = start().await;
    let client = connect().await;
    let quick = client.get_task(GetTaskParams::new(quick)).await.unwrap();
    assert_eq!(quick.task.status(), TaskStatus::Completed, "{quick:?}");
    let slow = client.get_task(GetTaskParams::new(slow)).await.unwrap();
    match &slow.task.payload {
        TaskPayload::Failed { error } => {
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .contains("server stopped"),
                "{error:?}"
            )
        }
        other => panic!("the cut-off task ends failed: {other:?}"),
    }
}

/// Hears `notifications/tasks`.
#[derive(Clone, Default)]
struct Statuses(std::sync::Arc<std::sync::Mutex<Vec<(String, TaskStatus)>>>);

impl rmcp::ClientHandler for Statuses {
    fn get_info(&self) -> ClientConfig {
        with_tasks()
    }

    async fn on_task_status(
        &self,
        params: rmcp::model::TaskStatusNotificationParams,
        _: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        let task = &params.task.task;
        self.0
            .lock()
            .unwrap()
            .push((task.task_id.clone(), task.status));
    }
}

/// A handshake-era session that made a task hears its changes (`notifications/tasks`): asking,
/// and how it ended.
#[tokio::test]
async fn the_session_that_made_a_task_hears_its_status() {
    let heard = Statuses::default();
    let client = connect_client(Everything::default(), heard.clone(), Era::Handshake)
        .await
        .unwrap();
    let CallToolResponse::Task(created) = client
        .call_tool_once(tool_call("confirm_delete", json!({})))
        .await
        .unwrap()
    else {
        panic!("a task");
    };
    let id = created.task.task_id;
    let wait_for = |status: TaskStatus| {
        let heard = heard.clone();
        let id = id.clone();
        async move {
            for _ in 0..200 {
                if heard.0.lock().unwrap().contains(&(id.clone(), status)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("never heard {status:?}: {:?}", heard.0.lock().unwrap());
        }
    };
    wait_for(TaskStatus::InputRequired).await;
    let answer = serde_json::from_value(
        json!({ "confirm": { "action": "accept", "content": { "confirm": true } } }),
    )
    .unwrap();
    client
        .update_task(UpdateTaskParams::new(id.clone(), answer))
        .await
        .unwrap();
    wait_for(TaskStatus::Completed).await;
}
