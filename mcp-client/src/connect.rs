//! Connecting to configured servers: stdio children (the command found on `PATH`, their stderr
//! in a log file of their own), Streamable HTTP (rmcp) and legacy SSE (mcp-core), in either
//! protocol era, all at once. A server that fails is reported with what went wrong and what to
//! do; the others work.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::{
    model::ProtocolVersion,
    service::{ClientLifecycleMode, RoleClient, RunningService, serve_client_with_lifecycle},
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::{
        StreamableHttpClientTransport, Transport, async_rw::AsyncRwTransport,
        streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::{
    io::DuplexStream,
    process::{Child, ChildStdin},
};

use crate::{
    config::{Server, Transport as ServerTransport, UrlKind},
    frames,
    handler::{Elicitation, Handler, Watched},
    oauth::{AuthOptions, Authorizer, OAuthConfig},
};

/// A connected server.
pub type Client = RunningService<RoleClient, Handler>;

/// Which protocol era to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Era {
    /// Probe the stateless 2026-07-28 revision, fall back to the handshake.
    Auto,
    /// The `initialize` handshake (2025-11-25 and older).
    Handshake,
    /// The stateless 2026-07-28 revision only.
    Stateless,
}

impl Era {
    fn lifecycle(self) -> ClientLifecycleMode {
        match self {
            Era::Auto => ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
            },
            Era::Handshake => ClientLifecycleMode::Initialize,
            Era::Stateless => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Longest a server may take to start and answer the first exchange.
    pub timeout: Duration,
    /// Where stdio servers' stderr goes, one `<name>.log` each.
    pub log_dir: PathBuf,
    /// Which protocol era to speak (`auto` falls back to the handshake era).
    pub era: Era,
    /// How each connection answers the server's requests (cloned per server, named after it).
    pub handler: Handler,
    /// How HTTP servers that want OAuth get their tokens.
    pub auth: AuthOptions,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            log_dir: default_log_dir(),
            era: Era::Auto,
            handler: Handler::plain(Elicitation::Decline),
            auth: AuthOptions::default(),
        }
    }
}

/// `$XDG_CACHE_HOME/mcp-toolkit/logs` (or `~/.cache/…`).
pub fn default_log_dir() -> PathBuf {
    mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Cache).join("logs")
}

/// A connected server.
pub struct Connected {
    /// The server's name in the config.
    pub name: String,
    /// The running client connection.
    pub client: Client,
}

/// Why a server could not be reached; every variant names the server and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server's command is not on PATH.
    #[error("{server}: command {command:?} was not found on PATH\n  hint: {hint}")]
    NotFound {
        /// The server's name.
        server: String,
        /// The command.
        command: String,
        /// What to install or change.
        hint: String,
    },
    /// The command could not be started.
    #[error("{server}: could not start {command:?}: {reason}")]
    Spawn {
        /// The server's name.
        server: String,
        /// The command.
        command: String,
        /// Why.
        reason: String,
    },
    /// The server started but the first exchange failed.
    #[error("{server}: {reason}{}", log_tail(log.as_deref()))]
    Handshake {
        /// The server's name.
        server: String,
        /// Why.
        reason: String,
        /// Its stderr log, whose tail the message shows.
        log: Option<PathBuf>,
    },
    /// The server did not answer in time.
    #[error("{server}: no answer within {seconds} s{}", log_tail(log.as_deref()))]
    Timeout {
        /// The server's name.
        server: String,
        /// How long it was given.
        seconds: u64,
        /// Its stderr log, whose tail the message shows.
        log: Option<PathBuf>,
    },
    /// The server wants an OAuth authorization that could not be had.
    #[error("{server}: {reason}")]
    Auth {
        /// The server's name.
        server: String,
        /// Why (and what to run).
        reason: String,
    },
    /// The server's entry cannot be used as written.
    #[error("{server}: {reason}")]
    Config {
        /// The server's name.
        server: String,
        /// Why.
        reason: String,
    },
}

/// The end of a server's log, to show with an error: why it died is usually there.
fn log_tail(log: Option<&Path>) -> String {
    let Some(log) = log else {
        return String::new();
    };
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(15)..];
    if tail.is_empty() {
        format!("\n  (its stderr, {}, is empty)", log.display())
    } else {
        format!(
            "\n  its stderr ({}) ends with:\n    {}",
            log.display(),
            tail.join("\n    ")
        )
    }
}

/// What to suggest when a command is not on PATH.
fn install_hint(command: &str) -> String {
    match command {
        "npx" | "node" | "npm" => {
            "install Node.js (it brings npx), or give the command's full path in the config".into()
        }
        "uvx" | "uv" => "install uv (https://docs.astral.sh/uv/), or give the full path".into(),
        "python" | "python3" | "pip" => "install Python 3, or give the full path".into(),
        "docker" => "install Docker, or give the full path".into(),
        _ => "install it, or give its full path in the config".into(),
    }
}

/// Connects to one server.
pub async fn connect(server: &Server, options: &ConnectOptions) -> Result<Connected, ConnectError> {
    match &server.transport {
        ServerTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => connect_stdio(server, command, args, env, cwd.as_deref(), options).await,
        ServerTransport::Url {
            url,
            headers,
            kind,
            oauth,
        } => {
            let headers = header_map(server, headers)?;
            match kind {
                UrlKind::Http => connect_http(server, url, headers, oauth, options).await,
                UrlKind::Sse => connect_sse(server, url, headers, options).await,
                UrlKind::Auto => match connect_http(server, url, headers.clone(), oauth, options)
                    .await
                {
                    Ok(connected) => Ok(connected),
                    // It is Streamable HTTP: it asked for an authorization.
                    Err(error @ ConnectError::Auth { .. }) => Err(error),
                    Err(http) => connect_sse(server, url, headers, options)
                        .await
                        .map_err(|sse| {
                            // Both errors name the server already: say it once.
                            let prefix = format!("{}: ", server.name);
                            let http = http.to_string();
                            let sse = sse.to_string();
                            ConnectError::Handshake {
                                server: server.name.clone(),
                                reason: format!(
                                    "neither Streamable HTTP nor legacy SSE worked at {url}:\n  http: {}\n  sse: {}",
                                    http.strip_prefix(&prefix).unwrap_or(&http),
                                    sse.strip_prefix(&prefix).unwrap_or(&sse)
                                ),
                                log: None,
                            }
                        }),
                },
            }
        }
    }
}

/// Connects to every server at once; each result keeps its server's name.
pub async fn connect_all(
    servers: &[Server],
    options: &ConnectOptions,
) -> Vec<(String, Result<Connected, ConnectError>)> {
    futures::future::join_all(
        servers
            .iter()
            .map(|server| async move { (server.name.clone(), connect(server, options).await) }),
    )
    .await
}

fn header_map(
    server: &Server,
    headers: &BTreeMap<String, String>,
) -> Result<HeaderMap, ConnectError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let bad = |what: &str| ConnectError::Config {
            server: server.name.clone(),
            reason: format!("header {name:?}: invalid {what}"),
        };
        map.insert(
            HeaderName::try_from(name.as_str()).map_err(|_| bad("name"))?,
            HeaderValue::try_from(value.as_str()).map_err(|_| bad("value"))?,
        );
    }
    Ok(map)
}

/// A file name from a server name.
fn log_name(server: &str) -> String {
    let name: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.log")
}

async fn connect_stdio(
    server: &Server,
    command: &str,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    options: &ConnectOptions,
) -> Result<Connected, ConnectError> {
    let name = server.name.clone();
    // PATH as the child will see it: the config may set its own.
    let path_var = env
        .get("PATH")
        .cloned()
        .or_else(|| std::env::var("PATH").ok())
        .unwrap_or_default();
    let base = cwd
        .map(Path::to_owned)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default();
    let program =
        which::which_in(command, Some(&path_var), &base).map_err(|_| ConnectError::NotFound {
            server: name.clone(),
            command: command.to_owned(),
            hint: install_hint(command),
        })?;

    std::fs::create_dir_all(&options.log_dir).map_err(|e| ConnectError::Spawn {
        server: name.clone(),
        command: command.to_owned(),
        reason: format!(
            "cannot create the log directory {}: {e}",
            options.log_dir.display()
        ),
    })?;
    let log_path = options.log_dir.join(log_name(&name));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ConnectError::Spawn {
            server: name.clone(),
            command: command.to_owned(),
            reason: format!("cannot open its log {}: {e}", log_path.display()),
        })?;
    let _ = writeln!(
        log,
        "--- {} {} {}",
        start_stamp(),
        program.display(),
        args.join(" ")
    );

    let mut child = tokio::process::Command::new(&program);
    child
        .args(args)
        .envs(env)
        .kill_on_drop(true)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    if let Some(cwd) = cwd {
        child.current_dir(cwd);
    }
    let transport = StdioChild::spawn(child, &name).map_err(|e| ConnectError::Spawn {
        server: name.clone(),
        command: program.display().to_string(),
        reason: e.to_string(),
    })?;
    let client = handshake(&name, transport, options, Some(log_path)).await?;
    Ok(Connected { name, client })
}

/// A stdio server as a transport: its output reaches rmcp through [`frames::relay`] (an answer
/// rmcp would drop becomes an error for its call), and closing follows the spec's stdio
/// shutdown: input closed, a wait, SIGTERM, a wait, SIGKILL.
struct StdioChild {
    transport: AsyncRwTransport<RoleClient, DuplexStream, ChildStdin>,
    child: Option<Child>,
}

impl StdioChild {
    /// How long a server gets to exit after each step of the shutdown.
    const GRACE: Duration = Duration::from_secs(2);

    fn spawn(mut command: tokio::process::Command, name: &str) -> std::io::Result<Self> {
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other(
                "the server's stdin or stdout is not a pipe",
            ));
        };
        let (ours, relayed) = tokio::io::duplex(64 * 1024);
        let server = name.to_owned();
        tokio::spawn(async move {
            if let Err(error) = frames::relay(stdout, relayed, &server).await {
                tracing::debug!(%server, %error, "relay from the server ended");
            }
        });
        Ok(Self {
            transport: AsyncRwTransport::new(ours, stdin),
            child: Some(child),
        })
    }
}

impl Transport<RoleClient> for StdioChild {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.transport.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.transport.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.transport.close().await?;
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if tokio::time::timeout(Self::GRACE, child.wait())
            .await
            .is_ok()
        {
            return Ok(());
        }
        if let Some(pid) = child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            if tokio::time::timeout(Self::GRACE, child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
        }
        child.kill().await
    }
}

/// Seconds since the epoch: enough to tell one start from the next in a log.
fn start_stamp() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("start at unix time {seconds}")
}

async fn handshake<T, E, A>(
    name: &str,
    transport: T,
    options: &ConnectOptions,
    log: Option<PathBuf>,
) -> Result<Client, ConnectError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let handler = Handler {
        server: name.to_owned(),
        ..options.handler.clone()
    };
    // `tools/list_changed` recorded as it is read, in order with the answers (see `Watched`).
    let transport = Watched::new(transport.into_transport(), name, handler.hooks.clone());
    let started = serve_client_with_lifecycle(handler, transport, options.era.lifecycle());
    match tokio::time::timeout(options.timeout, started).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(ConnectError::Handshake {
            server: name.to_owned(),
            reason: format!("the first exchange failed: {error}"),
            log,
        }),
        Err(_) => Err(ConnectError::Timeout {
            server: name.to_owned(),
            seconds: options.timeout.as_secs(),
            log,
        }),
    }
}

async fn connect_http(
    server: &Server,
    url: &str,
    headers: HeaderMap,
    oauth: &OAuthConfig,
    options: &ConnectOptions,
) -> Result<Connected, ConnectError> {
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .map_err(|e| ConnectError::Config {
            server: server.name.clone(),
            reason: format!("HTTP client: {e}"),
        })?;
    let authorizer = Authorizer::new(&server.name, url, oauth.clone(), &options.auth)
        .await
        .map_err(|e| ConnectError::Auth {
            server: server.name.clone(),
            reason: e.to_string(),
        })?;
    let authorizer = std::sync::Arc::new(authorizer);
    let transport = StreamableHttpClientTransport::with_client(
        authorizer.client(http),
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()),
    );
    match handshake(&server.name, transport, options, None).await {
        Ok(client) => Ok(Connected {
            name: server.name.clone(),
            client,
        }),
        Err(error) => Err(match authorizer.failure() {
            Some(reason) => ConnectError::Auth {
                server: server.name.clone(),
                reason,
            },
            None => error,
        }),
    }
}

async fn connect_sse(
    server: &Server,
    url: &str,
    headers: HeaderMap,
    options: &ConnectOptions,
) -> Result<Connected, ConnectError> {
    let sse_options = mcp_core::SseClientOptions {
        headers,
        ..mcp_core::SseClientOptions::default()
    };
    let transport = tokio::time::timeout(options.timeout, mcp_core::connect_sse(url, sse_options))
        .await
        .map_err(|_| ConnectError::Timeout {
            server: server.name.clone(),
            seconds: options.timeout.as_secs(),
            log: None,
        })?
        .map_err(|e| ConnectError::Handshake {
            server: server.name.clone(),
            reason: format!("legacy SSE at {url}: {e}"),
            log: None,
        })?;
    // The legacy transport predates the stateless revision: always the handshake.
    let handshake_options = ConnectOptions {
        era: Era::Handshake,
        ..options.clone()
    };
    let client = handshake(&server.name, transport, &handshake_options, None).await?;
    Ok(Connected {
        name: server.name.clone(),
        client,
    })
}
