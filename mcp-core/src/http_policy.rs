//! HTTP hardening shared by every server: Host/Origin allow-lists (DNS-rebinding protection)
//! and bearer-token authentication, as axum middleware.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::message::{INVALID_PARAMS, Inbound, read_client_message};

/// Why a request with two `Host` headers is refused (400, not 403: it is malformed).
const DUPLICATE_HOST: &str =
    "the request has more than one Host header (a request smuggling or rebinding attempt)";

/// Names that always mean "this machine".
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// Which `Host` and `Origin` headers a listener accepts.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    hosts: Vec<Authority>,
    origins: Vec<Origin>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Authority {
    host: String,
    // `None` in an allow-list entry means any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    // `None` in an allow-list entry means any port (`:*`).
    port: Option<u16>,
}

/// An allow-list entry that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} {value:?}: {reason}")]
pub struct PolicyError {
    what: &'static str,
    value: String,
    reason: &'static str,
}

impl HostPolicy {
    /// Localhost names on `bound`'s port, the bound address itself when it is a specific IP,
    /// plus the given extra hosts (`name` or `name:port`) and origins (`scheme://host[:port|:*]`).
    pub fn new(
        bound: SocketAddr,
        extra_hosts: &[String],
        extra_origins: &[String],
    ) -> Result<Self, PolicyError> {
        let port = bound.port();
        let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
        if !bound.ip().is_unspecified() && !bound.ip().is_loopback() {
            names.push(match bound {
                SocketAddr::V4(v4) => v4.ip().to_string(),
                SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            });
        }
        let mut hosts: Vec<Authority> = names
            .iter()
            .map(|host| Authority {
                host: host.clone(),
                port: Some(port),
            })
            .collect();
        let mut origins: Vec<Origin> = names
            .iter()
            .flat_map(|host| {
                ["http", "https"].map(|scheme| Origin {
                    scheme: scheme.to_owned(),
                    host: host.clone(),
                    port: Some(port),
                })
            })
            .collect();
        for entry in extra_hosts {
            hosts.push(parse_authority(entry, None).ok_or_else(|| PolicyError {
                what: "allowed host",
                value: entry.clone(),
                reason: "expected `name` or `name:port`",
            })?);
        }
        for entry in extra_origins {
            origins.push(parse_origin(entry, true).ok_or_else(|| PolicyError {
                what: "allowed origin",
                value: entry.clone(),
                reason: "expected `http://host`, `https://host:port` or `http://host:*`",
            })?);
        }
        Ok(Self { hosts, origins })
    }

    /// Why the request's headers are not allowed, or `None` when they are.
    pub fn check(&self, headers: &http::HeaderMap) -> Option<String> {
        let Some(host) = headers.get(header::HOST) else {
            return Some("the request has no Host header".to_owned());
        };
        if headers.get_all(header::HOST).iter().nth(1).is_some() {
            return Some(DUPLICATE_HOST.to_owned());
        }
        let host_text = host.to_str().unwrap_or("<not text>");
        let allowed_host = parse_authority(host_text, Some(80)).is_some_and(|presented| {
            self.hosts.iter().any(|allowed| {
                allowed.host == presented.host
                    && allowed.port.is_none_or(|port| Some(port) == presented.port)
            })
        });
        if !allowed_host {
            return Some(format!(
                "Host {host_text:?} is not allowed (DNS-rebinding protection); \
                 if this name is really meant to reach the server, start it with --allow-host"
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin_text = origin.to_str().unwrap_or("<not text>");
            let allowed_origin = parse_origin(origin_text, false).is_some_and(|presented| {
                self.origins.iter().any(|allowed| {
                    allowed.scheme == presented.scheme
                        && allowed.host == presented.host
                        && allowed.port.is_none_or(|port| Some(port) == presented.port)
                })
            });
            if !allowed_origin {
                return Some(format!(
                    "Origin {origin_text:?} is not allowed; \
                     if this web page should reach the server, start it with --allow-origin"
                ));
            }
        }
        None
    }
}

fn parse_authority(text: &str, default_port: Option<u16>) -> Option<Authority> {
    let authority: http::uri::Authority = text.trim().parse().ok()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = authority.host().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(Authority {
        host,
        port: authority.port_u16().or(default_port),
    })
}

fn parse_origin(text: &str, allow_wildcard_port: bool) -> Option<Origin> {
    let text = text.trim();
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return None;
    }
    if allow_wildcard_port && let Some(host) = rest.strip_suffix(":*") {
        let authority = parse_authority(host, None)?;
        return Some(Origin {
            scheme,
            host: authority.host,
            port: None,
        });
    }
    let authority = parse_authority(rest, Some(default_port))?;
    Some(Origin {
        scheme,
        host: authority.host,
        port: authority.port,
    })
}

/// A JSON-RPC error body, so MCP clients can show the reason.
pub(crate) fn rejection(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::warn!(%status, %message, "rejected HTTP request");
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": -32000, "message": message },
    });
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// 503 with `Retry-After`: the server holds as many sessions as it may (`--max-sessions`).
pub(crate) fn too_busy(max: usize) -> Response {
    let mut response = rejection(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "Service Unavailable: {max} sessions are open, the most this server holds \
             (--max-sessions); try again later"
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    response
}

pub(crate) async fn enforce_host_policy(
    State(policy): State<Arc<HostPolicy>>,
    request: Request<Body>,
    next: Next,
) -> Response {
    match policy.check(request.headers()) {
        None => next.run(request).await,
        Some(reason) if reason == DUPLICATE_HOST => {
            rejection(StatusCode::BAD_REQUEST, format!("Bad Request: {reason}"))
        }
        Some(reason) => rejection(StatusCode::FORBIDDEN, format!("Forbidden: {reason}")),
    }
}

/// A bearer token, kept as its SHA-256 so comparisons take the same time whatever is presented.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8; 32]>);

impl BearerToken {
    /// The token the server expects.
    pub fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    /// Whether `presented` is the token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&*self.0).into()
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// The credentials of an `Authorization: Bearer …` header, if the request has one.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

pub(crate) async fn require_bearer(
    State(token): State<BearerToken>,
    request: Request<Body>,
    next: Next,
) -> Response {
    match bearer(request.headers()) {
        Some(presented) if token.matches(presented) => next.run(request).await,
        Some(_) => rejection(StatusCode::UNAUTHORIZED, "Unauthorized: wrong bearer token"),
        None => rejection(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: send `Authorization: Bearer <token>` with the server's --auth-token",
        ),
    }
}

/// Reads the whole request body, refusing more than `limit` bytes (413) and, for POSTs, anything
/// that is not a readable MCP message (a JSON-RPC error, see [`crate::message`]), before any MCP
/// code sees it.
///
/// Done here rather than by a streaming limit so that every transport answers the same way: rmcp
/// would turn a body cut short into a 500, malformed JSON into a plain-text 415, and a known
/// method with malformed params into -32601.
/// Methods the 2026-07-28 revision removed (SEP-2575): discovery replaces `initialize`, `_meta`
/// log levels replace `logging/setLevel`, `subscriptions/listen` replaces resource subscriptions;
/// rmcp already answers `ping` itself.
const REMOVED_IN_2026: [&str; 4] = [
    "initialize",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// A request in the 2026-07-28 revision (its `MCP-Protocol-Version` header says so) for a method
/// that revision removed: 404 with JSON-RPC -32601 and the request's id, as the spec requires,
/// whether or not its params still have the old shape.
fn removed_method(headers: &http::HeaderMap, inbound: &Inbound) -> Option<Response> {
    let (method, id) = inbound.request_method()?;
    if !REMOVED_IN_2026.contains(&method) {
        return None;
    }
    let version = headers.get("mcp-protocol-version")?.to_str().ok()?;
    let dated = version.len() == 10 && version.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    if !dated || version < "2026-07-28" {
        return None;
    }
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32601,
            "message": format!("Method not found: {method} was removed in protocol version 2026-07-28"),
        },
    });
    Some((StatusCode::NOT_FOUND, axum::Json(body)).into_response())
}

pub(crate) async fn read_json_body(
    State(limit): State<usize>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let too_large = || {
        rejection(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Payload Too Large: request bodies are limited to {limit} bytes (--max-body-bytes)"
            ),
        )
    };
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let bytes =
        match http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(error) => {
                return rejection(
                    StatusCode::BAD_REQUEST,
                    format!("Bad Request: could not read the request body: {error}"),
                );
            }
        };
    let inbound = (parts.method == http::Method::POST).then(|| read_client_message(&bytes));
    if let Some(removed) = inbound
        .as_ref()
        .and_then(|inbound| removed_method(&parts.headers, inbound))
    {
        return removed;
    }
    let mut parts = parts;
    if let Some(Inbound::Message(message)) = &inbound
        && let rmcp::model::JsonRpcMessage::Request(request) = message.as_ref()
        && let rmcp::model::ClientRequest::CallToolRequest(call) = &request.request
    {
        // For checks that depend on the tool (its OAuth scopes).
        parts
            .extensions
            .insert(crate::auth::CalledTool(call.params.name.to_string()));
    }
    if let Some(Inbound::Reject(rejection)) = inbound {
        tracing::warn!(?rejection, "answered a malformed message");
        // A readable request with bad params is an ordinary JSON-RPC error response; input that
        // cannot be read as a message at all is a bad HTTP request.
        let status = if rejection.code == INVALID_PARAMS && rejection.has_id() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        return (status, axum::Json(rejection.to_json())).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: Option<&str>, origin: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, host.parse().unwrap());
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().unwrap());
        }
        headers
    }

    fn loopback_policy() -> HostPolicy {
        HostPolicy::new("127.0.0.1:8123".parse().unwrap(), &[], &[]).unwrap()
    }

    #[test]
    fn localhost_names_on_the_bound_port_pass() {
        let policy = loopback_policy();
        for host in [
            "localhost:8123",
            "127.0.0.1:8123",
            "[::1]:8123",
            "LOCALHOST:8123",
            "localhost.:8123",
        ] {
            assert_eq!(policy.check(&headers(Some(host), None)), None, "{host}");
        }
        for origin in [
            "http://localhost:8123",
            "https://127.0.0.1:8123",
            "http://[::1]:8123/",
        ] {
            assert_eq!(
                policy.check(&headers(Some("localhost:8123"), Some(origin))),
                None,
                "{origin}"
            );
        }
    }

    #[test]
    fn rebinding_hosts_and_foreign_origins_fail() {
        let policy = loopback_policy();
        for host in [
            "evil.example.com",
            "evil.example.com:8123",
            "localhost:9999",
            "localhost",
            "127.0.0.1.evil.com:8123",
            "user@localhost:8123",
            "",
        ] {
            assert!(
                policy.check(&headers(Some(host), None)).is_some(),
                "{host:?}"
            );
        }
        assert!(policy.check(&headers(None, None)).is_some());
        for origin in [
            "http://evil.example.com",
            "http://localhost:9999",
            "null",
            "file://",
            "http://localhost:8123/path",
            "ftp://localhost:8123",
        ] {
            assert!(
                policy
                    .check(&headers(Some("localhost:8123"), Some(origin)))
                    .is_some(),
                "{origin}"
            );
        }
    }

    #[test]
    fn extra_entries_extend_the_lists() {
        let policy = HostPolicy::new(
            "0.0.0.0:80".parse().unwrap(),
            &["mcp.internal".into(), "box:8080".into()],
            &[
                "https://app.example.com".into(),
                "http://localhost:*".into(),
            ],
        )
        .unwrap();
        assert_eq!(policy.check(&headers(Some("mcp.internal"), None)), None);
        assert_eq!(
            policy.check(&headers(Some("mcp.internal:1234"), None)),
            None
        );
        assert_eq!(policy.check(&headers(Some("box:8080"), None)), None);
        assert!(policy.check(&headers(Some("box:8081"), None)).is_some());
        let host = Some("localhost:80");
        assert_eq!(
            policy.check(&headers(host, Some("https://app.example.com"))),
            None
        );
        assert!(
            policy
                .check(&headers(host, Some("https://app.example.com:8443")))
                .is_some()
        );
        assert_eq!(
            policy.check(&headers(host, Some("http://localhost:6274"))),
            None
        );
        assert!(
            HostPolicy::new(
                "127.0.0.1:1".parse().unwrap(),
                &[],
                &["app.example.com".into()]
            )
            .is_err()
        );
    }

    #[test]
    fn tokens_compare_by_value_only() {
        let token = BearerToken::new("s3cret");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret "));
        assert!(!token.matches(""));
        assert_eq!(format!("{token:?}"), "BearerToken(<redacted>)");
    }
}
