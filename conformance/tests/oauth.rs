//! mcp-core's OAuth resource server against a real authorization server: `oidc-provider`
//! (npm, a certified OpenID provider, `peers/node/oidc.mjs`) issues the tokens, and
//! `mcp-everything --auth-issuer …` takes or refuses them.

use std::{path::PathBuf, time::Duration};

use mcp_conformance::{peers, process::HttpProcess};
use mcp_core::testing::{Era, connect_http};
use serde_json::{Value, json};

const EVERYTHING: &str = env!("CARGO_BIN_EXE_mcp-everything");

/// The provider, running; killed when dropped.
struct Issuer {
    provider: peers::OidcProvider,
    url: String,
}

impl Issuer {
    async fn start() -> Self {
        let provider = peers::OidcProvider::start(None).await.unwrap();
        let url = provider.url.clone();
        Self { provider, url }
    }

    /// A real access token for `resource`, by client_credentials.
    async fn token(&self, resource: &str, scope: &str) -> String {
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("resource", resource)
            .finish();
        let response: Value = reqwest::Client::new()
            .post(format!("{}/token", self.url))
            .basic_auth("mcp-test", Some("secret"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {response}"))
            .to_owned()
    }

    /// A token the provider would not issue, signed as `query` says (see oidc.mjs).
    async fn crafted(&self, query: &[(&str, &str)]) -> String {
        let url = url::Url::parse_with_params(&format!("{}/test/token", self.url), query).unwrap();
        reqwest::Client::new()
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A stateless `tools/call` with `token`: the HTTP status, `WWW-Authenticate`, and the body.
async fn call(url: &str, token: Option<&str>, tool: &str) -> (u16, String, Value) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2026-07-28")
        .header("Mcp-Method", "tools/call")
        .header("Mcp-Name", tool)
        .json(&json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": tool, "arguments": { "name": "you" },
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
                    "io.modelcontextprotocol/clientCapabilities": {}
                }
            }
        }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    let json = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .unwrap_or(&text)
        .trim()
        .to_owned();
    (
        status,
        challenge,
        serde_json::from_str(&json).unwrap_or(Value::Null),
    )
}

/// A stateless request from a client that declared the Tasks extension; the JSON-RPC body.
async fn rpc(url: &str, token: &str, method: &str, name: Option<&str>, mut params: Value) -> Value {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": { "name": "t", "version": "1" },
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": { "io.modelcontextprotocol/tasks": {} }
        }
    });
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("MCP-Protocol-Version", "2026-07-28")
        .header("Mcp-Method", method);
    if let Some(name) = name {
        request = request.header("Mcp-Name", name);
    }
    let text = request
        .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let json = text
        .lines()
        .find_map(|line| line.strip_prefix("data:"))
        .unwrap_or(&text)
        .trim()
        .to_owned();
    serde_json::from_str(&json).unwrap()
}

fn everything() -> PathBuf {
    PathBuf::from(EVERYTHING)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (oidc-provider); .ci/run runs it"]
async fn tokens_from_a_real_issuer_are_taken_and_every_bad_one_refused() {
    let _alone = crate::one_at_a_time().await;
    let issuer = Issuer::start().await;
    let server = HttpProcess::start_with(
        &everything(),
        "http",
        &[
            "--auth-issuer",
            &issuer.url,
            "--auth-scope",
            "mcp:read",
            "--auth-tool-scope",
            "greet=mcp:write",
        ],
    )
    .await
    .unwrap();
    let mcp = server.url("/mcp");
    let metadata_url = server.url("/.well-known/oauth-protected-resource/mcp");

    // The metadata, at both paths, names the issuer and this server.
    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let metadata: Value = reqwest::get(server.url(path))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["resource"], mcp, "{path}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([issuer.url]),
            "{path}"
        );
        assert_eq!(
            metadata["scopes_supported"],
            json!(["mcp:read", "mcp:write"]),
            "{path}"
        );
    }

    // No token: 401 pointing at the metadata, with the scopes to ask for.
    let (status, challenge, _) = call(&mcp, None, "test_simple_text").await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge,
        format!("Bearer resource_metadata=\"{metadata_url}\", scope=\"mcp:read\"")
    );

    // A real token: the whole protocol works (rmcp's client, stateless era).
    let read = issuer.token(&mcp, "mcp:read").await;
    let client = connect_http(&mcp, Era::Stateless, Some(&read))
        .await
        .unwrap();
    let tools = client.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|tool| tool.name == "greet"));
    let (status, _, body) = call(&mcp, Some(&read), "test_simple_text").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["content"][0]["text"],
        "This is a simple text response for testing."
    );

    // A tool that needs more: 403 insufficient_scope naming it (step-up), then a token with it.
    let (status, challenge, body) = call(&mcp, Some(&read), "greet").await;
    assert_eq!(status, 403, "{body}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp:read mcp:write\""),
        "{challenge}"
    );
    let write = issuer.token(&mcp, "mcp:read mcp:write").await;
    let (status, _, body) = call(&mcp, Some(&write), "greet").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["content"][0]["text"], "Hello, you!");

    // Tokens the issuer would not give this server: each 401 invalid_token, saying why.
    let other = "https://other.example.com/mcp";
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        ("expired", vec![("aud", &mcp), ("exp", "-120")], "expired"),
        (
            "not yet valid",
            vec![("aud", &mcp), ("nbf", "600")],
            "not valid yet",
        ),
        (
            "another issuer",
            vec![("aud", &mcp), ("iss", "https://evil.example.com")],
            "another issuer",
        ),
        ("another audience", vec![("aud", other)], "another audience"),
        (
            "a forged signature",
            vec![("aud", &mcp), ("signer", "stranger")],
            "signature",
        ),
        (
            "an unpublished key",
            vec![("aud", &mcp), ("kid", "key-2")],
            "no key key-2",
        ),
    ];
    for (what, query, why) in cases {
        let token = issuer.crafted(&query).await;
        let (status, challenge, body) = call(&mcp, Some(&token), "test_simple_text").await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        assert!(
            challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
            "{what}"
        );
        assert!(
            body["error_description"].as_str().unwrap().contains(why),
            "{what}: {body}"
        );
    }
    // A token for another service (a real one, for another resource): no passthrough.
    let theirs = issuer.token(other, "mcp:read").await;
    assert_eq!(call(&mcp, Some(&theirs), "test_simple_text").await.0, 401);
    // Unsigned and garbage tokens.
    let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", read.split('.').nth(1).unwrap());
    for token in [unsigned.as_str(), "garbage", "a.b.c"] {
        assert_eq!(
            call(&mcp, Some(token), "test_simple_text").await.0,
            401,
            "{token}"
        );
    }

    // The issuer rotates its keys: a token under the new key is taken once the server fetches
    // them again (it does so for an unknown key id, at most once a second).
    let rotated = reqwest::Client::new()
        .post(format!("{}/test/rotate", issuer.url))
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let token = issuer.crafted(&[("aud", &mcp), ("kid", "key-2")]).await;
    let (status, _, body) = call(&mcp, Some(&token), "test_simple_text").await;
    assert_eq!(status, 200, "{body}");

    // A task belongs to the subject whose token made it: to another, its id is unknown.
    let created = rpc(
        &mcp,
        &read,
        "tools/call",
        Some("slow_compute"),
        json!({ "name": "slow_compute", "arguments": { "seconds": 30 } }),
    )
    .await;
    let task = created["result"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let someone_else = issuer.crafted(&[("aud", &mcp)]).await;
    for (method, params) in [
        ("tasks/get", json!({ "taskId": task })),
        ("tasks/cancel", json!({ "taskId": task })),
        (
            "tasks/update",
            json!({ "taskId": task, "inputResponses": {} }),
        ),
    ] {
        let refused = rpc(&mcp, &someone_else, method, Some(task), params.clone()).await;
        assert_eq!(refused["error"]["code"], -32602, "{method}: {refused}");
        let mine = rpc(&mcp, &read, method, Some(task), params).await;
        assert!(mine["result"].is_object(), "{method}: {mine}");
    }

    // After all of it the server still serves.
    let (status, _, _) = call(&mcp, Some(&read), "test_simple_text").await;
    assert_eq!(status, 200);

    // The issuer goes away: tokens under keys already fetched are still checked and taken,
    // while a token naming a key the server never saw is refused (it cannot be fetched).
    let unknown = issuer
        .crafted(&[("aud", &mcp), ("kid", "key-9"), ("signer", "stranger")])
        .await;
    let mut issuer = issuer;
    issuer.provider.child.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, _, body) = call(&mcp, Some(&unknown), "test_simple_text").await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = call(&mcp, Some(&read), "test_simple_text").await;
    assert_eq!(status, 200, "{body}");
    assert!(server.terminate().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (oidc-provider); .ci/run runs it"]
async fn an_unreachable_issuer_leaves_the_metadata_served_and_requests_refused() {
    let _alone = crate::one_at_a_time().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = HttpProcess::start_with(&everything(), "http", &["--auth-issuer", &issuer])
        .await
        .unwrap();
    let metadata: Value = reqwest::get(server.url("/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["authorization_servers"], json!([issuer]));
    let real_looking = Issuer::start().await;
    let token = real_looking
        .crafted(&[("aud", &server.url("/mcp")), ("iss", &issuer)])
        .await;
    let (status, challenge, body) =
        call(&server.url("/mcp"), Some(&token), "test_simple_text").await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.contains("invalid_token"), "{challenge}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("metadata could not be read"),
        "{body}"
    );
    assert!(
        reqwest::get(server.url("/health"))
            .await
            .unwrap()
            .status()
            .is_success()
    );
    assert!(server.terminate().await.unwrap().success());
}
