use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{Query, State},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::{get, post},
};
use futures::{StreamExt, stream};
use http::StatusCode;
use rmcp::{
    RoleServer, ServiceExt,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{MESSAGES_PATH, SSE_PATH};
use crate::{
    Guarded, Sessions,
    channel::ChannelTransport,
    http_policy::{rejection, too_busy},
    message::{Inbound, read_client_message},
};

const CHANNEL_CAPACITY: usize = 64;

/// Per session: where client messages go (to the handler) and where answers go (to the stream).
#[derive(Clone)]
struct SessionChannels {
    to_server: mpsc::Sender<ClientJsonRpcMessage>,
    to_client: mpsc::Sender<ServerJsonRpcMessage>,
}

type Open = Arc<Mutex<HashMap<String, SessionChannels>>>;

struct SseState<S> {
    factory: Arc<S>,
    sessions: Open,
    shutdown: CancellationToken,
    max_sessions: usize,
}

impl<S> Clone for SseState<S> {
    fn clone(&self) -> Self {
        Self {
            factory: self.factory.clone(),
            sessions: self.sessions.clone(),
            shutdown: self.shutdown.clone(),
            max_sessions: self.max_sessions,
        }
    }
}

/// `GET /sse` and `POST /messages`, each session served by its own (guarded) handler from
/// `factory`, at most `max_sessions` at once.
pub(crate) fn router<S: Sessions>(
    factory: Arc<S>,
    shutdown: CancellationToken,
    max_sessions: usize,
) -> Router {
    let state = SseState {
        factory,
        sessions: Arc::default(),
        shutdown,
        max_sessions,
    };
    Router::new()
        .route(SSE_PATH, get(open_stream::<S>))
        .route(MESSAGES_PATH, post(post_message::<S>))
        // The one body limit is --max-body-bytes, enforced before this (read_json_body); axum's
        // own 2 MB default would cut it short here.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state)
}

async fn open_stream<S: Sessions>(State(state): State<SseState<S>>) -> Response {
    if lock(&state.sessions).len() >= state.max_sessions {
        return too_busy(state.max_sessions);
    }
    let session_id = uuid::Uuid::new_v4().simple().to_string();
    let (to_server, from_client) = mpsc::channel::<ClientJsonRpcMessage>(CHANNEL_CAPACITY);
    let (to_client, from_server) = mpsc::channel::<ServerJsonRpcMessage>(CHANNEL_CAPACITY);
    lock(&state.sessions).insert(
        session_id.clone(),
        SessionChannels {
            to_server,
            to_client: to_client.clone(),
        },
    );
    tracing::info!(%session_id, "legacy SSE session opened");

    let session = state.shutdown.child_token();
    // A client that does not read its stream is dropped when its queue is full, rather than
    // have every answer kept for it.
    let transport = ChannelTransport::<RoleServer>::new(to_client, from_client)
        .closing_when_full(session.clone());
    {
        let (handler, sessions, session, session_id) = (
            Guarded::new(state.factory.session()),
            state.sessions.clone(),
            session.clone(),
            session_id.clone(),
        );
        tokio::spawn(async move {
            match handler.serve_with_ct(transport, session).await {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(error) => {
                    tracing::info!(%session_id, %error, "legacy SSE session ended before it started")
                }
            }
            lock(&sessions).remove(&session_id);
            tracing::info!(%session_id, "legacy SSE session closed");
        });
    }

    // The client hanging up drops this stream, and with it the guard that ends the session.
    let hang_up = session.drop_guard();
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("{MESSAGES_PATH}?sessionId={session_id}"));
    let messages = ReceiverStream::new(from_server).filter_map(move |message| {
        let _session_alive = &hang_up;
        let event = match serde_json::to_string(&message) {
            Ok(json) => Some(Ok(Event::default().event("message").data(json))),
            Err(error) => {
                tracing::error!(%error, "could not encode a server message");
                None
            }
        };
        std::future::ready(event)
    });
    Sse::new(stream::once(std::future::ready(Ok::<_, Infallible>(endpoint))).chain(messages))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(serde::Deserialize)]
struct SessionQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

async fn post_message<H>(
    State(state): State<SseState<H>>,
    Query(query): Query<SessionQuery>,
    body: Bytes,
) -> Response {
    let Some(session_id) = query.session_id else {
        return rejection(
            StatusCode::BAD_REQUEST,
            "Bad Request: the sessionId query parameter is missing; use the URL from the `endpoint` event",
        );
    };
    let inbound = read_client_message(&body);
    if let Inbound::Reject(rejected) = &inbound
        && !rejected.has_id()
    {
        return (StatusCode::BAD_REQUEST, axum::Json(rejected.to_json())).into_response();
    }
    let channels = lock(&state.sessions).get(&session_id).cloned();
    let Some(channels) = channels else {
        return rejection(
            StatusCode::NOT_FOUND,
            format!("Not Found: no session {session_id:?}; open a new one with GET {SSE_PATH}"),
        );
    };
    let delivered = match inbound {
        Inbound::Message(message) => channels.to_server.send(*message).await.is_ok(),
        Inbound::Skip => true,
        // The client waits for this answer on its stream, like any other.
        Inbound::Reject(rejected) => {
            match serde_json::from_value::<ServerJsonRpcMessage>(rejected.to_json()) {
                Ok(answer) => channels.to_client.send(answer).await.is_ok(),
                Err(_) => {
                    return (StatusCode::BAD_REQUEST, axum::Json(rejected.to_json()))
                        .into_response();
                }
            }
        }
    };
    if !delivered {
        return rejection(
            StatusCode::NOT_FOUND,
            format!(
                "Not Found: session {session_id:?} has ended; open a new one with GET {SSE_PATH}"
            ),
        );
    }
    (StatusCode::ACCEPTED, "Accepted").into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent, so keep going.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
