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
    #[error(
        "running `{command}` failed: {source}. Install Node.js and npm (any version from 18 on; Node 22 is fetched from the npm registry when needed)"
    )]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed with {status}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
    },
    #[error("Node.js 22 was installed into {dir} but does not run: {reason}")]
    BrokenNode { dir: String, reason: String },
}

/// `conformance/peers/node`: the pinned npm packages and our scripts that drive them.
pub fn node_peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/node")
}

/// The toolkit's cache directory (`$XDG_CACHE_HOME/mcp-toolkit` or `~/.cache/mcp-toolkit`).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("mcp-toolkit")
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

/// Installs the pinned npm peers (`npm ci`) unless they already match the lock file, and returns
/// their directory.
pub fn ensure_node_peers() -> Result<PathBuf, PeerError> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    let dir = node_peers_dir();
    if !*ready {
        let installed = std::fs::read(dir.join("node_modules/.package-lock.json")).ok();
        let wanted = std::fs::read(dir.join("package-lock.json")).ok();
        if !installed_matches(installed.as_deref(), wanted.as_deref()) {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir))?;
        }
        *ready = true;
    }
    Ok(dir)
}

// npm writes node_modules/.package-lock.json after an install; it lists the same packages at
// the same versions as package-lock.json when the install is current.
fn installed_matches(installed: Option<&[u8]>, wanted: Option<&[u8]>) -> bool {
    let parse = |bytes: Option<&[u8]>| -> Option<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(bytes?).ok()
    };
    let (Some(installed), Some(wanted)) = (parse(installed), parse(wanted)) else {
        return false;
    };
    let versions = |lock: &serde_json::Value| -> Option<Vec<(String, String)>> {
        let packages = lock.get("packages")?.as_object()?;
        let mut list: Vec<(String, String)> = packages
            .iter()
            .filter(|(path, _)| !path.is_empty())
            .map(|(path, entry)| {
                let version = entry
                    .get("version")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                (path.clone(), version.to_owned())
            })
            .collect();
        list.sort();
        Some(list)
    };
    versions(&installed).is_some() && versions(&installed) == versions(&wanted)
}

/// The path of an npm package's executable inside the peers directory.
pub fn node_bin(name: &str) -> PathBuf {
    node_peers_dir().join("node_modules/.bin").join(name)
}
