//! `generate`: a base model, a job's tuned model or its GGUF file answers, here, on the CPU;
//! `evaluate_job`: the tuned model scored beside its base on held-out examples.
//!
//! The model is read when asked (a base model through the sandbox, like every path a client
//! names; a job's from its artifacts), one generation runs at a time (each holds a model in
//! memory), and a generation stops when its caller goes away.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use mcp_core::sandbox::{FinalLink, open_regular};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    dataset::Turn,
    job::Status,
    manager::{JobError, Manager, StopOnDrop},
    train::{
        evaluate::{self, Answerer, Evaluation, Metric},
        generate::{Finish, Sampling, generate},
        model::{self, Model, Tuning},
        tokenize::ChatTokenizer,
    },
};

/// Longest answer a call may ask for.
pub const MAX_TOKENS: usize = 4096;

/// One turn of a conversation to answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Message {
    /// `system`, `user`, `assistant`, …
    pub role: String,
    /// Its text.
    pub content: String,
}

/// What `generate` is asked.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GenerateArgs {
    /// A job whose tuned model answers (its merged model; with `gguf`, its GGUF file).
    #[serde(default)]
    pub job: Option<String>,
    /// Or a model (a directory or a GGUF file within the allowed directories) that answers.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// With `job`: its GGUF file answers rather than its merged model.
    #[serde(default)]
    pub gguf: bool,
    /// The conversation to answer, laid out with the model's chat template.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Or plain text to continue (no template).
    #[serde(default)]
    pub prompt: Option<String>,
    /// Most tokens to generate (default 256, at most 4096).
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// 0 (the default) takes the likeliest token each time; higher samples more freely.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Samples among the likeliest tokens whose probabilities sum to this (default 1: all).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Seeds the sampling: the same seed gives the same answer (default 0).
    #[serde(default)]
    pub seed: Option<u64>,
}

/// What `generate` answers.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Answer {
    /// The answer.
    pub text: String,
    /// Why it ended: `stop` (the model ended it), `length` (`max_tokens`), `cancelled`.
    pub finish_reason: Finish,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// The model that answered (a path).
    pub model: PathBuf,
    /// Seconds, loading the model included.
    pub seconds: f64,
}

impl GenerateArgs {
    /// Most tokens to generate (256 unless asked).
    pub fn max_tokens(&self) -> usize {
        self.max_tokens.unwrap_or(256)
    }

    fn sampling(&self) -> Result<Sampling, JobError> {
        let temperature = self.temperature.unwrap_or(0.0);
        let top_p = self.top_p.unwrap_or(1.0);
        if !(0.0..=10.0).contains(&temperature) {
            return Err(JobError::Invalid(format!(
                "temperature must be between 0 and 10, not {temperature}"
            )));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(JobError::Invalid(format!(
                "top_p must be above 0 and at most 1, not {top_p}"
            )));
        }
        Ok(Sampling {
            temperature,
            top_p,
            seed: self.seed.unwrap_or(0),
        })
    }

    fn turns(&self) -> Result<Option<Vec<Turn>>, JobError> {
        match (&self.messages, &self.prompt) {
            (Some(_), Some(_)) | (None, None) => Err(JobError::Invalid(
                "give either messages (a conversation) or prompt (plain text)".to_owned(),
            )),
            (None, Some(_)) => Ok(None),
            (Some(messages), None) => {
                if messages.is_empty() {
                    return Err(JobError::Invalid("messages is empty".to_owned()));
                }
                messages
                    .iter()
                    .map(|m| {
                        if m.role.trim().is_empty() {
                            return Err(JobError::Invalid("a message has no role".to_owned()));
                        }
                        Ok(Turn {
                            role: m.role.clone(),
                            text: m.content.clone(),
                            trained: false,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
        }
    }
}

/// A `generate` or `evaluate_job` under way: it holds the one place for answering, and raises
/// `stop` when dropped (its caller went away).
struct Answering<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
    stop: Arc<AtomicBool>,
    _stop_when_dropped: StopOnDrop,
}

impl Manager {
    /// Waits for the place for answering (one at a time: each holds whole models in memory).
    async fn answering_turn(&self) -> Result<Answering<'_>, JobError> {
        let permit = self
            .answering
            .acquire()
            .await
            .map_err(|_| JobError::Invalid("the server is shutting down".to_owned()))?;
        let stop = Arc::new(AtomicBool::new(false));
        Ok(Answering {
            _permit: permit,
            _stop_when_dropped: StopOnDrop(stop.clone()),
            stop,
        })
    }

    /// The model `generate` (and `evaluate_job`) names: a job's tuned model or a base model.
    pub fn answering_model(
        &self,
        job: Option<&str>,
        model: Option<&Path>,
        gguf: bool,
    ) -> Result<PathBuf, JobError> {
        match (job, model) {
            (Some(_), Some(_)) | (None, None) => Err(JobError::Invalid(
                "give either job (its tuned model answers) or model (a path)".to_owned(),
            )),
            (None, Some(model)) => Ok(self.confine(model, "model")?.1),
            (Some(id), None) => {
                let job = self.get(id)?.job;
                let kind = if gguf { "gguf" } else { "model" };
                job.artifacts
                    .iter()
                    .rev()
                    .find(|a| a.kind == kind)
                    .map(|a| {
                        if kind == "model" {
                            a.path.parent().map(Path::to_path_buf).unwrap_or_default()
                        } else {
                            a.path.clone()
                        }
                    })
                    .ok_or_else(|| {
                        let why = if job.status == Status::Succeeded {
                            if gguf {
                                "it was not quantized (create_job with quantize)".to_owned()
                            } else {
                                "its trainer wrote none this server reads".to_owned()
                            }
                        } else {
                            format!("it is {}", job.status)
                        };
                        JobError::Invalid(format!("job {id} has no {kind} to answer with: {why}"))
                    })
            }
        }
    }

    /// `generate`: the answer, with the count of tokens so far sent to `progress` as they come.
    pub async fn generate(
        &self,
        args: GenerateArgs,
        progress: tokio::sync::mpsc::UnboundedSender<usize>,
    ) -> Result<Answer, JobError> {
        let sampling = args.sampling()?;
        let turns = args.turns()?;
        let max_tokens = args.max_tokens();
        if max_tokens == 0 || max_tokens > MAX_TOKENS {
            return Err(JobError::Invalid(format!(
                "max_tokens must be 1 to {MAX_TOKENS}, not {max_tokens}"
            )));
        }
        let path = self.answering_model(args.job.as_deref(), args.model.as_deref(), args.gguf)?;
        let turn = self.answering_turn().await?;
        let stop = turn.stop.clone();
        let prompt = args.prompt.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let (model, tokenizer) = load(&path)?;
            let ids = match (&turns, &prompt) {
                (Some(turns), _) => tokenizer.prompt(turns),
                (None, Some(text)) => tokenizer.text(text),
                (None, None) => Err("nothing to answer".to_owned()),
            }
            .map_err(JobError::Invalid)?;
            let mut on_token = |n: usize| {
                let _ = progress.send(n);
                !stop.load(Ordering::Relaxed)
            };
            let answer = generate(
                &model,
                &tokenizer,
                &ids,
                max_tokens,
                sampling,
                false,
                &mut on_token,
            )
            .map_err(|error| JobError::Invalid(error.to_string()))?;
            Ok(Answer {
                text: answer.text,
                finish_reason: answer.finish,
                prompt_tokens: ids.len(),
                completion_tokens: answer.ids.len(),
                model: path,
                seconds: started.elapsed().as_secs_f64(),
            })
        })
        .await
        .map_err(|error| JobError::Invalid(format!("generation stopped: {error}")))?
    }
}

/// A model and its tokenizer, ready to answer.
pub fn load(path: &Path) -> Result<(Model, ChatTokenizer), JobError> {
    let invalid = |error: String| JobError::Invalid(format!("{}: {error}", path.display()));
    let weights = model::load(path).map_err(|e| invalid(e.to_string()))?;
    let tokenizer =
        ChatTokenizer::for_model(path, weights.gguf_metadata.as_ref()).map_err(invalid)?;
    let model = Model::new(weights, Tuning::Frozen).map_err(|e| invalid(e.to_string()))?;
    Ok((model, tokenizer))
}

/// What `evaluate_job` is asked.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateArgs {
    /// The job whose tuned model is scored against its base model.
    pub job: String,
    /// A JSONL file of held-out examples (the shapes training files take): the last assistant
    /// turn of each is the answer expected.
    pub file: PathBuf,
    /// `exact_match`, `contains`, `rouge_l` (1 is best) or `loss` (lower is best).
    pub metric: Metric,
    /// Examples scored, from the start of the file (default 100, at most 1000).
    #[serde(default)]
    pub max_examples: Option<usize>,
    /// Longest answer generated per example (default 128, at most 1024).
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

impl EvaluateArgs {
    /// Examples scored (100 unless asked).
    pub fn max_examples(&self) -> usize {
        self.max_examples.unwrap_or(100)
    }
}

/// Largest file `evaluate_job` reads.
const MAX_FILE_BYTES: u64 = 64 << 20;

impl Manager {
    /// `evaluate_job`: the base and the tuned model scored on the same examples, with the count
    /// of examples done sent to `progress`; the report is kept in the job's directory.
    pub async fn evaluate_job(
        &self,
        args: EvaluateArgs,
        progress: tokio::sync::mpsc::UnboundedSender<usize>,
    ) -> Result<Evaluation, JobError> {
        let max_examples = args.max_examples();
        let max_tokens = args.max_tokens.unwrap_or(128);
        if !(1..=1000).contains(&max_examples) || !(1..=1024).contains(&max_tokens) {
            return Err(JobError::Invalid(format!(
                "max_examples must be 1 to 1000 and max_tokens 1 to 1024, not {max_examples} and {max_tokens}"
            )));
        }
        let job = self.get(&args.job)?.job;
        let tuned_path = self.answering_model(Some(&args.job), None, false)?;
        let base_path = job.spec.model.clone();
        let (file_at, _) = self.confine(&args.file, "file")?;
        let turn = self.answering_turn().await?;
        let stop = turn.stop.clone();
        let report = job.dir.join(evaluate::REPORT_FILE);
        tokio::task::spawn_blocking(move || {
            let invalid = |error: String| JobError::Invalid(error);
            let (file, _) = open_regular(&file_at, FinalLink::Follow)
                .map_err(|error| invalid(format!("{}: {error}", args.file.display())))?;
            let mut text = String::new();
            file.into_std()
                .take(MAX_FILE_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|error| invalid(format!("{}: {error}", args.file.display())))?;
            if text.len() as u64 > MAX_FILE_BYTES {
                return Err(invalid(format!(
                    "{} is over {} MB; give a smaller held-out file",
                    args.file.display(),
                    MAX_FILE_BYTES >> 20
                )));
            }
            let (cases, skipped) = evaluate::read_cases(&text, &args.file, max_examples)
                .map_err(|error| invalid(error.to_string()))?;
            if cases.is_empty() {
                return Err(invalid(format!(
                    "{} has no example with an assistant answer to compare",
                    args.file.display()
                )));
            }
            let (base, _) = load(&base_path)?;
            let (tuned, tokenizer) = load(&tuned_path)?;
            let mut on_case = |n: usize| {
                let _ = progress.send(n);
                !stop.load(Ordering::Relaxed)
            };
            let scores = evaluate::evaluate(
                Answerer {
                    model: &base,
                    use_lora: false,
                },
                Answerer {
                    model: &tuned,
                    use_lora: false,
                },
                &tokenizer,
                &cases,
                &[args.metric],
                max_tokens,
                &mut on_case,
            )
            .map_err(|error| invalid(error.to_string()))?;
            let evaluation = Evaluation {
                file: args.file.clone(),
                scored: cases.len(),
                skipped,
                scores,
            };
            evaluate::save(&evaluation, &report).map_err(|error| invalid(error.to_string()))?;
            Ok(evaluation)
        })
        .await
        .map_err(|error| JobError::Invalid(format!("evaluation stopped: {error}")))?
    }
}
