//! How `mcp` answers what servers ask of it.
//!
//! For now: elicitation (`elicitation/create`). A form can be accepted with the defaults its
//! schema gives (what the official conformance client scenario expects and what `--yes` will
//! mean for scripts) or declined; asking the user in the terminal lands with the agent.

use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, ElicitRequestParams, ElicitResult, ElicitationAction,
        Implementation, ProtocolVersion,
    },
    service::RequestContext,
};
use serde_json::{Map, Value};

/// What to do with a server's elicitation request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elicitation {
    /// Decline every request.
    Decline,
    /// Accept a form with the defaults of its schema (fields without one are left out).
    AcceptDefaults,
}

/// The client side of a connection.
#[derive(Debug, Clone)]
pub struct Handler {
    pub elicitation: Elicitation,
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
        let capabilities = ClientCapabilities::builder().enable_elicitation().build();
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
        match (self.elicitation, request) {
            (
                Elicitation::AcceptDefaults,
                ElicitRequestParams::FormElicitationParams {
                    requested_schema, ..
                },
            ) => {
                let schema = serde_json::to_value(&requested_schema)
                    .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
                Ok(ElicitResult::new(ElicitationAction::Accept)
                    .with_content(Value::Object(schema_defaults(&schema))))
            }
            _ => Ok(ElicitResult::new(ElicitationAction::Decline)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
