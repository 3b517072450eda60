//! The hosts' config files, read as they are: Claude Desktop's and Cursor's `mcpServers`
//! (`command`, `args`, `env`, or `url` + `headers`), Claude Code's `.mcp.json` (the same with
//! `type: stdio|http|sse`), and VS Code's `.vscode/mcp.json` (`servers`, `type`, `envFile`,
//! `inputs`). `${VAR}` and `${VAR:-default}` are expanded in the command, arguments,
//! environment, URL and headers (VS Code's `${env:VAR}`, `${workspaceFolder}` and
//! `${input:id}` too); a variable that is not set is an error that names it.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use serde_json::Value;

/// How to reach one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking over its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment variables set for it (after `${input:…}`/`${env:…}` are resolved).
        env: BTreeMap<String, String>,
        /// Its working directory (the host's default when `None`).
        cwd: Option<PathBuf>,
    },
    /// An HTTP endpoint.
    Url {
        /// The endpoint.
        url: String,
        /// Headers sent with every request (an `Authorization` header, say).
        headers: BTreeMap<String, String>,
        /// Which HTTP transport it speaks.
        kind: UrlKind,
        /// How to get its OAuth tokens, when it wants them (`"oauth"`, ours and Claude
        /// Code's).
        oauth: crate::oauth::OAuthConfig,
    },
}

/// Which HTTP transport a URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlKind {
    /// Streamable HTTP.
    Http,
    /// The legacy HTTP+SSE transport.
    Sse,
    /// Not said: try Streamable HTTP, then legacy SSE (as hosts do for a bare `url`).
    Auto,
}

/// One configured server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The name the host knows it by.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// The file it came from.
    pub source: PathBuf,
    /// Which of its tools `mcp` lists, offers to the model and calls.
    pub tools: ToolFilter,
}

/// Which of a server's tools `mcp` uses, from the entry's `"tools": {"allow": [...], "deny":
/// [...]}` (globs over the server's own tool names: `*`, `?`, `[ab]`, `{a,b}`). A tool is used
/// when the allow list is empty or names it, and the deny list does not. Hosts ignore the key.
///
/// ```
/// # use mcp_client::config::ToolFilter;
/// let filter = ToolFilter::new(vec!["read_*".into(), "list_*".into()], vec!["read_secret*".into()]).unwrap();
/// assert!(filter.permits("read_text_file"));
/// assert!(!filter.permits("write_file"));
/// assert!(!filter.permits("read_secrets"));
/// assert!(ToolFilter::default().permits("anything"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolFilter {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl ToolFilter {
    /// The filter of these globs; `Err` names one that is not a glob.
    pub fn new(allow: Vec<String>, deny: Vec<String>) -> Result<Self, String> {
        for pattern in allow.iter().chain(&deny) {
            globset::Glob::new(pattern)
                .map_err(|error| format!("tools: {pattern:?} is not a glob: {error}"))?;
        }
        Ok(Self { allow, deny })
    }

    /// Whether the tool `name` may be used.
    pub fn permits(&self, name: &str) -> bool {
        let matches = |patterns: &[String]| {
            patterns.iter().any(|pattern| {
                globset::Glob::new(pattern)
                    .map(|glob| glob.compile_matcher().is_match(name))
                    .unwrap_or(false)
            })
        };
        (self.allow.is_empty() || matches(&self.allow)) && !matches(&self.deny)
    }
}

/// Why a config file could not be used. Each names the file (and the server, and the variable).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: serde_json::Error,
    },
    /// The file lists no servers.
    #[error("{path}: no servers in it (expected \"mcpServers\" or \"servers\")")]
    NoServers {
        /// The file.
        path: PathBuf,
    },
    /// One server's entry is unusable.
    #[error("{path}: server {server:?}: {message}")]
    Server {
        /// The file.
        path: PathBuf,
        /// The server's name.
        server: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where a value comes from when a config asks for one.
pub trait Variables {
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String>;
    /// A VS Code `${input:id}`: asked of the user, or looked up.
    fn input(&self, input: &Input) -> Option<String>;
}

/// The process environment; inputs from `MCP_INPUT_<ID>` (upper-cased, `-` as `_`).
pub struct ProcessVariables;

impl Variables for ProcessVariables {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn input(&self, input: &Input) -> Option<String> {
        std::env::var(input.env_name()).ok()
    }
}

/// A VS Code input declaration.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Input {
    /// What `${input:ID}` names.
    pub id: String,
    #[serde(default)]
    /// The prompt shown when asking for it.
    pub description: Option<String>,
    #[serde(default)]
    /// Whether it is a secret (not echoed).
    pub password: bool,
}

impl Input {
    /// The environment variable that answers this input when nobody is asked.
    pub fn env_name(&self) -> String {
        format!(
            "MCP_INPUT_{}",
            self.id
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                })
                .collect::<String>()
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServer {
    #[serde(rename = "type")]
    kind: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, Value>,
    env_file: Option<String>,
    cwd: Option<String>,
    url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Claude Desktop and Cursor let a server be switched off.
    #[serde(default)]
    disabled: bool,
    /// Ours: which tools to use.
    #[serde(default)]
    tools: RawTools,
    /// OAuth client settings (ours and Claude Code's key).
    #[serde(default)]
    oauth: crate::oauth::OAuthConfig,
}

#[derive(Debug, Deserialize, Default)]
struct RawTools {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Reads one config file, in any of the hosts' formats.
pub fn load(path: &Path, variables: &dyn Variables) -> Result<Vec<Server>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, variables)
}

/// Parses a config's text; `path` names it in errors and anchors relative paths.
pub fn parse(
    text: &str,
    path: &Path,
    variables: &dyn Variables,
) -> Result<Vec<Server>, ConfigError> {
    let json: Value = serde_json::from_str(text).map_err(|source| ConfigError::Json {
        path: path.to_owned(),
        source,
    })?;
    let Some(servers) = json
        .get("mcpServers")
        .or_else(|| json.get("servers"))
        .and_then(Value::as_object)
    else {
        return Err(ConfigError::NoServers {
            path: path.to_owned(),
        });
    };
    let inputs: Vec<Input> = json
        .get("inputs")
        .and_then(|inputs| serde_json::from_value(inputs.clone()).ok())
        .unwrap_or_default();
    // VS Code's ${workspaceFolder}: the folder holding `.vscode/`.
    let folder = path
        .parent()
        .map(|dir| {
            if dir
                .file_name()
                .is_some_and(|n| n == ".vscode" || n == ".cursor")
            {
                dir.parent().unwrap_or(dir)
            } else {
                dir
            }
        })
        .unwrap_or(Path::new("."))
        .to_owned();
    let mut out = Vec::new();
    for (name, raw) in servers {
        let fail = |message: String| ConfigError::Server {
            path: path.to_owned(),
            server: name.clone(),
            message,
        };
        let raw: RawServer =
            serde_json::from_value(raw.clone()).map_err(|e| fail(format!("{e}")))?;
        if raw.disabled {
            continue;
        }
        let expander = Expander {
            variables,
            inputs: &inputs,
            folder: &folder,
        };
        let expand = |text: &str| expander.expand(text).map_err(&fail);
        let transport = match (raw.kind.as_deref(), &raw.command, &raw.url) {
            (Some("stdio") | None, Some(command), _) => {
                let mut env = BTreeMap::new();
                if let Some(file) = &raw.env_file {
                    let file = folder.join(expand(file)?);
                    env.extend(
                        read_env_file(&file)
                            .map_err(|e| fail(format!("envFile {}: {e}", file.display())))?,
                    );
                }
                for (key, value) in &raw.env {
                    let value = match value {
                        Value::String(s) => expand(s)?,
                        Value::Null => continue,
                        other => other.to_string(),
                    };
                    env.insert(key.clone(), value);
                }
                Transport::Stdio {
                    command: expand(command)?,
                    args: raw
                        .args
                        .iter()
                        .map(|a| expand(a))
                        .collect::<Result<_, _>>()?,
                    env,
                    cwd: raw
                        .cwd
                        .as_deref()
                        .map(|cwd| expand(cwd).map(|cwd| folder.join(cwd)))
                        .transpose()?,
                }
            }
            (kind @ (Some("http" | "streamable-http" | "sse") | None), None, Some(url)) => {
                let headers = raw
                    .headers
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), expand(v)?)))
                    .collect::<Result<_, ConfigError>>()?;
                let mut oauth = raw.oauth.clone();
                for field in [
                    &mut oauth.client_id,
                    &mut oauth.client_secret,
                    &mut oauth.client_metadata_url,
                ]
                .into_iter()
                .flatten()
                {
                    *field = expand(field)?;
                }
                Transport::Url {
                    url: expand(url)?,
                    headers,
                    oauth,
                    kind: match kind {
                        Some("sse") => UrlKind::Sse,
                        Some(_) => UrlKind::Http,
                        None => UrlKind::Auto,
                    },
                }
            }
            (Some("stdio") | None, None, None) => {
                return Err(fail("needs a \"command\" (stdio) or a \"url\"".to_owned()));
            }
            (Some(kind @ ("http" | "streamable-http" | "sse")), _, None) => {
                return Err(fail(format!("type {kind:?} needs a \"url\"")));
            }
            (Some(kind), _, _) => {
                return Err(fail(format!(
                    "unknown type {kind:?}: use \"stdio\", \"http\" or \"sse\""
                )));
            }
        };
        let tools = ToolFilter::new(raw.tools.allow, raw.tools.deny).map_err(fail)?;
        out.push(Server {
            name: name.clone(),
            transport,
            source: path.to_owned(),
            tools,
        });
    }
    Ok(out)
}

struct Expander<'a> {
    variables: &'a dyn Variables,
    inputs: &'a [Input],
    folder: &'a Path,
}

impl Expander<'_> {
    /// Replaces every `${…}` in `text`; `$${` stays a literal `${`.
    fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("${") {
            if rest[..at].ends_with('$') {
                out.push_str(&rest[..at - 1]);
                out.push_str("${");
                rest = &rest[at + 2..];
                continue;
            }
            out.push_str(&rest[..at]);
            let body = &rest[at + 2..];
            let Some(end) = body.find('}') else {
                return Err(format!("unclosed \"${{\" in {text:?}"));
            };
            out.push_str(&self.lookup(&body[..end])?);
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup(&self, expression: &str) -> Result<String, String> {
        if expression == "workspaceFolder" {
            return Ok(self.folder.display().to_string());
        }
        if let Some(id) = expression.strip_prefix("input:") {
            let Some(input) = self.inputs.iter().find(|input| input.id == id) else {
                return Err(format!("${{input:{id}}} is not declared in \"inputs\""));
            };
            return self.variables.input(input).ok_or_else(|| {
                format!(
                    "input {id:?} ({}) has no value: set {}",
                    input.description.as_deref().unwrap_or("no description"),
                    input.env_name()
                )
            });
        }
        let expression = expression.strip_prefix("env:").unwrap_or(expression);
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("\"${{{expression}}}\" is not a variable name"));
        }
        match (self.variables.env(name), default) {
            (Some(value), _) if !(value.is_empty() && default.is_some()) => Ok(value),
            (_, Some(default)) => Ok(default.to_owned()),
            (Some(value), None) => Ok(value),
            (None, None) => Err(format!(
                "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
            )),
        }
    }
}

/// `KEY=value` lines (`#` comments, optional `export `, optional quotes), as `.env` files have.
fn read_env_file(path: &Path) -> std::io::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect())
}

/// The config files `mcp` reads when none is given, in order; servers from an earlier file win a
/// name collision. Project files first (from `dir`), then the user's.
pub fn search_path(dir: &Path) -> Vec<PathBuf> {
    let mut paths = vec![
        dir.join(".mcp.json"),
        dir.join(".cursor/mcp.json"),
        dir.join(".vscode/mcp.json"),
    ];
    if let Some(home) = std::env::home_dir() {
        paths.push(home.join(".cursor/mcp.json"));
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        paths.push(config.join("Claude/claude_desktop_config.json"));
        paths.push(home.join("Library/Application Support/Claude/claude_desktop_config.json"));
    }
    if let Some(appdata) = std::env::var_os("APPDATA") {
        paths.push(PathBuf::from(appdata).join("Claude/claude_desktop_config.json"));
    }
    paths
}

/// What [`load_all`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The servers, first file first, one per name.
    pub servers: Vec<Server>,
    /// Servers left out because an earlier file has one of the same name: name and file.
    pub shadowed: Vec<(String, PathBuf)>,
}

/// Every server in `files`, the first of a name winning.
pub fn load_all(files: &[PathBuf], variables: &dyn Variables) -> Result<Loaded, ConfigError> {
    let mut servers: Vec<Server> = Vec::new();
    let mut shadowed = Vec::new();
    for file in files {
        for server in load(file, variables)? {
            if servers.iter().any(|s| s.name == server.name) {
                shadowed.push((server.name, server.source));
            } else {
                servers.push(server);
            }
        }
    }
    Ok(Loaded { servers, shadowed })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<(&'static str, &'static str)>);

    impl Variables for Fixed {
        fn env(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }

        fn input(&self, input: &Input) -> Option<String> {
            self.env(&input.env_name())
        }
    }

    fn vars() -> Fixed {
        Fixed(vec![
            ("HOME", "/home/ann"),
            ("TOKEN", "s3cret"),
            ("EMPTY", ""),
            ("MCP_INPUT_API_KEY", "k-123"),
        ])
    }

    #[test]
    fn claude_desktop_and_cursor_entries() {
        let text = r#"{"mcpServers": {
            "files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "${HOME}/notes"],
                      "env": {"LOG": "${LEVEL:-info}", "N": 3}},
            "remote": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
            "off": {"command": "x", "disabled": true}
        }}"#;
        let servers = parse(text, Path::new("/cfg/claude_desktop_config.json"), &vars()).unwrap();
        assert_eq!(servers.len(), 2, "a disabled server is left out");
        assert_eq!(
            servers[0].transport,
            Transport::Stdio {
                command: "npx".into(),
                args: vec![
                    "-y".into(),
                    "@modelcontextprotocol/server-filesystem".into(),
                    "/home/ann/notes".into()
                ],
                env: BTreeMap::from([("LOG".into(), "info".into()), ("N".into(), "3".into())]),
                cwd: None,
            }
        );
        assert_eq!(
            servers[1].transport,
            Transport::Url {
                url: "https://example.com/mcp".into(),
                headers: BTreeMap::from([("Authorization".into(), "Bearer s3cret".into())]),
                kind: UrlKind::Auto,
                oauth: Default::default(),
            }
        );
    }

    #[test]
    fn claude_code_types() {
        let text = r#"{"mcpServers": {
            "a": {"type": "http", "url": "http://127.0.0.1:8000/mcp"},
            "b": {"type": "sse", "url": "http://127.0.0.1:8000/sse"},
            "c": {"type": "stdio", "command": "mcp-fs", "args": ["."]}
        }}"#;
        let servers = parse(text, Path::new("/p/.mcp.json"), &vars()).unwrap();
        let kinds: Vec<_> = servers
            .iter()
            .map(|s| match &s.transport {
                Transport::Url { kind, .. } => format!("{kind:?}"),
                Transport::Stdio { .. } => "Stdio".into(),
            })
            .collect();
        assert_eq!(kinds, ["Http", "Sse", "Stdio"]);
    }

    #[test]
    fn vs_code_servers_inputs_and_env_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".vscode")).unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "# secrets\nexport DB_URL=\"postgres://x\"\nEMPTY_LINE_NEXT=1\n\nQUOTED='a b'\n",
        )
        .unwrap();
        let text = r#"{
            "inputs": [{"type": "promptString", "id": "api-key", "description": "API key", "password": true}],
            "servers": {
                "db": {"type": "stdio", "command": "mcp-sql", "args": ["${env:DB_URL:-sqlite:x.db}"],
                       "envFile": "${workspaceFolder}/.env", "env": {"KEY": "${input:api-key}"}, "cwd": "${workspaceFolder}"}
            }
        }"#;
        let path = dir.path().join(".vscode/mcp.json");
        let servers = parse(text, &path, &vars()).unwrap();
        let Transport::Stdio { args, env, cwd, .. } = &servers[0].transport else {
            panic!("stdio expected");
        };
        assert_eq!(args, &["sqlite:x.db"]);
        assert_eq!(env["DB_URL"], "postgres://x");
        assert_eq!(env["QUOTED"], "a b");
        assert_eq!(env["KEY"], "k-123");
        assert_eq!(cwd.as_deref(), Some(dir.path()));
    }

    #[test]
    fn missing_variables_and_bad_entries_are_named() {
        let error = parse(
            r#"{"mcpServers": {"gh": {"command": "gh-mcp", "env": {"T": "${GITHUB_TOKEN}"}}}}"#,
            Path::new("/c.json"),
            &vars(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("/c.json") && error.contains("\"gh\""),
            "{error}"
        );
        assert!(error.contains("GITHUB_TOKEN is not set"), "{error}");

        for (text, expected) in [
            (r#"{"mcpServers": {"x": {}}}"#, "needs a \"command\""),
            (
                r#"{"mcpServers": {"x": {"type": "ws", "url": "ws://h"}}}"#,
                "unknown type \"ws\"",
            ),
            (
                r#"{"mcpServers": {"x": {"type": "http"}}}"#,
                "needs a \"url\"",
            ),
            (r#"{"mcpServers": {"x": {"command": "a${B"}}}"#, "unclosed"),
            (
                r#"{"mcpServers": {"x": {"command": "${input:nope}"}}}"#,
                "not declared",
            ),
            (r#"{"other": 1}"#, "no servers"),
            ("{", "not valid JSON"),
        ] {
            let error = parse(text, Path::new("/c.json"), &vars())
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn defaults_apply_to_unset_and_empty_and_dollars_escape() {
        let expander = Expander {
            variables: &vars(),
            inputs: &[],
            folder: Path::new("/w"),
        };
        assert_eq!(expander.expand("${EMPTY:-d}").unwrap(), "d");
        assert_eq!(expander.expand("${EMPTY}").unwrap(), "");
        assert_eq!(expander.expand("${NOPE:-}").unwrap(), "");
        assert_eq!(
            expander.expand("cost: $${TOKEN}").unwrap(),
            "cost: ${TOKEN}"
        );
        assert_eq!(expander.expand("${workspaceFolder}/x").unwrap(), "/w/x");
        assert!(expander.expand("${A-B}").is_err());
    }

    #[test]
    fn tool_lists_are_read_and_a_bad_glob_is_named() {
        let path = Path::new("/p/.mcp.json");
        let text = r#"{"mcpServers": {"fs": {"command": "mcp-fs",
            "tools": {"allow": ["read_*"], "deny": ["read_media_file"]}}}}"#;
        let servers = parse(text, path, &vars()).unwrap();
        assert!(servers[0].tools.permits("read_text_file"));
        assert!(!servers[0].tools.permits("read_media_file"));
        assert!(!servers[0].tools.permits("write_file"));
        let bad =
            r#"{"mcpServers": {"fs": {"command": "mcp-fs", "tools": {"deny": ["[unclosed"]}}}}"#;
        let error = parse(bad, path, &vars()).unwrap_err().to_string();
        assert!(
            error.contains("fs") && error.contains("[unclosed"),
            "{error}"
        );
    }

    #[test]
    fn earlier_files_win_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join(".mcp.json");
        let user = dir.path().join("user.json");
        std::fs::write(
            &project,
            r#"{"mcpServers": {"a": {"command": "project-a"}}}"#,
        )
        .unwrap();
        std::fs::write(
            &user,
            r#"{"mcpServers": {"a": {"command": "user-a"}, "b": {"command": "user-b"}}}"#,
        )
        .unwrap();
        let Loaded { servers, shadowed } =
            load_all(&[project.clone(), user.clone()], &vars()).unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].source, project);
        assert_eq!(shadowed, vec![("a".to_owned(), user)]);
    }
}
