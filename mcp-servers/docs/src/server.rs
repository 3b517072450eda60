//! The MCP face of the index: `search`, `get_document`, `list_sources`, `index_status`,
//! `reindex` (with progress notifications), and every document as a `docs://` resource.

use std::sync::{Arc, Mutex};

use mcp_core::{
    ToolError,
    blocking::on_pool,
    resource::{Read, ResourceError, ResourceRouter},
    structured,
    tasks::{Exit, Resumed, Running, TaskOptions, Tasks, TasksError},
    tool::truncation_notice,
};
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::*,
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};

use crate::{
    budget,
    embed::Embedder,
    index::{Filter, Hit, Library, Mode, Progress, Report, Selection, Writer},
};

/// Most bytes of a document `get_document` returns at once.
const MAX_DOCUMENT_BYTES: usize = 200_000;
/// Most sources `list_sources` names.
const MAX_SOURCES: usize = 2_000;
const URI_PREFIX: &str = "docs://";

/// Everything a session shares: the index, its writer, the model.
pub struct Shared {
    /// The index.
    pub library: Library,
    /// `None` when another process holds the index (then `reindex` says so).
    pub writer: Mutex<Option<Writer>>,
    /// The model, when semantic search is on.
    pub embedder: Option<Embedder>,
    /// Which files `reindex` reads.
    pub selection: Selection,
    /// Why semantic search is off, if it is.
    pub model_note: Option<String>,
}

/// The MCP server: the tools and `docs://` resources over one shared index.
#[derive(Clone)]
pub struct DocsServer {
    shared: Arc<Shared>,
    tasks: Tasks,
    tool_router: ToolRouter<Self>,
    resources: ResourceRouter<Arc<Shared>>,
}

/// The task store in `data_dir` (`tasks.sqlite`, beside the index). A reindex the last run left
/// unfinished runs again: updates are idempotent, and the batches it wrote are found unchanged.
pub fn open_tasks(shared: &Arc<Shared>, data_dir: &std::path::Path) -> Result<Tasks, TasksError> {
    let shared = shared.clone();
    Tasks::open(&data_dir.join("tasks.sqlite"), move |orphan| {
        let scope = orphan.link.clone().filter(|scope| !scope.is_empty());
        let shared = shared.clone();
        let resumed: Resumed = Box::new(move |task| Box::pin(reindex_task(shared, scope, task)));
        Some(resumed)
    })
}

/// A reindex as a task: its stage and count as the status message; cancelled, it stops
/// between files (what it wrote stays).
async fn reindex_task(
    shared: Arc<Shared>,
    scope: Option<String>,
    task: Running,
) -> Result<CallToolResult, Exit> {
    task.link(scope.clone().unwrap_or_default());
    let progress = TaskProgress {
        task: task.clone(),
        stage: String::new(),
        total: 0,
        told: None,
    };
    match update(shared, scope, Box::new(progress)).await {
        Ok(report) => Ok(structured(report_text(&report), &report)),
        Err(_) if task.is_cancelled() => Err(Exit::Cancelled),
        Err(error) => Ok(CallToolResult::error(vec![ContentBlock::text(
            error.to_string(),
        )])),
    }
}

/// An update's progress as a task's status message, at most four times a second.
struct TaskProgress {
    task: Running,
    stage: String,
    total: usize,
    told: Option<std::time::Instant>,
}

impl Progress for TaskProgress {
    fn stage(&mut self, name: &str, total: usize) {
        self.stage = name.to_owned();
        self.total = total;
        self.told = None;
        self.advance(0);
    }

    fn advance(&mut self, done: usize) {
        let due = self
            .told
            .is_none_or(|at| at.elapsed() >= std::time::Duration::from_millis(250));
        if due || done == self.total {
            self.told = Some(std::time::Instant::now());
            self.task
                .status(format!("{} {done}/{}", self.stage, self.total));
        }
    }

    fn stopped(&self) -> bool {
        self.task.is_cancelled()
    }
}

impl DocsServer {
    /// The server over `shared` and the reindex tasks in `tasks` ([`open_tasks`]); clone it
    /// per session: the state is shared.
    pub fn new(shared: Arc<Shared>, tasks: Tasks) -> Self {
        Self {
            shared,
            tasks,
            tool_router: Self::tool_router(),
            resources: ResourceRouter::new().route(
                ResourceTemplate::new(format!("{URI_PREFIX}{{path}}"), "document")
                    .with_description("An indexed document's text, by its path"),
                read_document,
            ),
        }
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// What to look for, in words.
    query: String,
    /// How many results (default 10, at most 100).
    k: Option<usize>,
    /// hybrid (default): words and meaning fused; bm25: words; semantic: meaning.
    mode: Option<Mode>,
    /// Only documents whose path (relative to the indexed folder) matches this glob, e.g. `docs/**/*.md`.
    path_glob: Option<String>,
    /// Only these kinds (markdown, text, html, pdf, rst, docx, epub, notebook, rust, python, …)
    /// or extensions (md, rs, ipynb, …).
    file_types: Option<Vec<String>>,
    /// Answer with whole passages that fit this many tokens (estimated high) instead of
    /// snippets: hits of one file that touch are merged, near-duplicates dropped, each passage
    /// cited by path, lines and headings. k then defaults to 20.
    max_tokens: Option<usize>,
}

/// Least `max_tokens` a search takes: a citation and a few lines.
const MIN_MAX_TOKENS: usize = 50;

#[derive(Serialize)]
struct SearchAnswer {
    mode: Mode,
    /// The hits, unless the answer is fitted to a budget (then its passages).
    #[serde(skip_serializing_if = "Option::is_none")]
    hits: Option<Vec<Hit>>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    fitted: Option<budget::Fitted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct DocumentArgs {
    /// The document's path as search gives it (relative to the indexed folder).
    path: String,
    /// First line to return (1-based).
    start_line: Option<usize>,
    /// Last line to return (inclusive).
    end_line: Option<usize>,
}

#[derive(Serialize)]
struct DocumentAnswer {
    path: String,
    title: String,
    start_line: usize,
    end_line: usize,
    total_lines: usize,
    truncated: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ReindexArgs {
    /// Only this file or folder (relative to the indexed folder); everything when left out.
    path: Option<String>,
}

fn hit_text(rank: usize, hit: &Hit) -> String {
    let place = budget::place(&hit.title, &hit.headings);
    format!(
        "{rank}. {}:{}-{} — {place} (score {:.3})\n   {}",
        hit.path,
        hit.lines[0],
        hit.lines[1],
        hit.score,
        hit.snippet.replace('\n', "\n   ")
    )
}

/// Forwards an update's progress to the client as progress notifications, in order, through one
/// task. The stages (reading files, embedding chunks, writing) add up, so the progress value
/// only grows, as the protocol asks; the message names the stage.
struct Notifier {
    token: ProgressToken,
    sender: tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>,
    stage: String,
    /// Work of the stages before this one.
    offset: usize,
    total: usize,
}

impl Notifier {
    /// The notifier and the task that sends its notifications; the task ends once the notifier
    /// is dropped and everything it queued is sent, so awaiting it before answering keeps every
    /// notification ahead of the response.
    fn start(peer: Peer<RoleServer>, token: ProgressToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(update) = receiver.recv().await {
                if peer.notify_progress(update).await.is_err() {
                    break;
                }
            }
        });
        let notifier = Self {
            token,
            sender,
            stage: String::new(),
            offset: 0,
            total: 0,
        };
        (notifier, task)
    }
}

impl Progress for Notifier {
    fn stage(&mut self, name: &str, total: usize) {
        self.offset += self.total;
        self.stage = name.to_owned();
        self.total = total;
        self.advance(0);
    }

    fn advance(&mut self, done: usize) {
        // Every file or batch would flood the client: about every 5 %.
        let step = (self.total / 20).max(1);
        if done != 0 && done != self.total && !done.is_multiple_of(step) {
            return;
        }
        let update =
            ProgressNotificationParam::new(self.token.clone(), (self.offset + done) as f64)
                .with_total((self.offset + self.total) as f64)
                .with_message(format!("{} {done}/{}", self.stage, self.total));
        let _ = self.sender.send(update);
    }
}

/// Runs an update on a blocking thread (embedding is CPU work).
pub async fn update(
    shared: Arc<Shared>,
    scope: Option<String>,
    mut progress: Box<dyn Progress + Send>,
) -> Result<Report, ToolError> {
    on_pool("the update", move || {
        let mut guard = shared
            .writer
            .lock()
            .map_err(|_| ToolError::new("the index writer is poisoned"))?;
        let Some(writer) = guard.as_mut() else {
            return Err(ToolError::new(
                "another mcp-docs process holds this index, so this one only searches it",
            )
            .with_hint("reindex from the process that holds it, or stop that one"));
        };
        let selection = Selection {
            scope,
            ..shared.selection.clone()
        };
        shared
            .library
            .update(writer, &selection, shared.embedder.as_ref(), &mut *progress)
            .map_err(ToolError::from)
    })
    .await?
}

/// An update's report in a line (`N added, … unchanged; M chunks written`) and its failures.
pub fn report_text(report: &Report) -> String {
    let mut text = format!(
        "{} added, {} updated, {} removed, {} unchanged; {} chunks written, {} embedded.",
        report.added,
        report.updated,
        report.removed,
        report.unchanged,
        report.chunks,
        report.embedded
    );
    if !report.failed.is_empty() {
        text.push_str(&format!("\n{} failed:", report.failed.len()));
        for (path, reason) in &report.failed {
            text.push_str(&format!("\n  {path}: {reason}"));
        }
    }
    text
}

#[tool_router]
impl DocsServer {
    #[tool(
        description = "Search the indexed documents. Answers with passages (path, line range, title and heading path, a snippet with matched words in **bold**, score); open one with get_document. With max_tokens, answers instead with whole passages that fit that budget (touching hits of a file merged, near-duplicates dropped, each cited by path, lines and headings).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ToolError> {
        if args.query.trim().is_empty() {
            return Err(ToolError::new("the query is empty"));
        }
        let shared = self.shared.clone();
        let requested = args.mode.unwrap_or_default();
        let filter = Filter {
            path_glob: args.path_glob,
            file_types: args.file_types.unwrap_or_default(),
        };
        if let Some(max) = args.max_tokens
            && max < MIN_MAX_TOKENS
        {
            return Err(ToolError::new(format!(
                "max_tokens is {max}; a passage and its citation need at least {MIN_MAX_TOKENS}"
            )));
        }
        let k = args
            .k
            .unwrap_or(if args.max_tokens.is_some() { 20 } else { 10 });
        let query = args.query.clone();
        let hits = on_pool("the search", move || {
            shared
                .library
                .search(&query, k, requested, &filter, shared.embedder.as_ref())
        })
        .await??;
        let semantic_off = self.shared.embedder.is_none() || self.shared.library.model().is_none();
        let (mode, note) = if requested != Mode::Bm25 && semantic_off {
            (
                Mode::Bm25,
                Some(format!(
                    "semantic search is off, so this is BM25 only: {}",
                    self.shared
                        .model_note
                        .as_deref()
                        .unwrap_or("the index has no vectors")
                )),
            )
        } else {
            (requested, None)
        };
        let fitted = args.max_tokens.map(|max| budget::fit(&hits, max));
        let mut text = if hits.is_empty() {
            format!("No passages match {:?}.", args.query)
        } else if let Some(fitted) = &fitted {
            budget::render(fitted)
        } else {
            hits.iter()
                .enumerate()
                .map(|(i, hit)| hit_text(i + 1, hit))
                .collect::<Vec<_>>()
                .join("\n")
        };
        if let Some(note) = &note {
            text.push_str(&format!("\n({note})"));
        }
        let hits = fitted.is_none().then_some(hits);
        let answer = SearchAnswer {
            mode,
            hits,
            fitted,
            max_tokens: args.max_tokens,
            note,
        };
        Ok(structured(text, &answer))
    }

    #[tool(
        description = "Read an indexed document (its text as indexed: HTML and PDF as text), whole or lines start_line..end_line.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_document(
        &self,
        Parameters(args): Parameters<DocumentArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let shared = self.shared.clone();
        let path = args.path.clone();
        let range = match (args.start_line, args.end_line) {
            (None, None) => None,
            (start, end) => Some((start.unwrap_or(1).max(1), end.unwrap_or(usize::MAX))),
        };
        let (title, text, total) =
            on_pool("reading", move || shared.library.document(&path, range)).await??;
        let (start, end) = range.unwrap_or((1, total));
        let mut shown = text;
        let truncated = shown.len() > MAX_DOCUMENT_BYTES;
        if truncated {
            let mut cut = MAX_DOCUMENT_BYTES;
            while !shown.is_char_boundary(cut) {
                cut -= 1;
            }
            shown.truncate(cut);
        }
        let last = (start + shown.lines().count())
            .saturating_sub(1)
            .min(end)
            .min(total);
        if truncated {
            shown.push('\n');
            shown.push_str(&truncation_notice(
                format_args!("lines {start}..={last}, {MAX_DOCUMENT_BYTES} bytes"),
                None,
                Some(&format!("ask for start_line={} to read on", last + 1)),
            ));
        }
        Ok(structured(
            shown,
            &DocumentAnswer {
                path: args.path,
                title,
                start_line: start,
                end_line: last,
                total_lines: total,
                truncated,
            },
        ))
    }

    #[tool(
        description = "List the indexed documents: path, kind, title, number of chunks.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sources(&self) -> Result<CallToolResult, ToolError> {
        let mut sources = self.shared.library.sources()?;
        let total = sources.len();
        sources.truncate(MAX_SOURCES);
        let mut text = sources
            .iter()
            .map(|s| format!("{}\t{}\t{}\t{} chunks", s.path, s.kind, s.title, s.chunks))
            .collect::<Vec<_>>()
            .join("\n");
        if total > MAX_SOURCES {
            text.push_str(&format!(
                "\n[… {} more; search finds them]",
                total - MAX_SOURCES
            ));
        }
        Ok(structured(
            text,
            &serde_json::json!({"sources": sources, "total": total}),
        ))
    }

    #[tool(
        description = "The index at a glance: folder, files, chunks, vectors, the embedding model, the last update and every file that failed, with the reason.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn index_status(&self) -> Result<CallToolResult, ToolError> {
        let status = self.shared.library.status()?;
        let mut text = format!(
            "{} files, {} chunks ({} with vectors) from {}; model: {}.",
            status.files,
            status.chunks,
            status.vectors,
            status.root,
            status.model.as_deref().unwrap_or("none (BM25 only)")
        );
        if let Some(note) = &self.shared.model_note {
            text.push_str(&format!("\nSemantic search is off: {note}"));
        }
        for (path, reason) in &status.failures {
            text.push_str(&format!("\nfailed: {path}: {reason}"));
        }
        Ok(structured(text, &status))
    }

    #[tool(
        description = "Bring the index up to date with the folder (only changed files are read again; deleted ones are dropped), or just one file or folder. Reports progress while it runs.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    // The whole context, not rmcp's `RequestMetaObject` extractor: that one takes the `_meta`
    // out of the context, and the client's capabilities (does it follow tasks?) with it.
    async fn reindex(
        &self,
        Parameters(args): Parameters<ReindexArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let meta = context.meta.clone();
        // A client that follows tasks gets one: its status message says how far it is.
        if mcp_core::tasks::require_extension(&context, "reindex").is_ok() {
            let shared = self.shared.clone();
            let options = TaskOptions::default().cooperative();
            return self
                .tasks
                .run(&context, "reindex", options, move |task| {
                    reindex_task(shared, args.path, task)
                })
                .await;
        }
        let peer = context.peer.clone();
        let (progress, sending): (Box<dyn Progress + Send>, _) = match meta.get_progress_token() {
            Some(token) => {
                let (notifier, task) = Notifier::start(peer, token);
                (Box::new(notifier), Some(task))
            }
            None => (Box::new(()), None),
        };
        let report = update(self.shared.clone(), args.path, progress).await;
        if let Some(sending) = sending {
            let _ = sending.await;
        }
        Ok(match report {
            Ok(report) => structured(report_text(&report), &report).into(),
            Err(error) => CallToolResult::error(vec![ContentBlock::text(error.to_string())]).into(),
        })
    }
}

fn resource_text(uri: &str, text: String, path: &str) -> ResourceContents {
    let mime = if path.ends_with(".md") || path.ends_with(".markdown") {
        "text/markdown"
    } else {
        "text/plain"
    };
    ResourceContents::text(text, uri).with_mime_type(mime)
}

/// `docs://{path}`: the document's whole text.
async fn read_document(shared: Arc<Shared>, read: Read) -> Result<ResourceContents, ResourceError> {
    let path = read.var("path").to_owned();
    let lookup = path.clone();
    let (_, text, _) = on_pool("reading", move || shared.library.document(&lookup, None))
        .await
        .map_err(ResourceError::failed)?
        .map_err(ResourceError::not_found)?;
    Ok(resource_text(read.uri(), text, &path))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DocsServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new("mcp-docs", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "Search over the documents in {} (Markdown, text, HTML, PDF, source code). Use search \
             first (hybrid by default), then get_document with the path and lines it gives; cite \
             the path and lines.",
            self.shared.library.root().display()
        ))
    }

    // tasks/get, tasks/update and tasks/cancel.
    mcp_core::task_methods!(tasks);

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let sources = self
            .shared
            .library
            .sources()
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(ListResourcesResult::with_all_items(
            sources
                .iter()
                .take(MAX_SOURCES)
                .map(|s| {
                    Resource::new(format!("{URI_PREFIX}{}", s.path), s.title.clone())
                        .with_description(format!("{} ({} chunks)", s.kind, s.chunks))
                })
                .collect(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(self.resources.templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.resources.read(self.shared.clone(), &request.uri).await
    }
}
