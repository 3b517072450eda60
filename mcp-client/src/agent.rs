//! The agent: a model, the tools of every connected server, and the loop between them.
//!
//! Each turn streams the model's answer; tool calls it makes are checked against the approval
//! mode, run in parallel (each with a timeout that cancels it on the server), cut to a size the
//! context can take, and given back, until the model answers without tools or the step limit is
//! reached. Servers' `tools/list_changed` is followed before every model request; a Streamable
//! HTTP or SSE server whose connection dropped is reconnected and the call tried once more. What
//! the person at the terminal sees and decides goes through [`Ui`].

// Sampling and roots are deprecated by the 2026-07-28 revision (SEP-2577), but handshake-era
// servers ask for them; the issue asks for both.
#![allow(deprecated)]

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use futures::future::BoxFuture;
use genai::chat::{ChatMessage, ContentPart, MessageContent, ToolCall, ToolResponse};
use rmcp::{
    ErrorData, ServiceError,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CreateMessageRequestParams,
        CreateMessageResult, ElicitRequestParams, ElicitResult, ErrorCode,
        LoggingMessageNotificationParam, NumberOrString, ProgressNotificationParam, ProgressToken,
        RequestParamsMeta as _, Root,
    },
};
use serde_json::{Map, Value, json};

use crate::{
    config::{Server, Transport},
    connect::{self, Client, ConnectError, ConnectOptions},
    handler::{Elicitation, Handler, Hooks},
    limits::head_and_tail,
    names::ToolNames,
    provider::{Provider, ProviderError},
};

/// Which tool calls run without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Approval {
    /// Ask before every call (answer `a` to allow a tool for the rest of the session).
    Ask,
    /// Run every call.
    Auto,
    /// Run tools that declare `readOnlyHint: true`; refuse the rest (ask nobody).
    ReadOnly,
}

/// What the user answered when asked to allow a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it.
    Yes,
    /// Refuse it (the model is told the user declined).
    No,
    /// Yes, and do not ask again for this tool.
    Always,
}

/// The agent's bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Model requests per task.
    pub max_steps: usize,
    /// Bytes of one tool result given to the model (head and tail kept).
    pub max_result_bytes: usize,
    /// How long one tool call may take before it is cancelled.
    pub tool_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 20,
            max_result_bytes: 20_000,
            tool_timeout: Duration::from_secs(60),
        }
    }
}

/// What the agent shows and asks. The terminal implements it; so can a test.
pub trait Ui: Send + Sync + 'static {
    /// A piece of the model's answer, as it streams.
    fn text(&self, delta: &str);
    /// The model called a tool.
    fn tool_call(&self, server: &str, tool: &str, arguments: &Value);
    /// A tool answered (or failed, or was refused); `text` is what the model will see.
    fn tool_result(&self, server: &str, tool: &str, is_error: bool, text: &str);
    /// Something the user should know (a reconnect, a refused call, changed tools).
    fn notice(&self, message: &str);
    /// May this call run?
    fn approve<'a>(
        &'a self,
        server: &'a str,
        tool: &'a str,
        arguments: &'a Value,
    ) -> BoxFuture<'a, Decision>;
    /// A server asks the user for input.
    fn elicit<'a>(
        &'a self,
        server: &'a str,
        request: ElicitRequestParams,
    ) -> BoxFuture<'a, ElicitResult>;
    /// A server asks to use the model; `preview` is what it would send.
    fn consent_to_sampling<'a>(&'a self, server: &'a str, preview: &'a str) -> BoxFuture<'a, bool>;
    /// Progress of a running call.
    fn progress(&self, server: &str, progress: &ProgressNotificationParam);
    /// A server's log message.
    fn log(&self, server: &str, message: &LoggingMessageNotificationParam);
}

/// Why a task stopped without an answer.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The model API failed.
    #[error(transparent)]
    Model(#[from] ProviderError),
    /// The step limit (`--max-steps`) was reached first.
    #[error(
        "stopped after {0} model requests without a final answer (--max-steps); the transcript so far is kept"
    )]
    MaxSteps(usize),
    /// The model wrote a tool call as text instead of making one.
    #[error(
        "the model wrote a call to {name:?} as text instead of making a tool call: the model (or the \
         chat template its server uses) does not support tool calling through this API.\n  hint: use \
         a model with tool support (in Ollama, one listed with the \"tools\" capability, such as \
         qwen2.5 or llama3.1), or start llama.cpp's server with --jinja"
    )]
    ToolCallAsText {
        /// The tool it named.
        name: String,
    },
}

/// A connected server and its tools.
struct Live {
    server: Server,
    client: Client,
    tools: Vec<rmcp::model::Tool>,
}

/// A call that may run: the server's index, the tool, its arguments.
type Planned = (usize, String, Map<String, Value>);
/// A call that will not run: the server, the tool, and what the model is told.
type Refused = (String, String, Outcome);

/// One tool call's outcome, as the model will see it.
struct Outcome {
    is_error: bool,
    text: String,
}

impl Outcome {
    fn error(text: impl Into<String>) -> Self {
        Self {
            is_error: true,
            text: text.into(),
        }
    }
}

/// The agent's answers to servers: the hooks of every connection.
struct AgentHooks {
    ui: Arc<dyn Ui>,
    provider: Provider,
    approval: Approval,
    changed: Mutex<HashSet<String>>,
    roots: Vec<Root>,
}

impl Hooks for AgentHooks {
    fn tools_changed(&self, server: &str) {
        if let Ok(mut changed) = self.changed.lock() {
            changed.insert(server.to_owned());
        }
    }

    fn progress(&self, server: &str, progress: &ProgressNotificationParam) {
        self.ui.progress(server, progress);
    }

    fn log(&self, server: &str, message: &LoggingMessageNotificationParam) {
        self.ui.log(server, message);
    }

    fn elicit(&self, server: &str, request: ElicitRequestParams) -> BoxFuture<'_, ElicitResult> {
        let server = server.to_owned();
        Box::pin(async move { self.ui.elicit(&server, request).await })
    }

    fn sample(
        &self,
        server: &str,
        request: CreateMessageRequestParams,
    ) -> BoxFuture<'_, Result<CreateMessageResult, ErrorData>> {
        let server = server.to_owned();
        Box::pin(async move {
            let messages = sampling_messages(&request);
            let preview: String = messages
                .iter()
                .map(|(role, text)| format!("{role}: {text}\n"))
                .collect();
            let allowed = self.approval == Approval::Auto
                || self.ui.consent_to_sampling(&server, &preview).await;
            if !allowed {
                return Err(ErrorData::new(
                    ErrorCode(-1),
                    "the user declined the sampling request",
                    None,
                ));
            }
            let chat: Vec<ChatMessage> = messages
                .into_iter()
                .map(|(role, text)| match role.as_str() {
                    "assistant" => ChatMessage::assistant(text),
                    _ => ChatMessage::user(text),
                })
                .collect();
            let answer = self
                .provider
                .complete(
                    request.system_prompt.as_deref(),
                    chat,
                    Some(request.max_tokens),
                )
                .await
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            serde_json::from_value(json!({
                "model": self.provider.model(),
                "role": "assistant",
                "content": {"type": "text", "text": answer},
                "stopReason": "endTurn",
            }))
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))
        })
    }

    fn roots(&self) -> Vec<Root> {
        self.roots.clone()
    }
}

/// A sampling request's messages as (role, text); content other than text is named, not sent.
fn sampling_messages(request: &CreateMessageRequestParams) -> Vec<(String, String)> {
    let Ok(Value::Array(messages)) = serde_json::to_value(&request.messages) else {
        return Vec::new();
    };
    messages
        .iter()
        .map(|message| {
            let role = message["role"].as_str().unwrap_or("user").to_owned();
            let blocks = match &message["content"] {
                Value::Array(blocks) => blocks.clone(),
                block => vec![block.clone()],
            };
            let text: Vec<String> = blocks
                .iter()
                .map(|block| match block["text"].as_str() {
                    Some(text) => text.to_owned(),
                    None => format!("[{} content]", block["type"].as_str().unwrap_or("other")),
                })
                .collect();
            (role, text.join("\n"))
        })
        .collect()
}

/// The working directory as a root.
pub fn working_directory_root() -> Vec<Root> {
    std::env::current_dir()
        .ok()
        .and_then(|dir| {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
            url::Url::from_directory_path(&dir).ok().map(|uri| {
                let root = Root::new(uri.to_string());
                match name {
                    Some(name) => root.with_name(name),
                    None => root,
                }
            })
        })
        .into_iter()
        .collect()
}

/// How the agent is set up.
pub struct AgentOptions {
    /// Which tool calls run without asking.
    pub approval: Approval,
    /// Step, time and size limits.
    pub limits: Limits,
    /// Replaces the default system prompt.
    pub system: Option<String>,
    /// How servers are reached.
    pub connect: ConnectOptions,
}

/// A tool as the model is offered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferedTool<'a> {
    /// The name the model calls it by (`server__tool`; see [`crate::names`]).
    pub name: &'a str,
    /// The server it belongs to.
    pub server: &'a str,
    /// What the tool says it does.
    pub description: &'a str,
}

/// The agent: connections, the model, the conversation.
pub struct Agent {
    provider: Provider,
    ui: Arc<dyn Ui>,
    hooks: Arc<AgentHooks>,
    servers: Vec<Live>,
    names: ToolNames,
    tools: Vec<genai::chat::Tool>,
    approval: Approval,
    limits: Limits,
    system: String,
    connect: ConnectOptions,
    history: Vec<ChatMessage>,
    /// How much of `history` is a consistent conversation (an interrupted turn is cut back to it).
    committed: usize,
    transcript: Vec<Value>,
    always: HashSet<String>,
    progress_tokens: AtomicI64,
    /// The tasks the conversation's calls started: (server, task id), oldest first.
    started: std::sync::Mutex<Vec<(String, String)>>,
}

impl Agent {
    /// Connects to every server at once; the ones that fail are returned with the agent, which
    /// works with the rest.
    pub async fn connect(
        servers: &[Server],
        provider: Provider,
        ui: Arc<dyn Ui>,
        options: AgentOptions,
    ) -> (Self, Vec<ConnectError>) {
        let hooks = Arc::new(AgentHooks {
            ui: ui.clone(),
            provider: provider.clone(),
            approval: options.approval,
            changed: Mutex::new(HashSet::new()),
            roots: working_directory_root(),
        });
        let mut connect = options.connect;
        connect.handler = Handler {
            server: String::new(),
            elicitation: Elicitation::Ask,
            hooks: Some(hooks.clone() as Arc<dyn Hooks>),
            // A long tool may answer with a task; the model follows it with TASK_TOOL.
            tasks: true,
        };
        let mut live = Vec::new();
        let mut failed = Vec::new();
        let results = connect::connect_all(servers, &connect).await;
        for (server, (_, result)) in servers.iter().zip(results) {
            match result {
                Ok(connected) => {
                    let tools = list_tools(server, &connected.client).await;
                    let tools = match tools {
                        Ok(tools) => tools,
                        Err(error) => {
                            ui.notice(&format!("{}: listing tools failed: {error}", server.name));
                            Vec::new()
                        }
                    };
                    live.push(Live {
                        server: server.clone(),
                        client: connected.client,
                        tools,
                    });
                }
                Err(error) => failed.push(error),
            }
        }
        let system = options.system.unwrap_or_else(default_system_prompt);
        let mut agent = Self {
            provider,
            ui,
            hooks,
            servers: live,
            names: ToolNames::new([]),
            tools: Vec::new(),
            approval: options.approval,
            limits: options.limits,
            system,
            connect,
            history: Vec::new(),
            committed: 0,
            transcript: Vec::new(),
            always: HashSet::new(),
            progress_tokens: AtomicI64::new(1),
            started: std::sync::Mutex::new(Vec::new()),
        };
        agent.rebuild_names();
        (agent, failed)
    }

    /// The connected servers' names and tool counts.
    pub fn servers(&self) -> Vec<(String, usize)> {
        self.servers
            .iter()
            .map(|live| (live.server.name.clone(), live.tools.len()))
            .collect()
    }

    /// Every tool as the model sees it.
    pub fn tools(&self) -> Vec<OfferedTool<'_>> {
        self.servers
            .iter()
            .flat_map(|live| {
                live.tools.iter().map(|tool| OfferedTool {
                    name: self
                        .names
                        .name(&live.server.name, &tool.name)
                        .unwrap_or_default(),
                    server: &live.server.name,
                    description: tool.description.as_deref().unwrap_or(""),
                })
            })
            .collect()
    }

    /// Everything said so far, as JSON (user, assistant, tool calls and results).
    pub fn transcript(&self) -> &[Value] {
        &self.transcript
    }

    /// Forgets the conversation (the connections stay).
    pub fn clear(&mut self) {
        self.history.clear();
        self.committed = 0;
        self.transcript.clear();
    }

    /// After an interrupted turn: the conversation goes back to its last consistent point.
    pub fn discard_incomplete(&mut self) {
        self.history.truncate(self.committed);
        self.transcript.push(json!({"role": "interrupted"}));
    }

    /// Disconnects from every server.
    pub async fn close(self) {
        for live in self.servers {
            let _ = live.client.cancel().await;
        }
    }

    fn rebuild_names(&mut self) {
        let pairs: Vec<(String, String)> = self
            .servers
            .iter()
            .flat_map(|live| {
                live.tools
                    .iter()
                    .map(|tool| (live.server.name.clone(), tool.name.to_string()))
            })
            .collect();
        self.names = ToolNames::new(pairs.iter().map(|(s, t)| (s.as_str(), t.as_str())));
        self.tools = self
            .servers
            .iter()
            .flat_map(|live| {
                live.tools.iter().filter_map(|tool| {
                    let name = self.names.name(&live.server.name, &tool.name)?;
                    let mut model_tool = genai::chat::Tool::new(name.to_owned())
                        .with_schema(Value::Object((*tool.input_schema).clone()));
                    if let Some(description) = &tool.description {
                        model_tool = model_tool.with_description(description.to_string());
                    }
                    Some(model_tool)
                })
            })
            .collect();
        let follows_tasks = self.servers.iter().any(|live| {
            live.client
                .peer_info()
                .is_some_and(|info| info.capabilities.supports_tasks())
        });
        if follows_tasks {
            self.tools.push(
                genai::chat::Tool::new(TASK_TOOL)
                    .with_description(
                        "How a task a server runs for one of your tool calls is doing, and its \
                         result once it has ended. `server` and `task` are in the call's answer \
                         (`task` defaults to the last one started on that server); \
                         `wait_seconds` waits (up to 300) for it to end; `cancel` stops it.",
                    )
                    .with_schema(json!({
                        "type": "object",
                        "properties": {
                            "server": { "type": "string", "description": "The server running it." },
                            "task": { "type": "string", "description": "The task id." },
                            "wait_seconds": { "type": "integer", "minimum": 0, "maximum": 300 },
                            "cancel": { "type": "boolean" }
                        },
                        "required": ["server"]
                    })),
            );
        }
    }

    /// [`TASK_TOOL`]: a task's status, or its result once it ended; waits or cancels when asked.
    async fn task_status(&self, call: &ToolCall) -> Refused {
        let arguments = match &call.fn_arguments {
            Value::String(text) => serde_json::from_str(text).unwrap_or(Value::Null),
            other => other.clone(),
        };
        self.ui.tool_call("mcp", TASK_TOOL, &arguments);
        let server = arguments["server"].as_str().unwrap_or_default().to_owned();
        let refused = |text: String| (server.clone(), TASK_TOOL.to_owned(), Outcome::error(text));
        let last = || {
            self.started.lock().ok().and_then(|started| {
                started
                    .iter()
                    .rev()
                    .find(|(on, _)| *on == server)
                    .map(|(_, id)| id.clone())
            })
        };
        let Some(id) = arguments["task"].as_str().map(str::to_owned).or_else(last) else {
            return refused(format!(
                "No task was started on {server:?} in this conversation; give its id as \"task\"."
            ));
        };
        let Some(live) = self.servers.iter().find(|live| live.server.name == server) else {
            return refused(format!("The server {server:?} is not connected."));
        };
        if arguments["cancel"] == true
            && let Err(error) = live
                .client
                .cancel_task(rmcp::model::CancelTaskParams::new(id.clone()))
                .await
        {
            return refused(format!("Cancelling task {id} failed: {error}"));
        }
        let wait = std::time::Duration::from_secs(
            arguments["wait_seconds"].as_u64().unwrap_or(0).min(300),
        )
        .min(self.limits.tool_timeout);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let task = match live
                .client
                .get_task(rmcp::model::GetTaskParams::new(id.clone()))
                .await
            {
                Ok(task) => task.task,
                Err(error) => return refused(format!("Task {id}: {error}")),
            };
            let outcome = ended(task.payload).map(|end| match end {
                Ended::Result(result) => render(&result, self.limits.max_result_bytes),
                Ended::Failed(why) => Outcome::error(format!("Task {id} failed: {why}")),
                Ended::Cancelled => Outcome::error(format!("Task {id} was cancelled.")),
            });
            if let Some(outcome) = outcome {
                return (server, TASK_TOOL.to_owned(), outcome);
            }
            if tokio::time::Instant::now() >= deadline {
                let status = serde_json::to_value(task.task.status).unwrap_or_default();
                let message = task.task.status_message.unwrap_or_default();
                return (
                    server,
                    TASK_TOOL.to_owned(),
                    Outcome {
                        is_error: false,
                        text: format!(
                            "Task {id} is {}{}. It goes on; check again later (wait_seconds waits).",
                            status.as_str().unwrap_or("running"),
                            if message.is_empty() {
                                String::new()
                            } else {
                                format!(": {message}")
                            }
                        ),
                    },
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Re-lists the tools of servers that said theirs changed.
    async fn follow_tool_changes(&mut self) {
        // A `tools/list_changed` sent before a tool's answer is recorded by the connection's
        // transport as it is read (`handler::Watched`), so it is here before the answer is.
        let changed: Vec<String> = match self.hooks.changed.lock() {
            Ok(mut changed) => changed.drain().collect(),
            Err(_) => Vec::new(),
        };
        if changed.is_empty() {
            return;
        }
        for live in self.servers.iter_mut() {
            if changed.contains(&live.server.name) {
                match list_tools(&live.server, &live.client).await {
                    Ok(tools) => {
                        self.ui.notice(&format!(
                            "{}: tools changed ({} now)",
                            live.server.name,
                            tools.len()
                        ));
                        live.tools = tools;
                    }
                    Err(error) => self.ui.notice(&format!(
                        "{}: tools changed but listing them failed: {error}",
                        live.server.name
                    )),
                }
            }
        }
        self.rebuild_names();
    }

    /// One task: the user's message, then model requests and tool calls until the model answers.
    pub async fn turn(&mut self, message: &str) -> Result<String, AgentError> {
        self.history.truncate(self.committed);
        self.history.push(ChatMessage::user(message));
        self.transcript
            .push(json!({"role": "user", "content": message}));
        let result = self.steps().await;
        match &result {
            Ok(_) => self.committed = self.history.len(),
            Err(error) => {
                self.history.truncate(self.committed);
                self.transcript
                    .push(json!({"role": "error", "content": error.to_string()}));
            }
        }
        result
    }

    async fn steps(&mut self) -> Result<String, AgentError> {
        for _ in 0..self.limits.max_steps {
            self.follow_tool_changes().await;
            let ui = self.ui.clone();
            let turn = self
                .provider
                .stream(Some(&self.system), &self.history, &self.tools, |text| {
                    ui.text(text)
                })
                .await?;
            if turn.tool_calls.is_empty() {
                if let Some(name) = tool_call_as_text(&turn.text, &self.names, &self.servers) {
                    return Err(AgentError::ToolCallAsText { name });
                }
                self.history.push(ChatMessage::assistant(turn.text.clone()));
                self.transcript
                    .push(json!({"role": "assistant", "content": turn.text}));
                return Ok(turn.text);
            }
            let mut parts = Vec::new();
            if !turn.text.is_empty() {
                parts.push(ContentPart::from(turn.text.clone()));
            }
            parts.extend(turn.tool_calls.iter().cloned().map(ContentPart::from));
            self.history
                .push(ChatMessage::assistant(MessageContent::from_parts(parts)));
            let outcomes = self.run_calls(&turn.tool_calls).await;
            let mut calls = Vec::new();
            for (call, (server, tool, outcome)) in turn.tool_calls.iter().zip(outcomes) {
                self.ui
                    .tool_result(&server, &tool, outcome.is_error, &outcome.text);
                calls.push(json!({
                    "name": call.fn_name, "server": server, "tool": tool,
                    "arguments": call.fn_arguments,
                    "result": {"isError": outcome.is_error, "text": outcome.text},
                }));
                self.history.push(ChatMessage::from(ToolResponse::new(
                    call.call_id.clone(),
                    outcome.text,
                )));
            }
            self.transcript
                .push(json!({"role": "assistant", "content": turn.text, "tool_calls": calls}));
        }
        Err(AgentError::MaxSteps(self.limits.max_steps))
    }

    /// Approves, then runs, the calls of one model turn (concurrently); reconnects servers whose
    /// connection dropped and tries their calls once more. Returns (server, tool, outcome) each.
    async fn run_calls(&mut self, calls: &[ToolCall]) -> Vec<(String, String, Outcome)> {
        // Resolve and approve, one at a time (approval may ask the user).
        let mut planned: Vec<Result<Planned, Refused>> = Vec::new();
        for call in calls {
            if call.fn_name == TASK_TOOL {
                // Ours, not a server's: answered here, its outcome carried through.
                planned.push(Err(self.task_status(call).await));
                continue;
            }
            planned.push(self.plan(call).await);
        }
        // Run the approved ones at once; each refused one carries its answer through.
        let this = &*self;
        let runs = planned.into_iter().map(|plan| async move {
            let (index, tool, arguments) = plan?;
            let result = this.call(index, &tool, &arguments).await;
            Ok((index, tool, arguments, result))
        });
        let results: Vec<Result<_, Refused>> = futures::future::join_all(runs).await;
        let mut outcomes = Vec::new();
        for result in results {
            let (index, tool, arguments, result) = match result {
                Ok(ran) => ran,
                Err(refused) => {
                    outcomes.push(refused);
                    continue;
                }
            };
            let outcome = match result {
                Ok(outcome) => outcome,
                Err(dropped) => {
                    self.reconnect_and_retry(index, &tool, &arguments, dropped)
                        .await
                }
            };
            outcomes.push((self.servers[index].server.name.clone(), tool, outcome));
        }
        outcomes
    }

    /// The server and tool a call names, its arguments, and whether it may run.
    async fn plan(&mut self, call: &ToolCall) -> Result<Planned, Refused> {
        let Some((server, tool)) = self
            .names
            .resolve(&call.fn_name)
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
        else {
            let known: Vec<&str> = self.tools.iter().map(|t| t.name.as_ref()).collect();
            return Err((
                String::new(),
                call.fn_name.clone(),
                Outcome::error(format!(
                    "There is no tool named {:?}. The tools are: {}.",
                    call.fn_name,
                    known.join(", ")
                )),
            ));
        };
        let refuse = |text: String| Err((server.clone(), tool.clone(), Outcome::error(text)));
        let arguments = match &call.fn_arguments {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            // Some servers send the arguments as a JSON string.
            Value::String(text) => match serde_json::from_str(text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return refuse(format!(
                        "The arguments must be a JSON object; got {text:?}."
                    ));
                }
            },
            other => return refuse(format!("The arguments must be a JSON object; got {other}.")),
        };
        let Some(index) = self.servers.iter().position(|l| l.server.name == server) else {
            return refuse(format!("The server {server:?} is not connected."));
        };
        let read_only = self.servers[index]
            .tools
            .iter()
            .find(|t| t.name == tool)
            .and_then(|t| t.annotations.as_ref())
            .and_then(|a| a.read_only_hint)
            == Some(true);
        let arguments_value = Value::Object(arguments.clone());
        self.ui.tool_call(&server, &tool, &arguments_value);
        let allowed = match self.approval {
            Approval::Auto => true,
            Approval::ReadOnly => read_only,
            Approval::Ask if self.always.contains(&call.fn_name) => true,
            Approval::Ask => match self.ui.approve(&server, &tool, &arguments_value).await {
                Decision::Yes => true,
                Decision::Always => {
                    self.always.insert(call.fn_name.clone());
                    true
                }
                Decision::No => false,
            },
        };
        if !allowed {
            let text = match self.approval {
                Approval::ReadOnly => format!(
                    "Not run: {tool} is not marked read-only, and only read-only tools run in this \
                     mode. Tell the user; they can allow it with --approve ask or --approve auto."
                ),
                _ => "Not run: the user declined this call.".to_owned(),
            };
            self.ui.notice(&format!("{server}: {tool} not run"));
            return refuse(text);
        }
        Ok((index, tool, arguments))
    }

    /// Runs one call with the timeout; `Err` when the connection dropped (the caller reconnects).
    async fn call(
        &self,
        index: usize,
        tool: &str,
        arguments: &Map<String, Value>,
    ) -> Result<Outcome, String> {
        let live = &self.servers[index];
        let mut request =
            CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments.clone());
        request.set_progress_token(ProgressToken(NumberOrString::Number(
            self.progress_tokens.fetch_add(1, Ordering::Relaxed),
        )));
        // Dropping the call (on the timeout, or when the turn is interrupted) sends
        // `notifications/cancelled`.
        match tokio::time::timeout(self.limits.tool_timeout, answer(&live.client, request)).await {
            Err(_) => Ok(Outcome::error(format!(
                "{tool} did not answer within {} s and was cancelled.",
                self.limits.tool_timeout.as_secs()
            ))),
            Ok(Ok(CallToolResponse::Complete(result))) => {
                Ok(render(&result, self.limits.max_result_bytes))
            }
            Ok(Ok(CallToolResponse::Task(created))) => Ok({
                crate::started::record(&live.server.name, &created.task.task_id, tool);
                if let Ok(mut started) = self.started.lock() {
                    started.push((live.server.name.clone(), created.task.task_id.clone()));
                }
                Outcome {
                    is_error: false,
                    text: format!(
                        "{tool} runs as a task on {server}: task {id}. It goes on in the background; \
                     call {TASK_TOOL} with {{\"server\": \"{server}\", \"task\": \"{id}\"}} to see \
                     how it is doing and get its result (\"wait_seconds\" to wait for it).",
                        server = live.server.name,
                        id = created.task.task_id,
                    ),
                }
            }),
            Ok(Ok(_)) => Ok(Outcome::error(format!(
                "{tool} answered in a way mcp cannot use."
            ))),
            // Not a dropped connection: reconnecting would meet the same refusal.
            Ok(Err(error)) if let Some(why) = crate::oauth::auth_failure(&error) => {
                Ok(Outcome::error(format!("The call failed: {why}")))
            }
            Ok(Err(error @ (ServiceError::TransportClosed | ServiceError::TransportSend(_)))) => {
                Err(error.to_string())
            }
            Ok(Err(error)) => Ok(Outcome::error(format!("The call failed: {error}"))),
        }
    }

    /// Reconnects a server whose connection dropped (a URL server; a stdio server that exited
    /// is started again too) and runs the call once more.
    async fn reconnect_and_retry(
        &mut self,
        index: usize,
        tool: &str,
        arguments: &Map<String, Value>,
        reason: String,
    ) -> Outcome {
        let server = self.servers[index].server.clone();
        let what = match &server.transport {
            Transport::Stdio { .. } => "restarted",
            Transport::Url { .. } => "reconnected",
        };
        match connect::connect(&server, &self.connect).await {
            Ok(connected) => {
                let old = std::mem::replace(&mut self.servers[index].client, connected.client);
                drop(old.cancel());
                self.ui.notice(&format!(
                    "{}: the connection dropped ({reason}); {what}",
                    server.name
                ));
                match self.call(index, tool, arguments).await {
                    Ok(outcome) => outcome,
                    Err(again) => Outcome::error(format!(
                        "The connection to {} dropped again: {again}",
                        server.name
                    )),
                }
            }
            Err(error) => Outcome::error(format!(
                "The connection to {} dropped ({reason}) and could not be made again: {error}",
                server.name
            )),
        }
    }
}

/// How a task ended, read from `tasks/get`'s payload.
#[derive(Debug)]
pub enum Ended {
    /// Its tool result (which may be a tool error).
    Result(CallToolResult),
    /// A protocol-level failure, or a result that does not read: what went wrong.
    Failed(String),
    /// Cancelled.
    Cancelled,
}

/// How the task ended, or `None` while it runs (or waits for input).
pub fn ended(payload: rmcp::model::TaskPayload) -> Option<Ended> {
    match payload {
        rmcp::model::TaskPayload::Completed { result } => Some(
            serde_json::from_value(Value::Object(result))
                .map(Ended::Result)
                .unwrap_or_else(|error| Ended::Failed(format!("an unreadable result: {error}"))),
        ),
        rmcp::model::TaskPayload::Failed { error } => Some(Ended::Failed(
            error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        )),
        rmcp::model::TaskPayload::Cancelled => Some(Ended::Cancelled),
        _ => None,
    }
}

/// The name of the agent's own tool for following tasks (no `__`, so no server tool has it).
pub const TASK_TOOL: &str = "task_status";

/// How many input-required rounds one call may take (rmcp's own cap).
const INPUT_ROUNDS: usize = rmcp::model::DEFAULT_MRTR_MAX_ROUNDS;

/// The first answer to a call that is not a question: a result or a task. A call that asks
/// (input-required rounds, SEP-2322) is answered through this client's handler, one question
/// at a time (a person answers in one terminal), and sent again with the answers and the
/// server's `requestState`, until the server answers; a server may then make it a task, which
/// rmcp's own loop refuses.
pub async fn answer(
    client: &Client,
    mut request: CallToolRequestParams,
) -> Result<CallToolResponse, ServiceError> {
    let mut state_only_rounds = 0u32;
    for _ in 0..INPUT_ROUNDS {
        let asked = match client.call_tool_once(request.clone()).await? {
            CallToolResponse::InputRequired(asked) => asked,
            other => return Ok(other),
        };
        let questions = asked.input_requests.unwrap_or_default();
        if questions.is_empty() {
            if asked.request_state.is_none() {
                return Err(ServiceError::UnexpectedResponse);
            }
            // Only a state: the server is not ready; ask again a little later each time.
            let wait = (50u64 << state_only_rounds.min(3)).min(250);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            state_only_rounds += 1;
        } else {
            state_only_rounds = 0;
        }
        let mut responses = rmcp::model::InputResponses::new();
        for (key, question) in questions {
            let response = fulfil(client, &key, question).await?;
            responses.insert(key, response);
        }
        request.input_responses = (!responses.is_empty()).then_some(responses);
        request.request_state = asked.request_state;
    }
    Err(ServiceError::InputRequiredRoundsExceeded {
        max_rounds: INPUT_ROUNDS,
    })
}

/// One question of an input-required round, answered by this client's handler as if the
/// server had sent it as a request.
async fn fulfil(
    client: &Client,
    key: &str,
    question: rmcp::model::InputRequest,
) -> Result<Value, ServiceError> {
    use rmcp::{
        Service as _,
        model::{ClientResult, GetExtensions as _, GetMeta as _, InputRequest, ServerRequest},
    };
    let mut request = match question {
        InputRequest::CreateMessage(request) => ServerRequest::CreateMessageRequest(request),
        InputRequest::Elicitation(request) => ServerRequest::ElicitRequest(request),
        InputRequest::ListRoots(request) => ServerRequest::ListRootsRequest(request),
        _ => {
            return Err(ServiceError::McpError(ErrorData::invalid_params(
                format!("{key}: a kind of question this client does not know"),
                None,
            )));
        }
    };
    let mut context = rmcp::service::RequestContext::new(
        NumberOrString::String(key.into()),
        client.peer().clone(),
    );
    std::mem::swap(&mut context.meta, request.get_meta_mut());
    std::mem::swap(&mut context.extensions, request.extensions_mut());
    let answer = match client
        .service()
        .handle_request(request, context)
        .await
        .map_err(ServiceError::McpError)?
    {
        ClientResult::CreateMessageResult(result) => serde_json::to_value(result),
        ClientResult::ElicitResult(result) => serde_json::to_value(result),
        ClientResult::ListRootsResult(result) => serde_json::to_value(result),
        _ => return Err(ServiceError::UnexpectedResponse),
    };
    answer.map_err(|e| {
        ServiceError::McpError(ErrorData::internal_error(
            format!("cannot encode the answer to {key}: {e}"),
            None,
        ))
    })
}

/// The server's tools the config lets `mcp` use (`tools.allow` / `tools.deny`): the others are
/// neither offered to the model nor callable.
async fn list_tools(
    server: &Server,
    client: &Client,
) -> Result<Vec<rmcp::model::Tool>, ServiceError> {
    match client.list_all_tools().await {
        Err(ServiceError::McpError(error)) if error.code == ErrorCode::METHOD_NOT_FOUND => {
            Ok(Vec::new())
        }
        Ok(mut tools) => {
            tools.retain(|tool| server.tools.permits(&tool.name));
            Ok(tools)
        }
        other => other,
    }
}

fn default_system_prompt() -> String {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    format!(
        "You are a capable assistant working in a terminal. You can call tools from MCP servers; \
         each tool is named server__tool. Use them when they help, and answer plainly when done. \
         The working directory is {cwd}."
    )
}

/// A tool result as text for the model: text blocks as they are, resources' text, other
/// content named; structured content when there is no text; cut to `max_bytes`.
fn render(result: &CallToolResult, max_bytes: usize) -> Outcome {
    let mut parts = Vec::new();
    for block in &result.content {
        let value = serde_json::to_value(block).unwrap_or_default();
        match value["type"].as_str() {
            Some("text") => parts.push(value["text"].as_str().unwrap_or("").to_owned()),
            Some("resource") => match value["resource"]["text"].as_str() {
                Some(text) => parts.push(text.to_owned()),
                None => parts.push(format!(
                    "[binary resource {}]",
                    value["resource"]["uri"].as_str().unwrap_or("")
                )),
            },
            Some(kind @ ("image" | "audio")) => parts.push(format!(
                "[{kind} {}, {} bytes of base64, not shown]",
                value["mimeType"].as_str().unwrap_or(""),
                value["data"].as_str().map(str::len).unwrap_or(0)
            )),
            Some("resource_link") => parts.push(format!(
                "[resource link {}]",
                value["uri"].as_str().unwrap_or("")
            )),
            _ => parts.push(value.to_string()),
        }
    }
    if parts.is_empty()
        && let Some(structured) = &result.structured_content
    {
        parts.push(structured.to_string());
    }
    Outcome {
        is_error: result.is_error == Some(true),
        text: head_and_tail(&parts.join("\n"), max_bytes),
    }
}

/// The tool a model named in a call it wrote as text (JSON, perhaps fenced or in `<tool_call>`
/// tags), if the text is one and names a tool we have.
fn tool_call_as_text(text: &str, names: &ToolNames, servers: &[Live]) -> Option<String> {
    let mut body = text.trim();
    for (open, close) in [
        ("<tool_call>", "</tool_call>"),
        ("```json", "```"),
        ("```", "```"),
    ] {
        if let Some(inner) = body.strip_prefix(open).and_then(|b| b.strip_suffix(close)) {
            body = inner.trim();
        }
    }
    let value: Value = serde_json::from_str(body).ok()?;
    let candidates = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    candidates.iter().find_map(|candidate| {
        let call = candidate.get("function").unwrap_or(candidate);
        let name = call.get("name")?.as_str()?;
        let has_arguments = ["arguments", "parameters", "args", "input"]
            .iter()
            .any(|key| call.get(*key).is_some());
        let known = names.resolve(name).is_some()
            || servers
                .iter()
                .any(|live| live.tools.iter().any(|tool| tool.name == name));
        (has_arguments && known).then(|| name.to_owned())
    })
}

/// The conversation so far, to save and resume: what the model has been told (up to the last
/// consistent point) and the transcript.
impl Agent {
    /// The conversation as JSON (`{"version": 1, "history": […], "transcript": […]}`).
    pub fn session(&self) -> Value {
        json!({
            "version": 1,
            "history": self.history[..self.committed],
            "transcript": self.transcript,
        })
    }

    /// Takes up a saved conversation ([`Agent::session`]); `Err` says what is wrong with it.
    pub fn resume(&mut self, session: &Value) -> Result<usize, String> {
        if session["version"] != 1 {
            return Err("not a session this mcp wrote (no version 1)".to_owned());
        }
        let history: Vec<ChatMessage> = serde_json::from_value(session["history"].clone())
            .map_err(|error| format!("its history does not read: {error}"))?;
        let transcript: Vec<Value> = serde_json::from_value(session["transcript"].clone())
            .map_err(|error| format!("its transcript does not read: {error}"))?;
        self.committed = history.len();
        self.history = history;
        self.transcript = transcript;
        Ok(self.committed)
    }
}

/// Where chat sessions are kept: `$XDG_STATE_HOME/mcp-toolkit/sessions` (or
/// `~/.local/state/…`).
pub fn sessions_dir() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::State).join("sessions")
}

/// Saves session `id` in `dir`, whole or not at all, readable by its owner only (a
/// conversation may hold what the tools read).
pub fn save_session(dir: &Path, id: &str, session: &Value) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let text = serde_json::to_string(session).map_err(std::io::Error::other)?;
    crate::write_whole(
        &dir.join(format!("{id}.json")),
        text.as_bytes(),
        crate::Readers::Owner,
    )
}

/// Session `id` from `dir`, or the one saved last; its id and content.
pub fn load_session(dir: &Path, id: Option<&str>) -> Result<(String, Value), String> {
    let path = match id {
        Some(id) => {
            if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
                return Err(format!("{id:?} is not a session id"));
            }
            dir.join(format!("{id}.json"))
        }
        None => std::fs::read_dir(dir)
            .map_err(|error| format!("no saved sessions in {}: {error}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "json"))
            .max_by_key(|entry| entry.metadata().and_then(|m| m.modified()).ok())
            .map(|entry| entry.path())
            .ok_or_else(|| format!("no saved sessions in {}", dir.display()))?,
    };
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let session =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    let id = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((id, session))
}

/// Writes a transcript as JSON, whole or not at all, owner-only (it holds what the tools read).
pub fn save_transcript(path: &Path, transcript: &[Value]) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(transcript).map_err(std::io::Error::other)?;
    crate::write_whole(path, text.as_bytes(), crate::Readers::Owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_written_as_text_are_recognised() {
        let names = ToolNames::new([("fs", "read_file")]);
        for text in [
            r#"{"name": "fs__read_file", "arguments": {"path": "a"}}"#,
            "```json\n{\"name\": \"fs__read_file\", \"parameters\": {}}\n```",
            "<tool_call>\n{\"name\": \"fs__read_file\", \"arguments\": {}}\n</tool_call>",
            r#"[{"function": {"name": "fs__read_file", "arguments": "{}"}}]"#,
        ] {
            assert_eq!(
                tool_call_as_text(text, &names, &[]).as_deref(),
                Some("fs__read_file"),
                "{text}"
            );
        }
        // Plain answers, JSON that names no tool, and a name without arguments are answers.
        for text in [
            "The file says hello.",
            r#"{"name": "Ada", "arguments": "none"}"#,
            r#"{"name": "fs__read_file"}"#,
        ] {
            assert_eq!(tool_call_as_text(text, &names, &[]), None, "{text}");
        }
    }
}
