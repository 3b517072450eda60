//! What a file tool reports when it fails: a sandbox refusal or a failed file operation, with
//! what the model should do next. Tool bodies use `?`: [`FsError`] becomes the tool's error
//! through [`Hinted`].

use mcp_core::{sandbox::Resolved, tool::Hinted};

use crate::sandbox::SandboxError;

/// A sandbox refusal or I/O failure, worded for a model.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct FsError(#[from] pub SandboxError);

impl FsError {
    /// The path does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        self.io_kind() == Some(std::io::ErrorKind::NotFound)
    }

    /// Something exists where a new file was to be made.
    pub(crate) fn is_already_exists(&self) -> bool {
        self.io_kind() == Some(std::io::ErrorKind::AlreadyExists)
    }

    fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match &self.0 {
            SandboxError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

impl Hinted for FsError {
    fn hint(&self) -> Option<String> {
        let hint = match &self.0 {
            SandboxError::Outside { .. } | SandboxError::Escape { .. } => {
                "only paths inside the allowed directories can be used; call list_allowed_directories"
            }
            SandboxError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                "check the name with list_directory or search_files"
            }
            SandboxError::NoRoots => "ask the user which directories to allow",
            SandboxError::NotRegular {
                kind: "a directory",
                ..
            } => "use list_directory or directory_tree for a directory",
            _ => return None,
        };
        Some(hint.to_owned())
    }
}

/// An I/O result on a resolved path, as an [`FsError`] that names the path as the user gave it.
pub(crate) trait At<T> {
    fn at(self, resolved: &Resolved) -> Result<T, FsError>;
}

impl<T> At<T> for std::io::Result<T> {
    fn at(self, resolved: &Resolved) -> Result<T, FsError> {
        self.map_err(|e| FsError(resolved.error(e)))
    }
}
