//! The built-in trainer, run as `mcp-finetune train --config job/config.json` (by the local
//! backend as a child process, by Slurm as a batch step).
//!
//! It reports on stdout, one JSON object per line ([`Report`]): the server turns those lines into
//! job events and checkpoints. It stops gracefully (a checkpoint, then exit) when the job
//! directory gets a `STOP` file or the process gets SIGTERM (`scancel`, `kill`), and resumes
//! from the newest complete checkpoint when started again.

pub mod evaluate;
pub mod generate;
mod grpo;
pub mod model;
pub mod optim;
pub mod tokenize;

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use candle_core::{D, Device, Tensor};
use rand::{SeedableRng, seq::SliceRandom};
use serde::{Deserialize, Serialize};

use crate::{
    dataset::{Example, parse_example},
    job::{Method, Quantization, Resolved},
    store::Level,
};
use model::{Model, Tuning};
use tokenize::{ChatTokenizer, Encoded};

/// What the server writes into the job directory for the trainer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
pub struct TrainConfig {
    /// What to do to the model.
    pub method: Method,
    /// The base model (a directory or a GGUF file).
    pub model: PathBuf,
    /// The JSONL training file.
    pub training_file: Option<PathBuf>,
    /// The JSONL validation file.
    pub validation_file: Option<PathBuf>,
    /// Hyperparameters, every `auto` filled in.
    pub hyperparameters: Resolved,
    /// The job's own directory: checkpoints, artifacts, the STOP file.
    pub output_dir: PathBuf,
    /// Export to GGUF in this format after training.
    pub quantize: Option<Quantization>,
    /// For distillation: the teacher model.
    pub teacher: Option<PathBuf>,
    /// Data order; the same seed gives the same order, which is what lets a resumed run skip
    /// exactly the examples already seen.
    pub seed: u64,
    /// Names the results: `model-<suffix>/`, `model-<suffix>-q8_0.gguf`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// One line of the trainer's stdout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Report {
    /// Training started.
    Started {
        /// Optimizer steps planned.
        total_steps: u64,
        /// Examples in the training file.
        examples: usize,
        /// Parameters the optimizer updates.
        trainable_parameters: usize,
        /// The checkpoint step it resumed from.
        resumed_from: Option<u64>,
    },
    /// One optimizer step's metrics.
    Metrics {
        /// The step.
        step: u64,
        /// Steps planned.
        total_steps: u64,
        /// The epoch (from 1).
        epoch: u32,
        /// Training loss (mean over the step's tokens).
        train_loss: f64,
        /// Share of trained tokens predicted right (not under GRPO, which samples its own).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_accuracy: Option<f64>,
        /// GRPO: the mean reward of the step's sampled answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reward: Option<f64>,
        /// The learning rate used.
        learning_rate: f64,
        /// Seconds since the start.
        elapsed_s: f64,
        /// Seconds left, at this pace.
        eta_s: f64,
        /// Validation loss, when evaluated at this step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_loss: Option<f64>,
        /// GRPO: the mean reward of the greedy answers to the validation prompts, when
        /// evaluated at this step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        valid_reward: Option<f64>,
    },
    /// A checkpoint was saved.
    Checkpoint {
        /// Its step.
        step: u64,
        /// Its directory.
        path: PathBuf,
        /// The metrics at that step.
        metrics: serde_json::Value,
    },
    /// A file was produced.
    Artifact {
        /// What it is (`lora_adapter`, `model`, `gguf`).
        kind: String,
        /// Where.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Something to tell the user.
    Message {
        /// How much it matters.
        level: Level,
        /// What.
        message: String,
    },
    /// The pre-flight's measurements (`train --preflight`).
    Preflight {
        /// Seconds of one optimizer step on the longest examples.
        step_seconds: f64,
        /// The whole run's predicted seconds.
        predicted_seconds: f64,
        /// The trainer's peak resident memory, in bytes (where the system tells).
        peak_bytes: Option<u64>,
        /// Optimizer steps planned.
        total_steps: u64,
    },
    /// A GGUF file's perplexity beside the merged model's, on the same examples' answers.
    Perplexity {
        /// The GGUF file.
        file: PathBuf,
        /// Its quantization.
        quantization: Quantization,
        /// The examples measured on.
        examples: usize,
        /// The merged model's perplexity.
        merged: f64,
        /// The GGUF file's.
        quantized: f64,
    },
    /// The tuned model scored beside the base on the validation file.
    Evaluation {
        /// The scores and examples.
        evaluation: evaluate::Evaluation,
    },
    /// The run ended.
    Finished {
        /// How.
        status: Outcome,
    },
}

/// How a run ended: done, or stopped at a checkpoint (to be resumed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Succeeded,
    /// Stopped at a checkpoint, to be resumed.
    Cancelled,
}

/// Where reports go (stdout in production; a vector in tests).
pub trait Sink {
    /// Takes one report.
    fn report(&mut self, report: &Report);
}

/// JSON lines on stdout, flushed per line so the server sees them as they happen.
pub struct Stdout;

impl Sink for Stdout {
    fn report(&mut self, report: &Report) {
        let mut out = std::io::stdout().lock();
        if let Ok(line) = serde_json::to_string(report) {
            // The reader is gone only if the server is; training goes on and the checkpoints
            // tell the story.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        }
    }
}

impl Sink for Vec<Report> {
    fn report(&mut self, report: &Report) {
        self.push(report.clone());
    }
}

/// Asks a run to stop at the next step.
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Not raised.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also raised by SIGTERM and SIGINT.
    pub fn on_signals(&self) -> std::io::Result<()> {
        signal_hook::flag::register(signal_hook::consts::SIGTERM, self.0.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGINT, self.0.clone())?;
        Ok(())
    }

    /// Asks the run to stop at its next step.
    pub fn raise(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn raised(&self, dir: &Path) -> bool {
        self.0.load(Ordering::SeqCst) || dir.join(STOP_FILE).exists()
    }
}

/// Touching this file in the job directory asks the trainer to checkpoint and stop.
pub const STOP_FILE: &str = "STOP";
const CHECKPOINTS: &str = "checkpoints";

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be loaded or built.
    #[error("{0}")]
    Model(#[from] model::ModelError),
    /// A tensor operation failed.
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    /// The data cannot be trained on.
    #[error("{0}")]
    Data(String),
    /// A file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |error| TrainError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The state a checkpoint records beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    metrics: serde_json::Value,
    /// The optimizer's steps, when its moments are saved (absent in older checkpoints).
    #[serde(default)]
    optimizer_steps: Option<u64>,
    #[serde(default)]
    early_stopping: EarlyStopping,
}

/// Runs a job to its end (or to a stop), reporting as it goes. `Ok(true)` when it finished,
/// `Ok(false)` when it stopped at a checkpoint on request.
pub fn run(config: &TrainConfig, stop: &StopFlag, sink: &mut dyn Sink) -> Result<bool, TrainError> {
    run_as(config, stop, sink, false)
}

/// Two real optimizer steps on the job's longest examples, timed and measured, before the job
/// is queued: reports [`Report::Preflight`] and writes nothing.
pub fn preflight(config: &TrainConfig, sink: &mut dyn Sink) -> Result<(), TrainError> {
    run_as(config, &StopFlag::new(), sink, true).map(|_| ())
}

fn run_as(
    config: &TrainConfig,
    stop: &StopFlag,
    sink: &mut dyn Sink,
    preflight: bool,
) -> Result<bool, TrainError> {
    let hp = config.hyperparameters;
    std::fs::create_dir_all(&config.output_dir).map_err(io(&config.output_dir))?;
    let weights = model::load(&config.model)?;
    let tokenizer = ChatTokenizer::for_model(&config.model, weights.gguf_metadata.as_ref())
        .map_err(TrainError::Data)?;
    if config.method == Method::Quantize {
        let model = Model::new(weights, Tuning::Frozen)?;
        export(config, &model, &tokenizer, sink)?;
        sink.report(&Report::Finished {
            status: Outcome::Succeeded,
        });
        return Ok(true);
    }
    let tuning = if hp.lora_rank == 0 {
        Tuning::Full
    } else {
        Tuning::Lora {
            rank: hp.lora_rank as usize,
            alpha: hp.lora_alpha,
            seed: config.seed,
        }
    };
    if hp.packing && matches!(config.method, Method::Dpo | Method::Grpo) {
        return Err(TrainError::Data(format!(
            "packing applies to sft and distill, not to {}",
            config.method
        )));
    }
    // DPO and GRPO measure against the model they started from: the base without adapters
    // under LoRA, a frozen copy under full fine-tuning.
    let reference = match (config.method, tuning) {
        (Method::Dpo | Method::Grpo, Tuning::Full) => {
            Some(Model::new(model::load(&config.model)?, Tuning::Frozen)?)
        }
        _ => None,
    };
    let teacher = match (&config.method, &config.teacher) {
        (Method::Distill, Some(path)) => {
            let teacher = Model::new(model::load(path)?, Tuning::Frozen)?;
            if teacher.config.vocab_size != weights.config.vocab_size {
                return Err(TrainError::Data(format!(
                    "the teacher's vocabulary ({}) differs from the student's ({}): logit distillation needs the same tokenizer; leave out `teacher` to learn from its answers in the training file",
                    teacher.config.vocab_size, weights.config.vocab_size
                )));
            }
            Some(teacher)
        }
        _ => None,
    };
    let model = Model::new(weights, tuning)?;
    let max_len = (hp.max_seq_len as usize).min(model.config.max_position_embeddings);
    let mut training = read_examples(
        config.training_file.as_deref(),
        config.method,
        &tokenizer,
        max_len,
    )?;
    if training.is_empty() {
        return Err(TrainError::Data(
            "no trainable examples in the training file".to_owned(),
        ));
    }
    let examples = training.len();
    if hp.packing {
        training = pack(training, max_len);
        sink.report(&Report::Message {
            level: Level::Info,
            message: format!(
                "packed {examples} examples into {} sequences of up to {max_len} tokens",
                training.len()
            ),
        });
    }
    let validation = match &config.validation_file {
        Some(path) => read_examples(Some(path), config.method, &tokenizer, max_len)?,
        None => Vec::new(),
    };
    let patience = hp.early_stopping_patience;
    if patience > 0 && validation.is_empty() {
        return Err(TrainError::Data(
            "early_stopping_patience needs a validation file with examples".to_owned(),
        ));
    }
    if patience > 0 && config.method == Method::Grpo {
        return Err(TrainError::Data(
            "early_stopping_patience watches a validation loss, which grpo has not (it reports the validation reward)".to_owned(),
        ));
    }

    let batch = (hp.batch_size as usize).max(1);
    let per_step = batch * (hp.gradient_accumulation_steps as usize).max(1);
    let steps_per_epoch = training.len().div_ceil(per_step) as u64;
    let total_steps = steps_per_epoch * u64::from(hp.n_epochs.max(1));
    let warmup = (hp.warmup_ratio * total_steps as f64).round() as u64;
    let eval_every = u64::from(hp.eval_every());
    let mut optimizer = optim::AdamW::new(model.trainable())?;
    let trainer = Trainer {
        model: &model,
        reference: reference.as_ref(),
        teacher: teacher.as_ref(),
        batch,
        beta: hp.beta,
        grpo: (config.method == Method::Grpo).then_some(grpo::Grpo {
            tokenizer: &tokenizer,
            generations: hp.num_generations.max(2) as usize,
            max_tokens: hp.max_completion_tokens.max(1) as usize,
            temperature: hp.temperature,
            seed: config.seed,
        }),
    };
    if preflight {
        let report = fly(
            &trainer,
            &mut optimizer,
            &training,
            per_step,
            total_steps,
            &validation,
            eval_every,
        )?;
        sink.report(&report);
        return Ok(true);
    }
    let mut early = EarlyStopping::default();
    // The weights of the best validation loss so far, when stopping early is asked for.
    let mut best: Option<HashMap<String, Tensor>> = None;
    let resumed = latest_checkpoint(&config.output_dir);
    let mut step = 0;
    if let Some((at, path)) = &resumed {
        let tensors =
            candle_core::safetensors::load(path.join("trainable.safetensors"), &Device::Cpu)?;
        model.load_trainable(&tensors)?;
        let state = read_state(path)?;
        let moments = match state.optimizer_steps {
            Some(steps) => optimizer.load(path, steps)?,
            None => false,
        };
        if !moments {
            sink.report(&Report::Message {
                level: Level::Warn,
                message: format!(
                    "the checkpoint at step {at} has no optimizer state (it predates it): the optimizer starts afresh, so this run will not match an unbroken one"
                ),
            });
        }
        early = state.early_stopping;
        if early.best_loss.is_some() {
            best = Some(candle_core::safetensors::load(
                path.join(BEST_FILE),
                &Device::Cpu,
            )?);
        }
        step = *at;
    }
    sink.report(&Report::Started {
        total_steps,
        examples,
        trainable_parameters: model.trainable_count(),
        resumed_from: resumed.as_ref().map(|(at, _)| *at),
    });
    let started = Instant::now();
    let first_step = step;
    // The epoch's data order, drawn again only when the epoch changes.
    let mut order: Option<(u32, Vec<usize>)> = None;
    let mut stopped_early = false;
    while step < total_steps {
        let epoch = (step / steps_per_epoch) as u32;
        if order.as_ref().is_none_or(|(drawn, _)| *drawn != epoch) {
            order = Some((epoch, epoch_order(training.len(), config.seed, epoch)));
        }
        let order = order
            .as_ref()
            .map(|(_, order)| order.as_slice())
            .unwrap_or_default();
        let within = (step % steps_per_epoch) as usize;
        let picked: Vec<&Sample> = order
            [within * per_step..((within + 1) * per_step).min(order.len())]
            .iter()
            .map(|&i| &training[i])
            .collect();
        let lr = hp
            .lr_scheduler
            .rate(hp.learning_rate, step, total_steps, warmup);
        // The step's loss is a mean over all its learned tokens (pairs, for DPO), whichever of
        // the accumulated batches they are in: the same step as one batch of them all.
        let taken = take_step(&trainer, &mut optimizer, &picked, lr, step)?;
        let train_loss = taken.loss;
        step += 1;
        if !train_loss.is_finite() {
            return Err(TrainError::Data(format!(
                "the loss became {train_loss} at step {step}: lower the learning rate"
            )));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let done_here = (step - first_step) as f64;
        let checkpoint_now =
            step.is_multiple_of(u64::from(hp.checkpoint_every)) || step == total_steps;
        let stopping = stop.raised(&config.output_dir);
        let evaluating =
            (step.is_multiple_of(eval_every) || step == total_steps) && !validation.is_empty();
        let (valid_loss, valid_reward) = match &trainer.grpo {
            _ if !evaluating => (None, None),
            Some(grpo) => (
                None,
                Some(grpo::greedy_reward(grpo, &model, &validation, true)?),
            ),
            None => (
                Some(validation_loss(
                    &model,
                    reference.as_ref(),
                    teacher.as_ref(),
                    &validation,
                    hp.beta,
                )?),
                None,
            ),
        };
        if let (Some(loss), true) = (valid_loss, patience > 0) {
            if early.best_loss.is_none_or(|best| loss < best) {
                early.best_loss = Some(loss);
                early.best_step = step;
                early.waited = 0;
                best = Some(trainable(&model)?);
            } else {
                early.waited += 1;
                stopped_early = early.waited >= patience;
            }
        }
        let metrics = Report::Metrics {
            step,
            total_steps,
            epoch: epoch + 1,
            train_loss,
            token_accuracy: (taken.learned > 0).then(|| taken.right as f64 / taken.learned as f64),
            reward: taken.reward,
            learning_rate: lr,
            elapsed_s: elapsed,
            eta_s: elapsed / done_here * (total_steps - step) as f64,
            valid_loss,
            valid_reward,
        };
        sink.report(&metrics);
        if checkpoint_now || stopping {
            let metrics = serde_json::to_value(&metrics).unwrap_or_default();
            let path = save_checkpoint(
                &config.output_dir,
                &model,
                &optimizer,
                step,
                &metrics,
                &early,
                best.as_ref(),
            )?;
            sink.report(&Report::Checkpoint {
                step,
                path,
                metrics,
            });
        }
        if stopped_early {
            sink.report(&Report::Message {
                level: Level::Info,
                message: format!(
                    "stopped early at step {step} of {total_steps}: the validation loss has not improved for {patience} evaluations"
                ),
            });
            break;
        }
        if stopping && step < total_steps {
            sink.report(&Report::Finished {
                status: Outcome::Cancelled,
            });
            return Ok(false);
        }
    }
    // With early stopping, the result is the best weights by validation loss.
    if let (Some(loss), Some(best)) = (early.best_loss, &best)
        && early.best_step != step
    {
        model.load_trainable(best)?;
        sink.report(&Report::Message {
            level: Level::Info,
            message: format!(
                "the result has the weights of step {}, whose validation loss ({loss:.4}) was the lowest",
                early.best_step
            ),
        });
    }
    export(config, &model, &tokenizer, sink)?;
    if let (Some(grpo), false) = (&trainer.grpo, validation.is_empty()) {
        // The base beside the tuned model on the validation prompts' rewards.
        let base = match &reference {
            Some(reference) => grpo::greedy_reward(grpo, reference, &validation, false)?,
            None => grpo::greedy_reward(grpo, &model, &validation, false)?,
        };
        let tuned = grpo::greedy_reward(grpo, &model, &validation, true)?;
        sink.report(&Report::Message {
            level: Level::Info,
            message: format!(
                "reward of the greedy answers to {} validation prompts, base → tuned: {base:.3} → {tuned:.3}",
                validation.len().min(64)
            ),
        });
    }
    if let Some(file) = &config.validation_file
        && !matches!(config.method, Method::Dpo | Method::Grpo)
    {
        // The job's result is in place: an evaluation that fails is reported, not fatal.
        if let Err(error) = evaluate_at_end(config, &model, tuning, &tokenizer, file, stop, sink) {
            sink.report(&Report::Message {
                level: Level::Warn,
                message: format!("the evaluation on {} failed: {error}", file.display()),
            });
        }
    }
    sink.report(&Report::Finished {
        status: Outcome::Succeeded,
    });
    Ok(true)
}

/// Examples of the validation file scored at the end of a run.
const EVALUATED: usize = 64;

/// The tuned model beside the base on the validation file (`loss` and `contains`), written to
/// the job's `evaluation.json` and reported. Under LoRA the base is the same weights with the
/// adapters off; under full fine-tuning it is read again.
fn evaluate_at_end(
    config: &TrainConfig,
    model: &Model,
    tuning: Tuning,
    tokenizer: &ChatTokenizer,
    file: &Path,
    stop: &StopFlag,
    sink: &mut dyn Sink,
) -> Result<(), TrainError> {
    let text = std::fs::read_to_string(file).map_err(io(file))?;
    let (cases, skipped) = evaluate::read_cases(&text, file, EVALUATED)?;
    if cases.is_empty() {
        return Ok(());
    }
    let frozen;
    let base = match tuning {
        Tuning::Full => {
            frozen = Model::new(model::load(&config.model)?, Tuning::Frozen)?;
            evaluate::Answerer {
                model: &frozen,
                use_lora: false,
            }
        }
        _ => evaluate::Answerer {
            model,
            use_lora: false,
        },
    };
    let tuned = evaluate::Answerer {
        model,
        use_lora: true,
    };
    let scores = evaluate::evaluate(
        base,
        tuned,
        tokenizer,
        &cases,
        &[evaluate::Metric::Loss, evaluate::Metric::Contains],
        64,
        &mut |_| !stop.raised(&config.output_dir),
    )?;
    let evaluation = evaluate::Evaluation {
        file: file.to_owned(),
        scored: cases.len(),
        skipped,
        scores,
    };
    evaluate::save(&evaluation, &config.output_dir.join(evaluate::REPORT_FILE))?;
    sink.report(&Report::Evaluation { evaluation });
    Ok(())
}

/// What a step needs besides its examples and rate.
struct Trainer<'a> {
    model: &'a Model,
    reference: Option<&'a Model>,
    teacher: Option<&'a Model>,
    /// Examples per backward pass.
    batch: usize,
    beta: f64,
    /// Under GRPO, its settings.
    grpo: Option<grpo::Grpo<'a>>,
}

/// What an optimizer step did.
struct Taken {
    /// Its loss.
    loss: f64,
    /// Right predictions among the learned tokens.
    right: usize,
    /// Learned tokens.
    learned: usize,
    /// GRPO: the mean reward of its answers.
    reward: Option<f64>,
}

/// One optimizer step over `picked`, a batch at a time with the gradients summed: the loss is a
/// mean over all their learned tokens (pairs, for DPO), whichever batch they are in, so the step
/// is the one a single batch of them all would take. `step` counts from 0.
fn take_step(
    trainer: &Trainer<'_>,
    optimizer: &mut optim::AdamW,
    picked: &[&Sample],
    lr: f64,
    step: u64,
) -> Result<Taken, TrainError> {
    let counted: f64 = picked.iter().map(|s| s.counted()).sum::<f64>().max(1.0);
    if let Some(grpo) = &trainer.grpo {
        let (mut train_loss, mut rewards) = (0f64, Vec::new());
        for (i, part) in picked.chunks(trainer.batch).enumerate() {
            let group = grpo::group_loss(
                grpo,
                trainer.model,
                trainer.reference,
                trainer.beta,
                part,
                step,
                i * trainer.batch,
            )?;
            rewards.extend(group.rewards);
            if let Some(sum) = group.loss {
                let loss = (sum / counted)?;
                optimizer.accumulate(&loss.backward()?)?;
                train_loss += f64::from(loss.to_scalar::<f32>()?);
            }
        }
        optimizer.step(lr)?;
        return Ok(Taken {
            loss: train_loss,
            right: 0,
            learned: 0,
            reward: Some(rewards.iter().sum::<f64>() / rewards.len().max(1) as f64),
        });
    }
    let (mut train_loss, mut right, mut learned) = (0f64, 0usize, 0usize);
    for part in picked.chunks(trainer.batch) {
        let (sum, r, l) = batch_loss(
            trainer.model,
            trainer.reference,
            trainer.teacher,
            part,
            trainer.beta,
        )?;
        let loss = (sum / counted)?;
        optimizer.accumulate(&loss.backward()?)?;
        train_loss += f64::from(loss.to_scalar::<f32>()?);
        right += r;
        learned += l;
    }
    optimizer.step(lr)?;
    Ok(Taken {
        loss: train_loss,
        right,
        learned,
        reward: None,
    })
}

/// The pre-flight: two steps on the longest examples (the second timed: the first also pays for
/// first allocations), the process's peak memory after them, and the run's predicted length:
/// the step time scaled by the mean step's tokens over the longest step's, times the steps,
/// plus the validation evaluations (a forward pass costs about a third of a step's work).
fn fly(
    trainer: &Trainer<'_>,
    optimizer: &mut optim::AdamW,
    training: &[Sample],
    per_step: usize,
    total_steps: u64,
    validation: &[Sample],
    eval_every: u64,
) -> Result<Report, TrainError> {
    let tokens = |s: &Sample| s.main.ids.len() + s.rejected.as_ref().map_or(0, |r| r.ids.len());
    let mut longest: Vec<&Sample> = training.iter().collect();
    longest.sort_by_key(|s| std::cmp::Reverse(tokens(s)));
    longest.truncate(per_step);
    let mut step_seconds = 0.0;
    for _ in 0..2 {
        let started = Instant::now();
        take_step(trainer, optimizer, &longest, 0.0, 0)?;
        step_seconds = started.elapsed().as_secs_f64();
    }
    let longest_tokens = longest.iter().map(|s| tokens(s)).sum::<usize>().max(1) as f64;
    let mean_tokens = training.iter().map(tokens).sum::<usize>() as f64
        / training.len().max(1) as f64
        * longest.len() as f64;
    let per_token = step_seconds / longest_tokens;
    let evaluated: usize = validation.iter().take(64).map(tokens).sum();
    let evaluations = if validation.is_empty() {
        0
    } else {
        total_steps.div_ceil(eval_every)
    };
    let predicted_seconds = per_token
        * (mean_tokens.min(longest_tokens) * total_steps as f64
            + evaluated as f64 / 3.0 * evaluations as f64);
    Ok(Report::Preflight {
        step_seconds,
        predicted_seconds,
        peak_bytes: peak_memory(),
        total_steps,
    })
}

/// This process's peak resident memory (Linux's `VmHWM`), in bytes.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Early stopping's state, kept in checkpoints (with the best weights) so that a resumed run
/// stops where an unbroken one would.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct EarlyStopping {
    /// The lowest validation loss so far.
    best_loss: Option<f64>,
    /// Its step.
    best_step: u64,
    /// Evaluations since then.
    waited: u32,
}

/// A tokenized example, or several packed into one sequence: the sequence (for DPO the chosen
/// one), the lengths of the examples in it, and, for DPO, the rejected sequence.
struct Sample {
    main: Encoded,
    lengths: Vec<usize>,
    rejected: Option<Encoded>,
    /// GRPO's reward (`main` is then the prompt, ready for the answer).
    reward: Option<crate::reward::Reward>,
}

impl Sample {
    /// What its loss is a mean over: its learned tokens, or one pair for DPO, one prompt (and
    /// its group of answers) for GRPO.
    fn counted(&self) -> f64 {
        if self.rejected.is_some() || self.reward.is_some() {
            1.0
        } else {
            self.main.trained[1..].iter().filter(|&&t| t).count() as f64
        }
    }
}

/// Packs consecutive examples into sequences of at most `max_len` tokens. An example's first
/// token is never a target (nothing in the example precedes it), so no example learns from
/// the one before it.
fn pack(samples: Vec<Sample>, max_len: usize) -> Vec<Sample> {
    let mut packed: Vec<Sample> = Vec::new();
    for mut sample in samples {
        match packed.last_mut() {
            Some(last) if last.main.ids.len() + sample.main.ids.len() <= max_len => {
                sample.main.trained[0] = false;
                last.lengths.push(sample.main.ids.len());
                last.main.ids.extend(sample.main.ids);
                last.main.trained.extend(sample.main.trained);
            }
            _ => packed.push(sample),
        }
    }
    packed
}

fn read_examples(
    path: Option<&Path>,
    method: Method,
    tokenizer: &ChatTokenizer,
    max_len: usize,
) -> Result<Vec<Sample>, TrainError> {
    let Some(path) = path else {
        return Err(TrainError::Data(format!("{method} needs a training file")));
    };
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut samples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |error: String| {
            TrainError::Data(format!("{}: line {}: {error}", path.display(), i + 1))
        };
        let example: Example = parse_example(line, method).map_err(at)?;
        if let Some(spec) = &example.reward {
            let mut ids = tokenizer.prompt(&example.turns).map_err(TrainError::Data)?;
            // The prompt's end is what the answer follows: a long prompt keeps its end.
            if ids.len() >= max_len {
                ids.drain(..ids.len() + 1 - max_len);
            }
            samples.push(Sample {
                lengths: vec![ids.len()],
                main: Encoded {
                    trained: vec![false; ids.len()],
                    ids,
                },
                rejected: None,
                reward: Some(spec.compile().map_err(at)?),
            });
            continue;
        }
        let mut main = tokenizer.encode(&example.turns).map_err(TrainError::Data)?;
        main.truncate(max_len);
        let rejected = if method == Method::Dpo {
            let mut turns = example.prompt().to_vec();
            turns.extend(example.rejected.iter().cloned());
            let mut rejected = tokenizer.encode(&turns).map_err(TrainError::Data)?;
            rejected.truncate(max_len);
            Some(rejected)
        } else {
            None
        };
        // Nothing learned after the shift (or the cut): nothing to train on.
        if main.trained.iter().skip(1).any(|&t| t) && main.ids.len() > 1 {
            samples.push(Sample {
                lengths: vec![main.ids.len()],
                main,
                rejected,
                reward: None,
            });
        }
    }
    Ok(samples)
}

/// The same permutation for the same seed and epoch.
fn epoch_order(n: usize, seed: u64, epoch: u32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        seed.wrapping_mul(1_000_003).wrapping_add(u64::from(epoch)),
    );
    order.shuffle(&mut rng);
    order
}

/// What a sequence's next-token prediction gives.
struct NextTokens {
    /// The log-probability of each next token, `[len - 1]`.
    logprobs: Tensor,
    /// 1 where that token is learned, 0 elsewhere.
    mask: Tensor,
    /// The logits, `[len - 1, vocab]`.
    logits: Tensor,
    /// A mixture of experts' load-balancing loss.
    balance: Option<Tensor>,
}

/// The next-token prediction over `encoded`; `lengths` are those of the examples packed into it
/// (one, unpacked).
fn next_token_logprobs(
    model: &Model,
    encoded: &Encoded,
    lengths: &[usize],
    use_lora: bool,
) -> Result<NextTokens, TrainError> {
    let n = encoded.ids.len();
    let (logits, balance) =
        model.forward_with_balance(&encoded.ids[..n - 1], &shifted(lengths), use_lora)?;
    let targets = Tensor::new(&encoded.ids[1..], &Device::Cpu)?;
    let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = logprobs.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let mask: Vec<f32> = encoded.trained[1..]
        .iter()
        .map(|&t| f32::from(u8::from(t)))
        .collect();
    let mask = Tensor::from_vec(mask, n - 1, &Device::Cpu)?;
    Ok(NextTokens {
        logprobs: picked,
        mask,
        logits,
        balance,
    })
}

/// The lengths of packed examples once the last token is cut off (the inputs of next-token
/// prediction).
fn shifted(lengths: &[usize]) -> Vec<usize> {
    let mut lengths = lengths.to_vec();
    if let Some(last) = lengths.last_mut() {
        *last -= 1;
    }
    lengths.retain(|&n| n > 0);
    lengths
}

/// The batch's summed loss (a scalar with a graph behind it; a mean once divided by what
/// [`Sample::counted`] sums to), and its right predictions and learned tokens.
fn batch_loss(
    model: &Model,
    reference: Option<&Model>,
    teacher: Option<&Model>,
    batch: &[&Sample],
    beta: f64,
) -> Result<(Tensor, usize, usize), TrainError> {
    let mut total: Option<Tensor> = None;
    let (mut right, mut learned) = (0usize, 0usize);
    for sample in batch {
        let NextTokens {
            logprobs,
            mask,
            logits,
            balance,
        } = next_token_logprobs(model, &sample.main, &sample.lengths, true)?;
        let (r, l) = accuracy(&logits, &sample.main)?;
        right += r;
        learned += l;
        let loss = match &sample.rejected {
            None => {
                let mut loss = (logprobs * &mask)?.sum_all()?.neg()?;
                if let Some(teacher) = teacher {
                    // Forward KL from the teacher's distribution on the learned tokens, added to
                    // the answers' own loss.
                    let n = sample.main.ids.len();
                    let teacher_logits = teacher
                        .forward_packed(
                            &sample.main.ids[..n - 1],
                            &shifted(&sample.lengths),
                            false,
                        )?
                        .detach();
                    let p = candle_nn::ops::softmax(&teacher_logits, D::Minus1)?;
                    let log_q = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
                    let log_p = candle_nn::ops::log_softmax(&teacher_logits, D::Minus1)?;
                    let kl = (p * (log_p - log_q)?)?.sum(D::Minus1)?;
                    loss = (loss + (kl * &mask)?.sum_all()?)?;
                }
                loss
            }
            Some(rejected) => {
                let sequence =
                    |model: &Model, encoded: &Encoded, lora: bool| -> Result<Tensor, TrainError> {
                        let next = next_token_logprobs(model, encoded, &[encoded.ids.len()], lora)?;
                        Ok((next.logprobs * next.mask)?.sum_all()?)
                    };
                let chosen = (logprobs * &mask)?.sum_all()?;
                let rejected_lp = sequence(model, rejected, true)?;
                let (ref_chosen, ref_rejected) = match reference {
                    Some(reference) => (
                        sequence(reference, &sample.main, false)?,
                        sequence(reference, rejected, false)?,
                    ),
                    None => (
                        sequence(model, &sample.main, false)?,
                        sequence(model, rejected, false)?,
                    ),
                };
                let margin =
                    ((chosen - ref_chosen.detach())? - (rejected_lp - ref_rejected.detach())?)?;
                // −log σ(β·margin) = softplus(−β·margin), written stably.
                let z = (margin * (-beta))?;
                softplus(&z)?
            }
        };
        // A mixture of experts' load balance, once per sequence; the sum is divided by what
        // `counted` adds up, so it is weighed by the sequence's share of that.
        let loss = match balance {
            Some(balance) => (loss + (balance * sample.counted())?)?,
            None => loss,
        };
        total = Some(match total {
            Some(sum) => (sum + loss)?,
            None => loss,
        });
    }
    let total = total.ok_or_else(|| TrainError::Data("empty batch".to_owned()))?;
    Ok((total, right, learned))
}

/// `log(1 + eᶻ)` without overflow: `max(z, 0) + log(1 + e^{−|z|})`.
fn softplus(z: &Tensor) -> candle_core::Result<Tensor> {
    let positive = z.relu()?;
    let tail = (z.abs()?.neg()?.exp()? + 1.0)?.log()?;
    positive + tail
}

/// Right predictions and learned tokens in one sequence.
fn accuracy(logits: &Tensor, encoded: &Encoded) -> Result<(usize, usize), TrainError> {
    let predicted: Vec<u32> = logits.detach().argmax(D::Minus1)?.to_vec1()?;
    let mut right = 0;
    let mut learned = 0;
    for (i, &p) in predicted.iter().enumerate() {
        if encoded.trained[i + 1] {
            learned += 1;
            right += usize::from(p == encoded.ids[i + 1]);
        }
    }
    Ok((right, learned))
}

/// Mean loss over (at most 64 of) the validation examples, one at a time: a single batch of 64
/// would hold every example's activations at once.
fn validation_loss(
    model: &Model,
    reference: Option<&Model>,
    teacher: Option<&Model>,
    samples: &[Sample],
    beta: f64,
) -> Result<f64, TrainError> {
    let (mut sum, mut counted) = (0f64, 0f64);
    for sample in samples.iter().take(64) {
        let (loss, _, _) = batch_loss(model, reference, teacher, &[sample], beta)?;
        sum += f64::from(loss.detach().to_scalar::<f32>()?);
        counted += sample.counted();
    }
    Ok(sum / counted.max(1.0))
}

/// The newest complete checkpoint: `(step, directory)`.
pub fn latest_checkpoint(output_dir: &Path) -> Option<(u64, PathBuf)> {
    let entries = std::fs::read_dir(output_dir.join(CHECKPOINTS)).ok()?;
    entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let step: u64 = name.strip_prefix("step-")?.parse().ok()?;
            // The state file is written last: without it the checkpoint is incomplete.
            entry
                .path()
                .join("state.json")
                .is_file()
                .then(|| (step, entry.path()))
        })
        .max_by_key(|(step, _)| *step)
}

/// Writes the trainable weights, the optimizer's moments, the best weights so far (early
/// stopping) and the state into `checkpoints/step-N`, through a temporary directory renamed into
/// place: a stop or a crash mid-write leaves the previous checkpoint whole.
fn save_checkpoint(
    output_dir: &Path,
    model: &Model,
    optimizer: &optim::AdamW,
    step: u64,
    metrics: &serde_json::Value,
    early: &EarlyStopping,
    best: Option<&HashMap<String, Tensor>>,
) -> Result<PathBuf, TrainError> {
    let root = output_dir.join(CHECKPOINTS);
    let path = root.join(format!("step-{step:06}"));
    let partial = root.join(format!(".step-{step:06}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(io(&partial))?;
    candle_core::safetensors::save(&trainable(model)?, partial.join("trainable.safetensors"))?;
    optimizer.save(&partial)?;
    if let Some(best) = best {
        candle_core::safetensors::save(best, partial.join(BEST_FILE))?;
    }
    let state = CheckpointState {
        step,
        metrics: metrics.clone(),
        optimizer_steps: Some(optimizer.steps()),
        early_stopping: early.clone(),
    };
    let state = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Data(e.to_string()))?;
    std::fs::write(partial.join("state.json"), state).map_err(io(&partial))?;
    if path.exists() {
        std::fs::remove_dir_all(&path).map_err(io(&path))?;
    }
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    prune_checkpoints(&root, step);
    Ok(path)
}

/// The best weights so far by validation loss, in a checkpoint that has them.
const BEST_FILE: &str = "best.safetensors";

/// The trainable weights by name, copied (a variable's tensor changes in place at every step).
fn trainable(model: &Model) -> candle_core::Result<HashMap<String, Tensor>> {
    model
        .trainable()
        .iter()
        .map(|(name, var)| Ok((name.clone(), var.as_tensor().copy()?)))
        .collect()
}

/// A checkpoint's state file.
fn read_state(checkpoint: &Path) -> Result<CheckpointState, TrainError> {
    let path = checkpoint.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    serde_json::from_str(&text)
        .map_err(|error| TrainError::Data(format!("{}: {error}", path.display())))
}

/// Checkpoints kept on disk per job (the newest); a full fine-tune's checkpoint is the whole
/// model, and a long run would otherwise fill the disk.
pub const KEEP_CHECKPOINTS: usize = 3;

/// Removes all but the newest [`KEEP_CHECKPOINTS`] complete checkpoints at or before `newest`.
fn prune_checkpoints(root: &Path, newest: u64) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut steps: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let step: u64 = name.strip_prefix("step-")?.parse().ok()?;
            (step <= newest).then(|| (step, entry.path()))
        })
        .collect();
    steps.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    for (_, path) in steps.into_iter().skip(KEEP_CHECKPOINTS) {
        let _ = std::fs::remove_dir_all(path);
    }
}

/// Writes the results: the adapter (PEFT layout) under LoRA, the merged model (safetensors,
/// config, tokenizer), and the GGUF file when quantization was asked for.
fn export(
    config: &TrainConfig,
    model: &Model,
    tokenizer: &ChatTokenizer,
    sink: &mut dyn Sink,
) -> Result<(), TrainError> {
    let out = &config.output_dir;
    let stem = match &config.suffix {
        Some(suffix) => format!("model-{suffix}"),
        None => "model".to_owned(),
    };
    let artifact = |kind: &str, path: PathBuf, sink: &mut dyn Sink| {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        sink.report(&Report::Artifact {
            kind: kind.to_owned(),
            path,
            bytes,
        });
    };
    let lora = config.method != Method::Quantize && config.hyperparameters.lora_rank > 0;
    if lora {
        let dir = out.join("adapter");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tensors: HashMap<String, Tensor> = model
            .trainable()
            .iter()
            .map(|(name, var)| (format!("base_model.model.{name}"), var.as_tensor().clone()))
            .collect();
        let file = dir.join("adapter_model.safetensors");
        candle_core::safetensors::save(&tensors, &file)?;
        let adapter_config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": config.hyperparameters.lora_rank,
            "lora_alpha": config.hyperparameters.lora_alpha,
            "target_modules": model::LORA_TARGETS,
            "lora_dropout": 0.0,
            "bias": "none",
            "base_model_name_or_path": config.model,
        });
        let config_file = dir.join("adapter_config.json");
        std::fs::write(&config_file, adapter_config.to_string()).map_err(io(&config_file))?;
        artifact("lora_adapter", file, sink);
    }
    if config.method != Method::Quantize {
        let dir = out.join(&stem);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tensors: HashMap<String, Tensor> = model.merged_weights()?.into_iter().collect();
        let file = dir.join("model.safetensors");
        candle_core::safetensors::save(&tensors, &file)?;
        let model_config = serde_json::to_string_pretty(&model.config)
            .map_err(|e| TrainError::Data(e.to_string()))?;
        std::fs::write(dir.join("config.json"), model_config).map_err(io(&dir))?;
        tokenizer
            .tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| TrainError::Data(format!("saving the tokenizer: {e}")))?;
        // The base's own tokenizer_config.json when it has one, else one made from the tokenizer
        // (with the GGUF file's chat template, if it came with one).
        let base_config = config.model.join("tokenizer_config.json");
        let tokenizer_config = match std::fs::read(&base_config) {
            Ok(bytes) if config.model.is_dir() => bytes,
            _ => {
                let template = model
                    .gguf_metadata
                    .as_ref()
                    .and_then(|m| m.get("tokenizer.chat_template"))
                    .and_then(|v| v.to_string().ok())
                    .map(String::as_str);
                tokenizer
                    .hf_config(template, model.config.max_position_embeddings)
                    .to_string()
                    .into_bytes()
            }
        };
        std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config).map_err(io(&dir))?;
        artifact("model", file, sink);
    }
    if let Some(quantization) = config.quantize {
        let file = out.join(format!("{stem}-{}.gguf", quantization.as_str()));
        export::gguf(model, tokenizer, quantization, &file)?;
        artifact("gguf", file.clone(), sink);
        // The file is in place: a check that cannot run is reported, not fatal.
        if let Err(error) = check_perplexity(config, model, tokenizer, quantization, &file, sink) {
            sink.report(&Report::Message {
                level: Level::Warn,
                message: format!("the perplexity check of {} failed: {error}", file.display()),
            });
        }
    }
    Ok(())
}

/// Examples a GGUF file's perplexity is measured on.
const PERPLEXITY_EXAMPLES: usize = 32;

/// Reads the GGUF file back and measures its perplexity on the answers of the validation file
/// (else the training file) beside the in-memory model's: what the quantization cost.
fn check_perplexity(
    config: &TrainConfig,
    model: &Model,
    tokenizer: &ChatTokenizer,
    quantization: Quantization,
    file: &Path,
    sink: &mut dyn Sink,
) -> Result<(), TrainError> {
    let Some(text) = config
        .validation_file
        .as_deref()
        .or(config.training_file.as_deref())
    else {
        sink.report(&Report::Message {
            level: Level::Info,
            message: "no perplexity check of the GGUF file: the job has no validation_file or training_file to measure on".to_owned(),
        });
        return Ok(());
    };
    let method = match config.method {
        Method::Quantize => Method::Sft,
        method => method,
    };
    let max_len =
        (config.hyperparameters.max_seq_len as usize).min(model.config.max_position_embeddings);
    let mut samples = read_examples(Some(text), method, tokenizer, max_len)?;
    samples.truncate(PERPLEXITY_EXAMPLES);
    if samples.is_empty() {
        return Err(TrainError::Data(format!(
            "{} has no examples with answers",
            text.display()
        )));
    }
    let quantized = Model::new(model::load(file)?, Tuning::Frozen)?;
    let merged = perplexity(model, &samples)?;
    let quantized = perplexity(&quantized, &samples)?;
    sink.report(&Report::Perplexity {
        file: file.to_owned(),
        quantization,
        examples: samples.len(),
        merged,
        quantized,
    });
    Ok(())
}

/// `exp` of the mean negative log-likelihood of the samples' learned tokens.
fn perplexity(model: &Model, samples: &[Sample]) -> Result<f64, TrainError> {
    let (mut nll, mut tokens) = (0f64, 0f64);
    for sample in samples {
        let next = next_token_logprobs(model, &sample.main, &sample.lengths, true)?;
        nll -= f64::from(
            (next.logprobs * &next.mask)?
                .sum_all()?
                .to_scalar::<f32>()?,
        );
        tokens += f64::from(next.mask.sum_all()?.to_scalar::<f32>()?);
    }
    Ok((nll / tokens.max(1.0)).exp())
}

pub mod export;
