//! Long-running tools as Tasks: the official extension `io.modelcontextprotocol/tasks`
//! (SEP-2663), with a store that outlives the server.
//!
//! A client that declares the extension and calls a long tool gets a task at once
//! (`resultType: "task"`, its id and status) instead of waiting on an open request; it polls
//! `tasks/get` (status, then the tool's result or error inlined), answers questions the work
//! asks through `tasks/update`, and stops it with `tasks/cancel`. A client that did not declare
//! the extension gets the tool's result in the call itself, or, for a tool that can only run as
//! a task, -32021 naming the extension.
//!
//! The tool body hands its work to [`Tasks::run`]:
//!
//! ```
//! use std::time::Duration;
//! use mcp_core::tasks::{TaskOptions, Tasks};
//! use rmcp::{ErrorData, RoleServer, ServerHandler, model::*, service::RequestContext};
//!
//! #[derive(Clone)]
//! struct Oven { tasks: Tasks }
//!
//! impl Oven {
//!     /// A `#[tool]` body: bakes for a while, as a task when the client can follow one.
//!     async fn bake(&self, context: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
//!         self.tasks.run(&context, "bake", TaskOptions::default(), |task| async move {
//!             task.status("preheating");
//!             tokio::time::sleep(Duration::from_millis(10)).await;
//!             Ok(CallToolResult::success(vec![ContentBlock::text("bread")]))
//!         }).await
//!     }
//! }
//!
//! impl ServerHandler for Oven {
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tasks().build())
//!     }
//!     // tasks/get, tasks/update and tasks/cancel, answered by `self.tasks`.
//!     mcp_core::task_methods!(tasks);
//! }
//! ```
//!
//! **Durable.** Every change of a task is written to SQLite (a file under the server's data
//! directory, [`Tasks::open`]) before anyone can see it: `tasks/get` for an id answers as soon as
//! the call that made it has, and after a restart. Work cannot survive its process, so a task
//! that was running when the server died is handed, on [`Tasks::open`], to the server's `resume`
//! function: one whose work lives on elsewhere (a training job in its own queue) gets a new
//! body that follows it, by the [link](Running::link) the first body recorded; any other ends
//! `failed`, saying the server stopped.
//!
//! **Cancelled means stopped.** `tasks/cancel` drops the work at its next `.await` and the task
//! ends `cancelled`, unless the tool asked to stop itself ([`TaskOptions::cooperative`]): then
//! [`Running::cancelled`] wakes and the body settles as it sees fit (a trainer stops at its next
//! checkpoint and the body returns [`Exit::Cancelled`]; or it finishes anyway, SEP-2663 allows
//! that).
//!
//! **Bounded.** At most [`MAX_RUNNING`] tasks run at once and [`MAX_KEPT`] are kept; each is
//! kept for its TTL ([`TaskOptions::ttl`]) from its creation, and one still running when that
//! runs out is stopped and ends `failed`.
//!
//! **Whose.** Task ids are random UUIDs. When the server checks OAuth tokens, a task belongs to
//! the subject whose token made it: to anyone else its id is unknown (-32602). Without OAuth,
//! whoever holds an id can follow and cancel the task.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolResponse, CallToolResult, ClientCapabilities, CreateTaskResult, DetailedTask,
        ElicitRequest, ElicitRequestParams, ElicitResult, GetTaskResult, InputRequest,
        InputRequests, InputResponses, JsonObject, ServerNotification, Task, TaskPayload,
        TaskStatus, TaskStatusNotification, TaskStatusNotificationParams,
    },
    service::{Peer, RequestContext},
    task_manager::current_timestamp,
};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use tokio::sync::{oneshot, watch};

/// Tasks one server runs at once; one more is refused, saying so.
pub const MAX_RUNNING: usize = 256;

/// Tasks one server keeps (running or finished, within their TTL); past it, new ones are
/// refused until some expire.
pub const MAX_KEPT: usize = 10_000;

/// How a task's work ends without a result.
#[derive(Debug)]
pub enum Exit {
    /// A protocol-level failure: the task ends `failed`, the error inlined. (A tool error the
    /// model should read is a result with `isError`, and the task `completed`.)
    Failed(ErrorData),
    /// The work stopped because the task was cancelled: the task ends `cancelled`.
    Cancelled,
}

impl From<ErrorData> for Exit {
    fn from(error: ErrorData) -> Self {
        Self::Failed(error)
    }
}

/// The work of a task: the tool's result, or how it ended without one.
pub type TaskWork = Pin<Box<dyn Future<Output = Result<CallToolResult, Exit>> + Send>>;

/// Whether a tool can run without a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSupport {
    /// As a task when the client declared the extension, else in the call itself.
    Optional,
    /// Only as a task: a client without the extension is refused with -32021.
    Required,
}

/// How a tool's work runs as a task.
#[derive(Debug, Clone)]
pub struct TaskOptions {
    support: TaskSupport,
    ttl: Option<Duration>,
    poll_interval: Duration,
    cooperative: bool,
}

impl Default for TaskOptions {
    /// Optional, kept an hour, polled every second, dropped when cancelled.
    fn default() -> Self {
        Self {
            support: TaskSupport::Optional,
            ttl: Some(Duration::from_secs(60 * 60)),
            poll_interval: Duration::from_secs(1),
            cooperative: false,
        }
    }
}

impl TaskOptions {
    /// Runs only as a task ([`TaskSupport::Required`]).
    pub fn required(mut self) -> Self {
        self.support = TaskSupport::Required;
        self
    }

    /// How long the task is kept from its creation (`None`: until the server deletes it).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often a client should poll `tasks/get`.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// The work stops itself when cancelled ([`Running::cancelled`]) instead of being dropped.
    pub fn cooperative(mut self) -> Self {
        self.cooperative = true;
        self
    }
}

/// A task that was running when the server stopped, handed to the server's `resume` function
/// by [`Tasks::open`].
#[derive(Debug, Clone)]
pub struct Orphan {
    /// The task's id.
    pub id: String,
    /// The tool it runs.
    pub tool: String,
    /// What its work recorded with [`Running::link`], if anything.
    pub link: Option<String>,
}

/// New work for an orphaned task ([`Tasks::open`]).
pub type Resumed = Box<dyn FnOnce(Running) -> TaskWork + Send>;

/// Why the task store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TasksError {
    /// SQLite refused the file.
    #[error("the task store {path} could not be opened: {source}")]
    Open {
        /// The database file.
        path: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// A server's tasks: the store and the work running in this process. Clones share them.
#[derive(Clone)]
pub struct Tasks(Arc<Inner>);

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("running", &lock(&self.0.live).len())
            .finish()
    }
}

struct Inner {
    db: Mutex<Connection>,
    live: Mutex<HashMap<String, Live>>,
}

/// A task whose work runs in this process.
struct Live {
    cancel: watch::Sender<bool>,
    cooperative: bool,
    abort: Option<tokio::task::AbortHandle>,
    pending: HashMap<String, (InputRequest, oneshot::Sender<Value>)>,
    asked: HashSet<String>,
    /// The session that created it, told of status changes while it is open.
    peer: Option<Peer<RoleServer>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

fn storage(error: rusqlite::Error) -> ErrorData {
    tracing::error!(%error, "the task store failed");
    ErrorData::internal_error(format!("the task store failed: {error}"), None)
}

fn unknown(id: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("no task {id:?} (it never existed here, or expired)"),
        None,
    )
}

fn status_name(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Working => "working",
        TaskStatus::InputRequired => "input_required",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
        // A status a later rmcp adds reads as still running.
        _ => "working",
    }
}

fn status_of(name: &str) -> TaskStatus {
    match name {
        "input_required" => TaskStatus::InputRequired,
        "completed" => TaskStatus::Completed,
        "failed" => TaskStatus::Failed,
        "cancelled" => TaskStatus::Cancelled,
        _ => TaskStatus::Working,
    }
}

fn object(value: &impl serde::Serialize) -> JsonObject {
    match serde_json::to_value(value) {
        Ok(Value::Object(object)) => object,
        _ => JsonObject::new(),
    }
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY,
        tool TEXT NOT NULL,
        status TEXT NOT NULL,
        status_message TEXT,
        created_at TEXT NOT NULL,
        last_updated_at TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        ttl_ms INTEGER,
        poll_interval_ms INTEGER NOT NULL,
        input_requests TEXT,
        result TEXT,
        error TEXT,
        link TEXT,
        owner_pid INTEGER,
        owner TEXT
    );
";

/// How an ending task settles.
enum End {
    Completed(CallToolResult),
    Failed(ErrorData),
    Cancelled,
}

impl Tasks {
    /// The store at `path` (created if missing), with the tasks a previous run left unfinished
    /// handed to `resume`: new work for the task, or `None` to end it `failed`.
    pub fn open(
        path: &Path,
        resume: impl Fn(&Orphan) -> Option<Resumed>,
    ) -> Result<Self, TasksError> {
        let opened = Connection::open(path).and_then(|db| {
            db.execute_batch(SCHEMA)?;
            Ok(db)
        });
        let db = opened.map_err(|source| TasksError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let tasks = Self(Arc::new(Inner {
            db: Mutex::new(db),
            live: Mutex::new(HashMap::new()),
        }));
        tasks.adopt_orphans(resume);
        Ok(tasks)
    }

    /// A store in memory, for tests and servers that keep nothing.
    pub fn in_memory() -> Result<Self, TasksError> {
        Self::open(Path::new(":memory:"), |_| None)
    }

    fn adopt_orphans(&self, resume: impl Fn(&Orphan) -> Option<Resumed>) {
        let orphans: Vec<Orphan> = {
            let db = lock(&self.0.db);
            let found = db
                .prepare(
                    "SELECT id, tool, link, owner_pid FROM tasks WHERE status IN ('working', 'input_required')",
                )
                .and_then(|mut query| {
                    query
                        .query_map([], |row| {
                            let orphan = Orphan {
                                id: row.get(0)?,
                                tool: row.get(1)?,
                                link: row.get(2)?,
                            };
                            Ok((orphan, row.get::<_, Option<i64>>(3)?))
                        })?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map(|rows| {
                    // Another server on the same store runs its own tasks: only those whose
                    // process is gone are orphans.
                    rows.into_iter()
                        .filter(|(_, owner)| !owner.is_some_and(alive))
                        .map(|(orphan, _)| orphan)
                        .collect::<Vec<_>>()
                });
            found.unwrap_or_else(|error| {
                tracing::error!(%error, "could not read the unfinished tasks");
                Vec::new()
            })
        };
        for orphan in orphans {
            match resume(&orphan) {
                Some(work) => {
                    tracing::info!(task = %orphan.id, tool = %orphan.tool, "resumed a task the last run left unfinished");
                    let options = TaskOptions::default().cooperative();
                    if let Err(error) = self.write(
                        &orphan.id,
                        "UPDATE tasks SET status = 'working', input_requests = NULL, last_updated_at = ?2, owner_pid = ?3 WHERE id = ?1",
                        &[&current_timestamp(), &i64::from(std::process::id())],
                    ) {
                        tracing::error!(?error, "could not resume a task");
                        continue;
                    }
                    self.start(orphan.id, &options, None, work);
                }
                None => {
                    let error = ErrorData::internal_error(
                        "the server stopped while this task ran; call the tool again",
                        None,
                    );
                    self.settle(&orphan.id, End::Failed(error));
                }
            }
        }
    }

    /// Runs `work` for a call of `tool`: as a task when the client declared the extension (the
    /// call answers at once with the task), else in the call itself, or refused with -32021 when
    /// `options` say the tool only runs as a task.
    pub async fn run<F, Fut>(
        &self,
        context: &RequestContext<RoleServer>,
        tool: &str,
        options: TaskOptions,
        work: F,
    ) -> Result<CallToolResponse, ErrorData>
    where
        F: FnOnce(Running) -> Fut + Send + 'static,
        Fut: Future<Output = Result<CallToolResult, Exit>> + Send + 'static,
    {
        if require_extension(context, tool).is_err() {
            return match options.support {
                TaskSupport::Optional => {
                    let running = Running {
                        id: None,
                        tasks: self.clone(),
                        stop: Some(context.ct.clone()),
                    };
                    match work(running).await {
                        Ok(result) => Ok(result.into()),
                        Err(Exit::Failed(error)) => Err(error),
                        Err(Exit::Cancelled) => Err(ErrorData::internal_error(
                            format!("{tool} was cancelled"),
                            None,
                        )),
                    }
                }
                TaskSupport::Required => Err(missing_extension(tool)),
            };
        }
        let task = self.create(tool, &options, crate::auth::subject(context))?;
        let peer = (!crate::input::stateless(context)).then(|| context.peer.clone());
        let id = task.task_id.clone();
        self.start(
            id,
            &options,
            peer,
            Box::new(move |running| Box::pin(work(running))),
        );
        Ok(CreateTaskResult::new(task).into())
    }

    /// Writes a new task (status `working`) and returns it.
    fn create(
        &self,
        tool: &str,
        options: &TaskOptions,
        owner: Option<&str>,
    ) -> Result<Task, ErrorData> {
        self.sweep();
        if lock(&self.0.live).len() >= MAX_RUNNING {
            return Err(ErrorData::invalid_request(
                format!(
                    "this server already runs {MAX_RUNNING} tasks; wait for some to finish or cancel them"
                ),
                None,
            ));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = current_timestamp();
        let ttl_ms = options.ttl.map(|ttl| ttl.as_millis() as u64);
        let poll_ms = options.poll_interval.as_millis() as u64;
        crate::blocking::in_place(|| {
            let db = lock(&self.0.db);
            let kept: i64 = db.query_row("SELECT count(*) FROM tasks", [], |row| row.get(0))?;
            if kept as usize >= MAX_KEPT {
                return Ok(false);
            }
            db.execute(
                "INSERT INTO tasks (id, tool, status, created_at, last_updated_at, created_ms, ttl_ms, poll_interval_ms, owner_pid, owner)
                 VALUES (?1, ?2, 'working', ?3, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    tool,
                    now,
                    now_ms(),
                    ttl_ms.map(|ms| ms as i64),
                    poll_ms as i64,
                    i64::from(std::process::id()),
                    owner
                ],
            )?;
            Ok(true)
        })
        .map_err(storage)
        .and_then(|created| {
            if created {
                Ok(())
            } else {
                Err(ErrorData::invalid_request(
                    format!("this server keeps {MAX_KEPT} tasks already; try again when some expire"),
                    None,
                ))
            }
        })?;
        let mut task =
            Task::new(id, TaskStatus::Working, now.clone(), now).with_poll_interval_ms(poll_ms);
        task.ttl_ms = ttl_ms;
        Ok(task)
    }

    /// Starts the work of task `id` in this process.
    fn start(
        &self,
        id: String,
        options: &TaskOptions,
        peer: Option<Peer<RoleServer>>,
        work: Resumed,
    ) {
        let (cancel, _) = watch::channel(false);
        lock(&self.0.live).insert(
            id.clone(),
            Live {
                cancel,
                cooperative: options.cooperative,
                abort: None,
                pending: HashMap::new(),
                asked: HashSet::new(),
                peer,
            },
        );
        let running = Running {
            id: Some(id.clone()),
            tasks: self.clone(),
            stop: None,
        };
        let work = work(running);
        let tasks = self.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            let ended = match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(work))
                .await
            {
                Ok(Ok(result)) => End::Completed(result),
                Ok(Err(Exit::Failed(error))) => End::Failed(error),
                Ok(Err(Exit::Cancelled)) => End::Cancelled,
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    tracing::error!(task = %task_id, panic = %message, "a task's work panicked");
                    End::Failed(ErrorData::internal_error(
                        format!("the task failed (a bug in the server: {message})"),
                        None,
                    ))
                }
            };
            tasks.settle(&task_id, ended);
        });
        if let Some(live) = lock(&self.0.live).get_mut(&id) {
            live.abort = Some(handle.abort_handle());
        }
    }

    /// Writes how task `id` ended (unless it already had) and forgets its work.
    fn settle(&self, id: &str, end: End) {
        let (status, result, error) = match &end {
            End::Completed(result) => (TaskStatus::Completed, Some(object(result)), None),
            End::Failed(error) => (TaskStatus::Failed, None, Some(object(error))),
            End::Cancelled => (TaskStatus::Cancelled, None, None),
        };
        let json = |value: Option<JsonObject>| value.map(|v| Value::Object(v).to_string());
        let written = crate::blocking::in_place(|| {
            lock(&self.0.db).execute(
                "UPDATE tasks SET status = ?2, result = ?3, error = ?4, input_requests = NULL, last_updated_at = ?5
                 WHERE id = ?1 AND status IN ('working', 'input_required')",
                params![id, status_name(status), json(result), json(error), current_timestamp()],
            )
        });
        if let Err(error) = written {
            tracing::error!(task = id, %error, "could not record how a task ended");
        }
        let live = lock(&self.0.live).remove(id);
        if let Some(peer) = live.and_then(|live| live.peer) {
            self.tell(id, peer);
        }
    }

    /// Tells the session that made task `id` its state, while that session is open.
    fn tell(&self, id: &str, peer: Peer<RoleServer>) {
        if peer.is_transport_closed() {
            return;
        }
        let Ok(task) = self.detailed(id) else {
            return;
        };
        tokio::spawn(async move {
            let notification = TaskStatusNotification::new(TaskStatusNotificationParams::new(task));
            let notification = ServerNotification::TaskStatusNotification(notification);
            if let Err(error) = peer.send_notification(notification).await {
                tracing::debug!(%error, "could not tell a session of its task");
            }
        });
    }

    fn write(
        &self,
        id: &str,
        sql: &str,
        values: &[&dyn rusqlite::ToSql],
    ) -> Result<usize, ErrorData> {
        let mut all: Vec<&dyn rusqlite::ToSql> = vec![&id];
        all.extend_from_slice(values);
        crate::blocking::in_place(|| lock(&self.0.db).execute(sql, all.as_slice())).map_err(storage)
    }

    /// Ends tasks past their TTL: a finished one is deleted, a running one stopped (`failed`).
    fn sweep(&self) {
        let now = now_ms();
        let expired: Vec<String> = crate::blocking::in_place(|| {
            let db = lock(&self.0.db);
            db.execute(
                "DELETE FROM tasks WHERE ttl_ms IS NOT NULL AND created_ms + ttl_ms < ?1
                 AND status IN ('completed', 'failed', 'cancelled')",
                [now],
            )?;
            let mut query = db.prepare(
                "SELECT id FROM tasks WHERE ttl_ms IS NOT NULL AND created_ms + ttl_ms < ?1",
            )?;
            query
                .query_map([now], |row| row.get(0))?
                .collect::<Result<Vec<String>, _>>()
        })
        .unwrap_or_else(|error| {
            tracing::error!(%error, "could not sweep expired tasks");
            Vec::new()
        });
        for id in expired {
            if let Some(abort) = lock(&self.0.live)
                .get(&id)
                .and_then(|live| live.abort.clone())
            {
                abort.abort();
            }
            let error =
                ErrorData::internal_error("the task ran past its TTL and was stopped", None);
            self.settle(&id, End::Failed(error));
        }
    }

    /// The task as `tasks/get` shows it.
    fn detailed(&self, id: &str) -> Result<DetailedTask, ErrorData> {
        type Row = (
            String,
            Option<String>,
            String,
            String,
            Option<i64>,
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = crate::blocking::in_place(|| {
            lock(&self.0.db)
                .query_row(
                    "SELECT status, status_message, created_at, last_updated_at, ttl_ms, poll_interval_ms,
                            input_requests, result, error
                     FROM tasks WHERE id = ?1",
                    [id],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                            row.get(7)?,
                            row.get(8)?,
                        ))
                    },
                )
                .optional()
        })
        .map_err(storage)?;
        let Some((status, message, created, updated, ttl_ms, poll_ms, requests, result, error)) =
            row
        else {
            return Err(unknown(id));
        };
        let parse = |text: Option<String>| -> Option<JsonObject> {
            text.and_then(|text| serde_json::from_str(&text).ok())
        };
        let status = status_of(&status);
        let payload = match status {
            TaskStatus::InputRequired => TaskPayload::InputRequired {
                input_requests: requests
                    .and_then(|text| serde_json::from_str::<InputRequests>(&text).ok())
                    .unwrap_or_default(),
            },
            TaskStatus::Completed => TaskPayload::Completed {
                result: parse(result).unwrap_or_default(),
            },
            TaskStatus::Failed => TaskPayload::Failed {
                error: parse(error).unwrap_or_default(),
            },
            TaskStatus::Cancelled => TaskPayload::Cancelled,
            _ => TaskPayload::Working,
        };
        let mut task =
            Task::new(id, status, created, updated).with_poll_interval_ms(poll_ms as u64);
        task.ttl_ms = ttl_ms.map(|ms| ms as u64);
        task.status_message = message;
        Ok(DetailedTask::new(task, payload))
    }

    /// Task `id` as the request behind `context` may see it: a task made under an OAuth token
    /// is another subject's business, and answers as unknown (-32602) to anyone else.
    fn visible(
        &self,
        context: &RequestContext<RoleServer>,
        id: &str,
    ) -> Result<DetailedTask, ErrorData> {
        self.sweep();
        let owner: Option<Option<String>> = crate::blocking::in_place(|| {
            lock(&self.0.db)
                .query_row("SELECT owner FROM tasks WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()
        })
        .map_err(storage)?;
        match owner {
            None => Err(unknown(id)),
            Some(Some(owner)) if crate::auth::subject(context) != Some(owner.as_str()) => {
                tracing::info!(
                    task = id,
                    "refused a task to a subject that did not make it"
                );
                Err(unknown(id))
            }
            Some(_) => self.detailed(id),
        }
    }

    /// `tasks/get`: the task's status, with what it waits for or how it ended. -32602 for an id
    /// this server does not have (or that another OAuth subject made).
    pub fn get(
        &self,
        context: &RequestContext<RoleServer>,
        id: &str,
    ) -> Result<GetTaskResult, ErrorData> {
        self.visible(context, id).map(GetTaskResult::new)
    }

    /// `tasks/update`: answers to questions the task asked. Answers to questions it is not
    /// waiting for are ignored (SEP-2663); some answers may come now and the rest later.
    pub fn update(
        &self,
        context: &RequestContext<RoleServer>,
        id: &str,
        responses: InputResponses,
    ) -> Result<(), ErrorData> {
        self.visible(context, id)?;
        let mut live = lock(&self.0.live);
        let Some(task) = live.get_mut(id) else {
            return Ok(());
        };
        let mut answered = false;
        for (key, response) in responses {
            if let Some((_, reply)) = task.pending.remove(&key) {
                answered |= reply.send(response).is_ok();
            }
        }
        if answered {
            let pending = pending_json(&task.pending);
            drop(live);
            self.record_pending(id, pending)?;
        }
        Ok(())
    }

    /// `tasks/cancel`: the work is dropped and the task ends `cancelled` (or, for cooperative
    /// work, asked to stop). A finished task is left as it is; either way the answer is an
    /// empty acknowledgement.
    pub fn cancel(&self, context: &RequestContext<RoleServer>, id: &str) -> Result<(), ErrorData> {
        let task = self.visible(context, id)?;
        if task.status().is_terminal() {
            return Ok(());
        }
        let (abort, cooperative) = {
            let mut live = lock(&self.0.live);
            match live.get_mut(id) {
                Some(task) => {
                    task.cancel.send_replace(true);
                    // Questions pending are withdrawn: the work's waits end.
                    task.pending.clear();
                    (task.abort.clone(), task.cooperative)
                }
                None => (None, false),
            }
        };
        if cooperative {
            self.record_pending(id, None)?;
            return Ok(());
        }
        if let Some(abort) = abort {
            abort.abort();
        }
        self.settle(id, End::Cancelled);
        Ok(())
    }

    /// Writes the questions task `id` waits for (none: it is working).
    fn record_pending(&self, id: &str, pending: Option<String>) -> Result<(), ErrorData> {
        let status = if pending.is_some() {
            "input_required"
        } else {
            "working"
        };
        self.write(
            id,
            "UPDATE tasks SET status = ?2, input_requests = ?3, last_updated_at = ?4
             WHERE id = ?1 AND status IN ('working', 'input_required')",
            &[&status, &pending, &current_timestamp()],
        )?;
        let peer = lock(&self.0.live)
            .get(id)
            .and_then(|live| live.peer.clone());
        if let Some(peer) = peer {
            self.tell(id, peer);
        }
        Ok(())
    }
}

/// Whether process `pid` (another server on the same store) still runs; this process's own id
/// counts as gone (the store was just opened: nothing of it runs here yet).
fn alive(pid: i64) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid == std::process::id() as i32 {
        return false;
    }
    match rustix::process::Pid::from_raw(pid) {
        // EPERM means it exists under another user.
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

fn pending_json(
    pending: &HashMap<String, (InputRequest, oneshot::Sender<Value>)>,
) -> Option<String> {
    if pending.is_empty() {
        return None;
    }
    let requests: InputRequests = pending
        .iter()
        .map(|(key, (request, _))| (key.clone(), request.clone()))
        .collect();
    serde_json::to_string(&requests).ok()
}

/// Refuses (-32021, naming the extension) a request whose client did not declare the Tasks
/// extension: for a tool that only runs as a task but does something before it makes one (asks
/// the user first, say).
pub fn require_extension(
    context: &RequestContext<RoleServer>,
    tool: &str,
) -> Result<(), ErrorData> {
    let declared = context
        .client_capabilities()
        .is_some_and(|capabilities| capabilities.supports_tasks());
    if declared {
        Ok(())
    } else {
        Err(missing_extension(tool))
    }
}

fn missing_extension(tool: &str) -> ErrorData {
    let mut error = ErrorData::missing_required_client_capability(
        ClientCapabilities::builder().enable_tasks().build(),
    );
    error.message = format!(
        "{tool} runs only as a task: declare the extension {} in the client's capabilities",
        rmcp::model::TASKS_EXTENSION_ID
    )
    .into();
    error
}

/// The work's view of its task: its id, a place for a status message, the questions it asks
/// the client, and whether it was cancelled. Work that runs in the call itself (the client did
/// not declare the extension) has no id and cannot ask.
#[derive(Clone)]
pub struct Running {
    id: Option<String>,
    tasks: Tasks,
    /// In the call itself: the request's cancellation.
    stop: Option<tokio_util::sync::CancellationToken>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("id", &self.id).finish()
    }
}

impl Running {
    /// The task's id; `None` when the work runs in the call itself.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Sets the task's status message (`statusMessage` on `tasks/get`).
    pub fn status(&self, message: impl Into<String>) {
        let Some(id) = &self.id else {
            return;
        };
        let message = message.into();
        if let Err(error) = self.tasks.write(
            id,
            "UPDATE tasks SET status_message = ?2, last_updated_at = ?3 WHERE id = ?1",
            &[&message, &current_timestamp()],
        ) {
            tracing::warn!(?error, "could not record a task's status message");
        }
    }

    /// Records what the work stands for outside this process (a job id), for the server's
    /// `resume` after a restart ([`Tasks::open`]).
    pub fn link(&self, link: impl Into<String>) {
        let Some(id) = &self.id else {
            return;
        };
        let link = link.into();
        if let Err(error) =
            self.tasks
                .write(id, "UPDATE tasks SET link = ?2 WHERE id = ?1", &[&link])
        {
            tracing::warn!(?error, "could not record a task's link");
        }
    }

    /// Whether the task was cancelled (or, in the call itself, the request was): for work on a
    /// blocking thread, which checks between steps.
    pub fn is_cancelled(&self) -> bool {
        if let Some(stop) = &self.stop {
            return stop.is_cancelled();
        }
        self.id.as_ref().is_some_and(|id| {
            lock(&self.tasks.0.live)
                .get(id)
                .is_some_and(|live| *live.cancel.borrow())
        })
    }

    /// Resolves once the task is cancelled (or, in the call itself, the request is).
    pub async fn cancelled(&self) {
        if let Some(stop) = &self.stop {
            return stop.cancelled().await;
        }
        let Some(mut cancel) = self.id.as_ref().and_then(|id| {
            lock(&self.tasks.0.live)
                .get(id)
                .map(|live| live.cancel.subscribe())
        }) else {
            return;
        };
        while !*cancel.borrow_and_update() {
            if cancel.changed().await.is_err() {
                return;
            }
        }
    }

    /// Asks the client `request` under `key` and waits for the answer (`tasks/update`); the task
    /// shows `input_required` meanwhile. `Err` when the task was cancelled, or the work runs in
    /// the call itself (no task to wait in: -32021 naming the extension).
    pub async fn input(&self, key: &str, request: InputRequest) -> Result<Value, ErrorData> {
        let Some(id) = &self.id else {
            return Err(missing_extension("this tool"));
        };
        let (reply, answer) = oneshot::channel();
        let pending = {
            let mut live = lock(&self.tasks.0.live);
            let Some(task) = live.get_mut(id) else {
                return Err(ErrorData::internal_error(
                    "the task is no longer running",
                    None,
                ));
            };
            if !task.asked.insert(key.to_owned()) {
                return Err(ErrorData::internal_error(
                    format!("the task asked {key:?} twice (a bug in the server)"),
                    None,
                ));
            }
            task.pending.insert(key.to_owned(), (request, reply));
            pending_json(&task.pending)
        };
        self.tasks.record_pending(id, pending)?;
        answer
            .await
            .map_err(|_| ErrorData::internal_error("the task was cancelled while it asked", None))
    }

    /// [`Self::input`] for a form.
    pub async fn elicit(
        &self,
        key: &str,
        form: ElicitRequestParams,
    ) -> Result<ElicitResult, ErrorData> {
        let answer = self
            .input(key, InputRequest::Elicitation(ElicitRequest::new(form)))
            .await?;
        serde_json::from_value(answer).map_err(|error| {
            ErrorData::invalid_params(
                format!("the answer to {key:?} is not an elicitation result: {error}"),
                None,
            )
        })
    }
}

/// The three `ServerHandler` methods of the Tasks extension (`get_task`, `update_task`,
/// `cancel_task`), answered by the [`Tasks`] in the handler's field `$field`. Write it inside
/// the `impl ServerHandler` block: `mcp_core::task_methods!(tasks);`.
#[macro_export]
macro_rules! task_methods {
    ($field:ident) => {
        async fn get_task(
            &self,
            request: $crate::rmcp::model::GetTaskParams,
            context: $crate::rmcp::service::RequestContext<$crate::rmcp::RoleServer>,
        ) -> Result<$crate::rmcp::model::GetTaskResult, $crate::rmcp::ErrorData> {
            self.$field.get(&context, &request.task_id)
        }

        async fn update_task(
            &self,
            request: $crate::rmcp::model::UpdateTaskParams,
            context: $crate::rmcp::service::RequestContext<$crate::rmcp::RoleServer>,
        ) -> Result<(), $crate::rmcp::ErrorData> {
            self.$field
                .update(&context, &request.task_id, request.input_responses)
        }

        async fn cancel_task(
            &self,
            request: $crate::rmcp::model::CancelTaskParams,
            context: $crate::rmcp::service::RequestContext<$crate::rmcp::RoleServer>,
        ) -> Result<(), $crate::rmcp::ErrorData> {
            self.$field.cancel(&context, &request.task_id)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock;

    fn sleeper(seconds: u64) -> Resumed {
        Box::new(move |_| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(seconds)).await;
                Ok(CallToolResult::success(vec![ContentBlock::text("slept")]))
            })
        })
    }

    /// `tasks/get` without a request (the owner check is the only thing skipped).
    fn peek(tasks: &Tasks, id: &str) -> Result<GetTaskResult, ErrorData> {
        tasks.sweep();
        tasks.detailed(id).map(GetTaskResult::new)
    }

    async fn until_not_working(tasks: &Tasks, id: &str) -> DetailedTask {
        for _ in 0..200 {
            let task = peek(tasks, id).unwrap().task;
            if task.status() != TaskStatus::Working {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("still working");
    }

    #[tokio::test]
    async fn a_task_past_its_ttl_is_stopped_then_forgotten() {
        let tasks = Tasks::in_memory().unwrap();
        let options = TaskOptions::default().ttl(Some(Duration::from_millis(100)));
        let id = tasks.create("t", &options, None).unwrap().task_id;
        tasks.start(id.clone(), &options, None, sleeper(60));
        assert_eq!(
            peek(&tasks, &id).unwrap().task.status(),
            TaskStatus::Working
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        let expired = peek(&tasks, &id).unwrap().task;
        let TaskPayload::Failed { error } = &expired.payload else {
            panic!("{expired:?}");
        };
        assert!(
            error["message"].as_str().unwrap().contains("TTL"),
            "{error:?}"
        );
        assert!(lock(&tasks.0.live).is_empty(), "the work was dropped");
        assert_eq!(
            peek(&tasks, &id).unwrap_err().code.0,
            -32602,
            "then forgotten"
        );
    }

    #[tokio::test]
    async fn a_reopened_store_keeps_ended_tasks_and_resumes_or_fails_cut_off_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tasks.sqlite");
        let (done, linked, lost) = {
            let tasks = Tasks::open(&path, |_| None).unwrap();
            let options = TaskOptions::default();
            let done = tasks.create("quick", &options, None).unwrap().task_id;
            tasks.start(done.clone(), &options, None, sleeper(0));
            until_not_working(&tasks, &done).await;
            let linked = tasks.create("train", &options, None).unwrap().task_id;
            tasks.start(
                linked.clone(),
                &options,
                None,
                Box::new(|running| {
                    Box::pin(async move {
                        running.link("job-7");
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(CallToolResult::success(vec![]))
                    })
                }),
            );
            let lost = tasks.create("other", &options, None).unwrap().task_id;
            tasks.start(lost.clone(), &options, None, sleeper(60));
            tokio::time::sleep(Duration::from_millis(50)).await;
            // The process "dies": the store is opened again by a new one, the rows as they were.
            (done, linked, lost)
        };
        let reopened = Tasks::open(&path, |orphan| {
            (orphan.link.as_deref() == Some("job-7")).then(|| {
                let resumed: Resumed = Box::new(|_| {
                    Box::pin(async {
                        Ok(CallToolResult::success(vec![ContentBlock::text(
                            "job-7 finished",
                        )]))
                    })
                });
                resumed
            })
        })
        .unwrap();
        assert_eq!(
            peek(&reopened, &done).unwrap().task.status(),
            TaskStatus::Completed
        );
        let resumed = until_not_working(&reopened, &linked).await;
        let TaskPayload::Completed { result } = &resumed.payload else {
            panic!("{resumed:?}");
        };
        assert_eq!(result["content"][0]["text"], "job-7 finished");
        let failed = peek(&reopened, &lost).unwrap().task;
        assert_eq!(failed.status(), TaskStatus::Failed);
    }
}
