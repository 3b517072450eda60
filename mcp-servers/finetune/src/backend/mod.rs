//! Where trainers run, behind one trait: submit, state, cancel, output, log.
//!
//! The trainer's reports (its stdout, JSON lines) are read back through [`Backend::output`] from
//! a byte offset the store keeps, so a restarted server carries on where it stopped reading. The
//! shape fits backends that are APIs rather than processes: Ray Jobs (`POST /api/jobs/`,
//! `GET /api/jobs/{id}` for the state, `/logs`, `/stop`) implements it, and Kubernetes batch
//! Jobs (create, status, pod logs, delete) would.

pub mod local;
pub mod ray;
pub mod slurm;

use std::{ffi::OsString, path::Path};

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;

/// What a backend is asked to run: the trainer's command line in the job's directory.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// The job it runs.
    pub job_id: &'a str,
    /// The job's own directory (the working directory; output and log files go there).
    pub dir: &'a Path,
    /// The trainer program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Environment variables for it.
    pub env: Vec<(String, String)>,
}

/// A run as the backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Accepted, not started (a Slurm job waiting for a node).
    Pending,
    /// Started.
    Running,
    /// Ended; whether it succeeded, when the backend knows (a process reattached after a
    /// restart has no exit status), and what the backend says about it.
    Exited {
        /// Whether it succeeded; `None` when the backend cannot know.
        success: Option<bool>,
        /// What the backend says about it.
        detail: String,
    },
}

#[derive(Debug, thiserror::Error)]
/// A backend's failure, in its own words.
#[error("{0}")]
pub struct BackendError(pub String);

/// What `list_backends` shows.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BackendInfo {
    /// `local`, `slurm`, `ray`.
    pub name: String,
    /// Whether it can take jobs now.
    pub available: bool,
    /// What it is, or why it is not available.
    pub detail: String,
    /// Jobs it runs at once (the rest wait in the queue).
    pub capacity: usize,
}

impl BackendInfo {
    /// A cluster backend's listing from what it found when the server started: available with
    /// what it found, or not, with why.
    pub fn detected(name: &str, status: &Result<String, String>, capacity: usize) -> Self {
        Self {
            name: name.to_owned(),
            available: status.is_ok(),
            detail: match status {
                Ok(detail) | Err(detail) => detail.clone(),
            },
            capacity: capacity.max(1),
        }
    }
}

/// Where jobs run: this machine, or a cluster scheduler.
pub trait Backend: Send + Sync {
    /// Its name (`local`, `slurm`, `ray`), as jobs name it.
    fn name(&self) -> &'static str;

    /// What `list_backends` shows of it.
    fn info(&self) -> BackendInfo;

    /// Starts the run; returns the backend's name for it (a process id, a Slurm job id, a Ray
    /// submission id).
    fn submit<'a>(&'a self, run: Submission<'a>) -> BoxFuture<'a, Result<String, BackendError>>;

    /// The run's state, from the backend's name for it and the job's directory.
    fn state<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<RunState, BackendError>>;

    /// Asks the run to stop gracefully (the trainer checkpoints, then exits).
    fn cancel<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<(), BackendError>>;

    /// The trainer's stdout from byte `from` on (at most `max` bytes). By default the file
    /// the trainer writes in the job directory (local, Slurm, and Ray, whose entrypoint
    /// redirects it there so that a resumed run appends to the same file); a backend without a
    /// shared filesystem would fetch it instead (a pod's log).
    fn output<'a>(
        &'a self,
        _backend_ref: &'a str,
        dir: &'a Path,
        from: u64,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<u8>, BackendError>> {
        Box::pin(async move { read_from(&dir.join(OUTPUT_FILE), from, max) })
    }

    /// The end of the trainer's log (stderr), at most `max` bytes; by default from the job
    /// directory, as [`Backend::output`].
    fn log<'a>(
        &'a self,
        _backend_ref: &'a str,
        dir: &'a Path,
        max: usize,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move { Ok(tail(&dir.join(LOG_FILE), max)) })
    }
}

/// The files the trainer writes in the job directory.
pub const OUTPUT_FILE: &str = "output.jsonl";
/// The trainer's stderr, in the job directory.
pub const LOG_FILE: &str = "trainer.log";

/// Asks the trainer running in `dir` to stop at its next step (it checkpoints first).
pub fn request_stop(dir: &Path) -> Result<(), BackendError> {
    std::fs::write(dir.join(crate::train::STOP_FILE), b"")
        .map_err(|error| BackendError(format!("{}: {error}", dir.display())))
}

/// Takes back a stop request left by an earlier run, before the trainer starts (again).
pub fn clear_stop(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(crate::train::STOP_FILE));
}

/// Bytes of a file from `from` on, at most `max` (a missing file is empty: not started yet).
pub fn read_from(path: &Path, from: u64, max: usize) -> Result<Vec<u8>, BackendError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(BackendError(format!("{}: {error}", path.display()))),
    };
    file.seek(SeekFrom::Start(from))
        .map_err(|error| BackendError(format!("{}: {error}", path.display())))?;
    let mut out = Vec::new();
    file.take(max as u64)
        .read_to_end(&mut out)
        .map_err(|error| BackendError(format!("{}: {error}", path.display())))?;
    Ok(out)
}

/// The last `max` bytes of a file, from a line start, as text.
pub fn tail(path: &Path, max: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max);
    let slice = &bytes[start..];
    let slice = if start > 0 {
        slice
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| &slice[i + 1..])
            .unwrap_or(slice)
    } else {
        slice
    };
    String::from_utf8_lossy(slice).into_owned()
}
