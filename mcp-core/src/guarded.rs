//! A handler wrapper that turns a panic into an error answer, and stops cancelled work.
//!
//! rmcp runs each request in a task of its own and sends nothing when that task panics, so a
//! panicking tool would leave its client waiting forever. [`serve`](crate::serve) wraps every
//! handler in [`Guarded`]: a panic in any request handler becomes a JSON-RPC internal error that
//! names the method, the session goes on, and the panic is logged.
//!
//! rmcp also only signals a `notifications/cancelled` (through the request's cancellation token)
//! and lets the handler run on. [`Guarded`] drops a cancelled tool call, resource read or prompt,
//! so the work stops at its next `.await` and whatever it holds is released (a server's own
//! drop guards then stop the statement, the child process, …); rmcp sends no answer for it.

// The wrapper must forward every method, the deprecated ones (logging, roots, subscribe) too.
#![allow(deprecated)]

use std::{borrow::Cow, panic::AssertUnwindSafe};

use futures::FutureExt;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::*,
    service::{NotificationContext, RequestContext, SubscriptionContext},
};

/// `H`, with panics in its request handlers answered as internal errors.
#[derive(Debug, Clone)]
pub struct Guarded<H>(pub H);

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

/// [`guard`], but dropped as soon as the request is cancelled.
async fn cancellable<T>(
    method: &str,
    context: &RequestContext<RoleServer>,
    work: impl Future<Output = Result<T, ErrorData>>,
) -> Result<T, ErrorData> {
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

impl<H: ServerHandler> ServerHandler for Guarded<H> {
    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), ErrorData> {
        guard("ping", self.0.ping(context)).await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        guard("initialize", self.0.initialize(request, context)).await
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, ErrorData> {
        self.0.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.0.supported_protocol_versions()
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, ErrorData> {
        guard("server/discover", self.0.discover(context)).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        guard("completion/complete", self.0.complete(request, context)).await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("logging/setLevel", self.0.set_level(request, context)).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let scope = context.clone();
        cancellable("prompts/get", &scope, self.0.get_prompt(request, context)).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        guard("prompts/list", self.0.list_prompts(request, context)).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        guard("resources/list", self.0.list_resources(request, context)).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        guard(
            "resources/templates/list",
            self.0.list_resource_templates(request, context),
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let scope = context.clone();
        cancellable(
            "resources/read",
            &scope,
            self.0.read_resource(request, context),
        )
        .await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        self.0.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        guard("subscriptions/listen", self.0.listen(context)).await
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("resources/subscribe", self.0.subscribe(request, context)).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard(
            "resources/unsubscribe",
            self.0.unsubscribe(request, context),
        )
        .await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let method = format!("tools/call {}", request.name);
        let scope = context.clone();
        cancellable(&method, &scope, self.0.call_tool(request, context)).await
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        guard("tools/list", self.0.list_tools(request, context)).await
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.0.get_tool(name)
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        let method = request.method.clone();
        guard(&method, self.0.on_custom_request(request, context)).await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        guard_notification(
            "notifications/cancelled",
            self.0.on_cancelled(notification, context),
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
            self.0.on_progress(notification, context),
        )
        .await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        guard_notification("notifications/initialized", self.0.on_initialized(context)).await
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        guard_notification(
            "notifications/roots/list_changed",
            self.0.on_roots_list_changed(context),
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
            self.0.on_custom_notification(notification, context),
        )
        .await
    }

    fn get_info(&self) -> ServerConfig {
        self.0.get_info()
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        guard("tasks/get", self.0.get_task(request, context)).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("tasks/update", self.0.update_task(request, context)).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        guard("tasks/cancel", self.0.cancel_task(request, context)).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, ErrorData> {
        guard("skills/list", self.0.list_skills(request, context)).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, ErrorData> {
        guard("skills/get", self.0.get_skill(request, context)).await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, ErrorData> {
        guard(
            "resources/directory/read",
            self.0.read_resource_directory(request, context),
        )
        .await
    }
}
