//! Named collections: `mcp-docs serve|index [NAME=]SOURCE…`. Each source (a folder, one file or
//! a web prefix) is indexed apart, in a data directory of its own, so adding, updating or dropping one leaves
//! the others' index as it was; a search covers them all, or the one it names.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use crate::{
    deps::{Dependencies, Ecosystem},
    index::{DocsError, Library, Selection, Writer},
    web::{Prefix, Site},
};

/// Longest collection name.
pub const MAX_NAME: usize = 64;

/// Whether `name` may name a collection: 1 to [`MAX_NAME`] letters, digits and `. _ - + : @`,
/// starting with a letter or digit (so `cargo:serde@1.0.219` is one, and none is a path).
pub fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+:@".contains(c))
}

/// A name for a source that was not given one: its file or folder name with anything a name
/// may not hold made `-` (`docs` for `~/work/docs`).
pub fn default_name(path: &Path) -> String {
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    name_from(&base)
}

/// A name for a web source that was not given one: its host and path (`doc.rust-lang.org-book`
/// for `https://doc.rust-lang.org/book/`).
pub fn default_web_name(prefix: &Prefix) -> String {
    let url = &prefix.start;
    let mut base = url.host_str().unwrap_or("web").to_owned();
    for segment in url.path().split('/').filter(|s| !s.is_empty()) {
        base.push('-');
        base.push_str(segment);
    }
    name_from(&base)
}

/// `base` with anything a name may not hold made `-`, cut to [`MAX_NAME`].
fn name_from(base: &str) -> String {
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+:@".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME)
        .collect();
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        name.insert(0, 'd');
        name.truncate(MAX_NAME);
    }
    name
}

/// `name: `, what a citation starts with when there are several collections (nothing for the
/// empty name a lone collection is searched under).
pub fn label(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!("{name}: ")
    }
}

/// What a collection indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Every document in a folder (canonical).
    Folder(PathBuf),
    /// One file (canonical).
    File(PathBuf),
    /// The pages under a URL prefix, crawled into a mirror beside the index.
    Web(Prefix),
    /// The packages a lock file (canonical) pins, their docs written into a mirror beside the
    /// index.
    Deps(PathBuf, Ecosystem),
    /// A collection of a shared store that this process serves and does not update (`mcp-docs
    /// serve --store URL` with no SOURCE): what the store records of it.
    Stored {
        /// The kind it was indexed as (`folder`, `file`, `web`, `deps`).
        kind: String,
        /// Its source as shown (a path on the machine that indexes it, or a URL).
        source: String,
        /// The folder its paths are relative to there.
        root: PathBuf,
    },
}

impl Source {
    /// The folder the collection's paths are relative to: the folder, the file's own, or the
    /// mirror a web or dependency source is written into in the collection's `data_dir`.
    pub fn root(&self, data_dir: &Path) -> PathBuf {
        match self {
            Source::Folder(folder) => folder.clone(),
            Source::File(file) => file.parent().unwrap_or(Path::new("/")).to_owned(),
            Source::Web(_) => Site::mirror_of(data_dir),
            Source::Deps(..) => Dependencies::mirror_of(data_dir),
            Source::Stored { root, .. } => root.clone(),
        }
    }

    /// The one path the collection holds, relative to its root, for a file.
    pub fn only(&self) -> Option<String> {
        match self {
            Source::File(file) => file.file_name().map(|n| n.to_string_lossy().into_owned()),
            Source::Folder(_) | Source::Web(_) | Source::Deps(..) | Source::Stored { .. } => None,
        }
    }

    /// `folder`, `file`, `web` or `deps`.
    pub fn kind(&self) -> &str {
        match self {
            Source::Folder(_) => "folder",
            Source::File(_) => "file",
            Source::Web(_) => "web",
            Source::Deps(..) => "deps",
            Source::Stored { kind, .. } => kind,
        }
    }

    /// The source as it is shown: its path or URL.
    pub fn display(&self) -> String {
        match self {
            Source::Folder(path) | Source::File(path) | Source::Deps(path, _) => {
                path.display().to_string()
            }
            Source::Web(prefix) => prefix.start.to_string(),
            Source::Stored { source, .. } => source.clone(),
        }
    }
}

/// `[NAME=]SOURCE` as given on the command line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The collection's name.
    pub name: String,
    /// Whether the name was given (else it is [`default_name`]'s).
    pub named: bool,
    /// What it indexes.
    pub source: Source,
}

/// `[NAME=]REST` read: the text before the first `=` is a name when it is a valid one (a path
/// whose name holds `=` is given as `./a=b`); one that is neither a name nor a path is refused.
fn split_name(text: &str) -> Result<(Option<String>, &str), String> {
    match text.split_once('=') {
        Some((name, rest)) if valid_name(name) => Ok((Some(name.to_owned()), rest)),
        Some((name, _)) if !name.contains('/') && !Path::new(text).exists() => Err(format!(
            "{name:?} cannot name a collection: use letters, digits and . _ - + : @ \
             (at most {MAX_NAME}, starting with a letter or digit)"
        )),
        _ => Ok((None, text)),
    }
}

impl Spec {
    /// Reads `[NAME=]SOURCE`: the text before the first `=` is a name when it is a valid one
    /// (a folder whose name holds `=` is given as `./a=b`). The source must exist.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, source) = split_name(text)?;
        if source.starts_with("http://") || source.starts_with("https://") {
            let prefix = Prefix::parse(source)?;
            return Ok(Self {
                named: name.is_some(),
                name: name.unwrap_or_else(|| default_web_name(&prefix)),
                source: Source::Web(prefix),
            });
        }
        let path = Path::new(if source.is_empty() { "." } else { source });
        let canonical = path.canonicalize().map_err(|e| {
            format!(
                "{}: {e} (give a folder or a file of documents)",
                path.display()
            )
        })?;
        let named = name.is_some();
        let name = name.unwrap_or_else(|| default_name(&canonical));
        let source = if canonical.is_dir() {
            Source::Folder(canonical)
        } else if canonical.is_file() {
            Source::File(canonical)
        } else {
            return Err(format!(
                "{} is neither a folder nor a file",
                canonical.display()
            ));
        };
        Ok(Self {
            named,
            name,
            source,
        })
    }

    /// Reads `[NAME=]LOCK` (`--deps`): a lock file mcp-docs reads, named after its ecosystem
    /// (`cargo`, `npm`, `pypi`) unless named.
    pub fn parse_deps(text: &str) -> Result<Self, String> {
        let (name, file) = split_name(text)?;
        let lock = crate::deps::Lock::read(Path::new(file))?;
        Ok(Self {
            named: name.is_some(),
            name: name.unwrap_or_else(|| lock.ecosystem.name().to_owned()),
            source: Source::Deps(lock.path, lock.ecosystem),
        })
    }
}

/// Names every spec uniquely, or says which two share a name and how to tell them apart.
pub fn check_names(specs: &[Spec]) -> Result<(), String> {
    for (i, spec) in specs.iter().enumerate() {
        if let Some(other) = specs[..i].iter().find(|s| s.name == spec.name) {
            return Err(format!(
                "two collections are named {:?} ({} and {}); name them: NAME=SOURCE",
                spec.name,
                other.source.display(),
                spec.source.display()
            ));
        }
    }
    Ok(())
}

/// A collection, open: its index and the writer that keeps it up to date.
pub struct Collection {
    /// Its name.
    pub name: String,
    /// What it indexes.
    pub source: Source,
    /// Its index.
    pub library: Library,
    /// `None` when another process holds the index (then `reindex` says so).
    pub writer: Mutex<Option<Writer>>,
    /// Which files an update reads.
    pub selection: Selection,
    /// A web collection's site (its mirror and crawl state).
    pub site: Option<Site>,
    /// A dependency collection's lock file and mirror.
    pub deps: Option<Dependencies>,
}

impl Collection {
    /// A collection over `library`, whose writer (if this process holds it) is `writer`.
    pub fn new(
        name: impl Into<String>,
        source: Source,
        library: Library,
        writer: Option<Writer>,
        selection: Selection,
    ) -> Self {
        Self {
            name: name.into(),
            source,
            library,
            writer: Mutex::new(writer),
            selection,
            site: None,
            deps: None,
        }
    }

    /// The same collection, the docs of a lock file's packages.
    pub fn with_deps(mut self, deps: Dependencies) -> Self {
        self.deps = Some(deps);
        self
    }

    /// The same collection, a web one crawled as `site` says.
    pub fn with_site(mut self, site: Site) -> Self {
        self.site = Some(site);
        self
    }

    /// The collection of a whole folder (`library`'s), named after it.
    pub fn of_folder(library: Library, writer: Option<Writer>) -> Self {
        let root = library.root().to_owned();
        Self::new(
            default_name(&root),
            Source::Folder(root),
            library,
            writer,
            Selection::default(),
        )
    }

    /// The libraries of a dependency collection (`cargo:serde@1.0.219`), sorted: its mirror's,
    /// or, for one served from the store, those its indexed documents are in.
    pub fn libraries(&self) -> Result<Vec<String>, DocsError> {
        if let Some(deps) = &self.deps {
            return Ok(deps.libraries().into_keys().collect());
        }
        if self.source.kind() != "deps" {
            return Ok(Vec::new());
        }
        let mut ids: Vec<String> = self
            .library
            .sources()?
            .iter()
            .filter_map(|source| crate::deps::library_of(&source.path))
            .map(str::to_owned)
            .collect();
        ids.dedup();
        Ok(ids)
    }

    /// The selection of an update of `path` (relative to the collection's folder; all of it
    /// when `None`). A file's collection holds that file only.
    pub fn selection_of(&self, path: Option<String>) -> Result<Selection, String> {
        if matches!(self.source, Source::Stored { .. }) {
            return Err(format!(
                "the collection {} is served from the shared store and updated where its source \
                 is (`mcp-docs index --store … {}=SOURCE` there), not by this process",
                self.name, self.name
            ));
        }
        if (self.site.is_some() || self.deps.is_some()) && path.is_some() {
            return Err(format!(
                "the {} collection {} is updated whole; reindex it without a path",
                self.source.kind(),
                self.name
            ));
        }
        let scope = match (self.source.only(), path) {
            (Some(only), Some(path)) if path.trim_matches('/') != only => {
                return Err(format!(
                    "the collection {} holds only {only}; {path} is not in it",
                    self.name
                ));
            }
            (Some(only), _) => Some(only),
            (None, path) => path,
        };
        Ok(Selection {
            scope,
            ..self.selection.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_words_not_paths() {
        for good in [
            "docs",
            "cargo:serde@1.0.219",
            "npm:@types",
            "a",
            "v1.2_beta-3+x",
        ] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "-x",
            ".hidden",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert_eq!(default_name(Path::new("/home/me/My Notes")), "My-Notes");
        assert_eq!(default_name(Path::new("/srv/.docs")), "d.docs");
        assert!(valid_name(&default_name(Path::new("/x/ééé"))));
    }

    #[test]
    fn specs_name_folders_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::create_dir(root.join("guide")).unwrap();
        std::fs::write(root.join("notes.md"), "# Notes\n").unwrap();
        std::fs::create_dir(root.join("a=b")).unwrap();

        let named = Spec::parse(&format!("handbook={}", root.join("guide").display())).unwrap();
        assert_eq!(named.name, "handbook");
        assert!(named.named);
        assert_eq!(named.source, Source::Folder(root.join("guide")));

        let file = Spec::parse(root.join("notes.md").to_str().unwrap()).unwrap();
        assert_eq!(file.name, "notes.md");
        assert_eq!(file.source.root(Path::new("/data")), root);
        assert_eq!(file.source.only().as_deref(), Some("notes.md"));

        // A folder whose name holds `=` is a path, not a name.
        let odd = Spec::parse(root.join("a=b").to_str().unwrap()).unwrap();
        assert_eq!(odd.source, Source::Folder(root.join("a=b")));
        assert!(!odd.named);

        let web = Spec::parse("https://doc.rust-lang.org/book/").unwrap();
        assert_eq!(web.name, "doc.rust-lang.org-book");
        assert_eq!(web.source.kind(), "web");
        let named_web = Spec::parse("std=https://doc.rust-lang.org/std/").unwrap();
        assert_eq!(named_web.name, "std");
        let refused = Spec::parse("https://x/docs?page=2").unwrap_err();
        assert!(refused.contains("query"), "{refused}");

        let missing = Spec::parse(&format!("x={}", root.join("nope").display())).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
        let bad = Spec::parse("bad name=.").unwrap_err();
        assert!(bad.contains("cannot name a collection"), "{bad}");

        let twice = [named.clone(), Spec { ..named }];
        let clash = check_names(&twice).unwrap_err();
        assert!(clash.contains("NAME=SOURCE"), "{clash}");
    }
}
