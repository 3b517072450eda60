//! The command (and config files) that run a job: the built-in trainer, or an external recipe
//! (Hugging Face TRL, Axolotl) generated from the same job.

use std::{ffi::OsString, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    job::{Method, Schedule, Trainer},
    train::TrainConfig,
};

/// What a job runs: the program, its arguments, and the files it reads (written into the job
/// directory before launch; `dry_run` shows them).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Recipe {
    /// The program.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// File name in the job directory → content.
    pub files: Vec<(String, String)>,
    /// Environment for the process.
    pub env: Vec<(String, String)>,
}

impl Recipe {
    /// The command line, shell-quoted, as `dry_run` shows it.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The program, for `Command`.
    pub fn program_os(&self) -> OsString {
        OsString::from(&self.program)
    }
}

fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// glibc's allocator returns big tensors to the kernel after every step unless told otherwise;
/// these made training processes here 1.5x to 6x faster.
pub fn trainer_env(threads: Option<usize>) -> Vec<(String, String)> {
    let mut env = vec![
        ("MALLOC_MMAP_THRESHOLD_".to_owned(), "33554432".to_owned()),
        ("MALLOC_TRIM_THRESHOLD_".to_owned(), "1073741824".to_owned()),
        ("MALLOC_TOP_PAD_".to_owned(), "268435456".to_owned()),
    ];
    if let Some(threads) = threads {
        env.push(("RAYON_NUM_THREADS".to_owned(), threads.to_string()));
    }
    env
}

/// The recipe for a job whose directory is `dir`.
pub fn recipe(
    trainer: Trainer,
    config: &TrainConfig,
    dir: &Path,
    program: &Path,
    threads: Option<usize>,
) -> Result<Recipe, String> {
    let config_path = dir.join("config.json");
    let config_json = serde_json::to_string_pretty(config).map_err(|e| e.to_string())?;
    match trainer {
        Trainer::Builtin => Ok(Recipe {
            program: program.display().to_string(),
            args: vec![
                "train".to_owned(),
                "--config".to_owned(),
                config_path.display().to_string(),
            ],
            files: vec![("config.json".to_owned(), config_json)],
            env: trainer_env(threads),
        }),
        Trainer::Trl => trl(config, dir, config_json),
        Trainer::Axolotl => axolotl(config, dir, config_json),
    }
}

/// Why an external trainer does not run GRPO jobs.
const GRPO_BUILTIN: &str = "grpo runs on the built-in trainer: its rewards (answer, pattern, schema) are the dataset's, where TRL and Axolotl take reward functions written in Python";

fn model_for_python(config: &TrainConfig) -> Result<String, String> {
    if config.model.extension().is_some_and(|e| e == "gguf") {
        return Err(
            "TRL and Axolotl train from a Hugging Face model directory or hub id, not a GGUF file; use the built-in trainer for GGUF"
                .to_owned(),
        );
    }
    Ok(config.model.display().to_string())
}

fn trl(config: &TrainConfig, dir: &Path, config_json: String) -> Result<Recipe, String> {
    let hp = &config.hyperparameters;
    let command = match config.method {
        Method::Sft | Method::Distill => "sft",
        Method::Dpo => "dpo",
        Method::Quantize => {
            return Err("TRL does not quantize; use the built-in trainer".to_owned());
        }
        Method::Grpo => return Err(GRPO_BUILTIN.to_owned()),
    };
    let mut yaml = vec![
        format!(
            "model_name_or_path: {}",
            yaml_string(&model_for_python(config)?)
        ),
        "datasets:".to_owned(),
        "  - path: json".to_owned(),
        format!(
            "    data_files: {}",
            yaml_string(
                &config
                    .training_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        ),
        format!(
            "output_dir: {}",
            yaml_string(&dir.join("output").display().to_string())
        ),
        format!("num_train_epochs: {}", hp.n_epochs),
        format!("per_device_train_batch_size: {}", hp.batch_size),
        format!("learning_rate: {:e}", hp.learning_rate),
        format!("max_length: {}", hp.max_seq_len),
        format!("save_steps: {}", hp.checkpoint_every),
        "logging_steps: 1".to_owned(),
        "report_to: none".to_owned(),
        // Full precision works everywhere; set bf16: true on GPUs that have it.
        "bf16: false".to_owned(),
    ];
    if hp.early_stopping_patience > 0 {
        return Err(
            "TRL's command line has no early stopping: use the built-in trainer or Axolotl, or set early_stopping_patience to 0"
                .to_owned(),
        );
    }
    yaml.extend(schedule(config, "lr_scheduler_type"));
    if hp.packing {
        yaml.push("packing: true".to_owned());
    }
    if hp.lora_rank > 0 {
        yaml.push("use_peft: true".to_owned());
        yaml.push(format!("lora_r: {}", hp.lora_rank));
        yaml.push(format!("lora_alpha: {}", hp.lora_alpha));
        yaml.push("lora_target_modules: all-linear".to_owned());
    }
    if config.method == Method::Dpo {
        yaml.push(format!("beta: {}", hp.beta));
    }
    Ok(Recipe {
        program: "trl".to_owned(),
        args: vec![
            command.to_owned(),
            "--config".to_owned(),
            dir.join("trl.yaml").display().to_string(),
        ],
        files: vec![
            ("config.json".to_owned(), config_json),
            ("trl.yaml".to_owned(), yaml.join("\n") + "\n"),
        ],
        env: Vec::new(),
    })
}

fn axolotl(config: &TrainConfig, dir: &Path, config_json: String) -> Result<Recipe, String> {
    let hp = &config.hyperparameters;
    let dataset = config
        .training_file
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut yaml = vec![
        format!("base_model: {}", yaml_string(&model_for_python(config)?)),
        "datasets:".to_owned(),
        format!("  - path: {}", yaml_string(&dataset)),
        "    ds_type: json".to_owned(),
    ];
    yaml.push(format!("    type: {}", dataset_type(config.method)));
    match config.method {
        Method::Sft | Method::Distill => {}
        Method::Dpo => {
            yaml.push("rl: dpo".to_owned());
            yaml.push(format!("rl_beta: {}", hp.beta));
        }
        Method::Quantize => {
            return Err("Axolotl does not quantize; use the built-in trainer".to_owned());
        }
        Method::Grpo => return Err(GRPO_BUILTIN.to_owned()),
    }
    yaml.extend([
        format!(
            "output_dir: {}",
            yaml_string(&dir.join("output").display().to_string())
        ),
        format!("sequence_len: {}", hp.max_seq_len),
        format!("num_epochs: {}", hp.n_epochs),
        format!("micro_batch_size: {}", hp.batch_size),
        format!("learning_rate: {:e}", hp.learning_rate),
        "optimizer: adamw_torch".to_owned(),
        format!("save_steps: {}", hp.checkpoint_every),
        "logging_steps: 1".to_owned(),
    ]);
    yaml.extend(schedule(config, "lr_scheduler"));
    if hp.packing {
        yaml.push("sample_packing: true".to_owned());
    }
    if let Some(validation) = &config.validation_file {
        yaml.extend([
            "test_datasets:".to_owned(),
            format!(
                "  - path: {}",
                yaml_string(&validation.display().to_string())
            ),
            "    ds_type: json".to_owned(),
            "    split: train".to_owned(),
            format!("    type: {}", dataset_type(config.method)),
            format!("eval_steps: {}", hp.eval_every()),
        ]);
        if hp.early_stopping_patience > 0 {
            yaml.push(format!(
                "early_stopping_patience: {}",
                hp.early_stopping_patience
            ));
        }
    }
    if hp.lora_rank > 0 {
        yaml.extend([
            "adapter: lora".to_owned(),
            format!("lora_r: {}", hp.lora_rank),
            format!("lora_alpha: {}", hp.lora_alpha),
            "lora_target_linear: true".to_owned(),
        ]);
    }
    Ok(Recipe {
        program: "axolotl".to_owned(),
        args: vec![
            "train".to_owned(),
            dir.join("axolotl.yaml").display().to_string(),
        ],
        files: vec![
            ("config.json".to_owned(), config_json),
            ("axolotl.yaml".to_owned(), yaml.join("\n") + "\n"),
        ],
        env: Vec::new(),
    })
}

/// Axolotl's dataset type for a method's files.
fn dataset_type(method: Method) -> &'static str {
    match method {
        Method::Dpo => "chatml.intel",
        _ => "chat_template",
    }
}

/// The settings TRL and Axolotl share under the same names (the scheduler's key differs):
/// seed, warmup, schedule, gradient accumulation.
fn schedule(config: &TrainConfig, scheduler_key: &str) -> Vec<String> {
    let hp = &config.hyperparameters;
    let scheduler = match hp.lr_scheduler {
        Schedule::Constant if hp.warmup_ratio > 0.0 => "constant_with_warmup",
        other => other.as_str(),
    };
    vec![
        format!("seed: {}", config.seed),
        format!("warmup_ratio: {}", hp.warmup_ratio),
        format!("{scheduler_key}: {scheduler}"),
        format!(
            "gradient_accumulation_steps: {}",
            hp.gradient_accumulation_steps
        ),
    ]
}

/// A YAML scalar: JSON's quoting is valid YAML.
fn yaml_string(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}
