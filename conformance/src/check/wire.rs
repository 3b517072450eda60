//! A raw JSON-RPC connection to the server under check: unlike an SDK client it can send
//! malformed bytes, and it records everything the server writes, including what it should not.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{mpsc, oneshot},
};

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The server's command could not be started.
    #[error("could not start {command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server closed its end.
    #[error("the server closed its end")]
    Closed,
    /// No answer within the time given.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// An HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(String),
    /// The server broke the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// What a server sent that was not an answer to one of our requests.
#[derive(Debug, Default, Clone)]
pub struct Unsolicited {
    /// Lines on stdout that are not JSON-RPC messages (stdio only).
    pub noise: Vec<String>,
    /// Error responses whose id is null (answers to input with no readable id).
    pub orphan_errors: Vec<Value>,
    /// Notifications and server-to-client requests.
    pub messages: Vec<Value>,
    /// The server closed its output (stdio): it exited or gave up.
    pub closed: bool,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An id as a map key: `1` and `"1"` are different ids.
fn id_key(id: &Value) -> String {
    id.to_string()
}

/// One connection, over stdio (a child process) or Streamable HTTP.
pub enum Wire {
    /// A child process on stdio.
    Stdio(StdioWire),
    /// A Streamable HTTP endpoint.
    Http(HttpWire),
}

impl Wire {
    /// Starts `command` and talks to it on its stdin and stdout.
    pub async fn spawn(command: &[String]) -> Result<Self, WireError> {
        StdioWire::spawn(command).await.map(Wire::Stdio)
    }

    /// Talks to `url`, sending `headers` with every request.
    pub fn http(url: &str, headers: &[(String, String)]) -> Self {
        Wire::Http(HttpWire::new(url, headers))
    }

    /// Sends `message` (a request with an `id`) and waits for the response with that id.
    pub async fn request(&mut self, message: Value, timeout: Duration) -> Result<Value, WireError> {
        match self {
            Wire::Stdio(wire) => wire.request(message, timeout).await,
            Wire::Http(wire) => wire
                .post(&message.to_string(), timeout)
                .await
                .and_then(|answer| {
                    answer.response.ok_or(WireError::Http(format!(
                        "HTTP {} with no JSON-RPC response",
                        answer.status
                    )))
                }),
        }
    }

    /// The `initialize` handshake (as `client`, asking for protocol `version`): checks the answer
    /// is an initialize result, sends `notifications/initialized`, and on HTTP sends the
    /// negotiated `MCP-Protocol-Version` from then on. Returns the result.
    pub async fn initialize(
        &mut self,
        version: &str,
        client: &str,
        timeout: Duration,
    ) -> Result<Value, WireError> {
        let answer = self
            .request(
                json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                    "protocolVersion": version,
                    "capabilities": {},
                    "clientInfo": { "name": client, "version": env!("CARGO_PKG_VERSION") },
                }}),
                timeout,
            )
            .await?;
        let result = match answer.get("result") {
            Some(result)
                if result["protocolVersion"].is_string()
                    && result["serverInfo"]["name"].is_string()
                    && result["capabilities"].is_object() =>
            {
                result.clone()
            }
            _ => {
                return Err(WireError::Protocol(format!(
                    "not a valid initialize result: {answer}"
                )));
            }
        };
        let negotiated = result["protocolVersion"].as_str().map(str::to_owned);
        self.set_http_header("MCP-Protocol-Version", negotiated);
        let _ = self
            .notify(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .await;
        Ok(result)
    }

    /// Sends a notification.
    pub async fn notify(&mut self, message: Value) -> Result<(), WireError> {
        match self {
            Wire::Stdio(wire) => wire.write_line(&message.to_string()).await,
            Wire::Http(wire) => wire
                .post(&message.to_string(), Duration::from_secs(10))
                .await
                .map(|_| ()),
        }
    }

    /// Sends `raw` bytes as one message and returns the error answer it provoked, if any
    /// arrived within `timeout` (stdio: an answer with the given id, or with a null id).
    pub async fn send_raw(
        &mut self,
        raw: &str,
        id: Option<&Value>,
        timeout: Duration,
    ) -> Result<Option<Value>, WireError> {
        match self {
            Wire::Stdio(wire) => wire.send_raw(raw, id, timeout).await,
            Wire::Http(wire) => {
                let answer = wire.post(raw, timeout).await?;
                Ok(answer.response)
            }
        }
    }

    /// Starts `call`, sends `cancel` while it runs, and says whether the call was answered
    /// anyway within `wait`.
    pub async fn call_then_cancel(
        &mut self,
        call: Value,
        cancel: Value,
        wait: Duration,
    ) -> Result<bool, WireError> {
        let id = call.get("id").cloned().unwrap_or(Value::Null);
        match self {
            Wire::Stdio(wire) => {
                let (tx, rx) = oneshot::channel();
                lock(&wire.pending).insert(id_key(&id), tx);
                wire.write_line(&call.to_string()).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                wire.write_line(&cancel.to_string()).await?;
                let answered = matches!(tokio::time::timeout(wait, rx).await, Ok(Ok(_)));
                lock(&wire.pending).remove(&id_key(&id));
                Ok(answered)
            }
            Wire::Http(wire) => {
                let request = wire.prepare(&call.to_string());
                let pending = tokio::spawn(async move {
                    match request.send().await {
                        Ok(response) => read_answer(response, Some(id)).await.0.response.is_some(),
                        Err(_) => false,
                    }
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                wire.post(&cancel.to_string(), wait).await?;
                Ok(matches!(
                    tokio::time::timeout(wait, pending).await,
                    Ok(Ok(true))
                ))
            }
        }
    }

    /// What the server sent that was not an answer to a request (notifications, requests of its own).
    pub fn unsolicited(&self) -> Unsolicited {
        match self {
            Wire::Stdio(wire) => lock(&wire.unsolicited).clone(),
            Wire::Http(wire) => wire.unsolicited.clone(),
        }
    }

    /// Whether the server process is still running (always true over HTTP).
    pub fn alive(&mut self) -> bool {
        match self {
            Wire::Stdio(wire) => matches!(wire.child.try_wait(), Ok(None)),
            Wire::Http(_) => true,
        }
    }

    /// Sets headers sent with every later HTTP request (protocol version, session).
    pub fn set_http_header(&mut self, name: &str, value: Option<String>) {
        if let Wire::Http(wire) = self {
            wire.extra.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if let Some(value) = value {
                wire.extra.push((name.to_owned(), value));
            }
        }
    }

    /// Ends the connection: closes a child's stdin (killing it if it has not exited 5 s later),
    /// or ends the HTTP session.
    pub async fn close(self) {
        match self {
            Wire::Stdio(mut wire) => {
                drop(wire.stdin.take());
                if tokio::time::timeout(Duration::from_secs(5), wire.child.wait())
                    .await
                    .is_err()
                {
                    let _ = wire.child.kill().await;
                }
            }
            Wire::Http(wire) => wire.end_session().await,
        }
    }
}

/// A connection to a server running as a child process.
pub struct StdioWire {
    child: Child,
    stdin: Option<ChildStdin>,
    pending: Pending,
    orphans: mpsc::UnboundedReceiver<Value>,
    unsolicited: Arc<Mutex<Unsolicited>>,
}

impl StdioWire {
    async fn spawn(command: &[String]) -> Result<Self, WireError> {
        let shown = command.join(" ");
        let Some((program, args)) = command.split_first() else {
            return Err(WireError::Spawn {
                command: shown,
                source: std::io::Error::other("no command given"),
            });
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| WireError::Spawn {
                command: shown.clone(),
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().ok_or(WireError::Closed)?;
        let pending: Pending = Arc::default();
        let unsolicited: Arc<Mutex<Unsolicited>> = Arc::default();
        let (orphan_tx, orphans) = mpsc::unbounded_channel();
        {
            let (pending, unsolicited) = (pending.clone(), unsolicited.clone());
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    route(&line, &pending, &unsolicited, &orphan_tx);
                }
                // The server is gone: fail every waiting request now rather than at its timeout.
                lock(&unsolicited).closed = true;
                lock(&pending).clear();
            });
        }
        Ok(Self {
            child,
            stdin,
            pending,
            orphans,
            unsolicited,
        })
    }

    async fn write_line(&mut self, line: &str) -> Result<(), WireError> {
        let stdin = self.stdin.as_mut().ok_or(WireError::Closed)?;
        let mut bytes = line.as_bytes().to_vec();
        bytes.push(b'\n');
        stdin
            .write_all(&bytes)
            .await
            .map_err(|_| WireError::Closed)?;
        stdin.flush().await.map_err(|_| WireError::Closed)
    }

    async fn request(&mut self, message: Value, timeout: Duration) -> Result<Value, WireError> {
        let id = message.get("id").cloned().unwrap_or(Value::Null);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id_key(&id), tx);
        // Checked after registering, so a server that exits in between cannot leave us waiting.
        if lock(&self.unsolicited).closed {
            lock(&self.pending).remove(&id_key(&id));
            return Err(WireError::Closed);
        }
        self.write_line(&message.to_string()).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(WireError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&id_key(&id));
                Err(WireError::Timeout(timeout))
            }
        }
    }

    async fn send_raw(
        &mut self,
        raw: &str,
        id: Option<&Value>,
        timeout: Duration,
    ) -> Result<Option<Value>, WireError> {
        while self.orphans.try_recv().is_ok() {}
        let waiter = id.map(|id| {
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(id_key(id), tx);
            rx
        });
        self.write_line(raw).await?;
        let answer = match waiter {
            Some(rx) => tokio::select! {
                answer = rx => answer.ok(),
                orphan = self.orphans.recv() => orphan,
                _ = tokio::time::sleep(timeout) => None,
            },
            None => tokio::time::timeout(timeout, self.orphans.recv())
                .await
                .ok()
                .flatten(),
        };
        if let Some(id) = id {
            lock(&self.pending).remove(&id_key(id));
        }
        Ok(answer)
    }
}

fn route(
    line: &str,
    pending: &Pending,
    unsolicited: &Mutex<Unsolicited>,
    orphans: &mpsc::UnboundedSender<Value>,
) {
    let message: Option<Value> = serde_json::from_str(line).ok();
    let Some(message) = message.filter(|m| m.get("jsonrpc") == Some(&json!("2.0"))) else {
        if !line.trim().is_empty() {
            lock(unsolicited)
                .noise
                .push(line.chars().take(200).collect());
        }
        return;
    };
    let is_response = message.get("result").is_some() || message.get("error").is_some();
    match (is_response, message.get("id")) {
        (true, Some(id)) if !id.is_null() => {
            if let Some(waiter) = lock(pending).remove(&id_key(id)) {
                let _ = waiter.send(message);
            }
        }
        (true, _) => {
            lock(unsolicited).orphan_errors.push(message.clone());
            let _ = orphans.send(message);
        }
        (false, _) => lock(unsolicited).messages.push(message),
    }
}

/// Reads the answer to one POST: a JSON body, or the SSE stream up to the response to
/// `request_id`. Returns the answer and the other messages the stream carried.
async fn read_answer(
    response: reqwest::Response,
    request_id: Option<Value>,
) -> (HttpAnswer, Vec<Value>) {
    let status = response.status().as_u16();
    let mut others = Vec::new();
    let is_stream = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let found = if is_stream {
        let mut events = sse_stream::SseStream::from_bytes_stream(
            response
                .bytes_stream()
                .map(|chunk| chunk.map_err(std::io::Error::other)),
        );
        let mut found = None;
        while let Some(Ok(event)) = events.next().await {
            let Some(message) = event
                .data
                .and_then(|data| serde_json::from_str::<Value>(&data).ok())
            else {
                continue;
            };
            let is_response = message.get("result").is_some() || message.get("error").is_some();
            if is_response && (request_id.is_none() || message.get("id") == request_id.as_ref()) {
                found = Some(message);
                break;
            }
            others.push(message);
        }
        found
    } else {
        let text = response.text().await.unwrap_or_default();
        serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v.get("jsonrpc").is_some())
    };
    (
        HttpAnswer {
            status,
            response: found,
        },
        others,
    )
}

/// What one HTTP POST got back.
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON-RPC answer, when the body held one.
    pub response: Option<Value>,
}

/// A connection to a Streamable HTTP endpoint.
pub struct HttpWire {
    client: reqwest::Client,
    url: String,
    base_headers: Vec<(String, String)>,
    extra: Vec<(String, String)>,
    unsolicited: Unsolicited,
}

impl HttpWire {
    fn new(url: &str, headers: &[(String, String)]) -> Self {
        Self {
            client: reqwest::Client::new(),
            url: url.to_owned(),
            base_headers: headers.to_vec(),
            extra: Vec::new(),
            unsolicited: Unsolicited::default(),
        }
    }

    fn prepare(&self, body: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body.to_owned());
        for (name, value) in self.base_headers.iter().chain(&self.extra) {
            request = request.header(name, value);
        }
        request
    }

    async fn post(&mut self, body: &str, timeout: Duration) -> Result<HttpAnswer, WireError> {
        let request = self.prepare(body);
        let request_id = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|m| m.get("id").cloned());
        let work = async {
            let response = request
                .send()
                .await
                .map_err(|e| WireError::Http(e.to_string()))?;
            if let Some(session) = response
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                let session = session.to_owned();
                self.extra
                    .retain(|(n, _)| !n.eq_ignore_ascii_case("mcp-session-id"));
                self.extra.push(("Mcp-Session-Id".to_owned(), session));
            }
            let (answer, others) = read_answer(response, request_id).await;
            self.unsolicited.messages.extend(others);
            Ok(answer)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| WireError::Timeout(timeout))?
    }

    async fn end_session(&self) {
        if self
            .extra
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("mcp-session-id"))
        {
            let mut request = self.client.delete(&self.url);
            for (name, value) in self.base_headers.iter().chain(&self.extra) {
                request = request.header(name, value);
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), request.send()).await;
        }
    }
}
