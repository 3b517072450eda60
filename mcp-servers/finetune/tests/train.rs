//! The built-in trainer, for real, on a tiny model the test creates: the loss must drop by a
//! clear margin, a run is repeatable from its seed, and a run stopped and resumed ends exactly
//! as an unbroken one.

use std::path::{Path, PathBuf};

use mcp_server_finetune::{
    job::{Hyperparameters, Method, Quantization, Schedule, Setting},
    train::{self, Outcome, Report, Sink, StopFlag, TrainConfig, model},
};

const CAPITALS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Nepal", "Kathmandu"),
    ("Ghana", "Accra"),
    ("Iran", "Tehran"),
];

fn write_sft(dir: &Path) -> PathBuf {
    let path = dir.join("train.jsonl");
    let lines: Vec<String> = CAPITALS
        .iter()
        .map(|(country, city)| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Capital of {country}?")},
                {"role": "assistant", "content": *city},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// A tiny model and the capitals to train it on, in `dir`.
fn tiny(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.join("tiny");
    model::create_tiny(&base).unwrap();
    (base, write_sft(dir))
}

fn config(
    dir: &Path,
    model: &Path,
    method: Method,
    train: PathBuf,
    hp: Hyperparameters,
) -> TrainConfig {
    let examples = CAPITALS.len();
    TrainConfig {
        method,
        model: model.to_owned(),
        training_file: Some(train),
        validation_file: None,
        hyperparameters: hp.resolve(method, examples, 64),
        output_dir: dir.join("job"),
        quantize: None,
        teacher: None,
        seed: 7,
        suffix: None,
    }
}

fn losses(reports: &[Report]) -> Vec<f64> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Metrics { train_loss, .. } => Some(*train_loss),
            _ => None,
        })
        .collect()
}

/// Mean of the first and last few losses.
fn drop_ratio(losses: &[f64]) -> f64 {
    let k = 3.min(losses.len());
    let first: f64 = losses[..k].iter().sum::<f64>() / k as f64;
    let last: f64 = losses[losses.len() - k..].iter().sum::<f64>() / k as f64;
    last / first
}

#[test]
fn lora_sft_lowers_the_loss_and_writes_adapter_model_and_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(12),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        lora_rank: Setting::Value(8),
        checkpoint_every: Setting::Value(10),
        ..Default::default()
    };
    let mut config = config(dir.path(), &base, Method::Sft, train.clone(), hp);
    config.quantize = Some(Quantization::Q8_0);
    config.validation_file = Some(train);
    let mut reports: Vec<Report> = Vec::new();
    let finished = train::run(&config, &StopFlag::new(), &mut reports).unwrap();
    assert!(finished);
    let losses = losses(&reports);
    assert_eq!(losses.len(), 36);
    assert!(drop_ratio(&losses) < 0.6, "losses {losses:?}");
    let kinds: Vec<&str> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Artifact { kind, bytes, .. } => {
                assert!(*bytes > 0);
                Some(kind.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(kinds, ["lora_adapter", "model", "gguf"]);
    let checkpoints: Vec<u64> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Checkpoint { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints, [10, 20, 30, 36]);
    // Only the newest three stay on disk.
    let kept: Vec<String> = std::fs::read_dir(config.output_dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(kept, ["step-000020", "step-000030", "step-000036"]);
    // The validation loss comes with each checkpoint's metrics, and falls too.
    let valid: Vec<f64> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Checkpoint { metrics, .. } => metrics["valid_loss"].as_f64(),
            _ => None,
        })
        .collect();
    assert_eq!(valid.len(), 4, "{reports:?}");
    assert!(valid[3] < valid[0], "{valid:?}");
    assert!(matches!(
        reports.last(),
        Some(Report::Finished {
            status: Outcome::Succeeded
        })
    ));

    // The merged model and the GGUF file load again. Written as F32 GGUF, the export must give
    // the merged model's logits exactly: the layout (llama.cpp's names, its permuted query/key
    // rows, undone on load) is all that differs. (Compared through Q8_0 instead, a trained tiny
    // model amplifies the quantization noise too unevenly to tell a wrong layout apart.)
    let merged_dir = config.output_dir.join("model");
    let merged =
        model::Model::new(model::load(&merged_dir).unwrap(), model::Tuning::Frozen).unwrap();
    let q8 = model::load(&config.output_dir.join("model-q8_0.gguf")).unwrap();
    assert_eq!(q8.config.num_hidden_layers, merged.config.num_hidden_layers);
    assert_eq!(q8.config.vocab_size, merged.config.vocab_size);
    let tokenizer = train::tokenize::ChatTokenizer::for_model(&merged_dir, None).unwrap();
    let f32_file = dir.path().join("f32.gguf");
    train::export::write(
        &merged,
        &tokenizer,
        train::export::Mix::All(candle_core::quantized::GgmlDType::F32),
        &f32_file,
    )
    .unwrap();
    let gguf = model::Model::new(model::load(&f32_file).unwrap(), model::Tuning::Frozen).unwrap();
    let ids = [60u32, 61, 62, 63, 64, 65, 66, 67];
    let logits = |model: &model::Model| -> Vec<f32> {
        let logits = model.forward(&ids, false).unwrap();
        logits.flatten_all().unwrap().to_vec1().unwrap()
    };
    let (a, b) = (logits(&merged), logits(&gguf));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        worst <= 1e-4 * scale.max(1.0),
        "worst {worst}, scale {scale}"
    );
    // The GGUF file's tokenizer is the model's.
    let again = train::tokenize::from_gguf(gguf.gguf_metadata.as_ref().unwrap()).unwrap();
    let text = "<|im_start|>user\nCapital of Peru?<|im_end|>";
    assert_eq!(
        again.encode_fast(text, false).unwrap().get_ids(),
        tokenizer
            .tokenizer
            .encode_fast(text, false)
            .unwrap()
            .get_ids()
    );
}

#[test]
fn full_fine_tuning_lowers_the_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(8),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(3e-3),
        lora_rank: Setting::Value(0),
        ..Default::default()
    };
    let config = config(dir.path(), &base, Method::Sft, train, hp);
    let mut reports: Vec<Report> = Vec::new();
    train::run(&config, &StopFlag::new(), &mut reports).unwrap();
    let losses = losses(&reports);
    assert!(drop_ratio(&losses) < 0.6, "losses {losses:?}");
}

#[test]
fn a_stop_checkpoints_and_a_rerun_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(4),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        checkpoint_every: Setting::Value(100),
        ..Default::default()
    };
    let config = config(dir.path(), &base, Method::Sft, train, hp);
    // Stop raised before the first step: one step runs, then a checkpoint, then the run ends.
    let stop = StopFlag::new();
    stop.raise();
    let mut first: Vec<Report> = Vec::new();
    assert!(!train::run(&config, &stop, &mut first).unwrap());
    assert!(matches!(
        first.last(),
        Some(Report::Finished {
            status: Outcome::Cancelled
        })
    ));
    let (step, path) = train::latest_checkpoint(&config.output_dir).unwrap();
    assert_eq!(step, 1);
    assert!(path.join("trainable.safetensors").is_file());
    // A partial checkpoint (a stop during the write) is never taken for a whole one.
    std::fs::create_dir_all(config.output_dir.join("checkpoints/step-000005")).unwrap();
    assert_eq!(train::latest_checkpoint(&config.output_dir).unwrap().0, 1);

    let mut second: Vec<Report> = Vec::new();
    assert!(train::run(&config, &StopFlag::new(), &mut second).unwrap());
    assert!(matches!(
        second.first(),
        Some(Report::Started {
            resumed_from: Some(1),
            total_steps: 12,
            ..
        })
    ));
    let steps: Vec<u64> = second
        .iter()
        .filter_map(|r| match r {
            Report::Metrics { step, .. } => Some(*step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (2..=12).collect::<Vec<_>>());
}

#[test]
fn dpo_raises_the_chosen_answer_over_the_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let path = dir.path().join("prefs.jsonl");
    let lines: Vec<String> = CAPITALS
        .iter()
        .map(|(country, city)| {
            serde_json::json!({"prompt": format!("Capital of {country}?"), "chosen": *city, "rejected": "I do not know."})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let hp = Hyperparameters {
        n_epochs: Setting::Value(6),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        beta: Setting::Value(0.5),
        ..Default::default()
    };
    let config = config(dir.path(), &base, Method::Dpo, path, hp);
    let mut reports: Vec<Report> = Vec::new();
    train::run(&config, &StopFlag::new(), &mut reports).unwrap();
    let losses = losses(&reports);
    // DPO's loss starts at log 2 (adapters start at zero: policy = reference) and must fall.
    assert!(
        (losses[0] - std::f64::consts::LN_2).abs() < 1e-3,
        "{losses:?}"
    );
    assert!(drop_ratio(&losses) < 0.7, "losses {losses:?}");
}

#[test]
fn distillation_learns_from_a_teachers_logits() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let teacher = dir.path().join("teacher");
    model::create_tiny(&teacher).unwrap();
    let train = write_sft(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(8),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        ..Default::default()
    };
    let mut config = config(dir.path(), &base, Method::Distill, train, hp);
    config.teacher = Some(teacher);
    let mut reports: Vec<Report> = Vec::new();
    assert!(train::run(&config, &StopFlag::new(), &mut reports).unwrap());
    let losses = losses(&reports);
    assert!(drop_ratio(&losses) < 0.7, "losses {losses:?}");

    // A teacher with another vocabulary is refused with the reason.
    let other = dir.path().join("other");
    model::create_tiny(&other).unwrap();
    let mut config_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(other.join("config.json")).unwrap()).unwrap();
    let vocab = config_json["vocab_size"].as_u64().unwrap();
    config_json["vocab_size"] = (vocab + 1).into();
    std::fs::write(other.join("config.json"), config_json.to_string()).unwrap();
    config.teacher = Some(other);
    config.output_dir = dir.path().join("job2");
    let error = train::run(&config, &StopFlag::new(), &mut Vec::new()).unwrap_err();
    assert!(error.to_string().contains("vocabulary"), "{error}");
}

#[test]
fn models_the_trainer_would_get_wrong_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let config_file = base.join("config.json");
    let original = std::fs::read_to_string(&config_file).unwrap();
    // The merged model's config is what Hugging Face's loaders read.
    let config: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");

    // Rotary scalings it does not implement, sliding windows, experts without a top-k: refused,
    // not trained wrong.
    for (key, value, expected) in [
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "yarn", "factor": 4.0}),
            "\"yarn\" rotary scaling",
        ),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": 8.0}),
            "has no low_freq_factor",
        ),
        (
            "use_sliding_window",
            serde_json::json!(true),
            "sliding-window",
        ),
        (
            "num_experts",
            serde_json::json!(8),
            "needs num_experts_per_tok between 1 and that",
        ),
    ] {
        let mut changed = config.clone();
        changed[key] = value;
        std::fs::write(&config_file, changed.to_string()).unwrap();
        let error = model::load(&base).err().unwrap().to_string();
        assert!(error.contains(expected), "{key}: {error}");
    }
    std::fs::write(&config_file, &original).unwrap();

    let weights = base.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    tensors.insert(
        "model.layers.0.self_attn.o_proj.bias".to_owned(),
        candle_core::Tensor::zeros(64, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let error = model::load(&base).err().unwrap().to_string();
    assert!(error.contains("o_proj.bias"), "{error}");

    let error = model::load(&dir.path().join("nothing"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no model at"), "{error}");
    std::fs::write(dir.path().join("x.gguf"), b"not gguf").unwrap();
    let error = model::load(&dir.path().join("x.gguf"))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("not a GGUF file"), "{error}");
}

/// The metrics reports: `(step, train_loss, learning_rate, valid_loss)`.
fn steps(reports: &[Report]) -> Vec<(u64, f64, f64, Option<f64>)> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Metrics {
                step,
                train_loss,
                learning_rate,
                valid_loss,
                ..
            } => Some((*step, *train_loss, *learning_rate, *valid_loss)),
            _ => None,
        })
        .collect()
}

/// The capitals with each answer moved to the next country: what a model that learns the
/// capitals gets more and more wrong.
fn write_wrong_capitals(dir: &Path) -> PathBuf {
    let path = dir.join("wrong.jsonl");
    let lines: Vec<String> = CAPITALS
        .iter()
        .zip(CAPITALS.iter().cycle().skip(1))
        .map(|((country, _), (_, city))| {
            serde_json::json!({"messages": [
                {"role": "user", "content": format!("Capital of {country}?")},
                {"role": "assistant", "content": *city},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// The adapter a run wrote, tensor by tensor.
fn adapter(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let tensors = candle_core::safetensors::load(
        dir.join("adapter/adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut out: Vec<(String, Vec<f32>)> = tensors
        .into_iter()
        .map(|(name, t)| (name, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Raises the stop flag when it sees the metrics of step `at`.
struct StopAfter {
    at: u64,
    stop: StopFlag,
    reports: Vec<Report>,
}

impl Sink for StopAfter {
    fn report(&mut self, report: &Report) {
        if matches!(report, Report::Metrics { step, .. } if *step == self.at) {
            self.stop.raise();
        }
        self.reports.push(report.clone());
    }
}

#[test]
fn a_run_stopped_and_resumed_ends_exactly_as_an_unbroken_one() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    // Every setting that carries state from step to step: the optimizer's moments, the warmup
    // and schedule, accumulated batches, evaluations and early stopping's best so far.
    let hp = Hyperparameters {
        n_epochs: Setting::Value(4),
        batch_size: Setting::Value(2),
        gradient_accumulation_steps: Setting::Value(2),
        learning_rate: Setting::Value(1e-2),
        warmup_ratio: Setting::Value(0.25),
        lr_scheduler: Setting::Value(Schedule::Cosine),
        eval_steps: Setting::Value(2),
        early_stopping_patience: Setting::Value(100),
        checkpoint_every: Setting::Value(100),
        ..Default::default()
    };
    let mut unbroken = config(dir.path(), &base, Method::Sft, train, hp);
    unbroken.validation_file = Some(write_wrong_capitals(dir.path()));
    let mut whole: Vec<Report> = Vec::new();
    assert!(train::run(&unbroken, &StopFlag::new(), &mut whole).unwrap());

    let mut broken = unbroken.clone();
    broken.output_dir = dir.path().join("broken");
    let stop = StopFlag::new();
    let mut first = StopAfter {
        at: 4,
        stop: stop.clone(),
        reports: Vec::new(),
    };
    assert!(!train::run(&broken, &stop, &mut first).unwrap());
    assert_eq!(train::latest_checkpoint(&broken.output_dir).unwrap().0, 5);
    let mut second: Vec<Report> = Vec::new();
    assert!(train::run(&broken, &StopFlag::new(), &mut second).unwrap());
    assert!(matches!(
        second.first(),
        Some(Report::Started {
            resumed_from: Some(5),
            ..
        })
    ));

    let whole = steps(&whole);
    let resumed = steps(&second);
    assert_eq!(whole.len(), 12, "{whole:?}");
    assert_eq!(resumed.len(), 7, "{resumed:?}");
    // Exactly: the same numbers, not close ones.
    assert_eq!(
        &whole[5..],
        &resumed[..],
        "unbroken {whole:?}\nresumed {resumed:?}"
    );
    assert_eq!(adapter(&unbroken.output_dir), adapter(&broken.output_dir));
}

#[test]
fn the_seed_decides_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(2),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        ..Default::default()
    };
    let run = |seed: u64, name: &str| {
        let mut config = config(dir.path(), &base, Method::Sft, train.clone(), hp.clone());
        config.seed = seed;
        config.output_dir = dir.path().join(name);
        let mut reports: Vec<Report> = Vec::new();
        train::run(&config, &StopFlag::new(), &mut reports).unwrap();
        (losses(&reports), adapter(&config.output_dir))
    };
    let (losses_a, adapter_a) = run(7, "a");
    let (losses_b, adapter_b) = run(7, "b");
    let (losses_c, adapter_c) = run(8, "c");
    assert_eq!(losses_a, losses_b);
    assert_eq!(adapter_a, adapter_b);
    assert_ne!(losses_a, losses_c);
    assert_ne!(adapter_a, adapter_c);
}

#[test]
fn the_learning_rate_warms_up_then_follows_its_schedule() {
    // Step by step, for 10 steps with 2 of warmup, peak 1: up linearly, then down to a tenth.
    let rates = |schedule: Schedule| -> Vec<f64> {
        (0..10)
            .map(|step| schedule.rate(1.0, step, 10, 2))
            .collect()
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
    for schedule in [Schedule::Linear, Schedule::Cosine, Schedule::Constant] {
        let r = rates(schedule);
        assert!(
            close(r[0], 0.5) && close(r[1], 1.0) && close(r[2], 1.0),
            "{schedule:?} {r:?}"
        );
    }
    let linear = rates(Schedule::Linear);
    assert!(
        close(linear[9], 0.1) && close(linear[5], 1.0 - 0.9 * 3.0 / 7.0),
        "{linear:?}"
    );
    let cosine = rates(Schedule::Cosine);
    assert!(close(cosine[9], 0.1), "{cosine:?}");
    // Cosine stays above the straight line in its first half and below it in the second.
    assert!(cosine[4] > linear[4] && cosine[8] < linear[8], "{cosine:?}");
    assert!(
        rates(Schedule::Constant)[2..]
            .iter()
            .all(|&r| close(r, 1.0))
    );

    // And a run reports the rate it used at each step.
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(2),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        warmup_ratio: Setting::Value(0.5),
        lr_scheduler: Setting::Value(Schedule::Linear),
        ..Default::default()
    };
    let config = config(dir.path(), &base, Method::Sft, train, hp);
    let mut reports: Vec<Report> = Vec::new();
    train::run(&config, &StopFlag::new(), &mut reports).unwrap();
    let used: Vec<f64> = steps(&reports).iter().map(|s| s.2).collect();
    let expected: Vec<f64> = (0..6)
        .map(|step| Schedule::Linear.rate(1e-2, step, 6, 3))
        .collect();
    assert_eq!(used, expected);
    assert!(
        close(used[0], 1e-2 / 3.0) && close(used[5], 1e-3),
        "{used:?}"
    );
}

#[test]
fn accumulated_batches_take_the_step_one_big_batch_would() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let run = |batch: u32, accumulate: u32| {
        let hp = Hyperparameters {
            n_epochs: Setting::Value(3),
            batch_size: Setting::Value(batch),
            gradient_accumulation_steps: Setting::Value(accumulate),
            learning_rate: Setting::Value(1e-2),
            ..Default::default()
        };
        let mut config = config(dir.path(), &base, Method::Sft, train.clone(), hp);
        config.output_dir = dir.path().join(format!("b{batch}x{accumulate}"));
        let mut reports: Vec<Report> = Vec::new();
        train::run(&config, &StopFlag::new(), &mut reports).unwrap();
        losses(&reports)
    };
    let one = run(4, 1);
    assert_eq!(one.len(), 9);
    // The examples differ in length: a mean of per-batch means would be off by percents.
    for (batch, accumulate) in [(2, 2), (1, 4)] {
        let accumulated = run(batch, accumulate);
        assert_eq!(accumulated.len(), one.len());
        for (a, b) in one.iter().zip(&accumulated) {
            assert!(
                (a - b).abs() / a < 1e-4,
                "{batch}x{accumulate}: {one:?} vs {accumulated:?}"
            );
        }
    }
}

#[test]
fn packed_examples_each_see_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let model = model::Model::new(model::load(&base).unwrap(), model::Tuning::Frozen).unwrap();
    let a: Vec<u32> = vec![5, 80, 81, 99, 7];
    let b: Vec<u32> = vec![12, 40, 41, 42, 43, 44, 9];
    let packed: Vec<u32> = a.iter().chain(&b).copied().collect();
    let together: Vec<Vec<f32>> = model
        .forward_packed(&packed, &[a.len(), b.len()], false)
        .unwrap()
        .to_vec2()
        .unwrap();
    let alone: Vec<Vec<f32>> = [&a, &b]
        .iter()
        .flat_map(|ids| model.forward(ids, false).unwrap().to_vec2::<f32>().unwrap())
        .collect();
    for (row, (x, y)) in together.iter().zip(&alone).enumerate() {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "row {row}: {worst}");
    }
    // Unpacked, b would see a: its logits differ.
    let leaked: Vec<Vec<f32>> = model.forward(&packed, false).unwrap().to_vec2().unwrap();
    assert!(
        leaked[a.len()..]
            .iter()
            .zip(&alone[a.len()..])
            .any(|(x, y)| { x.iter().zip(y).any(|(p, q)| (p - q).abs() > 1e-3) })
    );
    let error = model.forward_packed(&packed, &[3, 3], false).err().unwrap();
    assert!(error.to_string().contains("do not cover"), "{error}");

    // A packed run: fewer, fuller sequences, and it learns.
    let train = write_sft(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(10),
        batch_size: Setting::Value(1),
        learning_rate: Setting::Value(1e-2),
        max_seq_len: Setting::Value(128),
        packing: Setting::Value(true),
        ..Default::default()
    };
    let config = config(dir.path(), &base, Method::Sft, train, hp);
    let mut reports: Vec<Report> = Vec::new();
    train::run(&config, &StopFlag::new(), &mut reports).unwrap();
    let packed_into = reports
        .iter()
        .find_map(|r| match r {
            Report::Message { message, .. } if message.starts_with("packed 12 examples") => {
                Some(message.clone())
            }
            _ => None,
        })
        .unwrap();
    let Some(total_steps) = reports.iter().find_map(|r| match r {
        Report::Started { total_steps, .. } => Some(*total_steps),
        _ => None,
    }) else {
        panic!("{reports:?}");
    };
    assert!(
        (20..120).contains(&total_steps),
        "{packed_into}: {total_steps}"
    );
    let losses = losses(&reports);
    assert!(drop_ratio(&losses) < 0.7, "losses {losses:?}");
}

#[test]
fn early_stopping_stops_and_keeps_the_best_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(40),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        eval_steps: Setting::Value(1),
        early_stopping_patience: Setting::Value(2),
        checkpoint_every: Setting::Value(1),
        ..Default::default()
    };
    let mut config = config(dir.path(), &base, Method::Sft, train, hp);
    config.validation_file = Some(write_wrong_capitals(dir.path()));
    let mut reports: Vec<Report> = Vec::new();
    assert!(train::run(&config, &StopFlag::new(), &mut reports).unwrap());
    let seen = steps(&reports);
    let last = seen.last().unwrap().0;
    assert!(last < 120, "never stopped: {seen:?}");
    let (best_step, best_loss) = seen
        .iter()
        .map(|s| (s.0, s.3.unwrap()))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(best_step, last - 2, "{seen:?}");
    let messages: Vec<&str> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Message { message, .. } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with(&format!("stopped early at step {last} of 120"))),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains(&format!("weights of step {best_step}"))
                && m.contains(&format!("{best_loss:.4}"))),
        "{messages:?}"
    );
    // The result is the best step's weights, not the last step's.
    let checkpoint = |step: u64| {
        let tensors = candle_core::safetensors::load(
            config
                .output_dir
                .join(format!("checkpoints/step-{step:06}/trainable.safetensors")),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let mut out: Vec<(String, Vec<f32>)> = tensors
            .into_iter()
            .map(|(name, t)| {
                (
                    format!("base_model.model.{name}"),
                    t.flatten_all().unwrap().to_vec1().unwrap(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    };
    let result = adapter(&config.output_dir);
    assert_eq!(result, checkpoint(best_step));
    assert_ne!(result, checkpoint(last));
}

#[test]
fn generation_from_the_cache_is_what_recomputing_everything_gives() {
    use train::generate::{Finish, Sampling, generate};
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let weights = model::load(&base).unwrap();
    let tokenizer = train::tokenize::ChatTokenizer::for_model(&base, None).unwrap();
    let model = model::Model::new(weights, model::Tuning::Frozen).unwrap();
    let prompt = tokenizer
        .prompt(&[mcp_server_finetune::dataset::Turn {
            role: "user".to_owned(),
            text: "Capital of France?".to_owned(),
            trained: false,
        }])
        .unwrap();
    let answer = generate(
        &model,
        &tokenizer,
        &prompt,
        24,
        Sampling::GREEDY,
        false,
        &mut |_| true,
    )
    .unwrap();
    // Without the cache: the whole sequence through the model for every token.
    let mut ids = prompt.clone();
    let mut expected = Vec::new();
    for _ in 0..answer.ids.len() {
        let logits: Vec<Vec<f32>> = model.forward(&ids, false).unwrap().to_vec2().unwrap();
        let last = logits.last().unwrap();
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .unwrap() as u32;
        expected.push(next);
        ids.push(next);
    }
    assert_eq!(answer.ids, expected);
    assert!(matches!(answer.finish, Finish::Length | Finish::Stop));

    // A chunk after a cached prefix sees the prefix and itself, in order.
    let mut cache = model::Cache::new();
    let (head, tail) = ids.split_at(prompt.len() - 3);
    model.forward_cached(head, &mut cache, false).unwrap();
    let chunk: Vec<Vec<f32>> = model
        .forward_cached(tail, &mut cache, false)
        .unwrap()
        .to_vec2()
        .unwrap();
    let whole: Vec<Vec<f32>> = model.forward(&ids, false).unwrap().to_vec2().unwrap();
    for (row, (x, y)) in chunk.iter().zip(&whole[head.len()..]).enumerate() {
        let worst = x
            .iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "row {row}: {worst}");
    }
    assert_eq!(cache.len(), ids.len());

    // Sampling: the seed decides.
    let sampled = |seed: u64| {
        // Hot enough that the tiny random model's answers vary.
        let sampling = Sampling {
            temperature: 5.0,
            top_p: 1.0,
            seed,
        };
        generate(
            &model,
            &tokenizer,
            &prompt,
            16,
            sampling,
            false,
            &mut |_| true,
        )
        .unwrap()
        .ids
    };
    assert_eq!(sampled(1), sampled(1));
    assert_ne!(sampled(1), sampled(2));
    // The caller may stop it.
    let stopped = generate(
        &model,
        &tokenizer,
        &prompt,
        24,
        Sampling::GREEDY,
        false,
        &mut |n| n < 3,
    )
    .unwrap();
    assert_eq!(stopped.ids.len(), 3);
    assert_eq!(stopped.finish, Finish::Cancelled);
}

#[test]
fn every_architecture_trains_and_its_merged_model_reloads() {
    use model::Arch;
    let dir = tempfile::tempdir().unwrap();
    let train = write_sft(dir.path());
    for arch in [Arch::Llama3, Arch::Qwen2, Arch::Qwen3, Arch::Qwen3Moe] {
        let base = dir.path().join(format!("{arch:?}"));
        model::create_tiny_arch(&base, arch).unwrap();
        let hp = Hyperparameters {
            n_epochs: Setting::Value(8),
            batch_size: Setting::Value(4),
            learning_rate: Setting::Value(1e-2),
            ..Default::default()
        };
        let mut config = config(dir.path(), &base, Method::Sft, train.clone(), hp);
        config.output_dir = dir.path().join(format!("{arch:?}-job"));
        let mut reports: Vec<Report> = Vec::new();
        train::run(&config, &StopFlag::new(), &mut reports).unwrap();
        let losses = losses(&reports);
        assert!(drop_ratio(&losses) < 0.7, "{arch:?}: losses {losses:?}");

        // The merged model keeps what makes the architecture (biases, norms, head width, rotary
        // scaling) and loads as it was trained: its logits are the base's plus what was learned.
        let merged = config.output_dir.join("model");
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap())
                .unwrap();
        let original: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(base.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(written, original, "{arch:?}");
        let tensors = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = candle_core::safetensors::load(
                dir.join("model.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap()
            .into_keys()
            .collect();
            names.sort();
            names
        };
        assert_eq!(tensors(&merged), tensors(&base), "{arch:?}");
        let ids: Vec<u32> = (40..80).collect();
        let logits = |path: &Path| -> Vec<Vec<f32>> {
            let model =
                model::Model::new(model::load(path).unwrap(), model::Tuning::Frozen).unwrap();
            model.forward(&ids, false).unwrap().to_vec2().unwrap()
        };
        assert_ne!(logits(&merged), logits(&base), "{arch:?}");
        // The base with the adapter on gives what the merged model gives.
        let hp = config.hyperparameters;
        let tuned = model::Model::new(
            model::load(&base).unwrap(),
            model::Tuning::Lora {
                rank: hp.lora_rank as usize,
                alpha: hp.lora_alpha,
                seed: 0,
            },
        )
        .unwrap();
        let adapter: std::collections::HashMap<String, candle_core::Tensor> =
            candle_core::safetensors::load(
                config.output_dir.join("adapter/adapter_model.safetensors"),
                &candle_core::Device::Cpu,
            )
            .unwrap()
            .into_iter()
            .map(|(name, t)| (name.trim_start_matches("base_model.model.").to_owned(), t))
            .collect();
        tuned.load_trainable(&adapter).unwrap();
        let with_adapter: Vec<Vec<f32>> = tuned.forward(&ids, true).unwrap().to_vec2().unwrap();
        for (x, y) in with_adapter.iter().zip(&logits(&merged)) {
            let worst = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-3, "{arch:?}: {worst}");
        }
    }
}

#[test]
fn k_quants_take_llama_cpps_mix_and_cost_little_perplexity() {
    use candle_core::quantized::{GgmlDType, gguf_file};
    let dir = tempfile::tempdir().unwrap();
    // 256 wide: the rows fill K-quant super-blocks (64 would fall back to Q5_0 and the like).
    let base = dir.path().join("tiny");
    model::create_tiny_sized(&base, model::Arch::Llama, 256, 512).unwrap();
    let train = write_sft(dir.path());
    // Trained first: a random model's perplexity is astronomical, and says nothing.
    let hp = Hyperparameters {
        n_epochs: Setting::Value(12),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        lora_rank: Setting::Value(8),
        ..Default::default()
    };
    let tuning = config(dir.path(), &base, Method::Sft, train.clone(), hp);
    let mut reports: Vec<Report> = Vec::new();
    assert!(train::run(&tuning, &StopFlag::new(), &mut reports).unwrap());
    let base = tuning.output_dir.join("model");
    let merged = model::load(&base).unwrap().tensors;
    // Relative RMS error of a matrix read back from the GGUF file (un-permuted by the loader).
    let error = |tensors: &std::collections::HashMap<String, candle_core::Tensor>, name: &str| {
        let (ours, theirs) = (&tensors[name], &merged[name]);
        let rms = |t: &candle_core::Tensor| {
            t.sqr()
                .unwrap()
                .mean_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .sqrt()
        };
        rms(&(ours - theirs).unwrap()) / rms(theirs)
    };
    let mut errors = Vec::new();
    for (quantization, file_type, v0, v1) in [
        (Quantization::Q4KM, 15, GgmlDType::Q4K, GgmlDType::Q6K),
        (Quantization::Q5KM, 17, GgmlDType::Q5K, GgmlDType::Q6K),
        (Quantization::Q6K, 18, GgmlDType::Q6K, GgmlDType::Q6K),
    ] {
        let name = quantization.as_str();
        let mut config = config(
            &dir.path().join(name),
            &base,
            Method::Quantize,
            train.clone(),
            Hyperparameters::default(),
        );
        config.quantize = Some(quantization);
        let mut reports: Vec<Report> = Vec::new();
        assert!(train::run(&config, &StopFlag::new(), &mut reports).unwrap());
        let (file, merged_ppl, quantized_ppl) = reports
            .iter()
            .find_map(|r| match r {
                Report::Perplexity {
                    file,
                    examples,
                    merged,
                    quantized,
                    ..
                } => {
                    assert_eq!(*examples, CAPITALS.len());
                    Some((file.clone(), *merged, *quantized))
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{name}: no perplexity in {reports:?}"));
        eprintln!("{name}: perplexity {quantized_ppl:.4} against {merged_ppl:.4}");
        // A random tiny model is close to uniform over its 260 tokens; quantization moves that
        // by little, a wrong layout (unpermuted rows, another tensor's scales) by far more.
        assert!(merged_ppl > 1.0 && quantized_ppl > 1.0);
        assert!(
            (quantized_ppl / merged_ppl - 1.0).abs() < 0.02,
            "{name}: {quantized_ppl} against {merged_ppl}"
        );

        let content = gguf_file::Content::read(&mut std::fs::File::open(&file).unwrap()).unwrap();
        assert_eq!(
            content.metadata["general.file_type"].to_u32().unwrap(),
            file_type
        );
        let dtype = |name: &str| content.tensor_infos[name].ggml_dtype;
        // The second of two blocks is in the last eighth: six bits for its values and down
        // projection under the _M mixes; tied embeddings are the output, six bits always.
        assert_eq!(dtype("blk.0.attn_v.weight"), v0, "{name}");
        assert_eq!(dtype("blk.1.attn_v.weight"), v1, "{name}");
        assert_eq!(dtype("blk.0.ffn_down.weight"), v0, "{name}");
        assert_eq!(dtype("blk.1.ffn_down.weight"), v1, "{name}");
        assert_eq!(dtype("blk.1.attn_q.weight"), v0, "{name}");
        assert_eq!(dtype("token_embd.weight"), GgmlDType::Q6K, "{name}");
        assert_eq!(dtype("blk.0.attn_norm.weight"), GgmlDType::F32, "{name}");

        let read = model::load(&file).unwrap().tensors;
        errors.push((
            name,
            error(&read, "model.layers.0.self_attn.q_proj.weight"),
            error(&read, "model.layers.1.mlp.down_proj.weight"),
        ));
    }
    // More bits, closer weights: 4, 5 and 6 bits for the query projection, 6 for the last
    // block's down projection in all three; each near what its format promises (Q4_K's
    // ~7% on Gaussian weights, Q5_K's ~4%, Q6_K's ~2%).
    eprintln!("relative RMS errors (attn_q, ffn_down): {errors:?}");
    let q: Vec<f32> = errors.iter().map(|e| e.1).collect();
    assert!(q[0] > q[1] && q[1] > q[2] && q[2] > 0.0, "{errors:?}");
    assert!(q[0] < 0.1 && q[1] < 0.05 && q[2] < 0.03, "{errors:?}");
    assert!(errors.iter().all(|e| e.2 > 0.0 && e.2 < 0.03), "{errors:?}");
}

/// The capitals' questions as GRPO prompts, rewarding an answer of lowercase letters alone: a
/// format reward, as DeepSeek-R1's were, which the briefly tuned tiny model meets now and then.
fn write_grpo(dir: &Path) -> PathBuf {
    let path = dir.join("grpo.jsonl");
    let lines: Vec<String> = CAPITALS
        .iter()
        .map(|(country, _)| {
            serde_json::json!({"prompt": format!("Capital of {country}?"), "pattern": "^[a-z]+$"})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn rewards(reports: &[Report]) -> Vec<f64> {
    reports
        .iter()
        .filter_map(|r| match r {
            Report::Metrics { reward, .. } => *reward,
            _ => None,
        })
        .collect()
}

#[test]
fn grpo_raises_the_reward() {
    let dir = tempfile::tempdir().unwrap();
    let (base, train) = tiny(dir.path());
    // A few epochs of SFT first (a cold start, as R1's): the random tiny model answers "\n"
    // every time, and a group of equal answers teaches nothing.
    let hp = Hyperparameters {
        n_epochs: Setting::Value(4),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        lora_rank: Setting::Value(8),
        ..Default::default()
    };
    let sft = config(&dir.path().join("sft"), &base, Method::Sft, train, hp);
    assert!(train::run(&sft, &StopFlag::new(), &mut Vec::new()).unwrap());
    let hp = Hyperparameters {
        n_epochs: Setting::Value(5),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(1e-2),
        lora_rank: Setting::Value(8),
        num_generations: Setting::Value(8),
        max_completion_tokens: Setting::Value(8),
        eval_steps: Setting::Value(15),
        ..Default::default()
    };
    let grpo = write_grpo(dir.path());
    let mut config = config(
        dir.path(),
        &sft.output_dir.join("model"),
        Method::Grpo,
        grpo.clone(),
        hp,
    );
    config.validation_file = Some(grpo);
    let mut reports: Vec<Report> = Vec::new();
    assert!(train::run(&config, &StopFlag::new(), &mut reports).unwrap());
    let rewards = rewards(&reports);
    assert_eq!(rewards.len(), 15, "{reports:?}");
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&rewards[..3]), mean(&rewards[12..]));
    eprintln!("rewards {rewards:.2?}");
    assert!(last > first + 0.2, "rewards {rewards:?}");
    // GRPO has no token accuracy (it samples its own tokens) and reports the validation reward.
    let (accuracy, valid): (Vec<_>, Vec<_>) = reports
        .iter()
        .filter_map(|r| match r {
            Report::Metrics {
                token_accuracy,
                valid_reward,
                ..
            } => Some((*token_accuracy, *valid_reward)),
            _ => None,
        })
        .unzip();
    assert!(accuracy.iter().all(Option::is_none));
    assert!(valid.last().unwrap().is_some(), "{valid:?}");
    let summary = reports
        .iter()
        .find_map(|r| match r {
            Report::Message { message, .. } if message.starts_with("reward of the greedy") => {
                Some(message.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no base → tuned reward in {reports:?}"));
    eprintln!("{summary}");
}
