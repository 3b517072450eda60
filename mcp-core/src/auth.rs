//! The HTTP listener as an OAuth 2.1 resource server (MCP authorization; RFC 9728, RFC 8707,
//! RFC 9068): `--auth-issuer` names the authorization server whose access tokens the server
//! takes.
//!
//! - `/.well-known/oauth-protected-resource` (and `…/mcp`, RFC 9728's path for the `/mcp`
//!   resource) say which authorization server issues tokens for this server and which scopes
//!   it knows; clients find them from the `WWW-Authenticate` header of a 401.
//! - Every MCP request needs `Authorization: Bearer <JWT>`: signed by a key of the issuer's
//!   JWKS (its RFC 8414 or OpenID Connect metadata names it; fetched when first needed, cached,
//!   fetched again for a key id it does not have, at most once a second), by an asymmetric
//!   algorithm, from that issuer (`iss`), for this server (`aud` holds `--auth-audience`, by
//!   default the server's own URL: a token meant for another service is refused, so no token
//!   passes through), neither expired (`exp`) nor early (`nbf`), 30 s of clock skew allowed.
//!   Else 401, with `WWW-Authenticate: Bearer resource_metadata="…"` and the scopes to ask for.
//! - Scopes (`scope`, or `scp`): those of `--auth-scope` on every request, and those of
//!   `--auth-tool-scope TOOL=SCOPE` on calls of that tool; a token without them gets 403
//!   `insufficient_scope` naming what to ask for (step-up).
//!
//! The server starts, and serves its metadata, while the issuer is unreachable; requests then
//! get 401 and the log says why.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{Jwk, JwkSet},
};
use serde_json::{Value, json};

/// Allowed clock skew for `exp` and `nbf`.
const LEEWAY: Duration = Duration::from_secs(30);
/// The least time between two fetches of the issuer's keys (an unknown key id in a forged token
/// must not make the server hammer the issuer).
const REFETCH_COOLDOWN: Duration = Duration::from_secs(1);
/// How long fetched keys are trusted before they are fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(60 * 60);
/// The largest metadata or JWKS document read from the issuer.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Algorithms a token may be signed with: asymmetric ones only (an `HS256` token "signed" with
/// a public key, or `none`, is refused).
const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// What the resource server checks, from the command line.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The authorization server (`iss` of every token).
    pub issuer: String,
    /// This server's identifier (`aud` of every token; the `resource` of its metadata).
    pub audience: String,
    /// Scopes every request needs.
    pub scopes: Vec<String>,
    /// Scopes calls of a tool need, beside those.
    pub tool_scopes: Vec<(String, String)>,
}

/// Why the OAuth options do not make sense.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// `--auth-issuer` or `--auth-audience` is not a usable URL.
    #[error("{what} {value:?} is not a usable URL: {reason}")]
    BadUrl {
        /// Which option.
        what: &'static str,
        /// What was given.
        value: String,
        /// Why not.
        reason: String,
    },
    /// A `--auth-tool-scope` without `=`.
    #[error("--auth-tool-scope {0:?}: expected TOOL=SCOPE")]
    BadToolScope(String),
    /// Both kinds of authentication at once.
    #[error("--auth-token and --auth-issuer exclude each other: use one")]
    Both,
    /// No HTTP client to fetch the issuer's keys with.
    #[error("no HTTP client for the issuer's keys: {0}")]
    Client(String),
}

fn check_url(what: &'static str, value: &str) -> Result<url::Url, AuthConfigError> {
    let bad = |reason: &str| AuthConfigError::BadUrl {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let url = url::Url::parse(value).map_err(|error| bad(&error.to_string()))?;
    let loopback = matches!(url.host(), Some(url::Host::Domain("localhost")))
        || matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(bad("use https (plain http only on this machine)")),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no query or fragment"));
    }
    Ok(url)
}

impl OAuthSettings {
    /// The settings of `--auth-issuer` and friends; the audience defaults to
    /// `http://<bound address>/mcp`.
    pub fn new(
        issuer: &str,
        audience: Option<&str>,
        bound: std::net::SocketAddr,
        scopes: &[String],
        tool_scopes: &[String],
    ) -> Result<Self, AuthConfigError> {
        check_url("--auth-issuer", issuer)?;
        let audience = match audience {
            Some(audience) => audience.to_owned(),
            None => format!("http://{bound}{}", crate::MCP_PATH),
        };
        check_url("--auth-audience", &audience)?;
        let tool_scopes = tool_scopes
            .iter()
            .map(|entry| match entry.split_once('=') {
                Some((tool, scope)) if !tool.is_empty() && !scope.is_empty() => {
                    Ok((tool.to_owned(), scope.to_owned()))
                }
                _ => Err(AuthConfigError::BadToolScope(entry.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            // RFC 8414: the issuer is compared as written, but a trailing slash is a common
            // slip between configuration and token.
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience,
            scopes: scopes.to_vec(),
            tool_scopes,
        })
    }

    /// `…/.well-known/oauth-protected-resource/mcp` for the audience `…/mcp` (RFC 9728 §3.1).
    fn metadata_url(&self) -> String {
        match url::Url::parse(&self.audience) {
            Ok(url) => {
                let path = url.path().trim_end_matches('/');
                format!(
                    "{}/.well-known/oauth-protected-resource{path}",
                    url.origin().ascii_serialization()
                )
            }
            Err(_) => format!("{}/.well-known/oauth-protected-resource", self.audience),
        }
    }

    /// Every scope the server knows, for its metadata.
    fn known_scopes(&self) -> Vec<String> {
        let mut known: BTreeSet<String> = self.scopes.iter().cloned().collect();
        known.extend(self.tool_scopes.iter().map(|(_, scope)| scope.clone()));
        known.into_iter().collect()
    }

    /// The protected-resource metadata (RFC 9728).
    pub fn metadata(&self) -> Value {
        json!({
            "resource": self.audience,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.known_scopes(),
            "bearer_methods_supported": ["header"],
        })
    }
}

/// Who a verified token was issued to: in the request's extensions after the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub` (or `client_id` when it has no subject).
    pub subject: String,
    /// The token's scopes.
    pub scopes: BTreeSet<String>,
}

/// The issuer's keys as last fetched.
#[derive(Default)]
struct Keys {
    jwks_uri: Option<String>,
    set: Option<Arc<JwkSet>>,
    fetched: Option<Instant>,
}

/// Checks access tokens against the issuer's keys.
pub(crate) struct Verifier {
    settings: OAuthSettings,
    client: reqwest::Client,
    /// Read by every request; written only after a fetch.
    keys: std::sync::RwLock<Keys>,
    /// One fetch at a time: requests whose key is known never wait for it.
    fetching: tokio::sync::Mutex<()>,
}

/// Why a request was refused.
enum Refusal {
    /// No token: 401 without an error code (RFC 6750 §3.1).
    Missing,
    /// A token that does not pass: 401 `invalid_token`.
    Invalid(String),
    /// A good token without the scopes: 403 `insufficient_scope`.
    Scope(Vec<String>),
}

impl Verifier {
    /// `Err` when no HTTP client can be built (its TLS backend failed): the server must not
    /// fall back to one without the timeout and the refusal of redirects.
    pub(crate) fn new(settings: OAuthSettings) -> Result<Self, AuthConfigError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| AuthConfigError::Client(error.to_string()))?;
        Ok(Self {
            settings,
            client,
            keys: std::sync::RwLock::new(Keys::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    /// GETs a JSON document of at most [`MAX_DOCUMENT_BYTES`].
    async fn document(&self, url: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(url)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| format!("GET {url}: {error}"))?;
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        serde_json::from_slice(&bytes).map_err(|error| format!("GET {url}: not JSON: {error}"))
    }

    /// The issuer's `jwks_uri`, from its RFC 8414 metadata or else its OpenID configuration;
    /// the document must name the configured issuer.
    async fn jwks_uri(&self) -> Result<String, String> {
        let issuer = &self.settings.issuer;
        let parsed = url::Url::parse(issuer).map_err(|error| error.to_string())?;
        let origin = parsed.origin().ascii_serialization();
        let path = parsed.path().trim_end_matches('/');
        let candidates = [
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{issuer}/.well-known/openid-configuration"),
        ];
        let mut failures = Vec::new();
        for candidate in candidates {
            match self.document(&candidate).await {
                Ok(metadata) => {
                    let named = metadata["issuer"].as_str().unwrap_or_default();
                    if named.trim_end_matches('/') != issuer {
                        failures.push(format!(
                            "{candidate} names the issuer {named:?}, not {issuer:?}"
                        ));
                        continue;
                    }
                    return metadata["jwks_uri"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{candidate} has no jwks_uri"));
                }
                Err(error) => failures.push(error),
            }
        }
        Err(failures.join("; "))
    }

    /// The key `kid` names (or the only key, for a token without a key id); the keys are
    /// fetched when there are none yet, when they are old, or when `kid` is not among them.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, String> {
        let read = |keys: &Self| {
            let keys = keys
                .keys
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let fresh = keys.fetched.is_some_and(|at| at.elapsed() < KEYS_MAX_AGE);
            let cooling = keys
                .fetched
                .is_some_and(|at| at.elapsed() < REFETCH_COOLDOWN);
            let key = keys.set.as_ref().and_then(|set| pick(set, kid));
            (key, fresh, cooling, keys.jwks_uri.clone())
        };
        if let (Some(key), true, _, _) = read(self) {
            return Ok(key);
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let (known, fresh, cooling, jwks_uri) = read(self);
        let missing = || {
            format!(
                "the issuer's keys have no key {}",
                kid.unwrap_or("(none named)")
            )
        };
        match (known, fresh, cooling) {
            (Some(key), true, _) => Ok(key),
            // Old keys stay good while they cannot be fetched again.
            (Some(key), false, true) => Ok(key),
            (None, _, true) => Err(missing()),
            (stale, _, false) => {
                self.keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .fetched = Some(Instant::now());
                match self.fetch_keys(jwks_uri).await {
                    Ok(set) => {
                        let key = pick(&set, kid);
                        self.keys
                            .write()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .set = Some(Arc::new(set));
                        key.ok_or_else(missing)
                    }
                    Err(error) => match stale {
                        Some(key) => {
                            tracing::warn!(%error, "could not fetch the issuer's keys again; the ones fetched before stay in use");
                            Ok(key)
                        }
                        None => Err(error),
                    },
                }
            }
        }
    }

    /// The issuer's JWK set, its `jwks_uri` found first if not yet known.
    async fn fetch_keys(&self, known_uri: Option<String>) -> Result<JwkSet, String> {
        let uri = match known_uri {
            Some(uri) => uri,
            None => {
                let uri = self
                    .jwks_uri()
                    .await
                    .map_err(|error| format!("the issuer's metadata could not be read: {error}"))?;
                self.keys
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .jwks_uri = Some(uri.clone());
                uri
            }
        };
        serde_json::from_value(self.document(&uri).await?)
            .map_err(|error| format!("{uri} is not a JWK set: {error}"))
    }

    /// The principal of a valid token.
    async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let header = decode_header(token)
            .map_err(|error| Refusal::Invalid(format!("not a JWT: {error}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(Refusal::Invalid(format!(
                "signed with {:?}, which this server does not take",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await.map_err(|error| {
            tracing::warn!(%error, "refused a token: no key to check it with");
            Refusal::Invalid(error)
        })?;
        if let Some(alg) = jwk.common.key_algorithm
            && alg.to_string() != format!("{:?}", header.alg)
        {
            return Err(Refusal::Invalid(format!(
                "the token says {:?} but its key is for {alg}",
                header.alg
            )));
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|error| Refusal::Invalid(format!("the issuer's key is unusable: {error}")))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer, &format!("{}/", self.settings.issuer)]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|error| Refusal::Invalid(describe(&error)))?
            .claims;
        let subject = claims
            .get("sub")
            .or_else(|| claims.get("client_id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Principal {
            subject,
            scopes: scopes_of(&claims),
        })
    }

    /// 401 or 403, with the header RFC 6750 and RFC 9728 ask for.
    fn refuse(&self, refusal: Refusal) -> Response {
        let mut challenge = format!(
            "Bearer resource_metadata=\"{}\"",
            self.settings.metadata_url()
        );
        let (status, body) = match refusal {
            Refusal::Missing => {
                if !self.settings.scopes.is_empty() {
                    challenge.push_str(&format!(", scope=\"{}\"", self.settings.scopes.join(" ")));
                }
                (
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "unauthorized", "error_description": "this server needs an OAuth access token: Authorization: Bearer <token> (see WWW-Authenticate for where to get one)" }),
                )
            }
            Refusal::Invalid(why) => {
                challenge.push_str(&format!(
                    ", error=\"invalid_token\", error_description=\"{}\"",
                    quoted(&why)
                ));
                (
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "invalid_token", "error_description": why }),
                )
            }
            Refusal::Scope(needed) => {
                let needed = needed.join(" ");
                challenge.push_str(&format!(
                    ", error=\"insufficient_scope\", scope=\"{}\"",
                    quoted(&needed)
                ));
                (
                    StatusCode::FORBIDDEN,
                    json!({ "error": "insufficient_scope", "error_description": format!("this needs the scopes {needed}: get a token with them"), "scope": needed }),
                )
            }
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The key for `kid`; without a key id, the set's only signing key.
fn pick(set: &JwkSet, kid: Option<&str>) -> Option<Jwk> {
    match kid {
        Some(kid) => set.find(kid).cloned(),
        None => match set.keys.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        },
    }
}

/// A token's scopes: `scope` (space-separated, RFC 9068) or `scp` (a list or a string).
fn scopes_of(claims: &serde_json::Map<String, Value>) -> BTreeSet<String> {
    let mut scopes = BTreeSet::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => scopes.extend(text.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
    }
    scopes
}

/// What a failed check means, in words a client's log can act on.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind::*;
    match error.kind() {
        ExpiredSignature => "the token expired".to_owned(),
        ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        InvalidIssuer => "the token is from another issuer".to_owned(),
        InvalidAudience => "the token is for another audience, not this server".to_owned(),
        InvalidSignature => "the token's signature does not verify".to_owned(),
        MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        other => format!("the token does not verify: {other:?}"),
    }
}

/// `text` safe inside a quoted header parameter.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

/// Who the access token of the request behind `context` was issued to, when the server checks
/// OAuth tokens.
pub fn subject(context: &rmcp::service::RequestContext<rmcp::RoleServer>) -> Option<&str> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .map(|principal| principal.subject.as_str())
}

/// The name of the tool a `tools/call` request calls, put in the request's extensions by the
/// body reader.
#[derive(Debug, Clone)]
pub(crate) struct CalledTool(pub String);

/// Refuses MCP requests without a valid token with the scopes they need.
pub(crate) async fn require_oauth(
    State(verifier): State<Arc<Verifier>>,
    mut request: Request<Body>,
    next: Next,
) -> Response {
    let Some(token) = crate::http_policy::bearer(request.headers()).map(str::to_owned) else {
        return verifier.refuse(Refusal::Missing);
    };
    let principal = match verifier.verify(&token).await {
        Ok(principal) => principal,
        Err(refusal) => {
            if let Refusal::Invalid(why) = &refusal {
                tracing::info!(reason = %why, "refused an access token");
            }
            return verifier.refuse(refusal);
        }
    };
    let settings = verifier.settings();
    let mut needed: Vec<String> = settings.scopes.clone();
    if let Some(CalledTool(tool)) = request.extensions().get::<CalledTool>() {
        needed.extend(
            settings
                .tool_scopes
                .iter()
                .filter(|(name, _)| name == tool)
                .map(|(_, scope)| scope.clone()),
        );
    }
    if needed.iter().any(|scope| !principal.scopes.contains(scope)) {
        tracing::info!(subject = %principal.subject, needed = %needed.join(" "), "refused a token without the scopes");
        return verifier.refuse(Refusal::Scope(needed));
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// `GET /.well-known/oauth-protected-resource[/mcp]`.
pub(crate) async fn metadata(State(verifier): State<Arc<Verifier>>) -> axum::Json<Value> {
    axum::Json(verifier.settings().metadata())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(issuer: &str, audience: Option<&str>) -> Result<OAuthSettings, AuthConfigError> {
        OAuthSettings::new(
            issuer,
            audience,
            "127.0.0.1:8000".parse().unwrap(),
            &["mcp".to_owned()],
            &["write_file=files:write".to_owned()],
        )
    }

    #[test]
    fn settings_refuse_what_would_leak_or_cannot_work() {
        assert!(
            settings("http://idp.example.com", None).is_err(),
            "plain http beyond loopback"
        );
        assert!(settings("https://idp.example.com?x=1", None).is_err());
        assert!(settings("not a url", None).is_err());
        assert!(
            OAuthSettings::new(
                "https://idp",
                None,
                "127.0.0.1:1".parse().unwrap(),
                &[],
                &["nope".to_owned()]
            )
            .is_err()
        );
        let ok = settings("https://idp.example.com/tenant/", None).unwrap();
        assert_eq!(ok.issuer, "https://idp.example.com/tenant");
        assert_eq!(ok.audience, "http://127.0.0.1:8000/mcp");
        assert_eq!(
            ok.metadata_url(),
            "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
        );
        assert_eq!(
            ok.metadata()["scopes_supported"],
            json!(["files:write", "mcp"])
        );
        let public = settings(
            "https://idp.example.com",
            Some("https://mcp.example.com/mcp"),
        )
        .unwrap();
        assert_eq!(
            public.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
        );
    }

    #[test]
    fn scopes_come_from_scope_or_scp() {
        let claims = |value: Value| value.as_object().unwrap().clone();
        assert_eq!(
            scopes_of(&claims(json!({ "scope": "a b  c" }))),
            ["a", "b", "c"].map(str::to_owned).into()
        );
        assert_eq!(
            scopes_of(&claims(json!({ "scp": ["a", 1, "b"] }))),
            ["a", "b"].map(str::to_owned).into()
        );
        assert!(scopes_of(&claims(json!({ "scope": 3 }))).is_empty());
    }

    #[test]
    fn header_parameters_cannot_be_broken_out_of() {
        assert_eq!(quoted("a \"b\" \\ c\r\nd ✓"), "a b  cd ");
    }
}
