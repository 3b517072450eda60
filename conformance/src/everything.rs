//! The "everything" fixture: one server with every tool, resource, prompt and utility the
//! official conformance suite (`@modelcontextprotocol/conformance`) exercises, under the exact
//! names it expects. It is built on mcp-core like our real servers, so the suite's verdict on it
//! is a verdict on the protocol layer they all share.
//!
//! Every session (every stdio process, every HTTP session) gets its own log level and resource
//! subscriptions: cloning the handler, which [`mcp_core::serve`] does per session, starts fresh.

// The handshake-era features the suite tests (logging, resources/subscribe) are deprecated in
// rmcp in favour of their 2026-07-28 replacements; this fixture must still serve them.
#![allow(deprecated)]

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use mcp_core::{
    Changes, ToolError,
    changes::Member,
    input::{Input, form},
    tasks::{TaskOptions, Tasks},
    tool::ClientCapability,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::{prompt::PromptContext, wrapper::Parameters},
    model::*,
    prompt, prompt_router, schemars,
    service::{NotificationContext, Peer, RequestContext, SubscriptionContext},
    tool, tool_handler, tool_router,
};
use serde_json::{Value, json};

/// A 1×1 red PNG.
pub const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV header with no samples: the smallest valid audio file.
pub const WAV_BASE64: &str = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=";

const STATIC_TEXT: &str = "This is the content of the static text resource.";
const WATCHED: &str = "test://watched-resource";

/// The fixture server: one session's (its log level and subscriptions are the session's own;
/// [`Changes`], where its trigger tools announce changes, is shared with the sessions it was
/// made with, and so are its [`Tasks`]). [`Everything::sessions`] is ready to serve;
/// `Everything::default()` is a lone session.
pub struct Everything {
    session: Arc<Session>,
    changes: Changes,
    tasks: Tasks,
}

impl Default for Everything {
    /// A lone session, its tasks in memory.
    // SQLite fails to open an in-memory database only when memory is gone.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        let tasks = Tasks::in_memory().expect("an in-memory task store");
        Self::new(Changes::default(), tasks)
    }
}

/// What one client session changes: its log level and its place among those told of changes.
#[derive(Default)]
struct Session {
    // `None` until the client sets a level: then everything is sent.
    min_log_level: Mutex<Option<LoggingLevel>>,
    member: OnceLock<Member>,
}

impl Everything {
    /// Sessions for [`mcp_core::serve`], each its own, all announcing their changes to all (a
    /// 2026-07-28 trigger call and the listen stream that should hear of it are different
    /// sessions).
    /// Their tasks are kept in memory.
    // SQLite fails to open an in-memory database only when memory is gone.
    #[allow(clippy::expect_used)]
    pub fn sessions() -> impl mcp_core::Sessions<Handler = Self> {
        Self::sessions_with(Tasks::in_memory().expect("an in-memory task store"))
    }

    /// [`Everything::sessions`], their tasks kept in `tasks`.
    pub fn sessions_with(tasks: Tasks) -> impl mcp_core::Sessions<Handler = Self> {
        let changes = Changes::default();
        mcp_core::per_session(move || Self::new(changes.clone(), tasks.clone()))
    }

    /// A session that announces changes to (and hears of them from) `changes`, and keeps its
    /// tasks in `tasks`.
    pub fn new(changes: Changes, tasks: Tasks) -> Self {
        Self {
            session: Arc::default(),
            changes,
            tasks,
        }
    }

    /// This session's place among the handshake-era sessions told of changes.
    fn member(&self, peer: &Peer<RoleServer>) -> &Member {
        self.session
            .member
            .get_or_init(|| self.changes.join(peer.clone()))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct SamplingArgs {
    /// The prompt to send to the client's LLM.
    prompt: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ElicitationArgs {
    /// The message to show the user.
    message: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct GreetArgs {
    /// Whom to greet.
    name: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ComputeArgs {
    /// How long to work, in seconds (0: at once).
    #[serde(default = "one_second")]
    seconds: f64,
    /// A name for the result.
    label: Option<String>,
}

fn one_second() -> f64 {
    1.0
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DeleteArgs {
    /// The file to (pretend to) delete.
    filename: Option<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct HeaderArgs {
    /// A value the client also sends as the `Mcp-Param-Value` header (SEP-2243); rmcp's
    /// Streamable HTTP server refuses a call whose header and body disagree.
    #[schemars(extend("x-mcp-header" = "Value"))]
    value: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct TwoArgs {
    /// First test argument.
    arg1: String,
    /// Second test argument.
    arg2: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ResourceUriArg {
    /// URI of the resource to embed.
    resource_uri: String,
}

/// The input schema of `json_schema_2020_12_tool`, kept exactly as written: the suite's own
/// fixture (SEP-1613's `$schema`, `$defs`, `additionalProperties`, and SEP-2106's `$anchor`,
/// `allOf`/`anyOf` and `if`/`then`/`else`).
fn schema_2020_12() -> Arc<JsonObject> {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": {
                    "street": { "type": "string" },
                    "city": { "type": "string" }
                }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" },
            "contactMethod": { "type": "string", "enum": ["phone", "email"] },
            "phone": { "type": "string" },
            "email": { "type": "string" }
        },
        "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
        "if": {
            "properties": { "contactMethod": { "const": "phone" } },
            "required": ["contactMethod"]
        },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    });
    match schema {
        Value::Object(object) => Arc::new(object),
        _ => unreachable!("a JSON object literal"),
    }
}

/// Asks the user to fill in `schema` under `key`, in either era ([`Input`]).
async fn elicit(
    input: &mut Input,
    key: &str,
    message: impl Into<String>,
    schema: Value,
) -> Result<Option<ElicitResult>, ErrorData> {
    input.elicit(key, form(message, schema)?).await
}

/// A form of one required string field.
fn one_field(name: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string" } },
        "required": [name]
    })
}

/// The text a field of an accepted form holds.
fn field(answer: &ElicitResult, name: &str) -> String {
    answer
        .content
        .as_ref()
        .and_then(|content| content.get(name))
        .map(|value| {
            value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned)
        })
        .unwrap_or_default()
}

fn sampled_text(answer: &CreateMessageResult) -> String {
    let content = serde_json::to_value(&answer.message.content).unwrap_or_default();
    content
        .get("text")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| content.to_string())
}

fn done(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

fn describe(result: &ElicitResult) -> String {
    let action = serde_json::to_value(&result.action)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    let content = result.content.clone().unwrap_or(Value::Null);
    format!("action={action}, content={content}")
}

#[tool_router]
impl Everything {
    #[tool(
        description = "Returns a simple text.",
        annotations(read_only_hint = true)
    )]
    fn test_simple_text(&self) -> String {
        "This is a simple text response for testing.".to_owned()
    }

    #[tool(
        description = "Returns an image (a 1x1 red PNG).",
        annotations(read_only_hint = true)
    )]
    fn test_image_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::image(PNG_BASE64, "image/png")])
    }

    #[tool(
        description = "Returns audio (an empty WAV).",
        annotations(read_only_hint = true)
    )]
    fn test_audio_content(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::audio(WAV_BASE64, "audio/wav")])
    }

    #[tool(
        description = "Returns an embedded text resource.",
        annotations(read_only_hint = true)
    )]
    fn test_embedded_resource(&self) -> CallToolResult {
        CallToolResult::success(vec![ContentBlock::resource(ResourceContents::text(
            "This is an embedded resource content.",
            "test://embedded-resource",
        ))])
    }

    #[tool(
        description = "Returns text, an image and a resource.",
        annotations(read_only_hint = true)
    )]
    fn test_multiple_content_types(&self) -> CallToolResult {
        CallToolResult::success(vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(PNG_BASE64, "image/png"),
            ContentBlock::resource(
                ResourceContents::text(
                    r#"{"test":"data","value":123}"#,
                    "test://mixed-content-resource",
                )
                .with_mime_type("application/json"),
            ),
        ])
    }

    #[tool(
        description = "Sends an info log message, only if the request may have one (SEP-2575's diagnostic tool: none unless _meta asks for a logLevel)."
    )]
    async fn test_logging_tool(&self, context: RequestContext<RoleServer>) -> String {
        self.log(&context, LoggingLevel::Info, "test_logging_tool ran")
            .await;
        "Logging tool executed".to_owned()
    }

    #[tool(description = "Sends three info log messages while it runs.")]
    async fn test_tool_with_logging(&self, context: RequestContext<RoleServer>) -> String {
        let messages = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (i, message) in messages.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.log(&context, LoggingLevel::Info, message).await;
        }
        "Tool with logging executed successfully".to_owned()
    }

    #[tool(description = "Always fails, as a tool error the model can read.")]
    fn test_error_handling(&self) -> Result<String, ToolError> {
        Err(ToolError::new(
            "This tool intentionally returns an error for testing",
        ))
    }

    #[tool(description = "Reports progress 0, 50 and 100 of 100 while it runs.")]
    async fn test_tool_with_progress(
        &self,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
    ) -> String {
        let token = meta.get_progress_token();
        for (i, progress) in [0.0, 50.0, 100.0].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if let Some(token) = &token {
                let update =
                    ProgressNotificationParam::new(token.clone(), progress).with_total(100.0);
                if let Err(error) = peer.notify_progress(update).await {
                    tracing::warn!(%error, "could not send a progress notification");
                }
            }
        }
        "Tool with progress executed successfully".to_owned()
    }

    #[tool(
        description = "Needs the client's sampling capability and refuses, with -32021, a client that did not declare it (SEP-2575's diagnostic tool)."
    )]
    fn test_missing_capability(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        mcp_core::tool::require_client_capability(&context, ClientCapability::Sampling)?;
        Ok("the client declared sampling".to_owned())
    }

    #[tool(description = "Asks the client's LLM to answer the prompt (sampling).")]
    async fn test_sampling(
        &self,
        Parameters(SamplingArgs { prompt }): Parameters<SamplingArgs>,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let request =
            CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], 100);
        let Some(answer) = input.sample("answer", request).await? else {
            return Ok(input.required().into());
        };
        Ok(done(format!("LLM response: {}", sampled_text(&answer))))
    }

    #[tool(description = "Asks the user for a username and an email (elicitation).")]
    async fn test_elicitation(
        &self,
        Parameters(ElicitationArgs { message }): Parameters<ElicitationArgs>,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {
                "username": { "type": "string", "description": "User's response" },
                "email": { "type": "string", "description": "User's email address" }
            },
            "required": ["username", "email"]
        });
        let Some(answer) = elicit(&mut input, "user", message, schema).await? else {
            return Ok(input.required().into());
        };
        Ok(done(format!("User response: {}", describe(&answer))))
    }

    #[tool(description = "Elicitation whose fields all have defaults (SEP-1034).")]
    async fn test_elicitation_sep1034_defaults(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": { "type": "string", "description": "User's name", "default": "John Doe" },
                "age": { "type": "integer", "description": "User's age", "default": 30 },
                "score": { "type": "number", "description": "User's score", "default": 95.5 },
                "status": {
                    "type": "string",
                    "description": "User's status",
                    "enum": ["active", "inactive", "pending"],
                    "default": "active"
                },
                "verified": { "type": "boolean", "description": "Whether the user is verified", "default": true }
            }
        });
        let message = "Please review these values (all have defaults)";
        let Some(answer) = elicit(&mut input, "values", message, schema).await? else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "Elicitation completed: {}",
            describe(&answer)
        )))
    }

    #[tool(description = "Elicitation with every kind of enum (SEP-1330).")]
    async fn test_elicitation_sep1330_enums(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let titled = |prefix: &str, titles: [&str; 3]| -> Value {
            titles
                .iter()
                .enumerate()
                .map(|(i, title)| json!({ "const": format!("{prefix}{}", i + 1), "title": title }))
                .collect()
        };
        let schema = json!({
            "type": "object",
            "properties": {
                "untitledSingle": { "type": "string", "enum": ["option1", "option2", "option3"] },
                "titledSingle": {
                    "type": "string",
                    "oneOf": titled("value", ["First Option", "Second Option", "Third Option"])
                },
                "legacyEnum": {
                    "type": "string",
                    "enum": ["opt1", "opt2", "opt3"],
                    "enumNames": ["Option One", "Option Two", "Option Three"]
                },
                "untitledMulti": {
                    "type": "array",
                    "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                },
                "titledMulti": {
                    "type": "array",
                    "items": { "anyOf": titled("value", ["First Choice", "Second Choice", "Third Choice"]) }
                }
            }
        });
        let Some(answer) =
            elicit(&mut input, "choices", "Please pick from each list", schema).await?
        else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "Elicitation completed: {}",
            describe(&answer)
        )))
    }

    #[tool(
        description = "Tool with JSON Schema 2020-12 features",
        input_schema = schema_2020_12(),
        annotations(read_only_hint = true)
    )]
    fn json_schema_2020_12_tool(&self) -> String {
        "JSON Schema 2020-12 tool executed".to_owned()
    }

    #[tool(
        description = "Asks the user for a username (elicitation) and returns; its response carries only the answer, never a request of the server's own (SEP-2575's diagnostic tool)."
    )]
    async fn test_streaming_elicitation(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = "What is your username?";
        let Some(answer) = elicit(&mut input, "username", message, one_field("username")).await?
        else {
            return Ok(input.required().into());
        };
        Ok(done(format!("username: {}", field(&answer, "username"))))
    }

    #[tool(
        description = "Asks the user's name (SEP-2322: an input-required result in 2026-07-28)."
    )]
    async fn test_input_required_result_elicitation(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(answer) = elicit(
            &mut input,
            "user_name",
            "What is your name?",
            one_field("name"),
        )
        .await?
        else {
            return Ok(input.required().into());
        };
        Ok(done(format!("Hello, {}!", field(&answer, "name"))))
    }

    #[tool(description = "Asks the client's model a question (SEP-2322).")]
    async fn test_input_required_result_sampling(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let question = CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text("What is the capital of France?")],
            100,
        );
        let Some(answer) = input.sample("capital_question", question).await? else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "The model answered: {}",
            sampled_text(&answer)
        )))
    }

    #[tool(description = "Asks the client for its roots (SEP-2322).")]
    async fn test_input_required_result_list_roots(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(roots) = input.roots("client_roots").await? else {
            return Ok(input.required().into());
        };
        let uris: Vec<&str> = roots.roots.iter().map(|root| root.uri.as_str()).collect();
        Ok(done(format!("The client's roots: {}", uris.join(", "))))
    }

    #[tool(
        description = "Asks for a confirmation and says state-ok when the call came back with the state this server sealed (SEP-2322)."
    )]
    async fn test_input_required_result_request_state(
        &self,
        input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        Self::confirm_with_state(input).await
    }

    #[tool(
        description = "As test_input_required_result_request_state; a changed requestState is refused with -32602 (SEP-2322)."
    )]
    async fn test_input_required_result_tampered_state(
        &self,
        input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        Self::confirm_with_state(input).await
    }

    #[tool(description = "Asks a form, the model and the roots at once (SEP-2322).")]
    async fn test_input_required_result_multiple_inputs(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = elicit(
            &mut input,
            "user_name",
            "What is your name?",
            one_field("name"),
        )
        .await?;
        let greeting = CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text("Generate a greeting")],
            50,
        );
        let greeting = input.sample("greeting", greeting).await?;
        let roots = input.roots("client_roots").await?;
        let (Some(name), Some(greeting), Some(roots)) = (name, greeting, roots) else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "{}, {}! ({} roots)",
            sampled_text(&greeting),
            field(&name, "name"),
            roots.roots.len()
        )))
    }

    #[tool(description = "Asks two questions, one round after the other (SEP-2322).")]
    async fn test_input_required_result_multi_round(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let message = "Step 1: What is your name?";
        let Some(name) = elicit(&mut input, "step1", message, one_field("name")).await? else {
            return Ok(input.required().into());
        };
        let message = "Step 2: What is your favorite color?";
        let Some(color) = elicit(&mut input, "step2", message, one_field("color")).await? else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "{} likes {}",
            field(&name, "name"),
            field(&color, "color")
        )))
    }

    #[tool(
        description = "Asks only what the client declared it can answer: a form with elicitation, the model with sampling (SEP-2322)."
    )]
    async fn test_input_required_result_capabilities(
        &self,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let mut answered = Vec::new();
        if input.can(ClientCapability::Elicitation) {
            let name = elicit(
                &mut input,
                "user_name",
                "What is your name?",
                one_field("name"),
            )
            .await?;
            answered.extend(name.map(|name| format!("name {}", field(&name, "name"))));
        }
        if input.can(ClientCapability::Sampling) {
            let question =
                CreateMessageRequestParams::new(vec![SamplingMessage::user_text("Say hello")], 50);
            let answer = input.sample("greeting", question).await?;
            answered.extend(answer.map(|answer| format!("model {}", sampled_text(&answer))));
        }
        if input.pending() {
            return Ok(input.required().into());
        }
        Ok(done(format!("Answered: {}", answered.join(", "))))
    }

    #[tool(
        description = "Announces that the tool list changed, to every listening client and session (SEP-2575's diagnostic hook)."
    )]
    async fn test_trigger_tool_change(&self) -> String {
        self.changes.tools_changed().await;
        "tools/list_changed sent".to_owned()
    }

    #[tool(
        description = "Announces that the prompt list changed, to every listening client and session (SEP-2575's diagnostic hook)."
    )]
    async fn test_trigger_prompt_change(&self) -> String {
        self.changes.prompts_changed().await;
        "prompts/list_changed sent".to_owned()
    }

    #[tool(
        description = "Announces that test://watched-resource changed, to the clients and sessions that follow it."
    )]
    async fn test_trigger_resource_update(&self) -> String {
        self.changes.resource_updated(WATCHED).await;
        "resources/updated sent".to_owned()
    }

    #[tool(
        description = "Echoes a value the client sends in the body and as an Mcp-Param-Value header (SEP-2243).",
        annotations(read_only_hint = true)
    )]
    fn test_custom_header(
        &self,
        Parameters(HeaderArgs { value }): Parameters<HeaderArgs>,
    ) -> String {
        format!("value: {value}")
    }

    #[tool(description = "Greets, at once (never a task; SEP-2663's sync fixture).")]
    fn greet(&self, Parameters(GreetArgs { name }): Parameters<GreetArgs>) -> String {
        format!("Hello, {name}!")
    }

    #[tool(
        description = "Works for `seconds`, as a task when the client declared the Tasks extension; a cancelled task ends cancelled (SEP-2663)."
    )]
    async fn slow_compute(
        &self,
        Parameters(ComputeArgs { seconds, label }): Parameters<ComputeArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let label = label.unwrap_or_else(|| "compute".to_owned());
        let wait = Duration::try_from_secs_f64(seconds).map_err(|_| {
            ErrorData::invalid_params(
                format!("seconds must be a non-negative number, not {seconds}"),
                None,
            )
        })?;
        let options = TaskOptions::default();
        self.tasks
            .run(&context, "slow_compute", options, move |task| async move {
                task.status(format!("computing {label}"));
                tokio::time::sleep(wait).await;
                Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "slow_compute({label}) done after {seconds}s"
                ))]))
            })
            .await
    }

    #[tool(
        description = "Asks for a label (an input-required round), then works on it as a task when the client declared the Tasks extension (SEP-2322 then SEP-2663)."
    )]
    async fn test_input_required_then_task(
        &self,
        mut input: Input,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(answer) = elicit(&mut input, "label", "Which label?", one_field("label")).await?
        else {
            return Ok(input.required().into());
        };
        let label = field(&answer, "label");
        self.tasks
            .run(
                &context,
                "test_input_required_then_task",
                TaskOptions::default(),
                move |task| async move {
                    task.status(format!("labelling {label}"));
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                        "labelled {label}"
                    ))]))
                },
            )
            .await
    }

    #[tool(
        description = "Runs only as a task and ends with a tool error (completed, isError) after a second (SEP-2663)."
    )]
    async fn failing_job(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let options = TaskOptions::default().required();
        self.tasks
            .run(&context, "failing_job", options, |_| async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok(CallToolResult::error(vec![ContentBlock::text(
                    "failing_job: this job always fails, on purpose",
                )]))
            })
            .await
    }

    #[tool(
        description = "Fails with a protocol error (a task ends failed, the error inlined) (SEP-2663)."
    )]
    async fn protocol_error_job(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.tasks
            .run(
                &context,
                "protocol_error_job",
                TaskOptions::default(),
                |_| async {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Err(ErrorData::internal_error(
                        "protocol_error_job: this job fails at the protocol level, on purpose",
                        None,
                    )
                    .into())
                },
            )
            .await
    }

    #[tool(
        description = "Runs only as a task, which asks the user to confirm (input_required until tasks/update answers) (SEP-2663)."
    )]
    async fn confirm_delete(
        &self,
        Parameters(DeleteArgs { filename }): Parameters<DeleteArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let filename = filename.unwrap_or_else(|| "file.txt".to_owned());
        let question = form(
            format!("Delete {filename}?"),
            json!({
                "type": "object",
                "properties": { "confirm": { "type": "boolean" } },
                "required": ["confirm"]
            }),
        )?;
        let options = TaskOptions::default().required();
        self.tasks
            .run(
                &context,
                "confirm_delete",
                options,
                move |task| async move {
                    let answer = task.elicit("confirm", question).await?;
                    let confirmed = answer
                        .content
                        .as_ref()
                        .and_then(|content| content.get("confirm"))
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                        "confirm_delete({filename}): confirmed = {confirmed}"
                    ))]))
                },
            )
            .await
    }

    #[tool(
        description = "Runs only as a task, which asks two questions at once; they may be answered one at a time (SEP-2663)."
    )]
    async fn multi_input(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let a = form("Provide value A", one_field("value"))?;
        let b = form("Provide value B", one_field("value"))?;
        let options = TaskOptions::default().required();
        self.tasks
            .run(&context, "multi_input", options, move |task| async move {
                let (a, b) = tokio::join!(task.elicit("input-a", a), task.elicit("input-b", b));
                let (a, b) = (a?, b?);
                Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "multi_input: a = {}, b = {}",
                    field(&a, "value"),
                    field(&b, "value")
                ))]))
            })
            .await
    }

    #[tool(
        description = "Asks the user's name (an input-required round), then runs as a task whose result names them (SEP-2663 composition)."
    )]
    async fn test_tool_with_task(
        &self,
        mut input: Input,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        mcp_core::tasks::require_extension(&context, "test_tool_with_task")?;
        let Some(answer) = elicit(
            &mut input,
            "user_name",
            "What is your name?",
            one_field("name"),
        )
        .await?
        else {
            return Ok(input.required().into());
        };
        let name = field(&answer, "name");
        let options = TaskOptions::default().required();
        self.tasks
            .run(
                &context,
                "test_tool_with_task",
                options,
                move |_| async move {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                        "Hello, {name}! (as a task)"
                    ))]))
                },
            )
            .await
    }

    #[tool(description = "Takes a moment, for tests of SSE stream resumption.")]
    async fn test_reconnection(&self) -> String {
        tokio::time::sleep(Duration::from_millis(100)).await;
        "Reconnection test completed".to_owned()
    }
}

// The prompt macro makes a public function per prompt, which cannot carry docs.
#[allow(missing_docs)]
#[prompt_router]
impl Everything {
    #[prompt(description = "A prompt without arguments.")]
    fn test_simple_prompt(&self) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            "This is a simple prompt for testing.",
        )]
    }

    #[prompt(description = "A prompt with two required arguments.")]
    fn test_prompt_with_arguments(
        &self,
        Parameters(TwoArgs { arg1, arg2 }): Parameters<TwoArgs>,
    ) -> Vec<PromptMessage> {
        vec![PromptMessage::new_text(
            Role::User,
            format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
        )]
    }

    #[prompt(description = "A prompt that embeds the given resource.")]
    fn test_prompt_with_embedded_resource(
        &self,
        Parameters(ResourceUriArg { resource_uri }): Parameters<ResourceUriArg>,
    ) -> Vec<PromptMessage> {
        vec![
            PromptMessage::new(
                Role::User,
                ContentBlock::resource(ResourceContents::text(
                    "Embedded resource content for testing.",
                    resource_uri,
                )),
            ),
            PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
        ]
    }

    #[prompt(description = "A prompt with an image.")]
    fn test_prompt_with_image(&self) -> Vec<PromptMessage> {
        vec![
            PromptMessage::new(Role::User, ContentBlock::image(PNG_BASE64, "image/png")),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ]
    }
}

impl Everything {
    /// Asks for a confirmation; says `state-ok` when the answer came back with this server's
    /// sealed state (which mcp-core has checked before the tool runs).
    async fn confirm_with_state(mut input: Input) -> Result<CallToolResponse, ErrorData> {
        let schema = json!({
            "type": "object",
            "properties": { "ok": { "type": "boolean" } },
            "required": ["ok"]
        });
        let Some(answer) = elicit(&mut input, "confirm", "Please confirm", schema).await? else {
            return Ok(input.required().into());
        };
        let state = if input.resumed() {
            "state-ok"
        } else {
            "no state"
        };
        Ok(done(format!("{state}: confirmed={}", field(&answer, "ok"))))
    }

    /// A log message to the client of `context`, if it may have one ([`mcp_core::tool::may_log`]).
    async fn log(&self, context: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        let session_level = *lock(&self.session.min_log_level);
        if !mcp_core::tool::may_log(context, session_level, level) {
            return;
        }
        let notification =
            LoggingMessageNotificationParam::new(level, Value::String(message.to_owned()))
                .with_logger("everything");
        if let Err(error) = context.peer.notify_logging_message(notification).await {
            tracing::warn!(%error, "could not send a log notification");
        }
    }

    fn resources() -> Vec<Resource> {
        vec![
            Resource::new("test://static-text", "static-text")
                .with_description("A static text resource")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_description("A static binary resource (a PNG)")
                .with_mime_type("image/png"),
            Resource::new(WATCHED, "watched-resource")
                .with_description("A resource clients can subscribe to")
                .with_mime_type("text/plain"),
        ]
    }
}

/// `test://template/{id}/data` → the id.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// The prompt that asks the user first (SEP-2322). rmcp's prompt router does not pass a prompt
/// its `inputResponses` and `requestState`, so it is served beside the router.
const ASKING_PROMPT: &str = "test_input_required_result_prompt";

#[tool_handler]
impl ServerHandler for Everything {
    /// The tools by name, but `test_simple_text` first: the suite's header scenarios call the
    /// first listed tool with no arguments from a client that declared nothing, which the Tasks
    /// fixtures (`confirm_delete`, first by name) refuse.
    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut tools = Self::tool_router().list_all();
        tools.sort_by_key(|tool| tool.name != "test_simple_text");
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_prompts(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut prompts = Self::prompt_router().list_all();
        prompts.push(Prompt::new(
            ASKING_PROMPT,
            Some("A prompt that asks the user for its context first (SEP-2322)."),
            None,
        ));
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name != ASKING_PROMPT {
            let prompt = PromptContext::new(self, request.name, request.arguments, context);
            return Self::prompt_router().get_prompt(prompt).await;
        }
        let mut input = Input::for_prompt(&mut request, context)?;
        let question = "What context should the prompt use?";
        let Some(answer) =
            elicit(&mut input, "user_context", question, one_field("context")).await?
        else {
            return Ok(input.required().into());
        };
        let text = format!(
            "Answer with this context in mind: {}",
            field(&answer, "context")
        );
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]).into())
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_logging()
                .enable_completions()
                .enable_prompts()
                .enable_resources()
                .enable_resources_subscribe()
                .enable_resources_list_changed()
                .enable_prompts_list_changed()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_tasks()
                .build(),
        )
        .with_server_info(Implementation::new(
            "mcp-everything",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("A fixture exposing every MCP feature the conformance suite tests.")
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *lock(&self.session.min_log_level) = Some(request.level);
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Prompt(prompt), "arg1" | "arg2")
                if prompt.name == "test_prompt_with_arguments" =>
            {
                &["paris", "park", "party", "test", "testing"]
            }
            (Reference::Resource(_), "id") => &["1", "2", "3", "123"],
            _ => &[],
        };
        let typed = request.argument.value.to_lowercase();
        let values: Vec<String> = candidates
            .iter()
            .filter(|candidate| candidate.starts_with(&typed))
            .map(|candidate| candidate.to_string())
            .collect();
        let completion =
            CompletionInfo::new(values).map_err(|error| ErrorData::internal_error(error, None))?;
        Ok(CompleteResult::new(completion))
    }

    async fn list_resources(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(Self::resources()))
    }

    async fn list_resource_templates(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new("test://template/{id}/data", "template-data")
            .with_description("Data for any id")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => ResourceContents::text(STATIC_TEXT, uri),
            "test://static-binary" => {
                ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png")
            }
            WATCHED => ResourceContents::text("Watched resource content.", uri),
            _ => match template_id(uri) {
                Some(id) => ResourceContents::text(
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                        .to_string(),
                    uri,
                )
                .with_mime_type("application/json"),
                None => {
                    return Err(ErrorData::resource_not_found(
                        format!(
                            "no resource {uri:?}; call resources/list and resources/templates/list"
                        ),
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.member(&context.peer).subscribe(request.uri)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.member(&context.peer).unsubscribe(&request.uri);
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.member(&context.peer);
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(self.changes.accept(requested))
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        self.changes.listen(context).await
    }

    // tasks/get, tasks/update and tasks/cancel.
    mcp_core::task_methods!(tasks);
}
