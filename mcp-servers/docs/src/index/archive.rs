//! Zip archives in the folder: each document inside is indexed under the archive's path, `!/`,
//! and its path inside (`manuals.zip!/guide/install.md`, as Java names a jar's entries), read from
//! the archive when it is needed and never unpacked to disk.
//!
//! An archive is a hostile file like any other: its central directory is sized before it is
//! parsed, its entries' declared sizes are not trusted (what is inflated is counted), names that
//! climb (`../`) or are absolute are skipped, archives inside archives are not opened.

use std::io::{Read, Seek, SeekFrom};

use cap_std::fs::File;

use super::MAX_FILE_BYTES;
use crate::extract::Kind;

/// Most entries an archive may list (its central directory is held in memory while it is read).
pub const MAX_ENTRIES: u64 = 100_000;
/// Most bytes of central directory an archive may have.
const MAX_DIRECTORY_BYTES: u64 = 32 * 1024 * 1024;
/// Most documents indexed from one archive; past it the rest are reported.
pub const MAX_DOCUMENTS: usize = 10_000;
/// Most bytes one update may inflate from one archive, all documents together: a zip bomb of
/// many entries costs this much time, no more.
pub const MAX_INFLATED_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The separator between an archive's path and a document's path inside it.
pub const SEPARATOR: &str = "!/";

/// Whether `path` names a zip archive to look into.
pub fn is_archive(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
}

/// `manuals.zip!/guide/install.md` → (`manuals.zip`, `guide/install.md`).
pub fn split(relative: &str) -> Option<(&str, &str)> {
    relative.split_once(SEPARATOR)
}

/// An archive open for reading its documents one after another (an update reads them in
/// order, so the central directory is parsed once per archive, not once per document).
pub struct Open {
    relative: String,
    archive: zip::ZipArchive<File>,
    inflated: u64,
}

impl Open {
    /// Opens the archive `relative`, whose file is `file`, after checking the size of its
    /// central directory.
    pub fn new(relative: &str, mut file: File) -> Result<Self, String> {
        let (entries, directory) = directory_size(&mut file)
            .map_err(|error| format!("not a readable zip archive: {error}"))?;
        if entries > MAX_ENTRIES || directory > MAX_DIRECTORY_BYTES {
            return Err(format!(
                "an archive of {entries} entries ({} MB of directory); at most {MAX_ENTRIES} \
                 entries are read",
                directory / (1024 * 1024)
            ));
        }
        let archive = zip::ZipArchive::new(file)
            .map_err(|error| format!("not a readable zip archive: {error}"))?;
        Ok(Self {
            relative: relative.to_owned(),
            archive,
            inflated: 0,
        })
    }

    /// Whether this is the archive `relative`.
    pub fn is(&self, relative: &str) -> bool {
        self.relative == relative
    }

    /// The documents inside, sorted, with their kinds: entries that are files with a name that
    /// stays inside (no `..`, not absolute) and a kind we read (archives inside are not
    /// opened). More than [`MAX_DOCUMENTS`]: the first ones, and how many were left out.
    pub fn documents(&self) -> (Vec<(String, Kind)>, usize) {
        let mut documents: Vec<(String, Kind)> = self
            .archive
            .file_names()
            .filter_map(Result::ok)
            .filter(|name| !name.ends_with('/') && !name.contains('\\'))
            .filter(|name| {
                std::path::Path::new(name.as_ref())
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .filter(|name| !name.contains(SEPARATOR))
            .filter_map(|name| {
                Kind::of(std::path::Path::new(name.as_ref())).map(|kind| (name.into_owned(), kind))
            })
            .collect();
        documents.sort_by(|a, b| a.0.cmp(&b.0));
        documents.dedup_by(|a, b| a.0 == b.0);
        let left_out = documents.len().saturating_sub(MAX_DOCUMENTS);
        documents.truncate(MAX_DOCUMENTS);
        (documents, left_out)
    }

    /// What the archive says of `name` without inflating it: its CRC-32 and size. A document
    /// whose stamp is unchanged is not read again.
    pub fn stamp(&mut self, name: &str) -> Result<String, String> {
        let index = self
            .archive
            .index_for_name(name)
            .ok_or_else(|| format!("{name} is no longer in the archive"))?;
        let entry = self
            .archive
            .by_index_raw(index)
            .map_err(|error| format!("cannot be read from the archive: {error}"))?;
        Ok(format!("zip:{:08x}:{}", entry.crc32(), entry.size()))
    }

    /// The bytes of document `name`: at most [`MAX_FILE_BYTES`], counted as inflated (the
    /// declared size may lie), and within what is left of [`MAX_INFLATED_BYTES`].
    pub fn read(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let left = MAX_INFLATED_BYTES.saturating_sub(self.inflated);
        if left == 0 {
            return Err(format!(
                "not read: this archive's documents already inflated to {} GB in this update \
                 (a decompression bomb?)",
                MAX_INFLATED_BYTES / (1024 * 1024 * 1024)
            ));
        }
        let mut entry = self
            .archive
            .by_name(name)
            .map_err(|error| format!("cannot be read from the archive: {error}"))?;
        let limit = MAX_FILE_BYTES.min(left);
        let mut bytes = Vec::new();
        let read = Read::take(&mut entry, limit + 1).read_to_end(&mut bytes);
        self.inflated += bytes.len() as u64;
        read.map_err(|error| format!("cannot be read from the archive: {error}"))?;
        if bytes.len() as u64 > limit {
            return Err(if limit == MAX_FILE_BYTES {
                format!(
                    "inflates to more than {} MB (the limit for a document)",
                    MAX_FILE_BYTES / (1024 * 1024)
                )
            } else {
                format!(
                    "not read: this archive's documents inflate to more than {} GB in all (a \
                     decompression bomb?)",
                    MAX_INFLATED_BYTES / (1024 * 1024 * 1024)
                )
            });
        }
        Ok(bytes)
    }
}

/// The entries and central directory size an archive declares in its end-of-central-directory
/// record, read before the directory itself is parsed (and held in memory) by the zip reader.
/// Zip64 archives declare theirs in a record of their own, which this reads as well.
fn directory_size(file: &mut File) -> std::io::Result<(u64, u64)> {
    const END: [u8; 4] = [0x50, 0x4b, 0x05, 0x06];
    const END64: [u8; 4] = [0x50, 0x4b, 0x06, 0x06];
    const LOCATOR64: [u8; 4] = [0x50, 0x4b, 0x06, 0x07];
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let length = file.seek(SeekFrom::End(0))?;
    // The record (22 bytes) ends the file, after a comment of at most 65,535 bytes.
    let tail_length = length.min(22 + 65_535);
    file.seek(SeekFrom::Start(length - tail_length))?;
    let mut tail = vec![0; tail_length as usize];
    file.read_exact(&mut tail)?;
    let at = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..i + 4] == END)
        .ok_or_else(|| invalid("no end of central directory record"))?;
    let u16_at = |i: usize| u64::from(u16::from_le_bytes([tail[i], tail[i + 1]]));
    let u32_at = |bytes: &[u8], i: usize| {
        u64::from(u32::from_le_bytes([
            bytes[i],
            bytes[i + 1],
            bytes[i + 2],
            bytes[i + 3],
        ]))
    };
    let entries = u16_at(at + 10);
    let size = u32_at(&tail, at + 12);
    if entries != 0xffff && size != 0xffff_ffff {
        return Ok((entries, size));
    }
    // Zip64: the locator (20 bytes) just before the record points at the zip64 record.
    let locator = at
        .checked_sub(20)
        .filter(|&l| tail[l..l + 4] == LOCATOR64)
        .ok_or_else(|| invalid("a zip64 archive without its locator"))?;
    let record_at = u64::from_le_bytes(
        tail[locator + 8..locator + 16]
            .try_into()
            .map_err(|_| invalid("a short zip64 locator"))?,
    );
    let mut record = [0u8; 56];
    file.seek(SeekFrom::Start(record_at))?;
    file.read_exact(&mut record)?;
    if record[0..4] != END64 {
        return Err(invalid("a zip64 locator that points at no zip64 record"));
    }
    let u64_at = |i: usize| u64::from_le_bytes(record[i..i + 8].try_into().unwrap_or([0xff; 8]));
    Ok((u64_at(32), u64_at(40)))
}
