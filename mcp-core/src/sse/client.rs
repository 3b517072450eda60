use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http::{HeaderMap, HeaderValue, header};
use reqwest::Url;
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ErrorData, JsonRpcMessage, ServerJsonRpcMessage},
};
use sse_stream::SseStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::channel::ChannelTransport;

const CHANNEL_CAPACITY: usize = 64;

/// How to reach a legacy SSE server.
#[derive(Debug, Clone)]
pub struct SseClientOptions {
    /// Sent with the stream request and every POST (`Authorization`, API keys).
    pub headers: HeaderMap,
    /// How long to wait for the `endpoint` event after connecting.
    pub endpoint_timeout: Duration,
    /// A client of your own (proxies, TLS roots); a default one otherwise.
    pub client: Option<reqwest::Client>,
}

impl Default for SseClientOptions {
    fn default() -> Self {
        Self {
            headers: HeaderMap::new(),
            endpoint_timeout: Duration::from_secs(30),
            client: None,
        }
    }
}

/// Why a legacy SSE connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SseClientError {
    /// The URL does not parse or is not HTTP(S).
    #[error("invalid SSE URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made.
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The stream's URL.
        url: String,
        /// The HTTP client's error.
        source: reqwest::Error,
    },
    /// The server answered the stream's request with an error status.
    #[error("{url} answered HTTP {status}{}; check the URL (legacy SSE servers usually serve /sse) and any auth headers", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The stream's URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The answer is not `text/event-stream`.
    #[error(
        "{url} did not answer with an event stream (Content-Type {content_type:?}); it may speak Streamable HTTP instead"
    )]
    NotEventStream {
        /// The stream's URL.
        url: String,
        /// The `Content-Type` it sent.
        content_type: String,
    },
    /// The stream ended before its `endpoint` event.
    #[error("{url} closed the stream before announcing its message endpoint")]
    NoEndpoint {
        /// The stream's URL.
        url: String,
    },
    /// No `endpoint` event in time.
    #[error("{url} sent no `endpoint` event within {seconds} s")]
    EndpointTimeout {
        /// The stream's URL.
        url: String,
        /// How long it was given.
        seconds: u64,
    },
    /// An `endpoint` on another origin, which could leak the session to a third party.
    #[error(
        "{url} announced the message endpoint {endpoint:?}, which is not on the same origin; refusing to send messages there"
    )]
    ForeignEndpoint {
        /// The stream's URL.
        url: String,
        /// The endpoint it announced.
        endpoint: String,
    },
    /// Reading the stream failed.
    #[error("reading the event stream of {url} failed: {reason}")]
    Stream {
        /// The stream's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
}

/// Opens a legacy SSE connection and returns it as a transport for an rmcp client:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use rmcp::ServiceExt;
///
/// let transport = mcp_core::connect_sse("http://127.0.0.1:8000/sse", Default::default()).await?;
/// let client = ().serve(transport).await?;
/// let tools = client.list_all_tools().await?;
/// # Ok(()) }
/// ```
///
/// The connection lives as long as the transport: dropping it closes the stream.
pub async fn connect_sse(
    url: &str,
    options: SseClientOptions,
) -> Result<ChannelTransport<RoleClient>, SseClientError> {
    let sse_url = Url::parse(url).map_err(|error| SseClientError::InvalidUrl {
        url: url.to_owned(),
        reason: error.to_string(),
    })?;
    if !matches!(sse_url.scheme(), "http" | "https") {
        return Err(SseClientError::InvalidUrl {
            url: url.to_owned(),
            reason: "the scheme must be http or https".to_owned(),
        });
    }
    let client = options.client.clone().unwrap_or_default();
    let response = client
        .get(sse_url.clone())
        .headers(options.headers.clone())
        .header(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        )
        .send()
        .await
        .map_err(|source| SseClientError::Connect {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(SseClientError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !content_type.starts_with("text/event-stream") {
        return Err(SseClientError::NotEventStream {
            url: url.to_owned(),
            content_type,
        });
    }
    let mut events =
        SseStream::from_bytes_stream(response.bytes_stream().map_err(std::io::Error::other));

    let endpoint = tokio::time::timeout(options.endpoint_timeout, async {
        while let Some(event) = events.next().await {
            let event = event.map_err(|error| SseClientError::Stream {
                url: url.to_owned(),
                reason: error.to_string(),
            })?;
            if event.event.as_deref() == Some("endpoint") {
                return Ok(event.data.unwrap_or_default());
            }
        }
        Err(SseClientError::NoEndpoint {
            url: url.to_owned(),
        })
    })
    .await
    .map_err(|_| SseClientError::EndpointTimeout {
        url: url.to_owned(),
        seconds: options.endpoint_timeout.as_secs(),
    })??;
    let post_url = sse_url
        .join(endpoint.trim())
        .ok()
        .filter(|joined| joined.origin() == sse_url.origin())
        .ok_or_else(|| SseClientError::ForeignEndpoint {
            url: url.to_owned(),
            endpoint: endpoint.clone(),
        })?;
    tracing::debug!(%post_url, "legacy SSE endpoint announced");

    let (to_client, incoming) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    let (outgoing, mut to_server) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let stop = CancellationToken::new();
    let worker = stop.clone();
    let headers = options.headers;
    let source = url.to_owned();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = worker.cancelled() => break,
                event = events.next() => match event {
                    None => {
                        tracing::info!(url = %source, "legacy SSE stream ended");
                        break;
                    }
                    Some(Err(error)) => {
                        tracing::warn!(url = %source, %error, "legacy SSE stream failed");
                        break;
                    }
                    Some(Ok(event)) => {
                        if !matches!(event.event.as_deref(), None | Some("message")) {
                            continue;
                        }
                        let Some(data) = event.data else { continue };
                        match serde_json::from_str::<ServerJsonRpcMessage>(&data) {
                            Ok(message) => {
                                if to_client.send(message).await.is_err() {
                                    break;
                                }
                            }
                            Err(error) => tracing::warn!(url = %source, %error, "ignoring an unreadable server message"),
                        }
                    }
                },
                message = to_server.recv() => {
                    let Some(message) = message else { break };
                    let sent = client
                        .post(post_url.clone())
                        .headers(headers.clone())
                        .json(&message)
                        .send()
                        .await;
                    let refusal = match sent {
                        Ok(response) if response.status().is_success() => None,
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().await.unwrap_or_default();
                            Some(format!("the server refused the message with HTTP {status}: {body}"))
                        }
                        Err(error) => Some(format!("posting the message failed: {error}")),
                    };
                    if let Some(reason) = refusal {
                        tracing::warn!(url = %post_url, %reason, "message not delivered");
                        // A request nobody will answer would hang its caller: answer it here.
                        if let JsonRpcMessage::Request(request) = &message {
                            let answer = ServerJsonRpcMessage::error(
                                ErrorData::internal_error(reason, None),
                                Some(request.id.clone()),
                            );
                            if to_client.send(answer).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(ChannelTransport::new(outgoing, incoming).with_worker(stop.drop_guard()))
}
