//! Walking, matching and searching: trees and globs from a sandboxed directory (through
//! [`crate::walk`]), content search with ripgrep's crates (`ignore` for .gitignore-aware
//! walking, `grep-searcher` for matching), every file opened through the sandbox.

use mcp_core::tool::truncation_notice;
use std::{
    io::{BufRead, BufReader, Read, Seek, SeekFrom},
    path::Path,
};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use grep_regex::RegexMatcherBuilder;
use grep_searcher::{Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use mcp_core::ToolError;
use serde::Serialize;

use crate::{
    error::{At as _, FsError},
    policy::{Hidden, Policy},
    sandbox::{FinalLink, Resolved, open_regular},
    walk::{Entry, WalkDir},
};

/// The first `n` lines, reading at most `max_bytes` (a file without newlines cannot make it read
/// more).
pub fn head_lines(resolved: &Resolved, n: usize, max_bytes: usize) -> Result<String, FsError> {
    let file = crate::ops::open_file(resolved)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| resolved.error(e))?;
    let cut = bytes.len() > max_bytes;
    bytes.truncate(max_bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.split_inclusive('\n').take(n).collect();
    let mut out = lines.concat().trim_end_matches('\n').to_owned();
    if cut && lines.len() < n {
        out.push('\n');
        out.push_str(&truncation_notice(
            format_args!(
                "{} of the {n} lines asked for, in the first {max_bytes} bytes",
                lines.len()
            ),
            None,
            Some("use read_lines for a line range"),
        ));
    }
    Ok(out)
}

/// The last `n` lines, reading backwards from the end and at most `max_bytes`, so a huge file
/// (or one without newlines) costs only that much.
pub fn tail_lines(resolved: &Resolved, n: usize, max_bytes: usize) -> Result<String, FsError> {
    let (mut file, size) = open_regular(resolved, FinalLink::Follow)?;
    let mut tail: Vec<u8> = Vec::new();
    let mut position = size;
    const CHUNK: u64 = 64 * 1024;
    let mut cut = false;
    while position > 0 {
        if tail.len() >= max_bytes {
            cut = true;
            break;
        }
        let step = CHUNK
            .min(position)
            .min((max_bytes - tail.len()) as u64)
            .max(1);
        position -= step;
        file.seek(SeekFrom::Start(position))
            .map_err(|e| resolved.error(e))?;
        let mut chunk = vec![0; step as usize];
        file.read_exact(&mut chunk).map_err(|e| resolved.error(e))?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
        if body.iter().filter(|&&b| b == b'\n').count() >= n {
            break;
        }
    }
    let text = String::from_utf8_lossy(&tail);
    let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    if cut && lines.len() < n {
        let shown = lines.len().min(n);
        let notice = truncation_notice(
            format_args!("{shown} of the {n} lines asked for, in the last {max_bytes} bytes"),
            None,
            Some("use read_lines for a line range"),
        );
        out.insert_str(0, &format!("{notice}\n"));
    }
    Ok(out)
}

/// Lines `start..=end` with their numbers, stopping at `max_bytes` of output. Lines before
/// `start` are counted without being kept, and no line is held longer than `max_bytes`.
pub fn line_range(
    resolved: &Resolved,
    start: usize,
    end: Option<usize>,
    max_bytes: usize,
) -> Result<String, FsError> {
    let file = crate::ops::open_file(resolved)?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut out = String::new();
    let mut number = 1;
    let mut line: Vec<u8> = Vec::new();
    let mut ended = false;
    loop {
        let available = reader.fill_buf().map_err(|e| resolved.error(e))?;
        if available.is_empty() {
            ended = true;
        }
        let (chunk, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(at) => (&available[..at], true),
            None => (available, ended),
        };
        let wanted = number >= start && end.is_none_or(|end| number <= end);
        if wanted && line.len() < max_bytes {
            let room = max_bytes - line.len();
            line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let consumed = chunk.len() + usize::from(complete && !ended);
        reader.consume(consumed);
        if complete {
            if wanted && !(ended && line.is_empty()) {
                let text = String::from_utf8_lossy(&line);
                let rendered = format!("{number:>6}| {}\n", text.trim_end_matches('\r'));
                if out.len() + rendered.len() > max_bytes {
                    if out.is_empty() {
                        // One line longer than a whole answer: its start, and what to do.
                        let room = max_bytes.saturating_sub(160);
                        let mut cut = room.min(rendered.len());
                        while !rendered.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        out.push_str(rendered[..cut].trim_end_matches('\n'));
                        out.push('\n');
                        out.push_str(&truncation_notice(
                            format_args!(
                                "the start of line {number}, which is longer than one answer carries"
                            ),
                            None,
                            Some("read_text_file pages through it with cursors"),
                        ));
                        out.push('\n');
                    } else {
                        out.push_str(&truncation_notice(
                            format_args!("lines {start}..{}", number - 1),
                            None,
                            Some(&format!("ask for a range from line {number}")),
                        ));
                        out.push('\n');
                    }
                    break;
                }
                out.push_str(&rendered);
            }
            line.clear();
            if ended || end.is_some_and(|end| number >= end) {
                break;
            }
            number += 1;
        }
    }
    if number < start {
        out.push_str(&format!(
            "[the file has only {} lines]\n",
            number.saturating_sub(usize::from(ended))
        ));
    }
    Ok(out)
}

/// Globs as the official server reads them (minimatch, `dot: true`): `*` stays within a path
/// component, `**` crosses them. A pattern without `/` also matches an entry's own name.
struct Patterns {
    set: GlobSet,
    names_too: Vec<bool>,
    /// Entries `--deny` hides, beside the ones the patterns leave out.
    hidden: Option<Hidden>,
}

impl Patterns {
    fn new(patterns: &[String]) -> Result<Self, ToolError> {
        let mut builder = GlobSetBuilder::new();
        let mut names_too = Vec::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| ToolError::new(format!("invalid glob {pattern:?}: {error}")))?;
            builder.add(glob);
            names_too.push(!pattern.contains('/'));
        }
        let set = builder
            .build()
            .map_err(|error| ToolError::new(format!("invalid globs: {error}")))?;
        Ok(Self {
            set,
            names_too,
            hidden: None,
        })
    }

    /// These patterns, and what `hidden` hides.
    fn hiding(mut self, hidden: &Hidden) -> Self {
        self.hidden = hidden.is_active().then(|| hidden.clone());
        self
    }

    fn is_empty(&self) -> bool {
        self.names_too.is_empty() && self.hidden.is_none()
    }

    fn matches(&self, relative: &Path) -> bool {
        if self.set.is_match(relative) || self.hidden.as_ref().is_some_and(|h| h.matches(relative))
        {
            return true;
        }
        match relative.file_name() {
            Some(name) => self
                .set
                .matches(name)
                .into_iter()
                .any(|i| self.names_too[i]),
            None => false,
        }
    }
}

/// Depth-first over `rel` beneath `dir`, by name, calling `visit` with each entry's path
/// relative to the start and whether it is a directory. `visit` returns whether to go on.
fn walk(
    dir: &mut WalkDir,
    relative: &Path,
    visit: &mut dyn FnMut(&Path, bool) -> Visit,
) -> std::io::Result<bool> {
    for Entry { name, is_dir } in dir.entries()? {
        let path = relative.join(&name);
        match visit(&path, is_dir) {
            Visit::Stop => return Ok(false),
            Visit::Skip => continue,
            Visit::Descend if is_dir => {
                // An unreadable subdirectory is left out rather than failing the whole walk.
                let below = dir
                    .open(&name)
                    .and_then(|mut child| walk(&mut child, &path, visit));
                if let Ok(false) = below {
                    return Ok(false);
                }
            }
            Visit::Descend => {}
        }
    }
    Ok(true)
}

enum Visit {
    Descend,
    Skip,
    Stop,
}

/// One node of `directory_tree`.
#[derive(Debug, Serialize)]
pub struct Node {
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    children: Option<Vec<Node>>,
}

impl Node {
    /// Nodes in a forest, counting every level.
    #[cfg(test)]
    fn count(nodes: &[Node]) -> usize {
        nodes
            .iter()
            .map(|node| 1 + node.children.as_deref().map_or(0, Node::count))
            .sum()
    }

    fn new(name: String, is_dir: bool, children: Option<Vec<Node>>) -> Self {
        Self {
            name,
            kind: if is_dir { "directory" } else { "file" },
            children,
        }
    }
}

/// The tree under a directory, at most `budget` nodes, each top-level node passed through
/// `finish` (which renders it); says whether the tree was cut.
///
/// The top level's subdirectories are walked on a few threads at once (listing directories is
/// most of the work, much of it in the kernel), and each thread finishes the subtrees it walked,
/// so rendering a large tree is shared out too. If the tree turns out larger than the budget, it
/// is walked again on one thread, so which entries a cut keeps never depends on thread timing.
pub fn tree<T: Send>(
    resolved: &Resolved,
    excludes: &[String],
    hidden: &Hidden,
    budget: usize,
    max_depth: Option<usize>,
    finish: &(dyn Fn(Node) -> T + Sync),
) -> Result<(Vec<T>, bool), ToolError> {
    let excludes = Patterns::new(excludes)?.hiding(hidden);
    let mut start = resolved
        .dir()
        .open_dir(&resolved.rel)
        .and_then(WalkDir::new)
        .at(resolved)?;
    let top = start.entries().at(resolved)?;
    let threads = rayon::current_num_threads().min(4);
    if threads > 1
        && max_depth.is_none_or(|depth| depth > 1)
        && let Some(nodes) =
            parallel_tree(&start, &top, &excludes, budget, max_depth, threads, finish)
    {
        return Ok((nodes, false));
    }
    let mut budget = Budget::new(budget, None);
    budget.max_depth = max_depth;
    let nodes = build_from(&start, top, Path::new(""), &excludes, &mut budget);
    Ok((nodes.into_iter().map(finish).collect(), budget.truncated))
}

/// How many nodes a walk may still add.
struct Budget<'a> {
    remaining: usize,
    truncated: bool,
    /// In a parallel walk: entries listed so far by every thread, and the whole walk's budget;
    /// past it, each thread gives up (and the walk is done again on one thread).
    listed: Option<(&'a std::sync::atomic::AtomicUsize, usize)>,
    /// How many levels are listed (`None`: all); directories on the last are shown without
    /// their children.
    max_depth: Option<usize>,
    /// The level being listed, 0 for the top.
    depth: usize,
}

impl<'a> Budget<'a> {
    fn new(remaining: usize, listed: Option<(&'a std::sync::atomic::AtomicUsize, usize)>) -> Self {
        Self {
            remaining,
            truncated: false,
            listed,
            max_depth: None,
            depth: 0,
        }
    }
}

/// The nodes under `dir`. Each level works on its own open handle: no path is resolved from the
/// root again, and a directory swapped for a link mid-walk cannot lead the handle out.
fn build(
    dir: &mut WalkDir,
    relative: &Path,
    excludes: &Patterns,
    budget: &mut Budget,
) -> std::io::Result<Vec<Node>> {
    let entries = dir.entries()?;
    Ok(build_from(dir, entries, relative, excludes, budget))
}

/// [`build`] with `dir` already listed.
fn build_from(
    dir: &WalkDir,
    entries: Vec<Entry>,
    relative: &Path,
    excludes: &Patterns,
    budget: &mut Budget,
) -> Vec<Node> {
    if let Some((listed, limit)) = budget.listed {
        let seen = listed.fetch_add(entries.len(), std::sync::atomic::Ordering::Relaxed);
        if seen + entries.len() > limit {
            budget.truncated = true;
            return Vec::new();
        }
    }
    let mut nodes = Vec::with_capacity(entries.len());
    for entry in entries {
        let is_dir = entry.is_dir;
        if budget.truncated {
            break;
        }
        // The relative path is only needed to match excludes and to go down a level.
        let path = (!excludes.is_empty() || is_dir).then(|| relative.join(&entry.name));
        if let Some(path) = &path
            && excludes.matches(path)
        {
            continue;
        }
        if budget.remaining == 0 {
            budget.truncated = true;
            break;
        }
        budget.remaining -= 1;
        let deeper = budget.max_depth.is_none_or(|max| budget.depth + 1 < max);
        let children = match path.filter(|_| is_dir) {
            Some(path) if deeper => {
                // An unreadable subdirectory is shown empty rather than failing the whole walk.
                budget.depth += 1;
                let below = dir
                    .open(&entry.name)
                    .and_then(|mut child| build(&mut child, &path, excludes, budget));
                budget.depth -= 1;
                Some(below.unwrap_or_default())
            }
            _ => None,
        };
        nodes.push(Node::new(entry.into_name(), is_dir, children));
    }
    nodes
}

/// [`build`] for the top level (`start`'s `entries`), its subdirectories shared out between
/// `threads` workers of rayon's pool, each finished where it was built. The pool's threads
/// outlive the call, so the memory a tree was built in is reused by the next one rather than
/// abandoned with a thread. `None` if the tree is larger than the budget, or has fewer than two
/// subdirectories to share out.
fn parallel_tree<T: Send>(
    start: &WalkDir,
    entries: &[Entry],
    excludes: &Patterns,
    budget: usize,
    max_depth: Option<usize>,
    threads: usize,
    finish: &(dyn Fn(Node) -> T + Sync),
) -> Option<Vec<T>> {
    use std::sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    };
    let top: Vec<&Entry> = entries
        .iter()
        .filter(|entry| !excludes.matches(Path::new(&entry.name)))
        .collect();
    if top.len() > budget {
        return None;
    }
    let directories: Vec<usize> = (0..top.len()).filter(|&i| top[i].is_dir).collect();
    if directories.len() < 2 {
        return None;
    }
    let listed = AtomicUsize::new(top.len());
    let next = AtomicUsize::new(0);
    let below: Mutex<Vec<Option<T>>> = Mutex::new((0..top.len()).map(|_| None).collect());
    let cut = std::sync::atomic::AtomicBool::new(false);
    let work = || {
        while let Some(&index) = directories.get(next.fetch_add(1, Ordering::Relaxed)) {
            if cut.load(Ordering::Relaxed) {
                return;
            }
            let name = &top[index].name;
            let mut share = Budget::new(budget, Some((&listed, budget)));
            share.max_depth = max_depth;
            share.depth = 1;
            let nodes = start
                .open(name)
                .and_then(|mut child| build(&mut child, Path::new(name), excludes, &mut share))
                .unwrap_or_default();
            if share.truncated {
                cut.store(true, Ordering::Relaxed);
                return;
            }
            let finished = finish(Node::new(
                name.to_string_lossy().into_owned(),
                true,
                Some(nodes),
            ));
            if let Ok(mut below) = below.lock() {
                below[index] = Some(finished);
            }
        }
    };
    rayon::scope(|scope| {
        for _ in 1..threads.min(directories.len()) {
            scope.spawn(|_| work());
        }
        work();
    });
    if cut.load(Ordering::Relaxed) {
        return None;
    }
    let below = below.into_inner().unwrap_or_default();
    let nodes = top
        .into_iter()
        .zip(below)
        .map(|(entry, finished)| {
            // Every directory was finished by a thread; the files are finished here.
            finished.unwrap_or_else(|| {
                let name = entry.name.to_string_lossy().into_owned();
                finish(Node::new(name, entry.is_dir, entry.is_dir.then(Vec::new)))
            })
        })
        .collect();
    Some(nodes)
}

/// Paths under a directory matching `pattern`, at most `limit`; says whether it was cut.
pub fn find(
    resolved: &Resolved,
    pattern: &str,
    excludes: &[String],
    hidden: &Hidden,
    limit: usize,
) -> Result<(Vec<String>, bool), ToolError> {
    let wanted = Patterns::new(&[pattern.to_owned()])?;
    let excludes = Patterns::new(excludes)?.hiding(hidden);
    let base = resolved.display();
    let mut found = Vec::new();
    let mut truncated = false;
    let mut start = resolved
        .dir()
        .open_dir(&resolved.rel)
        .and_then(WalkDir::new)
        .at(resolved)?;
    walk(&mut start, Path::new(""), &mut |path, _| {
        if excludes.matches(path) {
            return Visit::Skip;
        }
        if wanted.matches(path) {
            if found.len() == limit {
                truncated = true;
                return Visit::Stop;
            }
            found.push(base.join(path).display().to_string());
        }
        Visit::Descend
    })
    .at(resolved)?;
    Ok((found, truncated))
}

/// What `grep` looks for.
pub struct GrepOptions {
    pub pattern: String,
    pub glob: Option<String>,
    pub case_insensitive: bool,
    pub context: usize,
    pub max_results: usize,
}

/// One matching (or context) line.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GrepLine {
    pub path: String,
    pub line: u64,
    pub text: String,
    /// False for context lines around a match.
    pub is_match: bool,
}

/// All that `grep` found.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct GrepReport {
    pub matches: Vec<GrepLine>,
    pub files_searched: usize,
    pub truncated: bool,
}

struct Collect<'a> {
    path: &'a str,
    out: &'a mut Vec<GrepLine>,
    matched: &'a mut usize,
    max: usize,
}

impl Sink for Collect<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, found: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        if *self.matched >= self.max {
            return Ok(false);
        }
        *self.matched += 1;
        self.out.push(GrepLine {
            path: self.path.to_owned(),
            line: found.line_number().unwrap_or(0),
            text: String::from_utf8_lossy(found.bytes())
                .trim_end_matches(['\n', '\r'])
                .chars()
                .take(500)
                .collect(),
            is_match: true,
        });
        Ok(true)
    }

    fn context(&mut self, _: &Searcher, context: &SinkContext<'_>) -> Result<bool, Self::Error> {
        self.out.push(GrepLine {
            path: self.path.to_owned(),
            line: context.line_number().unwrap_or(0),
            text: String::from_utf8_lossy(context.bytes())
                .trim_end_matches(['\n', '\r'])
                .chars()
                .take(500)
                .collect(),
            is_match: false,
        });
        Ok(true)
    }
}

/// Searches file contents under `resolved` (a file or a directory).
pub fn grep(
    resolved: &Resolved,
    options: &GrepOptions,
    policy: &Policy,
) -> Result<GrepReport, ToolError> {
    let matcher = RegexMatcherBuilder::new()
        .case_insensitive(options.case_insensitive)
        .build(&options.pattern)
        .map_err(|error| ToolError::new(format!("invalid regular expression: {error}")))?;
    let mut searcher = SearcherBuilder::new()
        .line_number(true)
        .before_context(options.context)
        .after_context(options.context)
        .binary_detection(grep_searcher::BinaryDetection::quit(0))
        .build();
    let glob = match &options.glob {
        Some(glob) => Some(
            Glob::new(glob)
                .map_err(|error| ToolError::new(format!("invalid glob {glob:?}: {error}")))?
                .compile_matcher(),
        ),
        None => None,
    };
    // The walk (for .gitignore) runs over the real path; every file is then opened through the
    // sandbox, so a link swapped in mid-walk cannot lead a read outside.
    let real_start = resolved.root.canonical.join(&resolved.rel);
    let display_start = resolved.display();
    let mut report = GrepReport {
        matches: Vec::new(),
        files_searched: 0,
        truncated: false,
    };
    let mut matched = 0;
    // Denied directories are not even entered; denied files are not opened.
    let skip = policy.for_walk(&real_start);
    let start = real_start.clone();
    for entry in ignore::WalkBuilder::new(&real_start)
        .follow_links(false)
        // .gitignore applies in any folder, not only inside a git repository.
        .require_git(false)
        .filter_entry(move |entry| {
            entry
                .path()
                .strip_prefix(&start)
                .is_ok_and(|below| below.as_os_str().is_empty() || !skip.matches(below))
        })
        .build()
    {
        let Ok(entry) = entry else { continue };
        if !entry.file_type().is_some_and(|t| t.is_file())
            || crate::ops::is_temp_name(entry.file_name())
        {
            continue;
        }
        let Ok(below) = entry.path().strip_prefix(&real_start) else {
            continue;
        };
        if let Some(glob) = &glob
            && !glob.is_match(below)
            && !below.file_name().is_some_and(|name| glob.is_match(name))
        {
            continue;
        }
        let rel = if below.as_os_str().is_empty() {
            resolved.rel.clone()
        } else {
            resolved.rel.join(below)
        };
        let file_at = Resolved {
            root: resolved.root.clone(),
            rel,
        };
        let Ok(file) = crate::ops::open_file(&file_at) else {
            continue;
        };
        let shown = if below.as_os_str().is_empty() {
            display_start.clone()
        } else {
            display_start.join(below)
        };
        let shown = shown.display().to_string();
        report.files_searched += 1;
        let sink = Collect {
            path: &shown,
            out: &mut report.matches,
            matched: &mut matched,
            max: options.max_results,
        };
        let _ = searcher.search_file(&matcher, &file.into_std(), sink);
        if matched >= options.max_results {
            report.truncated = true;
            break;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Three top-level directories (one nested two deep, one empty), files beside them.
    fn fixture() -> (tempfile::TempDir, WalkDir) {
        let root = tempfile::tempdir().unwrap();
        for dir in ["a/x/y", "b", "c/z", "d"] {
            std::fs::create_dir_all(root.path().join(dir)).unwrap();
        }
        for file in [
            "top.txt",
            "a/1.rs",
            "a/x/2.rs",
            "a/x/y/3.rs",
            "b/4.txt",
            "c/z/5.rs",
        ] {
            std::fs::write(root.path().join(file), "x").unwrap();
        }
        let dir =
            cap_std::fs::Dir::open_ambient_dir(root.path(), cap_std::ambient_authority()).unwrap();
        (root, WalkDir::new(dir).unwrap())
    }

    fn one_thread(dir: &mut WalkDir, excludes: &Patterns, budget: usize) -> (String, bool) {
        let mut budget = Budget::new(budget, None);
        let nodes = build(dir, Path::new(""), excludes, &mut budget).unwrap();
        (serde_json::to_string(&nodes).unwrap(), budget.truncated)
    }

    /// The parallel walk of `dir`, its nodes kept as they are.
    fn parallel(
        dir: &mut WalkDir,
        excludes: &Patterns,
        budget: usize,
        threads: usize,
    ) -> Option<Vec<Node>> {
        let top = dir.entries().unwrap();
        parallel_tree(dir, &top, excludes, budget, None, threads, &|node| node)
    }

    #[test]
    fn the_parallel_walk_gives_what_one_thread_gives() {
        let (_root, mut dir) = fixture();
        for excludes in [vec![], vec!["b".to_owned(), "**/y".to_owned()]] {
            let excludes = Patterns::new(&excludes).unwrap();
            let (expected, truncated) = one_thread(&mut dir, &excludes, 1_000);
            assert!(!truncated);
            for threads in [2, 3, 8] {
                let nodes = parallel(&mut dir, &excludes, 1_000, threads).unwrap();
                assert_eq!(serde_json::to_string(&nodes).unwrap(), expected);
            }
        }
    }

    #[test]
    fn a_tree_over_the_budget_is_left_to_one_thread() {
        let (_root, mut dir) = fixture();
        let excludes = Patterns::new(&[]).unwrap();
        let all = Node::count(&parallel(&mut dir, &excludes, 1_000, 2).unwrap());
        assert_eq!(all, 13);
        for budget in [3, 8, all - 1] {
            assert!(parallel(&mut dir, &excludes, budget, 2).is_none());
            let (_, truncated) = one_thread(&mut dir, &excludes, budget);
            assert!(truncated, "{budget}");
        }
        assert!(parallel(&mut dir, &excludes, all, 2).is_some());
    }
}
