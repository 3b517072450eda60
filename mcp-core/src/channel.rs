//! A transport made of two channels, for transports whose I/O runs in tasks of their own
//! (legacy SSE on both sides, the in-process test harness).

use rmcp::{
    service::{RxJsonRpcMessage, ServiceRole, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

/// The peer is gone: its side of the channel was dropped.
#[derive(Debug, thiserror::Error)]
#[error("the connection is closed")]
pub struct ConnectionClosed;

/// One side of a message channel pair, usable as an rmcp transport.
pub struct ChannelTransport<R: ServiceRole> {
    outgoing: mpsc::Sender<TxJsonRpcMessage<R>>,
    incoming: mpsc::Receiver<RxJsonRpcMessage<R>>,
    // Stops the task that drives the connection when this transport is dropped.
    _worker: Option<DropGuard>,
    // Cancelled, instead of waiting, when the outgoing queue is full.
    close_when_full: Option<CancellationToken>,
}

impl<R: ServiceRole> ChannelTransport<R> {
    /// A transport that sends on `outgoing` and receives from `incoming`.
    pub fn new(
        outgoing: mpsc::Sender<TxJsonRpcMessage<R>>,
        incoming: mpsc::Receiver<RxJsonRpcMessage<R>>,
    ) -> Self {
        Self {
            outgoing,
            incoming,
            _worker: None,
            close_when_full: None,
        }
    }

    /// A message that finds the outgoing queue full cancels `session` and is dropped, instead of
    /// waiting for room: for a peer that may stop reading, whose messages would otherwise pile
    /// up (each waiting send holds its message) for as long as it stays connected.
    pub fn closing_when_full(mut self, session: CancellationToken) -> Self {
        self.close_when_full = Some(session);
        self
    }

    /// Cancels `worker` when the transport is dropped.
    pub fn with_worker(mut self, worker: DropGuard) -> Self {
        self._worker = Some(worker);
        self
    }
}

impl<R: ServiceRole> Transport<R> for ChannelTransport<R> {
    type Error = ConnectionClosed;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<R>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let outgoing = self.outgoing.clone();
        let close_when_full = self.close_when_full.clone();
        async move {
            let Some(session) = close_when_full else {
                return outgoing.send(item).await.map_err(|_| ConnectionClosed);
            };
            outgoing.try_send(item).map_err(|error| {
                if matches!(error, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(
                        "dropped a client that does not read its stream (its queue is full)"
                    );
                    session.cancel();
                }
                ConnectionClosed
            })
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<R>> {
        self.incoming.recv().await
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.incoming.close();
        Ok(())
    }
}
