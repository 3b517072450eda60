//! One entry point for every transport: [`serve`] runs a handler on stdio, Streamable HTTP or
//! legacy SSE as the [`ServeArgs`] say, and returns when the client or a signal ends it.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, middleware, routing::get};
use http::StatusCode;
use rmcp::{
    ServerHandler, ServiceExt,
    service::ServerInitializeError,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;

use crate::{
    Guarded, Sessions,
    args::{ServeArgs, Transport},
    auth::{AuthConfigError, OAuthSettings, Verifier},
    http_policy::{
        BearerToken, HostPolicy, PolicyError, enforce_host_policy, read_json_body, require_bearer,
    },
    logging::init_logging,
    sse,
    stdio::LineTransport,
};

/// Path of the Streamable HTTP endpoint.
pub const MCP_PATH: &str = "/mcp";
/// Path of the health check (no auth; Host still checked).
pub const HEALTH_PATH: &str = "/health";

/// How long an HTTP server waits for open streams after a shutdown request.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `--transport stdio` with another transport.
    #[error("stdio cannot be combined with other transports; run one server per stdio client")]
    StdioCombined,
    /// `--listen` beyond loopback without `--allow-remote`.
    #[error(
        "refusing to listen on {addr}, which is not a loopback address: anyone who can reach it could call the tools. Pass --allow-remote (and set --auth-issuer or --auth-token) if that is what you want"
    )]
    NotLoopback {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error(
        "cannot listen on {addr}: {source}. Is another server using the port? Pick another with --listen"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it could not be bound.
        source: std::io::Error,
    },
    /// An `--allowed-hosts` or `--allowed-origins` value that is not one.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// OAuth options that do not make sense (`--auth-issuer` and friends).
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// The listener failed while serving.
    #[error("the HTTP server failed: {0}")]
    Http(std::io::Error),
    /// The stdio session's handshake failed.
    #[error("the MCP session failed to start: {0}")]
    Initialize(Box<ServerInitializeError>),
}

/// Serves `sessions` as `args` say, until end of input (stdio), SIGINT or SIGTERM.
///
/// Each session (the stdio one, each HTTP one) gets its own handler from `sessions`: a handler
/// that is `Clone` is cloned, so state meant to be shared between sessions belongs behind an
/// `Arc`; [`per_session`](crate::per_session) builds each one with a function. A panic in a request handler becomes an
/// internal-error answer rather than a request that never ends (see [`Guarded`]). Logging goes
/// to stderr (see [`init_logging`]); on stdio nothing but protocol messages reaches stdout.
pub async fn serve<S: Sessions>(sessions: S, args: ServeArgs) -> Result<(), ServeError> {
    init_logging(args.log_level);
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let transports = args.transports();
    if transports == [Transport::Stdio] {
        return serve_stdio(sessions.session(), shutdown).await;
    }
    if transports.contains(&Transport::Stdio) {
        return Err(ServeError::StdioCombined);
    }
    let server = HttpServer::start(sessions, &args).await?;
    let names: Vec<String> = transports
        .iter()
        .map(|transport| match transport {
            Transport::Http => format!("Streamable HTTP at {}", server.url(MCP_PATH)),
            Transport::Sse => format!("legacy SSE at {}", server.url(sse::SSE_PATH)),
            Transport::Stdio => String::new(),
        })
        .collect();
    tracing::info!("listening: {}", names.join(", "));
    server.run_until(shutdown).await
}

async fn serve_stdio<H>(handler: H, shutdown: CancellationToken) -> Result<(), ServeError>
where
    H: ServerHandler,
{
    let (stdin, stdout) = rmcp::transport::stdio_pipes();
    let transport = LineTransport::new(stdin, stdout);
    let running = match Guarded::new(handler)
        .serve_with_ct(transport, shutdown)
        .await
    {
        Ok(running) => running,
        // A client that leaves before saying hello, or a signal, is an ordinary end.
        Err(ServerInitializeError::ConnectionClosed(_) | ServerInitializeError::Cancelled) => {
            tracing::info!("stdio closed before the session started");
            return Ok(());
        }
        Err(error) => return Err(ServeError::Initialize(Box::new(error))),
    };
    let reason = running.waiting().await;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers now, before anything is served (a signal that came
/// before a spawned task first ran would otherwise kill the process outright), and returns what
/// cancels `shutdown` when one of them arrives.
fn cancel_on_signal(shutdown: CancellationToken) -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        [
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ]
    };
    async move {
        #[cfg(unix)]
        {
            let [interrupt, terminate] = signals.map(|watched| async move {
                match watched {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot watch a signal");
                        std::future::pending::<()>().await;
                    }
                }
            });
            tokio::select! {
                _ = interrupt => {}
                _ = terminate => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        shutdown.cancel();
    }
}

/// A running HTTP listener serving Streamable HTTP and/or legacy SSE.
///
/// [`serve`] uses it; tests use it directly to get a server on a free port:
///
/// ```no_run
/// # async fn run(handler: impl mcp_core::Sessions) -> Result<(), mcp_core::ServeError> {
/// use mcp_core::{HttpServer, ServeArgs, Transport};
///
/// let args = ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http, Transport::Sse]);
/// let server = HttpServer::start(handler, &args).await?;
/// println!("{}", server.url("/mcp"));
/// server.shutdown().await
/// # }
/// ```
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// Binds `args.listen` and starts serving in the background, each session with a handler
    /// from `sessions`.
    pub async fn start<S: Sessions>(sessions: S, args: &ServeArgs) -> Result<Self, ServeError> {
        let transports = args.transports();
        if transports.contains(&Transport::Stdio) {
            return Err(ServeError::StdioCombined);
        }
        if !args.listen.ip().is_loopback() && !args.allow_remote {
            return Err(ServeError::NotLoopback { addr: args.listen });
        }
        if !args.listen.ip().is_loopback()
            && args.auth_token.is_none()
            && args.auth_issuer.is_none()
        {
            tracing::warn!(addr = %args.listen, "listening beyond loopback without --auth-issuer or --auth-token: anyone who can reach this address can call the tools");
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: args.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Http)?;
        let shutdown = CancellationToken::new();
        let app = app(
            Arc::new(sessions),
            args,
            addr,
            &transports,
            shutdown.clone(),
        )?;
        let limits = ConnectionLimits {
            max_connections: args.max_connections(),
            header_read_timeout: args.request_timeout(),
            write_stall_timeout: args.request_timeout(),
        };
        let task = tokio::spawn(serve_connections(listener, app, limits, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task,
        })
    }

    /// The bound address (with the real port when `--listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Ends every session, stops accepting connections and waits (a few seconds at most) for
    /// open streams to close.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        Self::drain(self.task).await
    }

    /// Serves until `signal` is cancelled, then shuts down as [`Self::shutdown`] does.
    pub async fn run_until(self, signal: CancellationToken) -> Result<(), ServeError> {
        let Self {
            shutdown, mut task, ..
        } = self;
        tokio::select! {
            joined = &mut task => flatten(joined),
            _ = signal.cancelled() => {
                tracing::info!("shutting down");
                shutdown.cancel();
                Self::drain(task).await
            }
        }
    }

    async fn drain(mut task: JoinHandle<std::io::Result<()>>) -> Result<(), ServeError> {
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(joined) => flatten(joined),
            Err(_) => {
                tracing::warn!("open connections did not close in time; dropping them");
                task.abort();
                Ok(())
            }
        }
    }

    /// Waits until the server stops on its own (it only does so on error).
    pub async fn wait(self) -> Result<(), ServeError> {
        flatten(self.task.await)
    }
}

/// What one listener allows its clients.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    /// Connections at once; one more is closed as soon as it is accepted.
    max_connections: usize,
    /// Time for a request's headers to arrive; a connection that sends them more slowly (or
    /// never finishes them) is closed.
    header_read_timeout: Duration,
    /// Time a client may leave what the server sends unread (no byte taken while there is
    /// something to send); then the connection is closed and what was queued for it dropped.
    /// A stream with nothing to send waits as long as it likes.
    write_stall_timeout: Duration,
}

/// Accepts connections and serves `app` on each (HTTP/1.1, upgrades allowed) until `shutdown`,
/// then lets each finish its current exchange. Where `axum::serve` would hold any number of
/// connections, each as long as its client likes, this closes the ones past the cap at once,
/// the ones whose request headers do not arrive in time, and the ones whose client stops reading
/// while an answer waits for it (rmcp's queues are bounded, so what waits is bounded too; this
/// frees it).
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::{
        rt::{TokioIo, TokioTimer},
        service::TowerToHyperService,
    };
    use tower::ServiceExt as _;

    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was accepted: wait a
                    // little rather than spin.
                    tracing::debug!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = limits.max_connections,
                "refused a connection: too many open (--max-sessions sets the cap)"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_stall_timeout));
        let service = TowerToHyperService::new(app.clone().map_request(
            |request: http::Request<hyper::body::Incoming>| request.map(axum::body::Body::new),
        ));
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(Box::pin(stream)), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn flatten(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), ServeError> {
    match joined {
        Ok(result) => result.map_err(ServeError::Http),
        Err(error) => Err(ServeError::Http(std::io::Error::other(error))),
    }
}

fn app<S: Sessions>(
    sessions: Arc<S>,
    args: &ServeArgs,
    bound: SocketAddr,
    transports: &[Transport],
    shutdown: CancellationToken,
) -> Result<Router, ServeError> {
    let policy = Arc::new(HostPolicy::new(
        bound,
        &args.allowed_hosts,
        &args.allowed_origins,
    )?);
    let mut mcp = Router::new();
    if transports.contains(&Transport::Http) {
        // Host and Origin are checked by our own layer, the same for every route.
        let config = StreamableHttpServerConfig::default()
            .with_cancellation_token(shutdown.child_token())
            .with_max_request_body_bytes(args.max_body_bytes)
            .disable_allowed_hosts()
            .disable_allowed_origins();
        let factory = sessions.clone();
        let open = Arc::new(LocalSessionManager::default());
        let service = StreamableHttpService::new(
            move || Ok(Guarded::new(factory.session())),
            open.clone(),
            config,
        );
        let cap = SessionCap {
            sessions: open,
            max: args.max_sessions,
        };
        mcp = mcp.route_service(
            MCP_PATH,
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(cap, cap_sessions))
                .service(service),
        );
    }
    if transports.contains(&Transport::Sse) {
        mcp = mcp.merge(sse::router(sessions, shutdown, args.max_sessions));
    }
    let verifier = match &args.auth_issuer {
        Some(_) if args.auth_token.is_some() => return Err(AuthConfigError::Both.into()),
        Some(issuer) => Some(Arc::new(Verifier::new(OAuthSettings::new(
            issuer,
            args.auth_audience.as_deref(),
            bound,
            &args.auth_scopes,
            &args.auth_tool_scopes,
        )?)?)),
        None => None,
    };
    if let Some(verifier) = &verifier {
        // Inside the body reader, which names the tool a call is for (its scopes).
        mcp = mcp.layer(middleware::from_fn_with_state(
            verifier.clone(),
            crate::auth::require_oauth,
        ));
    }
    mcp = mcp.layer(middleware::from_fn_with_state(
        args.max_body_bytes,
        read_json_body,
    ));
    if let Some(token) = &args.auth_token {
        mcp = mcp.layer(middleware::from_fn_with_state(
            BearerToken::new(token),
            require_bearer,
        ));
    }
    if let Some(verifier) = verifier {
        let metadata = get(crate::auth::metadata).with_state(verifier);
        mcp = mcp
            .route("/.well-known/oauth-protected-resource", metadata.clone())
            .route(
                &format!("/.well-known/oauth-protected-resource{MCP_PATH}"),
                metadata,
            );
    }
    let app = mcp
        .route(HEALTH_PATH, get(health))
        // Time until the response starts: streams, once open, may run as long as they need.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            args.request_timeout(),
        ))
        .layer(middleware::from_fn_with_state(policy, enforce_host_policy));
    Ok(app)
}

/// The Streamable HTTP sessions and how many may be open.
#[derive(Clone)]
struct SessionCap {
    sessions: Arc<LocalSessionManager>,
    max: usize,
}

/// Refuses a new session (an `initialize` without a session id) while `max` are open: 503 with
/// `Retry-After`, before rmcp builds anything for it. Sessions end when their client deletes
/// them or after rmcp's idle timeout.
async fn cap_sessions(
    axum::extract::State(cap): axum::extract::State<SessionCap>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if request.method() == http::Method::POST
        && !request.headers().contains_key("mcp-session-id")
        && cap.sessions.sessions.read().await.len() >= cap.max
    {
        let (parts, body) = request.into_parts();
        // The body is already read whole (read_json_body), so this costs no waiting.
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|collected| collected.to_bytes())
            .unwrap_or_default();
        let initialize = serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|message| message["method"] == "initialize");
        if initialize {
            return crate::http_policy::too_busy(cap.max);
        }
        return next
            .run(axum::extract::Request::from_parts(parts, bytes.into()))
            .await;
    }
    next.run(request).await
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "status": "ok" }))
}
