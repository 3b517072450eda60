//! An in-process client/server pair over the real protocol, for unit tests of a server's tools,
//! and the same client over HTTP or legacy SSE for tests of a listening server.
//!
//! The server runs on the same line transport as stdio (through an in-memory pipe), and the
//! client is rmcp's, so a test sees exactly what a host would: schemas, annotations, errors.
//!
//! ```
//! # use rmcp::{ServerHandler, handler::server::{router::tool::ToolRouter, wrapper::Parameters}, model::*, tool, tool_handler, tool_router};
//! # #[derive(Clone)] struct Echo { tool_router: ToolRouter<Self> }
//! # #[tool_router] impl Echo {
//! #     #[tool(description = "Echo")] fn echo(&self) -> String { "hi".into() }
//! # }
//! # #[tool_handler] impl ServerHandler for Echo {
//! #     fn get_info(&self) -> ServerConfig { ServerConfig::new(ServerCapabilities::builder().enable_tools().build()) }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = mcp_core::testing::connect(Echo { tool_router: Echo::tool_router() }).await?;
//! let result = client.call("echo", serde_json::json!({})).await?;
//! assert_eq!(mcp_core::testing::text(&result), "hi");
//! # Ok(()) }
//! ```

use std::ops::Deref;

use rmcp::{
    ClientHandler, RoleClient, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResult, ClientConfig, ContentBlock,
        ProgressNotificationParam, ProtocolVersion,
    },
    service::{ClientLifecycleMode, RunningService, ServiceError, serve_client_with_lifecycle},
    transport::{
        StreamableHttpClientTransport, streamable_http_client::StreamableHttpClientTransportConfig,
    },
};
use tokio::task::JoinHandle;

use crate::stdio::LineTransport;

/// Which protocol era the test client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// `initialize` handshake, protocol 2025-11-25.
    Handshake,
    /// Stateless `server/discover`, protocol 2026-07-28.
    Stateless,
}

/// A connected test client; derefs to rmcp's client for every protocol call. `C` is the
/// client's handler: [`ClientConfig`] for a plain client, or one that answers the server's
/// requests (roots, sampling, elicitation) for tests that need it.
pub struct TestClient<C: ClientHandler = ClientConfig> {
    client: RunningService<RoleClient, C>,
    server: JoinHandle<()>,
}

impl<C: ClientHandler> Deref for TestClient<C> {
    type Target = RunningService<RoleClient, C>;

    fn deref(&self) -> &Self::Target {
        &self.client
    }
}

impl<C: ClientHandler> Drop for TestClient<C> {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl<C: ClientHandler> TestClient<C> {
    /// Calls `tool` with JSON `arguments` (an object, or `null` for none).
    pub async fn call(
        &self,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<CallToolResult, ServiceError> {
        self.client.call_tool(tool_call(tool, arguments)).await
    }

    /// Ends the session and waits for the server to stop.
    pub async fn close(mut self) {
        let _ = self.client.close().await;
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = server.await;
    }
}

/// Why the test client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The handshake failed.
    #[error("the test client could not connect: {0}")]
    Initialize(Box<rmcp::service::ClientInitializeError>),
    /// The legacy SSE stream could not be opened.
    #[error(transparent)]
    Sse(#[from] crate::SseClientError),
}

impl From<rmcp::service::ClientInitializeError> for HarnessError {
    fn from(error: rmcp::service::ClientInitializeError) -> Self {
        Self::Initialize(Box::new(error))
    }
}

/// A client connected over the network, to a server started with [`crate::HttpServer`] or a
/// spawned binary.
pub type NetworkClient = RunningService<RoleClient, ClientConfig>;

/// The `tools/call` parameters for `tool` with JSON `arguments` (an object, or `null` for none).
pub fn tool_call(tool: &str, arguments: serde_json::Value) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    if let serde_json::Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    params
}

fn lifecycle(era: Era) -> ClientLifecycleMode {
    match era {
        Era::Handshake => ClientLifecycleMode::Initialize,
        Era::Stateless => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        },
    }
}

/// Connects to a Streamable HTTP endpoint (`http://…/mcp`), with a bearer token if given.
pub async fn connect_http(
    url: &str,
    era: Era,
    bearer: Option<&str>,
) -> Result<NetworkClient, HarnessError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    if let Some(token) = bearer {
        config = config.auth_header(token);
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    Ok(serve_client_with_lifecycle(ClientConfig::default(), transport, lifecycle(era)).await?)
}

/// Connects to a legacy SSE endpoint (`http://…/sse`) with [`crate::connect_sse`].
pub async fn connect_legacy_sse(
    url: &str,
    options: crate::SseClientOptions,
) -> Result<NetworkClient, HarnessError> {
    let transport = crate::connect_sse(url, options).await?;
    Ok(ClientConfig::default().serve(transport).await?)
}

/// Connects a handshake-era client to `handler`.
pub async fn connect<H: ServerHandler>(handler: H) -> Result<TestClient, HarnessError> {
    connect_with(handler, Era::Handshake).await
}

/// Connects a client of the given protocol era to `handler`.
pub async fn connect_with<H: ServerHandler>(
    handler: H,
    era: Era,
) -> Result<TestClient, HarnessError> {
    connect_client(handler, ClientConfig::default(), era).await
}

/// Connects `client` (a client handler of your own) to `handler`.
pub async fn connect_client<H: ServerHandler, C: ClientHandler>(
    handler: H,
    client: C,
    era: Era,
) -> Result<TestClient<C>, HarnessError> {
    let (client_io, server_io) = tokio::io::duplex(1024 * 1024);
    let (server_read, server_write) = tokio::io::split(server_io);
    let server = tokio::spawn(async move {
        let transport = LineTransport::new(server_read, server_write);
        if let Ok(running) = crate::Guarded::new(handler).serve(transport).await {
            let _ = running.waiting().await;
        }
    });
    let client = serve_client_with_lifecycle(client, client_io, lifecycle(era)).await?;
    Ok(TestClient { client, server })
}

/// A client that keeps every progress notification it receives (for tests of long tools that
/// report progress); clones share what was received.
#[derive(Clone, Default)]
pub struct ProgressRecorder {
    received: std::sync::Arc<std::sync::Mutex<Vec<ProgressNotificationParam>>>,
    tasks: bool,
}

impl ProgressRecorder {
    /// A recorder whose client declares the Tasks extension (long tools answer with a task).
    pub fn with_tasks() -> Self {
        Self {
            tasks: true,
            ..Self::default()
        }
    }

    /// The notifications received so far, in order.
    pub fn received(&self) -> Vec<ProgressNotificationParam> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ClientHandler for ProgressRecorder {
    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        if self.tasks {
            config.capabilities = rmcp::model::ClientCapabilities::builder()
                .enable_tasks()
                .build();
        }
        config
    }

    async fn on_progress(
        &self,
        progress: ProgressNotificationParam,
        _: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(progress);
    }
}

/// The text blocks of a tool result, joined by newlines.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}
