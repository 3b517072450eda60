//! Reading one client message the same way on every transport, and answering what cannot be
//! read with the JSON-RPC error the spec names (rmcp drops unparsable input, and takes a known
//! method with malformed params for an unknown custom method):
//!
//! - not JSON: `-32700 Parse error`, id null;
//! - JSON, but not a JSON-RPC message: `-32600 Invalid Request`, with its id when it has one;
//! - a request for an MCP method whose params do not fit it: `-32602 Invalid params`, with its id;
//! - a malformed notification: skipped (notifications never get answers).

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientJsonRpcMessage, ClientRequest,
    GetPromptRequestParams, JsonRpcMessage, JsonRpcRequest, JsonRpcVersion2_0,
    ReadResourceRequestParams, RequestId,
};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Value, json};

/// What to do with one message from a client.
#[derive(Debug)]
pub(crate) enum Inbound {
    Message(Box<ClientJsonRpcMessage>),
    Skip,
    /// Answer with this JSON-RPC error response instead of serving it.
    Reject(Rejection),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rejection {
    pub code: i64,
    pub id: Value,
    pub message: String,
    /// The method asked for, when the message named one.
    pub method: Option<String>,
}

impl Rejection {
    pub fn to_json(&self) -> Value {
        json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": { "code": self.code, "message": self.message },
        })
    }

    /// Whether the client sent something readable as a request (it has a usable id).
    pub fn has_id(&self) -> bool {
        !self.id.is_null()
    }
}

pub(crate) const PARSE_ERROR: i64 = -32700;
pub(crate) const INVALID_REQUEST: i64 = -32600;
pub(crate) const INVALID_PARAMS: i64 = -32602;

/// The request methods of the protocol, both eras.
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

/// Why `params` do not fit `method`, in the words of the typed parser where we have one.
fn params_problem(method: &str, params: Option<&Value>) -> String {
    let params = params.cloned().unwrap_or(Value::Null);
    let typed = match method {
        "tools/call" => serde_json::from_value::<CallToolRequestParams>(params).err(),
        "resources/read" => serde_json::from_value::<ReadResourceRequestParams>(params).err(),
        "prompts/get" => serde_json::from_value::<GetPromptRequestParams>(params).err(),
        _ => None,
    };
    match typed {
        Some(error) => format!("Invalid params for {method}: {error}"),
        None => format!("Invalid params for {method}"),
    }
}

fn usable_id(id: Option<&Value>) -> Value {
    match id {
        Some(id) if id.is_string() || id.is_number() => id.clone(),
        _ => Value::Null,
    }
}

impl Inbound {
    /// The method and id of a request, whether it was read whole or rejected (`None` for
    /// notifications, responses and what names no method).
    pub fn request_method(&self) -> Option<(&str, Value)> {
        match self {
            Inbound::Message(message) => match message.as_ref() {
                JsonRpcMessage::Request(request) => Some((
                    request.request.method(),
                    serde_json::to_value(&request.id).unwrap_or(Value::Null),
                )),
                _ => None,
            },
            Inbound::Reject(rejection) if rejection.has_id() => rejection
                .method
                .as_deref()
                .map(|method| (method, rejection.id.clone())),
            _ => None,
        }
    }
}

/// A `tools/call` request read by rmcp's own types, without its untagged `ClientRequest`.
#[derive(Deserialize)]
struct ToolCall {
    /// Checked to be "2.0" by reading it.
    #[serde(rename = "jsonrpc")]
    _jsonrpc: JsonRpcVersion2_0,
    id: RequestId,
    #[serde(flatten)]
    request: CallToolRequest,
    // A message with either (even `null`) is not a request: the general path says so.
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

/// True for a key that is there, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// The message a tool call reads as, or `None` for the general path to read it (anything else,
/// and a call that does not fit). rmcp's `ClientRequest` is an untagged enum that tries a dozen
/// other requests first, building an error for each: most of the cost of reading a call.
fn tool_call(bytes: &[u8]) -> Option<ClientJsonRpcMessage> {
    memchr::memmem::find(bytes, b"\"tools/call\"")?;
    let call = serde_json::from_slice::<ToolCall>(bytes).ok()?;
    if call.result || call.error {
        return None;
    }
    Some(JsonRpcMessage::Request(JsonRpcRequest::new(
        call.id,
        ClientRequest::CallToolRequest(call.request),
    )))
}

/// Reads one message (a line on stdio, a body over HTTP).
pub(crate) fn read_client_message(bytes: &[u8]) -> Inbound {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Inbound::Skip;
    }
    match tool_call(bytes) {
        Some(message) => Inbound::Message(Box::new(message)),
        None => read_any(bytes),
    }
}

/// [`read_client_message`] for every message, in rmcp's general types.
fn read_any(bytes: &[u8]) -> Inbound {
    // The common case, a well-formed message, is parsed once; the slower diagnosis below runs
    // only for what fails.
    if let Ok(message) = serde_json::from_slice::<ClientJsonRpcMessage>(bytes) {
        return match &message {
            JsonRpcMessage::Request(request) => match &request.request {
                ClientRequest::CustomRequest(custom) if is_mcp_method(&custom.method) => {
                    Inbound::Reject(Rejection {
                        code: INVALID_PARAMS,
                        id: serde_json::to_value(&request.id).unwrap_or(Value::Null),
                        message: params_problem(&custom.method, custom.params.as_ref()),
                        method: Some(custom.method.clone()),
                    })
                }
                _ => Inbound::Message(Box::new(message)),
            },
            _ => Inbound::Message(Box::new(message)),
        };
    }
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            return Inbound::Reject(Rejection {
                code: PARSE_ERROR,
                id: Value::Null,
                message: format!("Parse error: {error}"),
                method: None,
            });
        }
    };
    let id = value.get("id").cloned();
    let method = value
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let params = value.get("params").cloned();
    match serde_json::from_value::<ClientJsonRpcMessage>(value) {
        Ok(message) => Inbound::Message(Box::new(message)),
        Err(error) => match id {
            None => {
                tracing::debug!(%error, ?method, "skipping a malformed notification");
                Inbound::Skip
            }
            Some(id) if method.as_deref().is_some_and(is_mcp_method) => {
                Inbound::Reject(Rejection {
                    code: INVALID_PARAMS,
                    id: usable_id(Some(&id)),
                    message: params_problem(method.as_deref().unwrap_or_default(), params.as_ref()),
                    method,
                })
            }
            Some(id) => Inbound::Reject(Rejection {
                code: INVALID_REQUEST,
                id: usable_id(Some(&id)),
                message: format!("Invalid Request: {error}"),
                method,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejection(line: &str) -> Rejection {
        match read_client_message(line.as_bytes()) {
            Inbound::Reject(rejection) => rejection,
            other => panic!("{line:?} was not rejected: {other:?}"),
        }
    }

    #[test]
    fn garbage_gets_a_parse_error_with_null_id() {
        for line in ["not json", "{\"jsonrpc\":", "[1,2", "\u{1}"] {
            let rejection = rejection(line);
            assert_eq!(rejection.code, PARSE_ERROR, "{line}");
            assert_eq!(rejection.id, Value::Null);
            assert!(rejection.to_json().as_object().unwrap().contains_key("id"));
        }
    }

    #[test]
    fn known_methods_with_bad_params_get_invalid_params_with_their_id() {
        let bad = rejection(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":7}"#);
        assert_eq!((bad.code, bad.id.clone()), (INVALID_PARAMS, json!(7)));
        // rmcp reads this one as a custom request; it is a tools/call without a usable name.
        let bad =
            rejection(r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":42}}"#);
        assert_eq!((bad.code, bad.id.clone()), (INVALID_PARAMS, json!("a")));
        assert!(bad.message.contains("tools/call"), "{}", bad.message);
        let bad = rejection(r#"{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{}}"#);
        assert_eq!(bad.code, INVALID_PARAMS);
        assert!(bad.message.contains("uri"), "{}", bad.message);
    }

    #[test]
    fn non_messages_get_invalid_request() {
        let bad = rejection(r#"{"id":8,"foo":1}"#);
        assert_eq!((bad.code, bad.id), (INVALID_REQUEST, json!(8)));
        let bad = rejection(r#"{"jsonrpc":"2.0","id":{"x":1},"method":42}"#);
        assert_eq!((bad.code, bad.id), (INVALID_REQUEST, Value::Null));
    }

    #[test]
    fn blank_lines_and_bad_notifications_are_skipped() {
        assert!(matches!(read_client_message(b"   "), Inbound::Skip));
        assert!(matches!(read_client_message(b""), Inbound::Skip));
        assert!(matches!(
            read_client_message(
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":7}"#
            ),
            Inbound::Skip
        ));
    }

    #[test]
    fn valid_messages_pass_with_crlf_bom_and_custom_methods() {
        let line = "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r";
        assert!(matches!(
            read_client_message(line.as_bytes()),
            Inbound::Message(_)
        ));
        let custom = br#"{"jsonrpc":"2.0","id":2,"method":"vendor/thing","params":{"a":1}}"#;
        assert!(matches!(read_client_message(custom), Inbound::Message(_)));
        let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{}}}"#;
        assert!(matches!(read_client_message(call), Inbound::Message(_)));
    }

    /// What the general path makes of a line, as JSON (rmcp's requests have no `PartialEq`).
    pub(super) fn general(line: &str) -> Option<Value> {
        match read_any(line.as_bytes()) {
            Inbound::Message(message) => Some(serde_json::to_value(&message).unwrap()),
            _ => None,
        }
    }

    #[test]
    fn a_tool_call_reads_as_the_general_path_reads_it() {
        let read = [
            r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,{"b":null}]}}}"#,
            r#"{"params":{"name":"x"},"method":"tools/call","id":"s-1","jsonrpc":"2.0"}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"x","_meta":{"progressToken":9,"k":"v"},"task":{"ttl":5}}}"#,
            r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x","requestState":"st","inputResponses":{}},"extra":true}"#,
            r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"tools/call"}}"#,
        ];
        for line in read {
            let fast = tool_call(line.as_bytes()).map(|m| serde_json::to_value(&m).unwrap());
            assert!(fast.is_some(), "{line}");
            assert_eq!(fast, general(line), "{line}");
        }
        // Not calls, or not requests, or calls that do not fit: left to the general path.
        let left = [
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"},"result":{}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"},"result":null}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"},"error":{"code":1,"message":"m"}}"#,
            r#"{"jsonrpc":"1.0","id":7,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":42}}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call"}"#,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"cursor":"tools/call"}}"#,
        ];
        for line in left {
            assert!(tool_call(line.as_bytes()).is_none(), "{line}");
        }
        // Duplicate keys: read as the general path reads them, or left to it.
        let either = [
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","method":"ping","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"ping","method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":8,"id":9,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"x"},"params":{"name":"y"}}"#,
        ];
        for line in either {
            if let Some(fast) = tool_call(line.as_bytes()) {
                assert_eq!(
                    Some(serde_json::to_value(&fast).unwrap()),
                    general(line),
                    "{line}"
                );
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a peer sends, reading it never panics, and what is not served is answered
        /// with a JSON-RPC error.
        #[test]
        fn any_bytes_are_served_skipped_or_answered(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Inbound::Reject(rejection) = read_client_message(&bytes) {
                let answer = rejection.to_json();
                prop_assert_eq!(&answer["jsonrpc"], "2.0");
                prop_assert!(answer["error"]["code"].is_i64());
            }
        }

        /// A request with any method name and params of any shape is served or answered.
        #[test]
        fn any_method_and_params_are_served_or_answered(
            method in ".{0,40}",
            id in 0u32..1_000_000,
            params in prop_oneof![Just(json!(null)), Just(json!([])), Just(json!({"x": 1})), Just(json!("s"))],
        ) {
            let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
            if let Inbound::Reject(rejection) = read_client_message(line.as_bytes()) {
                prop_assert_eq!(rejection.id, json!(id));
            }
        }

        /// A tool call with any params and keys reads as the general path reads it, or is left
        /// to it.
        #[test]
        fn a_tool_call_reads_as_in_general(
            id in prop_oneof![Just(json!(1)), Just(json!("x")), Just(json!(null)), Just(json!(1.5))],
            jsonrpc in prop_oneof![Just("2.0"), Just("2")],
            params in prop_oneof![
                Just(json!({"name": "t"})),
                Just(json!({"name": "t", "arguments": {"a": [1, "b"]}})),
                Just(json!({"name": "t", "arguments": 7})),
                Just(json!({"name": "t", "_meta": {"progressToken": "p"}})),
                Just(json!({"name": "t", "_meta": 3})),
                Just(json!({"name": 3})),
                Just(json!([])),
            ],
            extra in prop_oneof![Just(None), Just(Some("result")), Just(Some("error")), Just(Some("other"))],
            extra_value in prop_oneof![Just(json!(null)), Just(json!({"code": 1, "message": "m"}))],
        ) {
            let mut message = json!({"jsonrpc": jsonrpc, "id": id, "method": "tools/call", "params": params});
            if let Some(key) = extra {
                message[key] = extra_value;
            }
            let line = message.to_string();
            if let Some(fast) = tool_call(line.as_bytes()) {
                prop_assert_eq!(Some(serde_json::to_value(&fast).unwrap()), tests::general(&line));
            }
        }

        /// Every well-formed ping is served, whatever its id and the whitespace around it.
        #[test]
        fn a_ping_is_served(id in 0u32..u32::MAX, pad in "[ \t]{0,3}") {
            let line = format!("{pad}{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}{pad}");
            prop_assert!(matches!(read_client_message(line.as_bytes()), Inbound::Message(_)));
        }
    }
}
