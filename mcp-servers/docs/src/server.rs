//! The MCP face of the index: `search`, `get_document`, `list_sources`, `index_status`,
//! `reindex` (with progress notifications), and every document as a `docs://` resource.

use std::sync::Arc;

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
    collection::{self, Collection},
    deps::{self, SyncReport},
    embed::Embedder,
    index::{
        self, DocsError, Filter, Hit, Library, Mode, Progress, Report, Selection, Source, Status,
        Writer,
    },
    web::{CrawlReport, WebError},
};

/// Most bytes of a document `get_document` returns at once.
const MAX_DOCUMENT_BYTES: usize = 200_000;
/// Most sources `list_sources` names.
const MAX_SOURCES: usize = 2_000;
const URI_PREFIX: &str = "docs://";

/// Everything a session shares: the collections, the model.
pub struct Shared {
    /// The collections, at least one, in the order they were given.
    pub collections: Vec<Collection>,
    /// The model, when semantic search is on.
    pub embedder: Option<Embedder>,
    /// Why semantic search is off, if it is.
    pub model_note: Option<String>,
}

impl Shared {
    /// The collections (at least one) with the model, if any, and why there is none.
    pub fn new(
        collections: Vec<Collection>,
        embedder: Option<Embedder>,
        model_note: Option<String>,
    ) -> Self {
        assert!(!collections.is_empty(), "a server needs a collection");
        Self {
            collections,
            embedder,
            model_note,
        }
    }

    /// Whether there is more than one collection (then hits and resources name theirs).
    fn several(&self) -> bool {
        self.collections.len() > 1
    }

    /// The position of the collection called `name`.
    fn position(&self, name: &str) -> Result<usize, ToolError> {
        self.collections
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                ToolError::new(format!("there is no collection {name:?}")).with_hint(format!(
                    "the collections are {}",
                    self.collections
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The positions of the collection `name`, or of every one.
    fn chosen(&self, name: Option<&str>) -> Result<Vec<usize>, ToolError> {
        match name {
            Some(name) => Ok(vec![self.position(name)?]),
            None => Ok((0..self.collections.len()).collect()),
        }
    }

    /// The collection that holds the document `path`: the one named, the only one, or the one
    /// of them that has it.
    fn holder(&self, name: Option<&str>, path: &str) -> Result<&Collection, ToolError> {
        if let Some(name) = name {
            return Ok(&self.collections[self.position(name)?]);
        }
        if !self.several() {
            return Ok(&self.collections[0]);
        }
        let holders: Vec<&Collection> = self
            .collections
            .iter()
            .filter(|c| c.library.has(path).unwrap_or(false))
            .collect();
        match holders.as_slice() {
            [one] => Ok(one),
            [] => Err(ToolError::from(DocsError::UnknownDocument(path.to_owned()))),
            many => Err(ToolError::new(format!(
                "{path} is in several collections: {}",
                many.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .with_hint("say which with collection")),
        }
    }

    /// The name a collection's hits and failures are labelled with: its own when there are
    /// several, else none.
    fn label_of<'a>(&self, collection: &'a Collection) -> &'a str {
        if self.several() { &collection.name } else { "" }
    }

    /// Whether semantic search is off for every collection a search of `collection` (every one
    /// when `None`) covers.
    pub fn semantic_off(&self, collection: Option<&str>) -> Result<bool, ToolError> {
        Ok(self.embedder.is_none()
            || self
                .chosen(collection)?
                .iter()
                .all(|&i| self.collections[i].library.model().is_none()))
    }

    /// The libraries of dependency collections (of `collection`, or every one) that `wanted`
    /// names ([`deps::names`]): each with the position of its collection.
    pub fn libraries(
        &self,
        collection: Option<&str>,
        wanted: &str,
    ) -> Result<Vec<(usize, String)>, ToolError> {
        let mut found = Vec::new();
        for at in self.chosen(collection)? {
            found.extend(
                self.collections[at]
                    .libraries()?
                    .into_iter()
                    .filter(|id| deps::names(id, wanted))
                    .map(|id| (at, id)),
            );
        }
        Ok(found)
    }

    /// Searches the collection `collection`, or every one, or only the library `library` of
    /// their dependencies (blocking: run it on the pool); hits name their collection when there
    /// are several.
    pub fn search(
        &self,
        collection: Option<&str>,
        library: Option<&str>,
        query: &str,
        k: usize,
        mode: Mode,
        filter: &Filter,
    ) -> Result<Vec<Hit>, ToolError> {
        let mut chosen = self.chosen(collection)?;
        let mut filter = filter.clone();
        if let Some(wanted) = library {
            let found = self.libraries(collection, wanted)?;
            if found.is_empty() {
                return Err(ToolError::new(format!("no indexed library is {wanted:?}"))
                    .with_hint("resolve_library lists the libraries and their versions"));
            }
            chosen.retain(|at| found.iter().any(|(c, _)| c == at));
            filter.libraries = found.into_iter().map(|(_, id)| id).collect();
        }
        let filter = &filter;
        let libraries: Vec<(&str, &Library)> = chosen
            .into_iter()
            .map(|at| {
                let c = &self.collections[at];
                (self.label_of(c), &c.library)
            })
            .collect();
        let mut hits = index::search(&libraries, query, k, mode, filter, self.embedder.as_ref())?;
        for hit in &mut hits {
            hit.url = self.url_of(&hit.collection, &hit.path);
        }
        Ok(hits)
    }

    /// The URL of a web collection's page saved as `path`; the collection is the one labelled
    /// `label` ([`Shared::label_of`]).
    fn url_of(&self, label: &str, path: &str) -> Option<String> {
        let collection = if label.is_empty() {
            self.collections.first()
        } else {
            self.collections.iter().find(|c| c.name == label)
        };
        collection?.site.as_ref()?.url_of(path)
    }
}

/// The MCP server: the tools and `docs://` resources over the shared collections.
#[derive(Clone)]
pub struct DocsServer {
    shared: Arc<Shared>,
    tasks: Tasks,
    tool_router: ToolRouter<Self>,
    resources: ResourceRouter<Arc<Shared>>,
}

/// What a reindex task records to be run again: which collection and path.
#[derive(Serialize, Deserialize)]
struct Scope {
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
}

/// The task store in `data_dir` (`tasks.sqlite`, beside the index). A reindex the last run left
/// unfinished runs again: updates are idempotent, and the batches it wrote are found unchanged.
pub fn open_tasks(shared: &Arc<Shared>, data_dir: &std::path::Path) -> Result<Tasks, TasksError> {
    let shared = shared.clone();
    Tasks::open(&data_dir.join("tasks.sqlite"), move |orphan| {
        let scope = match orphan.link.as_deref() {
            None | Some("") => Scope {
                collection: None,
                path: None,
            },
            // Before collections, the link was the path alone.
            Some(link) => serde_json::from_str(link).unwrap_or(Scope {
                collection: None,
                path: Some(link.to_owned()),
            }),
        };
        // A collection this server does not have is not this server's to resume.
        if let Some(name) = &scope.collection
            && shared.position(name).is_err()
        {
            return None;
        }
        let shared = shared.clone();
        let resumed: Resumed = Box::new(move |task| Box::pin(reindex_task(shared, scope, task)));
        Some(resumed)
    })
}

/// A reindex as a task: its stage and count as the status message; cancelled, it stops
/// between files (what it wrote stays).
async fn reindex_task(
    shared: Arc<Shared>,
    scope: Scope,
    task: Running,
) -> Result<CallToolResult, Exit> {
    task.link(serde_json::to_string(&scope).unwrap_or_default());
    let progress = TaskProgress {
        task: task.clone(),
        stage: String::new(),
        total: 0,
        told: None,
    };
    match update(shared, scope.collection, scope.path, Box::new(progress)).await {
        Ok(answer) => Ok(structured(answer.text(), &answer)),
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
        // One collection: `docs://{path}`, as before collections; several: the name first.
        let template = if shared.several() {
            ResourceTemplate::new(format!("{URI_PREFIX}{{collection}}/{{path}}"), "document")
                .with_description("An indexed document's text, by its collection and path")
        } else {
            ResourceTemplate::new(format!("{URI_PREFIX}{{path}}"), "document")
                .with_description("An indexed document's text, by its path")
        };
        Self {
            shared,
            tasks,
            tool_router: Self::tool_router(),
            resources: ResourceRouter::new().route(template, read_document),
        }
    }

    /// Every collection at a glance.
    fn summaries(&self) -> Result<Vec<CollectionSummary>, DocsError> {
        self.shared
            .collections
            .iter()
            .map(|c| {
                Ok(CollectionSummary {
                    name: c.name.clone(),
                    kind: c.source.kind().to_owned(),
                    source: c.source.display(),
                    status: c.library.status()?,
                })
            })
            .collect()
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// What to look for, in words.
    query: String,
    /// Only this collection (list_sources names them); all of them when left out.
    collection: Option<String>,
    /// Only this dependency library: `serde`, `cargo:serde`, `serde@1.0.219` or
    /// `cargo:serde@1.0.219` (resolve_library lists them).
    library: Option<String>,
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
    /// The document's path as search gives it (relative to its collection's folder).
    path: String,
    /// The collection search gave with it; needed only when two collections hold that path.
    collection: Option<String>,
    /// First line to return (1-based).
    start_line: Option<usize>,
    /// Last line to return (inclusive).
    end_line: Option<usize>,
}

#[derive(Serialize)]
struct DocumentAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    path: String,
    /// A web page's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    title: String,
    start_line: usize,
    end_line: usize,
    total_lines: usize,
    truncated: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ReindexArgs {
    /// Only this collection; every one when left out.
    collection: Option<String>,
    /// Only this file or folder (relative to the collection's folder); everything when left out.
    /// A web collection is crawled whole.
    path: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ResolveArgs {
    /// A library's name (`serde`, `@types/node`, `requests`), with or without its ecosystem and
    /// version (`cargo:serde@1.0.219`).
    name: String,
}

/// A dependency library, as resolve_library lists it.
#[derive(Serialize)]
struct Resolved {
    /// `cargo:serde@1.0.219`: what search's `library` takes.
    library: String,
    ecosystem: String,
    name: String,
    version: String,
    /// The collection it is in.
    collection: String,
    /// Its indexed documents (README, API docs).
    documents: usize,
    /// Whether it is the name asked for (else a name that holds it: `serde` finds serde_json).
    exact: bool,
}

/// The libraries `wanted` names, or whose name holds it, exact ones first.
fn resolve(shared: &Shared, wanted: &str) -> Result<Vec<Resolved>, DocsError> {
    let needle = wanted.to_ascii_lowercase();
    let mut found = Vec::new();
    for collection in &shared.collections {
        let libraries = collection.libraries()?;
        if libraries.is_empty() {
            continue;
        }
        // Documents per library, in one pass.
        let mut documents: std::collections::HashMap<&str, usize> = Default::default();
        let sources = collection.library.sources()?;
        for source in &sources {
            if let Some(library) = deps::library_of(&source.path) {
                *documents.entry(library).or_default() += 1;
            }
        }
        for id in &libraries {
            let Some((ecosystem, name, version)) = deps::parse_id(id) else {
                continue;
            };
            let exact = deps::names(id, wanted);
            if !exact && !name.to_ascii_lowercase().contains(&needle) {
                continue;
            }
            found.push(Resolved {
                exact,
                ecosystem: ecosystem.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
                collection: collection.name.clone(),
                documents: documents.get(id.as_str()).copied().unwrap_or(0),
                library: id.clone(),
            });
        }
    }
    found.sort_by(|a, b| b.exact.cmp(&a.exact).then(a.library.cmp(&b.library)));
    Ok(found)
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SourcesArgs {
    /// Only this collection's documents; every collection's when left out.
    collection: Option<String>,
}

/// A collection at a glance, as list_sources and index_status show it.
#[derive(Serialize)]
struct CollectionSummary {
    name: String,
    /// What it indexes: a folder, a file or a web prefix.
    kind: String,
    source: String,
    #[serde(flatten)]
    status: Status,
}

/// An indexed document and its collection.
#[derive(Serialize)]
struct Document {
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    #[serde(flatten)]
    source: Source,
}

/// `index_status`: the sums, then each collection.
#[derive(Serialize)]
struct StatusAnswer {
    files: usize,
    chunks: usize,
    vectors: usize,
    model: Option<String>,
    dimensions: Option<usize>,
    /// The latest update of any collection (Unix seconds).
    updated_at: Option<i64>,
    /// Every failure (named `collection: path` when there are several).
    failures: Vec<(String, String)>,
    collections: Vec<CollectionSummary>,
}

/// How long ago `at` (Unix seconds) was, in words.
fn ago(at: Option<i64>) -> String {
    let Some(at) = at else {
        return "never updated".into();
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(at);
    let seconds = (now - at).max(0);
    match seconds {
        0..60 => "updated just now".into(),
        60..7200 => format!("updated {} min ago", seconds / 60),
        7200..172_800 => format!("updated {} h ago", seconds / 3600),
        _ => format!("updated {} days ago", seconds / 86_400),
    }
}

fn hit_text(rank: usize, hit: &Hit) -> String {
    let place = budget::place(&hit.title, &hit.headings);
    let url = hit
        .url
        .as_deref()
        .map(|url| format!(" <{url}>"))
        .unwrap_or_default();
    format!(
        "{rank}. {}{}:{}-{}{url} — {place} (score {:.3})\n   {}",
        collection::label(&hit.collection),
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

/// An update's progress with the collection's name before each stage (when there are several).
struct Named<'a> {
    name: Option<&'a str>,
    inner: &'a mut (dyn Progress + Send),
}

impl Progress for Named<'_> {
    fn stage(&mut self, name: &str, total: usize) {
        match self.name {
            Some(collection) => self.inner.stage(&format!("{collection}: {name}"), total),
            None => self.inner.stage(name, total),
        }
    }

    fn advance(&mut self, done: usize) {
        self.inner.advance(done);
    }

    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
}

/// `failures` (path, reason) with each path labelled by the collection `name` ([`collection::label`]).
fn labelled<'a>(
    name: &'a str,
    failures: &'a [(String, String)],
) -> impl Iterator<Item = (String, String)> + 'a {
    failures
        .iter()
        .map(move |(path, reason)| (format!("{}{path}", collection::label(name)), reason.clone()))
}

/// One collection's update report.
#[derive(Serialize)]
pub struct CollectionReport {
    /// The collection.
    pub collection: String,
    /// What its update did (a web collection's pages that failed among the failures, by URL).
    #[serde(flatten)]
    pub report: Report,
    /// What the crawl did, for a web collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crawl: Option<CrawlReport>,
    /// Which libraries were added, kept and dropped, for a dependency collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub libraries: Option<SyncReport>,
}

/// What an update of one or more collections did: the sums (failures named by collection when
/// there are several), then each collection's own report.
#[derive(Serialize)]
pub struct UpdateAnswer {
    /// The sums.
    #[serde(flatten)]
    pub total: Report,
    /// Each collection's report.
    pub collections: Vec<CollectionReport>,
}

impl UpdateAnswer {
    /// The sums of `collections`' reports, and the reports.
    fn new(collections: Vec<CollectionReport>) -> Self {
        let several = collections.len() > 1;
        let mut total = Report::default();
        for one in &collections {
            let r = &one.report;
            total.added += r.added;
            total.updated += r.updated;
            total.removed += r.removed;
            total.unchanged += r.unchanged;
            total.chunks += r.chunks;
            total.embedded += r.embedded;
            let name = if several { one.collection.as_str() } else { "" };
            total.failed.extend(labelled(name, &r.failed));
        }
        Self { total, collections }
    }

    /// The one collection's report ([`CollectionReport::text`]), or each one's under its name
    /// and the sums in a line.
    pub fn text(&self) -> String {
        match self.collections.as_slice() {
            [one] => one.text(),
            several => {
                let mut text: Vec<String> = several
                    .iter()
                    .map(|one| format!("{}{}", collection::label(&one.collection), one.text()))
                    .collect();
                let sums = report_text(&Report {
                    failed: Vec::new(),
                    ..self.total.clone()
                });
                text.push(format!("in all: {sums}"));
                text.join("\n")
            }
        }
    }
}

impl CollectionReport {
    /// What the crawl or the lock's sync did, then what the update did, and every failure.
    pub fn text(&self) -> String {
        let mut text = String::new();
        if let Some(crawl) = &self.crawl {
            text.push_str(&crawl_text(crawl));
            text.push('\n');
        }
        if let Some(libraries) = &self.libraries {
            text.push_str(&libraries_text(libraries));
            text.push('\n');
        }
        text.push_str(&report_text(&self.report));
        text
    }
}

/// Brings one collection up to date: a web source crawled (with `recrawl`, or when it never
/// was), a lock's libraries synced, then the files indexed; the failures of all three in its
/// report.
pub fn update_collection(
    one: &Collection,
    writer: &mut Writer,
    selection: &Selection,
    embedder: Option<&Embedder>,
    progress: &mut dyn Progress,
    recrawl: bool,
) -> Result<CollectionReport, DocsError> {
    let crawl = match &one.site {
        Some(site) if recrawl || !site.crawled() => {
            Some(site.crawl(progress).map_err(|e| match e {
                WebError::Stopped => DocsError::Stopped,
                other => DocsError::Source(other.to_string()),
            })?)
        }
        _ => None,
    };
    let libraries = match &one.deps {
        Some(deps) => Some(deps.sync().map_err(DocsError::Source)?),
        None => None,
    };
    let report = one.library.update(writer, selection, embedder, progress)?;
    Ok(collection_report(one, report, crawl, libraries))
}

/// Updates the collection `collection` (every one when `None`), or `path` in it (all of it when
/// `None`), here and now (blocking: embedding is CPU work).
pub fn update_now(
    shared: &Shared,
    collection: Option<&str>,
    path: Option<String>,
    progress: &mut (dyn Progress + Send),
) -> Result<UpdateAnswer, ToolError> {
    let chosen = shared.chosen(collection)?;
    if path.is_some() && chosen.len() > 1 {
        return Err(ToolError::new(
            "a path is in one collection; say which with collection",
        ));
    }
    let mut reports = Vec::new();
    for at in chosen {
        let one = &shared.collections[at];
        let selection = one.selection_of(path.clone()).map_err(ToolError::new)?;
        let mut guard = one
            .writer
            .lock()
            .map_err(|_| ToolError::new("the index writer is poisoned"))?;
        let Some(writer) = guard.as_mut() else {
            return Err(ToolError::new(format!(
                "another mcp-docs process holds the index of {}, so this one only searches it",
                one.name
            ))
            .with_hint("reindex from the process that holds it, or stop that one"));
        };
        let label = shared.label_of(one);
        let mut named = Named {
            name: (!label.is_empty()).then_some(label),
            inner: &mut *progress,
        };
        let report = update_collection(
            one,
            writer,
            &selection,
            shared.embedder.as_ref(),
            &mut named,
            true,
        )
        .map_err(|e| match e {
            DocsError::Source(reason) => {
                ToolError::new(format!("{}{reason}", collection::label(label)))
            }
            other => ToolError::from(other),
        })?;
        reports.push(report);
    }
    Ok(UpdateAnswer::new(reports))
}

/// One collection's report: for a web collection, the files that failed named by their URL and
/// the crawl's failures first among them.
fn collection_report(
    collection: &Collection,
    mut report: Report,
    mut crawl: Option<CrawlReport>,
    mut libraries: Option<SyncReport>,
) -> CollectionReport {
    if let Some(site) = &collection.site {
        for (path, _) in &mut report.failed {
            if let Some(url) = site.url_of(path) {
                *path = url;
            }
        }
    }
    if let Some(crawl) = &mut crawl {
        report.failed.splice(0..0, crawl.failed.drain(..));
    }
    if let Some(libraries) = &mut libraries {
        report.failed.splice(0..0, libraries.failed.drain(..));
    }
    CollectionReport {
        collection: collection.name.clone(),
        report,
        crawl,
        libraries,
    }
}

/// A crawl's report in a line.
fn crawl_text(crawl: &CrawlReport) -> String {
    let mut text = format!(
        "crawled: {} pages fetched, {} unchanged, {} dropped; {} pages kept",
        crawl.fetched, crawl.not_modified, crawl.removed, crawl.pages
    );
    for (count, what) in [
        (crawl.redirects.len(), "redirects followed"),
        (crawl.robots_excluded.len(), "URLs excluded by robots.txt"),
        (crawl.left_out, "links left out at the page cap"),
        (crawl.too_deep, "links past the depth cap"),
        (crawl.other_types, "links to files that are not documents"),
    ] {
        if count > 0 {
            text.push_str(&format!(", {count} {what}"));
        }
    }
    text.push('.');
    text
}

/// A dependency sync's report in a line.
fn libraries_text(libraries: &SyncReport) -> String {
    let mut text = format!(
        "libraries: {} added, {} unchanged, {} dropped",
        libraries.added.len(),
        libraries.unchanged,
        libraries.removed.len()
    );
    if !libraries.undocumented.is_empty() {
        text.push_str(&format!(
            "; {} with no README and no documented API ({})",
            libraries.undocumented.len(),
            libraries.undocumented.join(", ")
        ));
    }
    if libraries.optional_missing > 0 {
        text.push_str(&format!(
            "; {} optional packages not installed (another platform's), left out",
            libraries.optional_missing
        ));
    }
    text.push('.');
    text
}

/// [`update_now`] on a blocking thread.
pub async fn update(
    shared: Arc<Shared>,
    collection: Option<String>,
    path: Option<String>,
    mut progress: Box<dyn Progress + Send>,
) -> Result<UpdateAnswer, ToolError> {
    on_pool("the update", move || {
        update_now(&shared, collection.as_deref(), path, &mut *progress)
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
            libraries: Vec::new(),
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
        let collection = args.collection.clone();
        let library = args.library.clone();
        let semantic_off = self.shared.semantic_off(collection.as_deref())?;
        let hits = on_pool("the search", move || {
            shared.search(
                collection.as_deref(),
                library.as_deref(),
                &query,
                k,
                requested,
                &filter,
            )
        })
        .await??;
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
        let collection = args.collection.clone();
        let (name, url, (title, text, total)) = on_pool("reading", move || {
            let holder = shared.holder(collection.as_deref(), &path)?;
            let document = holder.library.document(&path, range)?;
            let url = holder.site.as_ref().and_then(|site| site.url_of(&path));
            Ok::<_, ToolError>((shared.several().then(|| holder.name.clone()), url, document))
        })
        .await??;
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
                collection: name,
                path: args.path,
                url,
                title,
                start_line: start,
                end_line: last,
                total_lines: total,
                truncated,
            },
        ))
    }

    #[tool(
        description = "List the collections (name, source, documents, chunks, when each was last updated) and the indexed documents (path, kind, title, chunks), of every collection or of one.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_sources(
        &self,
        Parameters(args): Parameters<SourcesArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let chosen = self.shared.chosen(args.collection.as_deref())?;
        let several = self.shared.several();
        let collections = self.summaries()?;
        let mut documents = Vec::new();
        let mut total = 0;
        for &at in &chosen {
            let collection = &self.shared.collections[at];
            let sources = collection.library.sources()?;
            total += sources.len();
            let room = MAX_SOURCES.saturating_sub(documents.len());
            documents.extend(sources.into_iter().take(room).map(|source| Document {
                collection: several.then(|| collection.name.clone()),
                source,
            }));
        }
        let mut text = collections
            .iter()
            .map(|c| {
                format!(
                    "collection {}: {} {} ({} documents, {} chunks, {})",
                    c.name,
                    c.kind,
                    c.source,
                    c.status.files,
                    c.status.chunks,
                    ago(c.status.updated_at)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        for document in &documents {
            let s = &document.source;
            text.push_str(&format!(
                "\n{}{}\t{}\t{}\t{} chunks",
                collection::label(document.collection.as_deref().unwrap_or_default()),
                s.path,
                s.kind,
                s.title,
                s.chunks
            ));
        }
        if total > documents.len() {
            text.push_str(&format!(
                "\n[… {} more; search finds them]",
                total - documents.len()
            ));
        }
        Ok(structured(
            text,
            &serde_json::json!({"collections": collections, "sources": documents, "total": total}),
        ))
    }

    #[tool(
        description = "Find the dependency libraries indexed under a name (from Cargo.lock, package-lock.json, uv.lock or requirements.txt): each library's id (`cargo:serde@1.0.219`), ecosystem, name, version, collection and documents. Pass an id or a name to search's `library`.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn resolve_library(
        &self,
        Parameters(args): Parameters<ResolveArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let wanted = args.name.trim().to_owned();
        if wanted.is_empty() {
            return Err(ToolError::new("the name is empty"));
        }
        let shared = self.shared.clone();
        let found = on_pool("resolving", move || resolve(&shared, &wanted)).await??;
        let text = if found.is_empty() {
            format!(
                "No indexed library is called {:?}. Index a project's lock file: mcp-docs serve --deps Cargo.lock",
                args.name
            )
        } else {
            found
                .iter()
                .map(|l| {
                    format!(
                        "{} ({} documents, in {})",
                        l.library, l.documents, l.collection
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(structured(text, &serde_json::json!({ "libraries": found })))
    }

    #[tool(
        description = "The index at a glance: for each collection its source, files, chunks, vectors and last update; the embedding model; every file that failed, with the reason.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn index_status(&self) -> Result<CallToolResult, ToolError> {
        let collections = self.summaries()?;
        let several = self.shared.several();
        let model = collections.iter().find_map(|c| c.status.model.clone());
        let answer = StatusAnswer {
            files: collections.iter().map(|c| c.status.files).sum(),
            chunks: collections.iter().map(|c| c.status.chunks).sum(),
            vectors: collections.iter().map(|c| c.status.vectors).sum(),
            dimensions: collections.iter().find_map(|c| c.status.dimensions),
            updated_at: collections.iter().filter_map(|c| c.status.updated_at).max(),
            failures: collections
                .iter()
                .flat_map(|c| labelled(if several { &c.name } else { "" }, &c.status.failures))
                .collect(),
            model,
            collections,
        };
        let mut text = answer
            .collections
            .iter()
            .map(|c| {
                format!(
                    "{}: {} files, {} chunks ({} with vectors) from {}; {}.",
                    c.name,
                    c.status.files,
                    c.status.chunks,
                    c.status.vectors,
                    c.source,
                    ago(c.status.updated_at)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        text.push_str(&format!(
            "\nmodel: {}.",
            answer.model.as_deref().unwrap_or("none (BM25 only)")
        ));
        if let Some(note) = &self.shared.model_note {
            text.push_str(&format!("\nSemantic search is off: {note}"));
        }
        for (path, reason) in &answer.failures {
            text.push_str(&format!("\nfailed: {path}: {reason}"));
        }
        Ok(structured(text, &answer))
    }

    #[tool(
        description = "Bring the index up to date with the sources (only changed files are read again; deleted ones are dropped): every collection, one, or one file or folder of one. Reports progress while it runs.",
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
                    let scope = Scope {
                        collection: args.collection,
                        path: args.path,
                    };
                    reindex_task(shared, scope, task)
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
        let answer = update(self.shared.clone(), args.collection, args.path, progress).await;
        if let Some(sending) = sending {
            let _ = sending.await;
        }
        Ok(match answer {
            Ok(answer) => structured(answer.text(), &answer).into(),
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
    let collection = read.var("collection").to_owned();
    let lookup = path.clone();
    let (_, text, _) = on_pool("reading", move || {
        let at = if shared.several() {
            shared
                .position(&collection)
                .map_err(|e| e.message().to_owned())?
        } else {
            0
        };
        shared.collections[at]
            .library
            .document(&lookup, None)
            .map_err(|e| e.to_string())
    })
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
            "Search over the documents in {} (Markdown, text, HTML, PDF, Word, EPUB, notebooks, \
             source code). Use search first (hybrid by default; collection narrows it to one), \
             then get_document with the path and lines it gives (and its collection, if it \
             names one); cite the path and lines (and the url, for web pages).{}",
            self.shared
                .collections
                .iter()
                .map(|c| format!("{} ({})", c.name, c.source.display()))
                .collect::<Vec<_>>()
                .join(", "),
            if self.shared.collections.iter().any(|c| c.deps.is_some()) {
                " For a dependency's docs at the version the project pins, resolve_library \
                 gives its id; pass it (or its name) to search as library."
            } else {
                ""
            }
        ))
    }

    // tasks/get, tasks/update and tasks/cancel.
    mcp_core::task_methods!(tasks);

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let mut resources = Vec::new();
        for collection in &self.shared.collections {
            let sources = collection
                .library
                .sources()
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            let prefix = if self.shared.several() {
                format!("{URI_PREFIX}{}/", collection.name)
            } else {
                URI_PREFIX.to_owned()
            };
            let room = MAX_SOURCES.saturating_sub(resources.len());
            resources.extend(sources.iter().take(room).map(|s| {
                Resource::new(format!("{prefix}{}", s.path), s.title.clone())
                    .with_description(format!("{} ({} chunks)", s.kind, s.chunks))
            }));
        }
        Ok(ListResourcesResult::with_all_items(resources))
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
