//! The stdio transport: newline-delimited JSON-RPC over any reader/writer pair, answering what
//! it cannot read instead of dropping it.
//!
//! rmcp's own line transport ignores unparsable lines (to avoid error storms with peers that
//! echo). JSON-RPC 2.0 asks for an answer with `"id": null`, and a client that sent garbage
//! deserves to hear why, so here every line that is not JSON gets one `-32700 Parse error`, a
//! request of a known method with malformed params gets `-32602` with its id, any other malformed
//! request `-32600`; malformed notifications (which never get answers) are logged and skipped.
//! The server keeps serving in every case.

use std::sync::Arc;

use rmcp::{
    RoleServer,
    service::{RxJsonRpcMessage, TxJsonRpcMessage},
    transport::Transport,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::Mutex;

/// Longest accepted line; a longer one is answered with a parse error and skipped.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A server-side line transport (stdin/stdout in production, an in-memory pipe in tests).
pub struct LineTransport<R, W> {
    reader: BufReader<R>,
    // The line being read; it survives a cancelled `receive`, so no input is ever lost.
    line: Vec<u8>,
    oversized: bool,
    writer: Arc<Mutex<W>>,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    pub fn new(read: R, write: W) -> Self {
        Self {
            reader: BufReader::with_capacity(64 * 1024, read),
            line: Vec::new(),
            oversized: false,
            writer: Arc::new(Mutex::new(write)),
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
        // Written from a task of its own, so a cancelled `receive` cannot cut a line in half.
        tokio::spawn(async move {
            if let Err(error) = write_line(&writer, &answer).await {
                tracing::debug!(%error, "could not answer a malformed message");
            }
        });
    }
}

async fn write_line<W, T>(writer: &Mutex<W>, message: &T) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
    T: serde::Serialize,
{
    let mut bytes = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    let mut writer = writer.lock().await;
    writer.write_all(&bytes).await?;
    writer.flush().await
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

/// What to do with one input line.
enum Line {
    Message(Box<RxJsonRpcMessage<RoleServer>>),
    Skip,
    Answer(serde_json::Value),
}

fn error_answer(id: serde_json::Value, code: i32, message: String) -> Line {
    Line::Answer(serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    }))
}

fn classify(line: &[u8]) -> Line {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Skip;
    }
    let value: serde_json::Value = match serde_json::from_slice(line) {
        Ok(value) => value,
        Err(error) => {
            return error_answer(
                serde_json::Value::Null,
                -32700,
                format!("Parse error: {error}"),
            );
        }
    };
    let id = value.get("id").cloned();
    let method = value
        .get("method")
        .and_then(|m| m.as_str())
        .map(str::to_owned);
    match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
        Ok(message) => Line::Message(Box::new(message)),
        Err(error) => match id {
            // A notification never gets an answer, even a malformed one.
            None => {
                tracing::debug!(%error, ?method, "skipping a malformed notification");
                Line::Skip
            }
            Some(id) if method.as_deref().is_some_and(is_mcp_method) => {
                error_answer(id, -32602, format!("Invalid params: {error}"))
            }
            Some(id) => {
                let id = if id.is_string() || id.is_number() {
                    id
                } else {
                    serde_json::Value::Null
                };
                error_answer(id, -32600, format!("Invalid Request: {error}"))
            }
        },
    }
}

fn is_mcp_method(method: &str) -> bool {
    matches!(
        method,
        "initialize"
            | "ping"
            | "server/discover"
            | "prompts/get"
            | "prompts/list"
            | "resources/list"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "resources/templates/list"
            | "subscriptions/listen"
            | "tools/call"
            | "tools/list"
            | "completion/complete"
            | "logging/setLevel"
    )
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
        async move { write_line(&writer, &item).await }
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleServer>> {
        loop {
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
            match classify(&line) {
                Line::Message(message) => return Some(*message),
                Line::Skip => {}
                Line::Answer(answer) => {
                    tracing::debug!(%answer, "answering a malformed message");
                    self.answer(answer);
                }
            }
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.writer.lock().await.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer_of(line: &str) -> serde_json::Value {
        match classify(line.as_bytes()) {
            Line::Answer(answer) => answer,
            Line::Message(_) => panic!("{line:?} parsed as a message"),
            Line::Skip => panic!("{line:?} was skipped"),
        }
    }

    #[test]
    fn garbage_gets_a_parse_error_with_null_id() {
        for line in ["not json", "{\"jsonrpc\":", "[1,2", "\u{1}"] {
            let answer = answer_of(line);
            assert_eq!(answer["error"]["code"], -32700, "{line}");
            assert!(answer.as_object().unwrap().contains_key("id"));
            assert_eq!(answer["id"], serde_json::Value::Null);
        }
    }

    #[test]
    fn malformed_requests_keep_their_id() {
        let answer = answer_of(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":7}"#);
        assert_eq!(answer["error"]["code"], -32602);
        assert_eq!(answer["id"], 7);
        let answer = answer_of(r#"{"id":8,"foo":1}"#);
        assert_eq!(answer["error"]["code"], -32600);
        assert_eq!(answer["id"], 8);
    }

    #[test]
    fn blank_lines_and_bad_notifications_are_skipped() {
        assert!(matches!(classify(b"   "), Line::Skip));
        assert!(matches!(classify(b""), Line::Skip));
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":7}"#),
            Line::Skip
        ));
    }

    #[test]
    fn valid_messages_pass_with_crlf_and_bom() {
        let line = "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r";
        assert!(matches!(classify(line.as_bytes()), Line::Message(_)));
    }

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
