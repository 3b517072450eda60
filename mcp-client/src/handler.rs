//! How `mcp` answers what servers ask of it and hears what they tell it.
//!
//! Requests from a server: elicitation (`elicitation/create`: accepted with the schema's
//! defaults, declined, or asked of the user), sampling (`sampling/createMessage`: answered by the
//! configured model once the user consents) and roots (`roots/list`: the working directory).
//! Notifications: `tools/list_changed`, progress and log messages. Everything that needs the
//! person at the terminal or the model goes through [`Hooks`], which the agent provides; without
//! hooks a connection declines elicitations and offers neither sampling nor roots.

// Sampling, roots and logging are deprecated by the 2026-07-28 revision (SEP-2577) but are how
// every handshake-era server asks for them; the issue asks for all three.
#![allow(deprecated)]

use std::sync::Arc;

use futures::future::BoxFuture;
use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, CreateMessageRequestParams, CreateMessageResult,
        ElicitRequestParams, ElicitResult, ElicitationAction, Implementation, ListRootsResult,
        LoggingMessageNotificationParam, ProgressNotificationParam, ProtocolVersion, Root,
    },
    service::{NotificationContext, RequestContext},
};
use serde_json::{Map, Value};

/// What to do with a server's elicitation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elicitation {
    /// Decline every request (the capability is not even offered).
    Decline,
    /// Accept a form with the defaults of its schema (fields without one are left out).
    AcceptDefaults,
    /// Ask the user, through [`Hooks::elicit`].
    Ask,
}

/// What the agent does with what servers ask and tell. Every method gets the server's name.
pub trait Hooks: Send + Sync + 'static {
    /// The server's tools changed (`notifications/tools/list_changed`).
    fn tools_changed(&self, server: &str);
    /// Progress of a request the client made.
    fn progress(&self, server: &str, progress: &ProgressNotificationParam);
    /// A log message.
    fn log(&self, server: &str, message: &LoggingMessageNotificationParam);
    /// Ask the user to fill in (or decline) a form.
    fn elicit(&self, server: &str, request: ElicitRequestParams) -> BoxFuture<'_, ElicitResult>;
    /// Answer a sampling request with the model, if the user agrees.
    fn sample(
        &self,
        server: &str,
        request: CreateMessageRequestParams,
    ) -> BoxFuture<'_, Result<CreateMessageResult, ErrorData>>;
    /// The roots offered to servers.
    fn roots(&self) -> Vec<Root>;
}

/// The client side of a connection.
#[derive(Clone)]
pub struct Handler {
    /// The server this handler talks to (for the hooks); filled in by `connect`.
    pub server: String,
    /// How the server's elicitation requests are answered.
    pub elicitation: Elicitation,
    /// Who hears of tool list changes, progress and logs, and answers elicitation, sampling and
    /// roots requests (the agent or the terminal); nobody when `None`.
    pub hooks: Option<Arc<dyn Hooks>>,
    /// Whether to declare the Tasks extension (long tools then answer with a task to follow).
    pub tasks: bool,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("server", &self.server)
            .field("elicitation", &self.elicitation)
            .field("hooks", &self.hooks.is_some())
            .finish()
    }
}

impl Handler {
    /// A handler that declines elicitations and offers nothing else.
    pub fn plain(elicitation: Elicitation) -> Self {
        Self {
            server: String::new(),
            elicitation,
            hooks: None,
            tasks: false,
        }
    }
}

/// Each property's `default`, from a form's requested schema.
pub fn schema_defaults(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .filter_map(|(name, property)| {
                    property
                        .get("default")
                        .map(|default| (name.clone(), default.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        let builder = ClientCapabilities::builder();
        let capabilities = match (self.elicitation, self.hooks.is_some()) {
            (Elicitation::Decline, false) => builder.build(),
            (_, false) => builder.enable_elicitation().build(),
            (Elicitation::Decline, true) => builder.enable_roots().enable_sampling().build(),
            (_, true) => builder
                .enable_elicitation()
                .enable_roots()
                .enable_sampling()
                .build(),
        };
        let mut capabilities = capabilities;
        if self.tasks {
            capabilities
                .extensions
                .get_or_insert_with(Default::default)
                .insert(
                    rmcp::model::TASKS_EXTENSION_ID.to_owned(),
                    Default::default(),
                );
        }
        let mut config = ClientConfig::new(
            capabilities,
            Implementation::new("mcp", env!("CARGO_PKG_VERSION")),
        );
        // An `initialize` carries the newest version that has one (the stateless revision has
        // no handshake; rmcp's default would name it).
        config.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
        config
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match (self.elicitation, &self.hooks, request) {
            (
                Elicitation::AcceptDefaults,
                _,
                ElicitRequestParams::FormElicitationParams {
                    requested_schema, ..
                },
            ) => {
                let schema = serde_json::to_value(&requested_schema)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                Ok(ElicitResult::new(ElicitationAction::Accept)
                    .with_content(Value::Object(schema_defaults(&schema))))
            }
            (Elicitation::Ask, Some(hooks), request) => {
                Ok(hooks.elicit(&self.server, request).await)
            }
            _ => Ok(ElicitResult::new(ElicitationAction::Decline)),
        }
    }

    async fn create_message(
        &self,
        request: CreateMessageRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        match &self.hooks {
            Some(hooks) => hooks.sample(&self.server, request).await,
            None => Err(ErrorData::invalid_request(
                "this client does not offer sampling",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Ok(ListRootsResult::new(
            self.hooks.as_ref().map(|h| h.roots()).unwrap_or_default(),
        ))
    }

    // `tools/list_changed` is not handled here but by the connection's transport, in order with
    // the answers around it: see `Watched`.

    async fn on_progress(
        &self,
        progress: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        if let Some(hooks) = &self.hooks {
            hooks.progress(&self.server, &progress);
        }
    }

    async fn on_logging_message(
        &self,
        message: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        match &self.hooks {
            Some(hooks) => hooks.log(&self.server, &message),
            None => tracing::info!(server = %self.server, data = %message.data, "server log"),
        }
    }
}

/// A transport that tells [`Hooks::tools_changed`] of a `tools/list_changed` the moment it is
/// received, in order with the messages around it.
///
/// rmcp hands each notification to the handler in a task of its own, so a `tools/list_changed`
/// a server sends just before a tool's answer could reach
/// [`ClientHandler::on_tool_list_changed`] after the answer has woken the agent, whose next model
/// request would then lack the new tools. The service loop reads its transport in order; seen
/// here, the change is recorded before the answer behind it is even read.
///
/// It also keeps the era probe of `--era auto` honest. rmcp's Auto lifecycle sends
/// `server/discover` first and falls back to `initialize` on a JSON-RPC error; but an older
/// server (or a lax one) may answer a method it does not know with an empty result, which rmcp
/// takes as a failed start, and a probe that times out may be answered after the `initialize`
/// that replaced it, which rmcp takes as the answer to `initialize`. Here an answer to the probe
/// that is not a discover result reads as "method not found", and one that comes after the
/// fallback began is dropped.
pub struct Watched<T> {
    inner: T,
    server: String,
    hooks: Option<Arc<dyn Hooks>>,
    /// The id of the `server/discover` probe in flight.
    probe: Option<rmcp::model::RequestId>,
    /// The id of a probe the fallback `initialize` replaced: its answer, if it comes, is late.
    abandoned: Option<rmcp::model::RequestId>,
}

impl<T> Watched<T> {
    /// `inner`, watched for `server` on behalf of `hooks` (none: passed through as it is).
    pub fn new(inner: T, server: &str, hooks: Option<Arc<dyn Hooks>>) -> Self {
        Self {
            inner,
            server: server.to_owned(),
            hooks,
            probe: None,
            abandoned: None,
        }
    }
}

/// The probe's answer as rmcp's Auto lifecycle can use it: a discover result or an error pass;
/// anything else is the server not knowing the method.
fn probe_answer(
    message: rmcp::service::RxJsonRpcMessage<RoleClient>,
) -> rmcp::service::RxJsonRpcMessage<RoleClient> {
    use rmcp::model::{ErrorCode, ErrorData, JsonRpcError, JsonRpcMessage, ServerResult};
    match message {
        JsonRpcMessage::Response(response)
            if !matches!(response.result, ServerResult::DiscoverResult(_)) =>
        {
            JsonRpcMessage::Error(JsonRpcError {
                jsonrpc: Default::default(),
                id: Some(response.id),
                error: ErrorData::new(
                    ErrorCode::METHOD_NOT_FOUND,
                    "server/discover answered with something that is not a discover result: an older server",
                    None,
                ),
            })
        }
        other => other,
    }
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Watched<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        if let rmcp::model::JsonRpcMessage::Request(request) = &item {
            match request.request.method() {
                "server/discover" => self.probe = Some(request.id.clone()),
                "initialize" => self.abandoned = self.probe.take(),
                _ => {}
            }
        }
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        let mut message = self.inner.receive().await?;
        loop {
            let id = match &message {
                rmcp::model::JsonRpcMessage::Response(response) => Some(&response.id),
                rmcp::model::JsonRpcMessage::Error(error) => error.id.as_ref(),
                _ => None,
            };
            if id.is_some() && id == self.abandoned.as_ref() {
                tracing::debug!(server = %self.server, "dropped the late answer to an abandoned server/discover probe");
                self.abandoned = None;
                message = self.inner.receive().await?;
                continue;
            }
            if id.is_some() && id == self.probe.as_ref() {
                self.probe = None;
                message = probe_answer(message);
            }
            break;
        }
        if let (Some(hooks), rmcp::model::JsonRpcMessage::Notification(notification)) =
            (&self.hooks, &message)
            && matches!(
                notification.notification,
                rmcp::model::ServerNotification::ToolListChangedNotification(_)
            )
        {
            hooks.tools_changed(&self.server);
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that answers from a script.
    struct Scripted(std::collections::VecDeque<serde_json::Value>);

    impl rmcp::transport::Transport<RoleClient> for Scripted {
        type Error = std::io::Error;

        fn send(
            &mut self,
            _: rmcp::service::TxJsonRpcMessage<RoleClient>,
        ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
            std::future::ready(Ok(()))
        }

        async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
            serde_json::from_value(self.0.pop_front()?).ok()
        }

        async fn close(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    fn request(id: i64, method: &str) -> rmcp::service::TxJsonRpcMessage<RoleClient> {
        serde_json::from_value(serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": method,
            "params": if method == "initialize" {
                serde_json::json!({
                    "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" }
                })
            } else {
                serde_json::json!({})
            }
        }))
        .unwrap()
    }

    /// `--era auto` against a lax server: an empty result to `server/discover` reads as "not
    /// found" (so rmcp falls back to `initialize`), and a probe answered after the fallback began
    /// is dropped rather than taken for the answer to `initialize`.
    #[tokio::test]
    async fn the_era_probe_reads_lax_and_late_answers_right() {
        use rmcp::transport::Transport;
        let initialized = serde_json::json!({ "jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "serverInfo": { "name": "s", "version": "1" }
        }});
        let mut lax = Watched::new(
            Scripted([serde_json::json!({ "jsonrpc": "2.0", "id": 0, "result": {} })].into()),
            "lax",
            None,
        );
        let _ = lax.send(request(0, "server/discover")).await;
        let answer = serde_json::to_value(lax.receive().await.unwrap()).unwrap();
        assert_eq!(answer["error"]["code"], -32601, "{answer}");
        assert_eq!(answer["id"], 0);

        let mut late = Watched::new(
            Scripted(
                [
                    serde_json::json!({ "jsonrpc": "2.0", "id": 0, "error": { "code": -32601, "message": "late" } }),
                    initialized.clone(),
                ]
                .into(),
            ),
            "slow",
            None,
        );
        let _ = late.send(request(0, "server/discover")).await;
        // rmcp gave up on the probe and sent initialize instead.
        let _ = late.send(request(1, "initialize")).await;
        let answer = serde_json::to_value(late.receive().await.unwrap()).unwrap();
        assert_eq!(answer, initialized, "the late probe answer was skipped");

        // A server that knows discover is left alone.
        let discovered = serde_json::json!({ "jsonrpc": "2.0", "id": 0, "result": {
            "resultType": "complete", "supportedVersions": ["2026-07-28"], "capabilities": {},
            "ttlMs": 0, "cacheScope": "public"
        }});
        let mut modern = Watched::new(Scripted([discovered].into()), "modern", None);
        let _ = modern.send(request(0, "server/discover")).await;
        let answer = serde_json::to_value(modern.receive().await.unwrap()).unwrap();
        assert!(answer["result"]["supportedVersions"].is_array(), "{answer}");
    }

    #[test]
    fn defaults_come_from_each_property() {
        let schema = serde_json::json!({"type": "object", "properties": {
            "name": {"type": "string", "default": "John Doe"},
            "age": {"type": "integer", "default": 30},
            "note": {"type": "string"}
        }});
        let defaults = schema_defaults(&schema);
        assert_eq!(defaults.len(), 2);
        assert_eq!(defaults["age"], 30);
        assert!(schema_defaults(&serde_json::json!({})).is_empty());
    }
}
