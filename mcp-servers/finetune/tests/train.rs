//! The built-in trainer, for real, on a tiny model the test creates: the loss must drop by a
//! clear margin (not to a value: candle's CPU initialisation cannot be seeded).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mcp_server_finetune::{
    job::{Hyperparameters, Method, Quantization, Setting},
    train::{self, Report, StopFlag, TrainConfig, model},
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
    let mut config = config(dir.path(), &base, Method::Sft, train, hp);
    config.quantize = Some(Quantization::Q8_0);
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
    assert!(matches!(reports.last(), Some(Report::Finished { status }) if status == "succeeded"));

    // The merged model and the GGUF file load again and agree with each other (the GGUF's
    // query/key rows permuted for llama.cpp and back; Q8_0 costs a little precision).
    let merged = model::Model::new(
        model::load(&config.output_dir.join("model")).unwrap(),
        model::Tuning::Frozen,
    )
    .unwrap();
    let gguf = model::Model::new(
        model::load(&config.output_dir.join("model-q8_0.gguf")).unwrap(),
        model::Tuning::Frozen,
    )
    .unwrap();
    let ids = [60u32, 61, 62, 63, 64, 65, 66, 67];
    let a: Vec<Vec<f32>> = merged.forward(&ids, false).unwrap().to_vec2().unwrap();
    let b: Vec<Vec<f32>> = gguf.forward(&ids, false).unwrap().to_vec2().unwrap();
    let mut worst = 0f32;
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        worst = worst.max((x - y).abs());
    }
    let scale = a.iter().flatten().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        worst < 0.05 * scale.max(1.0),
        "worst {worst}, scale {scale}"
    );
    // On average the difference is quantization noise, a small fraction of the logits' size (a
    // wrong permutation or a misnamed tensor gives differences as large as the logits).
    let n = a.iter().flatten().count() as f32;
    let mean_diff = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .sum::<f32>()
        / n;
    let mean_size = a.iter().flatten().map(|x| x.abs()).sum::<f32>() / n;
    assert!(
        mean_diff < 0.02 * mean_size,
        "mean diff {mean_diff}, mean size {mean_size}"
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
    assert!(matches!(first.last(), Some(Report::Finished { status }) if status == "cancelled"));
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
