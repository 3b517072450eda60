//! File operations on resolved paths, through the root's `Dir` only.

use std::{
    ffi::OsString,
    io::{Read, Seek, SeekFrom, Write},
};

use cap_std::fs::{Dir, MetadataExt, OpenOptions, OpenOptionsExt};
use rustix::fs::{Gid, Mode, Uid};

use crate::{
    error::FsError,
    sandbox::{FinalLink, Resolved, SandboxError, open_regular},
};

/// Opens a file for reading: a regular file only (a FIFO or device in the sandbox would block a
/// read forever or never end), following a link that stays beneath the root.
pub fn open_file(resolved: &Resolved) -> Result<cap_std::fs::File, FsError> {
    Ok(open_regular(resolved, FinalLink::Follow)?.0)
}

/// Reads at most `limit` bytes starting at byte `offset`; returns them and the file's size.
pub fn read_window(
    resolved: &Resolved,
    offset: u64,
    limit: usize,
) -> Result<(Vec<u8>, u64), FsError> {
    let io = |e| FsError(resolved.error(e));
    let (mut file, size) = open_regular(resolved, FinalLink::Follow)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    // What the file holds past the offset (one byte more, so a file that grew meanwhile needs
    // no second allocation to be seen): a 4 KB read must not allocate (and fault in) a megabyte.
    let expected = usize::try_from(size.saturating_sub(offset)).unwrap_or(usize::MAX);
    let mut bytes = Vec::with_capacity(limit.min(expected.saturating_add(1)).min(1 << 20));
    file.take(limit as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok((bytes, size))
}

/// Reads the whole file, refusing files over `limit` bytes.
pub fn read_all(resolved: &Resolved, limit: u64) -> Result<Vec<u8>, FsError> {
    let io = |e| FsError(resolved.error(e));
    let (file, size) = open_regular(resolved, FinalLink::Follow)?;
    if size > limit {
        return Err(SandboxError::Io {
            path: resolved.display().display().to_string(),
            source: std::io::Error::other(format!(
                "{size} bytes is more than the {limit} this tool reads"
            )),
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Writes `contents` to the path atomically: a temporary file beside it, synced, then renamed
/// over it. Readers see the old file or the new one, never half of it.
///
/// What the file was stays what it is: an existing file keeps its permission bits (a 0600 key
/// stays private, a script stays executable) and, where the process may set them, its owner
/// and group; a symbolic link (beneath the root) stays a link, and the file it names is the one
/// written. The temporary file is named [`is_temp_name`]-style: never listed, and swept at the
/// next start if a kill leaves it behind.
pub fn write_atomic(resolved: &Resolved, contents: &[u8]) -> Result<(), FsError> {
    write_whole(resolved, contents, true)
}

/// [`write_atomic`] for a file that must not exist yet: it appears whole or not at all, and a
/// file that appeared meanwhile, however recently, is left alone (the new file is linked in,
/// which fails where a rename would replace).
pub fn create_atomic(resolved: &Resolved, contents: &[u8]) -> Result<(), FsError> {
    write_whole(resolved, contents, false)
}

fn write_whole(resolved: &Resolved, contents: &[u8], replace: bool) -> Result<(), FsError> {
    let io = |e| FsError(resolved.error(e));
    let invalid = |message: &str| {
        FsError(SandboxError::Io {
            path: resolved.display().display().to_string(),
            source: std::io::Error::other(message.to_owned()),
        })
    };
    let root = resolved.dir();
    let rel = match root.symlink_metadata(&resolved.rel) {
        Ok(link) if link.file_type().is_symlink() => {
            // Beneath the root, or refused: cap-std resolves the link in the kernel.
            root.canonicalize(&resolved.rel).map_err(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    invalid("is a symbolic link to a file that does not exist; write to the file it should name")
                } else {
                    io(error)
                }
            })?
        }
        _ => resolved.rel.clone(),
    };
    let existing = match root.metadata(&rel) {
        Ok(metadata) if metadata.is_dir() => return Err(invalid("is a directory")),
        Ok(metadata) => Some(metadata),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
        Err(error) => return Err(io(error)),
    };
    let target = Resolved {
        root: resolved.root.clone(),
        rel,
    };
    let (parent, name) = target
        .split()
        .ok_or_else(|| invalid("is an allowed directory itself, not a file"))?;
    let dir: Dir = root.open_dir(&parent).map_err(io)?;
    let mut temp_name = OsString::from(".");
    temp_name.push(&name);
    temp_name.push(format!(".mcp-fs-{}-{}.tmp", std::process::id(), unique()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    if let Some(existing) = &existing {
        options.mode(existing.mode() & 0o7777);
    }
    let result = (|| {
        let mut file = dir.open_with(&temp_name, &options)?;
        if let Some(existing) = &existing {
            // The process umask may have taken bits away at creation.
            rustix::fs::fchmod(&file, Mode::from_raw_mode(existing.mode() & 0o7777))?;
            let created = file.metadata()?;
            if existing.uid() != created.uid() || existing.gid() != created.gid() {
                // Only root (or the owner, for a group it is in) may; otherwise the file
                // becomes the writer's, as any editor's atomic save makes it.
                let _ = rustix::fs::fchown(
                    &file,
                    Some(Uid::from_raw(existing.uid())),
                    Some(Gid::from_raw(existing.gid())),
                );
            }
        }
        file.write_all(contents)?;
        file.sync_all()?;
        if replace {
            dir.rename(&temp_name, &dir, &name)
        } else {
            dir.hard_link(&temp_name, &dir, &name)?;
            dir.remove_file(&temp_name)
        }
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp_name);
    }
    result.map_err(io)
}

/// Appends `contents` to a regular file (made if missing, as `>>` does), through the root's
/// `Dir`; a FIFO or device there is refused by kind, not written to. Returns the new size.
pub fn append(resolved: &Resolved, contents: &[u8]) -> Result<u64, FsError> {
    let io = |e| FsError(resolved.error(e));
    let mut options = OpenOptions::new();
    options
        .append(true)
        .create(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
    let mut file = resolved
        .dir()
        .open_with(&resolved.rel, &options)
        .map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if !metadata.is_file() {
        return Err(FsError(SandboxError::Io {
            path: resolved.display().display().to_string(),
            source: std::io::Error::other("is not a regular file; append writes to files only"),
        }));
    }
    file.write_all(contents)
        .and_then(|()| file.sync_data())
        .map_err(io)?;
    Ok(metadata.len() + contents.len() as u64)
}

/// The SHA-256 of a regular file's bytes, in lowercase hex, read in one pass.
pub fn sha256(resolved: &Resolved) -> Result<String, FsError> {
    use sha2::Digest as _;
    let (mut file, _) = open_regular(resolved, FinalLink::Follow)?;
    let mut digest = sha2::Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => digest.update(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FsError(resolved.error(e))),
        }
    }
    Ok(hex(&digest.finalize()))
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// Whether `name` is one of [`write_atomic`]'s temporary files: a write in progress, or one a
/// killed process left behind. No listing, tree or search shows them.
pub fn is_temp_name(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.starts_with(b".")
        && bytes.ends_with(b".tmp")
        && bytes.windows(8).any(|w| w == b".mcp-fs-")
}

/// The process id in a temporary file's name, if it is one of ours.
fn temp_owner(name: &std::ffi::OsStr) -> Option<u32> {
    let text = name.to_str()?;
    let rest = &text[text.rfind(".mcp-fs-")? + ".mcp-fs-".len()..];
    rest.split('-').next()?.parse().ok()
}

/// Removes, beneath `dir`, the temporary files of writes whose process is gone (killed
/// mid-write). Goes down by listed names, never through a link; returns how many it removed.
pub fn sweep_stale_temps(dir: &Dir) -> usize {
    let mut removed = 0;
    let Ok(entries) = dir.entries() else {
        return 0;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        if kind.is_dir() {
            if let Ok(sub) = entry.open_dir() {
                removed += sweep_stale_temps(&sub);
            }
        } else if kind.is_file()
            && is_temp_name(&name)
            && temp_owner(&name).is_some_and(|pid| {
                pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
            })
            && dir.remove_file(&name).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Copies `from` to a new file `to`, streaming (a file of any size costs one buffer), and fails
/// if anything exists at `to`, however recently it appeared. A failed copy leaves no partial file.
pub fn copy_new(from: &Resolved, to: &Resolved) -> Result<(), FsError> {
    let (mut source, _) = open_regular(from, FinalLink::Follow)?;
    let io = |e| FsError(to.error(e));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let mut target = to.dir().open_with(&to.rel, &options).map_err(io)?;
    let copied = std::io::copy(&mut source, &mut target).and_then(|_| target.sync_all());
    if let Err(error) = copied {
        let _ = to.dir().remove_file(&to.rel);
        return Err(io(error));
    }
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A directory entry.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Entry {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size in bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The entries of a directory, sorted by name.
pub fn list(resolved: &Resolved) -> Result<Vec<Entry>, FsError> {
    let io = |e| FsError(resolved.error(e));
    let mut entries = Vec::new();
    for entry in resolved.dir().read_dir(&resolved.rel).map_err(io)? {
        let entry = entry.map_err(io)?;
        if is_temp_name(&entry.file_name()) {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        let size = if kind.is_file() {
            entry.metadata().ok().map(|m| m.len())
        } else {
            None
        };
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: EntryKind::of(kind),
            size,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// What a directory entry is, as listings name it (`file`, `directory`, `symlink`; anything
/// else, a FIFO or a socket, is listed as a file, as the official server does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
}

impl EntryKind {
    pub fn of(file_type: cap_std::fs::FileType) -> Self {
        if file_type.is_symlink() {
            Self::Symlink
        } else if file_type.is_dir() {
            Self::Directory
        } else {
            Self::File
        }
    }

    /// The listing's prefix: `[FILE]`, `[DIR]` or `[LINK]`.
    pub fn marker(self) -> &'static str {
        match self {
            Self::File => "[FILE]",
            Self::Directory => "[DIR]",
            Self::Symlink => "[LINK]",
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::File => "file",
            Self::Directory => "directory",
            Self::Symlink => "symlink",
        })
    }
}

/// Human-readable size, as the official server prints it.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes == 0 {
        return "0 B".to_owned();
    }
    let exponent = ((bytes as f64).ln() / 1024f64.ln()).floor().min(4.0) as i32;
    if exponent == 0 {
        return format!("{bytes} B");
    }
    format!(
        "{:.2} {}",
        bytes as f64 / 1024f64.powi(exponent),
        UNITS[exponent as usize]
    )
}
