//! The one thing tests may fake: a remote model API. A small HTTP server on 127.0.0.1 speaking
//! the real wire formats of OpenAI chat completions (`POST /v1/chat/completions`) and Anthropic
//! Messages (`POST /v1/messages`), streamed as server-sent events with text deltas and tool-call
//! argument deltas (or whole JSON when `stream` is false), answering from a script, and keeping
//! every request so a test can see what the client sent (tools, tool results).
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Text(String),
    /// Tool calls (name, arguments), made in parallel in one answer.
    Calls(Vec<(String, Value)>),
}

pub fn text(text: &str) -> Reply {
    Reply::Text(text.to_owned())
}

pub fn call(name: &str, arguments: Value) -> Reply {
    Reply::Calls(vec![(name.to_owned(), arguments)])
}

pub fn calls(list: &[(&str, Value)]) -> Reply {
    Reply::Calls(
        list.iter()
            .map(|(name, arguments)| ((*name).to_owned(), arguments.clone()))
            .collect(),
    )
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    requests: Vec<Recorded>,
}

type Shared = Arc<Mutex<Script>>;

pub struct FakeLlm {
    pub base_url: String,
    script: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeLlm {
    pub async fn start(replies: Vec<Reply>) -> Self {
        let script: Shared = Arc::new(Mutex::new(Script {
            replies: replies.into(),
            requests: Vec::new(),
        }));
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            base_url: format!("http://{address}/v1"),
            script,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.script.lock().unwrap().requests.clone()
    }

    pub fn remaining(&self) -> usize {
        self.script.lock().unwrap().replies.len()
    }
}

fn next(script: &Shared, path: &str, headers: &HeaderMap, body: &Value) -> Option<Reply> {
    let mut script = script.lock().unwrap();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    script.requests.push(Recorded {
        path: path.to_owned(),
        body: body.clone(),
        authorization,
    });
    script.replies.pop_front()
}

fn exhausted() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": {"message": "the fake model's script is exhausted", "type": "server_error"}})),
    )
        .into_response()
}

fn sse(events: Vec<String>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        events.concat(),
    )
        .into_response()
}

/// Splits a string in two, so every value arrives in more than one delta.
fn halves(text: &str) -> Vec<String> {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle += 1;
    }
    [&text[..middle], &text[middle..]]
        .into_iter()
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn openai(
    State(script): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(reply) = next(&script, "/v1/chat/completions", &headers, &body) else {
        return exhausted();
    };
    let model = body["model"].clone();
    if body["stream"] != true {
        let message = match &reply {
            Reply::Text(text) => json!({"role": "assistant", "content": text}),
            Reply::Calls(calls) => json!({"role": "assistant", "content": null, "tool_calls":
                calls.iter().enumerate().map(|(i, (name, arguments))| json!({
                    "id": format!("call_{i}"), "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()}
                })).collect::<Vec<_>>()}),
        };
        let finish = if matches!(reply, Reply::Text(_)) {
            "stop"
        } else {
            "tool_calls"
        };
        return Json(json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        }))
        .into_response();
    }
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                   "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let finish = match &reply {
        Reply::Text(text) => {
            for part in halves(text) {
                events.push(chunk(json!({"content": part}), Value::Null));
            }
            "stop"
        }
        Reply::Calls(calls) => {
            for (i, (name, _)) in calls.iter().enumerate() {
                events.push(chunk(
                    json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}),
                    Value::Null,
                ));
            }
            // Argument deltas interleaved across the calls, as parallel calls stream.
            let pieces: Vec<Vec<String>> =
                calls.iter().map(|(_, a)| halves(&a.to_string())).collect();
            for round in 0..2 {
                for (i, parts) in pieces.iter().enumerate() {
                    if let Some(part) = parts.get(round) {
                        events.push(chunk(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]}),
                            Value::Null,
                        ));
                    }
                }
            }
            "tool_calls"
        }
    };
    events.push(chunk(json!({}), json!(finish)));
    events.push("data: [DONE]\n\n".to_owned());
    sse(events)
}

async fn anthropic(
    State(script): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let Some(reply) = next(&script, "/v1/messages", &headers, &body) else {
        return exhausted();
    };
    let model = body["model"].clone();
    let (blocks, stop) = match &reply {
        Reply::Text(text) => (vec![json!({"type": "text", "text": text})], "end_turn"),
        Reply::Calls(calls) => (
            calls
                .iter()
                .enumerate()
                .map(|(i, (name, arguments))| {
                    json!({"type": "tool_use", "id": format!("toolu_{i}"), "name": name, "input": arguments})
                })
                .collect(),
            "tool_use",
        ),
    };
    if body["stream"] != true {
        return Json(json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": 10, "output_tokens": 5}
        }))
        .into_response();
    }
    let event = |kind: &str, data: Value| format!("event: {kind}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
               "role": "assistant", "model": model, "content": [], "stop_reason": null,
               "stop_sequence": null, "usage": {"input_tokens": 10, "output_tokens": 1}}}),
    )];
    for (index, block) in blocks.iter().enumerate() {
        let (start, deltas): (Value, Vec<Value>) = match block["type"].as_str() {
            Some("text") => (
                json!({"type": "text", "text": ""}),
                halves(block["text"].as_str().unwrap_or(""))
                    .into_iter()
                    .map(|part| json!({"type": "text_delta", "text": part}))
                    .collect(),
            ),
            _ => (
                json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                halves(&block["input"].to_string())
                    .into_iter()
                    .map(|part| json!({"type": "input_json_delta", "partial_json": part}))
                    .collect(),
            ),
        };
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        for delta in deltas {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": delta}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": 5}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    sse(events)
}
