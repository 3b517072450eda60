//! The Ray backend on a real single-node Ray cluster (`pip install "ray[default]"`, `ray start
//! --head`; `.ci/run` does both): a LoRA job submitted through the Jobs REST API to its GGUF
//! file, and a cancel at a checkpoint resumed as a new Ray job. `MCP_FINETUNE_RAY_ADDRESS`
//! names the cluster's dashboard.

use std::path::Path;

use crate::support::*;

/// The dashboard the test uses; asked to run without one, the test fails.
fn address() -> String {
    std::env::var("MCP_FINETUNE_RAY_ADDRESS")
        .expect("MCP_FINETUNE_RAY_ADDRESS: a Ray dashboard (ray start --head; .ci/run starts one)")
}

/// What Ray itself says of a job (`GET /api/jobs/{id}`).
async fn ray_job(address: &str, backend_ref: &str) -> serde_json::Value {
    let id = backend_ref.strip_prefix("ray:").unwrap();
    let text = reqwest::get(format!("{address}/api/jobs/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Ray cluster; .ci/run starts one"]
async fn lora_sft_on_ray_with_cancel_and_resume() {
    let address = address();
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let server = start_with(
        &dir.path().join("data"),
        &[("MCP_FINETUNE_RAY_ADDRESS", Path::new(&address))],
    )
    .await;
    let client = &server.client;

    let ray = available_backend(client, "ray").await;
    assert!(
        ray["detail"].as_str().unwrap().starts_with("Ray 2."),
        "{ray}"
    );
    let job = lora_job_on(client, &model, &train, "ray", "q8_0").await;
    let backend_ref = job["backend_ref"].as_str().unwrap();
    // Ray really ran it: its Jobs API knows the job as succeeded, with our job in its metadata.
    let ray_side = ray_job(&address, backend_ref).await;
    assert_eq!(ray_side["status"], "SUCCEEDED", "{ray_side}");
    assert_eq!(
        ray_side["metadata"]["mcp_finetune_job"], job["id"],
        "{ray_side}"
    );

    // Cancel mid-run (a checkpoint, then the driver ends), resume as a new Ray job.
    let (_, resumed) = cancel_midway_and_resume(client, &model, &train, "ray").await;
    assert_eq!(ray_job(&address, &resumed).await["status"], "SUCCEEDED");
    server.client.cancel().await.unwrap();
}
