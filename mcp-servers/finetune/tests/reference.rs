//! Each architecture's forward pass against Hugging Face transformers' on the same weights:
//! `tests/reference/logits.py` (run by `.ci/run` with torch and transformers from PyPI) writes a
//! tiny model per architecture and its logits into `MCP_FINETUNE_REFERENCE`; ours must agree to
//! float precision. The versions that made them are in each `logits.json`. And our GGUF files,
//! K-quants included, read back by llama.cpp's own reader (the `gguf` package from PyPI).

use std::path::PathBuf;

use mcp_server_finetune::{
    job::Quantization,
    train::{export, model, tokenize::ChatTokenizer},
};

fn reference() -> PathBuf {
    let dir = std::env::var_os("MCP_FINETUNE_REFERENCE")
        .map(PathBuf::from)
        .expect("MCP_FINETUNE_REFERENCE: the directory tests/reference/logits.py wrote (.ci/run makes it)");
    assert!(
        dir.join("llama3/logits.json").is_file(),
        "{} has no reference models",
        dir.display()
    );
    dir
}

#[test]
#[ignore = "needs reference logits from transformers (tests/reference/logits.py); .ci/run makes them"]
fn every_architecture_gives_the_logits_transformers_gives() {
    let dir = reference();
    for arch in ["llama3", "qwen2", "qwen3", "qwen3_moe"] {
        let path = dir.join(arch);
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("logits.json")).unwrap())
                .unwrap();
        let ids: Vec<u32> = expected["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        let weights = model::load(&path).unwrap_or_else(|e| panic!("{arch}: {e}"));
        let model = model::Model::new(weights, model::Tuning::Frozen).unwrap();
        let (logits, balance) = model
            .forward_with_balance(&ids, &[ids.len()], false)
            .unwrap();
        let ours: Vec<Vec<f32>> = logits.to_vec2().unwrap();
        // A mixture of experts' load-balancing loss, before its coefficient weighs it.
        match (expected["aux_loss"].as_f64(), balance) {
            (Some(theirs), Some(balance)) => {
                let coefficient = model.config.moe().aux_coefficient;
                let ours = f64::from(balance.to_scalar::<f32>().unwrap()) / coefficient;
                eprintln!("{arch}: load-balancing loss {ours} (transformers {theirs})");
                assert!(
                    (ours - theirs).abs() < 1e-5 * theirs.abs().max(1.0),
                    "{arch}: {ours} vs {theirs}"
                );
            }
            (None, None) => {}
            (theirs, ours) => panic!("{arch}: aux loss {theirs:?} vs {ours:?}"),
        }
        let theirs = expected["logits"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{arch}");
        let mut worst = 0f64;
        let mut largest = 0f64;
        for (row, reference) in ours.iter().zip(theirs) {
            for (ours, theirs) in row.iter().zip(reference.as_array().unwrap()) {
                let theirs = theirs.as_f64().unwrap();
                worst = worst.max((f64::from(*ours) - theirs).abs());
                largest = largest.max(theirs.abs());
            }
        }
        eprintln!(
            "{arch}: largest logit {largest:.3}, worst difference {worst:.2e} (torch {}, transformers {})",
            expected["torch"], expected["transformers"]
        );
        assert!(
            worst < 1e-4 * largest.max(1.0),
            "{arch}: {worst} of {largest}"
        );
    }
}

#[test]
#[ignore = "needs the gguf package (tests/reference/requirements.txt); .ci/run installs it"]
fn k_quant_files_read_back_in_llama_cpps_reader() {
    let python = std::env::var_os("MCP_FINETUNE_REFERENCE_PYTHON")
        .map(PathBuf::from)
        .expect("MCP_FINETUNE_REFERENCE_PYTHON: a Python with the gguf package (.ci/run sets it)");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("tiny");
    // 256 wide, so that the rows fill K-quant super-blocks.
    model::create_tiny_sized(&base, model::Arch::Llama, 256, 512).unwrap();
    let model = model::Model::new(model::load(&base).unwrap(), model::Tuning::Frozen).unwrap();
    let tokenizer = ChatTokenizer::for_model(&base, None).unwrap();
    let reference = dir.path().join("f32.gguf");
    let mix = export::Mix::All(candle_core::quantized::GgmlDType::F32);
    export::write(&model, &tokenizer, mix, &reference).unwrap();
    let kinds = [Quantization::Q4KM, Quantization::Q5KM, Quantization::Q6K];
    let files: Vec<PathBuf> = kinds
        .iter()
        .map(|q| {
            let file = dir.path().join(format!("{}.gguf", q.as_str()));
            export::gguf(&model, &tokenizer, *q, &file).unwrap();
            file
        })
        .collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/read_gguf.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(&reference)
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    eprintln!("gguf {}", read["gguf"]);
    // (file type, the main type, the six-bit layers' type, the largest relative error allowed
    // for the main type: Q4_K's ~7% on Gaussian weights, Q5_K's ~4%, Q6_K's ~2%).
    let expected = [(15, "Q4_K", 0.09), (17, "Q5_K", 0.045), (18, "Q6_K", 0.025)];
    for (file, (file_type, main, bound)) in files.iter().zip(expected) {
        let report = &read["files"][file.to_str().unwrap()];
        assert_eq!(report["file_type"], file_type, "{}", file.display());
        let tensors = report["tensors"].as_object().unwrap();
        assert_eq!(tensors.len(), 2 + 9 * 2, "{}", file.display());
        for (name, tensor) in tensors {
            let kind = tensor["type"].as_str().unwrap();
            let error = tensor["error"].as_f64().unwrap();
            let want = if name.ends_with("norm.weight") {
                "F32"
            } else if name == "token_embd.weight"
                || name.starts_with("blk.1.") && name.ends_with("attn_v.weight")
                || name.starts_with("blk.1.") && name.ends_with("ffn_down.weight")
            {
                "Q6_K"
            } else {
                main
            };
            assert_eq!(kind, want, "{}: {name}", file.display());
            let bound = match kind {
                "F32" => 0.0,
                "Q6_K" => 0.025,
                _ => bound,
            };
            assert!(
                error <= bound,
                "{}: {name} ({kind}) read back {error} away",
                file.display()
            );
        }
    }
}
