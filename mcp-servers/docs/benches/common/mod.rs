//! What the benchmarks share: passages and heading queries cut from the HTML documentation
//! rustup installs.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mcp_server_docs::{
    embed::{Embedder, ModelOptions},
    extract::{self, Kind},
    index::{DocsError, Library, Progress, Report, Selection},
};

pub const BOOKS: &[&str] = &[
    "book",
    "reference",
    "rust-by-example",
    "nomicon",
    "edition-guide",
    "cargo",
    "rustc",
    "rustdoc",
    "embedded-book",
    "style-guide",
];
pub const PASSAGE_WORDS: usize = 100;

pub struct Query {
    pub text: String,
    pub relevant: HashSet<usize>,
}

pub fn html_root() -> PathBuf {
    let sysroot = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc --print sysroot");
    PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("share/doc/rust/html")
}

fn html_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            html_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "html") {
            let name = path.file_name().unwrap().to_string_lossy();
            if !matches!(name.as_ref(), "print.html" | "toc.html" | "404.html") {
                out.push(path);
            }
        }
    }
}

/// Passages (text) and queries (heading → passages of its section), from the HTML under each
/// of `dirs` in turn, until there are at least `max` passages; sections of fewer than
/// `min_words` words are left out.
pub fn collection(
    root: &Path,
    dirs: &[&str],
    max: usize,
    min_words: usize,
) -> (Vec<String>, Vec<Query>) {
    let mut passages = Vec::new();
    let mut sections: Vec<(String, Vec<usize>)> = Vec::new();
    for dir in dirs {
        let mut files = Vec::new();
        html_files(&root.join(dir), &mut files);
        for file in files {
            if passages.len() >= max {
                break;
            }
            let Ok(bytes) = std::fs::read(&file) else {
                continue;
            };
            let Ok(document) = extract::extract(&file, Kind::Html, &bytes) else {
                continue;
            };
            let mut current: Option<(Vec<String>, Vec<String>)> = None;
            let mut flush = |current: &mut Option<(Vec<String>, Vec<String>)>| {
                if let Some((headings, words)) = current.take()
                    && let Some(heading) = headings.last()
                    && words.len() >= min_words
                {
                    let mut pieces: Vec<Vec<String>> = words
                        .chunks(PASSAGE_WORDS)
                        .map(<[String]>::to_vec)
                        .collect();
                    // A short tail joins the passage before it.
                    if pieces.len() > 1
                        && pieces.last().is_some_and(|p| p.len() < PASSAGE_WORDS / 2)
                    {
                        let tail = pieces.pop().unwrap_or_default();
                        if let Some(last) = pieces.last_mut() {
                            last.extend(tail);
                        }
                    }
                    let mut ids = Vec::new();
                    for piece in pieces {
                        ids.push(passages.len());
                        passages.push(piece.join(" "));
                    }
                    sections.push((heading.clone(), ids));
                }
            };
            for block in &document.blocks {
                let same = current.as_ref().is_some_and(|(h, _)| *h == block.headings);
                if !same {
                    flush(&mut current);
                    current = Some((block.headings.clone(), Vec::new()));
                }
                if let Some((_, words)) = current.as_mut() {
                    words.extend(block.text.split_whitespace().map(str::to_owned));
                }
            }
            flush(&mut current);
        }
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (heading, _) in &sections {
        *seen.entry(heading.to_lowercase()).or_default() += 1;
    }
    let queries = sections
        .into_iter()
        .filter(|(heading, _)| {
            heading.split_whitespace().count() >= 2 && seen[&heading.to_lowercase()] == 1
        })
        .map(|(text, ids)| Query {
            text,
            relevant: ids.into_iter().collect(),
        })
        .collect();
    (passages, queries)
}

/// Writes each passage to `dir/<number>.txt` (a file already right is left alone, so its
/// modification time and the index's record of it stay).
fn write_passages(dir: &Path, passages: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    for (i, passage) in passages.iter().enumerate() {
        let path = dir.join(format!("{i}.txt"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(passage.as_str()) {
            std::fs::write(path, passage).unwrap();
        }
    }
}

/// The passages indexed with the default model, in the target directory's `name` (kept between
/// runs: an unchanged collection is not embedded again), and how long the update took. An index
/// left by a version of mcp-docs with another schema is thrown away and built again.
pub fn index_passages(
    name: &str,
    passages: &[String],
    progress: &mut dyn Progress,
) -> (Library, Embedder, Report, Duration) {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let docs = scratch.join("passages");
    write_passages(&docs, passages);
    let embedder = Embedder::load(&ModelOptions::default()).expect("the model: run setup-model.sh");
    // One index per model (a model's vectors cannot be mixed with another's).
    let dir = scratch.join(format!("index-{}", embedder.id.name));
    let open = || Library::open(&dir, &docs, Some(&embedder.id), true, true);
    let (library, writer) = match open() {
        Err(DocsError::OtherFormat(_)) => {
            Library::remove(&dir).unwrap();
            open().unwrap()
        }
        opened => opened.unwrap(),
    };
    let started = Instant::now();
    let report = library
        .update(
            &mut writer.unwrap(),
            &Selection::default(),
            Some(&embedder),
            progress,
        )
        .unwrap();
    (library, embedder, report, started.elapsed())
}

/// Latency percentiles of timed runs.
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

pub fn latency(mut times: Vec<Duration>) -> Latency {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Latency {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        mean: times.iter().sum::<Duration>() / times.len() as u32,
    }
}

/// Runs `search` on the first `warm_up` queries untimed, then on every query, timing each.
pub fn time_each(warm_up: usize, queries: &[String], mut search: impl FnMut(&str)) -> Latency {
    for query in queries.iter().take(warm_up) {
        search(query);
    }
    latency(
        queries
            .iter()
            .map(|query| {
                let started = Instant::now();
                search(query);
                started.elapsed()
            })
            .collect(),
    )
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// `101552` as `101,552`.
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The machine's CPU, as /proc/cpuinfo names it.
pub fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Replaces the part of `file` between `<!-- name -->` and `<!-- /name -->` (appending it when
/// absent), so each benchmark rewrites only its own section.
pub fn write_section(file: &Path, name: &str, body: &str) {
    let (open, close) = (format!("<!-- {name} -->"), format!("<!-- /{name} -->"));
    let current = std::fs::read_to_string(file).unwrap_or_else(|_| {
        "# mcp-docs benchmarks\n\nMeasured, not asserted; each section is written by the \
         benchmark it names.\n"
            .into()
    });
    let block = format!("{open}\n{body}{close}");
    let next = match (current.find(&open), current.find(&close)) {
        (Some(a), Some(b)) if a < b => {
            format!("{}{block}{}", &current[..a], &current[b + close.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    };
    std::fs::write(file, next).unwrap();
}

/// Prints each stage and every tenth of it.
#[derive(Default)]
pub struct Printer {
    total: usize,
    step: usize,
}

impl Progress for Printer {
    fn stage(&mut self, name: &str, total: usize) {
        println!("  {name}: {total}");
        self.total = total;
        self.step = 0;
    }

    fn advance(&mut self, done: usize) {
        if self.total > 0 && done * 10 / self.total > self.step {
            self.step = done * 10 / self.total;
            println!("    {done}/{}", self.total);
        }
    }
}
