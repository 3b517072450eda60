//! The tools that change files (left out with `--read-only`).

use mcp_core::{ToolError, blocking::in_place};
use rmcp::{handler::server::wrapper::Parameters, schemars, tool, tool_router};
use serde::Deserialize;

use super::{FsServer, PathArgs};
use crate::{
    edit::{self, Edit},
    error::At as _,
    ops,
    sandbox::SandboxError,
};

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
struct MoveArgs {
    source: String,
    destination: String,
}

#[tool_router(router = write_tools, vis = "pub(super)")]
impl FsServer {
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
        in_place(|| {
            let resolved = self.resolve_checked(&args.path)?;
            ops::write_atomic(&resolved, args.content.as_bytes())?;
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
        in_place(|| {
            let resolved = self.resolve_checked(&args.path)?;
            let bytes = ops::read_all(&resolved, 64 * 1024 * 1024)?;
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
                ops::write_atomic(&resolved, after.as_bytes())?;
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
        resolved.dir().create_dir_all(&resolved.rel).at(&resolved)?;
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
            let from = self.resolve_checked(&args.source)?;
            let to = self.resolve_checked(&args.destination)?;
            if to.dir().symlink_metadata(&to.rel).is_ok() {
                return Err(ToolError::new(format!(
                    "destination {} already exists",
                    args.destination
                ))
                .with_hint("choose another name, or delete_file it first"));
            }
            from.dir().rename(&from.rel, to.dir(), &to.rel).at(&from)?;
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
            let resolved = self.resolve_checked(&path)?;
            let metadata = resolved
                .dir()
                .symlink_metadata(&resolved.rel)
                .at(&resolved)?;
            if metadata.is_dir() {
                return Err(ToolError::new(format!(
                    "{path} is a directory; delete_file removes files only"
                )));
            }
            resolved.dir().remove_file(&resolved.rel).at(&resolved)?;
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
            let to = self.resolve_checked(&args.destination)?;
            ops::copy_new(&from, &to).map_err(|error| match &error.0 {
                SandboxError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    ToolError::new(format!("destination {} already exists", args.destination))
                        .with_hint("choose another name")
                }
                _ => error.into(),
            })?;
            Ok(format!(
                "Successfully copied {} to {}",
                args.source, args.destination
            ))
        })
    }
}
