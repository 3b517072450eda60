//! Journaling the write tools' changes, and undoing them (see [`crate::journal`]).

use std::path::{Path, PathBuf};

use cap_std::fs::{MetadataExt as _, PermissionsExt as _};
use mcp_core::ToolError;

use super::FsServer;
use crate::{
    error::FsError,
    journal::{Blobs, Journal, Record, State, Step, now},
    ops,
    sandbox::Resolved,
};

impl FsServer {
    /// The allowed directory (real path) whose journal records a change at `real`: the
    /// deepest configured one holding it, else the one it was resolved in.
    fn journal_root(&self, real: &Path, resolved: &Resolved) -> PathBuf {
        self.configured
            .roots()
            .iter()
            .filter(|root| real.starts_with(&root.canonical))
            .max_by_key(|root| root.canonical.components().count())
            .map(|root| root.canonical.clone())
            .unwrap_or_else(|| resolved.root.canonical.clone())
    }

    /// What is at `resolved` now: absent, or a file (its content kept as a snapshot when
    /// `keep` and small enough).
    fn file_state(
        &self,
        journal: &Journal,
        root: &Path,
        resolved: &Resolved,
        keep: bool,
    ) -> Result<State, ToolError> {
        let metadata = match resolved.dir().metadata(&resolved.rel) {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => return Ok(State::Absent),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Absent),
            Err(e) => return Err(FsError(resolved.error(e)).into()),
        };
        let mode = metadata.mode() & 0o7777;
        if keep && metadata.len() <= journal.max_bytes / 4 {
            let bytes = ops::read_all(resolved, journal.max_bytes / 4)?;
            return journal
                .snapshot(root, &bytes, mode)
                .map_err(|e| ToolError::new(format!("the undo journal: {e}")));
        }
        Ok(State::File {
            sha256: ops::sha256(resolved)?,
            size: metadata.len(),
            mode,
            kept: false,
        })
    }

    /// Runs `change` on the file at `resolved`, recording its content before and after in the
    /// journal (when there is one) once it succeeded.
    pub(super) fn journaled<T>(
        &self,
        tool: &str,
        resolved: &Resolved,
        change: impl FnOnce() -> Result<T, ToolError>,
    ) -> Result<T, ToolError> {
        let Some(journal) = &self.journal else {
            return change();
        };
        let real = self.sandbox().real_path(resolved).map_err(FsError)?;
        let root = self.journal_root(&real, resolved);
        let before = self.file_state(journal, &root, resolved, true)?;
        let done = change()?;
        let after = self.file_state(journal, &root, resolved, false)?;
        self.keep_record(
            journal,
            tool,
            root,
            vec![Step::File {
                path: real,
                before,
                after,
            }],
        );
        Ok(done)
    }

    /// Records a rename from `from` to `to` (resolved before the move).
    pub(super) fn journal_move(&self, from: &Resolved, to: &Resolved) -> Result<Step, ToolError> {
        let sandbox = self.sandbox();
        Ok(Step::Move {
            from: sandbox.real_path(from).map_err(FsError)?,
            to: sandbox.real_path(to).map_err(FsError)?,
        })
    }

    /// The directories `create_directory` at `resolved` is about to make, a parent first.
    pub(super) fn missing_dirs(&self, resolved: &Resolved) -> Result<Vec<PathBuf>, ToolError> {
        let real = self.sandbox().real_path(resolved).map_err(FsError)?;
        let mut missing = Vec::new();
        let mut rel = resolved.rel.clone();
        let mut path = real;
        while !rel.as_os_str().is_empty()
            && rel != Path::new(".")
            && resolved.dir().symlink_metadata(&rel).is_err()
        {
            missing.push(path.clone());
            rel.pop();
            path.pop();
        }
        missing.reverse();
        Ok(missing)
    }

    /// Appends a record; a journal that cannot be written is logged (the change is made; it
    /// just cannot be undone).
    pub(super) fn keep_record(
        &self,
        journal: &Journal,
        tool: &str,
        root: PathBuf,
        steps: Vec<Step>,
    ) {
        let record = Record {
            at: now(),
            tool: tool.to_owned(),
            root,
            steps,
        };
        if let Err(error) = journal.record(&record) {
            tracing::warn!(%error, tool, "the undo journal could not record a change");
        }
    }

    /// The journal root for a step at `resolved`.
    pub(super) fn root_for(&self, resolved: &Resolved) -> Result<PathBuf, ToolError> {
        let real = self.sandbox().real_path(resolved).map_err(FsError)?;
        Ok(self.journal_root(&real, resolved))
    }

    /// Undoes one record, last step first, through the sandbox (a path that is no longer
    /// allowed, denied or read-only is left as it is); what it did, for the answer.
    pub(super) fn undo_record(&self, journal: &Journal, record: &Record, blob: &Blobs) -> String {
        let mut said = Vec::new();
        for step in record.steps.iter().rev() {
            said.push(match step {
                Step::File {
                    path,
                    before,
                    after,
                } => self.undo_file(journal, path, before, after, blob),
                Step::Move { from, to } => self.undo_move(from, to),
                Step::MakeDirs { paths } => self.undo_mkdirs(paths),
            });
        }
        format!("{}: {}", record.tool, said.join("; "))
    }

    fn undo_file(
        &self,
        journal: &Journal,
        path: &Path,
        before: &State,
        after: &State,
        blob: &Blobs,
    ) -> String {
        let shown = path.display();
        let resolved = match self.resolve_writable(&path.to_string_lossy()) {
            Ok(resolved) => resolved,
            Err(error) => return format!("{shown} left as it is ({})", error.message()),
        };
        let root = match self.root_for(&resolved) {
            Ok(root) => root,
            Err(error) => return format!("{shown} left as it is ({})", error.message()),
        };
        let now = match self.file_state(journal, &root, &resolved, false) {
            Ok(now) => now,
            Err(error) => return format!("{shown} left as it is ({})", error.message()),
        };
        let same = match (&now, after) {
            (State::Absent, State::Absent) => true,
            (State::File { sha256: a, .. }, State::File { sha256: b, .. }) => a == b,
            _ => false,
        };
        if !same {
            return format!("{shown} left as it is (changed since)");
        }
        match before {
            State::Absent => match resolved.dir().remove_file(&resolved.rel) {
                Ok(()) => format!("removed {shown}"),
                Err(error) => format!("{shown} left as it is ({error})"),
            },
            State::File { kept: false, .. } => {
                format!("{shown} left as it is (it was too large to keep a copy of)")
            }
            State::File { sha256, mode, .. } => {
                let restored = blob(sha256)
                    .map_err(|e| format!("its copy is gone: {e}"))
                    .and_then(|bytes| {
                        if ops::sha256_of(&bytes) != *sha256 {
                            return Err("its copy does not match its hash".to_owned());
                        }
                        ops::write_atomic(&resolved, &bytes).map_err(|e| e.to_string())?;
                        resolved
                            .dir()
                            .set_permissions(
                                &resolved.rel,
                                cap_std::fs::Permissions::from_mode(*mode),
                            )
                            .map_err(|e| e.to_string())
                    });
                match restored {
                    Ok(()) => format!("restored {shown}"),
                    Err(why) => format!("{shown} left as it is ({why})"),
                }
            }
        }
    }

    fn undo_move(&self, from: &Path, to: &Path) -> String {
        let (from_shown, to_shown) = (from.display(), to.display());
        let resolved = self
            .resolve_writable(&to.to_string_lossy())
            .and_then(|to| Ok((self.resolve_writable(&from.to_string_lossy())?, to)));
        let (back, now) = match resolved {
            Ok(pair) => pair,
            Err(error) => return format!("{to_shown} left as it is ({})", error.message()),
        };
        if back.dir().symlink_metadata(&back.rel).is_ok() {
            return format!("{to_shown} left as it is ({from_shown} exists again)");
        }
        match now.dir().rename(&now.rel, back.dir(), &back.rel) {
            Ok(()) => format!("moved {to_shown} back to {from_shown}"),
            Err(error) => format!("{to_shown} left as it is ({error})"),
        }
    }

    fn undo_mkdirs(&self, paths: &[PathBuf]) -> String {
        let mut said = Vec::new();
        for path in paths.iter().rev() {
            let shown = path.display();
            match self.resolve_writable(&path.to_string_lossy()) {
                Ok(resolved) => match resolved.dir().remove_dir(&resolved.rel) {
                    Ok(()) => said.push(format!("removed directory {shown}")),
                    Err(error) => said.push(format!("{shown} left as it is ({error})")),
                },
                Err(error) => said.push(format!("{shown} left as it is ({})", error.message())),
            }
        }
        said.join("; ")
    }
}
