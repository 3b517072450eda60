//! The MCP face of the filesystem: the official server's tools under their names and argument
//! shapes, plus `grep`, `read_lines`, `delete_file` and `copy_file`.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use base64::Engine;
use mcp_core::{OutputCap, ToolError, structured, structured_value};
use rmcp::{
    RoleServer, ServerHandler,
    handler::server::{common::schema_for_output, router::tool::ToolRouter, wrapper::Parameters},
    model::*,
    schemars,
    service::{NotificationContext, Peer},
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};

use crate::{
    edit::{self, Edit},
    ops,
    sandbox::{Resolved, Sandbox, SandboxError},
    search,
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

/// The tools that change files, hidden by `--read-only`.
pub const WRITE_TOOLS: [&str; 6] = [
    "write_file",
    "edit_file",
    "create_directory",
    "move_file",
    "delete_file",
    "copy_file",
];

/// The filesystem server. Cloning it starts a new session: its roots begin as the configured
/// directories and follow what that session's client offers.
pub struct FsServer {
    configured: Arc<Sandbox>,
    // Swapped whole when the client's roots change; requests take a cheap `Arc` of it.
    sandbox: Arc<RwLock<Arc<Sandbox>>>,
    limits: Limits,
    read_only: bool,
    tool_router: ToolRouter<Self>,
}

impl Clone for FsServer {
    fn clone(&self) -> Self {
        Self::with_sandbox(self.configured.clone(), self.limits, self.read_only)
    }
}

impl FsServer {
    /// The server for `sandbox`. Unless read-only, it first sweeps, in a thread of its own, the
    /// temporary files that writes killed mid-way left in the allowed directories.
    pub fn new(sandbox: Sandbox, limits: Limits, read_only: bool) -> Self {
        if !read_only {
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
        Self::with_sandbox(Arc::new(sandbox), limits, read_only)
    }

    fn with_sandbox(configured: Arc<Sandbox>, limits: Limits, read_only: bool) -> Self {
        let mut tool_router = Self::tool_router();
        if read_only {
            for name in WRITE_TOOLS {
                tool_router.remove_route(name);
            }
        }
        Self {
            sandbox: Arc::new(RwLock::new(configured.clone())),
            configured,
            limits,
            read_only,
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
    fn resolve(&self, path: &str) -> Result<Resolved, ToolError> {
        self.sandbox().resolve(path).map_err(tool_error)
    }

    /// [`Self::resolve`], then also checks up front that the real location (through its nearest
    /// existing ancestor) stays inside: for writes, which should fail before any work, and for
    /// walks over real paths (`grep`), which must not even start outside.
    fn resolve_checked(&self, path: &str) -> Result<Resolved, ToolError> {
        let sandbox = self.sandbox();
        let resolved = sandbox.resolve(path).map_err(tool_error)?;
        sandbox.check_beneath(&resolved).map_err(tool_error)?;
        Ok(resolved)
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

/// A sandbox refusal or I/O failure, worded for a model, with what to do next.
pub(crate) fn tool_error(error: SandboxError) -> ToolError {
    let hint = match &error {
        SandboxError::Outside { .. } | SandboxError::Escape { .. } => Some(
            "only paths inside the allowed directories can be used; call list_allowed_directories",
        ),
        SandboxError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            Some("check the name with list_directory or search_files")
        }
        SandboxError::NoRoots => Some("ask the user which directories to allow"),
        SandboxError::NotRegular {
            kind: "a directory",
            ..
        } => Some("use list_directory or directory_tree for a directory"),
        _ => None,
    };
    let error = ToolError::new(error.to_string());
    match hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

#[derive(Serialize, schemars::JsonSchema)]
struct TextOutput {
    content: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ReadTextArgs {
    path: String,
    /// If provided, returns only the last N lines of the file.
    tail: Option<usize>,
    /// If provided, returns only the first N lines of the file.
    head: Option<usize>,
    /// Where to continue a long file: the cursor from the previous truncated answer.
    cursor: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct PathArgs {
    path: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ReadLinesArgs {
    path: String,
    /// First line to return, counting from 1.
    start_line: usize,
    /// Last line to return (inclusive); to the end of the file when omitted.
    end_line: Option<usize>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ReadMultipleArgs {
    /// Array of file paths to read. Each path must be a string pointing to a valid file within
    /// allowed directories.
    paths: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct WriteArgs {
    path: String,
    content: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct EditArgs {
    path: String,
    edits: Vec<Edit>,
    /// Preview changes using git-style diff format, without writing.
    #[serde(default, rename = "dryRun")]
    dry_run: bool,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ListArgs {
    path: String,
    /// Where to continue a long listing: the cursor from the previous truncated answer.
    cursor: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema, Default, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum SortBy {
    #[default]
    Name,
    Size,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ListSizesArgs {
    path: String,
    /// Sort entries by name or size.
    #[serde(default, rename = "sortBy")]
    sort_by: SortBy,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct TreeArgs {
    path: String,
    /// Glob patterns of paths to leave out (relative to `path`), e.g. `node_modules`, `**/*.log`.
    #[serde(default, rename = "excludePatterns")]
    exclude_patterns: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct MoveArgs {
    source: String,
    destination: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct SearchArgs {
    /// Directory to search in.
    path: String,
    /// Glob pattern matched against paths relative to `path`, e.g. `**/*.rs` or `*config*`.
    pattern: String,
    /// Glob patterns of paths to leave out.
    #[serde(default, rename = "excludePatterns")]
    exclude_patterns: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct GrepArgs {
    /// A regular expression (Rust regex syntax, as ripgrep).
    pattern: String,
    /// File or directory to search; the first allowed directory when omitted.
    path: Option<String>,
    /// Only files whose path matches this glob, e.g. `*.rs`.
    glob: Option<String>,
    /// Ignore case.
    #[serde(default)]
    case_insensitive: bool,
    /// Lines of context before and after each match.
    #[serde(default)]
    context: usize,
    /// Stop after this many matching lines (default 200).
    max_results: Option<usize>,
}

#[derive(Serialize, schemars::JsonSchema)]
struct Listing {
    entries: Vec<ops::Entry>,
    #[serde(rename = "totalFiles")]
    total_files: usize,
    #[serde(rename = "totalDirectories")]
    total_directories: usize,
    #[serde(rename = "totalSize")]
    total_size: u64,
}

#[derive(Serialize, schemars::JsonSchema)]
struct FileInfo {
    path: String,
    size: u64,
    #[serde(rename = "type")]
    kind: ops::EntryKind,
    created: Option<String>,
    modified: Option<String>,
    accessed: Option<String>,
    permissions: String,
}

fn time_string(time: std::io::Result<cap_std::time::SystemTime>) -> Option<String> {
    let time: chrono::DateTime<chrono::Utc> = time.ok()?.into_std().into();
    Some(time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

fn mime_of(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "svg" => "image/svg+xml",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Runs a tool body that may take long (a big tree, a big file) off the runtime's one worker
/// thread, so other requests (a ping, a quick read) are served meanwhile. The
/// server runs one worker thread (see `mcp-fs.rs`): quick calls then never cross threads, which
/// is most of their latency. Inline when the runtime has no spare thread to hand the worker's
/// duties to (a current-thread runtime, as in tests).
fn offload<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

#[tool_router]
impl FsServer {
    #[tool(
        description = "Read the complete contents of a file as text. DEPRECATED: Use read_text_file instead.",
        output_schema = schema_for_output::<TextOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_file(&self, args: Parameters<ReadTextArgs>) -> Result<CallToolResult, ToolError> {
        self.read_text_file(args)
    }

    #[tool(
        description = "Read a file as text. Use 'head' or 'tail' for the first or last N lines. Files larger than the answer limit come in pages: pass the returned cursor to continue. Only works within allowed directories.",
        output_schema = schema_for_output::<TextOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_text_file(
        &self,
        Parameters(args): Parameters<ReadTextArgs>,
    ) -> Result<CallToolResult, ToolError> {
        if args.head.is_some() && args.tail.is_some() {
            return Err(ToolError::new(
                "cannot specify both head and tail parameters simultaneously",
            ));
        }
        let resolved = self.resolve(&args.path)?;
        let text = if let Some(n) = args.head {
            search::head_lines(&resolved, n, self.limits.max_text_bytes).map_err(tool_error)?
        } else if let Some(n) = args.tail {
            search::tail_lines(&resolved, n, self.limits.max_text_bytes).map_err(tool_error)?
        } else {
            let offset = mcp_core::tool::parse_offset(args.cursor.as_deref())?;
            let limit = self.limits.max_text_bytes;
            let (bytes, size) =
                ops::read_window(&resolved, offset as u64, limit).map_err(tool_error)?;
            // Cut at a character boundary; the cursor then resumes exactly there.
            let valid = match std::str::from_utf8(&bytes) {
                Ok(text) => text.len(),
                Err(error) if error.error_len().is_none() => error.valid_up_to(),
                Err(_) => {
                    return Err(ToolError::new(format!(
                        "{} is not UTF-8 text",
                        resolved.display().display()
                    ))
                    .with_hint("use read_media_file for binary files"));
                }
            };
            let mut text = String::from_utf8_lossy(&bytes[..valid]).into_owned();
            let next = offset + valid;
            if (next as u64) < size {
                text.push_str(&format!(
                    "\n[output truncated: showing bytes {offset}..{next} of {size}; call again with cursor \"{next}\" to continue, or use read_lines for a line range]"
                ));
            }
            text
        };
        Ok(structured(text.clone(), &TextOutput { content: text }))
    }

    #[tool(
        description = "Read lines start_line..=end_line of a text file (1-based), each prefixed with its line number. Use it to look at part of a large file.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_lines(&self, Parameters(args): Parameters<ReadLinesArgs>) -> Result<String, ToolError> {
        offload(|| {
            if args.start_line == 0 || args.end_line.is_some_and(|end| end < args.start_line) {
                return Err(ToolError::new(
                    "lines count from 1, and end_line may not be before start_line",
                ));
            }
            let resolved = self.resolve(&args.path)?;
            let lines = search::line_range(
                &resolved,
                args.start_line,
                args.end_line,
                self.limits.max_text_bytes,
            )
            .map_err(tool_error)?;
            Ok(lines)
        })
    }

    #[tool(
        description = "Read an image or audio file and return it as image/audio content with its MIME type; other files come back as a base64 blob resource.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_media_file(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<CallToolResult, ToolError> {
        offload(|| {
            let resolved = self.resolve(&path)?;
            let bytes =
                ops::read_all(&resolved, self.limits.max_media_bytes).map_err(tool_error)?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            let mime = mime_of(&resolved.rel);
            let block = if mime.starts_with("image/") {
                ContentBlock::image(data, mime)
            } else if mime.starts_with("audio/") {
                ContentBlock::audio(data, mime)
            } else {
                ContentBlock::resource(
                    ResourceContents::blob(
                        data,
                        format!("file://{}", resolved.display().display()),
                    )
                    .with_mime_type(mime),
                )
            };
            Ok(CallToolResult::success(vec![block]))
        })
    }

    #[tool(
        description = "Read several files at once; each comes with its path, and a file that cannot be read reports its error without failing the others.",
        output_schema = schema_for_output::<TextOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_multiple_files(
        &self,
        Parameters(args): Parameters<ReadMultipleArgs>,
    ) -> Result<CallToolResult, ToolError> {
        offload(|| {
            if args.paths.is_empty() {
                return Err(ToolError::new("at least one file path must be provided"));
            }
            let per_file = (self.limits.max_text_bytes / args.paths.len()).max(1024);
            let parts: Vec<String> = args
                .paths
                .iter()
                .map(|path| {
                    let read = self.resolve(path).and_then(|resolved| {
                        let (bytes, size) =
                            ops::read_window(&resolved, 0, per_file).map_err(tool_error)?;
                        let mut text = String::from_utf8_lossy(&bytes).into_owned();
                        if bytes.len() as u64 > 0 && (bytes.len() as u64) < size {
                            text.push_str(&format!(
                                "\n[truncated at {} of {size} bytes; use read_text_file to page]",
                                bytes.len()
                            ));
                        }
                        Ok(text)
                    });
                    match read {
                        Ok(text) => format!("{path}:\n{text}\n"),
                        Err(error) => format!("{path}: Error - {error}"),
                    }
                })
                .collect();
            let text = parts.join("\n---\n");
            Ok(structured(text.clone(), &TextOutput { content: text }))
        })
    }

    #[tool(
        description = "Create a new file or completely overwrite an existing one (atomically: readers never see half a file). Use edit_file to change part of a file.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn write_file(&self, Parameters(args): Parameters<WriteArgs>) -> Result<String, ToolError> {
        offload(|| {
            let resolved = self.resolve_checked(&args.path)?;
            ops::write_atomic(&resolved, args.content.as_bytes()).map_err(tool_error)?;
            Ok(format!("Successfully wrote to {}", args.path))
        })
    }

    #[tool(
        description = "Make edits to a text file: each edit replaces oldText (exactly, or line by line ignoring surrounding whitespace) with newText. Returns a git-style diff. With dryRun, only previews.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn edit_file(&self, Parameters(args): Parameters<EditArgs>) -> Result<String, ToolError> {
        offload(|| {
            let resolved = self.resolve_checked(&args.path)?;
            let bytes = ops::read_all(&resolved, 64 * 1024 * 1024).map_err(tool_error)?;
            let before = String::from_utf8(bytes)
                .map_err(|_| ToolError::new(format!("{} is not UTF-8 text", args.path)))?;
            let after = edit::apply(&before, &args.edits).map_err(|message| {
                ToolError::new(message).with_hint("read the file again and copy oldText exactly")
            })?;
            let diff = edit::fenced_diff(
                &before.replace("\r\n", "\n"),
                &after,
                &resolved.display().display().to_string(),
            );
            if !args.dry_run {
                ops::write_atomic(&resolved, after.as_bytes()).map_err(tool_error)?;
            }
            Ok(diff)
        })
    }

    #[tool(
        description = "Create a directory, with any missing parents; succeeds if it already exists.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn create_directory(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<String, ToolError> {
        let resolved = self.resolve_checked(&path)?;
        resolved
            .dir()
            .create_dir_all(&resolved.rel)
            .map_err(|e| tool_error(resolved.error(e)))?;
        Ok(format!("Successfully created directory {path}"))
    }

    #[tool(
        description = "List a directory: each entry prefixed with [DIR], [FILE] or [LINK] (a symbolic link). Control characters in names are shown escaped (\\n). Long listings come in pages: pass the returned cursor to continue.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_directory(&self, Parameters(args): Parameters<ListArgs>) -> Result<String, ToolError> {
        offload(|| {
            let resolved = self.resolve(&args.path)?;
            let entries = ops::list(&resolved).map_err(tool_error)?;
            let start = mcp_core::tool::parse_offset(args.cursor.as_deref())?.min(entries.len());
            let end = (start + self.limits.max_entries).min(entries.len());
            let mut text: Vec<String> = entries[start..end]
                .iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.kind.marker(),
                        mcp_core::text::visible_line(&e.name)
                    )
                })
                .collect();
            if end < entries.len() {
                text.push(format!(
                    "[listing truncated: entries {start}..{end} of {}; call again with cursor \"{end}\" to continue]",
                    entries.len()
                ));
            }
            Ok(text.join("\n"))
        })
    }

    #[tool(
        description = "List a directory with sizes: [DIR]/[FILE]/[LINK] entries, sorted by name or size, and totals.",
        output_schema = schema_for_output::<Listing>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_directory_with_sizes(
        &self,
        Parameters(args): Parameters<ListSizesArgs>,
    ) -> Result<CallToolResult, ToolError> {
        offload(|| {
            let resolved = self.resolve(&args.path)?;
            let mut entries = ops::list(&resolved).map_err(tool_error)?;
            if args.sort_by == SortBy::Size {
                entries.sort_by_key(|e| std::cmp::Reverse(e.size.unwrap_or(0)));
            }
            let total_files = entries
                .iter()
                .filter(|e| e.kind != ops::EntryKind::Directory)
                .count();
            let total_directories = entries.len() - total_files;
            let total_size = entries.iter().filter_map(|e| e.size).sum();
            let shown = entries.len().min(self.limits.max_entries);
            let mut lines: Vec<String> = entries[..shown]
                .iter()
                .map(|e| {
                    let size = e.size.map(ops::format_size).unwrap_or_default();
                    format!(
                        "{} {:<30} {:>10}",
                        e.kind.marker(),
                        mcp_core::text::visible_line(&e.name),
                        size
                    )
                })
                .collect();
            if shown < entries.len() {
                lines.push(format!(
                    "[listing truncated: {shown} of {} entries; use list_directory to page]",
                    entries.len()
                ));
            }
            lines.push(String::new());
            lines.push(format!(
                "Total: {total_files} files, {total_directories} directories"
            ));
            lines.push(format!("Combined size: {}", ops::format_size(total_size)));
            entries.truncate(shown);
            let listing = Listing {
                entries,
                total_files,
                total_directories,
                total_size,
            };
            Ok(structured(lines.join("\n"), &listing))
        })
    }

    #[tool(
        description = "A recursive tree of a directory as JSON: [{name, type, children}]. Leave out paths with excludePatterns (globs). Very large trees are cut at the entry limit, with a note.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn directory_tree(
        &self,
        Parameters(args): Parameters<TreeArgs>,
    ) -> Result<CallToolResult, ToolError> {
        offload(|| {
            let resolved = self.resolve(&args.path)?;
            // Each top-level node is rendered, text (compact: the same tree in about half the
            // bytes a model has to read) and structured copy, by the thread that walked it.
            let render = |node: search::Node| {
                let text = serde_json::to_string(&node).unwrap_or_default();
                (text, serde_json::to_value(node).unwrap_or_default())
            };
            let (rendered, truncated) = search::tree(
                &resolved,
                &args.exclude_patterns,
                self.limits.max_entries * 10,
                &render,
            )?;
            let (pieces, tree): (Vec<String>, Vec<serde_json::Value>) =
                rendered.into_iter().unzip();
            let mut text = format!("[{}]", pieces.join(","));
            if truncated {
                text.push_str(
                    "\n[tree truncated at the entry limit; list subdirectories separately]",
                );
            }
            let mut value = serde_json::Map::with_capacity(2);
            value.insert("tree".to_owned(), serde_json::Value::Array(tree));
            value.insert("truncated".to_owned(), truncated.into());
            let value = serde_json::Value::Object(value);
            Ok(structured_value(text, value))
        })
    }

    #[tool(
        description = "Move or rename a file or directory. Fails if the destination exists. Both paths must be inside the allowed directories.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn move_file(&self, Parameters(args): Parameters<MoveArgs>) -> Result<String, ToolError> {
        offload(|| {
            let from = self.resolve_checked(&args.source)?;
            let to = self.resolve_checked(&args.destination)?;
            if to.dir().symlink_metadata(&to.rel).is_ok() {
                return Err(ToolError::new(format!(
                    "destination {} already exists",
                    args.destination
                ))
                .with_hint("choose another name, or delete_file it first"));
            }
            from.dir()
                .rename(&from.rel, to.dir(), &to.rel)
                .map_err(|e| tool_error(from.error(e)))?;
            Ok(format!(
                "Successfully moved {} to {}",
                args.source, args.destination
            ))
        })
    }

    #[tool(
        description = "Find files and directories whose path (relative to 'path') matches a glob pattern such as '**/*.rs' or '*report*'; excludePatterns leave paths out. Returns full paths.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn search_files(&self, Parameters(args): Parameters<SearchArgs>) -> Result<String, ToolError> {
        offload(|| {
            let resolved = self.resolve(&args.path)?;
            let (found, truncated) = search::find(
                &resolved,
                &args.pattern,
                &args.exclude_patterns,
                self.limits.max_entries,
            )?;
            if found.is_empty() {
                return Ok("No matches found".to_owned());
            }
            // One path a line: a newline inside a name is shown escaped, not as a second path.
            let mut text = String::with_capacity(found.iter().map(|p| p.len() + 1).sum());
            for (i, path) in found.iter().enumerate() {
                if i > 0 {
                    text.push('\n');
                }
                text.push_str(&mcp_core::text::visible_line(path));
            }
            if truncated {
                text.push_str(&format!(
                    "\n[results truncated at {}; narrow the pattern]",
                    self.limits.max_entries
                ));
            }
            Ok(text)
        })
    }

    #[tool(
        description = "Search file contents with a regular expression (ripgrep's engine), honouring .gitignore. Returns path:line: text for each match, with optional context lines.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn grep(&self, Parameters(args): Parameters<GrepArgs>) -> Result<CallToolResult, ToolError> {
        offload(|| {
            let path = match &args.path {
                Some(path) => path.clone(),
                None => self
                    .sandbox()
                    .roots()
                    .first()
                    .map(|r| r.path.display().to_string())
                    .unwrap_or_default(),
            };
            let resolved = self.resolve_checked(&path)?;
            let options = search::GrepOptions {
                pattern: args.pattern,
                glob: args.glob,
                case_insensitive: args.case_insensitive,
                context: args.context.min(20),
                max_results: args.max_results.unwrap_or(200).clamp(1, 10_000),
            };
            let report = search::grep(&resolved, &options)?;
            let mut text = report
                .matches
                .iter()
                .map(|m| format!("{}:{}: {}", m.path, m.line, m.text))
                .collect::<Vec<_>>()
                .join("\n");
            if report.matches.is_empty() {
                text = "No matches found".to_owned();
            }
            if report.truncated {
                text.push_str(&format!(
                    "\n[stopped at {} matches; narrow the pattern or raise max_results]",
                    options.max_results
                ));
            }
            let (text, _) = self.cap().truncate(
                &text,
                "narrow the pattern, add a glob or a path, or lower max_results",
            );
            Ok(structured(text, &report))
        })
    }

    #[tool(
        description = "Metadata of a file or directory: size, type, created/modified/accessed times, permissions.",
        output_schema = schema_for_output::<FileInfo>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn get_file_info(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let resolved = self.resolve(&path)?;
        let metadata = resolved
            .dir()
            .metadata(&resolved.rel)
            .map_err(|e| tool_error(resolved.error(e)))?;
        let permissions = {
            #[cfg(unix)]
            {
                use cap_std::fs::PermissionsExt;
                format!("{:o}", metadata.permissions().mode() & 0o777)
            }
            #[cfg(not(unix))]
            {
                if metadata.permissions().readonly() {
                    "readonly"
                } else {
                    "writable"
                }
                .to_owned()
            }
        };
        let info = FileInfo {
            path: resolved.display().display().to_string(),
            size: metadata.len(),
            kind: if metadata.is_dir() {
                ops::EntryKind::Directory
            } else {
                ops::EntryKind::File
            },
            created: time_string(metadata.created()),
            modified: time_string(metadata.modified()),
            accessed: time_string(metadata.accessed()),
            permissions,
        };
        let text = format!(
            "size: {}\ntype: {}\ncreated: {}\nmodified: {}\naccessed: {}\npermissions: {}\nisDirectory: {}\nisFile: {}",
            info.size,
            info.kind,
            info.created.as_deref().unwrap_or("unknown"),
            info.modified.as_deref().unwrap_or("unknown"),
            info.accessed.as_deref().unwrap_or("unknown"),
            info.permissions,
            metadata.is_dir(),
            metadata.is_file(),
        );
        Ok(structured(text, &info))
    }

    #[tool(
        description = "The directories this server may access. Call it first to know where paths may point.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_allowed_directories(&self) -> String {
        let sandbox = self.sandbox();
        let dirs: Vec<String> = sandbox
            .roots()
            .iter()
            .map(|r| r.path.display().to_string())
            .collect();
        format!("Allowed directories:\n{}", dirs.join("\n"))
    }

    #[tool(
        description = "Delete a file (not a directory).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn delete_file(
        &self,
        Parameters(PathArgs { path }): Parameters<PathArgs>,
    ) -> Result<String, ToolError> {
        offload(|| {
            let resolved = self.resolve_checked(&path)?;
            let metadata = resolved
                .dir()
                .symlink_metadata(&resolved.rel)
                .map_err(|e| tool_error(resolved.error(e)))?;
            if metadata.is_dir() {
                return Err(ToolError::new(format!(
                    "{path} is a directory; delete_file removes files only"
                )));
            }
            resolved
                .dir()
                .remove_file(&resolved.rel)
                .map_err(|e| tool_error(resolved.error(e)))?;
            Ok(format!("Successfully deleted {path}"))
        })
    }

    #[tool(
        description = "Copy a file to a new path; fails if the destination exists.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn copy_file(&self, Parameters(args): Parameters<MoveArgs>) -> Result<String, ToolError> {
        offload(|| {
            let from = self.resolve_checked(&args.source)?;
            let to = self.resolve_checked(&args.destination)?;
            ops::copy_new(&from, &to).map_err(|error| match &error {
                SandboxError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    ToolError::new(format!("destination {} already exists", args.destination))
                        .with_hint("choose another name")
                }
                _ => tool_error(error),
            })?;
            Ok(format!(
                "Successfully copied {} to {}",
                args.source, args.destination
            ))
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for FsServer {
    fn get_info(&self) -> ServerConfig {
        let mode = if self.read_only {
            " Read-only: no tool changes files."
        } else {
            ""
        };
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
