//! File operations on resolved paths, through the root's `Dir` only.

use std::{
    ffi::OsString,
    io::{Read, Seek, SeekFrom, Write},
};

use cap_std::fs::{Dir, OpenOptions};

use crate::sandbox::{Resolved, SandboxError};

/// Reads at most `limit` bytes starting at byte `offset`; returns them and the file's size.
pub fn read_window(
    resolved: &Resolved,
    offset: u64,
    limit: usize,
) -> Result<(Vec<u8>, u64), SandboxError> {
    let io = |e| resolved.error(e);
    let mut file = resolved.dir().open(&resolved.rel).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    let size = metadata.len();
    if metadata.is_dir() {
        return Err(SandboxError::Io {
            path: resolved.display().display().to_string(),
            source: std::io::Error::other("is a directory; use list_directory"),
        });
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut bytes = Vec::with_capacity(limit.min(1 << 20));
    file.take(limit as u64)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok((bytes, size))
}

/// Reads the whole file, refusing files over `limit` bytes.
pub fn read_all(resolved: &Resolved, limit: u64) -> Result<Vec<u8>, SandboxError> {
    let io = |e| resolved.error(e);
    let file = resolved.dir().open(&resolved.rel).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > limit {
        return Err(SandboxError::Io {
            path: resolved.display().display().to_string(),
            source: std::io::Error::other(format!(
                "{size} bytes is more than the {limit} this tool reads"
            )),
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// Writes `contents` to the path atomically: a temporary file beside it, synced, then renamed
/// over it. Readers see the old file or the new one, never half of it.
pub fn write_atomic(resolved: &Resolved, contents: &[u8]) -> Result<(), SandboxError> {
    let io = |e| resolved.error(e);
    let (parent, name) = resolved.split().ok_or_else(|| SandboxError::Io {
        path: resolved.display().display().to_string(),
        source: std::io::Error::other("is an allowed directory itself, not a file"),
    })?;
    let dir: Dir = resolved.dir().open_dir(&parent).map_err(io)?;
    let mut temp_name = OsString::from(".");
    temp_name.push(&name);
    temp_name.push(format!(".mcp-fs-{}-{}.tmp", std::process::id(), unique()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let result = (|| {
        let mut file = dir.open_with(&temp_name, &options)?;
        file.write_all(contents)?;
        file.sync_all()?;
        dir.rename(&temp_name, &dir, &name)
    })();
    if result.is_err() {
        let _ = dir.remove_file(&temp_name);
    }
    result.map_err(io)
}

/// Copies `from` to a new file `to`, streaming (a file of any size costs one buffer), and fails
/// if anything exists at `to`, however recently it appeared. A failed copy leaves no partial file.
pub fn copy_new(from: &Resolved, to: &Resolved) -> Result<(), SandboxError> {
    let mut source = from.dir().open(&from.rel).map_err(|e| from.error(e))?;
    let io = |e| to.error(e);
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
    /// `file`, `directory` or `symlink`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size in bytes (files only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The entries of a directory, sorted by name.
pub fn list(resolved: &Resolved) -> Result<Vec<Entry>, SandboxError> {
    let io = |e| resolved.error(e);
    let mut entries = Vec::new();
    for entry in resolved.dir().read_dir(&resolved.rel).map_err(io)? {
        let entry = entry.map_err(io)?;
        let kind = entry.file_type().map_err(io)?;
        let size = if kind.is_file() {
            entry.metadata().ok().map(|m| m.len())
        } else {
            None
        };
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: kind_name(kind.is_dir(), kind.is_symlink()),
            size,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

pub fn kind_name(is_dir: bool, is_symlink: bool) -> String {
    if is_symlink {
        "symlink"
    } else if is_dir {
        "directory"
    } else {
        "file"
    }
    .to_owned()
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
