//! The MCP face of the job queue: validate a dataset, create, watch, cancel and resume jobs, and
//! read their logs and metrics as resources.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use mcp_core::{
    ToolError,
    resource::{Read, ResourceError, ResourceRouter},
    structured,
    tasks::{Exit, Resumed, Running, TaskOptions, Tasks, TasksError},
};
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    handler::server::{common::schema_for_output, router::tool::ToolRouter, wrapper::Parameters},
    model::*,
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};

use crate::{
    backend::BackendInfo,
    dataset::Report as DatasetReport,
    generation::{Answer, EvaluateArgs, GenerateArgs},
    job::{Hyperparameters, JobSpec, Method, Quantization, Status, Trainer},
    manager::{Created, JobError, JobView, Manager},
    store::{Checkpoint, Event, EventKind, Job},
    train::evaluate::{Evaluation, REPORT_FILE},
};

const URI_PREFIX: &str = "finetune://jobs/";
/// Longest a call waits for a job (`wait_seconds`).
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// How long a job's task is kept: jobs run for hours or days.
const TASK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The MCP server: the fine-tuning tools and the jobs' log and metrics resources.
#[derive(Clone)]
pub struct FinetuneServer {
    manager: Arc<Manager>,
    tasks: Tasks,
    tool_router: ToolRouter<Self>,
    resources: ResourceRouter<Arc<Manager>>,
}

impl FinetuneServer {
    /// The server over `manager` and the job tasks in `tasks` ([`open_tasks`]); clone it per
    /// session: the jobs and tasks are shared.
    pub fn new(manager: Arc<Manager>, tasks: Tasks) -> Self {
        Self {
            manager,
            tasks,
            tool_router: Self::tool_router(),
            resources: resources(),
        }
    }
}

/// The task store in `data_dir` (`tasks.sqlite`, beside the job store). A task the last run left
/// following a job follows it again: the job outlives the server, and so does its task.
pub fn open_tasks(manager: &Arc<Manager>, data_dir: &Path) -> Result<Tasks, TasksError> {
    let manager = manager.clone();
    Tasks::open(&data_dir.join("tasks.sqlite"), move |orphan| {
        let job = orphan.link.clone()?;
        let manager = manager.clone();
        let resumed: Resumed = Box::new(move |task| Box::pin(follow(manager, job, task)));
        Some(resumed)
    })
}

/// A job's task: its status message follows the job's step and loss, and it ends with the job
/// (`succeeded`: the job as the result; `failed`: the same, as a tool error; `cancelled`:
/// cancelled). Cancelling the task cancels the job, which stops at a checkpoint.
async fn follow(manager: Arc<Manager>, job: String, task: Running) -> Result<CallToolResult, Exit> {
    task.link(&job);
    let mut cancelling = false;
    let mut last = String::new();
    loop {
        let view = manager
            .get(&job)
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        let line = job_line(&view.job);
        if line != last {
            task.status(&line);
            last = line;
        }
        match view.job.status {
            Status::Succeeded => return Ok(structured(view_text(&view), &view)),
            Status::Failed => {
                let mut result = structured(view_text(&view), &view);
                result.is_error = Some(true);
                return Ok(result);
            }
            Status::Cancelled => return Err(Exit::Cancelled),
            _ => {}
        }
        tokio::select! {
            () = task.cancelled(), if !cancelling => {
                cancelling = true;
                if let Err(error) = manager.cancel(&job).await {
                    tracing::warn!(%job, %error, "could not cancel a job whose task was cancelled");
                }
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// A tool error as the answer of a tool that may also answer with a task.
fn tool_error(error: impl Into<ToolError>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(error.into().to_string())]).into()
}

/// A job's log and metrics, each by its own template.
fn resources() -> ResourceRouter<Arc<Manager>> {
    ResourceRouter::new()
        .route(
            ResourceTemplate::new(format!("{URI_PREFIX}{{job}}/log"), "job log")
                .with_description("The trainer's log (stderr), its last 200 KB"),
            |manager: Arc<Manager>, read: Read| async move {
                let job = found(manager.get(read.var("job")))?.job;
                let text = crate::backend::tail(&job.dir.join(crate::backend::LOG_FILE), 200_000);
                Ok(ResourceContents::text(text, read.uri()).with_mime_type("text/plain"))
            },
        )
        .route(
            ResourceTemplate::new(
                format!("{URI_PREFIX}{{job}}/metrics.csv"),
                "job metrics (CSV)",
            )
            .with_description(
                "step, epoch, train_loss, valid_loss, token_accuracy, reward, valid_reward, learning_rate, elapsed_s",
            ),
            |manager: Arc<Manager>, read: Read| async move {
                let id = read.var("job");
                found(manager.get(id))?;
                let csv = metrics_csv(&manager, id).map_err(ResourceError::failed)?;
                Ok(ResourceContents::text(csv, read.uri()).with_mime_type("text/csv"))
            },
        )
        .route(
            ResourceTemplate::new(
                format!("{URI_PREFIX}{{job}}/evaluation.json"),
                "job evaluation",
            )
            .with_description(
                "The latest evaluation of the tuned model beside its base (evaluate_job, or the validation file at the end of the job)",
            ),
            |manager: Arc<Manager>, read: Read| async move {
                let job = found(manager.get(read.var("job")))?.job;
                let text = std::fs::read_to_string(job.dir.join(REPORT_FILE)).map_err(|_| {
                    ResourceError::not_found(format!(
                        "job {} has no evaluation yet: evaluate_job makes one",
                        job.id
                    ))
                })?;
                Ok(ResourceContents::text(text, read.uri()).with_mime_type("application/json"))
            },
        )
        .route(
            ResourceTemplate::new(
                format!("{URI_PREFIX}{{job}}/metrics.json"),
                "job metrics (JSON)",
            )
            .with_description("The metrics events' data, one object per step"),
            |manager: Arc<Manager>, read: Read| async move {
                let id = read.var("job");
                found(manager.get(id))?;
                let events = manager
                    .events(id, None, usize::MAX >> 1)
                    .map_err(ResourceError::failed)?;
                let rows: Vec<serde_json::Value> = events
                    .into_iter()
                    .filter(|e| e.kind == EventKind::Metrics)
                    .filter_map(|e| e.data)
                    .collect();
                let text = serde_json::to_string(&rows).unwrap_or_default();
                Ok(ResourceContents::text(text, read.uri()).with_mime_type("application/json"))
            },
        )
}

/// Waits for `work`, turning the counts it sends into progress notifications (the first, then
/// every `every`-th) when the caller asked for them.
async fn with_progress<T>(
    work: impl std::future::Future<Output = Result<T, JobError>>,
    mut counts: tokio::sync::mpsc::UnboundedReceiver<usize>,
    meta: &RequestMetaObject,
    peer: &Peer<RoleServer>,
    total: usize,
    every: usize,
    unit: &str,
) -> Result<T, JobError> {
    let token = meta.get_progress_token();
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return done,
            Some(count) = counts.recv() => {
                if let Some(token) = &token
                    && (count == 1 || count.is_multiple_of(every))
                {
                    let _ = peer
                        .notify_progress(
                            ProgressNotificationParam::new(token.clone(), count as f64)
                                .with_total(total as f64)
                                .with_message(format!("{count} {unit}")),
                        )
                        .await;
                }
            }
        }
    }
}

/// A job lookup's failure is the resource's absence.
fn found<T>(result: Result<T, JobError>) -> Result<T, ResourceError> {
    result.map_err(ResourceError::not_found)
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ValidateArgs {
    /// The JSONL file (absolute path).
    path: PathBuf,
    /// sft (default), dpo, distill or grpo: which shape the lines must have.
    #[serde(default = "default_method")]
    method: Method,
    /// The base model (directory or .gguf): its tokenizer gives exact token counts.
    model: Option<PathBuf>,
    /// Examples longer than this many tokens are counted as cut (default 2048).
    max_seq_len: Option<usize>,
}

fn default_method() -> Method {
    Method::Sft
}

#[derive(Deserialize, schemars::JsonSchema)]
struct CreateArgs {
    /// sft (supervised, LoRA or full), dpo (preference pairs), distill (a teacher's answers and,
    /// with `teacher`, its logits), grpo (answers sampled and scored by the dataset's rewards:
    /// lines {"prompt", "answer" | "pattern" | "schema"}) or quantize (GGUF only, no training).
    method: Method,
    /// Base model: a local directory (config.json, *.safetensors, tokenizer.json), a .gguf file,
    /// or the id of a finished job (its merged model: GRPO after SFT, a quantize job after any).
    model: PathBuf,
    /// JSONL training data (validate_dataset checks it; create_job checks it again).
    training_file: Option<PathBuf>,
    validation_file: Option<PathBuf>,
    /// Each may be "auto" (the default): n_epochs, batch_size, learning_rate, lora_rank (0 = full
    /// fine-tuning), lora_alpha, max_seq_len, beta (DPO), checkpoint_every (steps).
    #[serde(default)]
    hyperparameters: Hyperparameters,
    /// Where it runs (list_backends): "local" by default.
    backend: Option<String>,
    /// builtin (default), trl or axolotl.
    #[serde(default)]
    trainer: Trainer,
    /// Also write a GGUF file: "q8_0", "q4_0", or the K-quants "q4_k_m", "q5_k_m", "q6_k"
    /// (llama.cpp's mixes), with the perplexity against the merged model as an event.
    quantize: Option<Quantization>,
    /// distill: the teacher model (same tokenizer).
    teacher: Option<PathBuf>,
    suffix: Option<String>,
    /// Only validate and show the config and command; launch nothing.
    #[serde(default)]
    dry_run: bool,
    /// Wait up to this many seconds for the job to end, with progress notifications.
    wait_seconds: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct JobArgs {
    /// The job id (ftjob-…).
    job: String,
    /// Wait up to this many seconds for the job to end (or, for cancel_job, to stop), with
    /// progress notifications.
    wait_seconds: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct JobOnly {
    /// The job id (ftjob-…).
    job: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ListJobsArgs {
    /// Jobs after this id (the previous page's last), newest first.
    after: Option<String>,
    /// At most this many (default 20, at most 100).
    limit: Option<usize>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct EventsArgs {
    job: String,
    /// Only events after this seq (the last one seen).
    after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct JobList {
    jobs: Vec<Job>,
    /// Pass as `after` for the next page.
    next_after: Option<String>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct EventList {
    events: Vec<Event>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct CheckpointList {
    checkpoints: Vec<Checkpoint>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct BackendList {
    backends: Vec<BackendInfo>,
}

fn job_line(job: &Job) -> String {
    let progress = match job.total_steps {
        Some(total) if total > 0 => format!(" step {}/{}", job.step, total),
        _ => String::new(),
    };
    let error = job
        .error
        .as_deref()
        .map(|e| format!(" ({})", e.lines().next().unwrap_or("")))
        .unwrap_or_default();
    format!(
        "{} {} {} on {} [{}]{progress}{error}",
        job.id,
        job.spec.method,
        job.spec.model.display(),
        job.spec.backend,
        job.status
    )
}

fn view_text(view: &JobView) -> String {
    let job = &view.job;
    let mut text = job_line(job);
    if let Some(percent) = view.progress_percent {
        text.push_str(&format!("\nprogress {percent:.0}%"));
        if let Some(eta) = view.eta_seconds {
            text.push_str(&format!(", about {eta:.0} s to go"));
        }
    }
    if let Some(metrics) = &view.latest_metrics {
        text.push_str(&format!("\nlatest metrics: {metrics}"));
    }
    if let Some(error) = &job.error {
        text.push_str(&format!("\n{error}"));
    }
    for artifact in &job.artifacts {
        text.push_str(&format!(
            "\nartifact {}: {} ({} bytes)",
            artifact.kind,
            artifact.path.display(),
            artifact.bytes
        ));
    }
    text.push_str(&format!("\nfiles: {}", job.dir.display()));
    text
}

#[tool_router]
impl FinetuneServer {
    #[tool(
        description = "Check a JSONL training file before training: every problem with its line number (invalid JSON, missing messages, unknown role, missing content, no assistant turn, incomplete preference pairs for dpo), token statistics (exact with `model`), duplicates. Fewer than 10 examples is an error.",
        output_schema = schema_for_output::<DatasetReport>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn validate_dataset(
        &self,
        Parameters(args): Parameters<ValidateArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let report = self
            .manager
            .validate(
                args.path,
                args.method,
                args.model,
                args.max_seq_len.unwrap_or(2048),
            )
            .await?;
        Ok(structured(report.render(), &report))
    }

    #[tool(
        description = "Create a fine-tuning job: validates the files first (nothing launches on bad data), resolves \"auto\" hyperparameters, writes the config and queues the job on its backend. dry_run returns the generated config and command without launching. wait_seconds waits for the end with progress notifications; otherwise follow it with get_job / list_events.",
        output_schema = schema_for_output::<Created>(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    // The whole context, not rmcp's `RequestMetaObject` extractor: that one takes the `_meta`
    // out of the context, and the client's capabilities (does it follow tasks?) with it.
    async fn create_job(
        &self,
        Parameters(args): Parameters<CreateArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let (meta, peer) = (context.meta.clone(), context.peer.clone());
        let spec = JobSpec {
            method: args.method,
            model: args.model,
            training_file: args.training_file,
            validation_file: args.validation_file,
            hyperparameters: args.hyperparameters,
            backend: args.backend.unwrap_or_else(|| "local".to_owned()),
            trainer: args.trainer,
            quantize: args.quantize,
            teacher: args.teacher,
            suffix: args.suffix,
        };
        let mut created = match self.manager.create(spec, args.dry_run).await {
            Ok(created) => created,
            Err(error) => return Ok(tool_error(error)),
        };
        // A client that follows tasks gets one that follows the job (SEP-2663).
        if let Some(job) = &created.job
            && mcp_core::tasks::require_extension(&context, "create_job").is_ok()
        {
            let (manager, job) = (self.manager.clone(), job.id.clone());
            let options = TaskOptions::default()
                .cooperative()
                .ttl(Some(TASK_TTL))
                .poll_interval(Duration::from_secs(2));
            return self
                .tasks
                .run(&context, "create_job", options, move |task| {
                    follow(manager, job, task)
                })
                .await;
        }
        let mut text = match &created.job {
            Some(job) => format!("created {}", job_line(job)),
            None => "dry run: nothing launched".to_owned(),
        };
        if let (Some(job), Some(wait)) = (&created.job, args.wait_seconds) {
            let view = match self
                .wait(&job.id, wait, &meta, &peer, |s| s.is_terminal())
                .await
            {
                Ok(view) => view,
                Err(error) => return Ok(tool_error(error)),
            };
            text = view_text(&view);
            created.job = Some(view.job);
        }
        text.push_str(&format!("\ncommand: {}", created.command));
        if let Some(preflight) = &created.preflight {
            text.push_str(&format!("\n{}", preflight.render()));
        }
        if let Some(report) = &created.validation {
            text.push_str(&format!("\n{}", report.render()));
        }
        if created.dry_run {
            for (name, content) in &created.files {
                text.push_str(&format!("\n--- {name}\n{content}"));
            }
        }
        Ok(structured(text, &created).into())
    }

    #[tool(
        description = "Jobs, newest first, a page at a time (pass next_after as after).",
        output_schema = schema_for_output::<JobList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_jobs(
        &self,
        Parameters(args): Parameters<ListJobsArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let limit = args.limit.unwrap_or(20).clamp(1, 100);
        let jobs = self.manager.list(args.after.as_deref(), limit)?;
        let next_after = (jobs.len() == limit).then(|| jobs[jobs.len() - 1].id.clone());
        let mut text: Vec<String> = jobs.iter().map(job_line).collect();
        if text.is_empty() {
            text.push("no jobs".to_owned());
        }
        if let Some(next) = &next_after {
            text.push(format!("[more: after={next}]"));
        }
        Ok(structured(text.join("\n"), &JobList { jobs, next_after }))
    }

    #[tool(
        description = "A job's status, progress, ETA, latest metrics, error and artifacts. wait_seconds waits for it to end, with progress notifications.",
        output_schema = schema_for_output::<JobView>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_job(
        &self,
        Parameters(args): Parameters<JobArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        self.answer(&args, &meta, &peer, |s| s.is_terminal()).await
    }

    #[tool(
        description = "A job's events (status changes, messages, metrics per step), oldest first; pass the last seq seen as `after` to get only newer ones.",
        output_schema = schema_for_output::<EventList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_events(
        &self,
        Parameters(args): Parameters<EventsArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let limit = args.limit.unwrap_or(100).clamp(1, 1000);
        let events = self.manager.events(&args.job, args.after, limit)?;
        let text: Vec<String> = events
            .iter()
            .map(|e| format!("{} [{:?}] {}", e.seq, e.level, e.message))
            .collect();
        let text = if text.is_empty() {
            "no events".to_owned()
        } else {
            text.join("\n")
        };
        Ok(structured(text, &EventList { events }))
    }

    #[tool(
        description = "A job's checkpoints: step, metrics, where the weights are and whether they are still on disk (the newest 3 are kept). resume_job continues from the newest.",
        output_schema = schema_for_output::<CheckpointList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_checkpoints(
        &self,
        Parameters(args): Parameters<JobOnly>,
    ) -> Result<CallToolResult, ToolError> {
        let checkpoints = self.manager.checkpoints(&args.job)?;
        let text: Vec<String> = checkpoints
            .iter()
            .map(|c| {
                let gone = if c.on_disk {
                    ""
                } else {
                    " (removed: only the newest are kept)"
                };
                format!("step {}: {}{gone} {}", c.step, c.path.display(), c.metrics)
            })
            .collect();
        let text = if text.is_empty() {
            "no checkpoints yet".to_owned()
        } else {
            text.join("\n")
        };
        Ok(structured(text, &CheckpointList { checkpoints }))
    }

    #[tool(
        description = "Answer with a model, here on the CPU: a job's tuned model (`job`; its GGUF file with `gguf`) or a base model (`model`, a directory or GGUF file), given a conversation (`messages`, laid out with the model's chat template) or plain text (`prompt`). temperature 0 (the default) is greedy; otherwise sampled with `top_p` from `seed`. Progress notifications count the tokens.",
        output_schema = schema_for_output::<Answer>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn generate(
        &self,
        Parameters(args): Parameters<GenerateArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        let max_tokens = args.max_tokens();
        let (progress, counts) = tokio::sync::mpsc::unbounded_channel();
        let answer = self.manager.generate(args, progress);
        let answer = with_progress(answer, counts, &meta, &peer, max_tokens, 16, "tokens").await?;
        let text = format!(
            "{}\n[{} tokens, {}; {} prompt tokens; {:.1} s; {}]",
            answer.text,
            answer.completion_tokens,
            answer.finish_reason.as_str(),
            answer.prompt_tokens,
            answer.seconds,
            answer.model.display()
        );
        Ok(structured(text, &answer))
    }

    #[tool(
        description = "Score a job's tuned model beside its base model on held-out examples (a JSONL file in the training shapes; each example's last assistant turn is the answer expected): exact_match, contains or rouge_l on greedy answers (1 is best), or loss on the expected answer (lower is best). Answers {base: {metric: …}, tuned: {metric: …}, examples: [...]}, kept as the job's evaluation.json resource. A job with a validation file is scored on it (loss and contains) when it ends.",
        output_schema = schema_for_output::<Evaluation>(),
        annotations(read_only_hint = false, destructive_hint = false, open_world_hint = false)
    )]
    async fn evaluate_job(
        &self,
        Parameters(args): Parameters<EvaluateArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        let total = args.max_examples();
        let (progress, counts) = tokio::sync::mpsc::unbounded_channel();
        let evaluation = self.manager.evaluate_job(args, progress);
        let evaluation = with_progress(
            evaluation,
            counts,
            &meta,
            &peer,
            total,
            1,
            "examples scored",
        )
        .await?;
        let mut text = format!(
            "{} examples of {} (base → tuned): {}",
            evaluation.scored,
            evaluation.file.display(),
            crate::train::evaluate::summary(&evaluation)
        );
        for example in evaluation.scores.examples.iter().take(5) {
            text.push_str(&format!(
                "\n- {:?} expected {:?}; base {:?}; tuned {:?}",
                example.prompt,
                example.expected,
                example.base_answer.as_deref().unwrap_or("-"),
                example.tuned_answer.as_deref().unwrap_or("-")
            ));
        }
        Ok(structured(text, &evaluation))
    }

    #[tool(
        description = "Cancel a job gracefully: a queued job at once; a running one checkpoints and stops after its current step (resume_job continues it). wait_seconds waits until it has stopped.",
        output_schema = schema_for_output::<JobView>(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn cancel_job(
        &self,
        Parameters(args): Parameters<JobArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        self.manager.cancel(&args.job).await?;
        self.answer(&args, &meta, &peer, |s| s != Status::Running)
            .await
    }

    #[tool(
        description = "Resume a cancelled or failed job from its newest checkpoint (from the start if it has none). wait_seconds waits for the end.",
        output_schema = schema_for_output::<JobView>(),
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn resume_job(
        &self,
        Parameters(args): Parameters<JobArgs>,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> Result<CallToolResult, ToolError> {
        self.manager.resume(&args.job)?;
        self.answer(&args, &meta, &peer, |s| s.is_terminal()).await
    }

    #[tool(
        description = "Where jobs can run, whether each is available, and how many jobs each runs at once.",
        output_schema = schema_for_output::<BackendList>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_backends(&self) -> Result<CallToolResult, ToolError> {
        let backends = self.manager.backends();
        let text: Vec<String> = backends
            .iter()
            .map(|b| {
                format!(
                    "{}: {} (capacity {}) {}",
                    b.name,
                    if b.available {
                        "available"
                    } else {
                        "unavailable"
                    },
                    b.capacity,
                    b.detail
                )
            })
            .collect();
        Ok(structured(text.join("\n"), &BackendList { backends }))
    }
}

impl FinetuneServer {
    /// The job as the answer to a call, after waiting for `done` when the call asked to wait.
    async fn answer(
        &self,
        args: &JobArgs,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
        done: impl Fn(Status) -> bool,
    ) -> Result<CallToolResult, ToolError> {
        let view = match args.wait_seconds {
            Some(wait) => self.wait(&args.job, wait, meta, peer, done).await?,
            None => self.manager.get(&args.job)?,
        };
        Ok(structured(view_text(&view), &view))
    }

    /// Waits until `done(status)` or the time is up, sending a progress notification whenever the
    /// step moves (when the client asked for progress).
    async fn wait(
        &self,
        id: &str,
        seconds: u64,
        meta: &RequestMetaObject,
        peer: &Peer<RoleServer>,
        done: impl Fn(Status) -> bool,
    ) -> Result<JobView, ToolError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds).min(MAX_WAIT);
        let token = meta.get_progress_token();
        let mut last_step = None;
        loop {
            let view = self.manager.get(id)?;
            if let Some(token) = &token
                && let Some(total) = view.job.total_steps
                && last_step != Some(view.job.step)
            {
                last_step = Some(view.job.step);
                let loss = view
                    .latest_metrics
                    .as_ref()
                    .and_then(|m| m.get("train_loss"))
                    .and_then(|l| l.as_f64())
                    .map(|l| format!(", train loss {l:.4}"))
                    .unwrap_or_default();
                let _ = peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), view.job.step as f64)
                            .with_total(total as f64)
                            .with_message(format!(
                                "{} step {}/{total}{loss}",
                                view.job.status, view.job.step
                            )),
                    )
                    .await;
            }
            if done(view.job.status) || tokio::time::Instant::now() >= deadline {
                return Ok(view);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn metrics_csv(manager: &Manager, id: &str) -> Result<String, JobError> {
    let events = manager.events(id, None, usize::MAX >> 1)?;
    let columns = [
        "step",
        "epoch",
        "train_loss",
        "valid_loss",
        "token_accuracy",
        "reward",
        "valid_reward",
        "learning_rate",
        "elapsed_s",
    ];
    let mut csv = columns.join(",") + "\n";
    for event in events.iter().filter(|e| e.kind == EventKind::Metrics) {
        let Some(data) = &event.data else { continue };
        let row: Vec<String> = columns
            .iter()
            .map(|c| match data.get(*c) {
                Some(serde_json::Value::Null) | None => String::new(),
                Some(value) => value.to_string(),
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    Ok(csv)
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FinetuneServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-finetune",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Fine-tuning jobs. validate_dataset first; create_job (dry_run shows the config and \
             command); follow with get_job (wait_seconds to wait with progress) and list_events; \
             cancel_job stops at a checkpoint and resume_job continues. A client that declares \
             the Tasks extension gets create_job as a task that follows the job (tasks/cancel \
             cancels it). Logs and metrics are resources: finetune://jobs/{id}/log, \
             /metrics.csv, /metrics.json.",
        )
    }

    // tasks/get, tasks/update and tasks/cancel.
    mcp_core::task_methods!(tasks);

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let jobs = self
            .manager
            .list(None, 50)
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let mut resources = Vec::new();
        for job in jobs {
            for (leaf, what) in [
                ("log", "the trainer's log"),
                ("metrics.csv", "metrics per step, CSV"),
                ("metrics.json", "metrics per step, JSON"),
            ] {
                resources.push(
                    Resource::new(
                        format!("{URI_PREFIX}{}/{leaf}", job.id),
                        format!("{} {leaf}", job.id),
                    )
                    .with_description(format!("{what} ({} {})", job.spec.method, job.status)),
                );
            }
        }
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(self.resources.templates())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.resources
            .read(self.manager.clone(), &request.uri)
            .await
    }
}
