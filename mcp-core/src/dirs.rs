//! Where the toolkit keeps its files: its directory under each XDG base directory, the same
//! way for every binary.

use std::path::PathBuf;

/// An XDG base directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseDir {
    /// `$XDG_CONFIG_HOME`, else `~/.config`: settings and credentials.
    Config,
    /// `$XDG_CACHE_HOME`, else `~/.cache`: what can be fetched or made again (models, peers,
    /// logs).
    Cache,
    /// `$XDG_DATA_HOME`, else `~/.local/share`: what users would miss (indexes, jobs,
    /// journals).
    Data,
    /// `$XDG_STATE_HOME`, else `~/.local/state`: history and sessions.
    State,
}

impl BaseDir {
    fn variable_and_fallback(self) -> (&'static str, &'static str) {
        match self {
            Self::Config => ("XDG_CONFIG_HOME", ".config"),
            Self::Cache => ("XDG_CACHE_HOME", ".cache"),
            Self::Data => ("XDG_DATA_HOME", ".local/share"),
            Self::State => ("XDG_STATE_HOME", ".local/state"),
        }
    }
}

/// `<base>/mcp-toolkit`: the variable when it is set and not empty, else its default under the
/// home directory, else under the temporary directory (no home at all).
pub fn toolkit_dir(base: BaseDir) -> PathBuf {
    let (variable, fallback) = base.variable_and_fallback();
    std::env::var_os(variable)
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::home_dir().map(|home| home.join(fallback)))
        .unwrap_or_else(std::env::temp_dir)
        .join("mcp-toolkit")
}
