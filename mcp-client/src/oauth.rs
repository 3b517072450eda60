//! OAuth 2.1 for HTTP servers, per the MCP authorization spec, on rmcp's `auth` module (which
//! does discovery, metadata validation, PKCE, RFC 8707 resources, RFC 9207 `iss` checks, token
//! refresh and scope accumulation). What this module adds is what a terminal client needs
//! around it:
//!
//! - [`OAuthHttp`]: the Streamable HTTP client every HTTP server is reached through. A 401 starts
//!   an authorization and the request is sent again; a 403 `insufficient_scope` asks for the
//!   union of the scopes held and the ones the server names (step-up), at most
//!   [`STEP_UP_LIMIT`] times before the request fails. A server that never asks pays nothing.
//! - How a client is registered, in the spec's order: a client id from the server's entry
//!   (`"oauth": {"clientId": …}`), a client ID metadata document when the authorization server
//!   supports them, dynamic registration otherwise; or the client-credentials grant for runs
//!   with no person present.
//! - [`UserAgent`]: how the person approves: the system browser with a loopback redirect (the
//!   URL printed too, and a pasted redirect address accepted on a headless machine), or no one
//!   (an error that says to run `mcp auth login`).
//! - [`TokenFile`]: tokens kept per server, with the issuer that minted them, in a file only the
//!   user can read under the config directory, never in the hosts' config files.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::{
    model::ClientJsonRpcMessage,
    transport::{
        auth::{
            AuthClient, AuthError, AuthorizationCallback, AuthorizationManager,
            ClientCredentialsConfig, CredentialStore, OAuthClientConfig, StoredCredentials,
            WWWAuthenticateParams,
        },
        streamable_http_client::{
            StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
            StreamableHttpResponseLimits,
        },
    },
};
use serde::{Deserialize, Serialize};

use crate::keyring::Keyring;
use sse_stream::{Error as SseError, Sse};
use url::Url;

/// How many times one request may step up its scopes before it fails.
pub const STEP_UP_LIMIT: u32 = 2;

/// Where this client's ID metadata document is published (its `client_id` where the
/// authorization server supports such documents). The document itself is
/// `docs/oauth/client-metadata.json` in the repository.
pub const CLIENT_METADATA_URL: &str = "https://mcp-toolkit.github.io/oauth/client-metadata.json";

/// The name dynamic registration gives the authorization server.
const CLIENT_NAME: &str = "mcp (mcp-toolkit)";

/// How long a person has to approve in the browser.
const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// A server entry's `"oauth"` object: what its authorization server needs to know about us.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OAuthConfig {
    /// A client id registered with the authorization server beforehand.
    pub client_id: Option<String>,
    /// Its secret, for a confidential client (`${VAR}` keeps it out of the file).
    pub client_secret: Option<String>,
    /// Scopes to ask for instead of the ones the server names.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// This client's ID metadata document, if not the published one.
    pub client_metadata_url: Option<String>,
    /// `authorization_code` (a person approves; the default) or `client_credentials` (an
    /// unattended client with its own id and secret).
    #[serde(default)]
    pub grant: Grant,
    /// The loopback port the browser is sent back to (any free one if not set), for
    /// authorization servers that register exact redirect URIs.
    pub callback_port: Option<u16>,
}

/// Which OAuth grant gets the tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A person approves in a browser (PKCE, a loopback redirect).
    #[default]
    AuthorizationCode,
    /// The client authenticates as itself: no person, no browser.
    ClientCredentials,
}

/// How a person approves an authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAgent {
    /// Open the system browser (`$BROWSER` first) and print the URL; the approval comes back
    /// to a loopback listener, or as the address pasted on standard input when `paste` is set
    /// (a headless machine: the browser is elsewhere and cannot reach our loopback).
    Browser {
        /// Whether to open a browser here.
        open: bool,
        /// Whether to read a pasted redirect address from standard input.
        paste: bool,
    },
    /// Follow the authorization server's redirects without a person: for an authorization
    /// server that approves at once (the conformance suite's) and nothing else.
    Direct,
    /// No one to ask: a server that needs an authorization fails with what to run.
    Refuse,
}

/// Everything [`connect`](crate::connect::connect) needs to authorize.
#[derive(Clone)]
pub struct AuthOptions {
    /// How a person approves.
    pub agent: UserAgent,
    /// Where tokens are kept.
    pub store: TokenFile,
    /// The program that opens the authorization page, given its URL: `None` for `$BROWSER`,
    /// else the platform's opener (`open`, `xdg-open`, the URL handler on Windows).
    pub browser: Option<PathBuf>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            agent: UserAgent::Refuse,
            store: TokenFile::new(TokenFile::default_path()),
            browser: None,
        }
    }
}

impl std::fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthOptions")
            .field("agent", &self.agent)
            .field("store", &self.store.path)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------------
// Token storage

/// The token file: `{"servers": {URL: credentials}}`, owner-only, written whole under a lock
/// so that two `mcp` processes do not lose each other's tokens. With a [`Keyring`], a server's
/// token response (its access and refresh tokens) goes to the OS keyring and the file keeps the
/// rest (client id, scopes, issuer, when they came), marked as kept there.
#[derive(Clone)]
pub struct TokenFile {
    path: PathBuf,
    keyring: Option<Keyring>,
}

#[derive(Default, Serialize, Deserialize)]
struct TokenFileContents {
    #[serde(default)]
    servers: BTreeMap<String, Kept>,
}

/// One server's entry in the file.
#[derive(Clone, Serialize, Deserialize)]
struct Kept {
    #[serde(flatten)]
    credentials: StoredCredentials,
    /// The token response is in the OS keyring (entry [`crate::keyring::SERVICE`], the server's URL),
    /// not in this file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    in_keyring: bool,
}

/// Where a server's tokens are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPlace {
    /// In the token file.
    File,
    /// In the OS keyring.
    Keyring,
}

/// What is kept for one server, as `mcp auth status` shows it.
#[derive(Debug)]
pub struct KeptTokens {
    /// The credentials, with the token response read from wherever it is kept.
    pub credentials: StoredCredentials,
    /// Where the tokens are.
    pub place: TokenPlace,
    /// Why the tokens could not be read (a locked keyring), if they could not.
    pub problem: Option<String>,
}

impl TokenFile {
    /// A token file at `path`, holding the tokens too.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            keyring: None,
        }
    }

    /// The token file at `path` with the tokens themselves in `keyring` when it answers.
    pub fn with_keyring(path: PathBuf, keyring: Keyring) -> Self {
        Self {
            path,
            keyring: Some(keyring),
        }
    }

    /// `$XDG_CONFIG_HOME/mcp-toolkit/credentials.json` (or `~/.config/…`).
    pub fn default_path() -> PathBuf {
        mcp_core::dirs::toolkit_dir(mcp_core::dirs::BaseDir::Config).join("credentials.json")
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where new tokens go: `"<keyring> (index in <file>)"` or the file.
    pub async fn describe(&self) -> String {
        match &self.keyring {
            Some(keyring) if keyring.available().await.unwrap_or(false) => format!(
                "{} (what else is kept: {})",
                Keyring::name(),
                self.path.display()
            ),
            _ => self.path.display().to_string(),
        }
    }

    /// The credentials kept for one server.
    pub fn for_server(&self, url: &str) -> ServerTokens {
        ServerTokens {
            file: self.clone(),
            key: url.to_owned(),
            cache: Arc::default(),
        }
    }

    /// What is kept for each server, tokens read from the keyring where they are there.
    pub async fn list(&self) -> Result<BTreeMap<String, KeptTokens>, AuthError> {
        let mut listed = BTreeMap::new();
        for (url, kept) in self.read()?.servers {
            let place = if kept.in_keyring {
                TokenPlace::Keyring
            } else {
                TokenPlace::File
            };
            let (credentials, problem) = match self.complete(&url, kept).await {
                Ok(credentials) => (credentials, None),
                Err((credentials, problem)) => (credentials, Some(problem)),
            };
            listed.insert(
                url,
                KeptTokens {
                    credentials,
                    place,
                    problem,
                },
            );
        }
        Ok(listed)
    }

    /// A file entry with its token response read from the keyring when it is kept there; on
    /// failure, the entry without tokens and why.
    async fn complete(
        &self,
        url: &str,
        kept: Kept,
    ) -> Result<StoredCredentials, (StoredCredentials, String)> {
        let mut credentials = kept.credentials;
        if !kept.in_keyring {
            return Ok(credentials);
        }
        let read = match &self.keyring {
            Some(keyring) => keyring.get(url).await.map_err(|e| e.to_string()),
            None => Err(format!(
                "they are in {}, and --token-store file was asked for",
                Keyring::name()
            )),
        };
        match read {
            Ok(Some(secret)) => match serde_json::from_str(&secret) {
                Ok(tokens) => {
                    credentials.token_response = Some(tokens);
                    Ok(credentials)
                }
                Err(e) => Err((
                    credentials,
                    format!("the keyring's entry is not a token response ({e}); log in again"),
                )),
            },
            // Deleted from the keyring by hand: as if never logged in.
            Ok(None) => Ok(credentials),
            Err(problem) => Err((credentials, problem)),
        }
    }

    fn read(&self) -> Result<TokenFileContents, AuthError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                store_error(format!(
                    "{} is not a token file ({e}); move it away and log in again",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFileContents::default()),
            Err(e) => Err(store_error(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Changes the file under an exclusive lock, writing it whole and owner-only.
    fn update(&self, change: impl FnOnce(&mut TokenFileContents)) -> Result<(), AuthError> {
        let dir = self
            .path
            .parent()
            .ok_or_else(|| store_error(format!("{} has no directory", self.path.display())))?;
        create_private_dir(dir)
            .map_err(|e| store_error(format!("cannot create {}: {e}", dir.display())))?;
        let _lock = self.lock(dir)?;
        let mut contents = self.read()?;
        change(&mut contents);
        let text = serde_json::to_vec_pretty(&contents)
            .map_err(|e| store_error(format!("cannot encode the tokens: {e}")))?;
        crate::write_whole(&self.path, &text, crate::Readers::Owner)
            .map_err(|e| store_error(format!("cannot write {}: {e}", self.path.display())))
    }

    fn lock(&self, dir: &Path) -> Result<std::fs::File, AuthError> {
        let lock_path = dir.join(".credentials.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| store_error(format!("{}: {e}", lock_path.display())))?;
        file.lock()
            .map_err(|e| store_error(format!("cannot lock {}: {e}", lock_path.display())))?;
        Ok(file)
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn store_error(message: String) -> AuthError {
    AuthError::CredentialStoreError(message)
}

/// One server's entry in the [`TokenFile`], as rmcp's credential store. Reads are served from
/// memory after the first (a token is read on every request); a refresh reads the file (and
/// keyring) again, so a refresh token another `mcp` process rotated meanwhile is the one used.
#[derive(Clone)]
pub struct ServerTokens {
    file: TokenFile,
    key: String,
    cache: Arc<std::sync::Mutex<Option<Option<StoredCredentials>>>>,
}

impl ServerTokens {
    fn remember(&self, credentials: Option<StoredCredentials>) {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(credentials);
    }

    /// Puts the token response in the keyring when there is one that takes it: whether it did.
    async fn keep_in_keyring(&self, credentials: &StoredCredentials) -> Result<bool, AuthError> {
        let (Some(keyring), Some(tokens)) = (&self.file.keyring, &credentials.token_response)
        else {
            return Ok(false);
        };
        let secret = serde_json::to_string(tokens)
            .map_err(|e| store_error(format!("cannot encode the tokens: {e}")))?;
        match keyring.set(&self.key, secret).await {
            Ok(kept) => Ok(kept),
            Err(e) if keyring.required() => Err(store_error(e.to_string())),
            Err(e) => {
                tracing::warn!(
                    "{e}; the tokens for {} are kept in {} instead",
                    self.key,
                    self.file.path.display()
                );
                Ok(false)
            }
        }
    }
}

#[async_trait::async_trait]
impl CredentialStore for ServerTokens {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        if let Some(cached) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(cached);
        }
        let credentials = match self.file.read()?.servers.remove(&self.key) {
            None => None,
            Some(kept) => Some(self.file.complete(&self.key, kept).await.map_err(
                |(_, problem)| {
                    store_error(format!(
                        "the tokens for {} cannot be read: {problem}",
                        self.key
                    ))
                },
            )?),
        };
        self.remember(credentials.clone());
        Ok(credentials)
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let in_keyring = self.keep_in_keyring(&credentials).await?;
        let mut entry = credentials.clone();
        if in_keyring {
            entry.token_response = None;
        }
        let mut was_in_keyring = false;
        self.file.update(|contents| {
            was_in_keyring = contents
                .servers
                .insert(
                    self.key.clone(),
                    Kept {
                        credentials: entry,
                        in_keyring,
                    },
                )
                .is_some_and(|old| old.in_keyring);
        })?;
        if was_in_keyring
            && !in_keyring
            && let Some(keyring) = &self.file.keyring
            && let Err(e) = keyring.delete(&self.key).await
        {
            tracing::warn!("older tokens for {} stay in the keyring: {e}", self.key);
        }
        self.remember(Some(credentials));
        Ok(())
    }

    async fn clear(&self) -> Result<(), AuthError> {
        let in_keyring = self
            .file
            .read()?
            .servers
            .get(&self.key)
            .is_some_and(|kept| kept.in_keyring);
        // The keyring first: tokens it keeps are not left behind by a file entry removed.
        let deleted = match &self.file.keyring {
            Some(keyring) => keyring.delete(&self.key).await.map_err(|e| e.to_string()),
            None => Err("--token-store file leaves the keyring alone".to_owned()),
        };
        match deleted {
            Err(why) if in_keyring => {
                return Err(store_error(format!(
                    "the tokens for {} are in {} and were not forgotten ({why}); nothing was changed",
                    self.key,
                    Keyring::name()
                )));
            }
            Err(why) => tracing::debug!("keyring left alone: {why}"),
            Ok(()) => {}
        }
        self.file.update(|contents| {
            contents.servers.remove(&self.key);
        })?;
        self.remember(None);
        Ok(())
    }

    async fn acquire_refresh_guard(
        &self,
    ) -> Result<Option<rmcp::transport::auth::CredentialRefreshGuard>, AuthError> {
        *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(None)
    }
}

// ---------------------------------------------------------------------------------------------
// Authorizing

/// One server's authorization: its manager (shared with the transport, which reads the token
/// from it on every request), how to register and whom to ask.
pub struct Authorizer {
    server: String,
    url: Url,
    config: OAuthConfig,
    agent: UserAgent,
    browser: Option<PathBuf>,
    /// The transport's client: its manager holds the tokens (the HTTP client is set per
    /// connection).
    template: AuthClient<reqwest::Client>,
    step_ups: AtomicU32,
    /// Authorizations done: a request refused before the latest one is just sent again.
    generation: AtomicU64,
    /// Why the last authorization failed, for the connection's error.
    failure: std::sync::Mutex<Option<String>>,
}

impl Authorizer {
    /// An authorizer for `server` at `url`, starting from the tokens kept for it.
    pub async fn new(
        server: &str,
        url: &str,
        config: OAuthConfig,
        options: &AuthOptions,
    ) -> Result<Self, AuthError> {
        let parsed = Url::parse(url)?;
        let mut manager = AuthorizationManager::new(url).await?;
        manager.set_credential_store(options.store.for_server(url));
        // Tokens from an earlier run (none: nothing is asked of the network): find their
        // authorization server again, for refresh; tokens minted by another issuer than the one
        // the server names now are dropped.
        if let Err(error) = manager.initialize_from_store().await {
            tracing::warn!(%server, %error, "the kept tokens cannot be used");
        }
        let template = AuthClient::new(reqwest::Client::new(), manager);
        Ok(Self {
            server: server.to_owned(),
            url: parsed,
            config,
            agent: options.agent,
            browser: options.browser.clone(),
            template,
            step_ups: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            failure: std::sync::Mutex::new(None),
        })
    }

    /// The transport's HTTP client: `http` with the token added, and authorizations run as the
    /// server asks for them.
    pub fn client(self: &Arc<Self>, http: reqwest::Client) -> OAuthHttp {
        let mut inner = self.template.clone();
        inner.http_client = http;
        OAuthHttp {
            inner,
            authorizer: self.clone(),
        }
    }

    /// Gets tokens: discovery from the server's challenge (or its metadata when there is
    /// none), registration, the person's approval (or the client-credentials grant), the code
    /// exchanged. `step_up` when the challenge is a 403 `insufficient_scope`. `seen` is the
    /// [`generation`](Self::generation) the refused request was sent in: if another request
    /// authorized since, nothing is done.
    pub async fn authorize(
        &self,
        challenge: Option<&str>,
        step_up: bool,
        seen: u64,
    ) -> Result<(), AuthError> {
        let mut manager = self.template.auth_manager.lock().await;
        if self.generation() != seen {
            return Ok(());
        }
        let result = self
            .authorize_locked(&mut manager, challenge, step_up)
            .await;
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) =
            result.as_ref().err().map(|e| with_causes(e));
        result?;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Why the last authorization failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many authorizations this server has had in this process.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    async fn authorize_locked(
        &self,
        manager: &mut AuthorizationManager,
        challenge: Option<&str>,
        step_up: bool,
    ) -> Result<(), AuthError> {
        let resolution = manager.resolve_metadata_from_challenge(challenge).await?;
        let metadata = resolution.metadata;
        let as_offers_offline = metadata
            .scopes_supported
            .as_ref()
            .is_some_and(|s| s.iter().any(|s| s == "offline_access"));
        let cimd = metadata
            .additional_fields
            .get("client_id_metadata_document_supported")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        manager.set_metadata(metadata);
        // The scopes a 403 names, for a step-up.
        let challenged = challenge
            .filter(|_| step_up)
            .map(|c| WWWAuthenticateParams::parse(c, &self.url))
            .and_then(|p| p.scope);

        if self.config.grant == Grant::ClientCredentials {
            let (Some(client_id), Some(client_secret)) =
                (&self.config.client_id, &self.config.client_secret)
            else {
                return Err(AuthError::ClientCredentialsError(format!(
                    "{}: the client-credentials grant needs \"clientId\" and \"clientSecret\" in the server's \"oauth\" entry",
                    self.server
                )));
            };
            let config = ClientCredentialsConfig::ClientSecret {
                client_id: client_id.clone(),
                client_secret: client_secret.clone(),
                scopes: self.config.scopes.clone(),
                resource: Some(self.url.to_string()),
            };
            manager.validate_client_credentials_metadata(&config)?;
            manager.configure_client_credentials(&config)?;
            manager.exchange_client_credentials(&config).await?;
            return Ok(());
        }

        if self.agent == UserAgent::Refuse {
            return Err(AuthError::AuthorizationFailed(match challenged {
                Some(scope) => format!(
                    "{server} needs more access for this (the scopes {scope}): run `mcp auth login {server} {options}`",
                    server = self.server,
                    options = scope
                        .split_whitespace()
                        .map(|s| format!("--scope {s}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => format!(
                    "{server} needs you to log in: run `mcp auth login {server}`",
                    server = self.server
                ),
            }));
        }

        // The scopes, in the spec's order: the entry's own list, else (a step-up) what is held
        // plus what the server now names, else the challenge's, else the server's
        // `scopes_supported`, else none; `offline_access` added where the server offers it,
        // for a refresh token.
        let scopes: Vec<String> = if step_up {
            manager.select_scopes(challenged.as_deref(), &[])
        } else if !self.config.scopes.is_empty() {
            let mut scopes = self.config.scopes.clone();
            if as_offers_offline && !scopes.iter().any(|s| s == "offline_access") {
                scopes.push("offline_access".to_owned());
            }
            scopes
        } else {
            manager.select_initial_scopes(&[]).await
        };
        let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();

        let callback = Callback::bind(self.agent, self.config.callback_port).await?;
        let redirect_uri = callback.redirect_uri();
        let client = if let Some(client_id) = &self.config.client_id {
            let mut config = OAuthClientConfig::new(client_id.clone(), redirect_uri.clone())
                .with_scopes(scopes.clone());
            if let Some(secret) = &self.config.client_secret {
                config = config.with_client_secret(secret.clone());
            }
            config
        } else if cimd {
            let url = self
                .config
                .client_metadata_url
                .clone()
                .unwrap_or_else(|| CLIENT_METADATA_URL.to_owned());
            OAuthClientConfig::new(url, redirect_uri.clone())
                .with_scopes(scopes.clone())
                .with_application_type("native")
        } else {
            manager
                .register_client(CLIENT_NAME, &redirect_uri, &scope_refs)
                .await?
        };
        manager.configure_client(client)?;
        let mut auth_url = manager.get_authorization_url(&scope_refs).await?;
        if scopes.iter().any(|s| s == "offline_access") {
            // OpenID providers grant offline_access (a refresh token) only on a consent prompt
            // (OpenID Connect Core §11); a plain OAuth server ignores the parameter.
            let mut url = Url::parse(&auth_url)?;
            if !url.query_pairs().any(|(k, _)| k == "prompt") {
                url.query_pairs_mut().append_pair("prompt", "consent");
            }
            auth_url = url.to_string();
        }
        let answer = callback
            .approve(&self.server, &auth_url, self.browser.as_deref())
            .await?;
        manager
            .exchange_code_for_token_with_issuer(
                &answer.code,
                &answer.csrf_token,
                answer.issuer.as_deref(),
            )
            .await?;
        tracing::info!(server = %self.server, scopes = %scopes.join(" "), "authorized");
        Ok(())
    }
}

/// An error and the errors under it, as one line: "discovery failed for URL" says little
/// without the "body exceeds 1048576 bytes" under it.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Why a call failed, when an authorization is the reason: rmcp wraps it in its transport's
/// errors, whose own text (type names included) would hide it.
pub fn auth_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(auth) = current.downcast_ref::<AuthError>() {
            return Some(with_causes(auth));
        }
        source = current.source();
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The approval

/// Where the authorization server sends the browser back to.
enum Callback {
    Loopback {
        listener: tokio::net::TcpListener,
        port: u16,
        open: bool,
        paste: bool,
    },
    Direct,
}

impl Callback {
    async fn bind(agent: UserAgent, port: Option<u16>) -> Result<Self, AuthError> {
        match agent {
            UserAgent::Browser { open, paste } => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.unwrap_or(0)))
                    .await
                    .map_err(|e| {
                        AuthError::AuthorizationFailed(format!(
                            "cannot listen on 127.0.0.1 for the browser's answer: {e}"
                        ))
                    })?;
                let port = listener
                    .local_addr()
                    .map_err(|e| AuthError::InternalError(e.to_string()))?
                    .port();
                Ok(Self::Loopback {
                    listener,
                    port,
                    open,
                    paste,
                })
            }
            UserAgent::Direct => Ok(Self::Direct),
            UserAgent::Refuse => Err(AuthError::AuthorizationRequired),
        }
    }

    fn redirect_uri(&self) -> String {
        match self {
            Self::Loopback { port, .. } => format!("http://127.0.0.1:{port}/callback"),
            Self::Direct => "http://127.0.0.1/callback".to_owned(),
        }
    }

    /// The person's answer: the redirect back to us, with its code, state and issuer. Only an
    /// answer carrying this authorization's `state` is taken.
    async fn approve(
        self,
        server: &str,
        auth_url: &str,
        browser: Option<&Path>,
    ) -> Result<AuthorizationCallback, AuthError> {
        let state = Url::parse(auth_url)?
            .query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .ok_or_else(|| AuthError::InternalError("no state in the authorization URL".into()))?;
        let redirect_uri = self.redirect_uri();
        match self {
            Self::Direct => direct(auth_url, &state, &redirect_uri).await,
            Self::Loopback {
                listener,
                port: _,
                open,
                paste,
            } => {
                eprintln!(
                    "{server} needs your approval. Open this address in a browser:\n\n  {auth_url}\n"
                );
                if paste {
                    eprintln!(
                        "After you approve, the browser goes to an address starting with http://127.0.0.1; if that page does not load (the browser is on another machine), paste its address here."
                    );
                }
                if open && let Err(error) = open_browser(auth_url, browser) {
                    tracing::debug!(%error, "no browser opened");
                }
                let answer = loopback(listener, &state);
                let pasted = async {
                    if paste {
                        pasted_answer(&state).await
                    } else {
                        std::future::pending().await
                    }
                };
                tokio::select! {
                    answer = answer => answer,
                    answer = pasted => answer,
                    () = tokio::time::sleep(APPROVAL_TIMEOUT) => Err(AuthError::AuthorizationFailed(format!(
                        "no approval within {} s", APPROVAL_TIMEOUT.as_secs()
                    ))),
                }
            }
        }
    }
}

/// The answer in a redirect address, if it is the one we wait for: an `error` from the
/// authorization server becomes the error it is.
fn answer_from(url: &str, state: &str) -> Option<Result<AuthorizationCallback, AuthError>> {
    let parsed = Url::parse(url).ok()?;
    let pairs: HashMap<String, String> = parsed.query_pairs().into_owned().collect();
    if pairs.get("state").map(String::as_str) != Some(state) {
        return None;
    }
    if let Some(error) = pairs.get("error") {
        let description = pairs
            .get("error_description")
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Some(Err(AuthError::AuthorizationFailed(format!(
            "the authorization server answered {error}{description}"
        ))));
    }
    Some(AuthorizationCallback::from_redirect_url(url))
}

/// Serves the loopback redirect until our answer arrives. Anything else gets a 400 and is
/// ignored: another local process cannot end the wait with a forged answer.
async fn loopback(
    listener: tokio::net::TcpListener,
    state: &str,
) -> Result<AuthorizationCallback, AuthError> {
    use axum::{http::Uri, response::Html, routing::get};
    let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
    let state = state.to_owned();
    let app = axum::Router::new().route(
        "/callback",
        get(move |uri: Uri| {
            let sender = sender.clone();
            let state = state.clone();
            async move {
                let url = format!("http://127.0.0.1{uri}");
                match answer_from(&url, &state) {
                    Some(answer) => {
                        let ok = answer.is_ok();
                        let _ = sender.send(answer).await;
                        if ok {
                            (
                                axum::http::StatusCode::OK,
                                Html("<!doctype html><title>mcp</title><p>Approved. You can close this tab and go back to the terminal.</p>"),
                            )
                        } else {
                            (
                                axum::http::StatusCode::OK,
                                Html("<!doctype html><title>mcp</title><p>The authorization was refused; the terminal says why.</p>"),
                            )
                        }
                    }
                    None => (
                        axum::http::StatusCode::BAD_REQUEST,
                        Html("<!doctype html><title>mcp</title><p>Not the answer this login waits for.</p>"),
                    ),
                }
            }
        }),
    );
    let server = axum::serve(listener, app).into_future();
    tokio::select! {
        answer = receiver.recv() => answer.unwrap_or(Err(AuthError::AuthorizationFailed("the loopback listener ended".into()))),
        result = server => Err(AuthError::AuthorizationFailed(format!("the loopback listener ended: {result:?}"))),
    }
}

/// A redirect address pasted on standard input (a headless machine). Read on a thread of its
/// own, not tokio's blocking pool: when the loopback answers first, the read left waiting must
/// not keep the process from exiting.
async fn pasted_answer(state: &str) -> Result<AuthorizationCallback, AuthError> {
    let state = state.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let answer = loop {
            line.clear();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => {
                    break Err(AuthError::AuthorizationFailed(
                        "standard input ended before an address was pasted".into(),
                    ));
                }
                Ok(_) => match answer_from(line.trim(), &state) {
                    Some(answer) => break answer,
                    None => eprintln!(
                        "That is not the address this login waits for (it must carry its state); paste the whole address."
                    ),
                },
            }
        };
        let _ = sender.send(answer);
    });
    receiver.await.unwrap_or_else(|_| {
        Err(AuthError::InternalError(
            "the reader of standard input ended".into(),
        ))
    })
}

/// Follows the authorization server's redirects to our redirect address, with no person:
/// for a server that approves at once. Only an answer at our own redirect address is taken.
async fn direct(
    auth_url: &str,
    state: &str,
    redirect_uri: &str,
) -> Result<AuthorizationCallback, AuthError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut url = auth_url.to_owned();
    for _ in 0..10 {
        let response = http.get(&url).send().await?;
        let Some(location) = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Err(AuthError::AuthorizationFailed(format!(
                "the authorization server answered {} without sending us back",
                response.status()
            )));
        };
        let next = Url::parse(&url)?.join(location)?.to_string();
        if next.starts_with(&format!("{redirect_uri}?"))
            && let Some(answer) = answer_from(&next, state)
        {
            return answer;
        }
        // Pages of the authorization server itself may come between; anywhere else is not
        // where an approval is.
        if Url::parse(&next)?.origin() != Url::parse(auth_url)?.origin() {
            return Err(AuthError::AuthorizationFailed(format!(
                "the authorization server sent the browser to {}, not back to us",
                Url::parse(&next)?.origin().ascii_serialization()
            )));
        }
        url = next;
    }
    Err(AuthError::AuthorizationFailed(
        "more than 10 redirects".into(),
    ))
}

/// Opens `url` with `browser`, else `$BROWSER` if set, else the platform's opener.
fn open_browser(url: &str, browser: Option<&Path>) -> std::io::Result<()> {
    let mut command = if let Some(browser) = browser
        .map(|b| b.as_os_str().to_owned())
        .or_else(|| std::env::var_os("BROWSER").filter(|b| !b.is_empty()))
    {
        std::process::Command::new(browser)
    } else if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut command = std::process::Command::new("rundll32");
        command.arg("url.dll,FileProtocolHandler");
        command
    } else {
        std::process::Command::new("xdg-open")
    };
    let mut child = command
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Reaped when it ends (a browser that stays open keeps its own process).
    std::thread::spawn(move || child.wait());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The transport's HTTP client

/// rmcp's authorized client ([`AuthClient`]: the token on each request, one silent refresh on
/// a 401) with the authorizations a server asks for run in between: a 401 that a refresh does
/// not cure authorizes and sends again once; a 403 `insufficient_scope` steps up and sends
/// again, at most [`STEP_UP_LIMIT`] times in a row.
#[derive(Clone)]
pub struct OAuthHttp {
    inner: AuthClient<reqwest::Client>,
    authorizer: Arc<Authorizer>,
}

type HttpResult<T> = Result<T, StreamableHttpError<reqwest::Error>>;

impl OAuthHttp {
    /// Runs `send` (the same request each time), authorizing as the answers ask.
    async fn with_authorization<T, F, Fut>(&self, send: F) -> HttpResult<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = HttpResult<T>>,
    {
        let mut authorized = false;
        loop {
            let seen = self.authorizer.generation();
            match send().await {
                Err(StreamableHttpError::AuthRequired(challenge)) if !authorized => {
                    authorized = true;
                    self.authorizer
                        .authorize(Some(&challenge.www_authenticate_header), false, seen)
                        .await?;
                }
                Err(StreamableHttpError::InsufficientScope(challenge)) => {
                    let n = self.authorizer.step_ups.fetch_add(1, Ordering::SeqCst) + 1;
                    if n > STEP_UP_LIMIT {
                        return Err(StreamableHttpError::Auth(AuthError::InvalidScope(format!(
                            "{} still refuses with insufficient_scope after {STEP_UP_LIMIT} step-ups; giving up",
                            self.authorizer.server
                        ))));
                    }
                    tracing::info!(server = %self.authorizer.server, attempt = n, "the server asks for more scopes");
                    self.authorizer
                        .authorize(Some(&challenge.www_authenticate_header), true, seen)
                        .await?;
                }
                result => {
                    if result.is_ok() {
                        self.authorizer.step_ups.store(0, Ordering::SeqCst);
                    }
                    return result;
                }
            }
        }
    }
}

impl StreamableHttpClient for OAuthHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> HttpResult<StreamableHttpPostResponse> {
        self.with_authorization(|| {
            self.inner.post_message_with_response_limits(
                uri.clone(),
                message.clone(),
                session_id.clone(),
                auth_header.clone(),
                custom_headers.clone(),
                limits,
            )
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<()> {
        // Closing is not worth a login.
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default().max_sse_event_size,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> HttpResult<BoxStream<'static, Result<Sse, SseError>>> {
        self.with_authorization(|| {
            self.inner.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth_header.clone(),
                custom_headers.clone(),
                max_sse_event_size,
            )
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An authorization URL carrying `state`, as rmcp builds one.
    fn auth_url(state: &str) -> String {
        format!("http://127.0.0.1:9/authorize?response_type=code&state={state}")
    }

    #[tokio::test]
    async fn the_loopback_takes_only_its_own_answer() {
        let agent = UserAgent::Browser {
            open: false,
            paste: false,
        };
        let callback = Callback::bind(agent, None).await.unwrap();
        let redirect = callback.redirect_uri();
        assert!(redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"));
        let waiting =
            tokio::spawn(async move { callback.approve("server", &auth_url("ours"), None).await });
        let http = reqwest::Client::new();
        // Another local process guesses: wrong state, no state, another path. Each gets a 400
        // (or 404) and the wait goes on.
        for forged in [
            format!("{redirect}?code=evil&state=theirs"),
            format!("{redirect}?code=evil"),
            redirect.replace("/callback", "/other?code=evil&state=ours"),
        ] {
            let status = http.get(&forged).send().await.unwrap().status();
            assert!(status.is_client_error(), "{forged}: {status}");
        }
        assert!(!waiting.is_finished());
        let status = http
            .get(format!(
                "{redirect}?code=good&state=ours&iss=http%3A%2F%2Fas"
            ))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let answer = waiting.await.unwrap().unwrap();
        assert_eq!(answer.code, "good");
        assert_eq!(answer.csrf_token, "ours");
        assert_eq!(answer.issuer.as_deref(), Some("http://as"));
    }

    #[tokio::test]
    async fn a_refusal_at_the_authorization_server_ends_the_wait_with_its_reason() {
        let agent = UserAgent::Browser {
            open: false,
            paste: false,
        };
        let callback = Callback::bind(agent, None).await.unwrap();
        let redirect = callback.redirect_uri();
        let waiting =
            tokio::spawn(async move { callback.approve("s", &auth_url("st"), None).await });
        reqwest::get(format!(
            "{redirect}?error=access_denied&error_description=The+user+said+no&state=st"
        ))
        .await
        .unwrap();
        let error = waiting.await.unwrap().unwrap_err().to_string();
        assert!(
            error.contains("access_denied") && error.contains("The user said no"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_token_file_is_owner_only_keeps_every_server_and_refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mcp-toolkit/credentials.json");
        let file = TokenFile::new(path.clone());
        // Two servers saved at once, each by its own handle: both are kept.
        let saves = (0..8).map(|n| {
            let tokens = file.for_server(&format!("https://s{n}.example/mcp"));
            tokio::spawn(async move {
                tokens
                    .save(StoredCredentials::new(
                        format!("client-{n}"),
                        None,
                        vec![],
                        None,
                    ))
                    .await
            })
        });
        for save in saves {
            save.await.unwrap().unwrap();
        }
        let kept = file.list().await.unwrap();
        assert_eq!(kept.len(), 8);
        assert_eq!(
            kept["https://s3.example/mcp"].credentials.client_id,
            "client-3"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dir_mode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }
        // Clearing one leaves the others.
        file.for_server("https://s3.example/mcp")
            .clear()
            .await
            .unwrap();
        assert_eq!(file.list().await.unwrap().len(), 7);

        // A file that is not ours is reported and left as it is.
        std::fs::write(&path, "not json").unwrap();
        let error = file
            .for_server("https://s1.example/mcp")
            .save(StoredCredentials::new("c".into(), None, vec![], None))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("is not a token file"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not json");
    }
}

#[cfg(test)]
mod published {
    /// The client ID metadata document in the repository is the one the constant names, for
    /// a native client whose approvals come back to the loopback.
    #[test]
    fn the_metadata_document_names_itself_and_loopback_redirects() {
        let document: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/oauth/client-metadata.json")).unwrap();
        assert_eq!(document["client_id"], super::CLIENT_METADATA_URL);
        assert_eq!(document["application_type"], "native");
        assert_eq!(document["token_endpoint_auth_method"], "none");
        for uri in document["redirect_uris"].as_array().unwrap() {
            let uri = url::Url::parse(uri.as_str().unwrap()).unwrap();
            assert_eq!(uri.scheme(), "http");
            assert!(matches!(uri.host_str(), Some("127.0.0.1" | "localhost")));
        }
    }
}
