//! Ray: each run a Ray job, through the Jobs REST API of the cluster's dashboard
//! (`POST /api/jobs/` to submit, `GET /api/jobs/{id}` for its state, `GET /api/jobs/{id}/logs`
//! for its driver's log, `POST /api/jobs/{id}/stop`). The entrypoint runs the trainer in the
//! job directory, which must be on a filesystem the Ray node shares with the server (as with
//! Slurm): its stdout (the reports) and stderr go to the job directory, appended to across
//! resumed runs, and a running job stops at a checkpoint through the STOP file there.

use std::{path::Path, time::Duration};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Backend, BackendError, BackendInfo, LOG_FILE, OUTPUT_FILE, RunState, Submission};

/// Most bytes of a Ray answer read: a job's state is small, its log is cut to the end.
const ANSWER_LIMIT: usize = 8 << 20;

/// Runs jobs as Ray jobs.
pub struct Ray {
    /// The dashboard's address, e.g. `http://127.0.0.1:8265`.
    address: String,
    client: reqwest::Client,
    /// The cluster's Ray version when the server started, or why it did not answer.
    status: Result<String, String>,
    /// Jobs handed to Ray at once (Ray queues the rest of its own work).
    capacity: usize,
}

impl Ray {
    /// Asks the dashboard at `address` for its version (`GET /api/version`).
    pub async fn detect(address: &str, capacity: usize) -> Self {
        let address = address.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mut ray = Self {
            address,
            client,
            status: Err(String::new()),
            capacity,
        };
        ray.status = match ray.get("/api/version").await {
            Ok(version) => Ok(format!(
                "Ray {} at {}",
                version["ray_version"]
                    .as_str()
                    .unwrap_or("(version unknown)"),
                ray.address
            )),
            Err(error) => Err(format!(
                "no Ray cluster at {} ({error}); start one (`ray start --head`) or give its dashboard's address with --ray-address",
                ray.address
            )),
        };
        ray
    }

    async fn get(&self, path: &str) -> Result<Value, BackendError> {
        let response = self.client.get(format!("{}{path}", self.address)).send();
        self.answer(path, response.await)
            .await?
            .ok_or_else(|| not_found(path))
    }

    /// A Ray job's record; `None` when Ray does not know it (any more).
    async fn job(&self, id: &str) -> Result<Option<Value>, BackendError> {
        let path = format!("/api/jobs/{id}");
        let response = self.client.get(format!("{}{path}", self.address)).send();
        self.answer(&path, response.await).await
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, BackendError> {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send();
        self.answer(path, response.await)
            .await?
            .ok_or_else(|| not_found(path))
    }

    /// A JSON answer, read up to [`ANSWER_LIMIT`] bytes; `None` for 404; another error status
    /// in Ray's words.
    async fn answer(
        &self,
        path: &str,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<Option<Value>, BackendError> {
        let failed = |error: String| BackendError(format!("Ray {path}: {error}"));
        let mut response = response.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            body.extend_from_slice(&chunk);
            if body.len() > ANSWER_LIMIT {
                return Err(failed(format!("an answer over {ANSWER_LIMIT} bytes")));
            }
        }
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(failed(format!("{status}: {}", text.trim())));
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| failed(format!("not JSON ({e}): {text}")))
    }
}

fn not_found(path: &str) -> BackendError {
    BackendError(format!("Ray {path}: 404 Not Found"))
}

fn submission_id(backend_ref: &str) -> Result<&str, BackendError> {
    backend_ref
        .strip_prefix("ray:")
        .filter(|id| {
            !id.is_empty()
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .ok_or_else(|| BackendError(format!("not a Ray job: {backend_ref:?}")))
}

/// A word for the entrypoint's shell, single-quoted.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What a Ray job's status says about the run.
fn parse_state(job: &Value) -> RunState {
    let message = job["message"].as_str().unwrap_or("").trim();
    let detail = |what: &str| {
        if message.is_empty() {
            format!("Ray job {what}")
        } else {
            format!("Ray job {what}: {message}")
        }
    };
    match job["status"].as_str().unwrap_or("") {
        "PENDING" => RunState::Pending,
        "RUNNING" => RunState::Running,
        "SUCCEEDED" => RunState::Exited {
            success: Some(true),
            detail: detail("succeeded"),
        },
        "STOPPED" => RunState::Exited {
            success: Some(false),
            detail: detail("stopped"),
        },
        "FAILED" => RunState::Exited {
            success: Some(false),
            detail: detail("failed"),
        },
        other => RunState::Exited {
            success: None,
            detail: detail(&format!("in an unknown state {other:?}")),
        },
    }
}

impl Backend for Ray {
    fn name(&self) -> &'static str {
        "ray"
    }

    fn info(&self) -> BackendInfo {
        BackendInfo::detected("ray", &self.status, self.capacity)
    }

    fn submit<'a>(&'a self, run: Submission<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let dir = run.dir.display().to_string();
            // `exec`: the trainer is the driver process, so Ray's stop signal reaches it.
            let mut command = vec![quote(&run.program.to_string_lossy())];
            command.extend(run.args.iter().map(|a| quote(&a.to_string_lossy())));
            let entrypoint = format!(
                "cd {} && exec {} >> {} 2>> {}",
                quote(&dir),
                command.join(" "),
                quote(OUTPUT_FILE),
                quote(LOG_FILE)
            );
            let env: serde_json::Map<String, Value> = run
                .env
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            // Ray refuses a submission id it has seen: a resumed run is a new Ray job.
            let id = format!(
                "{}-{}",
                run.job_id,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            super::clear_stop(run.dir);
            let answer = self
                .post(
                    "/api/jobs/",
                    &json!({
                        "entrypoint": entrypoint,
                        "submission_id": id,
                        "runtime_env": {"env_vars": env},
                        "metadata": {"mcp_finetune_job": run.job_id},
                    }),
                )
                .await?;
            let given = answer["submission_id"].as_str().unwrap_or(&id).to_owned();
            let backend_ref = format!("ray:{given}");
            submission_id(&backend_ref)?;
            Ok(backend_ref)
        })
    }

    fn state<'a>(
        &'a self,
        backend_ref: &'a str,
        _dir: &'a Path,
    ) -> BoxFuture<'a, Result<RunState, BackendError>> {
        Box::pin(async move {
            let id = submission_id(backend_ref)?;
            Ok(match self.job(id).await? {
                Some(job) => parse_state(&job),
                None => RunState::Exited {
                    success: None,
                    detail: format!("Ray no longer knows job {id}"),
                },
            })
        })
    }

    fn cancel<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let id = submission_id(backend_ref)?;
            super::request_stop(dir)?;
            // Not started yet: nothing to checkpoint, so Ray drops it.
            if let Some(job) = self.job(id).await?
                && parse_state(&job) == RunState::Pending
            {
                self.post(&format!("/api/jobs/{id}/stop"), &json!({}))
                    .await?;
            }
            Ok(())
        })
    }

    /// The trainer's stderr from the job directory, and what Ray's driver log adds (a failure
    /// to start the entrypoint shows there only).
    fn log<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
        max: usize,
    ) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let mut log = super::tail(&dir.join(LOG_FILE), max);
            let id = submission_id(backend_ref)?;
            if let Ok(answer) = self.get(&format!("/api/jobs/{id}/logs")).await
                && let Some(driver) = answer["logs"].as_str()
                && !driver.trim().is_empty()
            {
                let start = driver.len().saturating_sub(max / 2);
                let start = (start..driver.len())
                    .find(|&i| driver.is_char_boundary(i))
                    .unwrap_or(driver.len());
                log.push_str("\n[Ray driver log]\n");
                log.push_str(&driver[start..]);
            }
            Ok(log)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ray_states_map_to_runs() {
        assert_eq!(
            parse_state(&json!({"status": "PENDING"})),
            RunState::Pending
        );
        assert_eq!(
            parse_state(&json!({"status": "RUNNING"})),
            RunState::Running
        );
        assert_eq!(
            parse_state(&json!({"status": "FAILED", "message": "exit code 2"})),
            RunState::Exited {
                success: Some(false),
                detail: "Ray job failed: exit code 2".to_owned()
            }
        );
        assert!(matches!(
            parse_state(&json!({"status": "SUCCEEDED"})),
            RunState::Exited {
                success: Some(true),
                ..
            }
        ));
    }

    #[test]
    fn only_our_own_references_reach_a_url() {
        assert_eq!(submission_id("ray:ftjob-1-ab12").unwrap(), "ftjob-1-ab12");
        for hostile in [
            "ray:../../api/version",
            "ray:a/stop",
            "ray:",
            "slurm:12",
            "ray:a?b",
        ] {
            assert!(submission_id(hostile).is_err(), "{hostile}");
        }
    }
}
