//! `mcp_core::input`: one tool body that asks the user, in both eras, and the requestState that
//! carries its answers between rounds, attacked.

use mcp_core::{
    input::{Input, form},
    testing::{Era, connect_client, connect_with, text, tool_call},
};
use rmcp::{
    ClientHandler, ErrorData, RoleClient, ServerHandler,
    handler::server::wrapper::Parameters,
    model::{
        CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
        ElicitRequestParams, ElicitResult, ElicitationAction, InputRequiredResult, InputResponses,
    },
    schemars,
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde_json::{Value, json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DeleteArgs {
    /// The file to delete.
    path: String,
}

fn one_field(name: &str) -> Value {
    json!({ "type": "object", "properties": { name: { "type": "string" } }, "required": [name] })
}

fn field(answer: &ElicitResult, name: &str) -> String {
    answer
        .content
        .as_ref()
        .and_then(|c| c[name].as_str())
        .unwrap_or_default()
        .to_owned()
}

fn done(text: String) -> CallToolResponse {
    CallToolResult::success(vec![ContentBlock::text(text)]).into()
}

#[derive(Clone)]
struct Files;

#[tool_router]
impl Files {
    #[tool(description = "Deletes a file once the user types its name again.")]
    async fn delete(
        &self,
        Parameters(DeleteArgs { path }): Parameters<DeleteArgs>,
        mut input: Input,
    ) -> Result<CallToolResponse, ErrorData> {
        let question = form(format!("Type {path} to delete it"), one_field("name"))?;
        let Some(answer) = input.elicit("confirm", question).await? else {
            return Ok(input.required().into());
        };
        let confirmed = field(&answer, "name") == path;
        Ok(done(format!("deleted {path}: {confirmed}")))
    }

    #[tool(description = "Asks a name, then a colour.")]
    async fn survey(&self, mut input: Input) -> Result<CallToolResponse, ErrorData> {
        let Some(name) = input
            .elicit("name", form("Name?", one_field("name"))?)
            .await?
        else {
            return Ok(input.required().into());
        };
        let Some(colour) = input
            .elicit("colour", form("Colour?", one_field("colour"))?)
            .await?
        else {
            return Ok(input.required().into());
        };
        Ok(done(format!(
            "{} likes {}",
            field(&name, "name"),
            field(&colour, "colour")
        )))
    }
}

#[tool_handler(name = "files")]
impl ServerHandler for Files {}

/// A person at the client: answers every form's one field with `name`, or `alice`.
#[derive(Clone)]
struct Person;

impl ClientHandler for Person {
    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        let content = if message.starts_with("Type ") {
            let path = message
                .trim_start_matches("Type ")
                .trim_end_matches(" to delete it");
            json!({ "name": path })
        } else if message == "Colour?" {
            json!({ "colour": "green" })
        } else {
            json!({ "name": "alice" })
        };
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(content))
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.capabilities = ClientCapabilities::builder().enable_elicitation().build();
        config
    }
}

/// The same body asks over the session in the handshake era and with input-required rounds in
/// 2026-07-28 (rmcp's client drives those rounds through the same handler).
#[tokio::test]
async fn one_tool_body_asks_the_user_in_both_eras() {
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_client(Files, Person, era).await.unwrap();
        let deleted = client
            .call_tool(tool_call("delete", json!({ "path": "a.txt" })))
            .await
            .unwrap();
        assert_eq!(text(&deleted), "deleted a.txt: true", "{era:?}");
        let survey = client
            .call_tool(tool_call("survey", json!({})))
            .await
            .unwrap();
        assert_eq!(text(&survey), "alice likes green", "{era:?}");
    }
}

/// A client that did not declare elicitation is refused with -32021 before anything is asked.
#[tokio::test]
async fn asking_a_client_without_the_capability_is_refused_with_32021() {
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_with(Files, era).await.unwrap();
        let error = client
            .call_tool(tool_call("delete", json!({ "path": "a.txt" })))
            .await
            .expect_err("no elicitation declared");
        let rmcp::ServiceError::McpError(error) = error else {
            panic!("{era:?}: {error}");
        };
        assert_eq!(error.code.0, -32021, "{era:?}: {error:?}");
    }
}

async fn once(
    client: &mcp_core::testing::TestClient<Person>,
    arguments: Value,
    responses: Option<Value>,
    state: Option<&str>,
) -> Result<CallToolResponse, ErrorData> {
    let mut call = tool_call("delete", arguments);
    if let Some(responses) = responses {
        let responses: InputResponses = serde_json::from_value(responses).unwrap();
        call = call.with_input_responses(responses);
    }
    call.request_state = state.map(str::to_owned);
    match client.call_tool_once(call).await {
        Ok(response) => Ok(response),
        Err(rmcp::ServiceError::McpError(error)) => Err(error),
        Err(error) => panic!("not a protocol error: {error}"),
    }
}

fn input_required(response: CallToolResponse) -> InputRequiredResult {
    match response {
        CallToolResponse::InputRequired(result) => result,
        other => panic!("expected input_required, got {other:?}"),
    }
}

fn completed(response: CallToolResponse) -> String {
    match response {
        CallToolResponse::Complete(result) => text(&result),
        other => panic!("expected a complete result, got {other:?}"),
    }
}

/// The attacks on requestState: forged, changed, cut short, moved to another call's arguments,
/// and replayed. Each is a -32602 and the tool does not run; the honest round still completes,
/// once.
#[tokio::test]
async fn request_state_is_sealed_bound_to_its_call_and_used_once() {
    let client = connect_client(Files, Person, Era::Stateless).await.unwrap();
    let a = json!({ "path": "a.txt" });
    let first = input_required(once(&client, a.clone(), None, None).await.unwrap());
    let state = first.request_state.clone().expect("a state in every round");
    assert!(first.input_requests.unwrap().contains_key("confirm"));
    assert!(
        !state.contains("answers"),
        "the state is sealed, not the handler's plain text: {state}"
    );
    let answer = Some(json!({ "confirm": { "action": "accept", "content": { "name": "a.txt" } } }));

    let forged = r#"{"answers":{"confirm":{"action":"accept","content":{"name":"a.txt"}}}}"#;
    let mut changed = state.clone();
    changed.insert(changed.len() / 2, 'A');
    for (what, arguments, bad) in [
        ("forged", a.clone(), forged.to_owned()),
        ("changed", a.clone(), changed),
        ("cut short", a.clone(), state[..state.len() - 4].to_owned()),
        ("another call's", json!({ "path": "b.txt" }), state.clone()),
    ] {
        let error = once(&client, arguments, answer.clone(), Some(&bad))
            .await
            .expect_err(what);
        assert_eq!(error.code.0, -32602, "{what}: {error:?}");
        assert!(error.message.contains("requestState"), "{what}: {error:?}");
    }

    let done = once(&client, a.clone(), answer.clone(), Some(&state))
        .await
        .unwrap();
    assert_eq!(completed(done), "deleted a.txt: true");
    let replayed = once(&client, a, answer, Some(&state))
        .await
        .expect_err("a replay");
    assert_eq!(replayed.code.0, -32602);
    assert!(replayed.message.contains("already used"), "{replayed:?}");
}

/// Answers of earlier rounds ride in the state: the third round sends only the second answer.
/// An answer of the wrong shape is asked again, not taken.
#[tokio::test]
async fn earlier_answers_ride_in_the_state_and_bad_answers_are_asked_again() {
    let client = connect_client(Files, Person, Era::Stateless).await.unwrap();
    let call = |responses: Option<Value>, state: Option<String>| {
        let client = &client;
        async move {
            let mut call = tool_call("survey", json!({}));
            if let Some(responses) = responses {
                call = call.with_input_responses(serde_json::from_value(responses).unwrap());
            }
            call.request_state = state;
            client.call_tool_once(call).await.unwrap()
        }
    };
    let first = input_required(call(None, None).await);
    let bad = input_required(call(Some(json!({ "name": 12345 })), first.request_state).await);
    assert!(
        bad.input_requests.unwrap().contains_key("name"),
        "asked again"
    );
    let accept =
        |field: &str, value: &str| json!({ "action": "accept", "content": { field: value } });
    let second = input_required(
        call(
            Some(json!({ "name": accept("name", "bob") })),
            bad.request_state,
        )
        .await,
    );
    let asked: Vec<_> = second.input_requests.unwrap().into_keys().collect();
    assert_eq!(asked, ["colour"]);
    let third = call(
        Some(json!({ "colour": accept("colour", "red") })),
        second.request_state,
    )
    .await;
    assert_eq!(completed(third), "bob likes red");
}
