//! The MCP face of the filesystem: the official server's tools under their names and argument
//! shapes, plus `grep`, `read_lines`, `delete_file` and `copy_file`. The tools live in three
//! routers joined here: `read` (files and their metadata), `browse` (listings and searches) and
//! `write` (left out with `--read-only`).

mod browse;
mod read;
mod undo;
mod write;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use mcp_core::{OutputCap, Sessions, ToolError, per_session};
use rmcp::{
    RoleServer, ServerHandler,
    handler::server::router::tool::ToolRouter,
    model::*,
    schemars,
    service::{NotificationContext, Peer},
    tool_handler,
};
use serde::Deserialize;

use crate::{
    error::FsError,
    journal::Journal,
    ops,
    policy::{Hidden, Policy},
    sandbox::{Resolved, Sandbox},
};

/// How much one answer may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of text per answer; longer text is paged with a cursor.
    pub max_text_bytes: usize,
    /// Entries per listing; longer listings are paged.
    pub max_entries: usize,
    /// Largest file `read_media_file` encodes.
    pub max_media_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_text_bytes: 256 * 1024,
            max_entries: 2_000,
            max_media_bytes: 16 * 1024 * 1024,
        }
    }
}

/// The tools that change files, hidden by `--read-only` (the `write` router's).
pub const WRITE_TOOLS: [&str; 7] = [
    "write_file",
    "edit_file",
    "create_directory",
    "move_file",
    "delete_file",
    "copy_file",
    "undo",
];

/// How a server is set up beyond its directories.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// How much one answer may carry.
    pub limits: Limits,
    /// Offer only the tools that read.
    pub read_only: bool,
    /// Denied paths and read-only roots.
    pub policy: Policy,
    /// Where changes are journaled for `undo` (`None`: not journaled; undo says so).
    pub journal: Option<Journal>,
}

/// The filesystem server: one session's. Its roots begin as the configured directories and
/// follow what that session's client offers; [`FsServer::sessions`] makes one per session.
pub struct FsServer {
    configured: Arc<Sandbox>,
    // Swapped whole when the client's roots change; requests take a cheap `Arc` of it.
    sandbox: Arc<RwLock<Arc<Sandbox>>>,
    limits: Limits,
    read_only: bool,
    policy: Arc<Policy>,
    journal: Option<Arc<Journal>>,
    tool_router: ToolRouter<Self>,
}

/// [`Settings`] as sessions share them.
#[derive(Clone)]
struct Shared {
    limits: Limits,
    read_only: bool,
    policy: Arc<Policy>,
    journal: Option<Arc<Journal>>,
}

impl From<Settings> for Shared {
    fn from(settings: Settings) -> Self {
        Self {
            limits: settings.limits,
            read_only: settings.read_only,
            policy: Arc::new(settings.policy),
            journal: settings.journal.map(Arc::new),
        }
    }
}

/// Unless read-only, removes in a thread of its own the temporary files that writes killed
/// mid-way left in the allowed directories.
fn sweep(sandbox: &Sandbox, read_only: bool) {
    if read_only {
        return;
    }
    let roots: Vec<_> = sandbox.roots().to_vec();
    let sweep = move || {
        for root in roots {
            let removed = ops::sweep_stale_temps(&root.dir);
            if removed > 0 {
                tracing::info!(root = %root.path.display(), removed, "removed temporary files left by interrupted writes");
            }
        }
    };
    if let Err(error) = std::thread::Builder::new()
        .name("mcp-fs-sweep".into())
        .spawn(sweep)
    {
        tracing::warn!(%error, "could not start the sweep of interrupted writes");
    }
}

impl FsServer {
    /// One session's server for `sandbox`. Unless read-only, it first sweeps, in a thread of its
    /// own, the temporary files that writes killed mid-way left in the allowed directories.
    pub fn new(sandbox: Sandbox, limits: Limits, read_only: bool) -> Self {
        Self::with_settings(
            sandbox,
            Settings {
                limits,
                read_only,
                ..Settings::default()
            },
        )
    }

    /// [`FsServer::new`] with everything [`Settings`] holds (denied paths, read-only roots, the
    /// journal).
    pub fn with_settings(sandbox: Sandbox, settings: Settings) -> Self {
        sweep(&sandbox, settings.read_only);
        Self::with_sandbox(Arc::new(sandbox), Shared::from(settings))
    }

    /// What [`mcp_core::serve`] takes: a server per session, each starting from `sandbox` and
    /// following its own client's roots (one session's roots never narrow another's). The sweep
    /// of [`FsServer::new`] runs once, now.
    pub fn sessions(
        sandbox: Sandbox,
        limits: Limits,
        read_only: bool,
    ) -> impl Sessions<Handler = Self> {
        Self::sessions_with(
            sandbox,
            Settings {
                limits,
                read_only,
                ..Settings::default()
            },
        )
    }

    /// [`FsServer::sessions`] with everything [`Settings`] holds.
    pub fn sessions_with(sandbox: Sandbox, settings: Settings) -> impl Sessions<Handler = Self> {
        sweep(&sandbox, settings.read_only);
        let configured = Arc::new(sandbox);
        let shared = Shared::from(settings);
        per_session(move || Self::with_sandbox(configured.clone(), shared.clone()))
    }

    fn with_sandbox(configured: Arc<Sandbox>, shared: Shared) -> Self {
        let Shared {
            limits,
            read_only,
            policy,
            journal,
        } = shared;
        // The routers' maps joined, not `+`: rmcp checks every name of a router it merges again,
        // which it did when that router was built (a tenth of a cold start's instructions).
        let mut tool_router = Self::read_tools();
        tool_router.map.extend(Self::browse_tools().map);
        if !read_only {
            tool_router.map.extend(Self::write_tools().map);
        }
        Self {
            sandbox: Arc::new(RwLock::new(configured.clone())),
            configured,
            limits,
            read_only,
            policy,
            journal: journal.filter(|_| !read_only),
            tool_router,
        }
    }

    fn sandbox(&self) -> Arc<Sandbox> {
        self.sandbox
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Resolves a path to a root and a clean path beneath it. Whatever is then done with it goes
    /// through the root's `Dir`, which refuses, at the moment of use, anything that leads out.
    /// A denied path (`--deny`) is refused here.
    fn resolve(&self, path: &str) -> Result<Resolved, ToolError> {
        let sandbox = self.sandbox();
        let resolved = sandbox.resolve(path).map_err(FsError)?;
        if self.policy.denies() {
            let real = sandbox.real_path(&resolved).map_err(FsError)?;
            self.check_denied(path, &resolved, &real)?;
        }
        Ok(resolved)
    }

    /// [`Self::resolve`], then also checks up front that the real location (through its nearest
    /// existing ancestor) stays inside: for writes, which should fail before any work, and for
    /// walks over real paths (`grep`), which must not even start outside.
    fn resolve_checked(&self, path: &str) -> Result<Resolved, ToolError> {
        self.resolve_real(path).map(|(resolved, _)| resolved)
    }

    /// [`Self::resolve_checked`] for a path a tool changes (writes, creates, moves, removes):
    /// refused in a read-only root (`DIR:ro`), by where it really is.
    fn resolve_writable(&self, path: &str) -> Result<Resolved, ToolError> {
        let (resolved, real) = self.resolve_real(path)?;
        if self.policy.read_only(&real) {
            return Err(ToolError::new(format!(
                "{path} is in a read-only directory: this server may read it, not change it"
            ))
            .with_hint("write somewhere list_allowed_directories does not mark read-only"));
        }
        Ok(resolved)
    }

    fn resolve_real(&self, path: &str) -> Result<(Resolved, PathBuf), ToolError> {
        let sandbox = self.sandbox();
        let resolved = sandbox.resolve(path).map_err(FsError)?;
        let real = sandbox.real_path(&resolved).map_err(FsError)?;
        self.check_denied(path, &resolved, &real)?;
        Ok((resolved, real))
    }

    /// Refuses a denied path, as asked for or where it really is.
    fn check_denied(&self, asked: &str, resolved: &Resolved, real: &Path) -> Result<(), ToolError> {
        if !self.policy.denies() {
            return Ok(());
        }
        let lexical = lexical(resolved);
        let pattern = self
            .policy
            .denied(&lexical)
            .or_else(|| self.policy.denied(real));
        match pattern {
            Some(pattern) => Err(ToolError::new(format!(
                "{asked} is denied to this server (--deny {pattern})"
            ))
            .with_hint("leave it out: the user keeps it from every tool")),
            None => Ok(()),
        }
    }

    /// The denied entries of a walk or listing that starts at `resolved`.
    fn hidden(&self, resolved: &Resolved) -> Hidden {
        if self.policy.denies() {
            self.policy.for_walk(&lexical(resolved))
        } else {
            Hidden::nothing()
        }
    }

    fn cap(&self) -> OutputCap {
        OutputCap::new(self.limits.max_text_bytes)
    }

    /// Fetches the client's roots in a task of its own: the answer arrives through the same
    /// session loop that delivered the notification, so waiting for it inline would deadlock.
    fn follow_client_roots(&self, peer: Peer<RoleServer>) {
        let sandbox = self.sandbox.clone();
        let configured = self.configured.clone();
        tokio::spawn(async move { adopt_client_roots(&configured, &sandbox, &peer).await });
    }
}

/// Narrows the allowed directories to the client's roots, as far as they lie within the
/// configured ones ([`Sandbox::narrow`]): a client offering `file:///` gets the configured
/// directories, never more. Keeps the configured ones when nothing the client offers is within
/// them; with none configured, the client's roots are taken as the official server takes them.
// Roots are deprecated for 2026-07-28 (SEP-2577), but handshake-era hosts still offer them.
#[allow(deprecated)]
async fn adopt_client_roots(
    configured: &Arc<Sandbox>,
    sandbox: &RwLock<Arc<Sandbox>>,
    peer: &Peer<RoleServer>,
) {
    if peer
        .peer_info()
        .is_none_or(|info| info.capabilities.roots.is_none())
    {
        return;
    }
    let roots = match peer.list_roots().await {
        Ok(result) => result.roots,
        Err(error) => {
            tracing::warn!(%error, "could not list the client's roots; keeping the configured directories");
            return;
        }
    };
    let dirs: Vec<PathBuf> = roots
        .iter()
        .filter_map(|root| url::Url::parse(&root.uri).ok()?.to_file_path().ok())
        .collect();
    let narrowed = configured.narrow(&dirs);
    let now = if narrowed.is_empty() {
        tracing::info!(
            offered = dirs.len(),
            "none of the client's roots is a directory within the configured ones; keeping the configured directories"
        );
        configured.clone()
    } else {
        tracing::info!(roots = %narrowed.describe(), "allowed directories now follow the client's roots");
        Arc::new(narrowed)
    };
    *sandbox.write().unwrap_or_else(|p| p.into_inner()) = now;
}

/// The path as asked for: the root as the user named it, the clean path beneath it (`.` for
/// the root itself, which a glob would not match).
fn lexical(resolved: &Resolved) -> PathBuf {
    resolved
        .root
        .path
        .join(&resolved.rel)
        .components()
        .collect()
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PathArgs {
    path: String,
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FsServer {
    fn get_info(&self) -> ServerConfig {
        let mut mode = if self.read_only {
            " Read-only: no tool changes files.".to_owned()
        } else {
            String::new()
        };
        if self.policy.has_read_only() {
            mode.push_str(" Some directories are read-only (list_allowed_directories marks them).");
        }
        if self.policy.denies() {
            mode.push_str(&format!(
                " Paths matching {} are denied.",
                self.policy.deny_patterns().join(", ")
            ));
        }
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-fs", env!("CARGO_PKG_VERSION")))
            .with_instructions(format!(
                "Filesystem access inside these directories only: {}.{mode} Call list_allowed_directories first.",
                self.configured.describe()
            ))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.follow_client_roots(context.peer);
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.follow_client_roots(context.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--read-only` leaves out the `write` router; WRITE_TOOLS (public, for hosts and tests)
    /// must name exactly its tools, and no other router may hold one of them.
    #[test]
    fn write_tools_are_the_write_router() {
        let names = |router: ToolRouter<FsServer>| {
            let mut names: Vec<String> = router
                .list_all()
                .into_iter()
                .map(|tool| tool.name.to_string())
                .collect();
            names.sort();
            names
        };
        let mut expected = WRITE_TOOLS.map(str::to_owned).to_vec();
        expected.sort();
        assert_eq!(names(FsServer::write_tools()), expected);
        let others = names(FsServer::read_tools() + FsServer::browse_tools());
        assert!(
            others.iter().all(|name| !expected.contains(name)),
            "{others:?}"
        );
        assert_eq!(others.len() + expected.len(), 19);
    }
}
