//! The command-line arguments every server shares, flattened into its own clap parser.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// The port `--listen` uses when none is given.
pub const DEFAULT_PORT: u16 = 8000;
/// Sessions at once unless `--max-sessions` says otherwise: a host opens one or a few; each
/// costs tens of kilobytes, so a thousand stay under a hundred megabytes.
pub const DEFAULT_MAX_SESSIONS: usize = 1000;

/// How a server talks to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Transport {
    /// JSON-RPC lines on stdin/stdout: what Claude Desktop, Cursor and VS Code spawn.
    Stdio,
    /// Streamable HTTP at `/mcp` (protocol 2025-03-26 and later, both eras).
    Http,
    /// Legacy HTTP+SSE of protocol 2024-11-05: `GET /sse` and `POST /messages`.
    Sse,
}

/// Log verbosity, from quiet to chatty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Failures only.
    Error,
    /// Failures and what looks wrong.
    Warn,
    /// What the server does: starts, sessions, refusals.
    Info,
    /// Each request.
    Debug,
    /// Everything, the SDK's messages included.
    Trace,
}

impl LogLevel {
    /// The level as a `tracing` filter directive (`info`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// Transport, listener and hardening options shared by every server.
///
/// Flatten it into a server's own arguments:
///
/// ```
/// use clap::Parser;
///
/// #[derive(Parser)]
/// struct Cli {
///     #[command(flatten)]
///     serve: mcp_core::ServeArgs,
/// }
///
/// let cli = Cli::parse_from(["my-server", "--transport", "http", "--listen", "127.0.0.1:0"]);
/// assert_eq!(cli.serve.transports(), vec![mcp_core::Transport::Http]);
/// ```
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Transport and HTTP")]
pub struct ServeArgs {
    /// How to talk to the client. `http` and `sse` may be combined on one listener: `--transport http,sse`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "stdio")]
    pub transport: Vec<Transport>,

    /// Address of the HTTP listener (port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,

    /// Allow `--listen` on an address other than loopback. Anyone who can reach it can call the tools:
    /// set `--auth-issuer` or `--auth-token` too.
    #[arg(long)]
    pub allow_remote: bool,

    /// Extra accepted `Host` header values (`name` or `name:port`), besides localhost names on the bound port.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allowed_hosts: Vec<String>,

    /// Extra accepted browser `Origin`s (`scheme://host:port`), besides localhost origins on the bound port.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allowed_origins: Vec<String>,

    /// Require `Authorization: Bearer <TOKEN>` on every MCP request (health checks excepted).
    #[arg(
        long,
        env = "MCP_AUTH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub auth_token: Option<String>,

    /// Take OAuth access tokens (JWTs) issued by this authorization server, and serve the
    /// metadata that leads clients to it (MCP authorization, RFC 9728). Its RFC 8414 or OpenID
    /// metadata names the keys. Instead of --auth-token.
    #[arg(long, env = "MCP_AUTH_ISSUER", value_name = "URL")]
    pub auth_issuer: Option<String>,

    /// The identifier tokens must be issued for (`aud`): the URL clients reach this server at.
    /// Default: http://<--listen>/mcp.
    #[arg(
        long,
        env = "MCP_AUTH_AUDIENCE",
        value_name = "URL",
        requires = "auth_issuer"
    )]
    pub auth_audience: Option<String>,

    /// A scope every request's token must carry (repeat for several).
    #[arg(long = "auth-scope", value_name = "SCOPE", requires = "auth_issuer")]
    pub auth_scopes: Vec<String>,

    /// A scope calls of one tool need besides (`write_file=files:write`; repeat for several).
    #[arg(
        long = "auth-tool-scope",
        value_name = "TOOL=SCOPE",
        requires = "auth_issuer"
    )]
    pub auth_tool_scopes: Vec<String>,

    /// Largest accepted request body; bigger ones get 413.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a client has to send its request, and the server to start answering it (408 after;
    /// a connection whose request headers are not in by then is closed), and the longest a client
    /// may leave an answer unread before its connection is closed.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub request_timeout: u64,

    /// Most MCP sessions open at once (Streamable HTTP and legacy SSE each); a new one beyond
    /// that gets 503 with Retry-After. Connections are capped at twice this, plus a margin.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: usize,

    /// Log level (logs go to stderr). Overrides `RUST_LOG`, which otherwise applies; default `info`.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            transport: vec![Transport::Stdio],
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            allow_remote: false,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            auth_token: None,
            auth_issuer: None,
            auth_audience: None,
            auth_scopes: Vec::new(),
            auth_tool_scopes: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout: 30,
            max_sessions: DEFAULT_MAX_SESSIONS,
            log_level: None,
        }
    }
}

impl ServeArgs {
    /// Arguments for an HTTP listener on `listen`, with every other option at its default.
    pub fn http(listen: SocketAddr, transports: &[Transport]) -> Self {
        Self {
            transport: transports.to_vec(),
            listen,
            ..Self::default()
        }
    }

    /// Most connections at once: two per session (a stream and a request) and a margin.
    pub fn max_connections(&self) -> usize {
        self.max_sessions
            .max(1)
            .saturating_mul(2)
            .saturating_add(64)
    }

    /// The selected transports, deduplicated, in the order given.
    pub fn transports(&self) -> Vec<Transport> {
        let mut seen = Vec::new();
        for transport in &self.transport {
            if !seen.contains(transport) {
                seen.push(*transport);
            }
        }
        seen
    }

    /// `--request-timeout` as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout)
    }
}
