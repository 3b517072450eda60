//! The tools that change files (left out with `--read-only`).

use mcp_core::{ToolError, blocking::in_place};
use rmcp::{handler::server::wrapper::Parameters, schemars, tool, tool_router};
use serde::Deserialize;

use super::{FsServer, PathArgs};
use crate::{
    edit::{self, Edit},
    error::At as _,
    journal::Step,
    ops,
    sandbox::SandboxError,
};

#[derive(Deserialize, schemars::JsonSchema)]
struct WriteArgs {
    path: String,
    content: String,
    /// "overwrite" (the default) replaces the file, "append" adds to its end (making it if
    /// missing), "create" makes a new file and fails if one exists.
    #[serde(default)]
    mode: WriteMode,
    /// The file's sha256 as read_text_file gave it: if the file changed since, nothing is
    /// written and the error names its current hash.
    expected_sha256: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
enum WriteMode {
    #[default]
    Overwrite,
    Append,
    Create,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct EditArgs {
    path: String,
    edits: Vec<Edit>,
    /// Preview changes using git-style diff format, without writing.
    #[serde(default, rename = "dryRun")]
    dry_run: bool,
    /// The file's sha256 as read_text_file gave it: if the file changed since, nothing is
    /// written and the error names its current hash.
    expected_sha256: Option<String>,
}

/// Refuses a write to a file that is not the one the caller read: its hash differs from
/// `expected` (or it is gone).
fn check_expected(
    path: &str,
    expected: Option<&str>,
    current: impl FnOnce() -> Result<Option<String>, ToolError>,
) -> Result<(), ToolError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match current()? {
        Some(current) if current.eq_ignore_ascii_case(expected.trim()) => Ok(()),
        Some(current) => Err(ToolError::new(format!(
            "{path} changed since it was read: its sha256 is now {current}, not {expected}; nothing was written"
        ))
        .with_hint("read the file again and redo the change on what it holds now")),
        None => Err(ToolError::new(format!(
            "{path} does not exist now (expected_sha256 {expected} was given); nothing was written"
        ))),
    }
}

/// The first 64 KiB of an existing file, where its byte-order mark and line endings show;
/// `None` for a missing file.
fn sniff(resolved: &crate::sandbox::Resolved) -> Result<Option<Vec<u8>>, ToolError> {
    match ops::read_window(resolved, 0, 64 * 1024) {
        Ok((bytes, _)) => Ok(Some(bytes)),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// `content` in the form of the text file it goes into: CRLF line endings where the file's
/// are mostly CRLF, its byte-order mark kept when it is replaced whole. What was adapted, for
/// the answer.
fn shaped(content: &str, existing: &[u8], whole: bool) -> (Vec<u8>, Vec<&'static str>) {
    let mut kept = Vec::new();
    if existing.contains(&0) {
        return (content.as_bytes().to_vec(), kept);
    }
    let text = String::from_utf8_lossy(existing);
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => (true, rest),
        None => (false, &*text),
    };
    let mut out = Vec::with_capacity(content.len() + 3);
    if whole && bom && !content.starts_with('\u{feff}') {
        out.extend_from_slice("\u{feff}".as_bytes());
        kept.push("byte-order mark");
    }
    if edit::mostly_crlf(text) {
        let converted = edit::in_line_endings_of(text, content);
        if converted != content {
            kept.push("CRLF line endings");
        }
        out.extend_from_slice(converted.as_bytes());
    } else {
        out.extend_from_slice(content.as_bytes());
    }
    (out, kept)
}

#[derive(Deserialize, schemars::JsonSchema)]
struct UndoArgs {
    /// How many changes to undo, newest first (1 to 100; 1 when omitted).
    steps: Option<usize>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct MoveArgs {
    source: String,
    destination: String,
}

#[tool_router(router = write_tools, vis = "pub(super)")]
impl FsServer {
    #[tool(
        description = "Create a new file or completely overwrite an existing one (atomically: readers never see half a file); an overwritten text file keeps its line endings (CRLF stays CRLF) and byte-order mark. mode \"append\" adds to the end instead, \"create\" fails if the file exists. expected_sha256 (from read_text_file) refuses to write over a file that changed since it was read. Use edit_file to change part of a file.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    fn write_file(&self, Parameters(args): Parameters<WriteArgs>) -> Result<String, ToolError> {
        in_place(|| {
            let resolved = self.resolve_writable(&args.path)?;
            let existing = sniff(&resolved)?;
            check_expected(
                &args.path,
                args.expected_sha256.as_deref(),
                || match &existing {
                    Some(_) => Ok(Some(ops::sha256(&resolved)?)),
                    None => Ok(None),
                },
            )?;
            let (done, kept) =
                self.journaled("write_file", &resolved, || match (args.mode, &existing) {
                    (WriteMode::Create, Some(_)) => {
                        Err(ToolError::new(format!("{} already exists", args.path))
                            .with_hint("mode \"overwrite\" replaces it; \"append\" adds to it"))
                    }
                    (WriteMode::Create, None) => {
                        ops::create_atomic(&resolved, args.content.as_bytes()).map_err(
                            |error| {
                                if error.is_already_exists() {
                                    ToolError::new(format!("{} already exists", args.path))
                                } else {
                                    error.into()
                                }
                            },
                        )?;
                        Ok(("created", Vec::new()))
                    }
                    (WriteMode::Overwrite, _) => {
                        let (bytes, kept) =
                            shaped(&args.content, existing.as_deref().unwrap_or_default(), true);
                        ops::write_atomic(&resolved, &bytes)?;
                        Ok(("wrote to", kept))
                    }
                    (WriteMode::Append, _) => {
                        let (bytes, kept) = shaped(
                            &args.content,
                            existing.as_deref().unwrap_or_default(),
                            false,
                        );
                        ops::append(&resolved, &bytes)?;
                        Ok(("appended to", kept))
                    }
                })?;
            let mut answer = format!("Successfully {done} {}", args.path);
            if !kept.is_empty() {
                answer.push_str(&format!(" (kept the file's {})", kept.join(" and ")));
            }
            Ok(answer)
        })
    }

    #[tool(
        description = "Make edits to a text file: each edit replaces oldText (exactly, or line by line ignoring surrounding whitespace) with newText. The file keeps its line endings (CRLF stays CRLF) and byte-order mark. Returns a git-style diff; an oldText that matches nowhere gets the closest lines back. With dryRun, only previews. expected_sha256 (from read_text_file) refuses to edit a file that changed since it was read.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn edit_file(&self, Parameters(args): Parameters<EditArgs>) -> Result<String, ToolError> {
        in_place(|| {
            let resolved = self.resolve_writable(&args.path)?;
            let bytes = ops::read_all(&resolved, 64 * 1024 * 1024)?;
            check_expected(&args.path, args.expected_sha256.as_deref(), || {
                Ok(Some(ops::sha256_of(&bytes)))
            })?;
            let mut file = edit::TextFile::decode(bytes)
                .map_err(|message| ToolError::new(format!("{}: {message}", args.path)))?;
            let after = edit::apply(&file.text, &args.edits).map_err(|message| {
                ToolError::new(message).with_hint("read the file again and copy oldText exactly")
            })?;
            let diff = edit::fenced_diff(
                &file.text.replace("\r\n", "\n"),
                &after.replace("\r\n", "\n"),
                &resolved.display().display().to_string(),
            );
            if !args.dry_run {
                file.text = after;
                self.journaled("edit_file", &resolved, || {
                    Ok(ops::write_atomic(&resolved, &file.encode())?)
                })?;
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
        let resolved = self.resolve_writable(&path)?;
        let made = match &self.journal {
            Some(_) => self.missing_dirs(&resolved)?,
            None => Vec::new(),
        };
        resolved.dir().create_dir_all(&resolved.rel).at(&resolved)?;
        if let Some(journal) = &self.journal
            && !made.is_empty()
        {
            let root = self.root_for(&resolved)?;
            self.keep_record(
                journal,
                "create_directory",
                root,
                vec![Step::MakeDirs { paths: made }],
            );
        }
        Ok(format!("Successfully created directory {path}"))
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
        in_place(|| {
            let from = self.resolve_writable(&args.source)?;
            let to = self.resolve_writable(&args.destination)?;
            if to.dir().symlink_metadata(&to.rel).is_ok() {
                return Err(ToolError::new(format!(
                    "destination {} already exists",
                    args.destination
                ))
                .with_hint("choose another name, or delete_file it first"));
            }
            let step = match &self.journal {
                Some(_) => Some((self.journal_move(&from, &to)?, self.root_for(&from)?)),
                None => None,
            };
            from.dir().rename(&from.rel, to.dir(), &to.rel).at(&from)?;
            if let (Some(journal), Some((step, root))) = (&self.journal, step) {
                self.keep_record(journal, "move_file", root, vec![step]);
            }
            Ok(format!(
                "Successfully moved {} to {}",
                args.source, args.destination
            ))
        })
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
        in_place(|| {
            let resolved = self.resolve_writable(&path)?;
            let metadata = resolved
                .dir()
                .symlink_metadata(&resolved.rel)
                .at(&resolved)?;
            if metadata.is_dir() {
                return Err(ToolError::new(format!(
                    "{path} is a directory; delete_file removes files only"
                )));
            }
            self.journaled("delete_file", &resolved, || {
                Ok(resolved.dir().remove_file(&resolved.rel).at(&resolved)?)
            })?;
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
        in_place(|| {
            let from = self.resolve_checked(&args.source)?;
            let to = self.resolve_writable(&args.destination)?;
            self.journaled("copy_file", &to, || {
                ops::copy_new(&from, &to).map_err(|error| match &error.0 {
                    SandboxError::Io { source, .. }
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        ToolError::new(format!("destination {} already exists", args.destination))
                            .with_hint("choose another name")
                    }
                    _ => error.into(),
                })
            })?;
            Ok(format!(
                "Successfully copied {} to {}",
                args.source, args.destination
            ))
        })
    }

    #[tool(
        description = "Undo the last changes the write tools made (writes, edits, appends, copies, moves, deletions, new directories), newest first: each file is put back as it was, unless it changed since (then it is left as it is, and the answer says so). The journal survives restarts; steps defaults to 1.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    fn undo(&self, Parameters(args): Parameters<UndoArgs>) -> Result<String, ToolError> {
        in_place(|| {
            let Some(journal) = &self.journal else {
                return Err(ToolError::new(
                    "this server keeps no journal of its changes, so it cannot undo them",
                )
                .with_hint("mcp-fs keeps one unless started with --no-journal"));
            };
            let steps = args.steps.unwrap_or(1).clamp(1, 100);
            let mut roots: Vec<std::path::PathBuf> = Vec::new();
            for root in self.configured.roots().iter().chain(self.sandbox().roots()) {
                if !roots.contains(&root.canonical) {
                    roots.push(root.canonical.clone());
                }
            }
            let said = journal
                .undo_last(&roots, steps, &mut |record, blob| {
                    self.undo_record(journal, record, blob)
                })
                .map_err(|e| ToolError::new(format!("the undo journal: {e}")))?;
            if said.is_empty() {
                return Ok("Nothing to undo: no change is on record".to_owned());
            }
            Ok(format!(
                "Undid {} change(s), newest first:\n{}",
                said.len(),
                said.join("\n")
            ))
        })
    }
}
