//! The in-process harness, used the way a server author would use it.

use mcp_core::{
    OutputCap, ToolError,
    testing::{Era, connect, connect_with, text},
};
use rmcp::{
    ServerHandler, handler::server::wrapper::Parameters, schemars, tool, tool_handler, tool_router,
};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct ReadArgs {
    /// Which line to start from.
    cursor: Option<String>,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct DivideArgs {
    a: f64,
    b: f64,
}

#[derive(Clone)]
struct Library;

#[tool_router]
impl Library {
    #[tool(
        description = "Reads a long catalogue, a page at a time.",
        annotations(read_only_hint = true)
    )]
    fn catalogue(
        &self,
        Parameters(ReadArgs { cursor }): Parameters<ReadArgs>,
    ) -> Result<String, ToolError> {
        let all: String = (1..=1000).map(|i| format!("book {i}\n")).collect();
        Ok(OutputCap::new(500).page(&all, cursor.as_deref())?.text)
    }

    #[tool(description = "Divides a by b.")]
    fn divide(
        &self,
        Parameters(DivideArgs { a, b }): Parameters<DivideArgs>,
    ) -> Result<String, ToolError> {
        if b == 0.0 {
            return Err(ToolError::new("cannot divide by zero").with_hint("pass a non-zero b"));
        }
        Ok((a / b).to_string())
    }
}

#[tool_handler(name = "library")]
impl ServerHandler for Library {}

#[tokio::test]
async fn both_eras_list_and_call_through_the_protocol() {
    for era in [Era::Handshake, Era::Stateless] {
        let client = connect_with(Library, era).await.unwrap();
        let tools = client.list_all_tools().await.unwrap();
        let catalogue = tools.iter().find(|t| t.name == "catalogue").unwrap();
        assert_eq!(
            catalogue.annotations.as_ref().unwrap().read_only_hint,
            Some(true)
        );
        assert!(
            catalogue
                .input_schema
                .get("properties")
                .unwrap()
                .get("cursor")
                .is_some()
        );
        // Listed schemas are portable whoever wrote the server: schemars' `"format": "double"`
        // for an f64 (which the TypeScript SDK's validator warns about) is gone.
        let divide = tools.iter().find(|t| t.name == "divide").unwrap();
        let a = &divide.input_schema["properties"]["a"];
        assert_eq!(a["type"], "number", "{a}");
        assert!(a.get("format").is_none(), "{a}");
        let result = client
            .call("divide", serde_json::json!({"a": 1, "b": 4}))
            .await
            .unwrap();
        assert_eq!(text(&result), "0.25", "{era:?}");
        client.close().await;
    }
}

#[tokio::test]
async fn tool_errors_are_results_the_model_can_read() {
    let client = connect(Library).await.unwrap();
    let result = client
        .call("divide", serde_json::json!({"a": 1, "b": 0}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert_eq!(
        text(&result),
        "cannot divide by zero. Hint: pass a non-zero b"
    );

    let result = client
        .call("divide", serde_json::json!({"a": "one", "b": 2}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("invalid type"), "{}", text(&result));

    let missing = client.call("no_such_tool", serde_json::json!({})).await;
    assert!(missing.is_err());
}

#[tokio::test]
async fn capped_output_pages_through_the_protocol() {
    let client = connect(Library).await.unwrap();
    let mut cursor: Option<String> = None;
    let mut books = Vec::new();
    loop {
        let arguments = match &cursor {
            Some(cursor) => serde_json::json!({ "cursor": cursor }),
            None => serde_json::json!({}),
        };
        let page = text(&client.call("catalogue", arguments).await.unwrap());
        let (body, notice) = match page.split_once("[truncated") {
            Some((body, notice)) => (body.to_owned(), Some(notice.to_owned())),
            None => (page.clone(), None),
        };
        books.extend(body.lines().map(str::to_owned));
        match notice {
            Some(notice) => {
                let next = notice.split('"').nth(1).unwrap().to_owned();
                cursor = Some(next);
            }
            None => break,
        }
    }
    let expected: Vec<String> = (1..=1000).map(|i| format!("book {i}")).collect();
    assert_eq!(books, expected);

    let bad = client
        .call("catalogue", serde_json::json!({"cursor": "banana"}))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).contains("invalid cursor"));
}

#[derive(Clone)]
struct Fragile;

#[tool_router]
impl Fragile {
    #[tool(description = "Panics: a bug in a tool.")]
    fn explode(&self) -> String {
        let empty: Vec<u8> = Vec::new();
        empty[1].to_string()
    }

    #[tool(description = "Works.")]
    fn fine(&self) -> String {
        "fine".to_owned()
    }
}

#[tool_handler(name = "fragile")]
impl ServerHandler for Fragile {}

#[tokio::test]
async fn a_panicking_tool_gets_an_error_answer_instead_of_a_hang() {
    let client = connect(Fragile).await.unwrap();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.call("explode", serde_json::json!({})),
    )
    .await
    .expect("a panicking tool must still be answered");
    let error = answer.unwrap_err().to_string();
    assert!(error.contains("tools/call explode"), "{error}");
    let fine = client.call("fine", serde_json::json!({})).await.unwrap();
    assert_eq!(text(&fine), "fine");
}
