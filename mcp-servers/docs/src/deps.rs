//! Dependency docs at the versions a project pins, offline: a lock file (`Cargo.lock`,
//! `package-lock.json`, `uv.lock`, `requirements.txt`) names the packages; each one's README and
//! API docs are read from where the package manager keeps it (Cargo's registry, `node_modules`,
//! a virtualenv's site-packages) and written, as Markdown, into a mirror beside the index
//! (`<data dir>/deps/<library>/…`), which is then indexed like a folder.
//!
//! A package is a *library*, named `cargo:serde@1.0.219`, `npm:@types/node@22.1.0` or
//! `pypi:requests@2.32.3`; its documents are under that name in the collection, so a search
//! narrowed to a library is one narrowed to that folder. API docs are the doc comments with the
//! signature of what they document: Rust's `//!` and `///`, TypeScript declarations' JSDoc,
//! Python's docstrings; the code itself is left out.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read as _,
    path::{Path, PathBuf},
};

use serde::Serialize;

/// The mirror's folder, under the collection's data directory.
pub const MIRROR: &str = "deps";
/// Most source files of one package read for API docs.
const MAX_FILES: usize = 2_000;
/// Largest source file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most bytes of docs written for one package.
const MAX_PACKAGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest signature kept, in lines.
const MAX_SIGNATURE_LINES: usize = 12;

/// Where a package comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ecosystem {
    /// crates.io, through Cargo.
    Cargo,
    /// npm.
    Npm,
    /// PyPI, through uv or pip.
    Pypi,
}

impl Ecosystem {
    /// `cargo`, `npm` or `pypi`: what library names start with.
    pub fn name(self) -> &'static str {
        match self {
            Ecosystem::Cargo => "cargo",
            Ecosystem::Npm => "npm",
            Ecosystem::Pypi => "pypi",
        }
    }
}

/// A package at a version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name (`serde`, `@types/node`, `requests`).
    pub name: String,
    /// Its version (`1.0.219`).
    pub version: String,
    /// Where the lock says it is installed, relative to the project (npm's
    /// `node_modules/a/node_modules/b`, or an alias's folder); its usual place when `None`.
    pub location: Option<String>,
    /// Whether it may be missing (npm's optional packages for other platforms).
    pub optional: bool,
}

impl Package {
    /// `cargo:serde@1.0.219`: the library's name, and its folder in the mirror.
    pub fn id(&self) -> String {
        format!("{}:{}@{}", self.ecosystem.name(), self.name, self.version)
    }
}

/// A library name read back: (ecosystem, name, version).
pub fn parse_id(id: &str) -> Option<(&str, &str, &str)> {
    let (ecosystem, rest) = id.split_once(':')?;
    // `@types/node@22.1.0`: the version is after the last `@` that is not the first character.
    let at = rest[1..].rfind('@')? + 1;
    Some((ecosystem, &rest[..at], &rest[at + 1..]))
}

/// The library a document of a dependency collection belongs to: the folder it is under
/// (`cargo:serde@1.0.219/src/lib.rs.md` → `cargo:serde@1.0.219`; a scoped npm package's is two
/// levels, `npm:@types/node@22.1.0`).
pub fn library_of(path: &str) -> Option<&str> {
    let first = path.find('/')?;
    let end = if path[..first].contains(":@") {
        first + 1 + path[first + 1..].find('/')?
    } else {
        first
    };
    Some(&path[..end])
}

/// A lock file, read: its ecosystem and the packages it pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The file (canonical).
    pub path: PathBuf,
    /// Its ecosystem.
    pub ecosystem: Ecosystem,
    /// The packages it pins (from a registry; the project's own are left out).
    pub packages: Vec<Package>,
}

impl Lock {
    /// Reads `Cargo.lock`, `package-lock.json`, `uv.lock` or a `requirements*.txt`.
    pub fn read(path: &Path) -> Result<Self, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bad = |e: String| format!("{}: {e}", path.display());
        let (ecosystem, packages) = match name.as_str() {
            "Cargo.lock" => (Ecosystem::Cargo, cargo_lock(&text).map_err(bad)?),
            "package-lock.json" | "npm-shrinkwrap.json" => {
                (Ecosystem::Npm, package_lock(&text).map_err(bad)?)
            }
            "uv.lock" => (Ecosystem::Pypi, uv_lock(&text).map_err(bad)?),
            _ if name.ends_with(".txt") => (Ecosystem::Pypi, requirements(&text)),
            _ => {
                return Err(format!(
                    "{}: not a lock file mcp-docs reads (Cargo.lock, package-lock.json, uv.lock, \
                     requirements.txt)",
                    path.display()
                ));
            }
        };
        // One library per name and version: the first place it is installed (sorted, so the
        // top-level `node_modules/x` before a nested copy), and not optional if any copy is not.
        let mut packages = packages;
        packages.sort_by_cached_key(|p| (p.id(), p.location.as_ref().map(|l| l.len())));
        packages.dedup_by(|later, first| {
            let same = later.id() == first.id();
            if same {
                first.optional &= later.optional;
            }
            same
        });
        Ok(Self {
            path,
            ecosystem,
            packages,
        })
    }

    /// The project's folder (the lock file's).
    pub fn project(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }
}

/// A TOML lock's `[[package]]` tables (Cargo.lock and uv.lock both list them so).
fn toml_packages<E: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<E>, String> {
    #[derive(serde::Deserialize)]
    struct File<E> {
        #[serde(default = "Vec::new")]
        package: Vec<E>,
    }
    toml::from_str::<File<E>>(text)
        .map(|file| file.package)
        .map_err(|e| e.to_string())
}

/// `[[package]]`s with a registry `source` (workspace members and path dependencies have none).
fn cargo_lock(text: &str) -> Result<Vec<Package>, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        version: String,
        source: Option<String>,
    }
    Ok(toml_packages::<Entry>(text)?
        .into_iter()
        .filter(|p| {
            p.source
                .as_deref()
                .is_some_and(|s| s.starts_with("registry+") || s.starts_with("sparse+"))
        })
        .map(|p| Package {
            ecosystem: Ecosystem::Cargo,
            name: p.name,
            version: p.version,
            location: None,
            optional: false,
        })
        .collect())
}

/// lockfileVersion 2 and 3 (`packages`, keyed by their `node_modules/…` path), or 1
/// (`dependencies`, nested).
fn package_lock(text: &str) -> Result<Vec<Package>, String> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut packages = Vec::new();
    if let Some(entries) = json.get("packages").and_then(|p| p.as_object()) {
        for (key, entry) in entries {
            let Some(at) = key.rfind("node_modules/") else {
                continue; // "" is the project itself
            };
            if entry.get("link").and_then(|l| l.as_bool()) == Some(true) {
                continue;
            }
            let name = entry
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or(&key[at + "node_modules/".len()..]);
            let flag = |key: &str| entry.get(key).and_then(|f| f.as_bool()) == Some(true);
            if let Some(version) = entry.get("version").and_then(|v| v.as_str()) {
                packages.push(Package {
                    ecosystem: Ecosystem::Npm,
                    name: name.to_owned(),
                    version: version.to_owned(),
                    location: Some(key.clone()),
                    optional: flag("optional") || flag("devOptional") || flag("peer"),
                });
            }
        }
    } else if let Some(dependencies) = json.get("dependencies").and_then(|d| d.as_object()) {
        fn walk(map: &serde_json::Map<String, serde_json::Value>, out: &mut Vec<Package>) {
            for (name, entry) in map {
                if let Some(version) = entry.get("version").and_then(|v| v.as_str()) {
                    out.push(Package {
                        ecosystem: Ecosystem::Npm,
                        name: name.clone(),
                        version: version.to_owned(),
                        location: None,
                        optional: entry.get("optional").and_then(|f| f.as_bool()) == Some(true),
                    });
                }
                if let Some(nested) = entry.get("dependencies").and_then(|d| d.as_object()) {
                    walk(nested, out);
                }
            }
        }
        walk(dependencies, &mut packages);
    } else {
        return Err("neither `packages` nor `dependencies`: not a package-lock.json".into());
    }
    Ok(packages)
}

/// `[[package]]`s from a registry (the project itself is `source = { editable = "." }` or
/// `virtual`).
fn uv_lock(text: &str) -> Result<Vec<Package>, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        name: String,
        version: Option<String>,
        #[serde(default)]
        source: toml::Table,
    }
    Ok(toml_packages::<Entry>(text)?
        .into_iter()
        .filter(|p| p.source.contains_key("registry"))
        .filter_map(|p| {
            Some(Package {
                ecosystem: Ecosystem::Pypi,
                name: p.name,
                version: p.version?,
                location: None,
                optional: false,
            })
        })
        .collect())
}

/// `name==version` lines (`name` alone or with another specifier: the version installed).
fn requirements(text: &str) -> Vec<Package> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty() && !line.starts_with('-'))
        .filter_map(|line| {
            let line = line.split(';').next().unwrap_or_default().trim();
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c)))
                .unwrap_or(line.len());
            let name = &line[..end];
            if name.is_empty() {
                return None;
            }
            let rest = line[end..].trim_start();
            // Extras (`name[extra]==…`) are skipped over.
            let rest = rest
                .strip_prefix('[')
                .and_then(|r| r.split_once(']'))
                .map_or(rest, |(_, after)| after.trim_start());
            let version = rest
                .strip_prefix("==")
                .map(|v| v.trim().to_owned())
                .unwrap_or_default();
            Some(Package {
                ecosystem: Ecosystem::Pypi,
                name: normalize(name),
                version,
                location: None,
                optional: false,
            })
        })
        .collect()
}

/// PEP 503's normal form of a Python distribution's name (`Foo_Bar` → `foo-bar`).
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Where packages are installed.
#[derive(Debug, Clone)]
pub struct Places {
    /// Cargo's home (`$CARGO_HOME`, else `~/.cargo`).
    pub cargo_home: PathBuf,
    /// A virtualenv (`--venv`, else the project's `.venv`, else `$VIRTUAL_ENV`).
    pub venv: Option<PathBuf>,
}

impl Places {
    /// The defaults, for a project in `project`.
    pub fn for_project(project: &Path, venv: Option<PathBuf>) -> Self {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
            .unwrap_or_else(|| PathBuf::from(".cargo"));
        let venv = venv
            .or_else(|| Some(project.join(".venv")).filter(|v| v.is_dir()))
            .or_else(|| std::env::var_os("VIRTUAL_ENV").map(PathBuf::from));
        Self { cargo_home, venv }
    }
}

/// One package's docs, as Markdown files (path in the library's folder, text).
type Docs = Vec<(String, String)>;

/// Reads `package`'s docs from where it is installed, or says why it cannot.
pub fn docs_of(package: &Package, project: &Path, places: &Places) -> Result<Docs, String> {
    match package.ecosystem {
        Ecosystem::Cargo => cargo_docs(package, places),
        Ecosystem::Npm => npm_docs(package, project),
        Ecosystem::Pypi => python_docs(package, places),
    }
}

/// What a package's docs are made of, however it is stored: file paths and their bytes.
type Files = Vec<(String, Vec<u8>)>;

fn cargo_docs(package: &Package, places: &Places) -> Result<Docs, String> {
    let folder = format!("{}-{}", package.name, package.version);
    let registry = places.cargo_home.join("registry");
    let unpacked = std::fs::read_dir(registry.join("src"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|index| index.path().join(&folder))
        .find(|dir| dir.is_dir());
    let files = match unpacked {
        Some(dir) => files_in(&dir, is_rust_doc_file)?,
        None => {
            let archive = std::fs::read_dir(registry.join("cache"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|index| index.path().join(format!("{folder}.crate")))
                .find(|file| file.is_file())
                .ok_or_else(|| {
                    format!(
                        "not in Cargo's registry ({}); `cargo fetch` in the project gets it",
                        registry.display()
                    )
                })?;
            crate_files(&archive, &folder)?
        }
    };
    Ok(written(files, ".rs", |path, text| {
        rust_api(&package.name, path, text)
    }))
}

/// A package's docs from its files: each source file (ending in `source`) as the API docs `api`
/// writes of it (`path.md`; left out when it documents nothing), the others (READMEs) as they
/// are, up to [`MAX_PACKAGE_BYTES`] in all.
fn written(files: Files, source: &str, api: impl Fn(&str, &str) -> Option<String>) -> Docs {
    let mut docs = Vec::new();
    let mut total = 0;
    for (path, bytes) in files {
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let doc = if path.ends_with(source) {
            match api(&path, &text) {
                Some(doc) => (format!("{path}.md"), doc),
                None => continue,
            }
        } else {
            (path, text)
        };
        total += doc.1.len();
        if total > MAX_PACKAGE_BYTES {
            break;
        }
        docs.push(doc);
    }
    docs
}

/// A crate's README and its `src/**/*.rs`.
fn is_rust_doc_file(path: &str) -> bool {
    is_readme(path) || (path.starts_with("src/") && path.ends_with(".rs"))
}

fn is_readme(path: &str) -> bool {
    !path.contains('/') && path.to_ascii_lowercase().starts_with("readme")
}

/// The files under `dir` that `wanted` picks (by their path relative to it), at most
/// [`MAX_FILES`], each at most [`MAX_FILE_BYTES`]; links are not followed.
fn files_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> Result<Files, String> {
    let mut files = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .follow_links(false)
        .sort_by_file_name(|a, b| a.cmp(b))
        .build();
    for entry in walker.flatten() {
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let Ok(relative) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let relative = relative.to_string_lossy().replace('\\', "/");
        if !wanted(&relative) || entry.metadata().map_or(true, |m| m.len() > MAX_FILE_BYTES) {
            continue;
        }
        if let Ok(bytes) = std::fs::read(entry.path()) {
            files.push((relative, bytes));
        }
        if files.len() >= MAX_FILES {
            break;
        }
    }
    Ok(files)
}

/// The docs files of a `.crate` (a gzipped tar whose paths start with `name-version/`).
fn crate_files(archive: &Path, folder: &str) -> Result<Files, String> {
    let file = std::fs::File::open(archive).map_err(|e| format!("{}: {e}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    let entries = tar
        .entries()
        .map_err(|e| format!("{}: {e}", archive.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{}: {e}", archive.display()))?;
        if !entry.header().entry_type().is_file() || entry.size() > MAX_FILE_BYTES {
            continue;
        }
        let Ok(path) = entry.path() else { continue };
        let Ok(relative) = path.strip_prefix(folder) else {
            continue;
        };
        let relative = relative.to_string_lossy().into_owned();
        if !is_rust_doc_file(&relative) || relative.split('/').any(|s| s == "..") {
            continue;
        }
        let mut bytes = Vec::new();
        entry
            .by_ref()
            .take(MAX_FILE_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", archive.display()))?;
        files.push((relative, bytes));
        if files.len() >= MAX_FILES {
            break;
        }
    }
    Ok(files)
}

/// A Rust file's API docs as Markdown: the module's `//!` docs, then each documented public
/// item under a heading (its owner's name first for methods, trait items, variants and fields),
/// its signature fenced, its `///` docs. `None` when the file documents nothing.
pub fn rust_api(krate: &str, path: &str, source: &str) -> Option<String> {
    let mut module = String::new();
    let mut items = String::new();
    let mut doc: Vec<&str> = Vec::new();
    // The top-level item the indented ones are in, and whether its members are public by
    // default (a trait's items, an enum's variants) or need their own `pub`.
    let mut owner: Option<(String, Members)> = None;
    let lines: Vec<&str> = source.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indented = line.starts_with(char::is_whitespace);
        if let Some(text) = trimmed.strip_prefix("//!") {
            module.push_str(text.strip_prefix(' ').unwrap_or(text));
            module.push('\n');
            continue;
        }
        if let Some(text) = trimmed.strip_prefix("///") {
            doc.push(text.strip_prefix(' ').unwrap_or(text));
            continue;
        }
        // Attributes sit between docs and their item; blank lines do not end docs either.
        if trimmed.starts_with("#[") || trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with("//") {
            doc.clear();
            continue;
        }
        if !indented && !trimmed.starts_with('}') {
            owner = owner_of(&signature(&lines[i..]));
        }
        // `pub(crate)` and the like are not the crate's API.
        let public = if trimmed.starts_with("pub(") {
            false
        } else if indented {
            match &owner {
                Some((_, Members::Public)) => true,
                Some((_, Members::Own)) => trimmed.starts_with("pub "),
                Some((_, Members::Skipped)) | None => false,
            }
        } else {
            trimmed.starts_with("pub ") || trimmed.starts_with("macro_rules!")
        };
        if !doc.is_empty() && public {
            // A field or a variant is its line.
            let fields = indented && owner.as_ref().is_some_and(|(o, _)| has_fields(o));
            let signature = if fields {
                trimmed
                    .split(['{', '('])
                    .next()
                    .unwrap_or(trimmed)
                    .trim_end()
                    .trim_end_matches(',')
                    .to_owned()
            } else {
                signature(&lines[i..])
            };
            let name = item_name(&signature);
            let heading = match &owner {
                Some((owner, _)) if indented => format!("{owner} › {name}"),
                _ => name,
            };
            items.push_str(&format!(
                "## {heading}\n\n```rust\n{signature}\n```\n\n{}\n\n",
                rustdoc(&doc.join("\n")).trim()
            ));
        }
        doc.clear();
    }
    if module.trim().is_empty() && items.is_empty() {
        return None;
    }
    Some(format!(
        "# {krate}: {path}\n\n{}\n\n{items}",
        rustdoc(&module).trim()
    ))
}

/// Doc comments' Markdown as it reads inside a file of API docs: its headings two levels down
/// (`# Examples` under `## fn parse` becomes `### Examples`), so that they nest under the item
/// and the file, and the lines rustdoc hides in Rust examples (`# use serde;`) left out.
fn rustdoc(markdown: &str) -> String {
    let mut out = String::new();
    let mut fence: Option<bool> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = match fence {
                Some(_) => None,
                None => {
                    let info = trimmed.trim_start_matches(['`', '~']).trim();
                    Some(
                        info.is_empty()
                            || info.split(',').all(|tag| {
                                let tag = tag.trim();
                                tag == "rust"
                                    || matches!(
                                        tag,
                                        "ignore" | "no_run" | "should_panic" | "compile_fail"
                                    )
                                    || tag.starts_with("edition")
                            }),
                    )
                }
            };
        } else if fence == Some(true) && (trimmed == "#" || trimmed.starts_with("# ")) {
            continue;
        } else if fence.is_none() && trimmed.starts_with('#') {
            let level = trimmed.chars().take_while(|c| *c == '#').count();
            if level <= 6 && trimmed[level..].starts_with(' ') {
                out.push_str(&"#".repeat((level + 2).min(6)));
                out.push_str(&trimmed[level..]);
                out.push('\n');
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether an owner's members are fields or variants (`struct Value`, `enum Kind`).
fn has_fields(owner: &str) -> bool {
    ["struct ", "enum ", "union "]
        .iter()
        .any(|k| owner.starts_with(k))
}

/// Whose members an indented item is, and whether they are public.
#[derive(Clone, Copy)]
enum Members {
    /// A trait's items and an enum's variants: public with their owner.
    Public,
    /// An inherent impl's methods and a struct's fields: public when marked `pub`.
    Own,
    /// A trait impl's (documented on the trait) and private items'.
    Skipped,
}

/// A top-level item's name as its members' headings start, and how its members count.
fn owner_of(head: &str) -> Option<(String, Members)> {
    let first = head.split_whitespace().collect::<Vec<_>>().join(" ");
    if first.starts_with("impl") || first.starts_with("unsafe impl") {
        let members = if first.contains(" for ") {
            Members::Skipped
        } else {
            Members::Own
        };
        return Some((first, members));
    }
    let kind = first
        .split(|c: char| c.is_whitespace() || c == '<')
        .find(|w| matches!(*w, "trait" | "enum" | "struct" | "union"))?;
    let members = match (first.starts_with("pub "), kind) {
        (false, _) => Members::Skipped,
        (true, "trait" | "enum") => Members::Public,
        (true, _) => Members::Own,
    };
    Some((item_name(&first), members))
}

/// An item's signature: its lines up to its body's `{` or its `;` (at most a few lines).
fn signature(lines: &[&str]) -> String {
    let mut out = Vec::new();
    for line in lines.iter().take(MAX_SIGNATURE_LINES) {
        let trimmed = line.trim();
        if let Some(at) = trimmed.find(['{', ';']) {
            let head = trimmed[..at].trim_end();
            if !head.is_empty() {
                out.push(head.to_owned());
            }
            break;
        }
        out.push(trimmed.to_owned());
    }
    out.join("\n")
}

/// `pub fn from_str<'a, T>(…)` → `fn from_str`; `pub struct Value` → `struct Value`.
fn item_name(signature: &str) -> String {
    let words: Vec<&str> = signature
        .split(|c: char| c.is_whitespace() || "(<:={".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    let keywords = [
        "fn",
        "struct",
        "enum",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "union",
        "macro_rules!",
    ];
    for (i, word) in words.iter().enumerate() {
        if keywords.contains(word)
            && let Some(name) = words.get(i + 1)
        {
            return format!("{word} {name}");
        }
    }
    // An enum variant or a field: its first word.
    words
        .iter()
        .find(|w| !matches!(**w, "pub" | "async" | "unsafe" | "extern" | "const"))
        .map(|w| w.trim_end_matches(',').to_owned())
        .unwrap_or_else(|| signature.to_owned())
}

fn npm_docs(package: &Package, project: &Path) -> Result<Docs, String> {
    let location = package
        .location
        .clone()
        .unwrap_or_else(|| format!("node_modules/{}", package.name));
    if location.split('/').any(|s| s == ".." || s.is_empty()) {
        return Err(format!(
            "its place in the lock, {location}, is not a folder of the project"
        ));
    }
    let dir = project.join(&location);
    let manifest = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|_| format!("not installed in {} (`npm ci` installs it)", dir.display()))?;
    let manifest: serde_json::Value =
        serde_json::from_str(&manifest).map_err(|e| format!("its package.json: {e}"))?;
    let installed = manifest
        .get("version")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    if installed != package.version {
        return Err(format!(
            "{installed} is installed, not {} as the lock says (`npm ci` installs the locked one)",
            package.version
        ));
    }
    let files = files_in(&dir, |p| {
        is_readme(p) || (p.ends_with(".d.ts") && !p.starts_with("node_modules/"))
    })?;
    Ok(written(files, ".d.ts", |path, text| {
        typescript_api(&package.name, path, text)
    }))
}

/// A TypeScript declaration file's JSDoc as Markdown: each `/** … */` with the declaration
/// after it, under a heading that names it.
pub fn typescript_api(package: &str, path: &str, source: &str) -> Option<String> {
    let mut items = String::new();
    let mut rest = source;
    while let Some(start) = rest.find("/**") {
        let Some(end) = rest[start..].find("*/") else {
            break;
        };
        let comment = &rest[start + 3..start + end];
        rest = &rest[start + end + 2..];
        let text: Vec<&str> = comment
            .lines()
            .map(|l| {
                let l = l.trim();
                let l = l.strip_prefix('*').unwrap_or(l);
                l.strip_prefix(' ').unwrap_or(l)
            })
            .collect();
        let text = text.join("\n").trim().to_owned();
        let lines: Vec<&str> = rest
            .lines()
            .map(str::trim)
            .skip_while(|l| l.is_empty())
            .collect();
        if lines.first().is_none_or(|l| l.starts_with("/**")) || text.is_empty() {
            continue;
        }
        let declaration = signature(&lines);
        let name = declaration
            .split(|c: char| c.is_whitespace() || "(<:=?;".contains(c))
            .filter(|w| !w.is_empty())
            .find(|w| {
                !matches!(
                    *w,
                    "export"
                        | "declare"
                        | "default"
                        | "function"
                        | "class"
                        | "interface"
                        | "type"
                        | "const"
                        | "let"
                        | "var"
                        | "namespace"
                        | "enum"
                        | "abstract"
                        | "readonly"
                        | "static"
                        | "public"
                        | "protected"
                        | "async"
                        | "module"
                )
            })
            .unwrap_or("(anonymous)")
            .to_owned();
        items.push_str(&format!(
            "## {name}\n\n```ts\n{declaration}\n```\n\n{text}\n\n"
        ));
    }
    (!items.is_empty()).then(|| format!("# {package}: {path}\n\n{items}"))
}

fn python_docs(package: &Package, places: &Places) -> Result<Docs, String> {
    let venv = places.venv.as_ref().ok_or(
        "no virtualenv to read it from: give --venv DIR (or keep one in the project's .venv)",
    )?;
    let site = site_packages(venv)
        .ok_or_else(|| format!("{} has no lib/python3*/site-packages", venv.display()))?;
    let wanted = normalize(&package.name);
    let info = std::fs::read_dir(&site)
        .map_err(|e| format!("{}: {e}", site.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.strip_suffix(".dist-info")
                .and_then(|stem| stem.rsplit_once('-'))
                .is_some_and(|(name, version)| {
                    normalize(name) == wanted
                        && (package.version.is_empty() || version == package.version)
                })
        })
        .ok_or_else(|| {
            format!(
                "{}{} is not installed in {} (`uv sync` or `pip install -r` installs it)",
                package.name,
                if package.version.is_empty() {
                    String::new()
                } else {
                    format!(" {}", package.version)
                },
                venv.display()
            )
        })?;
    let mut docs = Vec::new();
    let metadata = std::fs::read_to_string(info.join("METADATA")).unwrap_or_default();
    if let Some((readme, markdown)) = long_description(&metadata) {
        docs.push((
            if markdown { "README.md" } else { "README.rst" }.to_owned(),
            readme,
        ));
    }
    // RECORD lists the distribution's files: its Python modules are read for docstrings.
    let record = std::fs::read_to_string(info.join("RECORD")).unwrap_or_default();
    let mut total = 0;
    let modules: BTreeSet<&str> = record
        .lines()
        .filter_map(|line| line.split(',').next())
        .filter(|p| p.ends_with(".py") && !p.starts_with("..") && !p.starts_with('/'))
        .filter(|p| {
            !p.split('/')
                .any(|s| s == ".." || s == "tests" || s == "test")
        })
        .take(MAX_FILES)
        .collect();
    for module in modules {
        let path = site.join(module);
        if std::fs::metadata(&path).map_or(true, |m| m.len() > MAX_FILE_BYTES || !m.is_file()) {
            continue;
        }
        let Ok(source) = std::fs::read_to_string(&path) else {
            continue;
        };
        if let Some(doc) = python_api(&package.name, module, &source) {
            total += doc.len();
            if total > MAX_PACKAGE_BYTES {
                break;
            }
            docs.push((format!("{module}.md"), doc));
        }
    }
    Ok(docs)
}

fn site_packages(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
}

/// METADATA's long description (its body after the headers), and whether it is Markdown.
fn long_description(metadata: &str) -> Option<(String, bool)> {
    let (headers, body) = metadata.split_once("\n\n")?;
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    let markdown = headers.lines().any(|h| {
        h.to_ascii_lowercase()
            .starts_with("description-content-type: text/markdown")
    });
    Some((body.to_owned(), markdown))
}

/// A Python module's docstrings as Markdown: the module's, then each public class's and
/// function's (methods under their class), with its signature fenced.
pub fn python_api(package: &str, path: &str, source: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    // The module docstring: the first statement.
    while i < lines.len() && (lines[i].trim().is_empty() || lines[i].trim_start().starts_with('#'))
    {
        i += 1;
    }
    let module = docstring(&lines, i).map(|(text, end)| {
        i = end;
        text
    });
    let mut classes: Vec<(usize, String)> = Vec::new();
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        let keyword = ["def ", "async def ", "class "]
            .into_iter()
            .find(|k| trimmed.starts_with(k));
        let Some(keyword) = keyword else {
            i += 1;
            continue;
        };
        classes.retain(|(at, _)| *at < indent);
        // The signature runs to the line ending in `:` (outside brackets, roughly).
        let mut end = i;
        while end < lines.len() && end - i < MAX_SIGNATURE_LINES {
            if lines[end].trim_end().ends_with(':') {
                break;
            }
            end += 1;
        }
        let signature: Vec<&str> = lines[i..=end.min(lines.len() - 1)]
            .iter()
            .map(|l| l.trim())
            .collect();
        let signature = signature.join(" ");
        let name = trimmed[keyword.len()..]
            .split(|c: char| c == '(' || c == ':' || c.is_whitespace() || c == '[')
            .next()
            .unwrap_or_default()
            .to_owned();
        let public = !name.starts_with('_') || name == "__init__" || name == "__call__";
        let owner: Vec<&str> = classes.iter().map(|(_, c)| c.as_str()).collect();
        if let Some((text, _)) = docstring(&lines, end + 1)
            && public
            && !owner.iter().any(|c| c.starts_with('_'))
        {
            let mut heading = owner.join(" › ");
            if !heading.is_empty() {
                heading.push_str(" › ");
            }
            heading.push_str(&format!("{} {name}", keyword.trim_end()));
            out.push_str(&format!(
                "## {heading}\n\n```python\n{}\n```\n\n{text}\n\n",
                signature.trim_end_matches(':')
            ));
        }
        if keyword == "class " {
            classes.push((indent, name));
        }
        i = end + 1;
    }
    if module.is_none() && out.is_empty() {
        return None;
    }
    let mut doc = format!("# {package}: {path}\n\n");
    if let Some(module) = module {
        doc.push_str(&module);
        doc.push_str("\n\n");
    }
    doc.push_str(&out);
    Some(doc)
}

/// The docstring that starts at line `at` (after blank lines), and the line after it.
fn docstring(lines: &[&str], at: usize) -> Option<(String, usize)> {
    let mut i = at;
    while i < lines.len() && lines[i].trim().is_empty() {
        i += 1;
    }
    let first = lines.get(i)?.trim_start();
    let body = first
        .strip_prefix('r')
        .or_else(|| first.strip_prefix('u'))
        .unwrap_or(first);
    let quote = ["\"\"\"", "'''"]
        .into_iter()
        .find(|q| body.starts_with(q))?;
    let body = &body[3..];
    if let Some(end) = body.find(quote) {
        return Some((body[..end].trim().to_owned(), i + 1));
    }
    let mut text = vec![body];
    let mut indent: Option<usize> = None;
    for (n, line) in lines.iter().enumerate().skip(i + 1) {
        let (content, done) = match line.find(quote) {
            Some(end) => (&line[..end], true),
            None => (*line, false),
        };
        if !content.trim().is_empty() {
            let own = content.len() - content.trim_start().len();
            indent = Some(indent.map_or(own, |i| i.min(own)));
        }
        text.push(content);
        if done {
            let cut = indent.unwrap_or(0);
            let text: Vec<&str> = text
                .iter()
                .enumerate()
                .map(|(k, l)| {
                    if k == 0 {
                        l.trim()
                    } else {
                        l.get(cut..).unwrap_or(l.trim_start())
                    }
                })
                .collect();
            return Some((text.join("\n").trim().to_owned(), n + 1));
        }
    }
    None
}

/// What syncing a lock's packages into the mirror did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// Libraries whose docs were written.
    pub added: Vec<String>,
    /// Libraries left as they were.
    pub unchanged: usize,
    /// Libraries no longer in the lock, dropped.
    pub removed: Vec<String>,
    /// Optional packages not installed (another platform's), left out.
    pub optional_missing: usize,
    /// Libraries with no README and no documented API: nothing to index.
    pub undocumented: Vec<String>,
    /// Libraries that could not be read, with the reason.
    pub failed: Vec<(String, String)>,
}

/// The libraries in a mirror (`cargo:serde@1.0.219`, …), each with its folder.
pub fn libraries(mirror: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(mirror) else {
        return found;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        if parse_id(&name).is_some() {
            found.insert(name, entry.path());
        } else if name.contains(':') {
            // `npm:@scope`: its packages are one level down.
            for inner in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let id = format!("{name}/{}", inner.file_name().to_string_lossy());
                if parse_id(&id).is_some() && inner.path().is_dir() {
                    found.insert(id, inner.path());
                }
            }
        }
    }
    found
}

/// Brings the mirror in line with the lock: each package's docs written once per version (into
/// a hidden folder, then renamed into place, so a library's folder is whole or absent), those
/// of packages the lock no longer names removed.
pub fn sync(lock: &Lock, places: &Places, mirror: &Path) -> std::io::Result<SyncReport> {
    std::fs::create_dir_all(mirror)?;
    let mut report = SyncReport::default();
    let present = libraries(mirror);
    let wanted: BTreeMap<String, &Package> = lock.packages.iter().map(|p| (p.id(), p)).collect();
    for (id, dir) in &present {
        if !wanted.contains_key(id) {
            std::fs::remove_dir_all(dir)?;
            report.removed.push(id.clone());
        }
    }
    for (id, package) in &wanted {
        if package.version.is_empty() {
            report.failed.push((
                format!("{}:{}", package.ecosystem.name(), package.name),
                "no version pinned (`name==version`); pin it to index its docs".into(),
            ));
            continue;
        }
        if present.contains_key(id) {
            report.unchanged += 1;
            continue;
        }
        match docs_of(package, lock.project(), places) {
            Ok(docs) if docs.is_empty() => report.undocumented.push(id.clone()),
            Ok(docs) => {
                write_library(mirror, id, &docs)?;
                report.added.push(id.clone());
            }
            Err(_) if package.optional => report.optional_missing += 1,
            Err(reason) => report.failed.push((id.clone(), reason)),
        }
    }
    Ok(report)
}

fn write_library(mirror: &Path, id: &str, docs: &Docs) -> std::io::Result<()> {
    let part = mirror.join(format!(".part-{}", id.replace(['/', ':', '@'], "_")));
    if part.exists() {
        std::fs::remove_dir_all(&part)?;
    }
    for (path, text) in docs {
        // Paths come from the package; none may climb out of its folder.
        if path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
            || path.starts_with('/')
        {
            continue;
        }
        let target = part.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    let target = mirror.join(id);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&part, &target)
}

/// A dependency collection: a lock file and the mirror its packages' docs are written into.
#[derive(Debug)]
pub struct Dependencies {
    /// The lock file (canonical).
    pub lock: PathBuf,
    mirror: PathBuf,
    venv: Option<PathBuf>,
}

impl Dependencies {
    /// The dependencies of `lock`, mirrored in `data_dir` (`venv` for Python's).
    pub fn new(lock: &Path, data_dir: &Path, venv: Option<PathBuf>) -> Self {
        Self {
            lock: lock.to_owned(),
            mirror: Self::mirror_of(data_dir),
            venv,
        }
    }

    /// The folder of `data_dir` the docs are written in (what the index reads).
    pub fn mirror_of(data_dir: &Path) -> PathBuf {
        data_dir.join(MIRROR)
    }

    /// Reads the lock again and brings the mirror in line with it.
    pub fn sync(&self) -> Result<SyncReport, String> {
        let lock = Lock::read(&self.lock)?;
        let places = Places::for_project(lock.project(), self.venv.clone());
        sync(&lock, &places, &self.mirror).map_err(|e| format!("{}: {e}", self.mirror.display()))
    }

    /// The libraries mirrored, each with its folder.
    pub fn libraries(&self) -> BTreeMap<String, PathBuf> {
        libraries(&self.mirror)
    }
}

/// Whether the library `id` (`cargo:serde@1.0.219`) is what `wanted` names: the same id, or
/// its name with or without ecosystem and version (`serde`, `cargo:serde`, `serde@1.0.219`),
/// names compared as their registry does (`Foo_Bar` is `foo-bar` on PyPI).
pub fn names(id: &str, wanted: &str) -> bool {
    let Some((ecosystem, name, version)) = parse_id(id) else {
        return false;
    };
    let (wanted_ecosystem, rest) = match wanted.split_once(':') {
        Some((e, rest)) => (Some(e), rest),
        None => (None, wanted),
    };
    let (wanted_name, wanted_version) = match rest.get(1..).and_then(|r| r.rfind('@')) {
        Some(at) => (&rest[..at + 1], Some(&rest[at + 2..])),
        None => (rest, None),
    };
    let same_name = if ecosystem == "pypi" {
        normalize(name) == normalize(wanted_name)
    } else {
        name.eq_ignore_ascii_case(wanted_name)
    };
    same_name
        && wanted_ecosystem.is_none_or(|e| e.eq_ignore_ascii_case(ecosystem))
        && wanted_version.is_none_or(|v| v == version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_name_their_registry_packages() {
        let cargo = cargo_lock(
            "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
             [[package]]\nname = \"serde\"\nversion = \"1.0.219\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        )
        .unwrap();
        assert_eq!(cargo.len(), 1);
        assert_eq!(cargo[0].id(), "cargo:serde@1.0.219");

        let npm = package_lock(
            r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"},
                "node_modules/@types/node": {"version": "22.1.0"},
                "node_modules/a/node_modules/b": {"version": "1.0.0"},
                "node_modules/local": {"link": true}}}"#,
        )
        .unwrap();
        let ids: Vec<String> = npm.iter().map(Package::id).collect();
        assert_eq!(ids, ["npm:@types/node@22.1.0", "npm:b@1.0.0"]);
        assert_eq!(
            npm[1].location.as_deref(),
            Some("node_modules/a/node_modules/b")
        );
        assert_eq!(
            library_of("npm:@types/node@22.1.0/index.d.ts.md"),
            Some("npm:@types/node@22.1.0")
        );
        assert_eq!(
            library_of("cargo:serde@1.0.219/src/lib.rs.md"),
            Some("cargo:serde@1.0.219")
        );
        assert_eq!(library_of("README.md"), None);
        assert_eq!(
            parse_id("npm:@types/node@22.1.0"),
            Some(("npm", "@types/node", "22.1.0"))
        );

        let uv = uv_lock(
            "[[package]]\nname = \"app\"\nversion = \"0.1.0\"\nsource = { editable = \".\" }\n\n\
             [[package]]\nname = \"requests\"\nversion = \"2.32.3\"\n\
             source = { registry = \"https://pypi.org/simple\" }\n",
        )
        .unwrap();
        assert_eq!(uv[0].id(), "pypi:requests@2.32.3");

        let pip = requirements(
            "requests==2.32.3  # http\nrich[jupyter]==13.7.1\n-r other.txt\nFlask_Login>=3\n",
        );
        let ids: Vec<String> = pip.iter().map(Package::id).collect();
        assert_eq!(
            ids,
            [
                "pypi:requests@2.32.3",
                "pypi:rich@13.7.1",
                "pypi:flask-login@"
            ]
        );
        assert_eq!(normalize("Foo_Bar.baz"), "foo-bar-baz");
        assert!(names("cargo:serde@1.0.219", "serde"));
        assert!(names("cargo:serde@1.0.219", "cargo:serde@1.0.219"));
        assert!(names("cargo:serde@1.0.219", "serde@1.0.219"));
        assert!(!names("cargo:serde@1.0.219", "serde@1.0.200"));
        assert!(!names("cargo:serde@1.0.219", "npm:serde"));
        assert!(!names("cargo:serde_json@1.0.1", "serde"));
        assert!(names("npm:@types/node@22.1.0", "@types/node"));
        assert!(names("npm:@types/node@22.1.0", "@types/node@22.1.0"));
        assert!(names("pypi:typing-extensions@4.12.2", "typing_extensions"));
    }

    #[test]
    fn rust_docs_keep_comments_and_signatures_not_code() {
        let source = r#"//! Serialization, the module.
//!
//! More about it.

use std::fmt;

/// A value that can be written.
#[derive(Debug)]
pub struct Value {
    /// How big it is.
    pub size: usize,
    secret: u8,
}

/// Private helper, left out.
fn helper() {}

impl Value {
    /// Makes a value
    /// of a size.
    pub fn new(size: usize)
        -> Self {
        let hidden_body = 1;
        Self { size, secret: 0 }
    }
}

pub trait Write {
    /// Writes it.
    fn write(&self, out: &mut dyn fmt::Write) -> fmt::Result;
}
"#;
        let doc = rust_api("demo", "src/lib.rs", source).unwrap();
        assert!(
            doc.starts_with("# demo: src/lib.rs\n\nSerialization, the module.\n\nMore about it.")
        );
        assert!(
            doc.contains(
                "## struct Value\n\n```rust\npub struct Value\n```\n\nA value that can be written."
            ),
            "{doc}"
        );
        assert!(doc.contains("## impl Value › fn new\n\n```rust\npub fn new(size: usize)\n-> Self\n```\n\nMakes a value\nof a size."), "{doc}");
        assert!(doc.contains("## trait Write › fn write"), "{doc}");
        assert!(doc.contains("## struct Value › size"), "{doc}");
        assert!(
            !doc.contains("hidden_body") && !doc.contains("helper"),
            "{doc}"
        );
        assert!(rust_api("demo", "src/x.rs", "fn main() {}\n").is_none());

        let headed = rust_api(
            "demo",
            "src/lib.rs",
            "//! # Guide\n//!\n//! ```\n//! # use demo::x;\n//! x();\n//! ```\n\n/// Parses.\n///\n/// # Errors\n///\n/// When it cannot.\npub fn parse() {}\n",
        )
        .unwrap();
        assert!(headed.contains("### Guide\n\n```\nx();\n```"), "{headed}");
        assert!(
            headed.contains("## fn parse\n\n```rust\npub fn parse()\n```\n\nParses.\n\n### Errors"),
            "{headed}"
        );
    }

    #[test]
    fn typescript_and_python_docs() {
        let dts = "/** The options. */\nexport interface Options {\n  /** Seconds to wait. */\n  timeout?: number;\n}\n/** Fetches it. */\nexport declare function get(url: string): Promise<string>;\n";
        let doc = typescript_api("pkg", "index.d.ts", dts).unwrap();
        assert!(
            doc.contains("## Options\n\n```ts\nexport interface Options\n```\n\nThe options."),
            "{doc}"
        );
        assert!(
            doc.contains("## timeout\n\n```ts\ntimeout?: number\n```\n\nSeconds to wait."),
            "{doc}"
        );
        assert!(
            doc.contains(
                "## get\n\n```ts\nexport declare function get(url: string): Promise<string>\n```"
            ),
            "{doc}"
        );

        let py = "\"\"\"HTTP for humans.\"\"\"\nimport os\n\nclass Session(object):\n    \"\"\"A session.\n\n    Keeps cookies.\n    \"\"\"\n\n    def get(self, url,\n            **kwargs):\n        \"\"\"Sends a GET.\"\"\"\n        body = 1\n\n    def _private(self):\n        \"\"\"Hidden.\"\"\"\n\ndef request(method, url):\n    '''Sends a request.'''\n";
        let doc = python_api("requests", "requests/api.py", py).unwrap();
        assert!(
            doc.starts_with("# requests: requests/api.py\n\nHTTP for humans."),
            "{doc}"
        );
        assert!(doc.contains("## class Session\n\n```python\nclass Session(object)\n```\n\nA session.\n\nKeeps cookies."), "{doc}");
        assert!(doc.contains("## Session › def get\n\n```python\ndef get(self, url, **kwargs)\n```\n\nSends a GET."), "{doc}");
        assert!(doc.contains("## def request"), "{doc}");
        assert!(
            !doc.contains("Hidden") && !doc.contains("body = 1"),
            "{doc}"
        );
    }
}
