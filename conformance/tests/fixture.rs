//! The fixture's tools as the official suite's scenarios expect them, through the same `serve`
//! path every server takes (`Guarded` rewrites listed schemas; it must not touch these).

use mcp_conformance::everything::Everything;
use mcp_core::testing::{Era, connect_with};
use serde_json::json;

/// The suite's own fixture for `json-schema-2020-12` (conformance
/// `src/scenarios/server/json-schema-2020-12.ts`, `JSON_SCHEMA_2020_12_FIXTURE`, at 0.2.0-alpha.11):
/// SEP-1613's `$schema`, `$defs` and `additionalProperties`, and SEP-2106's `$anchor`,
/// `allOf`/`anyOf` and `if`/`then`/`else`.
fn suite_fixture() -> serde_json::Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "addressDef",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
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
        "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
        "then": { "required": ["phone"] },
        "else": { "required": ["email"] },
        "additionalProperties": false
    })
}

#[tokio::test]
async fn a_json_schema_2020_12_input_schema_is_listed_exactly_as_written_in_both_eras() {
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_with(Everything::default(), era).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        let tool = tools
            .iter()
            .find(|t| t.name == "json_schema_2020_12_tool")
            .expect("the fixture lists json_schema_2020_12_tool");
        assert_eq!(
            serde_json::Value::Object((*tool.input_schema).clone()),
            suite_fixture(),
            "{era:?}"
        );
    }
}

/// SEP-2575: a tool that needs a client capability the client did not declare is refused with
/// -32021, naming the capability as a `ClientCapabilities` object, in either era.
#[tokio::test]
async fn a_tool_needing_an_undeclared_capability_is_refused_with_32021() {
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_with(Everything::default(), era).await.unwrap();
        let error = client
            .call_tool(mcp_core::testing::tool_call(
                "test_missing_capability",
                json!({}),
            ))
            .await
            .expect_err("the client declared no sampling");
        let rmcp::ServiceError::McpError(error) = error else {
            panic!("{era:?}: not a protocol error: {error}");
        };
        assert_eq!(error.code.0, -32021, "{era:?}: {error:?}");
        assert_eq!(
            error.data,
            Some(json!({ "requiredCapabilities": { "sampling": {} } })),
            "{era:?}"
        );
    }
}

/// The same tool runs for a client that declared sampling.
#[tokio::test]
async fn a_tool_needing_a_declared_capability_runs() {
    for era in [Era::Handshake, Era::Stateless] {
        let mut config = rmcp::model::ClientConfig::default();
        config.capabilities.sampling = Some(Default::default());
        let client = mcp_core::testing::connect_client(Everything::default(), config, era)
            .await
            .unwrap();
        let result = client
            .call_tool(mcp_core::testing::tool_call(
                "test_missing_capability",
                json!({}),
            ))
            .await
            .unwrap();
        assert_eq!(
            mcp_core::testing::text(&result),
            "the client declared sampling",
            "{era:?}"
        );
    }
}

/// Keeps every log message the server sends.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

impl rmcp::ClientHandler for Logs {
    #[allow(deprecated)]
    async fn on_logging_message(
        &self,
        message: rmcp::model::LoggingMessageNotificationParam,
        _: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.lock().unwrap().push(message.data);
    }
}

/// SEP-2575: in the 2026-07-28 revision a server logs to a request only when its `_meta` asks
/// for a level; in the handshake era a session that set no level hears everything.
#[tokio::test]
#[allow(deprecated)]
async fn log_messages_go_only_where_asked_for() {
    let call = |level: Option<rmcp::model::LoggingLevel>| {
        let mut params = mcp_core::testing::tool_call("test_logging_tool", json!({}));
        if let Some(level) = level {
            let mut meta = rmcp::model::RequestMetaObject::default();
            meta.set_log_level(level);
            params.meta = Some(meta);
        }
        params
    };
    // rmcp hands each notification to the handler in a task of its own, so a message may land
    // after the answer behind it: wait for the ones expected, then make sure no others came.
    let settled = |logs: Logs, count: usize| async move {
        for _ in 0..100 {
            if logs.0.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        logs.0.lock().unwrap().clone()
    };
    let ran = json!("test_logging_tool ran");

    let logs = Logs::default();
    let client =
        mcp_core::testing::connect_client(Everything::default(), logs.clone(), Era::Stateless)
            .await
            .unwrap();
    // No level asked for, then debug (logged), then error (info is below it), then debug again.
    for level in [
        None,
        Some(rmcp::model::LoggingLevel::Debug),
        Some(rmcp::model::LoggingLevel::Error),
        Some(rmcp::model::LoggingLevel::Debug),
    ] {
        client.call_tool(call(level)).await.unwrap();
    }
    assert_eq!(settled(logs, 2).await, [ran.clone(), ran.clone()]);

    let logs = Logs::default();
    let client =
        mcp_core::testing::connect_client(Everything::default(), logs.clone(), Era::Handshake)
            .await
            .unwrap();
    client.call_tool(call(None)).await.unwrap();
    assert_eq!(settled(logs, 1).await, [ran]);
}

/// Hears list changes and resource updates in the handshake era.
#[derive(Clone, Default)]
struct Heard(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl rmcp::ClientHandler for Heard {
    async fn on_tool_list_changed(&self, _: rmcp::service::NotificationContext<rmcp::RoleClient>) {
        self.0.lock().unwrap().push("tools".to_owned());
    }

    async fn on_resource_updated(
        &self,
        update: rmcp::model::ResourceUpdatedNotificationParam,
        _: rmcp::service::NotificationContext<rmcp::RoleClient>,
    ) {
        self.0.lock().unwrap().push(update.uri);
    }
}

impl Heard {
    async fn settled(&self, count: usize) -> Vec<String> {
        for _ in 0..100 {
            if self.0.lock().unwrap().len() >= count {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.0.lock().unwrap().clone()
    }
}

async fn handshake_client(
    url: &str,
    heard: Heard,
) -> rmcp::service::RunningService<rmcp::RoleClient, Heard> {
    use rmcp::ServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
    heard.serve(transport).await.unwrap()
}

/// A change announced by one request reaches, over real HTTP, every 2026-07-28 listen stream
/// whose filter asks for it (tagged with its subscription id) and no other, and every
/// handshake-era session (resource updates only to those that subscribed); a stream that ended
/// hears nothing more.
#[tokio::test]
#[allow(deprecated)] // resources/subscribe, which the handshake era still has
async fn changes_reach_listeners_and_sessions_by_their_filters() {
    use mcp_core::{HttpServer, ServeArgs, Transport, testing::connect_http};
    use rmcp::model::{GetMeta, ServerNotification, SubscriptionFilter};

    let server = HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let url = server.url(mcp_core::MCP_PATH);
    let listener = connect_http(&url, Era::Stateless, None).await.unwrap();
    let mut tools = listener
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .unwrap();
    let mut prompts = listener
        .listen(SubscriptionFilter::builder().prompts_list_changed().build())
        .await
        .unwrap();
    assert_eq!(tools.acknowledged().tools_list_changed, Some(true));

    let watcher = Heard::default();
    let watching = handshake_client(&url, watcher.clone()).await;
    watching
        .subscribe(rmcp::model::SubscribeRequestParams::new(
            "test://watched-resource",
        ))
        .await
        .unwrap();
    let bystander = Heard::default();
    let _bystanding = handshake_client(&url, bystander.clone()).await;

    let caller = connect_http(&url, Era::Stateless, None).await.unwrap();
    for tool in ["test_trigger_tool_change", "test_trigger_resource_update"] {
        caller
            .call_tool(mcp_core::testing::tool_call(tool, json!({})))
            .await
            .unwrap();
    }

    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), tools.next())
        .await
        .expect("the tools listener hears the change")
        .unwrap()
        .expect("a notification, not the end of the stream");
    assert!(
        matches!(heard, ServerNotification::ToolListChangedNotification(_)),
        "{heard:?}"
    );
    assert_eq!(
        heard.get_meta().subscription_id().as_ref(),
        Some(tools.id())
    );
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(300), prompts.next()).await;
    assert!(
        nothing.is_err(),
        "the prompts-only listener heard {nothing:?}"
    );

    assert_eq!(
        watcher.settled(2).await,
        ["tools", "test://watched-resource"],
        "the subscribed session hears both"
    );
    assert_eq!(
        bystander.settled(1).await,
        ["tools"],
        "only the list change"
    );

    drop(tools);
    caller
        .call_tool(mcp_core::testing::tool_call(
            "test_trigger_tool_change",
            json!({}),
        ))
        .await
        .unwrap();
    assert_eq!(watcher.settled(3).await.len(), 3, "the sessions still hear");
}

/// SEP-2243 through mcp-core's HTTP listener: a parameter a tool's schema marks `x-mcp-header`
/// is listed with the mark, and a call whose `Mcp-Param-*` header disagrees with its body, or
/// is missing, or is broken Base64, is refused with -32020; a matching one (plain or Base64) runs.
#[tokio::test]
async fn custom_parameter_headers_must_match_the_body() {
    use mcp_core::{HttpServer, ServeArgs, Transport};

    let server = HttpServer::start(
        Everything::sessions(),
        &ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Transport::Http]),
    )
    .await
    .unwrap();
    let url = server.url(mcp_core::MCP_PATH);
    let client = mcp_core::testing::connect_http(&url, Era::Stateless, None)
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let tool = tools
        .iter()
        .find(|t| t.name == "test_custom_header")
        .unwrap();
    assert_eq!(
        tool.input_schema["properties"]["value"]["x-mcp-header"],
        "Value"
    );

    let call = |header: Option<&'static str>| {
        let url = url.clone();
        async move {
            let mut request = reqwest::Client::new()
                .post(&url)
                .header("Accept", "application/json, text/event-stream")
                .header("MCP-Protocol-Version", "2026-07-28")
                .header("Mcp-Method", "tools/call")
                .header("Mcp-Name", "test_custom_header");
            if let Some(header) = header {
                request = request.header("Mcp-Param-Value", header);
            }
            let body = json!({
                "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                "params": {
                    "name": "test_custom_header",
                    "arguments": { "value": "Hello" },
                    "_meta": {
                        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
                        "io.modelcontextprotocol/clientCapabilities": {}
                    }
                }
            });
            let response = request.json(&body).send().await.unwrap();
            let text = response.text().await.unwrap();
            // A JSON body, or the one event of an SSE answer.
            let json = text
                .lines()
                .find_map(|line| line.strip_prefix("data:"))
                .unwrap_or(&text)
                .trim()
                .to_owned();
            serde_json::from_str::<serde_json::Value>(&json).unwrap()
        }
    };
    for good in ["Hello", "=?base64?SGVsbG8=?="] {
        let answer = call(Some(good)).await;
        assert_eq!(
            answer["result"]["content"][0]["text"], "value: Hello",
            "{good}: {answer}"
        );
    }
    for bad in [
        Some("Goodbye"),
        None,
        Some("=?base64?SGVsbG8?="),
        Some("=?base64?SGVs!!!bG8=?="),
    ] {
        let answer = call(bad).await;
        assert_eq!(answer["error"]["code"], -32020, "{bad:?}: {answer}");
    }
}
