//! Each architecture's forward pass against Hugging Face transformers' on the same weights:
//! `tests/reference/logits.py` (run by `.ci/run` with torch and transformers from PyPI) writes a
//! tiny model per architecture and its logits into `MCP_FINETUNE_REFERENCE`; ours must agree to
//! float precision. The versions that made them are in each `logits.json`.

use std::path::PathBuf;

use mcp_server_finetune::train::model;

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
