//! Jobs, their events and checkpoints, kept in SQLite under the data directory, so that a
//! restarted server still knows every job.
//!
//! Every change is one transaction; a status change is checked against the job's current status
//! inside it ([`Status::may_become`]), so two parties racing (a cancel and the trainer's last
//! event, say) cannot leave a job in a state it may not reach.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::{JobSpec, Resolved, Status};

/// Why the job store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("job store: {0}")]
    Sql(#[from] rusqlite::Error),
    /// Stored JSON could not be read.
    #[error("job store: stored JSON unreadable: {0}")]
    Json(#[from] serde_json::Error),
    /// No job has that id.
    #[error("no job {0:?}; list_jobs shows the ids")]
    NoJob(String),
    /// A status change the job's life does not allow.
    #[error("job {id} is {from}; it cannot become {to}")]
    Transition {
        /// The job.
        id: String,
        /// Its status.
        from: Status,
        /// The status asked for.
        to: Status,
    },
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Job {
    /// The job's id.
    pub id: String,
    /// What was asked for.
    pub spec: JobSpec,
    /// Where it is in its life.
    pub status: Status,
    /// Unix seconds.
    pub created_at: i64,
    /// When it started running (Unix seconds).
    pub started_at: Option<i64>,
    /// When it ended (Unix seconds).
    pub finished_at: Option<i64>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// The hyperparameters with `"auto"` filled in (once validated).
    pub resolved: Option<Resolved>,
    /// What the backend calls it (a process id, a Slurm job id).
    pub backend_ref: Option<String>,
    /// Where its files go; no other job writes there.
    pub dir: PathBuf,
    /// Optimizer steps done and planned.
    pub step: u64,
    /// Optimizer steps planned, once known.
    pub total_steps: Option<u64>,
    /// Files the job produced (adapter, merged model, GGUF).
    pub artifacts: Vec<Artifact>,
}

/// A file a job produced.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Artifact {
    /// `lora_adapter`, `model`, `gguf`.
    pub kind: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// How much an event matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Level {
    Info,
    Warn,
    Error,
}

/// What an event carries: a message, or a step's metrics (in `data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum EventKind {
    Message,
    Metrics,
}

/// One line of a job's history.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Event {
    /// Increasing per job; pass the last one seen as `after` to get only newer ones.
    pub seq: u64,
    /// When it happened (Unix seconds).
    pub created_at: i64,
    /// How much it matters.
    pub level: Level,
    /// A message or metrics.
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// What happened, in words.
    pub message: String,
    /// For metrics: `{"step": …, "train_loss": …, …}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// A checkpoint the trainer saved.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Checkpoint {
    /// The optimizer step it was saved at.
    pub step: u64,
    /// When (Unix seconds).
    pub created_at: i64,
    /// Its directory.
    pub path: PathBuf,
    /// `train_loss`, `valid_loss`, `token_accuracy`, … as the trainer reported them.
    pub metrics: serde_json::Value,
    /// Whether its files are still there (the trainer keeps the newest few).
    pub on_disk: bool,
}

/// The jobs, their events, checkpoints and artifacts, in SQLite.
pub struct Store {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    error TEXT,
    resolved TEXT,
    backend_ref TEXT,
    dir TEXT NOT NULL UNIQUE,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER,
    artifacts TEXT NOT NULL DEFAULT '[]',
    -- How far the trainer's output has been read (bytes).
    output_offset INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    job_id TEXT NOT NULL REFERENCES jobs(id),
    step INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (job_id, step)
) WITHOUT ROWID;
";

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn level_str(level: Level) -> &'static str {
    match level {
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

impl Store {
    /// Opens (creating) `jobs.sqlite3` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(data_dir.join("jobs.sqlite3"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Records a new job in `validating_files`.
    pub fn insert(&mut self, id: &str, spec: &JobSpec, dir: &Path) -> Result<Job, StoreError> {
        let created_at = now();
        self.conn.execute(
            "INSERT INTO jobs (id, spec, status, created_at, dir) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                serde_json::to_string(spec)?,
                Status::ValidatingFiles.as_str(),
                created_at,
                dir.to_string_lossy(),
            ],
        )?;
        self.get(id)
    }

    /// The job `id`.
    pub fn get(&self, id: &str) -> Result<Job, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE id = ?1"),
                [id],
                row_to_raw,
            )
            .optional()?
            .ok_or_else(|| StoreError::NoJob(id.to_owned()))?
            .into_job()
    }

    /// Jobs, newest first, at most `limit`, starting after the job `after` (a cursor).
    pub fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Job>, StoreError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs
             WHERE ?1 IS NULL OR (created_at, id) < (SELECT created_at, id FROM jobs WHERE id = ?1)
             ORDER BY created_at DESC, id DESC LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![after, limit as i64], row_to_raw)?;
        rows.map(|raw| raw?.into_job()).collect()
    }

    /// Jobs in any of `statuses`, oldest first (the queue's order).
    pub fn with_status(&self, statuses: &[Status]) -> Result<Vec<Job>, StoreError> {
        let mut jobs = Vec::new();
        let mut statement = self.conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE status = ?1 ORDER BY created_at, id"
        ))?;
        for status in statuses {
            for raw in statement.query_map([status.as_str()], row_to_raw)? {
                jobs.push(raw?.into_job()?);
            }
        }
        jobs.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(jobs)
    }

    /// Moves a job to `to` if its current status allows it, and logs an event saying so.
    pub fn transition(
        &mut self,
        id: &str,
        to: Status,
        reason: Option<&str>,
    ) -> Result<Job, StoreError> {
        let tx = self.conn.transaction()?;
        let from: Option<String> = tx
            .query_row("SELECT status FROM jobs WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        let from = from
            .as_deref()
            .and_then(Status::parse)
            .ok_or_else(|| StoreError::NoJob(id.to_owned()))?;
        if !from.may_become(to) {
            return Err(StoreError::Transition {
                id: id.to_owned(),
                from,
                to,
            });
        }
        let at = now();
        match to {
            Status::Running => {
                tx.execute(
                    "UPDATE jobs SET status = ?2, started_at = COALESCE(started_at, ?3) WHERE id = ?1",
                    params![id, to.as_str(), at],
                )?;
            }
            Status::Queued => {
                // Queued again after a stop: the old ending no longer holds.
                tx.execute(
                    "UPDATE jobs SET status = ?2, finished_at = NULL, error = NULL, backend_ref = NULL WHERE id = ?1",
                    params![id, to.as_str()],
                )?;
            }
            _ if to.is_terminal() => {
                tx.execute(
                    "UPDATE jobs SET status = ?2, finished_at = ?3, error = ?4 WHERE id = ?1",
                    params![id, to.as_str(), at, reason],
                )?;
            }
            _ => {
                tx.execute(
                    "UPDATE jobs SET status = ?2 WHERE id = ?1",
                    params![id, to.as_str()],
                )?;
            }
        }
        let level = if to == Status::Failed {
            Level::Error
        } else {
            Level::Info
        };
        let message = match reason {
            Some(reason) => format!("job {to}: {reason}"),
            None => format!("job {to}"),
        };
        append_event(&tx, id, level, EventKind::Message, &message, None)?;
        tx.commit()?;
        self.get(id)
    }

    /// Records the hyperparameters with `auto` filled in, and the steps planned.
    pub fn set_resolved(
        &self,
        id: &str,
        resolved: &Resolved,
        total_steps: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE jobs SET resolved = ?2, total_steps = ?3 WHERE id = ?1",
            params![id, serde_json::to_string(resolved)?, total_steps as i64],
        )?;
        Ok(())
    }

    /// How many bytes of the trainer's output were read and applied.
    pub fn output_offset(&self, id: &str) -> Result<u64, StoreError> {
        let offset: i64 = self.conn.query_row(
            "SELECT output_offset FROM jobs WHERE id = ?1",
            [id],
            |row| row.get(0),
        )?;
        Ok(offset.max(0) as u64)
    }

    /// Records how far into the trainer's output the server has read.
    pub fn set_output_offset(&self, id: &str, offset: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE jobs SET output_offset = ?2 WHERE id = ?1",
            params![id, offset as i64],
        )?;
        Ok(())
    }

    /// Sets the total steps (known once the trainer has read the data).
    pub fn set_total_steps(&self, id: &str, total: u64) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE jobs SET total_steps = ?2 WHERE id = ?1",
            params![id, total as i64],
        )?;
        Ok(())
    }

    /// Records what the backend calls the job's run.
    pub fn set_backend_ref(&self, id: &str, backend_ref: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE jobs SET backend_ref = ?2 WHERE id = ?1",
            params![id, backend_ref],
        )?;
        Ok(())
    }

    /// Appends an event to a job's history.
    pub fn event(
        &mut self,
        id: &str,
        level: Level,
        kind: EventKind,
        message: &str,
        data: Option<&serde_json::Value>,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        let seq = append_event(&tx, id, level, kind, message, data)?;
        if kind == EventKind::Metrics
            && let Some(step) = data.and_then(|d| d.get("step")).and_then(|s| s.as_u64())
        {
            tx.execute(
                "UPDATE jobs SET step = MAX(step, ?2) WHERE id = ?1",
                params![id, step as i64],
            )?;
        }
        tx.commit()?;
        Ok(seq)
    }

    /// Events after `after` (a `seq`), oldest first, at most `limit`.
    pub fn events(
        &self,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.get(id)?;
        let mut statement = self.conn.prepare(
            "SELECT seq, created_at, level, kind, message, data FROM events
             WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![id, after.map(|a| a as i64).unwrap_or(-1), limit as i64],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            },
        )?;
        let mut events = Vec::new();
        for row in rows {
            let (seq, created_at, level, kind, message, data) = row?;
            events.push(Event {
                seq: seq as u64,
                created_at,
                level: match level.as_str() {
                    "warn" => Level::Warn,
                    "error" => Level::Error,
                    _ => Level::Info,
                },
                kind: if kind == "metrics" {
                    EventKind::Metrics
                } else {
                    EventKind::Message
                },
                message,
                data: data.map(|d| serde_json::from_str(&d)).transpose()?,
            });
        }
        Ok(events)
    }

    /// The data of the newest metrics event.
    pub fn latest_metrics(&self, id: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let data: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT data FROM events WHERE job_id = ?1 AND kind = 'metrics' ORDER BY seq DESC LIMIT 1",
                [id],
                |row| row.get(0),
            )
            .optional()?;
        Ok(data
            .flatten()
            .map(|d| serde_json::from_str(&d))
            .transpose()?)
    }

    /// Records a checkpoint (a later report for the same step replaces it).
    pub fn checkpoint(
        &mut self,
        id: &str,
        step: u64,
        path: &Path,
        metrics: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT OR REPLACE INTO checkpoints (job_id, step, created_at, path, metrics) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, step as i64, now(), path.to_string_lossy(), serde_json::to_string(metrics)?],
        )?;
        append_event(
            &tx,
            id,
            Level::Info,
            EventKind::Message,
            &format!("checkpoint at step {step}: {}", path.display()),
            Some(metrics),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        self.get(id)?;
        let mut statement = self.conn.prepare(
            "SELECT step, created_at, path, metrics FROM checkpoints WHERE job_id = ?1 ORDER BY step",
        )?;
        let rows = statement.query_map([id], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (step, created_at, path, metrics) = row?;
            let path = PathBuf::from(path);
            out.push(Checkpoint {
                step: step as u64,
                created_at,
                on_disk: path.is_dir(),
                path,
                metrics: serde_json::from_str(&metrics)?,
            });
        }
        Ok(out)
    }

    /// Records a file the job produced.
    pub fn add_artifact(&self, id: &str, artifact: &Artifact) -> Result<(), StoreError> {
        let mut artifacts = self.get(id)?.artifacts;
        artifacts.retain(|a| a.path != artifact.path);
        artifacts.push(artifact.clone());
        self.conn.execute(
            "UPDATE jobs SET artifacts = ?2 WHERE id = ?1",
            params![id, serde_json::to_string(&artifacts)?],
        )?;
        Ok(())
    }
}

fn append_event(
    tx: &Connection,
    id: &str,
    level: Level,
    kind: EventKind,
    message: &str,
    data: Option<&serde_json::Value>,
) -> Result<u64, StoreError> {
    let seq: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE job_id = ?1",
        [id],
        |row| row.get(0),
    )?;
    tx.execute(
        "INSERT INTO events (job_id, seq, created_at, level, kind, message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            id,
            seq,
            now(),
            level_str(level),
            if kind == EventKind::Metrics { "metrics" } else { "message" },
            message,
            data.map(serde_json::to_string).transpose()?,
        ],
    )?;
    Ok(seq as u64)
}

const COLUMNS: &str = "id, spec, status, created_at, started_at, finished_at, error, resolved, backend_ref, dir, step, total_steps, artifacts";

struct Raw {
    id: String,
    spec: String,
    status: String,
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    error: Option<String>,
    resolved: Option<String>,
    backend_ref: Option<String>,
    dir: String,
    step: i64,
    total_steps: Option<i64>,
    artifacts: String,
}

fn row_to_raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        id: row.get(0)?,
        spec: row.get(1)?,
        status: row.get(2)?,
        created_at: row.get(3)?,
        started_at: row.get(4)?,
        finished_at: row.get(5)?,
        error: row.get(6)?,
        resolved: row.get(7)?,
        backend_ref: row.get(8)?,
        dir: row.get(9)?,
        step: row.get(10)?,
        total_steps: row.get(11)?,
        artifacts: row.get(12)?,
    })
}

impl Raw {
    fn into_job(self) -> Result<Job, StoreError> {
        let status = Status::parse(&self.status).ok_or_else(|| {
            StoreError::Json(serde::de::Error::custom(format!(
                "unknown status {:?}",
                self.status
            )))
        })?;
        Ok(Job {
            spec: serde_json::from_str(&self.spec)?,
            status,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error,
            resolved: self
                .resolved
                .map(|r| serde_json::from_str(&r))
                .transpose()?,
            backend_ref: self.backend_ref,
            dir: PathBuf::from(self.dir),
            step: self.step.max(0) as u64,
            total_steps: self.total_steps.map(|t| t.max(0) as u64),
            artifacts: serde_json::from_str(&self.artifacts)?,
            id: self.id,
        })
    }
}
