//! This machine: the trainer as a child process in its own process group, its stdout and
//! stderr into files in the job directory. Files rather than pipes, so a trainer outlives a
//! server killed under it and a restarted server reads on where it stopped.

use std::{
    collections::HashMap,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Stdio},
    sync::Mutex,
};

use futures::future::BoxFuture;

use super::{Backend, BackendError, BackendInfo, LOG_FILE, OUTPUT_FILE, RunState, Submission};

/// Runs jobs as child processes of this machine, `capacity` at once.
pub struct Local {
    capacity: usize,
    /// Children this server started, reaped as they end; a process from before a restart is
    /// found through /proc instead.
    children: Mutex<HashMap<u32, Child>>,
}

impl Local {
    /// At most `capacity` (at least 1) jobs at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            children: Mutex::new(HashMap::new()),
        }
    }
}

fn pid_of(backend_ref: &str) -> Result<u32, BackendError> {
    backend_ref
        .strip_prefix("pid:")
        .and_then(|pid| pid.parse().ok())
        .ok_or_else(|| BackendError(format!("not a local run: {backend_ref:?}")))
}

/// Whether `pid` is alive and is this job's trainer (not a process that reused the number).
fn is_our_trainer(pid: u32, dir: &Path) -> bool {
    let proc = Path::new("/proc").join(pid.to_string());
    let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else {
        return false;
    };
    // A zombie has an empty command line and state Z.
    let zombie = std::fs::read_to_string(proc.join("stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true);
    let needle = dir.as_os_str().as_encoded_bytes();
    !zombie && cmdline.windows(needle.len()).any(|w| w == needle)
}

impl Backend for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "local".to_owned(),
            available: true,
            detail: format!(
                "this machine ({} cores); the trainer runs as a child process",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            ),
            capacity: self.capacity,
        }
    }

    fn submit<'a>(&'a self, run: Submission<'a>) -> BoxFuture<'a, Result<String, BackendError>> {
        Box::pin(async move {
            let open = |name: &str| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(run.dir.join(name))
                    .map_err(|error| {
                        BackendError(format!("{}: {error}", run.dir.join(name).display()))
                    })
            };
            super::clear_stop(run.dir);
            let child = std::process::Command::new(&run.program)
                .args(&run.args)
                .envs(run.env.iter().map(|(k, v)| (k, v)))
                .current_dir(run.dir)
                .stdin(Stdio::null())
                .stdout(open(OUTPUT_FILE)?)
                .stderr(open(LOG_FILE)?)
                // Its own group: a Ctrl-C meant for the server does not reach the trainer.
                .process_group(0)
                .spawn()
                .map_err(|error| {
                    BackendError(format!(
                        "cannot start {}: {error}",
                        run.program.to_string_lossy()
                    ))
                })?;
            let pid = child.id();
            self.children
                .lock()
                .map_err(|_| BackendError("poisoned".to_owned()))?
                .insert(pid, child);
            Ok(format!("pid:{pid}"))
        })
    }

    fn state<'a>(
        &'a self,
        backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<RunState, BackendError>> {
        Box::pin(async move {
            let pid = pid_of(backend_ref)?;
            let mut children = self
                .children
                .lock()
                .map_err(|_| BackendError("poisoned".to_owned()))?;
            if let Some(child) = children.get_mut(&pid) {
                return match child.try_wait() {
                    Ok(None) => Ok(RunState::Running),
                    Ok(Some(status)) => {
                        children.remove(&pid);
                        Ok(RunState::Exited {
                            success: Some(status.success()),
                            detail: format!("the trainer exited ({status})"),
                        })
                    }
                    Err(error) => Err(BackendError(format!("waiting for pid {pid}: {error}"))),
                };
            }
            drop(children);
            if is_our_trainer(pid, dir) {
                Ok(RunState::Running)
            } else {
                Ok(RunState::Exited {
                    success: None,
                    detail: format!("the trainer (pid {pid}) is gone"),
                })
            }
        })
    }

    fn cancel<'a>(
        &'a self,
        _backend_ref: &'a str,
        dir: &'a Path,
    ) -> BoxFuture<'a, Result<(), BackendError>> {
        Box::pin(async move { super::request_stop(dir) })
    }
}
