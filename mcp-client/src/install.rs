//! `mcp add` and `mcp remove`: a server entry written into a host's own config file, in the
//! host's format, with everything else in the file kept (a backup of it beside), so nobody
//! edits JSON by hand.
//!
//! - Claude Desktop: `claude_desktop_config.json`, `mcpServers.NAME` = `command`/`args`/`env`
//!   (it takes no URLs in this file: remote servers go through its Connectors settings).
//! - Cursor: `~/.cursor/mcp.json`, `mcpServers.NAME` = `command`/`args`/`env` or `url`/`headers`.
//! - Claude Code: the project's `.mcp.json`, `mcpServers.NAME` with `type` `stdio` or `http`.
//! - VS Code: the project's `.vscode/mcp.json`, `servers.NAME` with `type` `stdio` or `http`.
//!
//! A command is written with its absolute path: hosts do not start servers from your shell.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::{Map, Value, json};

/// The hosts whose config files `mcp add` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Host {
    /// Claude Desktop (`claude_desktop_config.json`).
    ClaudeDesktop,
    /// Cursor (`~/.cursor/mcp.json`).
    Cursor,
    /// Claude Code (the project's `.mcp.json`).
    ClaudeCode,
    /// VS Code (the project's `.vscode/mcp.json`).
    Vscode,
}

/// What a new entry runs or reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A command over stdio.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
        /// Environment variables for it.
        env: BTreeMap<String, String>,
    },
    /// A Streamable HTTP endpoint.
    Url {
        /// The endpoint.
        url: String,
        /// Headers for every request.
        headers: BTreeMap<String, String>,
    },
}

/// Why the file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON, or not an object.
    #[error("{path} is not a JSON object ({reason}); fix it or pick another file with --file")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Something the host's format cannot say, or a name that is (or is not) there.
    #[error("{0}")]
    Refused(String),
}

impl Host {
    /// The host's config file (project files under `project`).
    pub fn default_file(self, project: &Path) -> Option<PathBuf> {
        let home = std::env::home_dir();
        match self {
            Self::ClaudeCode => Some(project.join(".mcp.json")),
            Self::Vscode => Some(project.join(".vscode/mcp.json")),
            Self::Cursor => home.map(|home| home.join(".cursor/mcp.json")),
            Self::ClaudeDesktop => {
                if cfg!(target_os = "macos") {
                    home.map(|h| {
                        h.join("Library/Application Support/Claude/claude_desktop_config.json")
                    })
                } else if cfg!(windows) {
                    std::env::var_os("APPDATA")
                        .map(|a| PathBuf::from(a).join("Claude/claude_desktop_config.json"))
                } else {
                    let config = std::env::var_os("XDG_CONFIG_HOME")
                        .map(PathBuf::from)
                        .or_else(|| home.map(|h| h.join(".config")));
                    config.map(|c| c.join("Claude/claude_desktop_config.json"))
                }
            }
        }
    }

    /// Where the host keeps its servers in the file.
    fn key(self) -> &'static str {
        match self {
            Self::Vscode => "servers",
            _ => "mcpServers",
        }
    }

    /// The entry in the host's words.
    fn entry(self, entry: &Entry) -> Result<Value, InstallError> {
        let typed = matches!(self, Self::ClaudeCode | Self::Vscode);
        Ok(match entry {
            Entry::Command { argv, env } => {
                let Some((command, args)) = argv.split_first() else {
                    return Err(InstallError::Refused("no command to run".to_owned()));
                };
                let mut value = Map::new();
                if typed {
                    value.insert("type".into(), json!("stdio"));
                }
                value.insert("command".into(), json!(command));
                value.insert("args".into(), json!(args));
                if !env.is_empty() {
                    value.insert("env".into(), json!(env));
                }
                Value::Object(value)
            }
            Entry::Url { .. } if self == Self::ClaudeDesktop => {
                return Err(InstallError::Refused(
                    "Claude Desktop's config file takes only commands; add a remote server in its \
                     Settings > Connectors, or pick another --host"
                        .to_owned(),
                ));
            }
            Entry::Url { url, headers } => {
                let mut value = Map::new();
                if typed {
                    value.insert("type".into(), json!("http"));
                }
                value.insert("url".into(), json!(url));
                if !headers.is_empty() {
                    value.insert("headers".into(), json!(headers));
                }
                Value::Object(value)
            }
        })
    }
}

/// `argv` with its program made absolute (found on `PATH`, or relative to the current
/// directory), as hosts need it.
pub fn absolute_command(mut argv: Vec<String>) -> Result<Vec<String>, InstallError> {
    let Some(program) = argv.first_mut() else {
        return Err(InstallError::Refused("no command to run".to_owned()));
    };
    let path = Path::new(program.as_str());
    let found = if path.is_absolute() {
        path.to_path_buf()
    } else if path.components().count() > 1 {
        std::env::current_dir()
            .map(|dir| dir.join(path))
            .map_err(|source| InstallError::Io {
                path: path.to_path_buf(),
                source,
            })?
    } else {
        which::which(path).map_err(|_| {
            InstallError::Refused(format!(
                "{program:?} is not on PATH; install it or give its full path"
            ))
        })?
    };
    *program = found.display().to_string();
    Ok(argv)
}

/// The file as a JSON object (empty when it does not exist yet).
fn read(path: &Path) -> Result<(Map<String, Value>, Option<String>), InstallError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Map::new(), None));
        }
        Err(source) => {
            return Err(InstallError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok((object, Some(text))),
        Ok(_) => Err(InstallError::NotJson {
            path: path.to_owned(),
            reason: "not an object".to_owned(),
        }),
        Err(error) => Err(InstallError::NotJson {
            path: path.to_owned(),
            reason: error.to_string(),
        }),
    }
}

/// Writes `object` to `path` whole or not at all, the old text kept as `path.bak`.
fn write(path: &Path, object: Map<String, Value>, old: Option<String>) -> Result<(), InstallError> {
    let io = |source| InstallError::Io {
        path: path.to_owned(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    if let Some(old) = old {
        let mut backup = path.as_os_str().to_owned();
        backup.push(".bak");
        // A host's file may hold API keys in its env entries: the copy is the owner's only.
        crate::write_whole(
            &PathBuf::from(backup),
            old.as_bytes(),
            crate::Readers::Owner,
        )
        .map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(object))
        .map_err(|error| io(std::io::Error::other(error)))?;
    text.push('\n');
    // The host's file keeps who may read it.
    crate::write_whole(path, text.as_bytes(), crate::Readers::AsBefore).map_err(io)
}

/// Adds `name` to `host`'s file at `path`; with `replace`, over an entry of that name.
pub fn add(
    host: Host,
    path: &Path,
    name: &str,
    entry: &Entry,
    replace: bool,
) -> Result<(), InstallError> {
    let value = host.entry(entry)?;
    let (mut object, old) = read(path)?;
    let servers = object
        .entry(host.key())
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(servers) = servers else {
        return Err(InstallError::NotJson {
            path: path.to_owned(),
            reason: format!("{:?} is not an object", host.key()),
        });
    };
    if servers.contains_key(name) && !replace {
        return Err(InstallError::Refused(format!(
            "{} already has a server {name:?}; pass --force to replace it",
            path.display()
        )));
    }
    servers.insert(name.to_owned(), value);
    write(path, object, old)
}

/// Removes `name` from `host`'s file at `path`.
pub fn remove(host: Host, path: &Path, name: &str) -> Result<(), InstallError> {
    let (mut object, old) = read(path)?;
    let removed = object
        .get_mut(host.key())
        .and_then(Value::as_object_mut)
        .and_then(|servers| servers.remove(name));
    if removed.is_none() {
        return Err(InstallError::Refused(format!(
            "{} has no server {name:?}",
            path.display()
        )));
    }
    write(path, object, old)
}
