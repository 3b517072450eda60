//! The peers nobody here wrote, pinned in one place (`conformance/peers/node/package.json` and its
//! lock file) and installed on first use, so `cargo test` works on a fresh machine that has npm.
//!
//! The official conformance suite needs Node.js 22; when the `node` on `PATH` is older, Node 22
//! is installed from the npm registry (package `node@22`) into the user's cache directory, where
//! `.ci/run` puts it too.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, OnceLock},
};

/// Why a peer could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A command could not be started.
    #[error(
        "running `{command}` failed: {source}. Install Node.js and npm (any version from 18 on; Node 22 is fetched from the npm registry when needed)"
    )]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed with {status}")]
    Failed {
        /// The command.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
    /// The Node.js 22 installed does not run.
    #[error("Node.js 22 was installed into {dir} but does not run: {reason}")]
    BrokenNode {
        /// Where it was installed.
        dir: String,
        /// Why.
        reason: String,
    },
}

/// `conformance/peers/node`: the pinned npm packages and our scripts that drive them.
pub fn node_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/node")
}

/// The toolkit's cache directory (`$XDG_CACHE_HOME/mcp-toolkit` or `~/.cache/mcp-toolkit`).
pub fn cache_dir() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Cache)
}

fn run(command: &mut Command) -> Result<String, PeerError> {
    let shown = format!("{command:?}");
    let output = command.output().map_err(|source| PeerError::Spawn {
        command: shown.clone(),
        source,
    })?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return Err(PeerError::Failed {
            command: shown,
            status: output.status,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn major_version(node: &Path) -> Option<u32> {
    let version = run(Command::new(node).arg("--version")).ok()?;
    version.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// A Node.js of version 22 or newer: the one on `PATH` if it is, else one installed from the npm
/// registry into the cache directory.
pub fn node22() -> Result<PathBuf, PeerError> {
    static NODE: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut found = NODE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(node) = found.as_ref() {
        return Ok(node.clone());
    }
    let on_path = PathBuf::from("node");
    let node = if major_version(&on_path).is_some_and(|major| major >= 22) {
        on_path
    } else {
        let dir = cache_dir().join("node22");
        let cached = dir.join("node_modules/.bin/node");
        if major_version(&cached) != Some(22) {
            run(Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&dir)
                .arg("node@22"))?;
        }
        match major_version(&cached) {
            Some(22) => cached,
            other => {
                return Err(PeerError::BrokenNode {
                    dir: dir.display().to_string(),
                    reason: format!("it reports major version {other:?}"),
                });
            }
        }
    };
    *found = Some(node.clone());
    Ok(node)
}

/// Installs the pinned npm peers (the versions in `package-lock.json`, with Node 22's `npm`
/// environment) unless the very same lock file was installed before, and returns their directory.
///
/// `npm install --no-save` rather than `npm ci`: the Inspector pulls in vite, whose lock entry
/// names an optional package the registry does not have, and `npm ci` takes that as a lock file
/// out of sync. `npm install` keeps to the lock file all the same and writes nothing back.
pub fn ensure_node_peers() -> Result<PathBuf, PeerError> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = node_peers_dir();
    if !*ready {
        // npm leaves out other platforms' optional packages, so what is installed never lists
        // everything the lock file does; a copy of the lock file installed last says it all.
        let stamp = dir.join("node_modules/.installed-package-lock.json");
        let wanted = std::fs::read(dir.join("package-lock.json")).ok();
        if wanted.is_none() || std::fs::read(&stamp).ok() != wanted {
            run(Command::new("npm")
                .args([
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                ])
                .env("PATH", path_with_node22()?)
                .current_dir(&dir))?;
            if let Some(wanted) = wanted {
                std::fs::write(&stamp, wanted).map_err(|source| PeerError::Spawn {
                    command: format!("writing {}", stamp.display()),
                    source,
                })?;
            }
        }
        *ready = true;
    }
    Ok(dir)
}

/// `PATH` with Node 22's directory first, so npm and package scripts run on it.
fn path_with_node22() -> Result<std::ffi::OsString, PeerError> {
    let node = node22()?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(parent) = node.parent().filter(|p| !p.as_os_str().is_empty()) {
        dirs.push(parent.to_path_buf());
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).map_err(|error| PeerError::Spawn {
        command: "building PATH".to_owned(),
        source: std::io::Error::other(error),
    })
}

/// `conformance/peers/python`: the pinned Python SDK and our scripts that drive it.
pub fn python_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/python")
}

/// A Python with the pinned peers installed: a virtual environment in the cache directory,
/// rebuilt when `requirements.txt` changes.
pub fn python_peer() -> Result<PathBuf, PeerError> {
    python_venv("python-peers", "requirements.txt")
}

/// A Python with the reference servers our benchmarks measure against
/// (`bench-requirements.txt`: they need the 1.x Python SDK, so they live apart).
pub fn python_bench_peer() -> Result<PathBuf, PeerError> {
    python_venv("python-bench-peers", "bench-requirements.txt")
}

/// The virtual environment `name` in the cache directory with `requirements` (a file in
/// [`python_peers_dir`]) installed; rebuilt when that file changes.
fn python_venv(name: &str, requirements: &str) -> Result<PathBuf, PeerError> {
    static READY: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, python)) = ready.iter().find(|(n, _)| n == name) {
        return Ok(python.clone());
    }
    let requirements = python_peers_dir().join(requirements);
    let wanted = std::fs::read_to_string(&requirements).unwrap_or_default();
    let venv = cache_dir().join(name);
    let python = venv.join("bin/python");
    let marker = venv.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) || !python.exists()
    {
        let _ = std::fs::remove_dir_all(&venv);
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements))?;
        std::fs::write(&marker, &wanted).map_err(|source| PeerError::Spawn {
            command: format!("writing {}", marker.display()),
            source,
        })?;
    }
    ready.push((name.to_owned(), python.clone()));
    Ok(python)
}

/// The path of an npm package's executable inside the peers directory.
pub fn node_bin(name: &str) -> PathBuf {
    node_peers_dir().join("node_modules/.bin").join(name)
}

/// `peers/node/oidc.mjs`, a real OpenID provider (oidc-provider, certified), running on a free
/// loopback port: client-credentials tokens for our resource servers' tests, and the
/// authorization-code flow with a person who approves for our client's. Killed when dropped.
pub struct OidcProvider {
    /// The process.
    pub child: tokio::process::Child,
    /// Its issuer URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl OidcProvider {
    /// Starts it; its access tokens live `token_ttl` seconds (300 if `None`).
    pub async fn start(token_ttl: Option<u64>) -> Result<Self, PeerError> {
        use tokio::io::AsyncBufReadExt as _;
        let node = tokio::task::spawn_blocking(|| {
            ensure_node_peers()?;
            node22()
        })
        .await
        .map_err(|e| PeerError::BrokenNode {
            dir: String::new(),
            reason: e.to_string(),
        })??;
        let mut command = tokio::process::Command::new(&node);
        command
            .arg(node_peers_dir().join("oidc.mjs"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(ttl) = token_ttl {
            command.env("OIDC_TOKEN_TTL", ttl.to_string());
        }
        let spawn_error = |source| PeerError::Spawn {
            command: format!("{} oidc.mjs", node.display()),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| spawn_error(std::io::Error::other("no stdout")))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("listening ") {
                    return Some(url.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| spawn_error(std::io::Error::other("oidc.mjs did not listen within 30 s")))?;
        // Keep reading: a write to a closed pipe would end the provider.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self { child, url })
    }
}
