//! Running a workflow, durably: each step's start and input are written to the run store
//! before it runs, its result or error before the next one starts. A resumed run takes the
//! results of what ended from the store and runs only the rest; a step that was in flight
//! when the run died runs again only when it is idempotent (marked so, or its tool's
//! annotations say it is read-only or idempotent), else the run stops and says so.
//!
//! What a step gives later steps (`steps.ID`):
//! - `call`: `{text, structured, is_error, content}` (`structured`: the tool's structured
//!   content, else its text read as JSON when it is);
//! - `llm`: `{text, structured}` (`structured` with a `schema`);
//! - `read`: `{text, contents}`; `prompt`: `{text, messages}`; `approve`: `{approved}`;
//! - under `for_each`: `{items: [each item's]}`; a step whose `if` was false: `{skipped}`;
//!   one that failed under `continue_on_error`: `{error}`.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, GetPromptRequestParams,
    ReadResourceRequestParams, ResourceContents,
};
use serde_json::{Map, Value, json};

use crate::{
    config::Server,
    connect::{Client, ConnectOptions, connect},
    provider::Provider,
};

use super::{
    expr::Engine,
    file::{Action, Failure, Kind, Step, Workflow},
    store::{StepRecord, Store, StoreError},
};

/// Someone to ask `approve:` questions.
pub trait Approver: Send + Sync {
    /// Their answer; `None` when nobody can be asked (no terminal).
    fn ask(&self, question: &str) -> Option<bool>;
}

/// What a run reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A step (or item) started a try.
    Started {
        /// The step.
        step: String,
        /// The item under `for_each`.
        item: Option<u64>,
        /// The try (from 1).
        attempt: u32,
    },
    /// A step (or item) ended.
    Ended {
        /// The step.
        step: String,
        /// The item under `for_each`.
        item: Option<u64>,
        /// `succeeded`, `failed`, `skipped`, or `done` (done in an earlier run).
        status: &'static str,
        /// How long it took.
        seconds: f64,
        /// Why it failed.
        error: Option<String>,
    },
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// How servers are reached.
    pub connect: ConnectOptions,
    /// The model `llm:` steps ask.
    pub model: Option<Provider>,
    /// Longest one try of a step may take when it sets no `timeout`.
    pub step_timeout: Duration,
    /// On resume, run steps that were in flight again even when they are not idempotent.
    pub retry_in_flight: bool,
    /// Who answers `approve:`.
    pub approver: Arc<dyn Approver>,
    /// Hears the run's progress.
    pub on_event: Arc<dyn Fn(&Event) + Send + Sync>,
}

/// How a run ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Its id (`mcp flow show ID`, `mcp flow resume ID`).
    pub run: String,
    /// `succeeded`, `failed`, `stopped` or `cancelled`.
    pub status: String,
    /// Why it did not succeed.
    pub error: Option<String>,
    /// Every step's result so far.
    pub steps: Value,
}

/// A run that could not start or could not be recorded.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad inputs, or a run that cannot be resumed.
    #[error("{0}")]
    Usage(String),
    /// The run store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A step's failure.
#[derive(Debug, Clone)]
struct StepFailure {
    kind: Option<Failure>,
    message: String,
    /// The run must stop (not fail): waiting for a person, or a step in flight.
    stop: bool,
    /// The run was cancelled (`mcp flow cancel`).
    cancelled: bool,
}

impl StepFailure {
    fn new(kind: Option<Failure>, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            stop: false,
            cancelled: false,
        }
    }

    fn stop(message: impl Into<String>) -> Self {
        Self {
            stop: true,
            ..Self::new(None, message)
        }
    }
}

/// Items a `for_each` may have.
pub const MAX_ITEMS: usize = 100_000;

/// The inputs of a run from the command line (`key=value`; a value that reads as JSON is taken
/// as JSON unless the input is a string), checked as [`inputs_from_json`] checks them.
pub fn inputs(workflow: &Workflow, given: &[(String, String)]) -> Result<Value, RunError> {
    let mut values = Map::new();
    for (key, text) in given {
        let kind = workflow
            .inputs
            .iter()
            .find(|i| &i.name == key)
            .map(|i| i.kind);
        let value = match kind {
            Some(Kind::String) | None => Value::String(text.clone()),
            _ => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone())),
        };
        values.insert(key.clone(), value);
    }
    inputs_from_json(workflow, values).map_err(|why| RunError::Usage(format!("--input {why}")))
}

/// The inputs of a run: the given ones, each declared and of its type, and the defaults; an
/// error names the input.
pub fn inputs_from_json(workflow: &Workflow, given: Map<String, Value>) -> Result<Value, String> {
    let mut out = Map::new();
    for (key, value) in given {
        let Some(spec) = workflow.inputs.iter().find(|i| i.name == key) else {
            let known: Vec<&str> = workflow.inputs.iter().map(|i| i.name.as_str()).collect();
            return Err(format!(
                "{key}: {} has no such input (it takes: {})",
                workflow.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        if !spec.kind.admits(&value) {
            return Err(format!("{key} = {value}: not a {}", spec.kind.as_str()));
        }
        out.insert(key, value);
    }
    for spec in &workflow.inputs {
        if !out.contains_key(&spec.name) {
            match &spec.default {
                Some(default) => {
                    out.insert(spec.name.clone(), default.clone());
                }
                None => {
                    return Err(format!(
                        "{}: {} needs it ({}{})",
                        spec.name,
                        workflow.name,
                        spec.kind.as_str(),
                        spec.description
                            .as_deref()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// A run under way.
struct Runner<'a> {
    engine: Engine,
    store: &'a Mutex<Store>,
    run: String,
    servers: &'a [Server],
    options: &'a RunOptions,
    clients: tokio::sync::Mutex<HashMap<String, Arc<Client>>>,
    /// Tools' annotations, by server and tool: whether a call may run twice.
    idempotent_tools: Mutex<HashMap<(String, String), bool>>,
    /// What an earlier run of this id recorded, by step and item.
    earlier: HashMap<(String, Option<u64>), StepRecord>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records a new run of `workflow` (read from `file`, whose text is `source`) with `inputs`;
/// its id, for [`start`].
pub fn create(
    store: &Mutex<Store>,
    workflow: &Workflow,
    file: &Path,
    source: &str,
    inputs: &Value,
) -> Result<String, RunError> {
    Ok(lock(store).start_run(&workflow.name, file, source, inputs)?)
}

/// Runs the run [`create`] recorded.
pub async fn start(
    run: &str,
    workflow: &Workflow,
    inputs: Value,
    servers: &[Server],
    store: &Mutex<Store>,
    options: &RunOptions,
) -> Result<Report, RunError> {
    go(
        workflow,
        run.to_owned(),
        inputs,
        HashMap::new(),
        servers,
        store,
        options,
    )
    .await
}

/// A recorded run and its workflow as it was when the run started.
pub fn recorded(store: &Mutex<Store>, id: &str) -> Result<(super::store::Run, Workflow), RunError> {
    let run = lock(store)
        .run(id)?
        .ok_or_else(|| RunError::Usage(format!("no run {id} (mcp flow list shows them)")))?;
    let workflow = super::file::parse(&run.source).map_err(|problems| {
        RunError::Usage(format!(
            "run {id}'s workflow no longer reads: {}",
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    Ok((run, workflow))
}

/// Resumes run `id` from its store: the workflow as it was when the run started, its inputs,
/// and what its steps did.
pub async fn resume(
    id: &str,
    servers: &[Server],
    store: &Mutex<Store>,
    options: &RunOptions,
) -> Result<Report, RunError> {
    let (run, workflow) = recorded(store, id)?;
    if run.status == "succeeded" {
        return Err(RunError::Usage(format!(
            "run {id} has succeeded: nothing to resume"
        )));
    }
    let records = lock(store).steps(id)?;
    lock(store).set_status(id, "running", None)?;
    let earlier = records
        .into_iter()
        .map(|r| ((r.step.clone(), r.item), r))
        .collect();
    go(
        &workflow,
        id.to_owned(),
        run.inputs,
        earlier,
        servers,
        store,
        options,
    )
    .await
}

async fn go(
    workflow: &Workflow,
    run: String,
    inputs: Value,
    earlier: HashMap<(String, Option<u64>), StepRecord>,
    servers: &[Server],
    store: &Mutex<Store>,
    options: &RunOptions,
) -> Result<Report, RunError> {
    let runner = Runner {
        engine: Engine::new(),
        store,
        run: run.clone(),
        servers,
        options,
        clients: tokio::sync::Mutex::new(HashMap::new()),
        idempotent_tools: Mutex::new(HashMap::new()),
        earlier,
    };
    let mut steps = Map::new();
    let mut outcome: Result<(), StepFailure> = Ok(());
    for (position, step) in workflow.steps.iter().enumerate() {
        if lock(store)
            .run(&run)?
            .is_some_and(|r| r.status == "cancelling")
        {
            outcome = Err(StepFailure {
                cancelled: true,
                ..StepFailure::new(None, "cancelled (mcp flow cancel)")
            });
            break;
        }
        let context = json!({"inputs": inputs, "steps": steps});
        match runner.step(step, position, &context).await {
            Ok(value) => {
                steps.insert(step.id.clone(), value);
            }
            Err(failure) if step.continue_on_error && !failure.stop => {
                steps.insert(step.id.clone(), json!({"error": failure.message}));
            }
            Err(failure) => {
                outcome = Err(failure);
                break;
            }
        }
    }
    for (_, client) in runner.clients.into_inner() {
        if let Ok(client) = Arc::try_unwrap(client) {
            let _ = client.cancel().await;
        }
    }
    let (status, error) = match outcome {
        Ok(()) => ("succeeded", None),
        Err(failure) if failure.cancelled => ("cancelled", Some(failure.message)),
        Err(failure) if failure.stop => ("stopped", Some(failure.message)),
        Err(failure) => ("failed", Some(failure.message)),
    };
    lock(store).set_status(&run, status, error.as_deref())?;
    Ok(Report {
        run,
        status: status.to_owned(),
        error,
        steps: Value::Object(steps),
    })
}

impl Runner<'_> {
    fn record<T>(&self, result: Result<T, StoreError>) -> Result<T, StepFailure> {
        result.map_err(|e| {
            StepFailure::stop(format!("{e}: the run stops, as it could not be recorded"))
        })
    }

    fn emit(&self, event: Event) {
        (self.options.on_event)(&event);
    }

    /// One step: skipped, done in an earlier run, once, or once per item.
    async fn step(
        &self,
        step: &Step,
        position: usize,
        context: &Value,
    ) -> Result<Value, StepFailure> {
        let problem =
            |p: super::file::Problem| StepFailure::new(None, format!("step {}: {p}", step.id));
        if let Some(done) = self.earlier.get(&(step.id.clone(), None))
            && matches!(done.status.as_str(), "succeeded" | "skipped")
            && let Some(result) = &done.result
        {
            self.emit(Event::Ended {
                step: step.id.clone(),
                item: None,
                status: "done",
                seconds: 0.0,
                error: None,
            });
            return Ok(result.clone());
        }
        if let Some(when) = &step.when
            && !self.engine.truth(when, context).map_err(problem)?
        {
            let value = json!({"skipped": true});
            let store = lock(self.store);
            self.record(store.start_step(&self.run, &step.id, None, position, &Value::Null))?;
            self.record(store.end_step(&self.run, &step.id, None, "skipped", Some(&value), None))?;
            drop(store);
            self.emit(Event::Ended {
                step: step.id.clone(),
                item: None,
                status: "skipped",
                seconds: 0.0,
                error: None,
            });
            return Ok(value);
        }
        let Some(each) = &step.for_each else {
            return self.attempts(step, None, position, context).await;
        };
        let items = match self.engine.eval(each, context).map_err(problem)? {
            Value::Array(items) if items.len() <= MAX_ITEMS => items,
            Value::Array(items) => {
                return Err(StepFailure::new(
                    None,
                    format!(
                        "step {}: for_each gave {} items; at most {MAX_ITEMS}",
                        step.id,
                        items.len()
                    ),
                ));
            }
            other => {
                return Err(StepFailure::new(
                    None,
                    format!("step {}: for_each must give a list, not {other}", step.id),
                ));
            }
        };
        let started = Instant::now();
        self.record(lock(self.store).start_step(
            &self.run,
            &step.id,
            None,
            position,
            &json!({"items": items.len()}),
        ))?;
        // `buffered` runs at most `concurrency` items at once and yields them in order; each
        // item's context is made when it starts, so only the running ones hold one.
        let results: Vec<Result<Value, StepFailure>> = stream::iter(items.into_iter().enumerate())
            .map(|(index, item)| {
                let mut context = context.clone();
                context["item"] = item;
                context["index"] = Value::from(index);
                async move {
                    self.attempts(step, Some(index as u64), position, &context)
                        .await
                }
            })
            .buffered(step.concurrency.max(1))
            .collect()
            .await;
        let mut values = Vec::with_capacity(results.len());
        let mut first_failure = None;
        for result in results {
            match result {
                Ok(value) => values.push(value),
                Err(failure) => {
                    values.push(json!({"error": failure.message}));
                    if first_failure.is_none() || failure.stop {
                        first_failure = Some(failure);
                    }
                }
            }
        }
        let value = json!({"items": values});
        let (status, error) = match &first_failure {
            Some(failure) if failure.stop || !step.continue_on_error => {
                ("failed", Some(failure.message.clone()))
            }
            _ => ("succeeded", None),
        };
        self.record(lock(self.store).end_step(
            &self.run,
            &step.id,
            None,
            status,
            Some(&value),
            error.as_deref(),
        ))?;
        self.emit(Event::Ended {
            step: step.id.clone(),
            item: None,
            status: if status == "failed" {
                "failed"
            } else {
                "succeeded"
            },
            seconds: started.elapsed().as_secs_f64(),
            error: error.clone(),
        });
        match first_failure {
            Some(failure) if failure.stop || !step.continue_on_error => Err(failure),
            _ => Ok(value),
        }
    }

    /// A step (or item) with its retries, recorded; an earlier run's result when it ended.
    async fn attempts(
        &self,
        step: &Step,
        item: Option<u64>,
        position: usize,
        context: &Value,
    ) -> Result<Value, StepFailure> {
        let name = match item {
            Some(i) => format!("step {} (item {i})", step.id),
            None => format!("step {}", step.id),
        };
        if let Some(done) = self.earlier.get(&(step.id.clone(), item)) {
            if done.status == "succeeded"
                && let Some(result) = &done.result
            {
                self.emit(Event::Ended {
                    step: step.id.clone(),
                    item,
                    status: "done",
                    seconds: 0.0,
                    error: None,
                });
                return Ok(result.clone());
            }
            if done.status == "running"
                && !self.options.retry_in_flight
                && !self.idempotent(step).await
            {
                return Err(StepFailure::stop(format!(
                    "{name} was in flight when the run stopped, and it is not marked idempotent: it may have taken effect. \
                     Check, then resume with --retry-in-flight to run it again (or mark the step `idempotent: true`)"
                )));
            }
        }
        let input = self
            .input(step, context)
            .map_err(|p| StepFailure::new(None, format!("{name}: {p}")))?;
        let mut wait = step.retry.backoff;
        let mut attempt = 1;
        loop {
            self.record(lock(self.store).start_step(&self.run, &step.id, item, position, &input))?;
            self.emit(Event::Started {
                step: step.id.clone(),
                item,
                attempt,
            });
            let started = Instant::now();
            let limit = step.timeout.unwrap_or(self.options.step_timeout);
            let result = match tokio::time::timeout(limit, self.perform(step, &input)).await {
                Ok(result) => result,
                Err(_) => Err(StepFailure::new(
                    Some(Failure::Timeout),
                    format!(
                        "did not end within {} s (timeout); it was cancelled",
                        limit.as_secs_f64()
                    ),
                )),
            };
            let seconds = started.elapsed().as_secs_f64();
            match result {
                Ok(value) => {
                    self.record(lock(self.store).end_step(
                        &self.run,
                        &step.id,
                        item,
                        "succeeded",
                        Some(&value),
                        None,
                    ))?;
                    self.emit(Event::Ended {
                        step: step.id.clone(),
                        item,
                        status: "succeeded",
                        seconds,
                        error: None,
                    });
                    return Ok(value);
                }
                Err(failure) => {
                    let message = format!("{name}: {}", failure.message);
                    self.record(lock(self.store).end_step(
                        &self.run,
                        &step.id,
                        item,
                        "failed",
                        None,
                        Some(&message),
                    ))?;
                    self.emit(Event::Ended {
                        step: step.id.clone(),
                        item,
                        status: "failed",
                        seconds,
                        error: Some(message.clone()),
                    });
                    let again = attempt < step.retry.attempts
                        && !failure.stop
                        && failure.kind.is_some_and(|k| step.retry.on.contains(&k));
                    if !again {
                        return Err(StepFailure { message, ..failure });
                    }
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// Whether running the step twice does no harm.
    async fn idempotent(&self, step: &Step) -> bool {
        if let Some(marked) = step.idempotent {
            return marked;
        }
        match &step.action {
            Action::Call { server, tool, .. } => {
                if let Some(known) =
                    lock(&self.idempotent_tools).get(&(server.clone(), tool.clone()))
                {
                    return *known;
                }
                let Ok(client) = self.client(server).await else {
                    return false;
                };
                let Ok(tools) = client.list_all_tools().await else {
                    return false;
                };
                let mut known = lock(&self.idempotent_tools);
                for t in tools {
                    let safe = t.annotations.as_ref().is_some_and(|a| {
                        a.read_only_hint == Some(true) || a.idempotent_hint == Some(true)
                    });
                    known.insert((server.clone(), t.name.to_string()), safe);
                }
                known
                    .get(&(server.clone(), tool.clone()))
                    .copied()
                    .unwrap_or(false)
            }
            // Reading, asking for a prompt or the model, and asking a person change nothing.
            _ => true,
        }
    }

    /// What the step is given, filled in: a call's arguments, a prompt's text, a URI.
    fn input(&self, step: &Step, context: &Value) -> Result<Value, super::file::Problem> {
        Ok(match &step.action {
            Action::Call { with, .. } | Action::Prompt { with, .. } => {
                self.engine.fill(with, context)?
            }
            Action::Llm { prompt, system, .. } => json!({
                "prompt": self.engine.eval(prompt, context)?,
                "system": system.as_ref().map(|s| self.engine.eval(s, context)).transpose()?,
            }),
            Action::Read { uri, .. } => json!({"uri": self.engine.eval(uri, context)?}),
            Action::Approve { question } => {
                json!({"question": self.engine.eval(question, context)?})
            }
        })
    }

    /// A connection to `server`, made once per run.
    async fn client(&self, server: &str) -> Result<Arc<Client>, StepFailure> {
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(server) {
            return Ok(client.clone());
        }
        let Some(config) = self.servers.iter().find(|s| s.name == server) else {
            return Err(StepFailure::new(
                None,
                format!("no server {server} in the config files"),
            ));
        };
        let connected = connect(config, &self.options.connect)
            .await
            .map_err(|e| StepFailure::new(Some(Failure::Transport), e.to_string()))?;
        let client = Arc::new(connected.client);
        clients.insert(server.to_owned(), client.clone());
        Ok(client)
    }

    async fn perform(&self, step: &Step, input: &Value) -> Result<Value, StepFailure> {
        match &step.action {
            Action::Call { server, tool, .. } => {
                let config = self.servers.iter().find(|s| &s.name == server);
                if config.is_some_and(|c| !c.tools.permits(tool)) {
                    return Err(StepFailure::new(
                        None,
                        format!(
                            "{server}: the tool {tool} is left out by the tools.allow / tools.deny of its entry"
                        ),
                    ));
                }
                let client = self.client(server).await?;
                let arguments = input.as_object().cloned().unwrap_or_default();
                let request = CallToolRequestParams::new(tool.clone()).with_arguments(arguments);
                let transport = |e: rmcp::ServiceError| {
                    StepFailure::new(Some(Failure::Transport), format!("{server}.{tool}: {e}"))
                };
                let result = match crate::agent::answer(&client, request)
                    .await
                    .map_err(transport)?
                {
                    CallToolResponse::Complete(result) => result,
                    CallToolResponse::Task(created) => {
                        follow_task(&client, server, &created.task.task_id).await?
                    }
                    _ => {
                        return Err(StepFailure::new(
                            Some(Failure::Transport),
                            format!("{server}.{tool}: an answer mcp cannot use"),
                        ));
                    }
                };
                let value = call_value(&result);
                if result.is_error == Some(true) {
                    return Err(StepFailure::new(
                        Some(Failure::ToolError),
                        format!(
                            "{server}.{tool} answered with an error: {}",
                            value["text"].as_str().unwrap_or("")
                        ),
                    ));
                }
                Ok(value)
            }
            Action::Prompt { server, name, .. } => {
                let client = self.client(server).await?;
                let arguments: Map<String, Value> = input
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                        (k.clone(), Value::String(text))
                    })
                    .collect();
                let mut request = GetPromptRequestParams::new(name.clone());
                request.arguments = Some(arguments);
                let prompt = client.get_prompt(request).await.map_err(|e| {
                    StepFailure::new(
                        Some(Failure::Transport),
                        format!("{server}: prompt {name}: {e}"),
                    )
                })?;
                let messages = serde_json::to_value(&prompt.messages).unwrap_or(Value::Null);
                let text: Vec<String> = messages
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|m| m["content"]["text"].as_str().map(str::to_owned))
                    .collect();
                Ok(json!({"text": text.join("\n"), "messages": messages}))
            }
            Action::Read { server, .. } => {
                let uri = input["uri"].as_str().unwrap_or_default().to_owned();
                let names: Vec<String> = match server {
                    Some(server) => vec![server.clone()],
                    None => self.servers.iter().map(|s| s.name.clone()).collect(),
                };
                let mut why = Vec::new();
                for name in names {
                    let client = match self.client(&name).await {
                        Ok(client) => client,
                        Err(failure) => {
                            why.push(failure.message);
                            continue;
                        }
                    };
                    match client
                        .read_resource(ReadResourceRequestParams::new(uri.clone()))
                        .await
                    {
                        Ok(read) => {
                            let text: Vec<&str> = read
                                .contents
                                .iter()
                                .filter_map(|c| match c {
                                    ResourceContents::TextResourceContents { text, .. } => {
                                        Some(text.as_str())
                                    }
                                    _ => None,
                                })
                                .collect();
                            return Ok(json!({"text": text.join("\n"), "contents": read.contents}));
                        }
                        Err(e) => why.push(format!("{name}: {e}")),
                    }
                }
                Err(StepFailure::new(
                    Some(Failure::Transport),
                    format!("read {uri}: {}", why.join("; ")),
                ))
            }
            Action::Llm { schema, .. } => {
                let Some(model) = &self.options.model else {
                    return Err(StepFailure::new(
                        None,
                        "an llm step needs a model: --model (or MCP_MODEL), with --api and --base-url as for mcp run",
                    ));
                };
                let prompt = input["prompt"].as_str().unwrap_or_default().to_owned();
                let system = input["system"].as_str();
                let validator = schema
                    .as_ref()
                    .and_then(|s| jsonschema::validator_for(s).ok());
                // A schema's mismatch is told to the model, which answers again (three tries).
                let mut asked = prompt.clone();
                for _ in 0..if validator.is_some() { 3 } else { 1 } {
                    let message = genai::chat::ChatMessage::user(asked.clone());
                    let text = model
                        .complete(system, vec![message], None)
                        .await
                        .map_err(|e| StepFailure::new(Some(Failure::Transport), e.to_string()))?;
                    let Some(validator) = &validator else {
                        return Ok(json!({"text": text, "structured": null}));
                    };
                    let why = match answer_json(&text) {
                        None => "it is not JSON".to_owned(),
                        Some(value) => match validator.validate(&value) {
                            Ok(()) => return Ok(json!({"text": text, "structured": value})),
                            Err(error) => format!("{error} (at {})", error.instance_path()),
                        },
                    };
                    asked = format!(
                        "{prompt}\n\nYour last answer was:\n{text}\n\nIt does not satisfy the JSON Schema required: {why}. \
                         Answer with JSON alone that satisfies this schema:\n{}",
                        schema.as_ref().map(Value::to_string).unwrap_or_default()
                    );
                }
                Err(StepFailure::new(
                    Some(Failure::Schema),
                    "the model's answer did not satisfy the step's schema after 3 tries",
                ))
            }
            Action::Approve { .. } => {
                let question = input["question"].as_str().unwrap_or_default();
                match self.options.approver.ask(question) {
                    Some(true) => Ok(json!({"approved": true})),
                    Some(false) => Err(StepFailure::new(None, format!("not approved: {question}"))),
                    None => Err(StepFailure::stop(format!(
                        "waiting for approval: {question} (resume from a terminal, or with --yes)"
                    ))),
                }
            }
        }
    }
}

/// The JSON in a model's answer: all of it, or inside a ``` fence.
fn answer_json(text: &str) -> Option<Value> {
    let text = text.trim();
    if let Ok(value) = serde_json::from_str(text) {
        return Some(value);
    }
    let inner = text.split_once("```")?.1;
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    let inner = inner.split_once("```")?.0;
    serde_json::from_str(inner.trim()).ok()
}

/// What a call gives later steps.
pub fn call_value(result: &CallToolResult) -> Value {
    let text: Vec<&str> = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    let text = text.join("\n");
    let structured = result.structured_content.clone().or_else(|| {
        serde_json::from_str::<Value>(&text)
            .ok()
            .filter(|v| v.is_object() || v.is_array())
    });
    json!({
        "text": text,
        "structured": structured,
        "is_error": result.is_error == Some(true),
        "content": result.content,
    })
}

/// Polls a task until it ends; its result.
async fn follow_task(
    client: &Client,
    server: &str,
    id: &str,
) -> Result<CallToolResult, StepFailure> {
    loop {
        let task = client
            .get_task(rmcp::model::GetTaskParams::new(id.to_owned()))
            .await
            .map_err(|e| {
                StepFailure::new(
                    Some(Failure::Transport),
                    format!("{server}: task {id}: {e}"),
                )
            })?
            .task;
        let interval = task
            .task
            .poll_interval_ms
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        match crate::agent::ended(task.payload) {
            Some(crate::agent::Ended::Result(result)) => return Ok(result),
            Some(crate::agent::Ended::Failed(why)) => {
                return Err(StepFailure::new(
                    Some(Failure::ToolError),
                    format!("{server}: task {id} failed: {why}"),
                ));
            }
            Some(crate::agent::Ended::Cancelled) => {
                return Err(StepFailure::new(
                    None,
                    format!("{server}: task {id} was cancelled"),
                ));
            }
            None => tokio::time::sleep(interval).await,
        }
    }
}
