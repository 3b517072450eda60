//! `undo`'s journal: every change a tool makes to a file (write, edit, append, create, copy,
//! delete) or a path (move, mkdir) is recorded before the tool answers, with the file's former
//! content kept as a content-addressed snapshot, so that `undo` can put back the last N.
//!
//! One journal per allowed directory, under the data directory (`journal/<hash of the
//! directory's real path>/`): `records.jsonl` (one change a line, oldest first) and `blobs/`
//! (snapshots named by their SHA-256). It survives restarts. Its size is bounded: past
//! [`Journal::max_bytes`] of snapshots the oldest records go first; a file larger than a quarter
//! of that is recorded without a snapshot (its change cannot be undone, and undo says so).
//! Records and undo take an exclusive lock on the journal, so two servers on one directory do
//! not interleave. Undo only ever writes through the sandbox, so it never leaves a root.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// What was at a path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum State {
    /// Nothing.
    Absent,
    /// A file with this content (a snapshot in `blobs/` when `kept`).
    File {
        sha256: String,
        size: u64,
        mode: u32,
        kept: bool,
    },
}

/// One change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Step {
    /// A file's content went from `before` to `after` (created, written, deleted). Paths are
    /// real (links followed) and absolute.
    File {
        path: PathBuf,
        before: State,
        after: State,
    },
    /// A rename.
    Move { from: PathBuf, to: PathBuf },
    /// Directories made (a missing parent first).
    MakeDirs { paths: Vec<PathBuf> },
}

/// One tool call's changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Nanoseconds since the epoch when recorded: orders records across journals.
    pub(crate) at: u128,
    /// The tool that made it.
    pub(crate) tool: String,
    /// The allowed directory (real path) the paths are relative to.
    pub(crate) root: PathBuf,
    pub(crate) steps: Vec<Step>,
}

/// The journals under one data directory.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    /// Bytes of snapshots kept per allowed directory.
    pub max_bytes: u64,
}

/// A journal's files, locked while held.
struct Open {
    dir: PathBuf,
    _lock: std::fs::File,
}

impl Journal {
    /// The journals under `data_dir` (made when first written), keeping at most `max_bytes` of
    /// snapshots per allowed directory.
    pub fn new(data_dir: &Path, max_bytes: u64) -> Self {
        Self {
            dir: data_dir.join("journal"),
            max_bytes,
        }
    }

    fn open(&self, root: &Path) -> std::io::Result<Open> {
        let name = crate::ops::sha256_of(root.as_os_str().as_encoded_bytes());
        let dir = self.dir.join(&name[..16]);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir.join("blobs"))?;
        let root_file = dir.join("root.txt");
        if !root_file.exists() {
            std::fs::write(&root_file, root.as_os_str().as_encoded_bytes())?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        lock.lock()?;
        Ok(Open { dir, _lock: lock })
    }

    /// Keeps `content` as a snapshot for `root`'s journal, if it is small enough: its state.
    pub(crate) fn snapshot(
        &self,
        root: &Path,
        content: &[u8],
        mode: u32,
    ) -> std::io::Result<State> {
        let sha256 = crate::ops::sha256_of(content);
        let kept = (content.len() as u64) <= self.max_bytes / 4;
        if kept {
            let open = self.open(root)?;
            let blob = open.dir.join("blobs").join(&sha256);
            if !blob.exists() {
                let mut file = tempfile::NamedTempFile::new_in(open.dir.join("blobs"))?;
                file.write_all(content)?;
                file.as_file().sync_all()?;
                file.persist(&blob).map_err(|e| e.error)?;
                let kept = Self::kept_bytes(&open).unwrap_or(0);
                Self::set_kept_bytes(&open, kept + content.len() as u64)?;
            }
        }
        Ok(State::File {
            sha256,
            size: content.len() as u64,
            mode,
            kept,
        })
    }

    /// The bytes of snapshots kept, as counted in `kept-bytes` (kept up to date by
    /// [`Journal::snapshot`] and [`Journal::prune`], so a record need not list the snapshots);
    /// `None` when it is missing or unreadable.
    fn kept_bytes(open: &Open) -> Option<u64> {
        std::fs::read_to_string(open.dir.join("kept-bytes"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn set_kept_bytes(open: &Open, bytes: u64) -> std::io::Result<()> {
        std::fs::write(open.dir.join("kept-bytes"), bytes.to_string())
    }

    /// Appends a record; past the bound (by the running count), drops the oldest records while
    /// the snapshots they hold exceed it.
    pub(crate) fn record(&self, record: &Record) -> std::io::Result<()> {
        let open = self.open(&record.root)?;
        let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(open.dir.join("records.jsonl"))?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        if Self::kept_bytes(&open).is_none_or(|kept| kept > self.max_bytes) {
            self.prune(&open)?;
        }
        Ok(())
    }

    fn read(open: &Open) -> std::io::Result<Vec<Record>> {
        match std::fs::read_to_string(open.dir.join("records.jsonl")) {
            // A torn last line (a kill mid-write) is skipped.
            Ok(text) => Ok(text
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    fn write(open: &Open, records: &[Record]) -> std::io::Result<()> {
        let mut text = String::new();
        for record in records {
            text.push_str(&serde_json::to_string(record).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        let mut file = tempfile::NamedTempFile::new_in(&open.dir)?;
        file.write_all(text.as_bytes())?;
        file.as_file().sync_all()?;
        file.persist(open.dir.join("records.jsonl"))
            .map_err(|e| e.error)?;
        Ok(())
    }

    fn prune(&self, open: &Open) -> std::io::Result<()> {
        let mut records = Self::read(open)?;
        let blobs = open.dir.join("blobs");
        let size_of = |records: &[Record]| -> u64 {
            let mut seen = std::collections::HashSet::new();
            records
                .iter()
                .flat_map(|r| &r.steps)
                .filter_map(|step| match step {
                    Step::File {
                        before:
                            State::File {
                                sha256,
                                size,
                                kept: true,
                                ..
                            },
                        ..
                    } => seen.insert(sha256.clone()).then_some(*size),
                    _ => None,
                })
                .sum()
        };
        let before = records.len();
        while size_of(&records) > self.max_bytes && !records.is_empty() {
            records.remove(0);
        }
        if records.len() != before {
            Self::write(open, &records)?;
        }
        // Snapshots no record names any more (pruned, undone, or left by a kill).
        let wanted: std::collections::HashSet<String> = records
            .iter()
            .flat_map(|r| &r.steps)
            .filter_map(|step| match step {
                Step::File {
                    before: State::File { sha256, .. },
                    ..
                } => Some(sha256.clone()),
                _ => None,
            })
            .collect();
        for entry in std::fs::read_dir(&blobs)?.flatten() {
            let name = entry.file_name();
            if !wanted.contains(name.to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Self::set_kept_bytes(open, size_of(&records))
    }

    /// Takes the last `steps` records across the journals of `roots` (newest first) out of
    /// their journals and hands each to `undo` with a reader of its snapshots; `undo` says what
    /// it did. A record whose change cannot be undone (the file changed since) is dropped all
    /// the same, or undo would stop at it forever.
    pub(crate) fn undo_last(
        &self,
        roots: &[PathBuf],
        steps: usize,
        undo: &mut dyn FnMut(&Record, &Blobs) -> String,
    ) -> std::io::Result<Vec<String>> {
        let mut opened = Vec::new();
        for root in roots {
            let open = self.open(root)?;
            let records = Self::read(&open)?;
            opened.push((open, records));
        }
        let mut said = Vec::new();
        for _ in 0..steps {
            let newest = opened
                .iter()
                .enumerate()
                .filter_map(|(i, (_, records))| records.last().map(|r| (i, r.at)))
                .max_by_key(|(_, at)| *at);
            let Some((i, _)) = newest else { break };
            let (open, records) = &mut opened[i];
            let Some(record) = records.pop() else { break };
            let blobs = open.dir.join("blobs");
            let blob = |sha256: &str| std::fs::read(blobs.join(sha256));
            said.push(undo(&record, &blob));
        }
        for (open, records) in &opened {
            Self::write(open, records)?;
            self.prune(open)?;
        }
        Ok(said)
    }
}

/// Reads a snapshot by its SHA-256.
pub(crate) type Blobs<'a> = dyn Fn(&str) -> std::io::Result<Vec<u8>> + 'a;

/// Nanoseconds since the epoch.
pub(crate) fn now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
