//! Telling clients what changed on a server: its tools, prompts or resources, or one resource.
//!
//! The two eras hear of changes differently. A 2026-07-28 client opens `subscriptions/listen`
//! with a filter (which lists it wants to hear of, which resources it follows); rmcp sends the
//! acknowledgement and tags every notification with the subscription's id. A handshake-era session
//! gets `notifications/*/list_changed` on its own stream and `notifications/resources/updated` for
//! the resources it subscribed to with `resources/subscribe`. [`Changes`] is one place a server
//! tells, and both hear it: it is shared by all sessions (a stateless request and the listen
//! stream that should hear of what it changed are different sessions).
//!
//! A handler holds a clone and hands it the requests:
//!
//! ```
//! use mcp_core::Changes;
//! use rmcp::{ErrorData, RoleServer, ServerHandler, model::*, service::*};
//!
//! #[derive(Clone, Default)]
//! struct Notes { changes: Changes }
//!
//! impl ServerHandler for Notes {
//!     fn get_info(&self) -> ServerConfig {
//!         ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
//!     }
//!     fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
//!         Some(self.changes.accept(requested))
//!     }
//!     async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
//!         self.changes.listen(context).await
//!     }
//!     async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
//!         self.changes.join(context.peer);
//!     }
//! }
//! // Later, from a tool: `self.changes.tools_changed().await`.
//! ```

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        PromptListChangedNotification, ResourceListChangedNotification,
        ResourceUpdatedNotification, ResourceUpdatedNotificationParam, ServerNotification,
        SubscriptionFilter, ToolListChangedNotification,
    },
    service::{Peer, SubscriptionContext, SubscriptionSendError, SubscriptionSink},
};

/// Open `subscriptions/listen` streams one server keeps at most; one more is ended with an
/// error at once (each holds a connection and a place in every broadcast).
pub const MAX_LISTENERS: usize = 1024;

/// Resources one subscription may follow; the acknowledgement names the ones accepted.
pub const MAX_FOLLOWED: usize = 1024;

/// How long one client may take to take a notification before it is skipped: a client that
/// does not read cannot hold up the others.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a server's changes go: every listening stream and every handshake-era session. Clones
/// share it. See the [module](self).
#[derive(Debug, Clone, Default)]
pub struct Changes(Arc<Hub>);

#[derive(Debug, Default)]
struct Hub {
    next: AtomicU64,
    listeners: Mutex<HashMap<u64, SubscriptionSink>>,
    sessions: Mutex<HashMap<u64, Session>>,
}

/// A handshake-era session: its peer, and the resources it subscribed to.
#[derive(Debug)]
struct Session {
    peer: Peer<RoleServer>,
    resources: HashSet<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One change, in both eras' terms.
#[derive(Debug, Clone)]
enum Change {
    Tools,
    Prompts,
    Resources,
    Resource(String),
}

impl Change {
    fn notification(&self) -> ServerNotification {
        match self {
            Self::Tools => ServerNotification::ToolListChangedNotification(
                ToolListChangedNotification::default(),
            ),
            Self::Prompts => ServerNotification::PromptListChangedNotification(
                PromptListChangedNotification::default(),
            ),
            Self::Resources => ServerNotification::ResourceListChangedNotification(
                ResourceListChangedNotification::default(),
            ),
            Self::Resource(uri) => {
                ServerNotification::ResourceUpdatedNotification(ResourceUpdatedNotification::new(
                    ResourceUpdatedNotificationParam::new(uri.clone()),
                ))
            }
        }
    }

    /// Whether a handshake-era session hears of it.
    fn heard_by(&self, session: &Session) -> bool {
        match self {
            Self::Resource(uri) => session.resources.contains(uri),
            _ => true,
        }
    }
}

/// A handshake-era session's place in [`Changes`]; dropping it leaves.
#[derive(Debug)]
pub struct Member {
    hub: Arc<Hub>,
    id: u64,
}

impl Member {
    /// `resources/subscribe`: the session hears of changes to `uri`.
    pub fn subscribe(&self, uri: impl Into<String>) -> Result<(), ErrorData> {
        let mut sessions = lock(&self.hub.sessions);
        let Some(session) = sessions.get_mut(&self.id) else {
            return Ok(());
        };
        if session.resources.len() >= MAX_FOLLOWED {
            return Err(ErrorData::invalid_params(
                format!(
                    "this session already follows {MAX_FOLLOWED} resources; unsubscribe from some first"
                ),
                None,
            ));
        }
        session.resources.insert(uri.into());
        Ok(())
    }

    /// `resources/unsubscribe`.
    pub fn unsubscribe(&self, uri: &str) {
        if let Some(session) = lock(&self.hub.sessions).get_mut(&self.id) {
            session.resources.remove(uri);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        lock(&self.hub.sessions).remove(&self.id);
    }
}

impl Changes {
    /// What a `subscriptions/listen` filter is granted: all it asks for, but at most
    /// [`MAX_FOLLOWED`] resources (rmcp then keeps only what the server's capabilities
    /// advertise). For `ServerHandler::accepted_subscription_filter`.
    pub fn accept(&self, requested: &SubscriptionFilter) -> SubscriptionFilter {
        let mut accepted = requested.clone();
        if let Some(uris) = &mut accepted.resource_subscriptions
            && uris.len() > MAX_FOLLOWED
        {
            tracing::debug!(
                asked = uris.len(),
                "a subscription asked to follow more resources than allowed; the rest are not acknowledged"
            );
            uris.truncate(MAX_FOLLOWED);
        }
        accepted
    }

    /// Serves one `subscriptions/listen` stream until the client ends it. For
    /// `ServerHandler::listen`.
    pub async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut listeners = lock(&self.0.listeners);
            if listeners.len() >= MAX_LISTENERS {
                return Err(ErrorData::invalid_request(
                    format!(
                        "this server already has {MAX_LISTENERS} open subscriptions; close one and listen again"
                    ),
                    None,
                ));
            }
            listeners.insert(id, context.sink().clone());
        }
        // Leaves the listeners however the stream ends (a dropped connection drops this future).
        let _leave = Leave(&self.0, id);
        context.cancelled().await;
        Ok(())
    }

    /// A handshake-era session joins: it hears of list changes from now on, and of the resources
    /// it subscribes to through the returned [`Member`], until that is dropped. For
    /// `ServerHandler::on_initialized` (keep the member in the session's state).
    pub fn join(&self, peer: Peer<RoleServer>) -> Member {
        let id = self.0.next.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            peer,
            resources: HashSet::new(),
        };
        lock(&self.0.sessions).insert(id, session);
        Member {
            hub: self.0.clone(),
            id,
        }
    }

    /// The list of tools changed.
    pub async fn tools_changed(&self) {
        self.tell(Change::Tools).await;
    }

    /// The list of prompts changed.
    pub async fn prompts_changed(&self) {
        self.tell(Change::Prompts).await;
    }

    /// The list of resources changed.
    pub async fn resources_changed(&self) {
        self.tell(Change::Resources).await;
    }

    /// The resource at `uri` changed.
    pub async fn resource_updated(&self, uri: impl Into<String>) {
        self.tell(Change::Resource(uri.into())).await;
    }

    /// Open listening streams (for tests and `/health`-like reports).
    pub fn listeners(&self) -> usize {
        lock(&self.0.listeners).len()
    }

    async fn tell(&self, change: Change) {
        let sinks: Vec<SubscriptionSink> = lock(&self.0.listeners).values().cloned().collect();
        let peers: Vec<(u64, Peer<RoleServer>)> = lock(&self.0.sessions)
            .iter()
            .filter(|(_, session)| change.heard_by(session))
            .map(|(id, session)| (*id, session.peer.clone()))
            .collect();
        let to_listeners = sinks.into_iter().map(|sink| {
            let notification = change.notification();
            async move {
                match tokio::time::timeout(SEND_TIMEOUT, sink.send(notification)).await {
                    Ok(Ok(())) => {}
                    // The filter left this one out, or the stream just ended: nothing to do.
                    Ok(Err(
                        SubscriptionSendError::NotificationNotAccepted(_)
                        | SubscriptionSendError::SubscriptionClosed,
                    )) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "a listener missed a change"),
                    Err(_) => tracing::debug!("a listener did not take a change in time"),
                }
            }
        });
        let to_sessions = peers.into_iter().map(|(id, peer)| {
            let notification = change.notification();
            async move {
                if peer.is_transport_closed() {
                    return Some(id);
                }
                match tokio::time::timeout(SEND_TIMEOUT, peer.send_notification(notification)).await
                {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "a session missed a change; it has left");
                        Some(id)
                    }
                    Err(_) => {
                        tracing::debug!("a session did not take a change in time");
                        None
                    }
                }
            }
        });
        let (_, gone) = futures::future::join(
            futures::future::join_all(to_listeners),
            futures::future::join_all(to_sessions),
        )
        .await;
        let mut sessions = lock(&self.0.sessions);
        for id in gone.into_iter().flatten() {
            sessions.remove(&id);
        }
    }
}

/// Removes a listener from the hub when its stream ends.
struct Leave<'a>(&'a Hub, u64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        lock(&self.0.listeners).remove(&self.1);
    }
}
