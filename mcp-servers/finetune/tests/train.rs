//! The built-in trainer, for real, on a tiny model the test creates: the loss must drop by a
//! clear margin (not to a value: candle's CPU initialisation cannot be seeded).

use std::path::{Path, PathBuf};

use mcp_server_finetune::{
    job::{Hyperparameters, Method, Quantization, Setting},
    train::{self, Outcome, Report, StopFlag, TrainConfig, model},
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
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let train = write_sft(dir.path());
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
        candle_core::quantized::GgmlDType::F32,
        0,
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
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let train = write_sft(dir.path());
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
    let base = dir.path().join("tiny");
    model::create_tiny(&base).unwrap();
    let train = write_sft(dir.path());
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

    let mut scaled = config.clone();
    scaled["rope_scaling"] = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
    std::fs::write(&config_file, scaled.to_string()).unwrap();
    let error = model::load(&base).err().unwrap().to_string();
    assert!(error.contains("rope_scaling"), "{error}");
    std::fs::write(&config_file, &original).unwrap();

    let weights = base.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    tensors.insert(
        "model.layers.0.self_attn.q_proj.bias".to_owned(),
        candle_core::Tensor::zeros(64, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();
    let error = model::load(&base).err().unwrap().to_string();
    assert!(error.contains("bias"), "{error}");

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
