//! Bringing the index up to date with the folder, a batch at a time.

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rusqlite::params;
use sha2::{Digest as _, Sha256};
use tantivy::{IndexWriter, Term, doc};

use super::{
    DocsError, Library, Local, Progress, Report, Selection, Store, Writer, archive, file_stem, now,
    pg,
};
use crate::{
    chunk::{self, Chunk, Sizes},
    embed::Embedder,
    extract::{self, ExtractError, Kind},
};

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
    /// The document's text, kept for a store that serves it (PostgreSQL).
    body: Option<String>,
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

impl Library {
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
                index: self.describe(),
                built: built.name.clone(),
                reason: "load the model (see `mcp-docs index --help`)".into(),
            });
        }
        // In PostgreSQL, one update of the collection at a time, whatever process runs it.
        let _lock = match &self.store {
            Store::Postgres(stored) => Some(stored.lock()?),
            Store::Local(_) => None,
        };
        let (mut files, archives) = walk(&self.root, selection)?;
        files.retain(|(relative, _, _)| selection.in_scope(relative));
        // The documents inside archives, under the archive's path; an archive that cannot be
        // read is reported (and its documents, if they were indexed, dropped).
        let mut failed: Vec<(String, String)> = Vec::new();
        for (relative, path) in archives {
            if !selection.in_scope(&relative) {
                continue;
            }
            let mut open = None;
            match self.open_archive(&relative, &mut open) {
                Ok(archive) => {
                    let (documents, left_out) = archive.documents();
                    for (inner, kind) in documents {
                        let member = format!("{relative}{}{inner}", archive::SEPARATOR);
                        let path = PathBuf::from(format!(
                            "{}{}{inner}",
                            path.display(),
                            archive::SEPARATOR
                        ));
                        files.push((member, path, kind));
                    }
                    if left_out > 0 {
                        failed.push((
                            relative,
                            format!(
                                "{left_out} documents left out: at most {} are indexed from one archive",
                                archive::MAX_DOCUMENTS
                            ),
                        ));
                    }
                }
                Err(reason) => failed.push((relative, reason)),
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files.dedup_by(|a, b| a.0 == b.0);
        let known: HashMap<String, String> = match &self.store {
            Store::Local(local) => {
                let db = local.db();
                let mut statement = db.prepare("SELECT path, hash FROM files")?;
                statement
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<(String, String)>, _>>()?
            }
            Store::Postgres(stored) => stored.hashes()?,
        }
        .into_iter()
        .filter(|(path, _)| selection.in_scope(path))
        .collect();
        let mut report = Report::default();
        let seen: HashSet<&String> = files.iter().map(|(relative, _, _)| relative).collect();
        let removed: Vec<String> = known
            .keys()
            .filter(|path| !seen.contains(path))
            .cloned()
            .collect();
        report.removed = removed.len();
        // Local chunk ids are given here; PostgreSQL gives its own.
        let mut next_id: u64 = match &self.store {
            Store::Local(local) => local
                .db()
                .query_row("SELECT coalesce(max(id), 0) FROM chunks", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|max| max as u64 + 1)?,
            Store::Postgres(_) => 0,
        };

        // Read and chunk what changed; write it a batch at a time. Progress counts files up to
        // the first one not yet written.
        progress.stage("indexing", files.len());
        let mut batch = Batch::default();
        let mut open = None;
        for (at, (relative, path, kind)) in files.iter().enumerate() {
            if progress.stopped() {
                // What was read is written (as at the end), so the next update finds it done.
                self.write_batch(writer, &batch, embedder, &mut next_id, &mut |_| {})?;
                return Err(DocsError::Stopped);
            }
            let previous = known.get(relative);
            match self.read_changed(relative, path, *kind, previous, &mut open) {
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

        // Then what is gone: removed files and indexed ones that now fail, with this update's
        // failures.
        progress.stage("writing", 1);
        let gone: Vec<String> = removed
            .iter()
            .chain(
                failed
                    .iter()
                    .map(|(path, _)| path)
                    .filter(|path| known.contains_key(*path)),
            )
            .cloned()
            .collect();
        match &self.store {
            Store::Local(local) => local.finish(
                writer,
                &gone,
                &failed,
                selection,
                embedder,
                batch.written > 1,
            )?,
            Store::Postgres(stored) => {
                stored.finish(gone, failed.clone(), selection, embedder.map(|e| &e.id))?
            }
        }
        if let Some(embedder) = embedder {
            *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(embedder.id.clone());
        }
        if let Store::Local(local) = &self.store {
            local.reader.reload()?;
            local.load_catalog()?;
        }
        progress.advance(1);
        report.failed = failed;
        Ok(report)
    }

    /// Sets how many chunks an update holds before it writes them (at least one file's are
    /// always held whole); [`BATCH_CHUNKS`] unless set.
    pub fn set_batch_chunks(&mut self, chunks: usize) {
        self.batch_chunks = chunks.max(1);
    }

    /// The file at `relative` read, hashed and chunked; `None` when its hash is `previous`.
    ///
    /// A document inside an archive is known by what the archive says of it (its CRC-32 and
    /// size), so an unchanged one is not inflated again; `open` keeps the archive open from one
    /// of its documents to the next.
    fn read_changed(
        &self,
        relative: &str,
        path: &Path,
        kind: Kind,
        previous: Option<&String>,
        open: &mut Option<archive::Open>,
    ) -> Result<Option<Fresh>, String> {
        let (bytes, hash) = match archive::split(relative) {
            Some((archive, inner)) => {
                let archive = self.open_archive(archive, open)?;
                let stamp = archive.stamp(inner)?;
                if previous == Some(&stamp) {
                    return Ok(None);
                }
                (archive.read(inner)?, stamp)
            }
            None => {
                let bytes = self.read(relative, open)?;
                let hash: String = Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                if previous == Some(&hash) {
                    return Ok(None);
                }
                (bytes, hash)
            }
        };
        let keep_body = matches!(self.store, Store::Postgres(_));
        let (title, chunks, body) = match extract::extract(path, kind, &bytes) {
            Ok(document) => (
                document.title,
                chunk::chunks(&document.blocks, Sizes::default()),
                keep_body.then_some(document.text),
            ),
            // A file with no text (an empty note, a redirect page) is indexed, with nothing in
            // it to find.
            Err(ExtractError::Empty) => (file_stem(path), Vec::new(), None),
            Err(error) => return Err(error.to_string()),
        };
        Ok(Some(Fresh {
            relative: relative.to_owned(),
            hash,
            kind,
            title,
            chunks,
            body,
        }))
    }

    /// Embeds and writes one batch. `progress` hears how much of the batch is embedded.
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
        let embedded = vectors.as_ref().map_or(0, Vec::len);
        match &self.store {
            Store::Local(local) => {
                local.write(tantivy(writer)?, batch, vectors, embedder, next_id)?
            }
            Store::Postgres(stored) => {
                let mut vectors = vectors.iter().flatten();
                let rows: Vec<pg::FileRows<'_>> = batch
                    .files
                    .iter()
                    .map(|fresh| pg::FileRows {
                        path: &fresh.relative,
                        hash: &fresh.hash,
                        kind: fresh.kind.name(),
                        title: &fresh.title,
                        body: fresh.body.as_deref().unwrap_or_default(),
                        chunks: fresh
                            .chunks
                            .iter()
                            .map(|chunk| pg::ChunkRow {
                                headings: chunk.headings.join(" > "),
                                text: &chunk.text,
                                lines: chunk.lines,
                                vector: vectors.next().map(Vec::as_slice),
                            })
                            .collect(),
                    })
                    .collect();
                stored.write(&rows, embedder.map(|e| &e.id))?
            }
        }
        Ok(embedded)
    }
}

/// The tantivy writer a local index's update needs.
fn tantivy(writer: &mut Writer) -> Result<&mut IndexWriter, DocsError> {
    writer.writer.as_mut().ok_or_else(|| {
        DocsError::Io(std::io::Error::other(
            "this writer is a PostgreSQL store's, not the local index's",
        ))
    })
}

impl Local {
    /// Writes one embedded batch: tantivy first (deleting each file's old chunks by path, so a
    /// crash before the manifest commits means the next update redoes these files, without
    /// duplicates), then the manifest.
    fn write(
        &self,
        writer: &mut IndexWriter,
        batch: &Batch,
        vectors: Option<Vec<Vec<f32>>>,
        embedder: Option<&Embedder>,
        next_id: &mut u64,
    ) -> Result<(), DocsError> {
        let f = self.fields;
        let mut vectors = vectors.iter().flatten();
        let mut rows: Vec<(u64, &str, Option<Vec<u8>>)> = Vec::with_capacity(batch.chunks);
        for fresh in &batch.files {
            let relative = fresh.relative.as_str();
            writer.delete_term(Term::from_field_text(f.path, relative));
            let extension = Path::new(relative)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            for chunk in &fresh.chunks {
                let id = *next_id;
                *next_id += 1;
                writer.add_document(doc!(
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
        writer.commit()?;

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
        Ok(())
    }

    /// Ends a local update: `gone` files dropped from tantivy, then from the manifest, with
    /// this update's failures (`selection`'s recorded ones replaced); segments merged after an
    /// update of several batches.
    fn finish(
        &self,
        writer: &mut Writer,
        gone: &[String],
        failed: &[(String, String)],
        selection: &Selection,
        embedder: Option<&Embedder>,
        batches: bool,
    ) -> Result<(), DocsError> {
        let writer = tantivy(writer)?;
        for path in gone {
            writer.delete_term(Term::from_field_text(self.fields.path, path));
        }
        writer.commit()?;
        if batches {
            self.merge_segments(writer);
        }
        let mut db = self.db();
        let tx = db.transaction()?;
        for path in gone {
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
        for (path, reason) in failed {
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
        Ok(())
    }

    /// Merges the index's segments into one. Each batch commits a segment of its own, and a
    /// search visits every segment: after a large update (101,552 chunks in 13 batches: 5
    /// segments left by tantivy's merge policy) BM25's p50 was 0.67 ms against 0.57 ms on the
    /// two segments one commit left, and 0.52 ms once merged. Costs a pass over the index
    /// (1.1 s there), so it runs only after updates that wrote more than one batch. A merge that cannot run now (tantivy's own policy may be
    /// merging some of the segments) is left to that policy.
    fn merge_segments(&self, writer: &mut IndexWriter) {
        let merged = self
            .index
            .searchable_segment_ids()
            .and_then(|ids| match ids.len() {
                0 | 1 => Ok(None),
                _ => writer.merge(&ids).wait(),
            });
        if let Err(error) = merged {
            tracing::debug!(%error, "segments not merged");
        }
    }
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

/// Documents found by [`walk`]: (relative path, full path, kind).
type Documents = Vec<(String, PathBuf, Kind)>;

/// The files to index under `root` (as git sees them: `.gitignore` and hidden files are
/// honoured even outside a repository): the documents (relative path, full path, kind), and the
/// zip archives to look into (relative path, full path).
pub fn walk(
    root: &Path,
    selection: &Selection,
) -> Result<(Documents, Vec<(String, PathBuf)>), DocsError> {
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
    let mut archives = Vec::new();
    // An update of one file or folder walks that one only.
    let start = match selection.scope.as_deref().map(|s| s.trim_matches('/')) {
        Some(scope) if !scope.is_empty() && scope != "." => {
            let on_disk = Path::new(archive::split(scope).map_or(scope, |(archive, _)| archive));
            if on_disk
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                root.join(on_disk)
            } else {
                root.to_owned()
            }
        }
        _ => root.to_owned(),
    };
    let walker = ignore::WalkBuilder::new(start)
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
        } else if archive::is_archive(path) {
            archives.push((relative_text, path.to_owned()));
        }
    }
    Ok((files, archives))
}
