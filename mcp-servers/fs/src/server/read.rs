//! Reading files: text (paged), lines, media, several at once, and their metadata.

use std::path::Path;

use base64::Engine;
use mcp_core::{ToolError, blocking::in_place, structured, tool::truncation_notice};
use rmcp::{
    handler::server::{common::schema_for_output, wrapper::Parameters},
    model::*,
    schemars, tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::{FsServer, PathArgs};
use crate::{error::At as _, ops, search};

#[derive(Serialize, schemars::JsonSchema)]
struct TextOutput {
    content: String,
    /// SHA-256 of the whole file's bytes (lowercase hex), for edit_file's and write_file's
    /// expected_sha256.
    sha256: String,
}

#[derive(Serialize, schemars::JsonSchema)]
struct ContentOutput {
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

#[tool_router(router = read_tools, vis = "pub(super)")]
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
        // The whole file's hash: from the bytes read when they are the whole file, else read
        // again for it.
        let mut whole_hash = None;
        let text = if let Some(n) = args.head {
            search::head_lines(&resolved, n, self.limits.max_text_bytes)?
        } else if let Some(n) = args.tail {
            search::tail_lines(&resolved, n, self.limits.max_text_bytes)?
        } else {
            let offset = mcp_core::tool::parse_offset(args.cursor.as_deref())?;
            let limit = self.limits.max_text_bytes;
            let (mut bytes, size) = ops::read_window(&resolved, offset as u64, limit)?;
            if offset == 0 && bytes.len() as u64 == size {
                whole_hash = Some(ops::sha256_of(&bytes));
            }
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
            // Valid UTF-8 up to `valid`: the bytes become the string without a copy.
            bytes.truncate(valid);
            let mut text = String::from_utf8(bytes)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            let next = offset + valid;
            if (next as u64) < size {
                text.push('\n');
                text.push_str(&truncation_notice(
                    format_args!("bytes {offset}..{next} of {size}"),
                    Some(&next.to_string()),
                    Some("use read_lines for a line range"),
                ));
            }
            text
        };
        let sha256 = match whole_hash {
            Some(hash) => hash,
            None => in_place(|| ops::sha256(&resolved))?,
        };
        Ok(structured(
            text.clone(),
            &TextOutput {
                content: text,
                sha256,
            },
        ))
    }

    #[tool(
        description = "Read lines start_line..=end_line of a text file (1-based), each prefixed with its line number. Use it to look at part of a large file.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_lines(&self, Parameters(args): Parameters<ReadLinesArgs>) -> Result<String, ToolError> {
        in_place(|| {
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
            )?;
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
        in_place(|| {
            let resolved = self.resolve(&path)?;
            let bytes = ops::read_all(&resolved, self.limits.max_media_bytes)?;
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
        output_schema = schema_for_output::<ContentOutput>(),
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn read_multiple_files(
        &self,
        Parameters(args): Parameters<ReadMultipleArgs>,
    ) -> Result<CallToolResult, ToolError> {
        in_place(|| {
            if args.paths.is_empty() {
                return Err(ToolError::new("at least one file path must be provided"));
            }
            let per_file = (self.limits.max_text_bytes / args.paths.len()).max(1024);
            let parts: Vec<String> = args
                .paths
                .iter()
                .map(|path| {
                    let read = self.resolve(path).and_then(|resolved| {
                        let (bytes, size) = ops::read_window(&resolved, 0, per_file)?;
                        let mut text = String::from_utf8_lossy(&bytes).into_owned();
                        if bytes.len() as u64 > 0 && (bytes.len() as u64) < size {
                            text.push('\n');
                            text.push_str(&truncation_notice(
                                format_args!("{} of {size} bytes", bytes.len()),
                                None,
                                Some("use read_text_file to page"),
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
            Ok(structured(text.clone(), &ContentOutput { content: text }))
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
        let metadata = resolved.dir().metadata(&resolved.rel).at(&resolved)?;
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
}
