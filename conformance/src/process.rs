//! A server binary run as a child process the way a host runs it, for end-to-end tests.

use std::{
    path::Path,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// Why a server process could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("could not start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// It exited before saying where it listens.
    #[error("{program} exited before it logged the address it listens on")]
    NoAddress {
        /// The program.
        program: String,
    },
    /// It did not say where it listens in time.
    #[error("{program} did not log a listening address within {seconds} s")]
    Timeout {
        /// The program.
        program: String,
        /// How long it was given.
        seconds: u64,
    },
    /// It did not start listening in time.
    #[error("{program} did not start listening within {seconds} s")]
    NotListening {
        /// The program.
        program: String,
        /// How long it was given.
        seconds: u64,
    },
    /// It did not exit after a signal.
    #[error("{program} did not exit within {seconds} s of {signal}")]
    NoExit {
        /// The program.
        program: String,
        /// The signal sent.
        signal: &'static str,
        /// How long it was given.
        seconds: u64,
    },
    /// Waiting for it failed.
    #[error("waiting for {program} failed: {source}")]
    Wait {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A server of ours serving HTTP (Streamable HTTP and legacy SSE) on a free loopback port.
/// Killed when dropped; [`HttpProcess::terminate`] stops it the polite way.
pub struct HttpProcess {
    child: Child,
    base: String,
    program: String,
}

impl HttpProcess {
    /// Runs `program [extra…] --transport http,sse --listen 127.0.0.1:0` and waits for the
    /// address it logs (`mcp_core::serve` logs `listening: … at http://127.0.0.1:PORT/mcp`).
    pub async fn start(program: &Path, extra: &[&str]) -> Result<Self, ProcessError> {
        Self::start_with(program, "http,sse", extra).await
    }

    /// [`Self::start`] with the given `--transport` list (`http`, `sse` or `http,sse`).
    pub async fn start_with(
        program: &Path,
        transports: &str,
        extra: &[&str],
    ) -> Result<Self, ProcessError> {
        let name = program.display().to_string();
        // `extra` first: a server with subcommands takes the serve options after `serve`.
        let mut child = Command::new(program)
            .args(extra)
            .args([
                "--transport",
                transports,
                "--listen",
                "127.0.0.1:0",
                "--log-level",
                "info",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: name.clone(),
                source,
            })?;
        let Some(stderr) = child.stderr.take() else {
            return Err(ProcessError::NoAddress { program: name });
        };
        let mut lines = BufReader::new(stderr).lines();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening")
                    && let Some(at) = line.find("http://")
                {
                    let url = line[at..].split([' ', ',']).next().unwrap_or_default();
                    return Some(
                        url.trim_end_matches("/mcp")
                            .trim_end_matches("/sse")
                            .to_owned(),
                    );
                }
            }
            None
        })
        .await
        .map_err(|_| ProcessError::Timeout {
            program: name.clone(),
            seconds: 30,
        })?;
        let base = found.ok_or_else(|| ProcessError::NoAddress {
            program: name.clone(),
        })?;
        // Keep draining stderr so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            base,
            program: name,
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits (10 s at most) for the exit status.
    pub async fn terminate(mut self) -> Result<ExitStatus, ProcessError> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .map_err(|_| ProcessError::NoExit {
                program: self.program.clone(),
                signal: "SIGTERM",
                seconds: 10,
            })?
            .map_err(|source| ProcessError::Wait {
                program: self.program.clone(),
                source,
            })
    }

    /// The child's process id.
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The official Python SDK's server (`peers/python/server.py`) serving `http` (Streamable HTTP
/// at `/mcp`) or `sse` (legacy SSE at `/sse`) on a free loopback port; killed when dropped.
pub struct PythonServer {
    _child: Child,
    port: u16,
}

impl PythonServer {
    /// Starts the Python SDK's server on `kind` (`http` or `sse`) and waits until it listens.
    pub async fn start(kind: &str) -> Result<Self, ProcessError> {
        let python = tokio::task::spawn_blocking(crate::peers::python_peer)
            .await
            .map_err(|e| ProcessError::Spawn {
                program: "python".into(),
                source: std::io::Error::other(e),
            })?
            .map_err(|e| ProcessError::Spawn {
                program: "python".into(),
                source: std::io::Error::other(e),
            })?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|probe| probe.local_addr())
            .map(|address| address.port())
            .map_err(|source| ProcessError::Spawn {
                program: "a port probe".into(),
                source,
            })?;
        let program = format!("the Python SDK {kind} server");
        let child = Command::new(&python)
            .arg(crate::peers::python_peers_dir().join("server.py"))
            .args([kind, &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: program.clone(),
                source,
            })?;
        tokio::time::timeout(Duration::from_secs(30), async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .map_err(|_| ProcessError::NotListening {
            program,
            seconds: 30,
        })?;
        Ok(Self {
            _child: child,
            port,
        })
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}
