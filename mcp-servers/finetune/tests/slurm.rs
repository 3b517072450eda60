//! The Slurm backend on a real single-node cluster (Debian's slurm-wlm and munge): a LoRA job
//! through sbatch to its GGUF file, and a cancel at a checkpoint resumed through Slurm again.
//! Uses the cluster SLURM_CONF names, or starts one with `slurm-cluster.sh` (needs the packages;
//! `.ci/run` installs them).

use std::path::{Path, PathBuf};

use crate::support::*;
use serde_json::json;

/// A cluster for the test: the one SLURM_CONF names, or one started (and stopped on drop) here.
struct Cluster {
    conf: PathBuf,
    started: Option<(PathBuf, tempfile::TempDir)>,
}

impl Cluster {
    fn get() -> Self {
        if let Some(conf) = std::env::var_os("SLURM_CONF").map(PathBuf::from)
            && conf.is_file()
        {
            return Self {
                conf,
                started: None,
            };
        }
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slurm-cluster.sh");
        let out = std::process::Command::new(&script)
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "could not start a Slurm cluster (apt-get install slurm-wlm munge, or set SLURM_CONF): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        Self {
            conf,
            started: Some((script, dir)),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some((script, dir)) = &self.started {
            let _ = std::process::Command::new(script)
                .arg("stop")
                .arg(dir.path())
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Slurm; .ci/run runs it"]
async fn lora_sft_on_slurm_with_cancel_and_resume() {
    let cluster = Cluster::get();
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = fixtures(dir.path());
    let server = start_with(&dir.path().join("data"), &[("SLURM_CONF", &cluster.conf)]).await;
    let client = &server.client;

    let backends = data(&call(client, "list_backends", json!({})).await);
    let slurm = backends["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "slurm")
        .unwrap();
    assert_eq!(slurm["available"], true, "{backends}");

    let hp = json!({"n_epochs": 10, "batch_size": 4, "learning_rate": 0.01, "lora_rank": 8, "checkpoint_every": 10});
    let created = data(
        &call(
            client,
            "create_job",
            json!({"method": "sft", "model": model, "training_file": train,
            "hyperparameters": hp, "backend": "slurm", "quantize": "q4_0", "wait_seconds": 300}),
        )
        .await,
    );
    let job = &created["job"];
    assert_eq!(job["status"], "succeeded", "{created}");
    let backend_ref = job["backend_ref"].as_str().unwrap();
    assert!(backend_ref.starts_with("slurm:"), "{job}");
    let kinds: Vec<&str> = job["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["lora_adapter", "model", "gguf"]);
    assert!(
        std::fs::read(job["artifacts"][2]["path"].as_str().unwrap())
            .unwrap()
            .starts_with(b"GGUF")
    );
    // Slurm really ran it: the batch script is there and scontrol knows the job as completed.
    let dir_of_job = PathBuf::from(job["dir"].as_str().unwrap());
    assert!(
        std::fs::read_to_string(dir_of_job.join("job.sbatch"))
            .unwrap()
            .contains("exec ")
    );
    let out = std::process::Command::new("scontrol")
        .args([
            "show",
            "job",
            backend_ref.trim_start_matches("slurm:"),
            "-o",
        ])
        .env("SLURM_CONF", &cluster.conf)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("JobState=COMPLETED"));
    let steps = all_metric_steps(client, job["id"].as_str().unwrap()).await;
    assert_eq!(steps, (1..=30).collect::<Vec<_>>());

    // Cancel mid-run (a checkpoint, then the batch step ends), resume through Slurm.
    cancel_midway_and_resume(client, &model, &train, "slurm").await;
    server.client.cancel().await.unwrap();
}
