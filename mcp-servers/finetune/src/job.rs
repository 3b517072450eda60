//! The job model, in the shape people know from OpenAI's fine-tuning API: a method, a base
//! model, files, hyperparameters that may each be `"auto"`, a status, events and checkpoints.

use std::{fmt, path::PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a job does to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Supervised fine-tuning on chat examples (full or LoRA).
    Sft,
    /// Direct preference optimisation on chosen/rejected pairs.
    Dpo,
    /// Distillation: supervised on a teacher's answers, with the teacher's logits when given.
    Distill,
    /// Quantization alone (GGUF), no training.
    Quantize,
    /// Group-relative policy optimization: answers sampled from the model, scored by the
    /// rewards the dataset gives (an expected answer, a pattern, a JSON Schema), and the model
    /// moved toward the better ones of each group, held near its reference by a KL penalty.
    Grpo,
}

impl Method {
    /// The name jobs and commands use (`sft`, `dpo`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sft => "sft",
            Self::Dpo => "dpo",
            Self::Distill => "distill",
            Self::Quantize => "quantize",
            Self::Grpo => "grpo",
        }
    }

    /// The method named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "sft" => Self::Sft,
            "dpo" => Self::Dpo,
            "distill" => Self::Distill,
            "quantize" => Self::Quantize,
            "grpo" => Self::Grpo,
            _ => return None,
        })
    }

    /// Whether the method reads a training file.
    pub fn trains(self) -> bool {
        self != Self::Quantize
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job is in its life. Terminal: succeeded, failed, cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Status {
    ValidatingFiles,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl Status {
    /// The name the store and the tools use (`queued`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidatingFiles => "validating_files",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status named `text`, if any.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "validating_files" => Self::ValidatingFiles,
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }

    /// Whether the job is over (succeeded, failed or cancelled).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The moves a job may make; anything else is a bug or a race lost, and is refused.
    pub fn may_become(self, next: Status) -> bool {
        use Status::*;
        match (self, next) {
            (ValidatingFiles, Queued | Failed | Cancelled) => true,
            (Queued, Running | Failed | Cancelled) => true,
            (Running, Succeeded | Failed | Cancelled) => true,
            // `resume_job`: a stopped job goes back in the queue.
            (Cancelled | Failed, Queued) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `"auto"`, or a value.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Setting<T> {
    #[default]
    /// Chosen by the server.
    Auto,
    /// This value.
    Value(T),
}

impl<T: Copy> Setting<T> {
    /// The value, or `auto` when the server chooses.
    pub fn or(self, auto: T) -> T {
        match self {
            Self::Auto => auto,
            Self::Value(value) => value,
        }
    }
}

impl<T: Serialize> Serialize for Setting<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Value(value) => value.serialize(serializer),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Setting<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<T> {
            Text(String),
            Value(T),
        }
        match Either::<T>::deserialize(deserializer)? {
            Either::Text(text) if text == "auto" => Ok(Self::Auto),
            Either::Text(text) => Err(serde::de::Error::custom(format!(
                "expected \"auto\" or a number, found {text:?}"
            ))),
            Either::Value(value) => Ok(Self::Value(value)),
        }
    }
}

impl<T: JsonSchema> JsonSchema for Setting<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Setting_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<T>();
        schemars::json_schema!({
            "anyOf": [{ "const": "auto" }, value],
            "default": "auto",
        })
    }
}

/// Hyperparameters; each may be `"auto"`, resolved from the data when the job starts. Each is
/// checked against its range when read, and an error names the field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hyperparameters {
    /// Passes over the training file.
    #[serde(default)]
    pub n_epochs: Setting<u32>,
    /// Examples per optimizer step.
    #[serde(default)]
    pub batch_size: Setting<u32>,
    /// The peak learning rate, reached after the warmup (`lr_scheduler` says how it falls).
    #[serde(default)]
    pub learning_rate: Setting<f64>,
    /// LoRA rank; 0 trains every weight (full fine-tuning).
    #[serde(default)]
    pub lora_rank: Setting<u32>,
    /// LoRA alpha (the adapter's scale is alpha / rank).
    #[serde(default)]
    pub lora_alpha: Setting<f64>,
    /// Tokens per example; longer ones are cut.
    #[serde(default)]
    pub max_seq_len: Setting<u32>,
    /// How far the tuned model may move from the reference: DPO's β (`auto`: 0.1), and GRPO's
    /// KL coefficient (`auto`: 0.04).
    #[serde(default)]
    pub beta: Setting<f64>,
    /// Optimizer steps between checkpoints.
    #[serde(default)]
    pub checkpoint_every: Setting<u32>,
    /// Seeds the data order and the adapters' initialisation: the same seed, data and settings
    /// give the same run. `auto`: derived from the job id.
    #[serde(default)]
    pub seed: Setting<u64>,
    /// Share of the steps over which the learning rate rises linearly from near zero to its
    /// peak (`auto`: 0.03).
    #[serde(default)]
    pub warmup_ratio: Setting<f64>,
    /// How the learning rate falls after the warmup: `cosine` (`auto`), `linear`, or
    /// `constant`. The built-in trainer decays to a tenth of the peak; TRL and Axolotl to zero.
    #[serde(default)]
    pub lr_scheduler: Setting<Schedule>,
    /// Batches whose gradients are summed before each optimizer step: the step sees
    /// `batch_size × gradient_accumulation_steps` examples with the memory of one batch.
    #[serde(default)]
    pub gradient_accumulation_steps: Setting<u32>,
    /// Packs several short examples into one sequence of up to `max_seq_len` tokens (each
    /// example attends only to itself): fewer, fuller sequences. `sft` and `distill` only;
    /// `auto`: off.
    #[serde(default)]
    pub packing: Setting<bool>,
    /// Optimizer steps between validation-loss evaluations (`auto`: at each checkpoint).
    #[serde(default)]
    pub eval_steps: Setting<u32>,
    /// Stops when the validation loss has not improved for this many evaluations, and keeps the
    /// best weights; 0 (`auto`) never stops early. Needs a validation file.
    #[serde(default)]
    pub early_stopping_patience: Setting<u32>,
    /// GRPO: answers sampled per prompt, the group each is judged against (`auto`: 4).
    #[serde(default)]
    pub num_generations: Setting<u32>,
    /// GRPO: most tokens per sampled answer (`auto`: 128).
    #[serde(default)]
    pub max_completion_tokens: Setting<u32>,
    /// GRPO: the sampling temperature (`auto`: 1.0).
    #[serde(default)]
    pub temperature: Setting<f64>,
}

/// The learning rate's course after the warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Schedule {
    #[default]
    Linear,
    Cosine,
    Constant,
}

impl Schedule {
    /// The name jobs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
            Self::Constant => "constant",
        }
    }

    /// The learning rate at optimizer step `step` (from 0) of `total`, `warmup` of them rising
    /// linearly to `peak`; after them, down to a tenth of `peak` at the last step (or flat).
    pub fn rate(self, peak: f64, step: u64, total: u64, warmup: u64) -> f64 {
        if step < warmup {
            return peak * (step + 1) as f64 / warmup as f64;
        }
        let span = total.saturating_sub(warmup).saturating_sub(1).max(1);
        let progress = ((step - warmup) as f64 / span as f64).min(1.0);
        match self {
            Self::Linear => peak * (1.0 - 0.9 * progress),
            Self::Cosine => peak * (0.1 + 0.45 * (1.0 + (std::f64::consts::PI * progress).cos())),
            Self::Constant => peak,
        }
    }
}

/// The ranges hyperparameters are checked against: wide enough for any real run, narrow enough
/// that a typo (`lora_rank: 100000`, `learning_rate: -1`) is an error rather than a job that
/// cannot fit in memory or learns nothing.
const RANGES: [(&str, f64, f64); 16] = [
    ("n_epochs", 1.0, 1000.0),
    ("batch_size", 1.0, 4096.0),
    ("learning_rate", 1e-12, 1.0),
    ("lora_rank", 0.0, 1024.0),
    ("lora_alpha", 1e-6, 10_000.0),
    ("max_seq_len", 8.0, 131_072.0),
    ("beta", 1e-6, 100.0),
    ("checkpoint_every", 1.0, 1_000_000.0),
    ("seed", 0.0, 9_007_199_254_740_991.0),
    ("warmup_ratio", 0.0, 1.0),
    ("gradient_accumulation_steps", 1.0, 1024.0),
    ("eval_steps", 1.0, 1_000_000.0),
    ("early_stopping_patience", 0.0, 1000.0),
    ("num_generations", 2.0, 64.0),
    ("max_completion_tokens", 1.0, 32_768.0),
    ("temperature", 0.01, 10.0),
];

/// One hyperparameter: `"auto"`, or a number in its range (a whole one when `whole`).
fn setting<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    name: &str,
    value: serde_json::Value,
    whole: bool,
) -> Result<Setting<T>, E> {
    let (min, max) = RANGES
        .iter()
        .find(|(field, _, _)| *field == name)
        .map(|(_, min, max)| (*min, *max))
        .unwrap_or((f64::MIN, f64::MAX));
    let kind = if whole { "a whole number" } else { "a number" };
    let range = if whole {
        format!("{min}..={max}")
    } else {
        format!("between {min:e} and {max}")
    };
    if value.as_str() == Some("auto") {
        return Ok(Setting::Auto);
    }
    let number = value
        .as_f64()
        .filter(|n| n.is_finite() && (!whole || n.fract() == 0.0));
    match number {
        Some(n) if (min..=max).contains(&n) => serde_json::from_value(value)
            .map(Setting::Value)
            .map_err(|error| E::custom(format!("hyperparameter {name}: {error}"))),
        _ => Err(E::custom(format!(
            "hyperparameter {name} must be \"auto\" or {kind} {range}, not {value}"
        ))),
    }
}

/// A hyperparameter that is not a number: `"auto"`, or one of the values `expected` names.
fn named<T: serde::de::DeserializeOwned, E: serde::de::Error>(
    name: &str,
    value: serde_json::Value,
    expected: &str,
) -> Result<Setting<T>, E> {
    if value.as_str() == Some("auto") {
        return Ok(Setting::Auto);
    }
    serde_json::from_value(value.clone())
        .map(Setting::Value)
        .map_err(|_| {
            E::custom(format!(
                "hyperparameter {name} must be \"auto\" or {expected}, not {value}"
            ))
        })
}

impl<'de> Deserialize<'de> for Hyperparameters {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let mut out = Self::default();
        for (name, value) in fields {
            match name.as_str() {
                "n_epochs" => out.n_epochs = setting(&name, value, true)?,
                "batch_size" => out.batch_size = setting(&name, value, true)?,
                "learning_rate" => out.learning_rate = setting(&name, value, false)?,
                "lora_rank" => out.lora_rank = setting(&name, value, true)?,
                "lora_alpha" => out.lora_alpha = setting(&name, value, false)?,
                "max_seq_len" => out.max_seq_len = setting(&name, value, true)?,
                "beta" => out.beta = setting(&name, value, false)?,
                "checkpoint_every" => out.checkpoint_every = setting(&name, value, true)?,
                "seed" => out.seed = setting(&name, value, true)?,
                "warmup_ratio" => out.warmup_ratio = setting(&name, value, false)?,
                "lr_scheduler" => {
                    out.lr_scheduler =
                        named(&name, value, r#"one of "linear", "cosine", "constant""#)?;
                }
                "gradient_accumulation_steps" => {
                    out.gradient_accumulation_steps = setting(&name, value, true)?;
                }
                "packing" => out.packing = named(&name, value, "true or false")?,
                "eval_steps" => out.eval_steps = setting(&name, value, true)?,
                "early_stopping_patience" => {
                    out.early_stopping_patience = setting(&name, value, true)?;
                }
                "num_generations" => out.num_generations = setting(&name, value, true)?,
                "max_completion_tokens" => {
                    out.max_completion_tokens = setting(&name, value, true)?;
                }
                "temperature" => out.temperature = setting(&name, value, false)?,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown field {other:?} in hyperparameters; known: {}",
                        RANGES
                            .map(|(field, _, _)| field)
                            .iter()
                            .chain(&["lr_scheduler", "packing"])
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// Hyperparameters with every `"auto"` replaced by a value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Resolved {
    /// Passes over the training file.
    pub n_epochs: u32,
    /// Examples per optimizer step.
    pub batch_size: u32,
    /// The peak learning rate.
    pub learning_rate: f64,
    /// LoRA rank; 0 trains every weight.
    pub lora_rank: u32,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// Tokens per example; longer ones are cut.
    pub max_seq_len: u32,
    /// DPO's beta, GRPO's KL coefficient (how far from the reference the policy may move).
    pub beta: f64,
    /// Steps between checkpoints.
    pub checkpoint_every: u32,
    /// Share of the steps spent warming the learning rate up (0 in jobs made before it).
    #[serde(default)]
    pub warmup_ratio: f64,
    /// The learning rate's course after the warmup.
    #[serde(default)]
    pub lr_scheduler: Schedule,
    /// Batches per optimizer step.
    #[serde(default = "one")]
    pub gradient_accumulation_steps: u32,
    /// Whether short examples are packed into shared sequences.
    #[serde(default)]
    pub packing: bool,
    /// Steps between validation-loss evaluations (0 in jobs made before it: at checkpoints).
    #[serde(default)]
    pub eval_steps: u32,
    /// Evaluations without improvement before an early stop; 0: never.
    #[serde(default)]
    pub early_stopping_patience: u32,
    /// GRPO: answers sampled per prompt.
    #[serde(default = "four")]
    pub num_generations: u32,
    /// GRPO: most tokens per sampled answer.
    #[serde(default = "completion_tokens")]
    pub max_completion_tokens: u32,
    /// GRPO: the sampling temperature.
    #[serde(default = "unit")]
    pub temperature: f64,
}

fn four() -> u32 {
    4
}

fn completion_tokens() -> u32 {
    128
}

fn unit() -> f64 {
    1.0
}

fn one() -> u32 {
    1
}

impl Resolved {
    /// Steps between evaluations.
    pub fn eval_every(&self) -> u32 {
        if self.eval_steps == 0 {
            self.checkpoint_every.max(1)
        } else {
            self.eval_steps
        }
    }
}

impl Hyperparameters {
    /// Fills in `"auto"` from the number of examples and their length (p95 tokens), with the
    /// rules OpenAI documents for epochs (about 3, more for small files, fewer for big ones).
    pub fn resolve(&self, method: Method, examples: usize, p95_tokens: usize) -> Resolved {
        let examples = examples.max(1) as u32;
        let n_epochs = self.n_epochs.or(if examples * 3 < 100 {
            100u32.div_ceil(examples).min(25)
        } else if examples * 3 > 25_000 {
            (25_000 / examples).max(1)
        } else {
            3
        });
        let batch_size = self.batch_size.or((examples / 100).clamp(1, 8));
        let lora_rank = self.lora_rank.or(8);
        let learning_rate = self.learning_rate.or(match (method, lora_rank) {
            (Method::Dpo, 0) => 5e-6,
            (Method::Dpo, _) => 5e-5,
            (Method::Grpo, 0) => 1e-6,
            (Method::Grpo, _) => 1e-5,
            (_, 0) => 1e-5,
            _ => 2e-4,
        });
        let max_seq_len = self
            .max_seq_len
            .or((p95_tokens as u32).next_multiple_of(64).clamp(64, 2048));
        let steps_per_epoch = examples.div_ceil(batch_size);
        let checkpoint_every = self
            .checkpoint_every
            .or(steps_per_epoch.clamp(1, 50))
            .max(1);
        Resolved {
            n_epochs: n_epochs.max(1),
            batch_size: batch_size.max(1),
            learning_rate,
            lora_rank,
            lora_alpha: self.lora_alpha.or(2.0 * lora_rank.max(1) as f64),
            max_seq_len: max_seq_len.max(8),
            beta: self
                .beta
                .or(if method == Method::Grpo { 0.04 } else { 0.1 }),
            checkpoint_every,
            warmup_ratio: self.warmup_ratio.or(0.03),
            lr_scheduler: self.lr_scheduler.or(Schedule::Cosine),
            gradient_accumulation_steps: self.gradient_accumulation_steps.or(1).max(1),
            packing: self.packing.or(false),
            eval_steps: self.eval_steps.or(checkpoint_every).max(1),
            early_stopping_patience: self.early_stopping_patience.or(0),
            num_generations: self.num_generations.or(four()),
            max_completion_tokens: self.max_completion_tokens.or(completion_tokens()),
            temperature: self.temperature.or(unit()),
        }
    }
}

/// Quantization formats for GGUF export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Quantization {
    Q8_0,
    Q4_0,
    #[serde(rename = "q4_k_m")]
    Q4KM,
    #[serde(rename = "q5_k_m")]
    Q5KM,
    #[serde(rename = "q6_k")]
    Q6K,
}

impl Quantization {
    /// Every format, for messages that list them.
    pub const ALL: [Self; 5] = [Self::Q8_0, Self::Q4_0, Self::Q4KM, Self::Q5KM, Self::Q6K];

    /// The name GGUF files and tools use (`q8_0`, `q4_k_m`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4KM => "q4_k_m",
            Self::Q5KM => "q5_k_m",
            Self::Q6K => "q6_k",
        }
    }
}

/// Which program trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Trainer {
    /// The trainer built into `mcp-finetune` (candle, CPU).
    #[default]
    Builtin,
    /// Hugging Face TRL (`trl sft|dpo --config …`), when its Python environment is present.
    Trl,
    /// Axolotl (`axolotl train config.yaml`), when its Python environment is present.
    Axolotl,
}

impl Trainer {
    /// The name jobs use (`builtin`, `trl`, `axolotl`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Trl => "trl",
            Self::Axolotl => "axolotl",
        }
    }
}

/// What a client asks for in `create_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// What the job does to the model.
    pub method: Method,
    /// The base model: a local directory (safetensors + config.json + tokenizer.json) or a GGUF
    /// file.
    pub model: PathBuf,
    /// JSONL training file (not needed by `quantize`).
    #[serde(default)]
    pub training_file: Option<PathBuf>,
    /// JSONL validation file: its loss is reported as training goes.
    #[serde(default)]
    pub validation_file: Option<PathBuf>,
    /// Training settings; `auto` ones are chosen from the data.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// Where it runs (`list_backends`); `local` by default.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Which program trains.
    #[serde(default)]
    pub trainer: Trainer,
    /// Quantize the result to GGUF after training (or the base model, for `quantize`).
    #[serde(default)]
    pub quantize: Option<Quantization>,
    /// For `distill`: the teacher model, whose logits the student learns from (optional: without
    /// it, the teacher's answers in the training file are learned as plain targets).
    #[serde(default)]
    pub teacher: Option<PathBuf>,
    /// A short name for the results: `model-<suffix>/`, `model-<suffix>-q8_0.gguf`.
    #[serde(default)]
    pub suffix: Option<String>,
}

fn default_backend() -> String {
    "local".to_owned()
}
