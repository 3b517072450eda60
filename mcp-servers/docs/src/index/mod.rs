//! The index of one collection, in one of two stores.
//!
//! Local (the default), in a data directory: `tantivy/` (BM25 over text, title, headings and
//! path, and the stored chunks) and `docs.sqlite` (the files with their content hashes, the
//! failures, the chunks' vectors, and the model and dimension the vectors came from). One
//! writer at a time: tantivy's lock file stops a second indexer, and it is reported as such.
//!
//! PostgreSQL (`--store postgres://…`, [`pg`]): the same in tables that several processes on
//! several machines share, full-text search and pgvector's HNSW index doing the ranking.
//!
//! Readers (searches) keep working while an update runs; they see it when it commits.
//!
//! [`Library`] is opened here; `update` writes it (walking, reading, chunking and embedding
//! are the same for both stores), `search` reads it, `catalog` keeps every local chunk's file
//! and vector in memory, `schema` says what tantivy stores.

mod archive;
mod catalog;
pub mod pg;
mod schema;
mod search;
mod update;

pub use search::{DENSE_WEIGHT, fuse, search};
pub use update::{BATCH_CHUNKS, embedding_text, walk};

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use mcp_core::sandbox::{FinalLink, Resolved, Sandbox, SandboxError, open_regular, read_open};
use rusqlite::{Connection, OptionalExtension as _};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, directory::MmapDirectory, doc};

use crate::{
    embed::{ModelError, ModelId},
    extract::{self, Kind},
};

use self::{
    catalog::Catalog,
    schema::{Fields, schema},
};

/// Files bigger than this are reported, not read.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Why the index could not be opened, updated or searched; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    /// The update was stopped before it was done (what it wrote stays).
    #[error(
        "the update was stopped before it was done; what it wrote stays, and the next update takes up the rest"
    )]
    Stopped,
    /// Another process holds the index.
    #[error(
        "the index in {0} is in use by another mcp-docs process (indexing or serving); stop it, or \
         give this one its own --data-dir"
    )]
    Busy(PathBuf),
    /// The index was built with another embedding model.
    #[error(
        "{index} was built with the embedding model {built} ({built_dim} dimensions), but the \
         model now loaded is {now} ({now_dim} dimensions); its vectors cannot be mixed. Rebuild \
         it with `mcp-docs index --rebuild …`, or load the model it was built with"
    )]
    ModelMismatch {
        /// Which index (`the index in DIR`, `the collection NAME in the PostgreSQL store`).
        index: String,
        /// The model it was built with.
        built: String,
        /// Its dimensions.
        built_dim: usize,
        /// The model loaded now.
        now: String,
        /// Its dimensions.
        now_dim: usize,
    },
    /// The index has vectors but no model is loaded.
    #[error(
        "{index} holds vectors of {built}, and no embedding model is loaded, so new chunks \
         would get none: {reason}"
    )]
    ModelMissing {
        /// Which index, as for [`DocsError::ModelMismatch`].
        index: String,
        /// The model it was built with.
        built: String,
        /// Why no model is loaded.
        reason: String,
    },
    /// The index was written by another version.
    #[error(
        "the index in {0} was written by another version of mcp-docs; rebuild it with \
         `mcp-docs index --rebuild …`"
    )]
    OtherFormat(PathBuf),
    /// A web or dependency source could not be brought up to date (the crawl's or the lock's
    /// own error; the index is left as it was).
    #[error("{0}")]
    Source(String),
    /// No index in the data directory.
    #[error("no index in {0}: run `mcp-docs index DIR` first")]
    NoIndex(PathBuf),
    /// No indexed document has that path.
    #[error("{0} is not an indexed document (list_sources lists them)")]
    UnknownDocument(String),
    /// A glob that does not parse: the glob and why.
    #[error("bad glob {0:?}: {1}")]
    Glob(String, String),
    /// The embedding model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The manifest database failed.
    #[error("index database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The PostgreSQL store failed (its message, and what to do when it is ours).
    #[error("PostgreSQL store: {0}")]
    Postgres(String),
    /// A file operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl mcp_core::tool::Hinted for DocsError {
    fn hint(&self) -> Option<String> {
        match self {
            DocsError::UnknownDocument(_) => {
                Some("search or list_sources name the documents".into())
            }
            _ => None,
        }
    }
}

/// How search ranks.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BM25 and embeddings, fused.
    #[default]
    Hybrid,
    /// Words (tantivy BM25).
    Bm25,
    /// Meaning (embeddings).
    Semantic,
}

/// One result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Hit {
    /// The collection it is from (empty when one index was searched alone).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub collection: String,
    /// The document's path, relative to the indexed folder.
    pub path: String,
    /// A web page's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The document's title.
    pub title: String,
    /// The headings above the passage, outermost first.
    pub headings: Vec<String>,
    /// First and last line of the document (1-based, inclusive).
    pub lines: [u64; 2],
    /// The best passage, matched terms in `**bold**`.
    pub snippet: String,
    /// The chunk's whole text (for answers fitted to a token budget).
    #[serde(skip)]
    pub text: String,
    /// The fused score (higher is better).
    pub score: f32,
    /// The chunk's id in the index.
    #[serde(skip)]
    pub id: u64,
}

/// Restricting a search.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Glob on the document's path relative to the indexed folder (`docs/**/*.md`).
    pub path_glob: Option<String>,
    /// Kinds (`markdown`, `html`, `pdf`, `rust`, …) or extensions (`md`, `rs`).
    pub file_types: Vec<String>,
    /// Only documents of these libraries (`cargo:serde@1.0.219`: the folder they are in).
    pub libraries: Vec<String>,
}

/// What an update did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Files new to the index.
    pub added: usize,
    /// Files whose content changed.
    pub updated: usize,
    /// Files gone from the folder.
    pub removed: usize,
    /// Files left as they were.
    pub unchanged: usize,
    /// Chunks written.
    pub chunks: usize,
    /// Chunks whose vectors were computed.
    pub embedded: usize,
    /// Files that could not be indexed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Which files to index.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only paths matching one of these globs (all when empty).
    pub include: Vec<String>,
    /// Paths matching one of these globs are skipped.
    pub exclude: Vec<String>,
    /// Only this file or folder (relative to the root): the rest of the index is left as it is.
    pub scope: Option<String>,
}

impl Selection {
    fn in_scope(&self, relative: &str) -> bool {
        match self.scope.as_deref().map(|s| s.trim_matches('/')) {
            None | Some("") | Some(".") => true,
            Some(scope) => {
                relative == scope
                    || relative.strip_prefix(scope).is_some_and(|rest| {
                        rest.starts_with('/') || rest.starts_with(archive::SEPARATOR)
                    })
            }
        }
    }
}

/// Progress of an update: a stage and how far it is.
pub trait Progress {
    /// A new stage (`reading`, `embedding`, …) of `total` steps.
    fn stage(&mut self, name: &str, total: usize);
    /// `done` steps of the stage are done.
    fn advance(&mut self, done: usize);
    /// Whether whoever asked for the update wants it stopped (checked between files: what was
    /// written stays, and the next update takes up the rest).
    fn stopped(&self) -> bool {
        false
    }
}

impl Progress for () {
    fn stage(&mut self, _: &str, _: usize) {}
    fn advance(&mut self, _: usize) {}
}

/// An index, open.
pub struct Library {
    dir: PathBuf,
    store: Store,
    /// The folder the documents are in (relative paths are relative to it).
    root: PathBuf,
    /// The same folder opened as a sandbox: every document is read through it, never by path,
    /// so a link swapped in for an indexed file (or a directory on its way) cannot lead out.
    /// `None` when the folder cannot be opened (a search of an index whose folder is gone).
    folder: Option<Sandbox>,
    /// The model the vectors came from, as recorded.
    model: RwLock<Option<ModelId>>,
    /// Chunks an update holds before writing them.
    batch_chunks: usize,
}

/// Where an index is.
enum Store {
    Local(Local),
    Postgres(pg::Stored),
}

/// The local index: tantivy, the manifest, and the catalog of chunks in memory.
struct Local {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    db: Mutex<Connection>,
    catalog: RwLock<Arc<Catalog>>,
}

impl Local {
    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The right to change an index: tantivy's writer, holding its lock, for a local one; a
/// PostgreSQL store's updates take their collection's lock each time.
pub struct Writer {
    writer: Option<IndexWriter>,
}

pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Library {
    /// Opens (creating when `create`) the index in `dir` for the folder `root`. With `write`,
    /// takes the writer (and its lock). The model the index was built with must be the one
    /// given, if any is given.
    pub fn open(
        dir: &Path,
        root: &Path,
        model: Option<&ModelId>,
        create: bool,
        write: bool,
    ) -> Result<(Self, Option<Writer>), DocsError> {
        let tantivy_dir = dir.join("tantivy");
        if !create && !tantivy_dir.join("meta.json").is_file() {
            return Err(DocsError::NoIndex(dir.to_owned()));
        }
        std::fs::create_dir_all(&tantivy_dir)?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(&tantivy_dir)
            .map_err(|e| DocsError::Io(std::io::Error::other(e.to_string())))?;
        let index = match Index::open_or_create(directory, schema) {
            Ok(index) => index,
            Err(tantivy::TantivyError::SchemaError(_)) => {
                return Err(DocsError::OtherFormat(dir.to_owned()));
            }
            Err(error) => return Err(error.into()),
        };
        let writer = if write {
            match index.writer(64 * 1024 * 1024) {
                Ok(writer) => Some(Writer {
                    writer: Some(writer),
                }),
                Err(tantivy::TantivyError::LockFailure(..)) => {
                    return Err(DocsError::Busy(dir.to_owned()));
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            None
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let db = Connection::open(dir.join("docs.sqlite"))?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, hash TEXT NOT NULL,
                 kind TEXT NOT NULL, title TEXT NOT NULL, chunks INTEGER NOT NULL,
                 indexed_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS failures (path TEXT PRIMARY KEY, reason TEXT NOT NULL,
                 at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL,
                 vector BLOB);
             CREATE INDEX IF NOT EXISTS chunks_path ON chunks (path);",
        )?;
        let meta = |key: &str| -> Result<Option<String>, rusqlite::Error> {
            db.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        };
        let built = match (meta("model")?, meta("dim")?) {
            (Some(name), Some(dim)) => Some(ModelId {
                name,
                dim: dim.parse().unwrap_or(0),
            }),
            _ => None,
        };
        check_model(|| local_index(dir), built.as_ref(), model)?;
        if write {
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('root', ?1)",
                [root.display().to_string()],
            )?;
        }
        let local = Local {
            index,
            reader,
            fields,
            db: Mutex::new(db),
            catalog: RwLock::new(Arc::new(Catalog::default())),
        };
        local.load_catalog()?;
        Ok((Self::new(dir, root, Store::Local(local), built), writer))
    }

    fn new(dir: &Path, root: &Path, store: Store, model: Option<ModelId>) -> Self {
        Self {
            dir: dir.to_owned(),
            store,
            root: root.to_owned(),
            folder: Sandbox::new(&[root]).ok(),
            model: RwLock::new(model),
            batch_chunks: BATCH_CHUNKS,
        }
    }

    /// Opens the collection `name` in the PostgreSQL store `database`, for the folder `root`
    /// (`dir` is the collection's data directory, which keeps a web or dependency source's
    /// mirror). `described` (kind, source) makes the collection when the store has none of that
    /// name, and records where it comes from; without it, the collection must exist. With
    /// `write`, updates are allowed (each takes the collection's lock in the store while it
    /// runs). The model the vectors were made with must be the one given, if any is given.
    pub fn open_stored(
        database: &pg::Database,
        name: &str,
        described: Option<(&str, &str)>,
        dir: &Path,
        root: &Path,
        model: Option<&ModelId>,
        write: bool,
    ) -> Result<(Self, Option<Writer>), DocsError> {
        let root_text = root.display().to_string();
        let (stored, built) = database.open(
            name,
            described.map(|(kind, source)| (kind, source, &*root_text)),
        )?;
        check_model(|| stored.describe(), built.as_ref(), model)?;
        let library = Self::new(dir, root, Store::Postgres(stored), built);
        Ok((library, write.then_some(Writer { writer: None })))
    }

    /// Deletes the index in `dir`, whatever version wrote it, once no other process uses it.
    pub fn remove(dir: &Path) -> Result<(), DocsError> {
        let tantivy_dir = dir.join("tantivy");
        // Take the lock first, so a running server is not pulled from under.
        let _writer: Option<IndexWriter> = if tantivy_dir.join("meta.json").is_file() {
            let directory = MmapDirectory::open(&tantivy_dir)
                .map_err(|e| DocsError::Io(std::io::Error::other(e.to_string())))?;
            match Index::open(directory)?.writer_with_num_threads(1, 15_000_000) {
                Ok(writer) => Some(writer),
                Err(tantivy::TantivyError::LockFailure(..)) => {
                    return Err(DocsError::Busy(dir.to_owned()));
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            None
        };
        match std::fs::remove_dir_all(dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    /// Which index this is, as errors name it.
    fn describe(&self) -> String {
        match &self.store {
            Store::Local(_) => local_index(&self.dir),
            Store::Postgres(stored) => stored.describe(),
        }
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The indexed folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model the index's vectors came from.
    pub fn model(&self) -> Option<ModelId> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sees what another process committed.
    pub fn refresh(&self) -> Result<(), DocsError> {
        match &self.store {
            Store::Local(local) => {
                local.reader.reload()?;
                local.load_catalog()
            }
            Store::Postgres(stored) => {
                *self.model.write().unwrap_or_else(|p| p.into_inner()) = stored.model()?;
                Ok(())
            }
        }
    }

    /// The kind of the indexed document `path` (`None`: not indexed).
    fn kind_of(&self, path: &str) -> Result<Option<String>, DocsError> {
        match &self.store {
            Store::Local(local) => Ok(local
                .db()
                .query_row("SELECT kind FROM files WHERE path = ?1", [path], |r| {
                    r.get(0)
                })
                .optional()?),
            Store::Postgres(stored) => stored.kind(path),
        }
    }

    /// Whether `path` is an indexed document.
    pub fn has(&self, path: &str) -> Result<bool, DocsError> {
        Ok(self.kind_of(path)?.is_some())
    }

    /// Every indexed file: path, kind, title, chunks.
    pub fn sources(&self) -> Result<Vec<Source>, DocsError> {
        let local = match &self.store {
            Store::Local(local) => local,
            Store::Postgres(stored) => return stored.sources(),
        };
        let db = local.db();
        let mut statement =
            db.prepare("SELECT path, kind, title, chunks, indexed_at FROM files ORDER BY path")?;
        let sources = statement
            .query_map([], |r| {
                Ok(Source {
                    path: r.get(0)?,
                    kind: r.get(1)?,
                    title: r.get(2)?,
                    chunks: r.get::<_, i64>(3)? as usize,
                    indexed_at: r.get(4)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(sources)
    }

    /// Counts, failures, the model, the last update.
    pub fn status(&self) -> Result<Status, DocsError> {
        let local = match &self.store {
            Store::Local(local) => local,
            Store::Postgres(stored) => {
                let counts = stored.counts()?;
                return Ok(Status {
                    root: self.root.display().to_string(),
                    data_dir: self.dir.display().to_string(),
                    files: counts.files,
                    chunks: counts.chunks,
                    vectors: counts.vectors,
                    model: self.model().map(|m| m.name),
                    dimensions: self.model().map(|m| m.dim),
                    updated_at: counts.updated_at,
                    failures: counts.failures,
                });
            }
        };
        let db = local.db();
        let count = |sql: &str| {
            db.query_row(sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as usize)
        };
        let failures = {
            let mut statement = db.prepare("SELECT path, reason FROM failures ORDER BY path")?;
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(String, String)>, _>>()?
        };
        let updated_at: Option<String> = db
            .query_row("SELECT value FROM meta WHERE key = 'updated_at'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(Status {
            root: self.root.display().to_string(),
            data_dir: self.dir.display().to_string(),
            files: count("SELECT count(*) FROM files")?,
            chunks: count("SELECT count(*) FROM chunks")?,
            vectors: count("SELECT count(*) FROM chunks WHERE vector IS NOT NULL")?,
            model: self.model().map(|m| m.name),
            dimensions: self.model().map(|m| m.dim),
            updated_at: updated_at.and_then(|s| s.parse().ok()),
            failures,
        })
    }

    /// The file at `relative` (a path the walk gave: clean, beneath the folder), opened through
    /// the folder's sandbox: a regular file, never through a symbolic link (the walk lists none,
    /// so one found now was swapped in). Returns it with its size and where it is.
    fn open_file(&self, relative: &str) -> Result<(cap_std::fs::File, u64, Resolved), String> {
        let folder = self.folder.as_ref().ok_or_else(|| {
            format!(
                "the indexed folder {} cannot be opened",
                self.root.display()
            )
        })?;
        let rel = Path::new(relative);
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "{relative} is not a path inside the indexed folder"
            ));
        }
        let root = folder
            .roots()
            .first()
            .ok_or_else(|| format!("the indexed folder {} is not open", self.root.display()))?;
        let resolved = Resolved {
            root: root.clone(),
            rel: rel.to_owned(),
        };
        let (file, size) = open_regular(&resolved, FinalLink::Refuse).map_err(|e| e.to_string())?;
        Ok((file, size, resolved))
    }

    /// The bytes of the document at `relative`: a file of at most [`MAX_FILE_BYTES`] read
    /// through the folder's sandbox ([`Library::open_file`]), or a document inside an archive
    /// (`archive.zip!/inner/path`), read from the archive `open` holds if it is that one, else
    /// from the archive opened (and left in `open`) now.
    fn read(&self, relative: &str, open: &mut Option<archive::Open>) -> Result<Vec<u8>, String> {
        if let Some((archive, inner)) = archive::split(relative) {
            return self.open_archive(archive, open)?.read(inner);
        }
        let (file, size, resolved) = self.open_file(relative)?;
        read_open(file, size, &resolved, MAX_FILE_BYTES).map_err(|error| match error {
            SandboxError::TooLarge { size, .. } => format!(
                "too large ({} MB; the limit is {} MB)",
                size / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            other => other.to_string(),
        })
    }

    /// The archive `relative`: the one `open` holds if it is that one, else opened now and left
    /// in `open`.
    fn open_archive<'a>(
        &self,
        relative: &str,
        open: &'a mut Option<archive::Open>,
    ) -> Result<&'a mut archive::Open, String> {
        if !open.as_ref().is_some_and(|o| o.is(relative)) {
            *open = None;
            let (file, _, _) = self.open_file(relative)?;
            *open = Some(archive::Open::new(relative, file)?);
        }
        open.as_mut()
            .ok_or_else(|| format!("{relative} could not be opened"))
    }

    /// A document's text (as `extract` sees it), whole or lines `start..=end`, with its title.
    /// Only indexed documents can be read, and only from the indexed folder.
    pub fn document(
        &self,
        path: &str,
        lines: Option<(usize, usize)>,
    ) -> Result<(String, String, usize), DocsError> {
        let relative = path
            .strip_prefix(&format!("{}/", self.root.display()))
            .unwrap_or(path)
            .to_owned();
        let (title, text) = match &self.store {
            // The text as it was indexed: a replica need not have the source.
            Store::Postgres(stored) => stored
                .document(&relative)?
                .ok_or_else(|| DocsError::UnknownDocument(path.to_owned()))?,
            Store::Local(_) => {
                if self.kind_of(&relative)?.is_none() {
                    return Err(DocsError::UnknownDocument(path.to_owned()));
                }
                let full = self.root.join(&relative);
                let kind =
                    Kind::of(&full).ok_or_else(|| DocsError::UnknownDocument(path.to_owned()))?;
                let bytes = self
                    .read(&relative, &mut None)
                    .map_err(|e| DocsError::Io(std::io::Error::other(e)))?;
                let document = extract::extract(&full, kind, &bytes)
                    .map_err(|e| DocsError::Io(std::io::Error::other(e.to_string())))?;
                (document.title, document.text)
            }
        };
        let total = text.lines().count();
        let text = match lines {
            None => text,
            Some((start, end)) => text
                .lines()
                .skip(start.saturating_sub(1))
                .take(end.saturating_sub(start.max(1)) + 1)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Ok((title, text, total))
    }
}

/// An indexed file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    /// Its path, relative to the indexed folder.
    pub path: String,
    /// Its kind (`markdown`, `pdf`, `rust`, …).
    pub kind: String,
    /// Its title.
    pub title: String,
    /// How many chunks it has.
    pub chunks: usize,
    /// When it was indexed (Unix seconds).
    pub indexed_at: i64,
}

/// The index at a glance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The indexed folder.
    pub root: String,
    /// Where the index lives.
    pub data_dir: String,
    /// Indexed files.
    pub files: usize,
    /// Chunks.
    pub chunks: usize,
    /// Chunks with vectors.
    pub vectors: usize,
    /// The embedding model the vectors came from.
    pub model: Option<String>,
    /// Its dimensions.
    pub dimensions: Option<usize>,
    /// The last update (Unix seconds).
    pub updated_at: Option<i64>,
    /// Files that could not be indexed, with the reason.
    pub failures: Vec<(String, String)>,
}

/// A local index, as errors name it.
fn local_index(dir: &Path) -> String {
    format!("the index in {}", dir.display())
}

/// Refuses to open an index whose vectors came from `built` with another `model` (`index` names
/// it).
fn check_model(
    index: impl FnOnce() -> String,
    built: Option<&ModelId>,
    model: Option<&ModelId>,
) -> Result<(), DocsError> {
    match (built, model) {
        (Some(built), Some(now)) if built != now => Err(DocsError::ModelMismatch {
            index: index(),
            built: built.name.clone(),
            built_dim: built.dim,
            now: now.name.clone(),
            now_dim: now.dim,
        }),
        _ => Ok(()),
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}
