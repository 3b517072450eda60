//! Finding one's way: listings, the tree, name and content search, the allowed directories.

use mcp_core::{
    ToolError, blocking::in_place, structured, structured_value, tool::truncation_notice,
};
use rmcp::{
    handler::server::{common::schema_for_output, wrapper::Parameters},
    model::*,
    schemars, tool, tool_router,
};
use serde::{Deserialize, Serialize};

use super::FsServer;
use crate::{ops, search};

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
    /// How many levels to list (1: the directory's own entries); directories on the last level
    /// come without their children. All levels when omitted.
    #[schemars(range(min = 1))]
    max_depth: Option<usize>,
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

#[tool_router(router = browse_tools, vis = "pub(super)")]
impl FsServer {
    #[tool(
        description = "List a directory: each entry prefixed with [DIR], [FILE] or [LINK] (a symbolic link). Control characters in names are shown escaped (\\n). Long listings come in pages: pass the returned cursor to continue.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_directory(&self, Parameters(args): Parameters<ListArgs>) -> Result<String, ToolError> {
        in_place(|| {
            let resolved = self.resolve(&args.path)?;
            let hidden = self.hidden(&resolved);
            let mut entries = ops::list(&resolved)?;
            entries.retain(|e| !hidden.matches(std::path::Path::new(&e.name)));
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
                text.push(truncation_notice(
                    format_args!("entries {start}..{end} of {}", entries.len()),
                    Some(&end.to_string()),
                    None,
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
        in_place(|| {
            let resolved = self.resolve(&args.path)?;
            let hidden = self.hidden(&resolved);
            let mut entries = ops::list(&resolved)?;
            entries.retain(|e| !hidden.matches(std::path::Path::new(&e.name)));
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
                lines.push(truncation_notice(
                    format_args!("{shown} of {} entries", entries.len()),
                    None,
                    Some("use list_directory to page"),
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
        description = "A recursive tree of a directory as JSON: [{name, type, children}]. Leave out paths with excludePatterns (globs); max_depth lists only that many levels (directories on the last without children). Very large trees are cut at the entry limit, with a note.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn directory_tree(
        &self,
        Parameters(args): Parameters<TreeArgs>,
    ) -> Result<CallToolResult, ToolError> {
        in_place(|| {
            if args.max_depth == Some(0) {
                return Err(ToolError::new("max_depth counts levels from 1"));
            }
            let resolved = self.resolve(&args.path)?;
            // Each top-level node is rendered, text (compact: the same tree in about half the
            // bytes a model has to read) and structured copy, by the thread that walked it.
            let render = |node: search::Node| {
                let text = serde_json::to_string(&node).unwrap_or_default();
                (text, serde_json::to_value(node).unwrap_or_default())
            };
            let limit = self.limits.max_entries * 10;
            let (rendered, truncated) = search::tree(
                &resolved,
                &args.exclude_patterns,
                &self.hidden(&resolved),
                limit,
                args.max_depth,
                &render,
            )?;
            let (pieces, tree): (Vec<String>, Vec<serde_json::Value>) =
                rendered.into_iter().unzip();
            let mut text = format!("[{}]", pieces.join(","));
            if truncated {
                text.push('\n');
                text.push_str(&truncation_notice(
                    format_args!("the first {limit} entries"),
                    None,
                    Some("list subdirectories separately"),
                ));
            }
            let mut value = serde_json::Map::with_capacity(2);
            value.insert("tree".to_owned(), serde_json::Value::Array(tree));
            value.insert("truncated".to_owned(), truncated.into());
            let value = serde_json::Value::Object(value);
            Ok(structured_value(text, value))
        })
    }

    #[tool(
        description = "Find files and directories whose path (relative to 'path') matches a glob pattern such as '**/*.rs' or '*report*'; excludePatterns leave paths out. Returns full paths.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn search_files(&self, Parameters(args): Parameters<SearchArgs>) -> Result<String, ToolError> {
        in_place(|| {
            let resolved = self.resolve(&args.path)?;
            let (found, truncated) = search::find(
                &resolved,
                &args.pattern,
                &args.exclude_patterns,
                &self.hidden(&resolved),
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
                text.push('\n');
                text.push_str(&truncation_notice(
                    format_args!("the first {} results", self.limits.max_entries),
                    None,
                    Some("narrow the pattern"),
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
        in_place(|| {
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
            let report = search::grep(&resolved, &options, &self.policy)?;
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
                text.push('\n');
                text.push_str(&truncation_notice(
                    format_args!("the first {} matches", options.max_results),
                    None,
                    Some("narrow the pattern or raise max_results"),
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
        description = "The directories this server may access. Call it first to know where paths may point.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_allowed_directories(&self) -> String {
        let sandbox = self.sandbox();
        let dirs: Vec<String> = sandbox
            .roots()
            .iter()
            .map(|r| {
                let mark = if self.policy.read_only(&r.canonical) {
                    " (read-only)"
                } else {
                    ""
                };
                format!("{}{mark}", r.path.display())
            })
            .collect();
        let mut text = format!("Allowed directories:\n{}", dirs.join("\n"));
        let denied = self.policy.deny_patterns();
        if !denied.is_empty() {
            text.push_str(&format!(
                "\nDenied everywhere in them (absent from listings, refused to every tool): {}",
                denied.join(", ")
            ));
        }
        text
    }
}
