//! The sandbox: which paths a request may touch, and handles that cannot leave them.
//!
//! Every server that opens a file a peer names goes through it: mcp-fs for all of its tools,
//! mcp-docs for the documents it serves, mcp-finetune for datasets and models.
//!
//! A requested path is matched to an allowed root by whole components (so `/data/proj` never
//! admits `/data/proj_evil`), after `~` expansion and lexical clean-up. Everything after that goes
//! through the root's [`cap_std::fs::Dir`], which resolves the rest beneath the root in the
//! kernel (`openat2` with `RESOLVE_BENEATH` on Linux): a symlink or `..` that leads out fails at
//! the moment of use, whatever was swapped in after any check.

use std::{
    io,
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use cap_std::{ambient_authority, fs::Dir};

/// Why a path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An empty path.
    #[error("the path is empty")]
    Empty,
    /// A path with a NUL byte, which no system call takes.
    #[error("the path contains a NUL byte")]
    Nul,
    /// A path beneath none of the allowed directories.
    #[error("access denied: {path} is outside the allowed directories ({allowed})")]
    Outside {
        /// The path as given.
        path: String,
        /// The allowed directories, for the message.
        allowed: String,
    },
    /// No allowed directory at all (none given, no client roots yet).
    #[error(
        "no allowed directories yet: start the server with directories, or connect from a client that offers roots"
    )]
    NoRoots,
    /// A path that leads out through a link or `..`, refused by the kernel.
    #[error(
        "access denied: {path} leads outside the allowed directories (through a symbolic link or `..`)"
    )]
    Escape {
        /// The path as given.
        path: String,
    },
    /// Any other failure of the file system.
    #[error("{path}: {source}")]
    Io {
        /// The path as the user knows it.
        path: String,
        /// What the system call said.
        source: io::Error,
    },
    /// A directory given as allowed that cannot be opened.
    #[error("cannot use {path} as an allowed directory: {source}")]
    BadRoot {
        /// The directory as given.
        path: String,
        /// Why it cannot be opened.
        source: io::Error,
    },
    /// A symbolic link where only a regular file is read.
    #[error("{path} is a symbolic link; only regular files are read")]
    Link {
        /// The path as given.
        path: String,
    },
    /// A directory, FIFO, device or socket where only a regular file is read.
    #[error("{path} is {kind}, not a regular file")]
    NotRegular {
        /// The path as given.
        path: String,
        /// What it is instead (`a directory`, `a FIFO`, …).
        kind: &'static str,
    },
    /// A regular file over the size the caller reads.
    #[error("{path} is {size} bytes, more than the {limit} this reads")]
    TooLarge {
        /// The path as given.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The caller's cap in bytes.
        limit: u64,
    },
}

impl SandboxError {
    /// An I/O error on `path`, told apart from a refused escape.
    pub fn io(path: &Path, source: io::Error) -> Self {
        // cap-std reports an escape attempt as PermissionDenied with this message.
        if source.kind() == io::ErrorKind::PermissionDenied
            && source.to_string().contains("outside of the filesystem")
        {
            return Self::Escape {
                path: path.display().to_string(),
            };
        }
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One allowed directory.
#[derive(Debug)]
pub struct Root {
    /// As given (absolute, cleaned): how users name it.
    pub path: PathBuf,
    /// With symlinks resolved: how the kernel names it.
    pub canonical: PathBuf,
    /// The directory, opened: every access beneath it goes through this handle.
    pub dir: Dir,
}

/// A path inside a root, ready to use with the root's [`Dir`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The allowed directory it is beneath.
    pub root: Arc<Root>,
    /// Relative to the root, clean (no `.`, no `..`); `.` for the root itself.
    pub rel: PathBuf,
}

impl Resolved {
    /// The absolute path, as the user would write it.
    pub fn display(&self) -> PathBuf {
        if self.rel == Path::new(".") {
            self.root.path.clone()
        } else {
            self.root.path.join(&self.rel)
        }
    }

    /// An I/O failure on this path, as a sandbox error (an escape is told apart).
    /// `source` as the error of this path (named as the user knows it).
    pub fn error(&self, source: io::Error) -> SandboxError {
        SandboxError::io(&self.display(), source)
    }

    /// The root's directory handle, which `rel` is relative to.
    pub fn dir(&self) -> &Dir {
        &self.root.dir
    }

    /// The parent directory and the final name; `None` for the root itself.
    pub fn split(&self) -> Option<(PathBuf, std::ffi::OsString)> {
        let name = self.rel.file_name()?.to_owned();
        let parent = match self.rel.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Some((parent, name))
    }
}

/// Whether [`read_regular`] follows a symbolic link that is the path's last component (one
/// that stays beneath the root: a link out fails either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalLink {
    /// Follow it (when it stays beneath the root).
    Follow,
    /// Refuse it with [`SandboxError::Link`].
    Refuse,
}

/// Opens a regular file beneath its root for reading.
///
/// Opened without blocking (a FIFO with no writer would hold the call forever) and checked on
/// the open handle, so whatever is swapped in after a check is what gets refused: directories,
/// FIFOs, sockets and devices (`/dev/zero` never ends) are refused by kind. Returns the file and
/// its size.
pub fn open_regular(
    resolved: &Resolved,
    link: FinalLink,
) -> Result<(cap_std::fs::File, u64), SandboxError> {
    use cap_std::fs::{OpenOptions, OpenOptionsExt};
    use rustix::fs::OFlags;

    let mut flags = OFlags::NONBLOCK;
    if link == FinalLink::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let mut options = OpenOptions::new();
    options.read(true).custom_flags(flags.bits() as i32);
    let file = resolved
        .dir()
        .open_with(&resolved.rel, &options)
        .map_err(|error| {
            if link == FinalLink::Refuse
                && error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
            {
                SandboxError::Link {
                    path: resolved.display().display().to_string(),
                }
            } else {
                resolved.error(error)
            }
        })?;
    let size = regular_size(&file, &resolved.display())?;
    Ok((file, size))
}

/// [`open_regular`] for a path that is not a peer's to choose (one on the command line): the
/// same refusals, by the same checks, without a sandbox.
pub fn open_regular_path(path: &Path) -> Result<(std::fs::File, u64), SandboxError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|error| SandboxError::io(path, error))?;
    let file = cap_std::fs::File::from_std(file);
    let size = regular_size(&file, path)?;
    Ok((file.into_std(), size))
}

/// The size of an open file that must be a regular one.
fn regular_size(file: &cap_std::fs::File, path: &Path) -> Result<u64, SandboxError> {
    let metadata = file
        .metadata()
        .map_err(|error| SandboxError::io(path, error))?;
    if !metadata.is_file() {
        return Err(SandboxError::NotRegular {
            path: path.display().to_string(),
            kind: kind_of(&metadata.file_type()),
        });
    }
    Ok(metadata.len())
}

/// Reads a regular file beneath its root ([`open_regular`]), whole, refusing more than `limit`
/// bytes: by its size, or by what was read if it grows while being read.
pub fn read_regular(
    resolved: &Resolved,
    limit: u64,
    link: FinalLink,
) -> Result<Vec<u8>, SandboxError> {
    let (file, size) = open_regular(resolved, link)?;
    read_open(file, size, resolved, limit)
}

/// Reads a file [`open_regular`] opened (whose size it gave), whole, refusing more than `limit`
/// bytes: by its size, or by what was read if it grows while being read.
pub fn read_open(
    file: cap_std::fs::File,
    size: u64,
    resolved: &Resolved,
    limit: u64,
) -> Result<Vec<u8>, SandboxError> {
    use std::io::Read;

    let too_large = |size| SandboxError::TooLarge {
        path: resolved.display().display().to_string(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| resolved.error(e))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// What a file that is not regular is, for an error message (of an open handle: never a link).
pub fn kind_of(file_type: &cap_std::fs::FileType) -> &'static str {
    use cap_std::fs::FileTypeExt;
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The set of allowed directories.
///
/// ```
/// use mcp_core::{Sandbox, SandboxError, sandbox::{FinalLink, read_regular}};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("notes.txt"), "hello")?;
/// let sandbox = Sandbox::new(&[dir.path()])?;
///
/// // A path beneath an allowed directory is read through that directory's handle.
/// let notes = sandbox.resolve(&dir.path().join("notes.txt").to_string_lossy())?;
/// let bytes = read_regular(&notes, 1 << 20, FinalLink::Follow)?;
/// assert_eq!(bytes, b"hello");
///
/// // Anything else is refused, `..` included.
/// let outside = format!("{}/../elsewhere", dir.path().display());
/// assert!(matches!(sandbox.resolve(&outside), Err(SandboxError::Outside { .. })));
/// assert!(matches!(sandbox.resolve("/etc/passwd"), Err(SandboxError::Outside { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default, Clone)]
pub struct Sandbox {
    roots: Vec<Arc<Root>>,
}

/// Removes `.` and resolves `..` without touching the filesystem. `None` when `..` climbs past
/// the filesystem root.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(prefix) => out.push(prefix.as_os_str()),
            Component::RootDir => out.push(Component::RootDir.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::Normal(name) => out.push(name),
        }
    }
    Some(out)
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// `~` and `~/…` → the home directory. The environment is read only for a path that starts with
/// `~` (every tool call resolves a path through here).
pub fn expand_home(path: &str) -> PathBuf {
    let rest = match path.strip_prefix('~') {
        Some("") => "",
        Some(rest) if rest.starts_with('/') => &rest[1..],
        _ => return PathBuf::from(path),
    };
    match home() {
        Some(home) if rest.is_empty() => home,
        Some(home) => home.join(rest),
        None => PathBuf::from(path),
    }
}

impl Sandbox {
    /// Opens each directory. Fails on the first that cannot be opened as a directory.
    pub fn new<P: AsRef<Path>>(dirs: &[P]) -> Result<Self, SandboxError> {
        let mut roots = Vec::new();
        for dir in dirs {
            roots.push(Arc::new(Self::open_root(dir.as_ref())?));
        }
        Ok(Self { roots })
    }

    /// `dir` as users name it (absolute, `~` expanded, cleaned) and as the kernel does
    /// (symlinks resolved), without opening it.
    fn locate(dir: &Path) -> Result<(PathBuf, PathBuf), SandboxError> {
        let given = expand_home(&dir.to_string_lossy());
        let absolute = if given.is_absolute() {
            given
        } else {
            std::env::current_dir()
                .map_err(|source| SandboxError::BadRoot {
                    path: dir.display().to_string(),
                    source,
                })?
                .join(given)
        };
        let path = clean(&absolute).unwrap_or(absolute);
        match std::fs::canonicalize(&path) {
            Ok(canonical) => Ok((path, canonical)),
            Err(source) => Err(SandboxError::BadRoot {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn open_root(dir: &Path) -> Result<Root, SandboxError> {
        let (path, canonical) = Self::locate(dir)?;
        let dir = Dir::open_ambient_dir(&canonical, ambient_authority()).map_err(|source| {
            SandboxError::BadRoot {
                path: path.display().to_string(),
                source,
            }
        })?;
        Ok(Root {
            path,
            canonical,
            dir,
        })
    }

    /// The directories a client offers (its roots), kept within these: each offered directory
    /// inside an allowed one is opened through the allowed one's handle (so it cannot lead out
    /// either), an allowed directory inside an offered one stays as it is, and anything else is
    /// dropped. The command line is the ceiling: roots narrow the sandbox, never widen it. With
    /// no allowed directories at all, the offered ones are taken as they are.
    pub fn narrow<P: AsRef<Path>>(&self, offered: &[P]) -> Sandbox {
        if self.roots.is_empty() {
            let roots = offered
                .iter()
                .filter_map(|dir| Self::open_root(dir.as_ref()).ok().map(Arc::new))
                .collect();
            return Self { roots };
        }
        let mut roots: Vec<Arc<Root>> = Vec::new();
        for dir in offered {
            let Ok((path, canonical)) = Self::locate(dir.as_ref()) else {
                continue;
            };
            for allowed in &self.roots {
                let kept = if let Ok(rel) = canonical.strip_prefix(&allowed.canonical) {
                    let opened = if rel.as_os_str().is_empty() {
                        allowed.dir.try_clone()
                    } else {
                        allowed.dir.open_dir(rel)
                    };
                    let Ok(dir) = opened else { continue };
                    Arc::new(Root {
                        path: path.clone(),
                        canonical: canonical.clone(),
                        dir,
                    })
                } else if allowed.canonical.starts_with(&canonical) {
                    allowed.clone()
                } else {
                    continue;
                };
                if !roots.iter().any(|r| r.canonical == kept.canonical) {
                    roots.push(kept);
                }
            }
        }
        Self { roots }
    }

    /// The allowed directories, in the order given.
    pub fn roots(&self) -> &[Arc<Root>] {
        &self.roots
    }

    /// Whether no directory is allowed (every path is then refused with
    /// [`SandboxError::NoRoots`]).
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The allowed directories, as users name them.
    pub fn describe(&self) -> String {
        self.roots
            .iter()
            .map(|root| root.path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Maps a requested path to a root and a clean path beneath it. Relative paths are taken
    /// relative to the first allowed directory.
    pub fn resolve(&self, requested: &str) -> Result<Resolved, SandboxError> {
        if requested.is_empty() {
            return Err(SandboxError::Empty);
        }
        if requested.contains('\0') {
            return Err(SandboxError::Nul);
        }
        let first = self.roots.first().ok_or(SandboxError::NoRoots)?;
        let expanded = expand_home(requested);
        let absolute = if expanded.is_absolute() {
            expanded
        } else {
            first.path.join(expanded)
        };
        let outside = || SandboxError::Outside {
            path: requested.to_owned(),
            allowed: self.describe(),
        };
        let cleaned = clean(&absolute).ok_or_else(outside)?;
        // The deepest root that contains the path, by whole components, under either spelling.
        let mut best: Option<(&Arc<Root>, PathBuf, usize)> = None;
        for root in &self.roots {
            for base in [&root.path, &root.canonical] {
                if let Ok(rel) = cleaned.strip_prefix(base) {
                    let depth = base.components().count();
                    if best.as_ref().is_none_or(|(_, _, d)| depth > *d) {
                        best = Some((root, rel.to_path_buf(), depth));
                    }
                }
            }
        }
        let (root, rel, _) = best.ok_or_else(outside)?;
        let rel = if rel.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            rel
        };
        Ok(Resolved {
            root: root.clone(),
            rel,
        })
    }

    /// The resolved path's real location must stay beneath its root: checked by asking the
    /// root's `Dir` to canonicalize it (through its nearest existing ancestor when it does not
    /// exist yet), which fails for anything that leads out.
    pub fn check_beneath(&self, resolved: &Resolved) -> Result<(), SandboxError> {
        self.real_path(resolved).map(|_| ())
    }

    /// The resolved path's real location (symlinks beneath the root followed), as an absolute
    /// path, for handing to code that opens by path (another process, a library): through its
    /// nearest existing ancestor when it does not exist yet. Fails for anything that leads out.
    /// What is at that location can still change afterwards; open through [`Resolved::dir`]
    /// where the open is ours.
    pub fn real_path(&self, resolved: &Resolved) -> Result<PathBuf, SandboxError> {
        let mut probe = resolved.rel.clone();
        let mut missing: Vec<std::ffi::OsString> = Vec::new();
        loop {
            match resolved.dir().canonicalize(&probe) {
                Ok(real) => {
                    let mut path = resolved.root.canonical.clone();
                    path.extend(real.components().filter(|c| *c != Component::CurDir));
                    path.extend(missing.iter().rev());
                    return Ok(path);
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    match probe.file_name() {
                        Some(name) => missing.push(name.to_owned()),
                        None => return Ok(resolved.root.canonical.join(&resolved.rel)),
                    }
                    if !probe.pop() || probe.as_os_str().is_empty() {
                        probe = PathBuf::from(".");
                    }
                }
                Err(error) => return Err(resolved.error(error)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_resolves_dots_lexically() {
        assert_eq!(clean(Path::new("/a/./b/../c")), Some(PathBuf::from("/a/c")));
        assert_eq!(clean(Path::new("/a/..")), Some(PathBuf::from("/")));
        assert_eq!(clean(Path::new("/..")), None);
    }

    #[test]
    fn tilde_expands_to_home_only_at_the_start() {
        if let Some(home) = home() {
            assert_eq!(expand_home("~"), home);
            assert_eq!(expand_home("~/x"), home.join("x"));
        }
        assert_eq!(expand_home("/a/~/x"), PathBuf::from("/a/~/x"));
        assert_eq!(expand_home("~user/x"), PathBuf::from("~user/x"));
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any path built from names, `.`, `..`, `~` and empty components resolves to a clean path
        /// beneath the root, or is refused: never one that climbs out.
        #[test]
        fn every_resolved_path_stays_beneath_its_root(
            parts in proptest::collection::vec(prop::sample::select(vec!["a", "b", "..", ".", "", "~", "c d", "..."]), 0..12),
            absolute in any::<bool>(),
        ) {
            let root = tempfile::tempdir().unwrap();
            let sandbox = Sandbox::new(&[root.path()]).unwrap();
            let joined = parts.join("/");
            let requested = if absolute {
                format!("{}/{joined}", sandbox.roots()[0].path.display())
            } else {
                joined
            };
            if let Ok(resolved) = sandbox.resolve(&requested) {
                prop_assert!(
                    resolved.rel == Path::new(".")
                        || resolved.rel.components().all(|c| matches!(c, Component::Normal(_))),
                    "{} -> {}", requested, resolved.rel.display()
                );
            }
        }
    }
}
