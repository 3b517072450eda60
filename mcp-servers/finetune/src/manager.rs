//! The job queue: creates jobs (validating first), hands queued ones to their backend as it has
//! room, reads the trainers' reports into events and checkpoints, and notices runs that ended.
//!
//! One loop ([`Manager::run`]) does the moving; tool calls only record intentions (a new job,
//! a cancel) and wake it. On start the loop finds the jobs a previous server left running:
//! those whose trainer is still alive are followed on from where their output was last read;
//! those whose trainer died are read to the end and, without a final report, marked failed with
//! the reason.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use mcp_core::sandbox::{FinalLink, Resolved, Sandbox, SandboxError, open_regular};
use serde::Serialize;

use crate::{
    backend::{Backend, BackendInfo, RunState, Submission},
    dataset::{self, Report as DatasetReport, TokenCounter},
    job::{JobSpec, Method, Quantization, Status, Trainer},
    recipes::{self, Recipe},
    store::{Artifact, Checkpoint, Event, EventKind, Job, Level, Store, StoreError},
    train::{self, Outcome, Report, TrainConfig},
};

/// Most bytes of trainer output read per job per pass.
const OUTPUT_CHUNK: usize = 1 << 20;
/// How often running jobs are looked at when nothing wakes the loop.
const POLL: Duration = Duration::from_millis(300);

/// Why a job could not be created, changed or read; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job store failed, or has no such job.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request cannot be met as asked.
    #[error("{0}")]
    Invalid(String),
    /// The training file has errors (the report lists them).
    #[error("the training data has errors: {}", .0.render())]
    Dataset(Box<DatasetReport>),
}

impl mcp_core::tool::Hinted for JobError {
    fn hint(&self) -> Option<String> {
        match self {
            JobError::Dataset(_) => Some("fix the lines named, then create_job again".into()),
            JobError::Store(StoreError::NoJob(_)) => Some("list_jobs shows the ids".into()),
            _ => None,
        }
    }
}

/// What the manager is set up with.
pub struct Options {
    /// Where jobs and their files live.
    pub data_dir: PathBuf,
    /// The program that trains (`mcp-finetune` itself, whose `train` subcommand is the trainer).
    pub trainer_program: PathBuf,
    /// Compute threads per trainer (`None`: the trainer's default).
    pub threads: Option<usize>,
    /// Where jobs may run.
    pub backends: Vec<Arc<dyn Backend>>,
    /// The directories datasets and models may be read from (`--allow-dir`): a path a client
    /// names outside all of them, or leading out of them through a link, is refused.
    pub allowed: Sandbox,
    /// Most memory a local job may take, in bytes (`None`: the machine's); a job whose
    /// pre-flight takes more is refused.
    pub max_job_memory: Option<u64>,
}

/// Creates, queues, runs, follows and resumes jobs; one per server, shared by its sessions.
pub struct Manager {
    store: Mutex<Store>,
    options: Options,
    wake: tokio::sync::Notify,
    /// One `generate` or `evaluate_job` at a time: each holds whole models in memory.
    pub(crate) answering: tokio::sync::Semaphore,
}

/// What `create_job` answers.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Created {
    /// The job (absent for a dry run).
    pub job: Option<Job>,
    /// Whether it was only a dry run (nothing created).
    pub dry_run: bool,
    /// The validation report of the training file.
    pub validation: Option<DatasetReport>,
    /// What will run: the command line and the files written beside it.
    pub command: String,
    /// The files written beside the command (name, content).
    pub files: Vec<(String, String)>,
    /// The configuration the trainer reads.
    pub config: TrainConfig,
    /// Two real steps timed before queueing (built-in trainer on this machine).
    pub preflight: Option<Preflight>,
}

/// What two real steps on a job's longest examples said about it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Preflight {
    /// Seconds of one optimizer step on the longest examples.
    pub step_seconds: f64,
    /// The whole run's predicted seconds on this machine (steps scaled to the mean example,
    /// evaluations included).
    pub predicted_seconds: f64,
    /// Optimizer steps planned.
    pub total_steps: u64,
    /// The trainer's peak memory over those steps, in bytes.
    pub peak_bytes: Option<u64>,
    /// The machine's memory, in bytes.
    pub machine_bytes: Option<u64>,
    /// Memory available now, in bytes.
    pub available_bytes: Option<u64>,
}

impl Preflight {
    /// In a line: `2 steps on the longest examples: 0.41 s each; about 3 min for 300 steps; peak
    /// memory 1.2 GB of 24.0 GB`.
    pub fn render(&self) -> String {
        let gb = |bytes: u64| format!("{:.1} GB", bytes as f64 / 1e9);
        let minutes = self.predicted_seconds / 60.0;
        let duration = if minutes < 1.0 {
            format!("{:.0} s", self.predicted_seconds)
        } else if minutes < 120.0 {
            format!("{minutes:.0} min")
        } else {
            format!("{:.1} h", minutes / 60.0)
        };
        let mut text = format!(
            "pre-flight: two steps on the longest examples took {:.2} s each; about {duration} for {} steps",
            self.step_seconds, self.total_steps
        );
        if let Some(peak) = self.peak_bytes {
            text.push_str(&format!("; peak memory {}", gb(peak)));
            if let Some(machine) = self.machine_bytes {
                text.push_str(&format!(" of {}", gb(machine)));
            }
        }
        text
    }
}

/// Longest a pre-flight may take.
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(600);

/// A `/proc/meminfo` line's value in bytes (Linux).
fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A job with what a person wants to see first: how far, how long still, the latest metrics.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct JobView {
    /// The job as stored.
    #[serde(flatten)]
    pub job: Job,
    /// 0 to 100.
    pub progress_percent: Option<f64>,
    /// Seconds left, from the pace so far.
    pub eta_seconds: Option<f64>,
    /// The last metrics event's data.
    pub latest_metrics: Option<serde_json::Value>,
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the store cannot leave SQLite half-written (transactions), so the
    // data behind a poisoned lock is still good.
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Manager {
    /// Opens (or creates) the job store in `options.data_dir`.
    pub fn open(options: Options) -> Result<Arc<Self>, JobError> {
        let jobs = options.data_dir.join("jobs");
        std::fs::create_dir_all(&jobs).map_err(|error| {
            JobError::Invalid(format!("cannot create {}: {error}", jobs.display()))
        })?;
        let store = Store::open(&options.data_dir)?;
        Ok(Arc::new(Self {
            store: Mutex::new(store),
            options,
            wake: tokio::sync::Notify::new(),
            answering: tokio::sync::Semaphore::new(1),
        }))
    }

    /// Where jobs live.
    pub fn data_dir(&self) -> &Path {
        &self.options.data_dir
    }

    fn backend(&self, name: &str) -> Option<&Arc<dyn Backend>> {
        self.options.backends.iter().find(|b| b.name() == name)
    }

    /// Every backend, as `list_backends` shows them.
    pub fn backends(&self) -> Vec<BackendInfo> {
        self.options.backends.iter().map(|b| b.info()).collect()
    }

    /// Runs the queue until the process ends.
    ///
    /// Several servers may share a data directory (two hosts each starting one): only the one
    /// holding `scheduler.lock` launches and follows jobs; the others record and answer, and one
    /// of them takes over when the holder exits.
    pub async fn run(self: Arc<Self>) {
        let lock_path = self.options.data_dir.join("scheduler.lock");
        let mut held: Option<std::fs::File> = None;
        loop {
            if held.is_none() {
                held = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .ok()
                    .filter(|file| file.try_lock().is_ok());
                if held.is_some() {
                    tracing::info!("this server runs the job queue");
                }
            }
            if held.is_some()
                && let Err(error) = self.tick().await
            {
                tracing::error!(%error, "job queue pass failed");
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass: follow running jobs, then start queued ones where there is room.
    pub async fn tick(&self) -> Result<(), JobError> {
        let running = lock(&self.store).with_status(&[Status::Running])?;
        for job in running {
            if let Err(error) = self.follow(&job).await {
                tracing::warn!(job = %job.id, %error, "following a job failed");
            }
        }
        let queued = lock(&self.store).with_status(&[Status::Queued])?;
        let mut busy: HashMap<String, usize> = HashMap::new();
        for job in lock(&self.store).with_status(&[Status::Running])? {
            *busy.entry(job.spec.backend.clone()).or_default() += 1;
        }
        for job in queued {
            let Some(backend) = self.backend(&job.spec.backend).cloned() else {
                lock(&self.store).transition(
                    &job.id,
                    Status::Failed,
                    Some(&format!("no backend {:?}", job.spec.backend)),
                )?;
                continue;
            };
            let used = busy.entry(job.spec.backend.clone()).or_default();
            if *used >= backend.info().capacity {
                continue;
            }
            *used += 1;
            self.launch(&job, backend.as_ref()).await?;
        }
        Ok(())
    }

    async fn launch(&self, job: &Job, backend: &dyn Backend) -> Result<(), JobError> {
        let recipe: Recipe = match std::fs::read_to_string(job.dir.join("recipe.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
        {
            Some(recipe) => recipe,
            None => {
                lock(&self.store).transition(
                    &job.id,
                    Status::Failed,
                    Some("the job directory lost its recipe.json"),
                )?;
                return Ok(());
            }
        };
        let submission = Submission {
            job_id: &job.id,
            dir: &job.dir,
            program: recipe.program_os(),
            args: recipe.args.iter().map(Into::into).collect(),
            env: recipe.env.clone(),
        };
        match backend.submit(submission).await {
            Ok(backend_ref) => {
                let mut store = lock(&self.store);
                store.set_backend_ref(&job.id, &backend_ref)?;
                store.transition(
                    &job.id,
                    Status::Running,
                    Some(&format!("on {} ({backend_ref})", backend.name())),
                )?;
            }
            Err(error) => {
                lock(&self.store).transition(&job.id, Status::Failed, Some(&error.0))?;
            }
        }
        Ok(())
    }

    /// Reads what a running job's trainer wrote since last time, and sees whether it ended.
    async fn follow(&self, job: &Job) -> Result<(), JobError> {
        let Some(backend) = self.backend(&job.spec.backend).cloned() else {
            return Ok(());
        };
        let Some(backend_ref) = job.backend_ref.clone() else {
            return Ok(());
        };
        // The state first, then the output: a run seen ended has all its output written.
        let state = backend
            .state(&backend_ref, &job.dir)
            .await
            .map_err(|e| JobError::Invalid(e.0))?;
        loop {
            let offset = lock(&self.store).output_offset(&job.id)?;
            let bytes = backend
                .output(&backend_ref, &job.dir, offset, OUTPUT_CHUNK)
                .await
                .map_err(|e| JobError::Invalid(e.0))?;
            // Only whole lines; a line being written is read next time.
            let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
                break;
            };
            for line in bytes[..end].split(|&b| b == b'\n') {
                self.apply(&job.id, line)?;
            }
            lock(&self.store).set_output_offset(&job.id, offset + end as u64 + 1)?;
            if bytes.len() < OUTPUT_CHUNK {
                break;
            }
        }
        if let RunState::Exited { success, detail } = state {
            let current = lock(&self.store).get(&job.id)?;
            if current.status == Status::Running {
                let external = current.spec.trainer != Trainer::Builtin;
                if job.dir.join(train::STOP_FILE).exists() {
                    // Asked to stop, and gone without a final report: it had not started training
                    // (a Slurm job cancelled while waiting, a trainer stopped while loading).
                    lock(&self.store).transition(
                        &job.id,
                        Status::Cancelled,
                        Some("cancelled before its first step"),
                    )?;
                } else if external && success == Some(true) {
                    // What an external trainer wrote is its output directory, whole.
                    let output = job.dir.join("output");
                    let store = lock(&self.store);
                    if output.is_dir() {
                        store.add_artifact(
                            &job.id,
                            &Artifact {
                                kind: format!("{}_output", current.spec.trainer.as_str()),
                                path: output,
                                bytes: 0,
                            },
                        )?;
                    }
                    drop(store);
                    lock(&self.store).transition(&job.id, Status::Succeeded, None)?;
                } else {
                    let log = backend
                        .log(&backend_ref, &job.dir, 2_000)
                        .await
                        .unwrap_or_default();
                    let reason = if success.is_none() {
                        format!(
                            "{detail}: the trainer stopped without a final report (while the server was not watching, or killed); resume_job continues from the last checkpoint"
                        )
                    } else {
                        detail.clone()
                    };
                    let reason = match log.trim() {
                        "" => reason,
                        log => format!("{reason}; its log ends with:\n{log}"),
                    };
                    lock(&self.store).transition(&job.id, Status::Failed, Some(&reason))?;
                }
            }
        }
        Ok(())
    }

    /// Turns one line of trainer output into job history.
    fn apply(&self, id: &str, line: &[u8]) -> Result<(), JobError> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let mut store = lock(&self.store);
        let Ok(report) = serde_json::from_str::<Report>(text) else {
            // An external trainer's own output.
            store.event(id, Level::Info, EventKind::Message, text, None)?;
            return Ok(());
        };
        match report {
            Report::Started {
                total_steps,
                examples,
                trainable_parameters,
                resumed_from,
            } => {
                store.set_total_steps(id, total_steps)?;
                let resumed = resumed_from
                    .map(|step| format!(", resumed from step {step}"))
                    .unwrap_or_default();
                store.event(
                    id,
                    Level::Info,
                    EventKind::Message,
                    &format!(
                        "training: {total_steps} steps over {examples} examples, {trainable_parameters} trainable parameters{resumed}"
                    ),
                    None,
                )?;
            }
            Report::Metrics {
                step,
                total_steps,
                train_loss,
                ..
            } => {
                let data = serde_json::to_value(&report).ok();
                store.event(
                    id,
                    Level::Info,
                    EventKind::Metrics,
                    &format!("step {step}/{total_steps}: train loss {train_loss:.4}"),
                    data.as_ref(),
                )?;
            }
            Report::Checkpoint {
                step,
                path,
                metrics,
            } => store.checkpoint(id, step, &path, &metrics)?,
            Report::Artifact { kind, path, bytes } => {
                store.add_artifact(
                    id,
                    &Artifact {
                        kind: kind.clone(),
                        path: path.clone(),
                        bytes,
                    },
                )?;
                store.event(
                    id,
                    Level::Info,
                    EventKind::Message,
                    &format!("artifact {kind}: {} ({bytes} bytes)", path.display()),
                    None,
                )?;
            }
            Report::Message { level, message } => {
                store.event(id, level, EventKind::Message, &message, None)?;
            }
            Report::Preflight { .. } => {}
            Report::Perplexity {
                ref file,
                quantization,
                examples,
                merged,
                quantized,
            } => {
                let data = serde_json::to_value(&report).ok();
                store.event(
                    id,
                    Level::Info,
                    EventKind::Message,
                    &format!(
                        "{} perplexity {quantized:.3} against {merged:.3} for the merged model ({:+.2}%) on the answers of {examples} examples ({})",
                        quantization.as_str(),
                        (quantized / merged - 1.0) * 100.0,
                        file.display()
                    ),
                    data.as_ref(),
                )?;
            }
            Report::Evaluation { evaluation } => {
                let data = serde_json::to_value(&evaluation).ok();
                store.event(
                    id,
                    Level::Info,
                    EventKind::Message,
                    &format!(
                        "evaluation on {} ({} examples), base → tuned: {}",
                        evaluation.file.display(),
                        evaluation.scored,
                        crate::train::evaluate::summary(&evaluation)
                    ),
                    data.as_ref(),
                )?;
            }
            Report::Finished { status } => {
                let to = match status {
                    Outcome::Cancelled => Status::Cancelled,
                    Outcome::Succeeded => Status::Succeeded,
                };
                let reason = (to == Status::Cancelled)
                    .then_some("stopped at a checkpoint; resume_job continues from it");
                if let Err(error) = store.transition(id, to, reason) {
                    tracing::debug!(%error, "a final report after the job ended");
                }
            }
        }
        Ok(())
    }

    /// Runs the trainer's pre-flight on a scratch copy of the job (two real steps on its longest
    /// examples, nothing written): the predicted duration and peak memory, and a refusal, with
    /// the numbers, of a job that cannot fit in this machine's memory.
    async fn preflight(&self, config: &TrainConfig) -> Result<Preflight, JobError> {
        let failed = |why: String| JobError::Invalid(format!("the pre-flight failed: {why}"));
        let scratch = self
            .options
            .data_dir
            .join("preflight")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&scratch)
            .map_err(|error| failed(format!("{}: {error}", scratch.display())))?;
        let _cleanup = RemoveOnDrop(scratch.clone());
        let mut config = config.clone();
        config.output_dir = scratch.clone();
        config.quantize = None;
        let path = scratch.join("config.json");
        let json = serde_json::to_vec(&config).map_err(|error| failed(error.to_string()))?;
        write_atomic(&path, &json)?;
        let run = tokio::process::Command::new(&self.options.trainer_program)
            .args(["train", "--preflight", "--config"])
            .arg(&path)
            .envs(recipes::trainer_env(self.options.threads))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(PREFLIGHT_TIMEOUT, run)
            .await
            .map_err(|_| {
                failed(format!(
                    "two steps took over {} s: lower batch_size or max_seq_len",
                    PREFLIGHT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|error| failed(error.to_string()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let reports: Vec<Report> = stdout
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect();
        let machine_bytes = meminfo("MemTotal:");
        let Some(Report::Preflight {
            step_seconds,
            predicted_seconds,
            peak_bytes,
            total_steps,
        }) = reports
            .iter()
            .find(|r| matches!(r, Report::Preflight { .. }))
            .cloned()
        else {
            let why = reports
                .iter()
                .rev()
                .find_map(|r| match r {
                    Report::Message { message, .. } => Some(message.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| {
                    let stderr = String::from_utf8_lossy(&output.stderr);
                    let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
                    match (output.status.code(), machine_bytes) {
                        (None, Some(machine)) => format!(
                            "the trainer was killed ({}); if the kernel ran out of memory, the job needs more than this machine's {:.1} GB",
                            output.status,
                            machine as f64 / 1e9
                        ),
                        _ => format!("{}: {}", output.status, tail.join(" / ")),
                    }
                });
            return Err(failed(why));
        };
        let preflight = Preflight {
            step_seconds,
            predicted_seconds,
            total_steps,
            peak_bytes,
            machine_bytes,
            available_bytes: meminfo("MemAvailable:"),
        };
        let limit = match (self.options.max_job_memory, machine_bytes) {
            (Some(cap), Some(machine)) if cap < machine => {
                Some((cap, "this server's --max-job-memory-gb"))
            }
            (_, Some(machine)) => Some((machine, "this machine's memory")),
            (Some(cap), None) => Some((cap, "this server's --max-job-memory-gb")),
            (None, None) => None,
        };
        if let (Some(peak), Some((limit, what))) = (peak_bytes, limit)
            && peak > limit
        {
            return Err(JobError::Invalid(format!(
                "the job will not fit in {what}: two steps on its longest examples took {:.2} GB, and there are {:.2} GB. Lower batch_size or max_seq_len, move examples from batch_size into gradient_accumulation_steps, or train LoRA adapters (lora_rank > 0) rather than every weight",
                peak as f64 / 1e9,
                limit as f64 / 1e9
            )));
        }
        Ok(preflight)
    }

    /// A dataset or model path a client named, resolved within the allowed directories, with
    /// its real location (what the trainer, another process, is given).
    pub(crate) fn confine(&self, path: &Path, what: &str) -> Result<(Resolved, PathBuf), JobError> {
        let allowed = &self.options.allowed;
        let refuse = |error: SandboxError| {
            JobError::Invalid(format!(
                "{what}: {error}. Datasets and models are read only from the directories \
                 mcp-finetune was started with (--allow-dir DIR)"
            ))
        };
        let resolved = allowed.resolve(&path.to_string_lossy()).map_err(refuse)?;
        let real = allowed.real_path(&resolved).map_err(refuse)?;
        Ok((resolved, real))
    }

    /// A model by its path within the allowed directories, or by the id of a job of this server
    /// that made one (its merged model): jobs build on jobs, as GRPO on an SFT job's result.
    fn model_or_job(&self, model: &Path, what: &str) -> Result<PathBuf, JobError> {
        let name = model.to_string_lossy();
        if name.starts_with("ftjob-") && !name.contains(['/', '\\']) {
            return self
                .answering_model(Some(&name), None, false)
                .map_err(|error| JobError::Invalid(format!("{what}: {error}")));
        }
        Ok(self.confine(model, what)?.1)
    }

    /// `validate_dataset`: the report, with exact token counts when the model is given. The
    /// file is read through the sandbox (a regular file within the allowed directories), and
    /// the check stops when the caller goes away.
    pub async fn validate(
        &self,
        path: PathBuf,
        method: Method,
        model: Option<PathBuf>,
        max_seq_len: usize,
    ) -> Result<DatasetReport, JobError> {
        let (file_at, _) = self.confine(&path, "training data")?;
        let model = model
            .map(|model| self.model_or_job(&model, "model"))
            .transpose()?;
        let stop = Arc::new(AtomicBool::new(false));
        let _stop_when_dropped = StopOnDrop(stop.clone());
        tokio::task::spawn_blocking(move || {
            let counter = match &model {
                Some(model) => token_counter(model)?,
                None => TokenCounter::Estimate,
            };
            let (file, _) = open_regular(&file_at, FinalLink::Follow)
                .map_err(|error| JobError::Invalid(error.to_string()))?;
            dataset::validate_reader(file.into_std(), &path, method, &counter, max_seq_len, &stop)
                .map_err(JobError::Invalid)
        })
        .await
        .map_err(|error| JobError::Invalid(format!("validation stopped: {error}")))?
    }

    /// The paths of a job's spec, each within the allowed directories, as real locations.
    fn confine_spec(&self, mut spec: JobSpec) -> Result<JobSpec, JobError> {
        spec.model = self.model_or_job(&spec.model, "model")?;
        if let Some(teacher) = &spec.teacher {
            spec.teacher = Some(self.model_or_job(teacher, "teacher")?);
        }
        if let Some(file) = &spec.training_file {
            spec.training_file = Some(self.confine(file, "training_file")?.1);
        }
        if let Some(file) = &spec.validation_file {
            spec.validation_file = Some(self.confine(file, "validation_file")?.1);
        }
        Ok(spec)
    }

    /// Validates the job's files, then (unless `dry_run`) records it and queues it.
    pub async fn create(&self, spec: JobSpec, dry_run: bool) -> Result<Created, JobError> {
        let spec = self.confine_spec(spec)?;
        self.check_spec(&spec, dry_run)?;
        let validation = match (&spec.training_file, spec.method.trains()) {
            (Some(file), true) => {
                let report = self
                    .validate(
                        file.clone(),
                        spec.method,
                        Some(spec.model.clone()),
                        spec.hyperparameters.max_seq_len.or(2048) as usize,
                    )
                    .await?;
                if !report.valid {
                    return Err(JobError::Dataset(Box::new(report)));
                }
                if let Some(validation_file) = &spec.validation_file {
                    let report = self
                        .validate(
                            validation_file.clone(),
                            spec.method,
                            Some(spec.model.clone()),
                            spec.hyperparameters.max_seq_len.or(2048) as usize,
                        )
                        .await?;
                    // A validation file may be small: only its line errors count.
                    if report.errors.iter().any(|p| p.line > 0) {
                        return Err(JobError::Dataset(Box::new(report)));
                    }
                }
                Some(report)
            }
            _ => None,
        };
        let (examples, p95) = validation
            .as_ref()
            .map(|r| (r.examples, r.tokens.p95))
            .unwrap_or((0, 0));
        let resolved = spec.hyperparameters.resolve(spec.method, examples, p95);
        let id = format!("ftjob-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let dir = self.options.data_dir.join("jobs").join(&id);
        let config = TrainConfig {
            method: spec.method,
            model: spec.model.clone(),
            training_file: spec.training_file.clone(),
            validation_file: spec.validation_file.clone(),
            hyperparameters: resolved,
            output_dir: dir.clone(),
            quantize: spec.quantize,
            teacher: spec.teacher.clone(),
            seed: spec
                .hyperparameters
                .seed
                .or(u64::from_str_radix(&id[6..14], 16).unwrap_or(0)),
            suffix: spec.suffix.clone(),
        };
        let recipe = recipes::recipe(
            spec.trainer,
            &config,
            &dir,
            &self.options.trainer_program,
            self.options.threads,
        )
        .map_err(JobError::Invalid)?;
        let preflight = if spec.trainer == Trainer::Builtin
            && spec.backend == "local"
            && spec.method.trains()
        {
            Some(self.preflight(&config).await?)
        } else {
            None
        };
        if dry_run {
            return Ok(Created {
                job: None,
                dry_run,
                validation,
                command: recipe.command_line(),
                files: recipe.files,
                config,
                preflight,
            });
        }
        // `create_dir` (not `_all`) fails if the directory exists: no two jobs share one.
        std::fs::create_dir(&dir).map_err(|error| {
            JobError::Invalid(format!("cannot create {}: {error}", dir.display()))
        })?;
        for (name, content) in &recipe.files {
            write_atomic(&dir.join(name), content.as_bytes())?;
        }
        let recipe_json =
            serde_json::to_vec_pretty(&recipe).map_err(|e| JobError::Invalid(e.to_string()))?;
        write_atomic(&dir.join("recipe.json"), &recipe_json)?;
        let job = {
            let mut store = lock(&self.store);
            store.insert(&id, &spec, &dir)?;
            let per_step =
                u64::from(resolved.batch_size.max(1) * resolved.gradient_accumulation_steps.max(1));
            let total = preflight.as_ref().map_or(
                u64::from(resolved.n_epochs) * (examples as u64).div_ceil(per_step),
                |p| p.total_steps,
            );
            store.set_resolved(&id, &resolved, total)?;
            if let Some(preflight) = &preflight {
                store.event(
                    &id,
                    Level::Info,
                    EventKind::Message,
                    &preflight.render(),
                    None,
                )?;
            }
            if let Some(report) = &validation {
                store.event(
                    &id,
                    if report.warning_count > 0 {
                        Level::Warn
                    } else {
                        Level::Info
                    },
                    EventKind::Message,
                    &report.render(),
                    None,
                )?;
            }
            store.transition(&id, Status::Queued, None)?
        };
        self.wake.notify_one();
        Ok(Created {
            job: Some(job),
            dry_run,
            validation,
            command: recipe.command_line(),
            files: recipe.files,
            config,
            preflight,
        })
    }

    fn check_spec(&self, spec: &JobSpec, dry_run: bool) -> Result<(), JobError> {
        let invalid = |message: String| Err(JobError::Invalid(message));
        if !spec.model.exists() {
            return invalid(format!(
                "no model at {}: give a local model directory (config.json, *.safetensors, tokenizer.json) or a .gguf file",
                spec.model.display()
            ));
        }
        match (&spec.training_file, spec.method.trains()) {
            (None, true) => {
                return invalid(format!("{} needs a training_file (JSONL)", spec.method));
            }
            (Some(file), true) if !file.is_file() => {
                return invalid(format!("no training file at {}", file.display()));
            }
            _ => {}
        }
        if spec.method == Method::Quantize && spec.quantize.is_none() {
            let names: Vec<&str> = Quantization::ALL.iter().map(|q| q.as_str()).collect();
            return invalid(format!(
                "quantize needs `quantize`: one of {}",
                names.join(", ")
            ));
        }
        if spec.teacher.is_some() && spec.method != Method::Distill {
            return invalid("`teacher` is for the distill method only".to_owned());
        }
        if let Some(teacher) = &spec.teacher
            && !teacher.exists()
        {
            return invalid(format!("no teacher model at {}", teacher.display()));
        }
        // Read the config now: a model the trainer would refuse, or could not export as asked,
        // is refused before anything runs.
        match train::model::read_config(&spec.model) {
            Ok(Some(config)) => {
                if let (Some(_), Some(why)) = (spec.quantize, config.gguf_unsupported()) {
                    return invalid(format!("quantize: {why}"));
                }
            }
            Ok(None) => {}
            Err(error) if spec.trainer == Trainer::Builtin => {
                return invalid(format!("{}: {error}", spec.model.display()));
            }
            Err(_) => {}
        }
        let hp = &spec.hyperparameters;
        if hp.early_stopping_patience.or(0) > 0 && spec.validation_file.is_none() {
            return invalid(
                "early_stopping_patience watches the validation loss: give a validation_file"
                    .to_owned(),
            );
        }
        if hp.packing.or(false) && matches!(spec.method, Method::Dpo | Method::Grpo) {
            return invalid(format!(
                "packing applies to sft and distill, not to {}",
                spec.method
            ));
        }
        if hp.early_stopping_patience.or(0) > 0 && spec.method == Method::Grpo {
            return invalid(
                "early_stopping_patience watches a validation loss, which grpo has not (it reports the validation reward)"
                    .to_owned(),
            );
        }
        if let Some(suffix) = &spec.suffix
            && (suffix.is_empty()
                || suffix.len() > 40
                || !suffix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        {
            return invalid("suffix: 1 to 40 letters, digits, - or _".to_owned());
        }
        let Some(backend) = self.backend(&spec.backend) else {
            let names: Vec<&str> = self.options.backends.iter().map(|b| b.name()).collect();
            return invalid(format!(
                "no backend {:?}; this server has {}",
                spec.backend,
                names.join(", ")
            ));
        };
        let info = backend.info();
        if !info.available && !dry_run {
            return invalid(format!(
                "backend {} is not available: {}",
                info.name, info.detail
            ));
        }
        if spec.trainer != Trainer::Builtin && !dry_run {
            let program = spec.trainer.as_str();
            if which::which(program).is_err() {
                return invalid(format!(
                    "{program} is not on PATH: install its Python environment to run it, or pass dry_run to see the config and command"
                ));
            }
        }
        Ok(())
    }

    /// A job, with its progress.
    pub fn get(&self, id: &str) -> Result<JobView, JobError> {
        let store = lock(&self.store);
        let job = store.get(id)?;
        Ok(view(&store, job)?)
    }

    /// Jobs, newest first, at most `limit`, after the job `after`.
    pub fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<Job>, JobError> {
        Ok(lock(&self.store).list(after, limit)?)
    }

    /// A job's events after `after` (a sequence number), at most `limit`.
    pub fn events(
        &self,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        Ok(lock(&self.store).events(id, after, limit)?)
    }

    /// A job's checkpoints, oldest first.
    pub fn checkpoints(&self, id: &str) -> Result<Vec<Checkpoint>, JobError> {
        Ok(lock(&self.store).checkpoints(id)?)
    }

    /// Cancels a job: at once if it has not started, else by asking its trainer to checkpoint and
    /// stop (the job becomes `cancelled` when it has).
    pub async fn cancel(&self, id: &str) -> Result<Job, JobError> {
        let job = lock(&self.store).get(id)?;
        match job.status {
            Status::ValidatingFiles | Status::Queued => Ok(lock(&self.store).transition(
                id,
                Status::Cancelled,
                Some("cancelled before it started"),
            )?),
            Status::Running => {
                let backend = self
                    .backend(&job.spec.backend)
                    .cloned()
                    .ok_or_else(|| JobError::Invalid(format!("no backend {}", job.spec.backend)))?;
                let backend_ref = job.backend_ref.clone().unwrap_or_default();
                backend
                    .cancel(&backend_ref, &job.dir)
                    .await
                    .map_err(|e| JobError::Invalid(e.0))?;
                lock(&self.store).event(
                    id,
                    Level::Info,
                    EventKind::Message,
                    "cancel requested: the trainer checkpoints and stops after its current step",
                    None,
                )?;
                self.wake.notify_one();
                Ok(lock(&self.store).get(id)?)
            }
            status => Err(JobError::Invalid(format!("job {id} is {status} already"))),
        }
    }

    /// Queues a cancelled or failed job again; its trainer resumes from the newest checkpoint.
    pub fn resume(&self, id: &str) -> Result<Job, JobError> {
        let job = lock(&self.store).get(id)?;
        if !matches!(job.status, Status::Cancelled | Status::Failed) {
            return Err(JobError::Invalid(format!(
                "job {id} is {}; only cancelled or failed jobs resume",
                job.status
            )));
        }
        let _ = std::fs::remove_file(job.dir.join(train::STOP_FILE));
        let from = train::latest_checkpoint(&job.dir)
            .map(|(step, _)| format!("resumes from the checkpoint at step {step}"))
            .unwrap_or_else(|| "no checkpoint yet: starts from the beginning".to_owned());
        let job = lock(&self.store).transition(id, Status::Queued, Some(&from))?;
        self.wake.notify_one();
        Ok(job)
    }
}

fn view(store: &Store, job: Job) -> Result<JobView, StoreError> {
    let latest = store.latest_metrics(&job.id)?;
    let progress_percent = job
        .total_steps
        .filter(|t| *t > 0)
        .map(|total| 100.0 * job.step as f64 / total as f64);
    let eta_seconds = if job.status == Status::Running {
        latest
            .as_ref()
            .and_then(|m| m.get("eta_s"))
            .and_then(|v| v.as_f64())
    } else {
        None
    };
    Ok(JobView {
        job,
        progress_percent,
        eta_seconds,
        latest_metrics: latest,
    })
}

/// Counts tokens with a model's tokenizer: `tokenizer.json` in its directory, or the one in its
/// GGUF file (read without the weights).
pub fn token_counter(model: &Path) -> Result<TokenCounter, JobError> {
    if model.is_dir() {
        return TokenCounter::for_model_dir(model).map_err(JobError::Invalid);
    }
    if model.extension().is_some_and(|e| e == "gguf") {
        // A regular file only, opened without blocking: a FIFO named like a model is refused.
        let mut file = dataset::open(model).map_err(JobError::Invalid)?;
        let content =
            candle_core::quantized::gguf_file::Content::read(&mut file).map_err(|error| {
                JobError::Invalid(format!("{}: not a GGUF file: {error}", model.display()))
            })?;
        return train::tokenize::from_gguf(&content.metadata)
            .map(|t| TokenCounter::Tokenizer(Box::new(t)))
            .map_err(JobError::Invalid);
    }
    Ok(TokenCounter::Estimate)
}

/// Sets its flag when dropped: a blocking check learns that its caller went away.
/// Removes a scratch directory when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raises its flag when dropped: a blocking task's way to learn that its caller went away.
pub(crate) struct StopOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JobError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|error| JobError::Invalid(format!("{}: {error}", path.display())))
}
