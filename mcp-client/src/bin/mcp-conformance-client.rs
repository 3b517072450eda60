//! The client the official conformance suite drives: `mcp-conformance-client <server-url>`,
//! with `MCP_CONFORMANCE_SCENARIO` set by the suite. Built on the `mcp` client's library: it
//! connects over Streamable HTTP, lists the tools and calls each with arguments made from its
//! input schema, accepting elicitations with their defaults. Exits non-zero on any failure.
//!
//! OAuth is `mcp`'s own: the context's `client_id`/`client_secret` are the entry's
//! pre-registered client (as a user would write them in `"oauth"`), a `client-credentials`
//! scenario asks for that grant, and the approval is [`UserAgent::Direct`] (the suite's
//! authorization server approves at once). Tokens go to a token file of this run's own.
use std::process::ExitCode;

use mcp_client::{
    config::{Server, Transport, UrlKind},
    connect::{ConnectOptions, Era, connect},
    handler::{Elicitation, Handler},
    oauth::{AuthOptions, Grant, OAuthConfig, TokenFile, UserAgent},
};
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value};

/// Arguments for a tool from its input schema: each required property (all, if none is
/// required) gets its default or a plain value of its type.
fn arguments(schema: &Value) -> Map<String, Value> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Map::new();
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    properties
        .iter()
        .filter(|(name, _)| required.is_empty() || required.contains(&name.as_str()))
        .map(|(name, property)| {
            let value = property.get("default").cloned().unwrap_or_else(|| {
                match property.get("type").and_then(Value::as_str) {
                    Some("number" | "integer") => Value::from(2),
                    Some("boolean") => Value::Bool(true),
                    Some("array") => Value::Array(Vec::new()),
                    Some("object") => Value::Object(Map::new()),
                    _ => Value::from("test"),
                }
            });
            (name.clone(), value)
        })
        .collect()
}

/// The suite's `MCP_CONFORMANCE_CONTEXT`, when it sets one.
fn context() -> Option<Value> {
    serde_json::from_str(&std::env::var("MCP_CONFORMANCE_CONTEXT").ok()?).ok()
}

/// The server entry's `"oauth"`, as a user would write it for what the scenario sets up.
fn oauth_config(scenario: &str) -> OAuthConfig {
    let context = context().unwrap_or_default();
    let text = |key: &str| context.get(key).and_then(Value::as_str).map(str::to_owned);
    OAuthConfig {
        client_id: text("client_id"),
        client_secret: text("client_secret"),
        // The suite's client ID metadata document: the URL its authorization server takes
        // (ours is `mcp_client::oauth::CLIENT_METADATA_URL`).
        client_metadata_url: Some("https://conformance-test.local/client-metadata.json".into()),
        grant: if scenario.contains("client-credentials") {
            Grant::ClientCredentials
        } else {
            Grant::AuthorizationCode
        },
        ..OAuthConfig::default()
    }
}

/// What the suite's `MCP_CONFORMANCE_CONTEXT` asks to call, when it does.
fn context_calls() -> Option<Vec<(String, Map<String, Value>)>> {
    let context = context()?;
    let calls = context.get("toolCalls")?.as_array()?;
    Some(
        calls
            .iter()
            .filter_map(|call| {
                let name = call.get("name")?.as_str()?.to_owned();
                let arguments = call.get("arguments")?.as_object()?.clone();
                Some((name, arguments))
            })
            .collect(),
    )
}

async fn run(url: &str, scenario: &str) -> Result<(), String> {
    let server = Server {
        name: "conformance".to_owned(),
        transport: Transport::Url {
            url: url.to_owned(),
            headers: Default::default(),
            kind: UrlKind::Http,
            oauth: oauth_config(scenario),
        },
        source: std::path::PathBuf::from("(the suite)"),
        tools: Default::default(),
    };
    // The revision the suite runs (its context): the handshake for 2025-11-25 and older, the
    // `mcp` default (probe 2026-07-28, fall back) otherwise.
    let era = match std::env::var("MCP_CONFORMANCE_PROTOCOL_VERSION") {
        Ok(version) if version.as_str() < "2026" => Era::Handshake,
        _ => Era::Auto,
    };
    let tokens = tempfile::tempdir().map_err(|e| format!("a token directory: {e}"))?;
    let options = ConnectOptions {
        era,
        handler: Handler::plain(Elicitation::AcceptDefaults),
        auth: AuthOptions {
            agent: UserAgent::Direct,
            store: TokenFile::new(tokens.path().join("credentials.json")),
            browser: None,
        },
        ..ConnectOptions::default()
    };
    let client = connect(&server, &options)
        .await
        .map_err(|e| e.to_string())?
        .client;
    let tools = client
        .list_all_tools()
        .await
        .map_err(|e| format!("tools/list: {e}"))?;
    // The calls the suite's context names (`toolCalls`), else each tool with arguments from
    // its schema.
    let calls: Vec<(String, Map<String, Value>)> = match context_calls() {
        Some(calls) => calls,
        None => tools
            .iter()
            .map(|tool| {
                let schema = Value::Object((*tool.input_schema).clone());
                (tool.name.to_string(), arguments(&schema))
            })
            .collect(),
    };
    for (name, arguments) in calls {
        let request = CallToolRequestParams::new(name.clone()).with_arguments(arguments);
        let result = match mcp_client::agent::answer(&client, request).await {
            Ok(rmcp::model::CallToolResponse::Complete(result)) => result,
            Ok(_) => {
                return Err(format!(
                    "tools/call {name}: an answer this driver cannot use"
                ));
            }
            // A server without tools/call (a scenario that only lists its tools): nothing to
            // call, not a failure of the client.
            Err(rmcp::ServiceError::McpError(error))
                if error.code == rmcp::model::ErrorCode::METHOD_NOT_FOUND =>
            {
                eprintln!("tools/call {name}: the server has no tools/call ({error})");
                break;
            }
            Err(e) => return Err(format!("tools/call {name}: {e}")),
        };
        if result.is_error == Some(true) {
            return Err(format!("tools/call {name} answered an error"));
        }
    }
    let _ = client.cancel().await;
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    mcp_core::init_logging_with("warn,rmcp=off");
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: mcp-conformance-client <server-url>");
        return ExitCode::from(2);
    };
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    match run(&url, &scenario).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-conformance-client ({scenario}): {error}");
            ExitCode::FAILURE
        }
    }
}
