//! Opt-in: a job run by Hugging Face TRL (`trl sft`) through the server. Needs `trl` on PATH
//! (pip install trl peft, with torch), which `.ci/run` does not install:
//! `cargo test -p mcp-server-finetune -- --ignored external::`.

use crate::support::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Hugging Face TRL on PATH (pip install trl peft torch); not run by .ci/run"]
async fn a_lora_job_run_by_trl() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let server = start(&dir.path().join("data")).await;
    let hp = json!({"n_epochs": 3, "batch_size": 4, "learning_rate": 0.01, "lora_rank": 8});
    let created = data(
        &call(
            &server.client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train,
            "hyperparameters": hp, "trainer": "trl", "wait_seconds": 900}),
        )
        .await,
    );
    let job = &created["job"];
    assert_eq!(job["status"], "succeeded", "{created}");
    assert!(
        created["command"]
            .as_str()
            .unwrap()
            .starts_with("trl sft --config")
    );
    let output = job["artifacts"][0]["path"].as_str().unwrap();
    assert_eq!(job["artifacts"][0]["kind"], "trl_output");
    // TRL loaded our model with transformers and wrote a PEFT adapter for it.
    assert!(
        std::path::Path::new(output)
            .join("adapter_model.safetensors")
            .is_file()
    );
    let messages = event_messages(&server.client, job["id"].as_str().unwrap()).await;
    assert!(
        messages.iter().any(|m| m.contains("Training completed")),
        "{messages:?}"
    );
    server.client.cancel().await.unwrap();
}
