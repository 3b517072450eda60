//! The index on disk, in a data directory: `tantivy/` (BM25 over text, title, headings and path,
//! and the stored chunks) and `docs.sqlite` (the files with their content hashes, the failures,
//! the chunks' vectors, and the model and dimension the vectors came from).
//!
//! One writer at a time: tantivy's lock file stops a second indexer, and it is reported as such.
//! Readers (searches) keep working while an update runs; they see it when it commits.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{SystemTime, UNIX_EPOCH},
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use mcp_core::sandbox::{FinalLink, Resolved, Sandbox, SandboxError, read_regular};
use rusqlite::{Connection, OptionalExtension as _, params};
use sha2::{Digest as _, Sha256};
use tantivy::{
    Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term,
    collector::TopDocs,
    directory::MmapDirectory,
    doc,
    query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery, TermSetQuery},
    schema::{
        FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TEXT, TextFieldIndexing,
        TextOptions, Value as _,
    },
    snippet::SnippetGenerator,
};

use crate::{
    chunk::{self, Chunk, Sizes},
    embed::{Embedder, ModelError, ModelId},
    extract::{self, ExtractError, Kind},
};

/// Files bigger than this are reported, not read.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// Chunks an update reads before it embeds and writes them: about 8 MB of text, as much again
/// for the texts the model reads, and 12 MB of vectors (384 dimensions), whatever the size of
/// the folder.
pub const BATCH_CHUNKS: usize = 8192;

/// A changed file, read and chunked, waiting to be written.
struct Fresh {
    relative: String,
    hash: String,
    kind: Kind,
    title: String,
    chunks: Vec<Chunk>,
}

/// Changed files waiting to be written, from the walk's file `first` on, and how many batches
/// were written before.
#[derive(Default)]
struct Batch {
    files: Vec<Fresh>,
    chunks: usize,
    first: usize,
    written: usize,
}

impl Batch {
    fn push(&mut self, fresh: Fresh) {
        self.chunks += fresh.chunks.len();
        self.files.push(fresh);
    }

    fn is_full(&self, chunks: usize) -> bool {
        self.chunks >= chunks
    }

    /// Empties the batch once it is written.
    fn written(&mut self) {
        if !self.files.is_empty() {
            self.written += 1;
        }
        self.files.clear();
        self.chunks = 0;
    }
}

/// How much of a batch is embedded.
#[derive(Clone, Copy)]
struct Share {
    done: usize,
    total: usize,
}

impl Share {
    /// The same share of `n`.
    fn scale(self, n: usize) -> usize {
        n * self.done / self.total.max(1)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocsError {
    #[error(
        "the index in {0} is in use by another mcp-docs process (indexing or serving); stop it, or \
         give this one its own --data-dir"
    )]
    Busy(PathBuf),
    #[error(
        "the index in {dir} was built with the embedding model {built} ({built_dim} dimensions), \
         but the model now loaded is {now} ({now_dim} dimensions); its vectors cannot be mixed. \
         Rebuild it with `mcp-docs index --rebuild …`, or load the model it was built with"
    )]
    ModelMismatch {
        dir: PathBuf,
        built: String,
        built_dim: usize,
        now: String,
        now_dim: usize,
    },
    #[error(
        "the index in {dir} holds vectors of {built}, and no embedding model is loaded, so new \
         chunks would get none: {reason}"
    )]
    ModelMissing {
        dir: PathBuf,
        built: String,
        reason: String,
    },
    #[error(
        "the index in {0} was written by another version of mcp-docs; rebuild it with \
         `mcp-docs index --rebuild …`"
    )]
    OtherFormat(PathBuf),
    #[error("no index in {0}: run `mcp-docs index DIR` first")]
    NoIndex(PathBuf),
    #[error("{0} is not an indexed document (list_sources lists them)")]
    UnknownDocument(String),
    #[error("bad glob {0:?}: {1}")]
    Glob(String, String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("index database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
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
    pub path: String,
    pub title: String,
    pub headings: Vec<String>,
    /// First and last line of the document (1-based, inclusive).
    pub lines: [u64; 2],
    /// The best passage, matched terms in `**bold**`.
    pub snippet: String,
    pub score: f32,
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
}

/// What an update did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub chunks: usize,
    /// Chunks whose vectors were computed.
    pub embedded: usize,
    /// Files that could not be indexed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Which files to index.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub include: Vec<String>,
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
                    || relative
                        .strip_prefix(scope)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// Progress of an update: a stage and how far it is.
pub trait Progress {
    fn stage(&mut self, name: &str, total: usize);
    fn advance(&mut self, done: usize);
}

impl Progress for () {
    fn stage(&mut self, _: &str, _: usize) {}
    fn advance(&mut self, _: usize) {}
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    path: Field,
    path_text: Field,
    kind: Field,
    extension: Field,
    title: Field,
    headings: Field,
    text: Field,
    line_start: Field,
    line_end: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let stemmed = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("en_stem")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        )
        .set_stored();
    let fields = Fields {
        // FAST: ranking reads a candidate's id from its column, not from the document store.
        id: builder.add_u64_field("id", INDEXED | STORED | FAST),
        path: builder.add_text_field("path", STRING | STORED),
        path_text: builder.add_text_field("path_text", TEXT),
        kind: builder.add_text_field("kind", STRING | STORED),
        extension: builder.add_text_field("extension", STRING),
        title: builder.add_text_field("title", stemmed.clone()),
        headings: builder.add_text_field("headings", stemmed.clone()),
        text: builder.add_text_field("text", stemmed),
        line_start: builder.add_u64_field("line_start", STORED),
        line_end: builder.add_u64_field("line_end", STORED),
    };
    (builder.build(), fields)
}

/// Every chunk's unit vector, contiguous, for exact search.
/// Every chunk in memory: its file (for filters, without touching the document store) and its
/// unit vector, contiguous, for exact search.
#[derive(Default)]
struct Catalog {
    /// Every chunk's id, ascending, and the index of its file in `files`.
    ids: Vec<u64>,
    file_of: Vec<u32>,
    /// Path and kind.
    files: Vec<(String, String)>,
    /// The chunks that have a vector: their positions in `ids`, and the vectors.
    with_vector: Vec<u32>,
    data: Vec<f32>,
    dim: usize,
}

impl Catalog {
    /// The file of chunk `id`.
    fn file(&self, id: u64) -> Option<usize> {
        let at = self.ids.binary_search(&id).ok()?;
        Some(self.file_of[at] as usize)
    }

    /// The `n` nearest chunks to `query` (cosine), best first, among those whose file `keep`
    /// allows.
    fn nearest(
        &self,
        query: &[f32],
        n: usize,
        mut keep: impl FnMut(usize) -> bool,
    ) -> Vec<(u64, f32)> {
        if self.dim == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let mut scored: Vec<(u64, f32)> = self
            .data
            .chunks_exact(self.dim)
            .zip(&self.with_vector)
            .filter(|(_, at)| keep(self.file_of[**at as usize] as usize))
            .map(|(v, at)| (self.ids[*at as usize], dot(v, query)))
            .collect();
        let n = n.min(scored.len());
        if n == 0 {
            return Vec::new();
        }
        scored.select_nth_unstable_by(n - 1, |a, b| b.1.total_cmp(&a.1));
        scored.truncate(n);
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored
    }
}

/// `a · b`, summed in eight lanes so the compiler can use vector instructions (a single running
/// sum is a chain of dependent additions it may not reorder).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// An index, open.
pub struct Library {
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    db: Mutex<Connection>,
    catalog: RwLock<Arc<Catalog>>,
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

/// The right to change an index (tantivy's writer, holding its lock).
pub struct Writer {
    writer: IndexWriter,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Notes in the manifest which model the vectors come from (one model per index: `open`
/// refuses another).
fn record_model(
    tx: &rusqlite::Transaction<'_>,
    embedder: Option<&Embedder>,
) -> rusqlite::Result<()> {
    if let Some(embedder) = embedder {
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('model', ?1)",
            [&embedder.id.name],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('dim', ?1)",
            [embedder.id.dim.to_string()],
        )?;
    }
    Ok(())
}

fn to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
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
                Ok(writer) => Some(Writer { writer }),
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
        if let (Some(built), Some(now)) = (&built, model)
            && built != now
        {
            return Err(DocsError::ModelMismatch {
                dir: dir.to_owned(),
                built: built.name.clone(),
                built_dim: built.dim,
                now: now.name.clone(),
                now_dim: now.dim,
            });
        }
        if write {
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('root', ?1)",
                [root.display().to_string()],
            )?;
        }
        let library = Self {
            dir: dir.to_owned(),
            index,
            reader,
            fields,
            db: Mutex::new(db),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            root: root.to_owned(),
            folder: Sandbox::new(&[root]).ok(),
            model: RwLock::new(built),
            batch_chunks: BATCH_CHUNKS,
        };
        library.load_catalog()?;
        Ok((library, writer))
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

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The model the index's vectors came from.
    pub fn model(&self) -> Option<ModelId> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn load_catalog(&self) -> Result<(), DocsError> {
        let mut catalog = Catalog::default();
        {
            let db = self.db();
            let mut statement = db.prepare(
                "SELECT c.id, c.path, f.kind, c.vector FROM chunks c JOIN files f ON f.path = c.path
                 ORDER BY c.id",
            )?;
            let mut rows = statement.query([])?;
            let mut interned: HashMap<String, u32> = HashMap::new();
            while let Some(row) = rows.next()? {
                let id: i64 = row.get(0)?;
                let path: String = row.get(1)?;
                let file = match interned.get(&path) {
                    Some(file) => *file,
                    None => {
                        let file = catalog.files.len() as u32;
                        catalog.files.push((path.clone(), row.get(2)?));
                        interned.insert(path, file);
                        file
                    }
                };
                let at = catalog.ids.len() as u32;
                catalog.ids.push(id as u64);
                catalog.file_of.push(file);
                let vector: Option<Vec<u8>> = row.get(3)?;
                if let Some(bytes) = vector {
                    let vector = from_bytes(&bytes);
                    if catalog.dim == 0 {
                        catalog.dim = vector.len();
                    }
                    if vector.len() == catalog.dim {
                        catalog.with_vector.push(at);
                        catalog.data.extend_from_slice(&vector);
                    }
                }
            }
        }
        *self
            .catalog
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(catalog);
        Ok(())
    }

    /// Brings the index up to date with the folder: new and changed files (by content hash)
    /// are read, chunked and embedded; deleted ones dropped; unchanged ones left alone.
    ///
    /// Changed files are written in batches of about [`BATCH_CHUNKS`] chunks, each committed
    /// (tantivy, then the manifest) before the next is read: an update of any size holds one
    /// batch's text and vectors at a time, and one that is stopped keeps the batches it wrote
    /// (the next update finds them unchanged).
    pub fn update(
        &self,
        writer: &mut Writer,
        selection: &Selection,
        embedder: Option<&Embedder>,
        progress: &mut dyn Progress,
    ) -> Result<Report, DocsError> {
        let built = self.model();
        if let (Some(built), None) = (&built, embedder) {
            return Err(DocsError::ModelMissing {
                dir: self.dir.clone(),
                built: built.name.clone(),
                reason: "load the model (see `mcp-docs index --help`)".into(),
            });
        }
        let files: Vec<(String, PathBuf, Kind)> = walk(&self.root, selection)?
            .into_iter()
            .filter(|(relative, _, _)| selection.in_scope(relative))
            .collect();
        let known: HashMap<String, String> = {
            let db = self.db();
            let mut statement = db.prepare("SELECT path, hash FROM files")?;
            statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<(String, String)>, _>>()?
                .into_iter()
                .filter(|(path, _)| selection.in_scope(path))
                .collect()
        };
        let mut report = Report::default();
        let seen: HashSet<&String> = files.iter().map(|(relative, _, _)| relative).collect();
        let removed: Vec<String> = known
            .keys()
            .filter(|path| !seen.contains(path))
            .cloned()
            .collect();
        report.removed = removed.len();
        let mut next_id: u64 = self
            .db()
            .query_row("SELECT coalesce(max(id), 0) FROM chunks", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|max| max as u64 + 1)?;

        // Read and chunk what changed; write it a batch at a time. Progress counts files up to
        // the first one not yet written.
        progress.stage("indexing", files.len());
        let mut batch = Batch::default();
        let mut failed: Vec<(String, String)> = Vec::new();
        for (at, (relative, path, kind)) in files.iter().enumerate() {
            let previous = known.get(relative);
            match self.read_changed(relative, path, *kind, previous) {
                Ok(None) => report.unchanged += 1,
                Ok(Some(fresh)) => {
                    if previous.is_some() {
                        report.updated += 1;
                    } else {
                        report.added += 1;
                    }
                    report.chunks += fresh.chunks.len();
                    batch.push(fresh);
                }
                // A file that was indexed and now fails is dropped, not kept stale.
                Err(reason) => failed.push((relative.clone(), reason)),
            }
            if batch.is_full(self.batch_chunks) {
                report.embedded +=
                    self.write_batch(writer, &batch, embedder, &mut next_id, &mut |share| {
                        progress.advance(batch.first + share.scale(at + 1 - batch.first))
                    })?;
                batch.written();
            }
            if batch.files.is_empty() {
                batch.first = at + 1;
                progress.advance(at + 1);
            }
        }
        report.embedded +=
            self.write_batch(writer, &batch, embedder, &mut next_id, &mut |share| {
                progress.advance(batch.first + share.scale(files.len() - batch.first))
            })?;
        batch.written();
        progress.advance(files.len());

        // Then what is gone: removed files and indexed ones that now fail, from tantivy, then
        // from the manifest, with this update's failures.
        progress.stage("writing", 1);
        let gone: Vec<&String> = removed
            .iter()
            .chain(
                failed
                    .iter()
                    .map(|(path, _)| path)
                    .filter(|path| known.contains_key(*path)),
            )
            .collect();
        for path in &gone {
            writer
                .writer
                .delete_term(Term::from_field_text(self.fields.path, path));
        }
        writer.writer.commit()?;
        if batch.written > 1 {
            self.merge_segments(writer);
        }
        {
            let mut db = self.db();
            let tx = db.transaction()?;
            for path in &gone {
                tx.execute("DELETE FROM files WHERE path = ?1", [path])?;
                tx.execute("DELETE FROM chunks WHERE path = ?1", [path])?;
            }
            let old_failures: Vec<String> = {
                let mut statement = tx.prepare("SELECT path FROM failures")?;
                statement
                    .query_map([], |r| r.get(0))?
                    .collect::<Result<_, _>>()?
            };
            for path in old_failures.iter().filter(|p| selection.in_scope(p)) {
                tx.execute("DELETE FROM failures WHERE path = ?1", [path])?;
            }
            for (path, reason) in &failed {
                tx.execute(
                    "INSERT INTO failures (path, reason, at) VALUES (?1, ?2, ?3)",
                    params![path, reason, now()],
                )?;
            }
            record_model(&tx, embedder)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('updated_at', ?1)",
                [now().to_string()],
            )?;
            tx.commit()?;
        }
        if let Some(embedder) = embedder {
            *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(embedder.id.clone());
        }
        self.reader.reload()?;
        self.load_catalog()?;
        progress.advance(1);
        report.failed = failed;
        Ok(report)
    }

    /// Merges the index's segments into one. Each batch commits a segment of its own, and a
    /// search visits every segment: after a large update (101,552 chunks in 13 batches: 5
    /// segments left by tantivy's merge policy) BM25's p50 was 0.67 ms against 0.57 ms on the
    /// two segments one commit left, and 0.52 ms once merged. Costs a pass over the index
    /// (1.1 s there), so it runs only after updates that wrote more than one batch. A merge that cannot run now (tantivy's own policy may be
    /// merging some of the segments) is left to that policy.
    fn merge_segments(&self, writer: &mut Writer) {
        let merged = self
            .index
            .searchable_segment_ids()
            .and_then(|ids| match ids.len() {
                0 | 1 => Ok(None),
                _ => writer.writer.merge(&ids).wait(),
            });
        if let Err(error) = merged {
            tracing::debug!(%error, "segments not merged");
        }
    }

    /// Sets how many chunks an update holds before it writes them (at least one file's are
    /// always held whole); [`BATCH_CHUNKS`] unless set.
    pub fn set_batch_chunks(&mut self, chunks: usize) {
        self.batch_chunks = chunks.max(1);
    }

    /// The file at `relative` read, hashed and chunked; `None` when its hash is `previous`.
    fn read_changed(
        &self,
        relative: &str,
        path: &Path,
        kind: Kind,
        previous: Option<&String>,
    ) -> Result<Option<Fresh>, String> {
        let bytes = self.read(relative)?;
        let hash: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if previous == Some(&hash) {
            return Ok(None);
        }
        let (title, chunks) = match extract::extract(path, kind, &bytes) {
            Ok(document) => (
                document.title,
                chunk::chunks(&document.blocks, Sizes::default()),
            ),
            // A file with no text (an empty note, a redirect page) is indexed, with nothing in
            // it to find.
            Err(ExtractError::Empty) => (file_stem(path), Vec::new()),
            Err(error) => return Err(error.to_string()),
        };
        Ok(Some(Fresh {
            relative: relative.to_owned(),
            hash,
            kind,
            title,
            chunks,
        }))
    }

    /// Embeds and writes one batch: tantivy first (deleting each file's old chunks by path, so
    /// a crash before the manifest commits means the next update redoes these files, without
    /// duplicates), then the manifest. `progress` hears how much of the batch is embedded.
    /// Returns how many vectors were computed.
    fn write_batch(
        &self,
        writer: &mut Writer,
        batch: &Batch,
        embedder: Option<&Embedder>,
        next_id: &mut u64,
        progress: &mut dyn FnMut(Share),
    ) -> Result<usize, DocsError> {
        if batch.files.is_empty() {
            return Ok(0);
        }
        // The heading path and title give a chunk its context.
        let texts: Vec<String> = batch
            .files
            .iter()
            .flat_map(|fresh| {
                fresh
                    .chunks
                    .iter()
                    .map(|chunk| embedding_text(&fresh.title, chunk))
            })
            .collect();
        let vectors = match embedder {
            Some(embedder) if !texts.is_empty() => {
                let total = texts.len();
                Some(embedder.embed(&texts, |done| progress(Share { done, total }))?)
            }
            _ => None,
        };
        drop(texts);

        let f = self.fields;
        let mut vectors = vectors.iter().flatten();
        let mut rows: Vec<(u64, &str, Option<Vec<u8>>)> = Vec::with_capacity(batch.chunks);
        for fresh in &batch.files {
            let relative = fresh.relative.as_str();
            writer
                .writer
                .delete_term(Term::from_field_text(f.path, relative));
            let extension = Path::new(relative)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            for chunk in &fresh.chunks {
                let id = *next_id;
                *next_id += 1;
                writer.writer.add_document(doc!(
                    f.id => id,
                    f.path => relative,
                    f.path_text => relative.replace(['/', '.', '_', '-'], " "),
                    f.kind => fresh.kind.name(),
                    f.extension => extension.as_str(),
                    f.title => fresh.title.as_str(),
                    f.headings => chunk.headings.join(" > "),
                    f.text => chunk.text.as_str(),
                    f.line_start => chunk.lines.0 as u64,
                    f.line_end => chunk.lines.1 as u64,
                ))?;
                rows.push((id, relative, vectors.next().map(|v| to_bytes(v))));
            }
        }
        writer.writer.commit()?;

        let mut db = self.db();
        let tx = db.transaction()?;
        for fresh in &batch.files {
            tx.execute("DELETE FROM files WHERE path = ?1", [&fresh.relative])?;
            tx.execute("DELETE FROM chunks WHERE path = ?1", [&fresh.relative])?;
            tx.execute(
                "INSERT INTO files (path, hash, kind, title, chunks, indexed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    fresh.relative,
                    fresh.hash,
                    fresh.kind.name(),
                    fresh.title,
                    fresh.chunks.len() as i64,
                    now()
                ],
            )?;
        }
        for (id, path, vector) in &rows {
            tx.execute(
                "INSERT INTO chunks (id, path, vector) VALUES (?1, ?2, ?3)",
                params![*id as i64, path, vector],
            )?;
        }
        // Recorded with the first vectors, so that an update stopped after them still says
        // which model made them.
        record_model(&tx, embedder)?;
        tx.commit()?;
        Ok(rows.iter().filter(|row| row.2.is_some()).count())
    }

    /// Sees what another process committed.
    pub fn refresh(&self) -> Result<(), DocsError> {
        self.reader.reload()?;
        self.load_catalog()
    }

    /// Searches; `embedder` is needed for `semantic` and `hybrid` (without it they use BM25).
    pub fn search(
        &self,
        query: &str,
        k: usize,
        mode: Mode,
        filter: &Filter,
        embedder: Option<&Embedder>,
    ) -> Result<Vec<Hit>, DocsError> {
        let k = k.clamp(1, 100);
        let searcher = self.reader.searcher();
        let f = self.fields;
        let globs = match &filter.path_glob {
            Some(glob) => Some(
                GlobSetBuilder::new()
                    .add(
                        Glob::new(glob)
                            .map_err(|e| DocsError::Glob(glob.clone(), e.to_string()))?,
                    )
                    .build()
                    .map_err(|e| DocsError::Glob(glob.clone(), e.to_string()))?,
            ),
            None => None,
        };
        let text_query = self.words_query(query)?;
        let kinds: Vec<Term> = filter
            .file_types
            .iter()
            .flat_map(|t| {
                let t = t.trim_start_matches('.').to_ascii_lowercase();
                [
                    Term::from_field_text(f.kind, &t),
                    Term::from_field_text(f.extension, &t),
                ]
            })
            .collect();
        let bm25_query: Box<dyn Query> = if kinds.is_empty() {
            text_query.box_clone()
        } else {
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query.box_clone()),
                (Occur::Must, Box::new(TermSetQuery::new(kinds))),
            ]))
        };
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let types: Vec<String> = filter
            .file_types
            .iter()
            .map(|t| t.trim_start_matches('.').to_ascii_lowercase())
            .collect();
        let filtered = globs.is_some() || !filter.file_types.is_empty();
        // Whether a file passes the filter, worked out once per file (asked only when filtered).
        let mut verdicts: Vec<Option<bool>> =
            vec![None; if filtered { catalog.files.len() } else { 0 }];
        let mut allowed = |file: usize| -> bool {
            *verdicts[file].get_or_insert_with(|| {
                let (path, kind) = &catalog.files[file];
                globs.as_ref().is_none_or(|g: &GlobSet| g.is_match(path))
                    && (types.is_empty()
                        || types.iter().any(|t| {
                            t == kind || path.to_ascii_lowercase().ends_with(&format!(".{t}"))
                        }))
            })
        };
        let pool = (k * 5).max(50);
        let use_dense = mode != Mode::Bm25 && embedder.is_some() && self.model().is_some();
        let use_bm25 = mode != Mode::Semantic || !use_dense;

        // BM25 candidates, filtered by path.
        let mut bm25: Vec<(u64, f32)> = Vec::new();
        if use_bm25 {
            // The types are in the query; a path glob is checked on the best candidates. Ids
            // come from their column: no document is decompressed.
            let wanted = if globs.is_some() { pool * 10 } else { pool };
            let columns = searcher
                .segment_readers()
                .iter()
                .map(|segment| segment.fast_fields().u64("id"))
                .collect::<Result<Vec<_>, _>>()?;
            let id_of = |address: tantivy::DocAddress| {
                columns
                    .get(address.segment_ord as usize)
                    .and_then(|column| column.first(address.doc_id))
            };
            let top =
                searcher.search(&bm25_query, &TopDocs::with_limit(wanted).order_by_score())?;
            let more = top.len() == wanted;
            for (score, address) in top {
                let Some(id) = id_of(address) else {
                    continue;
                };
                if !filtered || catalog.file(id).is_some_and(&mut allowed) {
                    bm25.push((id, score));
                    if bm25.len() == pool {
                        break;
                    }
                }
            }
            // The glob admitted too few of them and more exist: search again among the files it
            // admits (every file's path checked once), so none is missed.
            if globs.is_some() && bm25.len() < pool && more {
                let paths: Vec<Term> = (0..catalog.files.len())
                    .filter(|&file| allowed(file))
                    .map(|file| Term::from_field_text(f.path, &catalog.files[file].0))
                    .collect();
                let restricted = BooleanQuery::new(vec![
                    (Occur::Must, bm25_query.box_clone()),
                    (Occur::Must, Box::new(TermSetQuery::new(paths))),
                ]);
                bm25 = searcher
                    .search(&restricted, &TopDocs::with_limit(pool).order_by_score())?
                    .into_iter()
                    .filter_map(|(score, address)| Some((id_of(address)?, score)))
                    .collect();
            }
        }
        // Dense candidates: exact search over every vector the filter allows.
        let mut dense: Vec<(u64, f32)> = Vec::new();
        if use_dense && let Some(embedder) = embedder {
            let vector = embedder.embed_query(query)?;
            // Exact among the chunks the filter allows.
            dense = catalog.nearest(&vector, pool, |file| !filtered || allowed(file));
        }
        let ranked: Vec<(u64, f32)> = match (use_bm25, use_dense) {
            (true, true) => fuse(&bm25, &dense, k),
            (true, false) => bm25.into_iter().take(k).collect(),
            (false, _) => dense.into_iter().take(k).collect(),
        };
        let mut snippets = SnippetGenerator::create(&searcher, &*text_query, f.text)?;
        snippets.set_max_num_chars(240);
        let mut hits = Vec::new();
        for (id, score) in ranked {
            let Some(document) = self.chunk(&searcher, id)? else {
                continue;
            };
            let text = text_of(&document, f.text);
            let snippet = snippets.snippet(&text);
            let snippet = if snippet.highlighted().is_empty() {
                text.chars().take(240).collect::<String>()
            } else {
                mark(snippet.fragment(), snippet.highlighted())
            };
            let headings = text_of(&document, f.headings);
            hits.push(Hit {
                path: text_of(&document, f.path),
                title: text_of(&document, f.title),
                headings: if headings.is_empty() {
                    Vec::new()
                } else {
                    headings.split(" > ").map(str::to_owned).collect()
                },
                lines: [
                    u64_of(&document, f.line_start),
                    u64_of(&document, f.line_end),
                ],
                snippet: snippet.trim().to_owned(),
                score,
                id,
            });
        }
        Ok(hits)
    }

    /// The query's words, each looked for in the title, headings, text and path (boosted 2, 1.5,
    /// 1 and 0.5), any of them (BM25 sums what matches). Built from the fields' own analyzers
    /// rather than tantivy's query language: a user's `foo-bar` or `a:b` is words, not syntax,
    /// and no phrase query is made (tantivy 0.27's phrase scorer can panic on seek).
    fn words_query(&self, query: &str) -> Result<Box<dyn Query>, DocsError> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in [
            (f.title, 2.0),
            (f.headings, 1.5),
            (f.text, 1.0),
            (f.path_text, 0.5),
        ] {
            let mut analyzer = self.index.tokenizer_for_field(field)?;
            let mut stream = analyzer.token_stream(query);
            let mut seen = HashSet::new();
            while stream.advance() {
                let text = stream.token().text.clone();
                if seen.insert(text.clone()) {
                    let term = TermQuery::new(
                        Term::from_field_text(field, &text),
                        IndexRecordOption::WithFreqs,
                    );
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(term), boost)),
                    ));
                }
            }
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn chunk(
        &self,
        searcher: &tantivy::Searcher,
        id: u64,
    ) -> Result<Option<TantivyDocument>, DocsError> {
        let query = TermQuery::new(
            Term::from_field_u64(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        Ok(match top.first() {
            Some((_, address)) => Some(searcher.doc(*address)?),
            None => None,
        })
    }

    /// Every indexed file: path, kind, title, chunks.
    pub fn sources(&self) -> Result<Vec<Source>, DocsError> {
        let db = self.db();
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
        let db = self.db();
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

    /// The bytes of the file at `relative` (a path the walk gave: clean, beneath the folder),
    /// read through the folder's sandbox: a regular file of at most [`MAX_FILE_BYTES`], never
    /// through a symbolic link (the walk lists none, so one found now was swapped in).
    fn read(&self, relative: &str) -> Result<Vec<u8>, String> {
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
        read_regular(&resolved, MAX_FILE_BYTES, FinalLink::Refuse).map_err(|error| match error {
            SandboxError::TooLarge { size, .. } => format!(
                "too large ({} MB; the limit is {} MB)",
                size / (1024 * 1024),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            other => other.to_string(),
        })
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
        let kind: Option<String> = self
            .db()
            .query_row("SELECT kind FROM files WHERE path = ?1", [&relative], |r| {
                r.get(0)
            })
            .optional()?;
        if kind.is_none() {
            return Err(DocsError::UnknownDocument(path.to_owned()));
        }
        let full = self.root.join(&relative);
        let kind = Kind::of(&full).ok_or_else(|| DocsError::UnknownDocument(path.to_owned()))?;
        let bytes = self
            .read(&relative)
            .map_err(|e| DocsError::Io(std::io::Error::other(e)))?;
        let document = extract::extract(&full, kind, &bytes)
            .map_err(|e| DocsError::Io(std::io::Error::other(e.to_string())))?;
        let total = document.text.lines().count();
        let text = match lines {
            None => document.text,
            Some((start, end)) => document
                .text
                .lines()
                .skip(start.saturating_sub(1))
                .take(end.saturating_sub(start.max(1)) + 1)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        Ok((document.title, text, total))
    }
}

/// An indexed file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Source {
    pub path: String,
    pub kind: String,
    pub title: String,
    pub chunks: usize,
    pub indexed_at: i64,
}

/// The index at a glance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    pub root: String,
    pub data_dir: String,
    pub files: usize,
    pub chunks: usize,
    pub vectors: usize,
    pub model: Option<String>,
    pub dimensions: Option<usize>,
    pub updated_at: Option<i64>,
    pub failures: Vec<(String, String)>,
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// What the model reads for a chunk: where it is, then what it says.
pub fn embedding_text(title: &str, chunk: &Chunk) -> String {
    let mut context = vec![title];
    context.extend(
        chunk
            .headings
            .iter()
            .map(String::as_str)
            .filter(|h| *h != title),
    );
    format!("{}\n{}", context.join(" > "), chunk.text)
}

/// How much the dense ranking counts in hybrid search (BM25 counts the rest).
///
/// Chosen on the evaluation in EVALUATION.md: scores scaled to 0..1 within each list and mixed
/// 0.6 BM25 / 0.4 dense beat reciprocal rank fusion there (nDCG@10 0.467 against 0.450 on
/// queries that played no part in choosing), and both beat either list alone.
pub const DENSE_WEIGHT: f32 = 0.4;

/// Fuses a BM25 and a dense ranking: each list's scores scaled to 0..1 (min to max), then
/// mixed by [`DENSE_WEIGHT`] (a chunk missing from a list scores 0 there); the best `n`.
pub fn fuse(bm25: &[(u64, f32)], dense: &[(u64, f32)], n: usize) -> Vec<(u64, f32)> {
    let mut scores: HashMap<u64, f32> = HashMap::new();
    for (list, weight) in [(bm25, 1.0 - DENSE_WEIGHT), (dense, DENSE_WEIGHT)] {
        let max = list.iter().map(|x| x.1).fold(f32::MIN, f32::max);
        let min = list.iter().map(|x| x.1).fold(f32::MAX, f32::min);
        let span = (max - min).max(1e-6);
        for (id, score) in list {
            *scores.entry(*id).or_default() += weight * (score - min) / span;
        }
    }
    let mut fused: Vec<(u64, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(n);
    fused
}

fn text_of(document: &TantivyDocument, field: Field) -> String {
    document
        .get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn u64_of(document: &TantivyDocument, field: Field) -> u64 {
    document
        .get_first(field)
        .and_then(|v| v.as_u64())
        .unwrap_or_default()
}

/// `text` with the `ranges` wrapped in `**`.
fn mark(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for range in ranges {
        if range.start < at || range.end > text.len() {
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str("**");
        out.push_str(&text[range.clone()]);
        out.push_str("**");
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// The files to index under `root` (as git sees them: `.gitignore` and hidden files are
/// honoured even outside a repository): (relative path, full path, kind).
pub fn walk(root: &Path, selection: &Selection) -> Result<Vec<(String, PathBuf, Kind)>, DocsError> {
    let build = |patterns: &[String]| -> Result<Option<GlobSet>, DocsError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(
                Glob::new(pattern).map_err(|e| DocsError::Glob(pattern.clone(), e.to_string()))?,
            );
        }
        builder
            .build()
            .map(Some)
            .map_err(|e| DocsError::Glob(patterns.join(", "), e.to_string()))
    };
    let include = build(&selection.include)?;
    let exclude = build(&selection.exclude)?;
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(root)
        .require_git(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let relative_text = relative.to_string_lossy().replace('\\', "/");
        if relative_text.starts_with(".mcp-docs/") {
            continue;
        }
        if include
            .as_ref()
            .is_some_and(|g| !g.is_match(&relative_text))
            || exclude.as_ref().is_some_and(|g| g.is_match(&relative_text))
        {
            continue;
        }
        if let Some(kind) = Kind::of(path) {
            files.push((relative_text, path.to_owned(), kind));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_rewards_agreement() {
        let bm25 = [(1, 9.0), (2, 8.0), (3, 7.0)];
        let dense = [(3, 0.9), (4, 0.8), (1, 0.7)];
        let fused = fuse(&bm25, &dense, 4);
        let order: Vec<u64> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, vec![1, 3, 2, 4]);
    }

    #[test]
    fn marks_wrap_ranges() {
        assert_eq!(mark("a bc d e", &[2..4, 7..8]), "a **bc** d **e**");
    }
}
