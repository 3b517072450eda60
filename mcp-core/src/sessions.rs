//! Where each session's handler comes from.

use rmcp::ServerHandler;

/// Makes the handler of each session [`serve`](crate::serve()) and
/// [`HttpServer::start`](crate::HttpServer::start) open: the stdio session, and every Streamable
/// HTTP and legacy SSE session, each its own.
///
/// A handler that is `Clone` is its own factory: each session gets a clone, so state meant for
/// every session belongs behind an `Arc`. A handler that should start each session afresh (its
/// own counters, caches or subscriptions), or that is not `Clone`, is made by a function:
/// [`per_session`].
pub trait Sessions: Send + Sync + 'static {
    /// The handler of one session.
    type Handler: ServerHandler;

    /// A new session's handler.
    fn session(&self) -> Self::Handler;
}

impl<H: ServerHandler + Clone> Sessions for H {
    type Handler = H;

    fn session(&self) -> H {
        self.clone()
    }
}

/// Sessions whose handlers `make` builds, one call per session.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// use mcp_core::{Sessions, per_session};
///
/// /// Counts what one session asked; the total is shared.
/// struct Counter { total: Arc<AtomicUsize>, mine: AtomicUsize }
/// impl mcp_core::rmcp::ServerHandler for Counter {}
///
/// let total = Arc::new(AtomicUsize::new(0));
/// let sessions = per_session(move || Counter { total: total.clone(), mine: AtomicUsize::new(0) });
/// let (a, b) = (sessions.session(), sessions.session());
/// a.mine.fetch_add(1, Ordering::Relaxed);
/// assert_eq!(b.mine.load(Ordering::Relaxed), 0);
/// assert!(Arc::ptr_eq(&a.total, &b.total));
/// ```
pub fn per_session<F, H>(make: F) -> PerSession<F>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ServerHandler,
{
    PerSession(make)
}

/// What [`per_session`] returns.
#[derive(Debug, Clone, Copy)]
pub struct PerSession<F>(F);

impl<F, H> Sessions for PerSession<F>
where
    F: Fn() -> H + Send + Sync + 'static,
    H: ServerHandler,
{
    type Handler = H;

    fn session(&self) -> H {
        (self.0)()
    }
}
