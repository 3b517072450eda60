//! The run store: every run of a workflow and every step of it (each `for_each` item apart),
//! with its input, result or error and times, in SQLite under
//! `$XDG_STATE_HOME/mcp-toolkit/flows.sqlite`. A step's start is written before it runs and
//! its end before the next step starts, so a run killed at any point can be resumed: what
//! ended is not run again, and what was in flight is known.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;

/// The store's default file.
pub fn default_path() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::State).join("flows.sqlite")
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("the run store {path}: {error}")]
pub struct StoreError {
    path: PathBuf,
    error: rusqlite::Error,
}

/// The run store.
pub struct Store {
    db: Connection,
    path: PathBuf,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// Its id.
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The file it was read from.
    pub file: String,
    /// The file's text when the run started (a resumed run follows it, not the file now).
    #[serde(skip)]
    pub source: String,
    /// Its inputs.
    pub inputs: Value,
    /// `running`, `succeeded`, `failed`, `stopped` (waiting: an approval, a step in flight
    /// when it died), `cancelled`.
    pub status: String,
    /// Why it failed or stopped.
    pub error: Option<String>,
    /// Seconds since the epoch.
    pub started: f64,
    /// When it ended.
    pub ended: Option<f64>,
}

/// One step (or one `for_each` item of it) as stored.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The step's id.
    pub step: String,
    /// The item's index under `for_each`; `None` for the step as a whole.
    pub item: Option<u64>,
    /// Tries so far.
    pub attempts: u32,
    /// `running`, `succeeded`, `failed`, `skipped`.
    pub status: String,
    /// What it was given (arguments, prompt, URI).
    pub input: Option<Value>,
    /// What it gave.
    pub result: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Seconds since the epoch.
    pub started: f64,
    /// When it ended.
    pub ended: Option<f64>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `-1` stands for "the step as a whole" in the table (SQLite's keys do not take NULL apart).
fn item_key(item: Option<u64>) -> i64 {
    item.map_or(-1, |i| i as i64)
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let failed = |error| StoreError {
            path: path.to_owned(),
            error,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Connection::open(path).map_err(failed)?;
        // What the steps read and wrote: for its owner alone (SQLite gives its -wal and -shm
        // files the database's mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(failed)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS runs (
                 id TEXT PRIMARY KEY, workflow TEXT NOT NULL, file TEXT NOT NULL,
                 source TEXT NOT NULL, inputs TEXT NOT NULL, status TEXT NOT NULL,
                 error TEXT, started REAL NOT NULL, ended REAL);
             CREATE TABLE IF NOT EXISTS steps (
                 run TEXT NOT NULL, step TEXT NOT NULL, item INTEGER NOT NULL,
                 attempts INTEGER NOT NULL, status TEXT NOT NULL, input TEXT, result TEXT,
                 error TEXT, started REAL NOT NULL, ended REAL, position INTEGER NOT NULL,
                 PRIMARY KEY (run, step, item));",
        )
        .map_err(failed)?;
        Ok(Self {
            db,
            path: path.to_owned(),
        })
    }

    fn failed(&self, error: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            error,
        }
    }

    /// Records a new run.
    pub fn start_run(
        &self,
        workflow: &str,
        file: &Path,
        source: &str,
        inputs: &Value,
    ) -> Result<String, StoreError> {
        let id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        self.db
            .execute(
                "INSERT INTO runs (id, workflow, file, source, inputs, status, started)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
                params![
                    id,
                    workflow,
                    file.display().to_string(),
                    source,
                    inputs.to_string(),
                    now()
                ],
            )
            .map_err(|e| self.failed(e))?;
        Ok(id)
    }

    /// Sets a run's status (and why); ended unless it is `running` again.
    pub fn set_status(
        &self,
        run: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let ended = (status != "running").then(now);
        self.db
            .execute(
                "UPDATE runs SET status = ?2, error = ?3, ended = ?4 WHERE id = ?1",
                params![run, status, error, ended],
            )
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// A run.
    pub fn run(&self, id: &str) -> Result<Option<Run>, StoreError> {
        self.db
            .query_row(
                "SELECT id, workflow, file, source, inputs, status, error, started, ended
                 FROM runs WHERE id = ?1",
                [id],
                row_run,
            )
            .optional()
            .map_err(|e| self.failed(e))
    }

    /// Runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<Run>, StoreError> {
        let mut query = self
            .db
            .prepare(
                "SELECT id, workflow, file, source, inputs, status, error, started, ended
                 FROM runs ORDER BY started DESC LIMIT ?1",
            )
            .map_err(|e| self.failed(e))?;
        let rows = query
            .query_map([limit as i64], row_run)
            .map_err(|e| self.failed(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.failed(e))
    }

    /// Records that a step (or item) starts a try, with its input.
    pub fn start_step(
        &self,
        run: &str,
        step: &str,
        item: Option<u64>,
        position: usize,
        input: &Value,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO steps (run, step, item, attempts, status, input, started, position)
                 VALUES (?1, ?2, ?3, 1, 'running', ?4, ?5, ?6)
                 ON CONFLICT (run, step, item) DO UPDATE SET attempts = attempts + 1,
                     status = 'running', input = ?4, error = NULL, result = NULL, ended = NULL",
                params![
                    run,
                    step,
                    item_key(item),
                    input.to_string(),
                    now(),
                    position as i64
                ],
            )
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// Records how a step (or item) ended.
    pub fn end_step(
        &self,
        run: &str,
        step: &str,
        item: Option<u64>,
        status: &str,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        self.db
            .execute(
                "INSERT INTO steps (run, step, item, attempts, status, result, error, started, ended, position)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?7, -1)
                 ON CONFLICT (run, step, item) DO UPDATE SET status = ?4, result = ?5,
                     error = ?6, ended = ?7",
                params![
                    run,
                    step,
                    item_key(item),
                    status,
                    result.map(Value::to_string),
                    error,
                    now()
                ],
            )
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    /// A run's steps and items, in the order they started.
    pub fn steps(&self, run: &str) -> Result<Vec<StepRecord>, StoreError> {
        let mut query = self
            .db
            .prepare(
                "SELECT step, item, attempts, status, input, result, error, started, ended
                 FROM steps WHERE run = ?1 ORDER BY started, item",
            )
            .map_err(|e| self.failed(e))?;
        let rows = query
            .query_map([run], |row| {
                let json = |i: usize| -> rusqlite::Result<Option<Value>> {
                    Ok(row
                        .get::<_, Option<String>>(i)?
                        .and_then(|t| serde_json::from_str(&t).ok()))
                };
                let item: i64 = row.get(1)?;
                Ok(StepRecord {
                    step: row.get(0)?,
                    item: (item >= 0).then_some(item as u64),
                    attempts: row.get(2)?,
                    status: row.get(3)?,
                    input: json(4)?,
                    result: json(5)?,
                    error: row.get(6)?,
                    started: row.get(7)?,
                    ended: row.get(8)?,
                })
            })
            .map_err(|e| self.failed(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.failed(e))
    }
}

fn row_run(row: &rusqlite::Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: row.get(0)?,
        workflow: row.get(1)?,
        file: row.get(2)?,
        source: row.get(3)?,
        inputs: serde_json::from_str(&row.get::<_, String>(4)?).unwrap_or(Value::Null),
        status: row.get(5)?,
        error: row.get(6)?,
        started: row.get(7)?,
        ended: row.get(8)?,
    })
}
