//! Asking the user or the client's model mid-call (elicitation, sampling, roots), in both eras
//! of the protocol, with one API.
//!
//! In the handshake era a server sends the client a request of its own and waits for the
//! answer. The 2026-07-28 revision forbids that (SEP-2322): the server answers the call with an
//! *input-required* result naming what it needs (`inputRequests`) and an opaque `requestState`;
//! the client gets the answers and sends the same call again with them (`inputResponses`) and the
//! state. A tool written with [`Input`] does not care which: each question is asked under a key,
//! and returns the answer, or `None` when the call has to end here with
//! [`Input::required`] and be sent again. The tool body runs again from the top then, and every
//! question answered so far returns its answer at once.
//!
//! ```
//! use mcp_core::input::{Input, form};
//! use rmcp::{ErrorData, model::{CallToolResponse, CallToolResult, ContentBlock}};
//!
//! async fn greet(mut input: Input) -> Result<CallToolResponse, ErrorData> {
//!     let Some(answer) = input
//!         .elicit("name", form("What is your name?", serde_json::json!({
//!             "type": "object",
//!             "properties": { "name": { "type": "string" } },
//!             "required": ["name"]
//!         }))?)
//!         .await?
//!     else {
//!         return Ok(input.required().into());
//!     };
//!     let name = answer.content.and_then(|c| c["name"].as_str().map(str::to_owned));
//!     let text = format!("Hello, {}!", name.as_deref().unwrap_or("stranger"));
//!     Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
//! }
//! ```
//!
//! In a `#[tool]` method `Input` is an argument like `Parameters`; a prompt or a resource that
//! asks makes one with [`Input::for_prompt`] or [`Input::for_resource`]. Put no
//! `RequestMetaObject` argument before it: rmcp's extractor for that one takes the request's
//! `_meta` out of the context, and with it the protocol version and the client's capabilities
//! (read `context.meta` from a `RequestContext` argument instead).
//!
//! **The state is the server's own, and cannot be forged.** [`Guarded`](crate::Guarded), which
//! [`serve`](crate::serve()) wraps every handler in, seals each `requestState` a handler returns
//! (HMAC-SHA256 with a key made when the process starts, through rmcp's `RequestStateCodec`)
//! and binds it to the call: the method, the tool, prompt or resource, a digest of the
//! arguments, and (when the server checks OAuth tokens) who the token was issued to. A state that was altered, belongs to another call, is more than [`STATE_TTL`] old,
//! or was already used once is refused with `-32602` before the handler runs, so no answer is
//! carried into a call it was not given for and nothing runs twice from one state. A handler
//! sees the state it wrote, as it wrote it. The key lives in the process: a state outlives
//! neither a restart nor a hop to another instance behind a balancer (the client then starts the
//! call again).

// Sampling and roots are deprecated by SEP-2577 (rmcp marks their types so), but both revisions
// of the protocol still carry them, as server-to-client requests and as input requests.
#![allow(deprecated)]

use std::{
    collections::BTreeSet,
    sync::{Mutex, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rmcp::{
    ErrorData, RoleServer,
    handler::server::{common::FromContextPart, tool::ToolCallContext},
    model::{
        CreateMessageRequest, CreateMessageRequestParams, CreateMessageResult, ElicitRequest,
        ElicitRequestParams, ElicitResult, GetPromptRequestParams, InputRequest, InputRequests,
        InputRequiredResult, InputResponses, JsonObject, ListRootsRequest, ListRootsResult,
        ReadResourceRequestParams, RequestStateCodec, SealOptions,
    },
    service::RequestContext,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::tool::{ClientCapability, require_client_capability};

/// How long a `requestState` this server issued stays good: long enough for a person to fill in
/// a form, short enough that the record of used states stays small.
pub const STATE_TTL: Duration = Duration::from_secs(30 * 60);

/// A form to show the user: `message` and the JSON Schema of the answer (an object of flat
/// properties, as elicitation allows).
pub fn form(message: impl Into<String>, schema: Value) -> Result<ElicitRequestParams, ErrorData> {
    let requested_schema = serde_json::from_value(schema).map_err(|error| {
        ErrorData::internal_error(
            format!("the server built an elicitation schema the protocol does not allow: {error}"),
            None,
        )
    })?;
    Ok(ElicitRequestParams::FormElicitationParams {
        meta: None,
        message: message.into(),
        requested_schema,
    })
}

/// One call's questions to its client, and the answers it has so far. See the [module](self).
#[derive(Debug)]
pub struct Input {
    context: RequestContext<RoleServer>,
    /// 2026-07-28 or later: questions end the call with an input-required result.
    rounds: bool,
    /// Whether the call came with a state from an earlier round.
    resumed: bool,
    /// Answers on offer: from the state (earlier rounds) and this request's `inputResponses`.
    offered: InputResponses,
    /// The answers this call used, carried to the next round in its state.
    kept: InputResponses,
    /// Questions not answered yet.
    pending: InputRequests,
}

/// What [`Input`] writes into a `requestState` (before [`Guarded`](crate::Guarded) seals it).
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    answers: InputResponses,
}

impl Input {
    /// The questions of a request that came with `request_state` and `input_responses` (both
    /// `None` on a first round).
    pub fn new(
        context: RequestContext<RoleServer>,
        request_state: Option<String>,
        input_responses: Option<InputResponses>,
    ) -> Result<Self, ErrorData> {
        let rounds = stateless(&context);
        let (resumed, mut offered) = match request_state.filter(|_| rounds) {
            Some(state) => {
                let state: State = serde_json::from_str(&state).map_err(|error| {
                    ErrorData::invalid_params(
                        format!("requestState does not hold what this server writes there ({error}); call again without requestState and inputResponses"),
                        None,
                    )
                })?;
                (true, state.answers)
            }
            None => (false, InputResponses::new()),
        };
        if rounds {
            // What earlier rounds answered stands; this request adds to it.
            for (key, answer) in input_responses.unwrap_or_default() {
                offered.entry(key).or_insert(answer);
            }
        }
        Ok(Self {
            context,
            rounds,
            resumed,
            offered,
            kept: InputResponses::new(),
            pending: InputRequests::new(),
        })
    }

    /// The questions of a `prompts/get` (its state and answers taken out of `request`).
    pub fn for_prompt(
        request: &mut GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<Self, ErrorData> {
        Self::new(
            context,
            request.request_state.take(),
            request.input_responses.take(),
        )
    }

    /// The questions of a `resources/read` (its state and answers taken out of `request`).
    pub fn for_resource(
        request: &mut ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<Self, ErrorData> {
        Self::new(
            context,
            request.request_state.take(),
            request.input_responses.take(),
        )
    }

    /// Whether the client declared `capability` (a question it did not declare is refused).
    pub fn can(&self, capability: ClientCapability) -> bool {
        require_client_capability(&self.context, capability).is_ok()
    }

    /// Whether this call carries the state of an earlier round (always checked: see the
    /// [module](self)).
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Asks the user to fill in `form` ([`form()`]). `Err` (-32021) when the client did not
    /// declare elicitation.
    pub async fn elicit(
        &mut self,
        key: &str,
        form: ElicitRequestParams,
    ) -> Result<Option<ElicitResult>, ErrorData> {
        require_client_capability(&self.context, ClientCapability::Elicitation)?;
        if self.rounds {
            return Ok(self.answer(key, || InputRequest::Elicitation(ElicitRequest::new(form))));
        }
        let answer = self.context.peer.create_elicitation(form).await;
        answer
            .map(Some)
            .map_err(|error| unanswered("elicitation", error))
    }

    /// Asks the client's model (sampling). `Err` (-32021) when the client did not declare
    /// sampling.
    pub async fn sample(
        &mut self,
        key: &str,
        request: CreateMessageRequestParams,
    ) -> Result<Option<CreateMessageResult>, ErrorData> {
        require_client_capability(&self.context, ClientCapability::Sampling)?;
        if self.rounds {
            return Ok(self.answer(key, || {
                InputRequest::CreateMessage(CreateMessageRequest::new(request))
            }));
        }
        let answer = self.context.peer.create_message(request).await;
        answer
            .map(Some)
            .map_err(|error| unanswered("sampling", error))
    }

    /// Asks the client for its roots. `Err` (-32021) when the client did not declare roots.
    pub async fn roots(&mut self, key: &str) -> Result<Option<ListRootsResult>, ErrorData> {
        require_client_capability(&self.context, ClientCapability::Roots)?;
        if self.rounds {
            return Ok(self.answer(key, || InputRequest::ListRoots(ListRootsRequest::default())));
        }
        let answer = self.context.peer.list_roots().await;
        answer.map(Some).map_err(|error| unanswered("roots", error))
    }

    /// Whether a question is waiting for its answer (the call must end with [`Self::required`]).
    pub fn pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The input-required result that ends this round: the questions not answered yet, and a
    /// state carrying the answers used so far. It converts into the response of a tool call, a
    /// prompt or a resource read (`.into()`).
    pub fn required(&mut self) -> InputRequiredResult {
        let state = State {
            answers: std::mem::take(&mut self.kept),
        };
        let state = serde_json::to_string(&state).unwrap_or_else(|_| "{}".to_owned());
        let pending = std::mem::take(&mut self.pending);
        let requests = (!pending.is_empty()).then_some(pending);
        InputRequiredResult::new(requests, Some(state))
    }

    /// The answer under `key` if one is on offer and has the shape of `T`; else the question
    /// (`ask()`) is queued and `None` returned. An answer of the wrong shape is asked again,
    /// rather than failing the call (SEP-2322).
    fn answer<T: DeserializeOwned>(
        &mut self,
        key: &str,
        ask: impl FnOnce() -> InputRequest,
    ) -> Option<T> {
        if let Some(offered) = self.offered.get(key) {
            match serde_json::from_value(offered.clone()) {
                Ok(answer) => {
                    self.kept.insert(key.to_owned(), offered.clone());
                    return Some(answer);
                }
                Err(error) => {
                    tracing::debug!(key, %error, "an input response of the wrong shape; asked again")
                }
            }
        }
        self.pending.insert(key.to_owned(), ask());
        None
    }
}

fn unanswered(what: &str, error: rmcp::service::ServiceError) -> ErrorData {
    match error {
        rmcp::service::ServiceError::McpError(error) => error,
        error => ErrorData::internal_error(
            format!("the client did not answer the server's {what} request: {error}"),
            None,
        ),
    }
}

impl<S> FromContextPart<ToolCallContext<'_, S>> for Input {
    fn from_context_part(context: &mut ToolCallContext<'_, S>) -> Result<Self, ErrorData> {
        Self::new(
            context.request_context().clone(),
            context.request_state.take(),
            context.input_responses.take(),
        )
    }
}

/// Whether the request is in the 2026-07-28 revision or later (no server-to-client requests).
pub(crate) fn stateless(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= rmcp::model::ProtocolVersion::V_2026_07_28.as_str())
}

/// What a `requestState` is bound to: the method, the tool, prompt or resource, and a digest of
/// the arguments (so a state for `delete {path: a}` cannot be replayed on `delete {path: b}`).
#[derive(Debug, Clone)]
pub(crate) struct Binding(Vec<u8>);

impl Binding {
    /// `principal`: who the request's access token was issued to, when the server checks
    /// tokens (a state one user was given cannot be redeemed by another).
    pub(crate) fn new(
        principal: Option<&str>,
        method: &str,
        name: &str,
        arguments: Option<&JsonObject>,
    ) -> Self {
        let mut digest = Sha256::new();
        match principal {
            Some(principal) => digest_str(&mut digest, principal),
            None => digest.update(b"-"),
        }
        for part in [method, name] {
            digest_str(&mut digest, part);
        }
        match arguments {
            Some(arguments) => digest_object(&mut digest, arguments),
            None => digest.update(b"-"),
        }
        Self(digest.finalize().to_vec())
    }
}

/// An unambiguous encoding of a JSON value (object keys sorted, strings length-prefixed) into
/// the digest, without copying the value.
fn digest_value(digest: &mut Sha256, value: &Value) {
    match value {
        Value::Object(object) => digest_object(digest, object),
        Value::Array(items) => {
            digest.update(b"[");
            digest.update((items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| digest_value(digest, item));
        }
        Value::String(text) => digest_str(digest, text),
        Value::Number(number) => {
            digest.update(b"n");
            digest_str(digest, &number.to_string());
        }
        Value::Bool(true) => digest.update(b"t"),
        Value::Bool(false) => digest.update(b"f"),
        Value::Null => digest.update(b"z"),
    }
}

fn digest_object(digest: &mut Sha256, object: &JsonObject) {
    let mut entries: Vec<_> = object.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    digest.update(b"{");
    digest.update((entries.len() as u64).to_le_bytes());
    for (key, value) in entries {
        digest_str(digest, key);
        digest_value(digest, value);
    }
}

fn digest_str(digest: &mut Sha256, text: &str) {
    digest.update(b"s");
    digest.update((text.len() as u64).to_le_bytes());
    digest.update(text.as_bytes());
}

/// The envelope a sealed state carries: a one-time number, when it was issued, and the
/// handler's own state.
#[derive(Serialize, Deserialize)]
struct Envelope {
    n: String,
    t: u64,
    s: String,
}

/// The most used states remembered; past it the oldest is forgotten and every state issued
/// before it refused as expired, so a replay is never let through.
const MAX_REMEMBERED: usize = 100_000;

struct Sealer {
    codec: RequestStateCodec,
    used: Mutex<Used>,
}

#[derive(Default)]
struct Used {
    /// (issued at, nonce) of the states opened within [`STATE_TTL`].
    states: BTreeSet<(u64, String)>,
    /// States issued at or before this were forgotten: refused.
    floor: u64,
}

fn sealer() -> Result<&'static Sealer, ErrorData> {
    static SEALER: OnceLock<Result<Sealer, String>> = OnceLock::new();
    let sealer = SEALER.get_or_init(|| {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|error| error.to_string())?;
        let codec = RequestStateCodec::try_new(key.to_vec()).map_err(|error| error.to_string())?;
        Ok(Sealer {
            codec,
            used: Mutex::new(Used::default()),
        })
    });
    sealer.as_ref().map_err(|error| {
        ErrorData::internal_error(
            format!("this server cannot seal or open requestState: no key ({error})"),
            None,
        )
    })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as u64)
}

fn nonce() -> Result<String, ErrorData> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| {
        ErrorData::internal_error(format!("the system's random source failed: {error}"), None)
    })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Seals a handler's `requestState` for the call `binding` names.
pub(crate) fn seal(binding: &Binding, state: String) -> Result<String, ErrorData> {
    let envelope = Envelope {
        n: nonce()?,
        t: now_ms(),
        s: state,
    };
    let options = SealOptions::new()
        .associated_data(&binding.0)
        .ttl(STATE_TTL);
    sealer()?
        .codec
        .seal_json_with(&envelope, &options)
        .map_err(|error| {
            ErrorData::internal_error(format!("could not seal requestState: {error}"), None)
        })
}

/// The handler's own state inside `sealed`, if this process sealed it for the call `binding`
/// names, within [`STATE_TTL`], and it was not opened before.
pub(crate) fn open(binding: &Binding, sealed: &str) -> Result<String, ErrorData> {
    let sealer = sealer()?;
    let envelope: Envelope = sealer
        .codec
        .open_json_with(sealed, &binding.0)
        .map_err(|error| {
            tracing::debug!(%error, "refused a requestState");
            ErrorData::invalid_params(
                "requestState failed verification: it was not issued by this server for this call, was changed, or expired; call again without requestState and inputResponses",
                None,
            )
        })?;
    let now = now_ms();
    let mut used = sealer
        .used
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let horizon = now.saturating_sub(STATE_TTL.as_millis() as u64);
    while used.states.first().is_some_and(|(at, _)| *at < horizon) {
        used.states.pop_first();
    }
    let replayed = ErrorData::invalid_params(
        "requestState was already used once; call again without requestState and inputResponses",
        None,
    );
    if envelope.t <= used.floor {
        return Err(replayed);
    }
    if !used.states.insert((envelope.t, envelope.n)) {
        return Err(replayed);
    }
    while used.states.len() > MAX_REMEMBERED {
        if let Some((at, _)) = used.states.pop_first() {
            used.floor = used.floor.max(at);
        }
    }
    Ok(envelope.s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> JsonObject {
        match value {
            Value::Object(object) => object,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_binding_ignores_key_order_and_nothing_else() {
        let a = Binding::new(
            None,
            "tools/call",
            "t",
            Some(&args(json!({"a": 1, "b": [1, "x"]}))),
        );
        let b = Binding::new(
            None,
            "tools/call",
            "t",
            Some(&args(json!({"b": [1, "x"], "a": 1}))),
        );
        assert_eq!(a.0, b.0);
        for other in [
            Binding::new(
                None,
                "tools/call",
                "t",
                Some(&args(json!({"a": 2, "b": [1, "x"]}))),
            ),
            Binding::new(
                None,
                "tools/call",
                "t",
                Some(&args(json!({"a": 1, "b": ["x", 1]}))),
            ),
            Binding::new(
                None,
                "tools/call",
                "u",
                Some(&args(json!({"a": 1, "b": [1, "x"]}))),
            ),
            Binding::new(
                None,
                "prompts/get",
                "t",
                Some(&args(json!({"a": 1, "b": [1, "x"]}))),
            ),
            Binding::new(
                None,
                "tools/call",
                "t",
                Some(&args(json!({"a": "1", "b": [1, "x"]}))),
            ),
            Binding::new(None, "tools/call", "t", None),
            Binding::new(
                Some("alice"),
                "tools/call",
                "t",
                Some(&args(json!({"a": 1, "b": [1, "x"]}))),
            ),
            // Length prefixes: "ab"+"c" differs from "a"+"bc".
            Binding::new(None, "tools/call", "t", Some(&args(json!({"ab": "c"})))),
        ] {
            assert_ne!(a.0, other.0);
        }
        assert_ne!(
            Binding::new(None, "tools/call", "t", Some(&args(json!({"ab": "c"})))).0,
            Binding::new(None, "tools/call", "t", Some(&args(json!({"a": "bc"})))).0
        );
    }

    #[test]
    fn a_state_opens_once_for_its_own_call_only() {
        let call = Binding::new(
            None,
            "tools/call",
            "delete",
            Some(&args(json!({"path": "a"}))),
        );
        let other = Binding::new(
            None,
            "tools/call",
            "delete",
            Some(&args(json!({"path": "b"}))),
        );
        let sealed = seal(&call, "{\"answers\":{}}".to_owned()).unwrap();
        assert!(open(&other, &sealed).is_err(), "another call's state");
        let mut tampered = sealed.clone();
        tampered.push('x');
        assert!(open(&call, &tampered).is_err(), "a changed state");
        assert!(
            open(&call, &sealed[..sealed.len() / 2]).is_err(),
            "a truncated state"
        );
        assert!(
            open(&call, "{\"answers\":{\"confirm\":1}}").is_err(),
            "a forged state"
        );
        assert_eq!(open(&call, &sealed).unwrap(), "{\"answers\":{}}");
        let again = open(&call, &sealed).unwrap_err();
        assert!(again.message.contains("already used"), "{again:?}");
    }
}
