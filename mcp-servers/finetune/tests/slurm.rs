//! The Slurm backend on a real single-node cluster (Debian's slurm-wlm and munge): a LoRA job
//! through sbatch to its GGUF file, and a cancel at a checkpoint resumed through Slurm again.
//! Uses the cluster SLURM_CONF names, or starts one with `slurm-cluster.sh` (needs the packages;
//! `.ci/run` installs them).

use std::path::{Path, PathBuf};

use crate::support::*;

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

    available_backend(client, "slurm").await;
    let job = lora_job_on(client, &model, &train, "slurm", "q4_0").await;
    let backend_ref = job["backend_ref"].as_str().unwrap();
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

    // Cancel mid-run (a checkpoint, then the batch step ends), resume through Slurm.
    cancel_midway_and_resume(client, &model, &train, "slurm").await;
    server.client.cancel().await.unwrap();
}
