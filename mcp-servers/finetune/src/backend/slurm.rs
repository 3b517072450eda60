//! Slurm: an sbatch script per job (`sbatch --parsable`), followed through `squeue`, then
//! `scontrol show job` and `sacct` once it has left the queue; `scancel` for a job still
//! waiting, the STOP file (the job directory is on a shared filesystem) for one running. The
//! trainer's stdout and stderr go to the job directory, as with the local backend.

use std::path::Path;

use futures::future::BoxFuture;
use tokio::process::Command;

use super::{Backend, BackendError, BackendInfo, LOG_FILE, OUTPUT_FILE, RunState, Submission};

/// `#SBATCH` options from the server's command line.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--time`, e.g. `2:00:00`.
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<usize>,
    /// `--mem`, e.g. `8G`.
    pub mem: Option<String>,
    /// Jobs handed to Slurm at once (Slurm queues them itself).
    pub capacity: usize,
}

/// Runs jobs through Slurm (`sbatch`, `squeue`, `sacct`, `scancel`).
pub struct Slurm {
    options: SlurmOptions,
    /// Whether `sinfo` answered when the server started, or why not.
    status: Result<String, String>,
}

impl Slurm {
    /// Asks the cluster whether it is there (`sinfo`).
    pub async fn detect(options: SlurmOptions) -> Self {
        let status = match Command::new("sinfo")
            .args(["-h", "-o", "%P %a %D %T"])
            .output()
            .await
        {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                let partitions: Vec<String> = text
                    .lines()
                    .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
                    .collect();
                Ok(format!("Slurm partitions: {}", partitions.join("; ")))
            }
            Ok(out) => Err(format!(
                "sinfo failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(error) => Err(format!(
                "no Slurm here (sinfo: {error}); install the Slurm client and point SLURM_CONF at the cluster's slurm.conf"
            )),
        };
        Self { options, status }
    }
}

fn job_id(backend_ref: &str) -> Result<&str, BackendError> {
    backend_ref
        .strip_prefix("slurm:")
        .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_'))
        .ok_or_else(|| BackendError(format!("not a Slurm job: {backend_ref:?}")))
}

async fn cli(program: &str, args: &[&str]) -> Result<String, BackendError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|error| BackendError(format!("{program}: {error}")))?;
    if !out.status.success() {
        return Err(BackendError(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A word for the script, single-quoted for bash.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// What a Slurm state says about the run.
fn parse_state(state: &str, exit_code: &str) -> Option<RunState> {
    let state = state
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches('+');
    Some(match state {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "RESV_DEL_HOLD" | "REQUEUE_HOLD" | "SUSPENDED" => {
            RunState::Pending
        }
        "RUNNING" | "COMPLETING" | "STAGE_OUT" | "SIGNALING" => RunState::Running,
        "COMPLETED" => RunState::Exited {
            success: Some(true),
            detail: format!("Slurm job completed (exit code {exit_code})"),
        },
        "" => return None,
        other => RunState::Exited {
            success: Some(false),
            detail: format!("Slurm job {} (exit code {exit_code})", other.to_lowercase()),
        },
    })
}

impl Backend for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn info(&self) -> BackendInfo {
        BackendInfo::detected("slurm", &self.status, self.options.capacity)
    }

    fn submit<'a>(&'a self, run: Submission<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let dir = run.dir.display().to_string();
            let mut script = vec![
                "#!/bin/bash".to_owned(),
                format!("#SBATCH --job-name={}", run.job_id),
                format!("#SBATCH --chdir={dir}"),
                format!("#SBATCH --output={dir}/{OUTPUT_FILE}"),
                format!("#SBATCH --error={dir}/{LOG_FILE}"),
                // A resumed job appends to what its earlier runs wrote.
                "#SBATCH --open-mode=append".to_owned(),
                "#SBATCH --nodes=1".to_owned(),
                "#SBATCH --ntasks=1".to_owned(),
            ];
            let o = &self.options;
            for (flag, value) in [
                ("partition", o.partition.clone()),
                ("account", o.account.clone()),
                ("time", o.time.clone()),
                ("cpus-per-task", o.cpus_per_task.map(|n| n.to_string())),
                ("mem", o.mem.clone()),
            ] {
                if let Some(value) = value {
                    if value.contains(char::is_whitespace) {
                        return Err(BackendError(format!("--slurm-{flag} {value:?}: no spaces")));
                    }
                    script.push(format!("#SBATCH --{flag}={value}"));
                }
            }
            for (key, value) in &run.env {
                script.push(format!("export {key}={}", quote(value)));
            }
            // `exec`: the trainer is the batch step itself, so Slurm's signals reach it.
            let mut command = vec![quote(&run.program.to_string_lossy())];
            command.extend(run.args.iter().map(|a| quote(&a.to_string_lossy())));
            script.push(format!("exec {}", command.join(" ")));
            let path = run.dir.join("job.sbatch");
            std::fs::write(&path, script.join("\n") + "\n")
                .map_err(|error| BackendError(format!("{}: {error}", path.display())))?;
            super::clear_stop(run.dir);
            let out = cli("sbatch", &["--parsable", &path.display().to_string()]).await?;
            // `--parsable` prints `id` or `id;cluster`.
            let id = out.trim().split(';').next().unwrap_or("").to_owned();
            job_id(&format!("slurm:{id}"))?;
            Ok(format!("slurm:{id}"))
        })
    }

    fn state<'a>(
        &'a self,
        backend_ref: &'a str,
        _dir: &'a Path,
    ) -> BoxFuture<'a, Result<RunState, BackendError>> {
        Box::pin(async move {
            let id = job_id(backend_ref)?;
            if let Ok(out) = cli("squeue", &["-h", "-j", id, "-o", "%T"]).await
                && let Some(state) = parse_state(out.trim(), "")
            {
                return Ok(state);
            }
            if let Ok(out) = cli("scontrol", &["show", "job", id, "-o"]).await {
                let field = |name: &str| {
                    out.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(name))
                        .unwrap_or("")
                        .to_owned()
                };
                if let Some(state) = parse_state(&field("JobState="), &field("ExitCode=")) {
                    return Ok(state);
                }
            }
            if let Ok(out) = cli(
                "sacct",
                &["-n", "-X", "-P", "-j", id, "-o", "State,ExitCode"],
            )
            .await
                && let Some((state, code)) = out.lines().next().and_then(|l| l.split_once('|'))
                && let Some(state) = parse_state(state, code)
            {
                return Ok(state);
            }
            Ok(RunState::Exited {
                success: None,
                detail: format!("Slurm no longer knows job {id}"),
            })
        })
    }

    fn cancel<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move {
            let id = job_id(backend_ref)?;
            super::request_stop(dir)?;
            // Still waiting for a node: it never started, so there is nothing to checkpoint.
            if let Ok(out) = cli("squeue", &["-h", "-j", id, "-o", "%T"]).await
                && parse_state(out.trim(), "") == Some(RunState::Pending)
            {
                cli("scancel", &[id]).await?;
            }
            Ok(())
        })
    }
}
