//! What the command line withholds inside the allowed directories: denied paths (`--deny GLOB`,
//! absent from every listing, search and grep, and refused to every tool) and read-only roots
//! (`DIR:ro`, whose files every tool may read and none may change).
//!
//! Both are decided on absolute paths, so they hold however a client's roots narrow the
//! sandbox: a relative glob is anchored at each allowed directory (under the name it was given
//! and its real one), and a path is checked as it was asked for and where it really is (a link
//! beneath the root followed), with every ancestor, so a link to `.env` or a path into a denied
//! directory is refused like the denied path itself. Globs match case-insensitively: `.ENV` on
//! a case-insensitive filesystem is the same file.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// Denied globs and read-only roots. The default withholds nothing (and costs nothing).
#[derive(Debug, Default, Clone)]
pub struct Policy {
    deny: Option<Arc<Deny>>,
    read_only: Vec<PathBuf>,
}

#[derive(Debug)]
struct Deny {
    set: GlobSet,
    /// The pattern each glob of `set` came from, as the user wrote it.
    patterns: Vec<String>,
}

impl Policy {
    /// `deny` globs (relative ones anchored at each of `roots`) and the `read_only` roots.
    pub fn new(deny: &[String], roots: &[PathBuf], read_only: &[PathBuf]) -> Result<Self, String> {
        let mut anchors: Vec<PathBuf> = Vec::new();
        // Only globs need anchoring (a start without --deny pays no canonicalize).
        for root in roots.iter().filter(|_| !deny.is_empty()) {
            let absolute = std::path::absolute(root).unwrap_or_else(|_| root.clone());
            for anchor in [
                absolute.clone(),
                std::fs::canonicalize(root).unwrap_or(absolute),
            ] {
                if !anchors.contains(&anchor) {
                    anchors.push(anchor);
                }
            }
        }
        let deny = if deny.is_empty() {
            None
        } else {
            let mut builder = GlobSetBuilder::new();
            let mut patterns = Vec::new();
            for pattern in deny {
                let pattern = pattern.trim();
                if pattern.is_empty() {
                    return Err("--deny takes a glob, not an empty string".to_owned());
                }
                let anchored: Vec<String> = if Path::new(pattern).is_absolute() {
                    vec![pattern.to_owned()]
                } else {
                    let relative = pattern.trim_start_matches("./");
                    anchors
                        .iter()
                        .map(|anchor| {
                            let anchor = globset::escape(&anchor.to_string_lossy());
                            format!("{}/{relative}", anchor.trim_end_matches('/'))
                        })
                        .collect()
                };
                for glob in anchored {
                    let glob = GlobBuilder::new(&glob)
                        .literal_separator(true)
                        .case_insensitive(true)
                        .build()
                        .map_err(|e| format!("--deny {pattern:?} is not a glob: {e}"))?;
                    builder.add(glob);
                    patterns.push(pattern.to_owned());
                }
            }
            let set = builder.build().map_err(|e| format!("--deny: {e}"))?;
            Some(Arc::new(Deny { set, patterns }))
        };
        let read_only = read_only
            .iter()
            .map(|dir| {
                std::fs::canonicalize(dir)
                    .map_err(|e| format!("{}: {e} (a read-only root must exist)", dir.display()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { deny, read_only })
    }

    /// Whether anything is withheld (else no check costs a system call).
    pub fn is_empty(&self) -> bool {
        self.deny.is_none() && self.read_only.is_empty()
    }

    /// Whether some paths are denied.
    pub fn denies(&self) -> bool {
        self.deny.is_some()
    }

    /// Whether some roots are read-only.
    pub fn has_read_only(&self) -> bool {
        !self.read_only.is_empty()
    }

    /// The glob that denies `path` (absolute) or one of its ancestors.
    pub fn denied(&self, path: &Path) -> Option<&str> {
        let deny = self.deny.as_ref()?;
        path.ancestors()
            .take_while(|p| p.parent().is_some())
            .find_map(|p| deny.set.matches(p).first().copied())
            .map(|i| deny.patterns[i].as_str())
    }

    /// A matcher for a walk that starts at `base` (absolute): whether an entry, by its path
    /// relative to `base`, is denied. Its ancestors were checked on the way down.
    pub fn for_walk(&self, base: &Path) -> Hidden {
        Hidden {
            deny: self.deny.clone(),
            // Without `.` components, which no glob matches.
            base: base.components().collect(),
        }
    }

    /// Whether the real location `real` (absolute) is inside a read-only root.
    pub fn read_only(&self, real: &Path) -> bool {
        self.read_only.iter().any(|root| real.starts_with(root))
    }

    /// The read-only roots (real paths).
    pub fn read_only_roots(&self) -> &[PathBuf] {
        &self.read_only
    }

    /// The denied globs, as given.
    pub fn deny_patterns(&self) -> Vec<&str> {
        let mut patterns: Vec<&str> = self
            .deny
            .iter()
            .flat_map(|deny| deny.patterns.iter().map(String::as_str))
            .collect();
        patterns.dedup();
        patterns
    }
}

/// [`Policy::for_walk`]: the denied entries of one walk.
#[derive(Debug, Clone)]
pub struct Hidden {
    deny: Option<Arc<Deny>>,
    base: PathBuf,
}

impl Hidden {
    /// Hides nothing.
    pub fn nothing() -> Self {
        Self {
            deny: None,
            base: PathBuf::new(),
        }
    }

    /// Whether it hides anything.
    pub fn is_active(&self) -> bool {
        self.deny.is_some()
    }

    /// Whether the entry at `relative` (to the walk's start) is denied.
    pub fn matches(&self, relative: &Path) -> bool {
        self.deny
            .as_ref()
            .is_some_and(|deny| deny.set.is_match(self.base.join(relative)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_globs_hold_under_every_root_name_and_every_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let policy = Policy::new(
            &["**/.env".into(), "secrets".into(), "**/*.pem".into()],
            std::slice::from_ref(&root),
            &[],
        )
        .unwrap();
        let real = std::fs::canonicalize(&root).unwrap();
        for base in [&root, &real] {
            assert_eq!(policy.denied(&base.join(".env")), Some("**/.env"));
            assert_eq!(policy.denied(&base.join("a/b/.ENV")), Some("**/.env"));
            assert_eq!(
                policy.denied(&base.join("secrets/x/y.txt")),
                Some("secrets")
            );
            assert_eq!(
                policy.denied(&base.join("keys/server.PEM")),
                Some("**/*.pem")
            );
            assert_eq!(policy.denied(&base.join("a/secrets.txt")), None);
            assert_eq!(policy.denied(&base.join("a/secrets/x")), None);
            assert_eq!(policy.denied(&base.join("env")), None);
        }
        let walk = policy.for_walk(&root.join("a"));
        assert!(walk.matches(Path::new("b/.env")));
        assert!(!walk.matches(Path::new("b/env")));
        assert!(Policy::default().is_empty());
        assert!(Policy::new(&["[".into()], &[root], &[]).is_err());
    }
}
