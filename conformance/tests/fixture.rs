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
