//! A handler wrapper that turns a panic into an error answer, and stops cancelled work.
//!
//! It also makes the schemas of every tool it lists (`tools/list`) portable
//! ([`make_portable`](crate::tool::make_portable)), so that no server has to remember to.
//!
//! rmcp runs each request in a task of its own and sends nothing when that task panics, so a
//! panicking tool would leave its client waiting forever. [`serve`](crate::serve()) wraps every
//! handler in [`Guarded`]: a panic in any request handler becomes a JSON-RPC internal error that
//! names the method, the session goes on, and the panic is logged.
//!
//! rmcp also only signals a `notifications/cancelled` (through the request's cancellation token)
//! and lets the handler run on. [`Guarded`] drops a cancelled tool call, resource read or prompt,
//! so the work stops at its next `.await` and whatever it holds is released (a server's own
//! drop guards then stop the statement, the child process, …); rmcp sends no answer for it.

// The wrapper must forward every method, the deprecated ones (logging, roots, subscribe) too.
// rmcp's Streamable HTTP server takes a `ServerHandler` (not any `Service`), so the wrapper has
// to be one; the test at the end reads rmcp's own trait and fails, naming the method, when a
// release adds one that is not forwarded here.
#![allow(deprecated)]

use std::{borrow::Cow, panic::AssertUnwindSafe};

use futures::FutureExt;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::*,
    service::{NotificationContext, RequestContext, SubscriptionContext},
};

use crate::input::{self, Binding};

/// `H`, with panics in its request handlers answered as internal errors, and at most
/// [`MAX_IN_FLIGHT`] tool calls, resource reads and prompts running at once in a session.
///
/// Each session is served by a `Guarded` of its own ([`Sessions`](crate::Sessions) makes one
/// per session), so each session's requests are counted apart.
#[derive(Debug)]
pub struct Guarded<H> {
    handler: H,
    slots: Slots,
}

impl<H> Guarded<H> {
    /// `handler`, guarded, with its own count of running requests.
    pub fn new(handler: H) -> Self {
        Self {
            handler,
            slots: Slots::default(),
        }
    }
}

/// Tool calls, resource reads and prompts one session may have running at once. One more is
/// answered at once with an error: a client cannot make the server hold work without end (on
/// stdio, where output waits are bounded separately, slow tools would otherwise pile up).
pub const MAX_IN_FLIGHT: usize = 128;

/// A session's places for running requests.
#[derive(Debug)]
struct Slots(std::sync::Arc<tokio::sync::Semaphore>);

impl Default for Slots {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::Semaphore::new(
            MAX_IN_FLIGHT,
        )))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

async fn guard<T>(
    method: &str,
    work: impl Future<Output = Result<T, ErrorData>>,
) -> Result<T, ErrorData> {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(method, panic = %message, "a request handler panicked");
            Err(ErrorData::internal_error(
                format!(
                    "the server failed while handling {method} (a bug in the server: {message}); other requests still work"
                ),
                None,
            ))
        }
    }
}

/// [`guard`], but dropped as soon as the request is cancelled, and refused when the session has
/// [`MAX_IN_FLIGHT`] requests running.
async fn cancellable<T>(
    method: &str,
    slots: &Slots,
    context: &RequestContext<RoleServer>,
    work: impl Future<Output = Result<T, ErrorData>>,
) -> Result<T, ErrorData> {
    let Ok(_slot) = slots.0.clone().try_acquire_owned() else {
        tracing::warn!(
            method,
            "refused a request: {MAX_IN_FLIGHT} already running in this session"
        );
        return Err(ErrorData::invalid_request(
            format!(
                "{method}: this session already has {MAX_IN_FLIGHT} requests running; wait for some to finish"
            ),
            None,
        ));
    };
    let cancelled = context.ct.clone();
    tokio::select! {
        result = guard(method, work) => result,
        () = cancelled.cancelled() => {
            tracing::debug!(method, "cancelled by the client; the work was dropped");
            Err(ErrorData::internal_error(format!("{method} was cancelled"), None))
        }
    }
}

async fn guard_notification(method: &str, work: impl Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(work).catch_unwind().await {
        tracing::error!(method, panic = %panic_message(panic.as_ref()), "a notification handler panicked");
    }
}

/// What a `requestState` of this request is bound to; `None` in the handshake era, which has no
/// input-required results (rmcp refuses them there).
fn binding(
    context: &RequestContext<RoleServer>,
    method: &str,
    name: &str,
    arguments: Option<&JsonObject>,
) -> Option<Binding> {
    let principal = crate::auth::subject(context);
    input::stateless(context).then(|| Binding::new(principal, method, name, arguments))
}

/// Replaces the client's sealed `requestState` with the handler's own, or refuses the request
/// ([`input::open`]).
fn unseal(binding: Option<&Binding>, state: &mut Option<String>) -> Result<(), ErrorData> {
    let Some(sealed) = state.take() else {
        return Ok(());
    };
    let Some(binding) = binding else {
        return Err(ErrorData::invalid_params(
            "requestState belongs to the 2026-07-28 revision of the protocol, which this request is not in",
            None,
        ));
    };
    *state = Some(input::open(binding, &sealed)?);
    Ok(())
}

/// The handler's input-required result with its `requestState` sealed for this call.
fn reseal(
    binding: Option<&Binding>,
    mut result: InputRequiredResult,
) -> Result<InputRequiredResult, ErrorData> {
    if let (Some(binding), Some(state)) = (binding, result.request_state.take()) {
        result.request_state = Some(input::seal(binding, state)?);
    }
    Ok(result)
}

impl<H: ServerHandler> ServerHandler for Guarded<H> {
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        guard("ping", self.handler.ping(context)).await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        guard("initialize", self.handler.initialize(request, context)).await
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, ErrorData> {
        self.handler.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.handler.supported_protocol_versions()
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        guard("server/discover", self.handler.discover(context)).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        guard(
            "completion/complete",
            self.handler.complete(request, context),
        )
        .await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("logging/setLevel", self.handler.set_level(request, context)).await
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let binding = binding(
            &context,
            "prompts/get",
            &request.name,
            request.arguments.as_ref(),
        );
        unseal(binding.as_ref(), &mut request.request_state)?;
        let scope = context.clone();
        let response = cancellable(
            "prompts/get",
            &self.slots,
            &scope,
            self.handler.get_prompt(request, context),
        )
        .await?;
        Ok(match response {
            GetPromptResponse::InputRequired(result) => reseal(binding.as_ref(), result)?.into(),
            complete => complete,
        })
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        guard("prompts/list", self.handler.list_prompts(request, context)).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        guard(
            "resources/list",
            self.handler.list_resources(request, context),
        )
        .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        guard(
            "resources/templates/list",
            self.handler.list_resource_templates(request, context),
        )
        .await
    }

    async fn read_resource(
        &self,
        mut request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let binding = binding(&context, "resources/read", &request.uri, None);
        unseal(binding.as_ref(), &mut request.request_state)?;
        let scope = context.clone();
        let response = cancellable(
            "resources/read",
            &self.slots,
            &scope,
            self.handler.read_resource(request, context),
        )
        .await?;
        Ok(match response {
            ReadResourceResponse::InputRequired(result) => reseal(binding.as_ref(), result)?.into(),
            complete => complete,
        })
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.handler.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        guard("subscriptions/listen", self.handler.listen(context)).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard(
            "resources/subscribe",
            self.handler.subscribe(request, context),
        )
        .await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard(
            "resources/unsubscribe",
            self.handler.unsubscribe(request, context),
        )
        .await
    }

    async fn call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let binding = binding(
            &context,
            "tools/call",
            &request.name,
            request.arguments.as_ref(),
        );
        unseal(binding.as_ref(), &mut request.request_state)?;
        let method = format!("tools/call {}", request.name);
        let scope = context.clone();
        let response = cancellable(
            &method,
            &self.slots,
            &scope,
            self.handler.call_tool(request, context),
        )
        .await?;
        Ok(match response {
            CallToolResponse::InputRequired(result) => reseal(binding.as_ref(), result)?.into(),
            other => other,
        })
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut listed = guard("tools/list", self.handler.list_tools(request, context)).await?;
        listed.tools.iter_mut().for_each(crate::tool::make_portable);
        Ok(listed)
    }

    // Passed through as it is: rmcp asks for it on every Streamable HTTP call (to check
    // `Mcp-Param-*` headers against the input schema), where the formats make no difference
    // and copying the schema would cost every call.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.handler.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method.clone();
        guard(&method, self.handler.on_custom_request(request, context)).await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        guard_notification(
            "notifications/cancelled",
            self.handler.on_cancelled(notification, context),
        )
        .await
    }

    async fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        guard_notification(
            "notifications/progress",
            self.handler.on_progress(notification, context),
        )
        .await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        guard_notification(
            "notifications/initialized",
            self.handler.on_initialized(context),
        )
        .await
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        guard_notification(
            "notifications/roots/list_changed",
            self.handler.on_roots_list_changed(context),
        )
        .await
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        guard_notification(
            "custom notification",
            self.handler.on_custom_notification(notification, context),
        )
        .await
    }

    fn get_info(&self) -> ServerConfig {
        self.handler.get_info()
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        guard("tasks/get", self.handler.get_task(request, context)).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("tasks/update", self.handler.update_task(request, context)).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("tasks/cancel", self.handler.cancel_task(request, context)).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, ErrorData> {
        guard("skills/list", self.handler.list_skills(request, context)).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, ErrorData> {
        guard("skills/get", self.handler.get_skill(request, context)).await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, ErrorData> {
        guard(
            "resources/directory/read",
            self.handler.read_resource_directory(request, context),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    /// The `fn` names declared at `indent` spaces in `text`.
    fn functions(text: &str, indent: usize) -> std::collections::BTreeSet<String> {
        let prefix = " ".repeat(indent);
        text.lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|line| {
                line.strip_prefix("async fn ")
                    .or_else(|| line.strip_prefix("fn "))
            })
            .map(|rest| {
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            })
            .collect()
    }

    /// From the line starting with `head` to the next line that is only `}`.
    fn block<'a>(text: &'a str, head: &str) -> Option<&'a str> {
        let start = text.find(head)?;
        let end = text[start..].find("\n}\n")?;
        Some(&text[start..start + end])
    }

    #[test]
    fn every_server_handler_method_of_this_rmcp_is_forwarded() {
        // Only this machine's platform: offline, cargo cannot resolve packages of others that
        // no build here ever downloaded (android_system_properties on a fresh machine).
        let rustc = std::process::Command::new("rustc")
            .arg("-vV")
            .output()
            .expect("rustc -vV");
        let host = String::from_utf8_lossy(&rustc.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("host: ").map(str::to_owned))
            .expect("rustc -vV names the host");
        let metadata = std::process::Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--format-version",
                "1",
                "--offline",
                "--filter-platform",
                &host,
                "--manifest-path",
            ])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .output()
            .expect("cargo metadata");
        assert!(metadata.status.success(), "{metadata:?}");
        let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).unwrap();
        let manifest = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "rmcp")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("rmcp among the packages");
        let source = std::path::Path::new(manifest).with_file_name("src/handler/server.rs");
        let source = std::fs::read_to_string(&source).unwrap();
        // The trait's methods are written once, in a macro both of its cfg variants expand.
        let theirs = match block(&source, "macro_rules! server_handler_methods") {
            Some(methods) => functions(methods, 8),
            None => functions(block(&source, "pub trait ServerHandler").unwrap(), 4),
        };
        assert!(theirs.len() > 20, "read too few methods: {theirs:?}");
        let ours = functions(
            block(
                include_str!("guarded.rs"),
                "impl<H: ServerHandler> ServerHandler for Guarded<H>",
            )
            .unwrap(),
            4,
        );
        let missing: Vec<_> = theirs.difference(&ours).collect();
        assert!(
            missing.is_empty(),
            "Guarded does not forward these ServerHandler methods, so it would answer them with \
             rmcp's defaults: {missing:?}"
        );
    }
}
