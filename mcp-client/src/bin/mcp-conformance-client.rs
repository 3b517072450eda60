//! The client the official conformance suite drives: `mcp-conformance-client <server-url>`,
//! with `MCP_CONFORMANCE_SCENARIO` set by the suite. Built on the `mcp` client's library: it
//! connects over Streamable HTTP, lists the tools and calls each with arguments made from its
//! input schema, accepting elicitations with their defaults. Exits non-zero on any failure.
use std::process::ExitCode;

use mcp_client::handler::{Elicitation, Handler};
use rmcp::{
    model::CallToolRequestParams,
    service::{ClientLifecycleMode, serve_client_with_lifecycle},
    transport::StreamableHttpClientTransport,
};
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

async fn run(url: &str) -> Result<(), String> {
    let handler = Handler::plain(Elicitation::AcceptDefaults);
    let transport = StreamableHttpClientTransport::from_uri(url.to_owned());
    let client = serve_client_with_lifecycle(handler, transport, ClientLifecycleMode::Initialize)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    let tools = client
        .list_all_tools()
        .await
        .map_err(|e| format!("tools/list: {e}"))?;
    for tool in tools {
        let schema = Value::Object((*tool.input_schema).clone());
        let request =
            CallToolRequestParams::new(tool.name.to_string()).with_arguments(arguments(&schema));
        let result = client
            .call_tool(request)
            .await
            .map_err(|e| format!("tools/call {}: {e}", tool.name))?;
        if result.is_error == Some(true) {
            return Err(format!("tools/call {} answered an error", tool.name));
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
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mcp-conformance-client ({scenario}): {error}");
            ExitCode::FAILURE
        }
    }
}
