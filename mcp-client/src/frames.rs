//! A stdio server's output, checked line by line before rmcp reads it.
//!
//! rmcp drops a line it cannot take (one over its 16 MiB cap, or JSON nested past serde_json's
//! recursion limit) without a word, so the call it answered waits until its timeout and then
//! reports that the server "did not answer". The relay here sits between the child's stdout and
//! rmcp: a line it would drop is replaced by a JSON-RPC error for the same request id, saying
//! exactly what was wrong, so the call fails at once with that message. Lines are never held
//! past the cap: an oversized one is skipped as it streams in.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The longest line passed on (rmcp's own cap, less the newline).
pub const MAX_LINE_BYTES: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH - 1;
/// The deepest nesting passed on (serde_json stops at 128; a message's own envelope takes a few).
pub const MAX_DEPTH: usize = 120;
/// How much of an oversized line is kept to find its id.
const ID_PREFIX_BYTES: usize = 4096;

/// Copies `from` to `to` line by line, replacing each line rmcp would drop with an error answer
/// to the same request. Ends at the end of `from`, or when `to` is closed. `server` names the
/// server in the messages.
pub async fn relay<R, W>(from: R, mut to: W, server: &str) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut from = BufReader::with_capacity(64 * 1024, from);
    let mut line: Vec<u8> = Vec::new();
    let mut scan = Scan::default();
    let mut size = 0usize;
    loop {
        let (consumed, ended) = {
            let available = from.fill_buf().await?;
            if available.is_empty() {
                return Ok(());
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |at| at + 1);
            let chunk = &available[..newline.unwrap_or(available.len())];
            scan.feed(chunk);
            size += chunk.len();
            if size <= MAX_LINE_BYTES {
                line.extend_from_slice(chunk);
            } else if line.len() > ID_PREFIX_BYTES {
                line.truncate(ID_PREFIX_BYTES);
                line.shrink_to(ID_PREFIX_BYTES);
            }
            (take, newline.is_some())
        };
        from.consume(consumed);
        if !ended {
            continue;
        }
        let problem = if size > MAX_LINE_BYTES {
            Some(format!(
                "{server}'s answer is {size} bytes, over the {} this client reads in one message; \
                 ask for less (a page, a range, a smaller limit)",
                MAX_LINE_BYTES + 1
            ))
        } else if scan.max_depth > MAX_DEPTH {
            Some(format!(
                "{server}'s answer nests {} levels deep, past the {MAX_DEPTH} this client reads \
                 (a schema or value built to exhaust a parser)",
                scan.max_depth
            ))
        } else {
            None
        };
        match problem {
            None => {
                line.push(b'\n');
                to.write_all(&line).await?;
            }
            Some(message) => match scan.id.take() {
                Some(id) => {
                    tracing::debug!(%server, "{message}");
                    let answer = format!(
                        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":-32603,\"message\":{}}}}}\n",
                        serde_json::Value::String(message)
                    );
                    to.write_all(answer.as_bytes()).await?;
                }
                None => {
                    tracing::warn!(%server, "{message}; it carried no request id and was dropped")
                }
            },
        }
        to.flush().await?;
        line.clear();
        size = 0;
        scan = Scan::default();
    }
}

/// What a pass over one line learns without parsing it: how deep it nests, and the top-level
/// `"id"` (a number or a string, as written), if it has one.
#[derive(Default)]
struct Scan {
    depth: usize,
    max_depth: usize,
    in_string: bool,
    escaped: bool,
    /// The text of the string being read, if it is a candidate key at depth 1 (kept short).
    key: Option<Vec<u8>>,
    /// The last string read at depth 1 was `"id"`, and its `:` is awaited or seen.
    after_id_key: bool,
    id_value: Option<Vec<u8>>,
    id: Option<String>,
}

impl Scan {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                if let Some(value) = &mut self.id_value {
                    value.push(b);
                }
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if let Some(key) = self.key.take() {
                        self.after_id_key = key == b"id";
                    }
                } else if let Some(key) = &mut self.key {
                    if key.len() < 8 {
                        key.push(b);
                    } else {
                        self.key = None;
                    }
                }
                continue;
            }
            if let Some(value) = &mut self.id_value {
                if self.depth == 1 && (b == b',' || b == b'}') {
                    let text = String::from_utf8_lossy(value).trim().to_owned();
                    // Only a plain number or string: anything else is not an id to echo.
                    let plain = text.bytes().all(|c| c.is_ascii_digit() || c == b'-')
                        || (text.starts_with('"') && text.ends_with('"') && text.len() >= 2);
                    if plain && !text.is_empty() && self.id.is_none() {
                        self.id = Some(text);
                    }
                    self.id_value = None;
                } else {
                    value.push(b);
                }
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.id_value.is_none() && !self.after_id_key {
                        self.key = Some(Vec::new());
                    }
                }
                b':' if self.after_id_key && self.depth == 1 => {
                    self.after_id_key = false;
                    self.id_value = Some(Vec::new());
                }
                b'{' | b'[' => {
                    self.depth += 1;
                    self.max_depth = self.max_depth.max(self.depth);
                    self.after_id_key = false;
                }
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                b',' => self.after_id_key = false,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn scan(text: &str) -> Scan {
        let mut scan = Scan::default();
        scan.feed(text.as_bytes());
        scan
    }

    #[test]
    fn finds_the_top_level_id_and_the_depth() {
        let s = scan(r#"{"jsonrpc":"2.0","id":17,"result":{"id":99,"a":[[1]]}}"#);
        assert_eq!(s.id.as_deref(), Some("17"));
        assert_eq!(s.max_depth, 4);
        let s = scan(r#"{"result":{"id":"inner"},"id":"abc-1"}"#);
        assert_eq!(s.id.as_deref(), Some("\"abc-1\""));
        let s = scan(r#"{"method":"notifications/progress","params":{"id":3}}"#);
        assert_eq!(s.id, None);
        // Brackets inside strings do not count.
        assert_eq!(scan(r#"{"a":"[[[{{{\"]]"}"#).max_depth, 1);
        // An id that is not a number or a string is not echoed.
        assert_eq!(scan(r#"{"id":{"x":1},"result":1}"#).id, None);
    }

    #[tokio::test]
    async fn an_oversized_or_too_deep_answer_becomes_an_error_for_its_id() {
        let big = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":\"{}\"}}\n",
            "x".repeat(MAX_LINE_BYTES + 10)
        );
        let deep = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"result\":{}1{}}}\n",
            "[".repeat(300),
            "]".repeat(300)
        );
        let fine = "{\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{}}\n";
        let input = format!("{big}{deep}{fine}");
        let mut output = Vec::new();
        relay(input.as_bytes(), &mut output, "srv").await.unwrap();
        let lines: Vec<serde_json::Value> = output
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["id"], 5);
        let message = lines[0]["error"]["message"].as_str().unwrap();
        assert!(message.contains("srv's answer is 16777"), "{message}");
        assert_eq!(lines[1]["id"], "d");
        assert!(
            lines[1]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("301 levels")
        );
        assert_eq!(lines[2]["id"], 6);
        assert!(lines[2].get("error").is_none());
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"{}\\[\\]]{0,6}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        /// For any answer (strings full of brackets, quotes and escapes included) the scan finds
        /// the top-level id and the true depth, and the relay passes the line on unchanged.
        #[test]
        fn the_scan_agrees_with_a_parser(result in json(), id in 0u32..1_000_000, cut in 1usize..64) {
            let line = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
            let mut scan = Scan::default();
            for piece in line.as_bytes().chunks(cut) {
                scan.feed(piece);
            }
            prop_assert_eq!(scan.id, Some(id.to_string()));
            prop_assert_eq!(scan.max_depth, 1 + depth(&result));
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut output = Vec::new();
            runtime.block_on(relay(format!("{line}\n").as_bytes(), &mut output, "s")).unwrap();
            prop_assert_eq!(output, format!("{line}\n").into_bytes());
        }
    }
}
