//! Directories as the walks (`directory_tree`, `search_files`) read them: an open directory's
//! entries, and its subdirectories opened one name at a time from that directory.
//!
//! A walk starts from a directory the sandbox opened (beneath a root), and goes down only by
//! names its listing gave, never `.` or `..`. On Linux each subdirectory is opened with
//! `openat(O_DIRECTORY | O_NOFOLLOW)` on its single name: a link there (even one swapped in after
//! the listing) is refused, not followed, so the walk cannot leave the directory it started in.
//! That is the containment cap-std gives, for a fraction of its system calls: cap-std resolves
//! each name with `openat2(RESOLVE_BENEATH)`, then lists through a second descriptor in small
//! steps (eleven calls per directory of 100 entries, strace; four here: `openat`, two
//! `getdents64`, `close`), and listing is most of a tree's time. Elsewhere the walk uses cap-std.

use std::{ffi::OsString, io};

/// One entry of a listing.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub name: OsString,
    /// A directory, and not a link to one.
    pub is_dir: bool,
}

impl Entry {
    /// The name as text (lossy for a name that is not UTF-8), without copying a UTF-8 one.
    pub fn into_name(self) -> String {
        self.name
            .into_string()
            .unwrap_or_else(|name| name.to_string_lossy().into_owned())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::{
        ffi::{OsStr, OsString},
        io,
        os::{fd::OwnedFd, unix::ffi::OsStringExt},
    };

    use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};

    use super::Entry;

    /// A listing is read in one `getdents64` per this many bytes (about 1,000 entries).
    const LISTING_BUFFER: usize = 32 * 1024;

    pub struct WalkDir {
        fd: OwnedFd,
        /// Listed before: the next listing starts again from the beginning.
        listed: bool,
    }

    impl WalkDir {
        const FLAGS: OFlags = OFlags::RDONLY
            .union(OFlags::DIRECTORY)
            .union(OFlags::NOFOLLOW)
            .union(OFlags::CLOEXEC);

        pub fn new(dir: cap_std::fs::Dir) -> io::Result<Self> {
            // cap-std holds directories as `O_PATH` descriptors, which cannot be listed.
            Ok(Self::from_fd(rustix::fs::openat(
                &dir,
                ".",
                Self::FLAGS,
                Mode::empty(),
            )?))
        }

        fn from_fd(fd: OwnedFd) -> Self {
            Self { fd, listed: false }
        }

        pub fn open(&self, name: &OsStr) -> io::Result<Self> {
            let fd = rustix::fs::openat(&self.fd, name, Self::FLAGS, Mode::empty())?;
            Ok(Self::from_fd(fd))
        }

        pub fn entries(&mut self) -> io::Result<Vec<Entry>> {
            if std::mem::replace(&mut self.listed, true) {
                rustix::fs::seek(&self.fd, rustix::fs::SeekFrom::Start(0))?;
            }
            let mut buffer: Vec<u8> = Vec::with_capacity(LISTING_BUFFER);
            let mut listing = RawDir::new(&self.fd, buffer.spare_capacity_mut());
            let mut entries = Vec::new();
            while let Some(entry) = listing.next() {
                let entry = entry?;
                let name = entry.file_name();
                if matches!(name.to_bytes(), b"." | b"..") {
                    continue;
                }
                let is_dir = match entry.file_type() {
                    FileType::Directory => true,
                    // Some file systems leave the type out of listings. An entry gone since (or
                    // otherwise unreadable) is listed, not gone into.
                    FileType::Unknown => {
                        rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(
                            |stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory,
                        )
                    }
                    _ => false,
                };
                entries.push(Entry {
                    name: OsString::from_vec(name.to_bytes().to_vec()),
                    is_dir,
                });
            }
            Ok(entries)
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    use std::{ffi::OsStr, io};

    use super::Entry;

    pub struct WalkDir(cap_std::fs::Dir);

    impl WalkDir {
        pub fn new(dir: cap_std::fs::Dir) -> io::Result<Self> {
            Ok(Self(dir))
        }

        pub fn open(&self, name: &OsStr) -> io::Result<Self> {
            Ok(Self(self.0.open_dir(name)?))
        }

        pub fn entries(&mut self) -> io::Result<Vec<Entry>> {
            let mut entries = Vec::new();
            for entry in self.0.entries()? {
                let entry = entry?;
                let kind = entry.file_type()?;
                entries.push(Entry {
                    name: entry.file_name(),
                    is_dir: kind.is_dir() && !kind.is_symlink(),
                });
            }
            Ok(entries)
        }
    }
}

/// An open directory in a walk.
pub struct WalkDir(imp::WalkDir);

impl WalkDir {
    /// A walk from `dir` (opened through the sandbox).
    pub fn new(dir: cap_std::fs::Dir) -> io::Result<Self> {
        Ok(Self(imp::WalkDir::new(dir)?))
    }

    /// The subdirectory `name`, an entry of this directory's listing; a link is refused, and so
    /// is anything but one name below this directory (`..`, a path).
    pub fn open(&self, name: &std::ffi::OsStr) -> io::Result<Self> {
        let bytes = name.as_encoded_bytes();
        if matches!(bytes, b"" | b"." | b"..")
            || bytes
                .iter()
                .any(|&b| std::path::is_separator(char::from(b)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a name in this directory", name.display()),
            ));
        }
        Ok(Self(self.0.open(name)?))
    }

    /// The entries, sorted by name, without `.`, `..` and writes in progress
    /// ([`crate::ops::is_temp_name`]).
    pub fn entries(&mut self) -> io::Result<Vec<Entry>> {
        let mut entries = self.0.entries()?;
        entries.retain(|entry| !crate::ops::is_temp_name(&entry.name));
        entries.sort_unstable();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn open(path: &std::path::Path) -> WalkDir {
        WalkDir::new(
            cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority()).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn lists_sorted_and_tells_directories_from_files_and_links() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("b")).unwrap();
        std::fs::write(root.path().join("a.txt"), "x").unwrap();
        std::fs::write(root.path().join("c"), "x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        let mut dir = open(root.path());
        let entries = dir.entries().unwrap();
        // Listed again, from the beginning.
        assert_eq!(dir.entries().unwrap(), entries);
        let shown: Vec<(&str, bool)> = entries
            .iter()
            .map(|e| (e.name.to_str().unwrap(), e.is_dir))
            .collect();
        let mut expected = vec![("a.txt", false), ("b", true), ("c", false)];
        if cfg!(unix) {
            expected.push(("out", false));
        }
        assert_eq!(shown, expected);
    }

    #[cfg(unix)]
    #[test]
    fn a_link_to_a_directory_is_not_opened() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("out")).unwrap();
        std::os::unix::fs::symlink("/", root.path().join("slash")).unwrap();
        let dir = open(root.path());
        for name in ["out", "slash", "..", "missing"] {
            assert!(dir.open(name.as_ref()).is_err(), "{name}");
        }
        // Only one name below: not a path, even one through a real subdirectory.
        std::fs::create_dir(root.path().join("sub")).unwrap();
        assert!(dir.open("sub".as_ref()).is_ok());
        for path in ["sub/", "sub/..", "sub/../..", "./sub", "/", "", "."] {
            assert!(dir.open(path.as_ref()).is_err(), "{path}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn names_that_are_not_utf8_are_kept_as_they_are() {
        use std::os::unix::ffi::OsStrExt;
        let root = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"bad\xffname");
        // Some file systems refuse such names; then there is nothing to check.
        if std::fs::create_dir(root.path().join(name)).is_err() {
            return;
        }
        let mut dir = open(root.path());
        let entries = dir.entries().unwrap();
        assert_eq!(entries[0].name, name);
        assert!(dir.open(&entries[0].name).is_ok());
        let entry = dir.entries().unwrap().remove(0);
        assert_eq!(entry.into_name(), "bad\u{fffd}name");
    }
}
