//! The stdio transport: newline-delimited JSON-RPC over any reader/writer pair, answering what
//! it cannot read instead of dropping it.
//!
//! rmcp's own line transport ignores unparsable lines (to avoid error storms with peers that
//! echo). JSON-RPC 2.0 asks for an answer with `"id": null`, and a client that sent garbage
//! deserves to hear why: every line is read by the `message` module, which says which error each
//! malformed message gets. The server keeps serving in every case.
//!
//! Input waits for output: while [`MAX_QUEUED_WRITES`] messages are waiting to be written (a
//! client that does not read its stdout), no more input is read, so a client cannot make the
//! server hold answers without end.

use std::sync::Arc;

use rmcp::{
    RoleServer,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

use crate::message::{Inbound, read_client_message};

/// Longest accepted line; a longer one is answered with a parse error and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Messages waiting to be written before input stops being read.
pub const MAX_QUEUED_WRITES: usize = 64;

/// A server-side line transport (stdin/stdout in production, an in-memory pipe in tests).
pub struct LineTransport<R, W> {
    reader: BufReader<R>,
    // The line being read; it survives a cancelled `receive`, so no input is ever lost.
    line: Vec<u8>,
    oversized: bool,
    writer: Arc<Mutex<Output<W>>>,
    backlog: Arc<Backlog>,
}

/// Messages handed to the writer and not yet written.
#[derive(Default)]
struct Backlog {
    queued: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

impl Backlog {
    /// Counts a message from now until the returned guard is dropped (written or failed).
    fn enter(self: &Arc<Self>) -> Queued {
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Queued(self.clone())
    }

    /// Returns once fewer than [`MAX_QUEUED_WRITES`] messages wait.
    async fn room(&self) {
        loop {
            // Created before the check, so a write finishing in between still wakes it.
            let drained = self.drained.notified();
            if self.queued.load(std::sync::atomic::Ordering::Acquire) < MAX_QUEUED_WRITES {
                return;
            }
            drained.await;
        }
    }
}

struct Queued(Arc<Backlog>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0
            .queued
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.drained.notify_waiters();
    }
}

/// The writer and a buffer kept between messages: a large answer is serialized into memory
/// already grown and paged in, rather than into a fresh vector doubling its way up.
struct Output<W> {
    writer: W,
    buffer: Vec<u8>,
}

/// A buffer grown past this by one very large answer is not kept.
const KEPT_BUFFER_BYTES: usize = 32 * 1024 * 1024;

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    /// Reads messages from `read` and writes them to `write`, a line each.
    pub fn new(read: R, write: W) -> Self {
        Self {
            reader: BufReader::with_capacity(64 * 1024, read),
            line: Vec::new(),
            oversized: false,
            writer: Arc::new(Mutex::new(Output {
                writer: write,
                buffer: Vec::new(),
            })),
            backlog: Arc::default(),
        }
    }

    /// Reads up to the next newline. `None` at end of input. Cancel-safe: bytes are consumed from
    /// the reader only after they are copied into `self.line`.
    async fn next_line(&mut self) -> Option<std::io::Result<()>> {
        loop {
            let available = match self.reader.fill_buf().await {
                Ok(available) => available,
                Err(error) => return Some(Err(error)),
            };
            if available.is_empty() {
                return None;
            }
            let (chunk, complete) = match memchr(b'\n', available) {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            if !self.oversized {
                if self.line.len() + chunk.len() > MAX_LINE_BYTES {
                    self.oversized = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(chunk);
                }
            }
            let consumed = chunk.len() + usize::from(complete);
            self.reader.consume(consumed);
            if complete {
                return Some(Ok(()));
            }
        }
    }

    fn answer(&self, answer: serde_json::Value) {
        let writer = self.writer.clone();
        let queued = self.backlog.enter();
        // Written from a task of its own, so a cancelled `receive` cannot cut a line in half.
        tokio::spawn(async move {
            let _queued = queued;
            if let Err(error) = write_line(&writer, &answer).await {
                tracing::debug!(%error, "could not answer a malformed message");
            }
        });
    }
}

async fn write_line<W, T>(output: &Mutex<Output<W>>, message: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let mut output = output.lock().await;
    let Output { writer, buffer } = &mut *output;
    buffer.clear();
    serde_json::to_writer(&mut *buffer, message).map_err(std::io::Error::other)?;
    buffer.push(b'\n');
    let written = writer.write_all(buffer).await;
    if buffer.capacity() > KEPT_BUFFER_BYTES {
        *buffer = Vec::new();
    }
    written?;
    writer.flush().await
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

impl<R, W> Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleServer>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let writer = self.writer.clone();
        let queued = self.backlog.enter();
        async move {
            let _queued = queued;
            write_line(&writer, &item).await
        }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
            self.backlog.room().await;
            match self.next_line().await? {
                Ok(()) => {}
                Err(error) => {
                    tracing::error!(%error, "reading input failed");
                    return None;
                }
            }
            let line = std::mem::take(&mut self.line);
            if std::mem::take(&mut self.oversized) {
                self.answer(serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": { "code": -32700, "message": format!("Parse error: message longer than {MAX_LINE_BYTES} bytes") },
                }));
                continue;
            }
            match read_client_message(&line) {
                Inbound::Message(message) => return Some(*message),
                Inbound::Skip => {}
                Inbound::Reject(rejection) => {
                    tracing::debug!(?rejection, "answering a malformed message");
                    self.answer(rejection.to_json());
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.writer.lock().await.writer.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn oversized_lines_are_answered_and_reading_goes_on() {
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.push(b'\n');
        input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let (read, write) = tokio::io::split(server);
        let mut transport = LineTransport::new(read, write);
        let feeder = tokio::spawn(async move {
            client.write_all(&input).await.unwrap();
            let mut answer = Vec::new();
            let mut reader = BufReader::new(&mut client);
            reader.read_until(b'\n', &mut answer).await.unwrap();
            String::from_utf8(answer).unwrap()
        });
        let message = transport
            .receive()
            .await
            .expect("the ping after the long line");
        assert!(matches!(
            message,
            RxJsonRpcMessage::<RoleServer>::Request(_)
        ));
        let answer = feeder.await.unwrap();
        assert!(answer.contains("-32700"), "{answer}");
        assert!(answer.contains("longer than"), "{answer}");
    }
}

#[cfg(test)]
mod backpressure {
    #![allow(clippy::unwrap_used)]

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Finding 6 of the attack run: with stdout unread, a client's input was read on and on
    /// (100k pings: 677 MB of answers waiting). Input stops once MAX_QUEUED_WRITES answers wait,
    /// and goes on when the client reads.
    #[tokio::test]
    async fn input_waits_while_output_cannot_be_written() {
        let (client, server) = tokio::io::duplex(1024);
        let (read, write) = tokio::io::split(server);
        let (mut client_output, mut client_input) = tokio::io::split(client);
        let mut transport = LineTransport::new(read, write);
        let pings = 500;
        let writer = tokio::spawn(async move {
            for id in 0..pings {
                let line = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n");
                if client_input.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let answer = |id: usize| -> TxJsonRpcMessage<RoleServer> {
            serde_json::from_value(serde_json::json!({
                "jsonrpc": "2.0", "id": id, "result": {"padding": "z".repeat(4096)}
            }))
            .unwrap()
        };
        let mut sends = tokio::task::JoinSet::new();
        let mut received = 0;
        loop {
            match tokio::time::timeout(std::time::Duration::from_millis(500), transport.receive())
                .await
            {
                Ok(Some(_)) => {
                    sends.spawn(transport.send(answer(received)));
                    received += 1;
                }
                Ok(None) => panic!("input ended"),
                Err(_) => break,
            }
        }
        // Nothing is read from the client's side, so input stopped at the cap (the first
        // answers fit in the pipe's small buffer).
        assert!(
            (MAX_QUEUED_WRITES..MAX_QUEUED_WRITES + 4).contains(&received),
            "{received} requests read while their answers could not be written"
        );
        // The client reads its answers: input goes on to the end.
        let reader = tokio::spawn(async move {
            let mut sink = vec![0; 64 * 1024];
            while client_output.read(&mut sink).await.is_ok_and(|n| n > 0) {}
        });
        while received < pings {
            transport.receive().await.unwrap();
            sends.spawn(transport.send(answer(received)));
            received += 1;
        }
        while sends.join_next().await.is_some() {}
        writer.await.unwrap();
        reader.abort();
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Line {
        Ping(u32),
        /// Bytes that cannot be a JSON object (no `{`, no newline).
        Junk(Vec<u8>),
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            (0u32..100_000).prop_map(Line::Ping),
            proptest::collection::vec(
                any::<u8>().prop_filter("no newline or brace", |b| *b != b'\n' && *b != b'{'),
                0..64
            )
            .prop_map(Line::Junk),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any mix of requests and junk, cut into writes anywhere: every request comes through,
        /// once, in order, and the junk is answered rather than ending the session.
        #[test]
        fn requests_survive_any_junk_and_any_cut(lines in proptest::collection::vec(line(), 1..40), cut in 1usize..97) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let mut input = Vec::new();
                let mut expected = Vec::new();
                for line in &lines {
                    match line {
                        Line::Ping(id) => {
                            expected.push(*id);
                            input.extend_from_slice(format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}").as_bytes());
                        }
                        Line::Junk(bytes) => input.extend_from_slice(bytes),
                    }
                    input.push(b'\n');
                }
                let (mut client, server) = tokio::io::duplex(1 << 20);
                let (read, write) = tokio::io::split(server);
                let mut transport = LineTransport::new(read, write);
                let writer = tokio::spawn(async move {
                    for piece in input.chunks(cut) {
                        client.write_all(piece).await.unwrap();
                    }
                    client
                });
                let mut seen = Vec::new();
                while seen.len() < expected.len() {
                    match transport.receive().await.unwrap() {
                        RxJsonRpcMessage::<RoleServer>::Request(request) => {
                            seen.push(serde_json::to_value(&request.id).unwrap().as_u64().unwrap() as u32);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
                drop(writer.await.unwrap());
                assert_eq!(seen, expected);
            });
        }
    }
}
