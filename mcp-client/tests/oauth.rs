//! OAuth in the client. End to end against a real authorization server (oidc-provider,
//! `peers/node/oidc.mjs`, with a person who approves and `peers/node/browser.mjs` as her
//! browser) and our own resource server (the conformance fixture behind mcp-core's OAuth
//! checks): login, calls, a refresh without a prompt, a step-up, logout, and no token in any
//! output or config file. Then a hostile authorization server, one attack at a time: each is
//! refused with an error that says what was wrong, and nothing is stored.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use mcp_client::{
    config::{Server, Transport, UrlKind},
    connect::{ConnectError, ConnectOptions, connect},
    oauth::{AuthOptions, OAuthConfig, TokenFile, UserAgent},
};
use mcp_conformance::{everything::Everything, peers};
use mcp_core::{HttpServer, ServeArgs, Transport as Serve};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::process::Command;

const MCP: &str = env!("CARGO_BIN_EXE_mcp");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `mcp --config CONFIG ARGS…` with no terminal (so no browser unless a login asks for one),
/// the given browser, its config and cache directories in `dir`, on a machine without an OS
/// keyring (a session bus address that leads nowhere).
async fn mcp(dir: &Path, browser: &Path, args: &[&str]) -> Run {
    let nowhere = format!("unix:path={}", dir.join("no-bus").display());
    mcp_on_bus(dir, browser, &nowhere, args).await
}

/// [`mcp`] with `bus` as the session bus, where the Secret Service may answer.
async fn mcp_on_bus(dir: &Path, browser: &Path, bus: &str, args: &[&str]) -> Run {
    let output = Command::new(MCP)
        .arg("--config")
        .arg(dir.join("mcp.json"))
        .args(args)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("BROWSER", browser)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .env_remove("MCP_TOKEN_STORE")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The token file's entry for `url`.
fn kept(dir: &Path, url: &str) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join("config/mcp-toolkit/credentials.json")).ok()?;
    let file: Value = serde_json::from_str(&text).unwrap();
    file["servers"].get(url).cloned()
}

/// A "browser" for `mcp`: browser.mjs with the URL it is given, logging where it went.
fn browser_script(dir: &Path, node: &Path) -> PathBuf {
    let script = dir.join("browser.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' '{}' \"$1\" >> '{}' 2>&1\n",
            node.display(),
            peers::node_peers_dir().join("browser.mjs").display(),
            dir.join("browser.log").display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

/// The authorization requests the browser was sent to.
fn authorizations(dir: &Path, issuer: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join("browser.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.starts_with(&format!("{issuer}/auth?")))
        .map(str::to_owned)
        .collect()
}

/// oidc-provider (access tokens that live 8 s, so a refresh comes within a test) and our
/// fixture as the resource server behind it (`mcp:read` for everything, `tool_scopes` beside),
/// a config naming it `secure`, and browser.mjs as the browser, in a directory of their own.
struct Secured {
    issuer: peers::OidcProvider,
    _server: HttpServer,
    url: String,
    browser: PathBuf,
    config: String,
    home: tempfile::TempDir,
}

impl Secured {
    async fn start(tool_scopes: &[&str]) -> Self {
        let issuer = peers::OidcProvider::start(Some(8)).await.unwrap();
        let server = HttpServer::start(
            Everything::sessions(),
            &ServeArgs {
                auth_issuer: Some(issuer.url.clone()),
                auth_scopes: vec!["mcp:read".into()],
                auth_tool_scopes: tool_scopes.iter().map(|s| (*s).to_owned()).collect(),
                ..ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Serve::Http])
            },
        )
        .await
        .unwrap();
        let url = server.url("/mcp");
        let node = tokio::task::spawn_blocking(peers::node22)
            .await
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let browser = browser_script(dir.path(), &node);
        let config = json!({"mcpServers": {"secure": {"type": "http", "url": url}}}).to_string();
        std::fs::write(dir.path().join("mcp.json"), &config).unwrap();
        Self {
            issuer,
            _server: server,
            url,
            browser,
            config,
            home: dir,
        }
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (oidc-provider); .ci/run runs it"]
async fn login_calls_refresh_step_up_and_logout_against_a_real_authorization_server() {
    let scene = Secured::start(&["greet=mcp:write"]).await;
    let (issuer, url, browser, config, dir) = (
        &scene.issuer,
        scene.url.clone(),
        scene.browser.clone(),
        scene.config.clone(),
        scene.dir(),
    );
    let mut outputs = Vec::new();

    // Without a login and without a terminal, a call says what to run.
    let refused = mcp(dir, &browser, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("secure needs you to log in: run `mcp auth login secure`"),
        "{}",
        refused.stderr
    );
    assert!(kept(dir, &url).is_none());

    // Login: registration, the browser's approval (PKCE S256, the resource, the scope the
    // server's challenge names and offline_access), tokens kept owner-only with their issuer.
    let login = mcp(dir, &browser, &["auth", "login", "secure"]).await;
    assert_eq!(
        login.code,
        0,
        "{}\nthe browser's log:\n{}",
        login.stderr,
        std::fs::read_to_string(dir.join("browser.log")).unwrap_or_default()
    );
    assert!(
        login.stderr.contains("logged in to secure"),
        "{}",
        login.stderr
    );
    let asked = authorizations(dir, &issuer.url);
    assert_eq!(asked.len(), 1, "{asked:?}");
    let request = url::Url::parse(&asked[0]).unwrap();
    let params: std::collections::HashMap<_, _> = request.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["resource"], url);
    assert_eq!(params["scope"], "mcp:read offline_access");
    assert!(params["redirect_uri"].starts_with("http://127.0.0.1:"));
    let first = kept(dir, &url).expect("tokens kept");
    assert_eq!(first["issuer"], issuer.url.as_str());
    let access = first["token_response"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refresh = first["token_response"]["refresh_token"]
        .as_str()
        .expect("a refresh token (offline_access)")
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("config/mcp-toolkit/credentials.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    outputs.extend([login.stdout, login.stderr]);

    let status = mcp(dir, &browser, &["--json", "auth", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["servers"][0]["logged_in"], true);
    assert_eq!(status["servers"][0]["refresh"], true);
    assert_eq!(status["servers"][0]["issuer"], issuer.url.as_str());
    outputs.push(status.to_string());

    // A call with the kept token, no browser.
    let call = mcp(dir, &browser, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    assert!(
        call.stdout.contains("simple text response"),
        "{}",
        call.stdout
    );
    outputs.extend([call.stdout, call.stderr]);

    // The token expires: the next call refreshes it without asking anyone.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let call = mcp(dir, &browser, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    outputs.extend([call.stdout, call.stderr]);
    let second = kept(dir, &url).unwrap();
    let refreshed = second["token_response"]["access_token"].as_str().unwrap();
    assert_ne!(refreshed, access, "the token was refreshed");
    assert_eq!(authorizations(dir, &issuer.url).len(), 1, "no new approval");

    // A tool that needs a scope the token lacks: without a person, the error names it.
    let greet = mcp(
        dir,
        &browser,
        &["call", "secure", "greet", r#"{"name": "Ann"}"#],
    )
    .await;
    assert_eq!(greet.code, 3, "{}", greet.stderr);
    assert!(
        greet.stderr.contains("--scope mcp:write"),
        "{}",
        greet.stderr
    );
    outputs.extend([greet.stdout, greet.stderr]);

    // With a person (the library, a browser at hand): a step-up to the union of the scopes,
    // and the call goes through on the same connection.
    let options = ConnectOptions {
        auth: AuthOptions {
            agent: UserAgent::Browser {
                open: true,
                paste: false,
            },
            store: TokenFile::new(dir.join("config/mcp-toolkit/credentials.json")),
            browser: Some(browser.clone()),
        },
        log_dir: dir.join("cache"),
        ..ConnectOptions::default()
    };
    let entry = Server {
        name: "secure".into(),
        transport: Transport::Url {
            url: url.clone(),
            headers: Default::default(),
            kind: UrlKind::Http,
            oauth: OAuthConfig::default(),
        },
        source: dir.join("mcp.json"),
        tools: Default::default(),
    };
    let client = connect(&entry, &options).await.unwrap().client;
    let greeting = client
        .call_tool(
            CallToolRequestParams::new("greet")
                .with_arguments(json!({"name": "Ann"}).as_object().unwrap().clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        greeting.content[0].as_text().map(|t| t.text.as_str()),
        Some("Hello, Ann!")
    );
    let _ = client.cancel().await;
    let asked = authorizations(dir, &issuer.url);
    assert_eq!(asked.len(), 2, "one step-up: {asked:?}");
    let step_up = url::Url::parse(&asked[1]).unwrap();
    let scope = step_up
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .unwrap()
        .1
        .into_owned();
    assert!(
        scope.contains("mcp:read") && scope.contains("mcp:write"),
        "{scope}"
    );
    let third = kept(dir, &url).unwrap();

    // Logout forgets them; the next call is refused again.
    let logout = mcp(dir, &browser, &["auth", "logout", "secure"]).await;
    assert_eq!(logout.code, 0, "{}", logout.stderr);
    assert!(kept(dir, &url).is_none());
    let refused = mcp(dir, &browser, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(refused.code, 3);
    assert!(refused.stderr.contains("mcp auth login secure"));
    outputs.extend([logout.stdout, logout.stderr, refused.stdout, refused.stderr]);

    // No token in anything printed or in the config file.
    let config_now = std::fs::read_to_string(dir.join("mcp.json")).unwrap();
    assert_eq!(config_now, config);
    let mut secrets = vec![access, refresh];
    for record in [&second, &third] {
        for key in ["access_token", "refresh_token"] {
            if let Some(secret) = record["token_response"][key].as_str() {
                secrets.push(secret.to_owned());
            }
        }
    }
    for secret in &secrets {
        for output in outputs.iter().chain([&config_now]) {
            assert!(!output.contains(secret.as_str()), "a token was printed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The OS keyring

/// A session bus of its own with GNOME Keyring's Secret Service on it, unlocked with a known
/// password, in a temporary home: the keyring a Linux desktop has. Stopped when dropped.
struct SecretService {
    home: tempfile::TempDir,
    bus: String,
    dbus: std::process::Child,
    keyring: Option<std::process::Child>,
}

impl SecretService {
    fn start() -> Self {
        let home = tempfile::tempdir().unwrap();
        // A bus that starts no service by itself (a session bus's default configuration would
        // start the packaged keyring daemon on the first call, locked).
        let config = home.path().join("bus.conf");
        std::fs::write(
            &config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                home.path().join("bus").display()
            ),
        )
        .unwrap();
        let mut dbus = std::process::Command::new("dbus-daemon")
            .args(["--nofork", "--print-address=1"])
            .arg(format!("--config-file={}", config.display()))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dbus-daemon (Debian's dbus-daemon package; .ci/run installs it)");
        let mut address = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(dbus.stdout.take().unwrap()),
            &mut address,
        )
        .unwrap();
        let mut service = Self {
            home,
            bus: address.trim().to_owned(),
            dbus,
            keyring: None,
        };
        service.start_keyring();
        service
    }

    fn command(&self, program: &str) -> std::process::Command {
        let mut command = std::process::Command::new(program);
        command
            .env("HOME", self.home.path())
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("XDG_RUNTIME_DIR", self.home.path())
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus);
        command
    }

    /// Starts the keyring daemon, unlocked (its login keyring made on first start), and waits
    /// until it owns the Secret Service's name on the bus.
    fn start_keyring(&mut self) {
        let mut keyring = self
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon (Debian's gnome-keyring package; .ci/run installs it)");
        std::io::Write::write_all(keyring.stdin.as_mut().unwrap(), b"keyring-password").unwrap();
        drop(keyring.stdin.take());
        self.keyring = Some(keyring);
        for _ in 0..100 {
            let owned = self
                .command("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output()
                .expect("dbus-send (Debian's dbus-bin package; .ci/run installs it)");
            if String::from_utf8_lossy(&owned.stdout).contains("boolean true") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gnome-keyring-daemon did not come up on the bus");
    }

    fn stop_keyring(&mut self) {
        if let Some(mut keyring) = self.keyring.take() {
            let _ = keyring.kill();
            let _ = keyring.wait();
        }
    }

    /// The secret `mcp` keeps for `url`, as secret-tool reads it.
    fn lookup(&self, url: &str) -> Option<String> {
        let output = self
            .command("secret-tool")
            .args(["lookup", "service", "mcp-toolkit", "username", url])
            .output()
            .expect("secret-tool (Debian's libsecret-tools package; .ci/run installs it)");
        output
            .status
            .success()
            .then(|| String::from_utf8(output.stdout).unwrap())
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        self.stop_keyring();
        let _ = self.dbus.kill();
        let _ = self.dbus.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (oidc-provider), dbus-daemon, gnome-keyring-daemon and secret-tool; .ci/run runs it"]
async fn tokens_live_in_the_os_keyring_where_there_is_one() {
    let mut keyring = SecretService::start();
    let scene = Secured::start(&[]).await;
    let (issuer, url, browser, dir) = (
        &scene.issuer,
        scene.url.clone(),
        scene.browser.clone(),
        scene.dir(),
    );
    let bus = keyring.bus.clone();
    let file = dir.join("config/mcp-toolkit/credentials.json");
    let mut outputs = Vec::new();

    // Login: the tokens go to the keyring; the file keeps the rest and says where they are.
    let login = mcp_on_bus(dir, &browser, &bus, &["auth", "login", "secure"]).await;
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert!(
        login
            .stderr
            .contains("the tokens are in the Secret Service keyring"),
        "{}",
        login.stderr
    );
    let entry = kept(dir, &url).expect("an entry in the token file");
    assert_eq!(entry["in_keyring"], true);
    assert!(entry["token_response"].is_null(), "{entry}");
    assert_eq!(entry["issuer"], issuer.url.as_str());
    let secret: Value =
        serde_json::from_str(&keyring.lookup(&url).expect("a keyring entry")).unwrap();
    let access = secret["access_token"].as_str().unwrap().to_owned();
    let refresh = secret["refresh_token"]
        .as_str()
        .expect("a refresh token (offline_access)")
        .to_owned();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&access) && !text.contains(&refresh));
    outputs.extend([login.stdout, login.stderr]);

    let status = mcp_on_bus(dir, &browser, &bus, &["--json", "auth", "status"]).await;
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["servers"][0]["logged_in"], true, "{status}");
    assert_eq!(status["servers"][0]["kept_in"], "keyring");
    assert_eq!(status["servers"][0]["refresh"], true);

    // Calls read the token from the keyring; a refresh writes the new one there.
    let call = mcp_on_bus(dir, &browser, &bus, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    outputs.extend([call.stdout, call.stderr]);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let call = mcp_on_bus(dir, &browser, &bus, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(call.code, 0, "{}", call.stderr);
    outputs.extend([call.stdout, call.stderr]);
    let secret: Value = serde_json::from_str(&keyring.lookup(&url).unwrap()).unwrap();
    let refreshed = secret["access_token"].as_str().unwrap().to_owned();
    assert_ne!(refreshed, access, "refreshed in the keyring");
    assert_eq!(authorizations(dir, &issuer.url).len(), 1, "no new approval");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains(&refreshed));

    // `--token-store file` does not reach into the keyring, and says why the tokens are missing.
    let filed = mcp_on_bus(
        dir,
        &browser,
        &bus,
        &[
            "--token-store",
            "file",
            "call",
            "secure",
            "test_simple_text",
        ],
    )
    .await;
    assert_eq!(filed.code, 3, "{}", filed.stderr);
    assert!(
        filed.stderr.contains("--token-store file was asked for"),
        "{}",
        filed.stderr
    );

    // The keyring gone: a call says which keyring cannot be read; `--token-store keyring`
    // refuses to fall back to the file; nothing is lost.
    keyring.stop_keyring();
    let gone = mcp_on_bus(dir, &browser, &bus, &["call", "secure", "test_simple_text"]).await;
    assert_eq!(gone.code, 3, "{}", gone.stderr);
    assert!(
        gone.stderr
            .contains("the Secret Service keyring is not available now"),
        "{}",
        gone.stderr
    );
    let required = mcp_on_bus(
        dir,
        &browser,
        &bus,
        &["--token-store", "keyring", "auth", "logout", "secure"],
    )
    .await;
    assert_ne!(required.code, 0, "{}", required.stderr);
    assert!(
        required.stderr.contains("cannot be used here"),
        "{}",
        required.stderr
    );
    let logout = mcp_on_bus(dir, &browser, &bus, &["auth", "logout", "secure"]).await;
    assert_ne!(logout.code, 0, "{}", logout.stderr);
    assert!(
        logout.stderr.contains("nothing was changed"),
        "{}",
        logout.stderr
    );
    assert_eq!(kept(dir, &url).unwrap()["in_keyring"], true);
    outputs.extend([gone.stderr, required.stderr, logout.stderr]);

    // Back again (the keyring unlocked): logout forgets the tokens in both places.
    keyring.start_keyring();
    let logout = mcp_on_bus(dir, &browser, &bus, &["auth", "logout", "secure"]).await;
    assert_eq!(logout.code, 0, "{}", logout.stderr);
    assert!(logout.stderr.contains("logged out"), "{}", logout.stderr);
    assert_eq!(keyring.lookup(&url), None, "gone from the keyring");
    assert!(kept(dir, &url).is_none());
    outputs.extend([logout.stdout, logout.stderr]);
    for output in &outputs {
        for secret in [&access, &refresh, &refreshed] {
            assert!(!output.contains(secret.as_str()), "a token was printed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A hostile authorization server

/// What the hostile server does wrong.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attack {
    /// Sends the browser back with another issuer's `iss` (a mix-up, RFC 9207).
    WrongIssuer,
    /// Its resource metadata names another server as the resource.
    OtherResource,
    /// Its authorization-server metadata never ends (64 MiB).
    HugeMetadata,
    /// Its metadata is not JSON.
    NotJson,
    /// Its metadata redirects to another origin.
    CrossOriginRedirect,
    /// Sends the browser back to another origin with the code.
    ForeignRedirect,
}

struct Hostile {
    attack: Attack,
    base: String,
    /// Where the hostile server sends the metadata request (another origin).
    elsewhere: String,
    /// The paths asked for, in order.
    seen: Mutex<Vec<String>>,
}

async fn hostile_mcp(State(h): State<Arc<Hostile>>) -> Response {
    h.seen.lock().unwrap().push("/mcp".into());
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!(
                "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
                h.base
            ),
        )],
    )
        .into_response()
}

async fn hostile_resource(State(h): State<Arc<Hostile>>) -> Response {
    h.seen.lock().unwrap().push("prm".into());
    let resource = if h.attack == Attack::OtherResource {
        "http://127.0.0.1:9/elsewhere/mcp".to_owned()
    } else {
        format!("{}/mcp", h.base)
    };
    axum::Json(json!({"resource": resource, "authorization_servers": [h.base]})).into_response()
}

async fn hostile_metadata(State(h): State<Arc<Hostile>>) -> Response {
    h.seen.lock().unwrap().push("as-metadata".into());
    match h.attack {
        Attack::HugeMetadata => {
            let chunk = bytes::Bytes::from(vec![b' '; 1 << 20]);
            let body = futures::stream::iter(
                std::iter::once(Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"{\"issuer\": \"",
                )))
                .chain(std::iter::repeat_n(chunk, 64).map(Ok)),
            );
            (
                [(header::CONTENT_TYPE, "application/json")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
        Attack::NotJson => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Sign in</body></html>",
        )
            .into_response(),
        Attack::CrossOriginRedirect => (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                header::LOCATION,
                format!("{}/.well-known/oauth-authorization-server", h.elsewhere),
            )],
        )
            .into_response(),
        _ => axum::Json(json!({
            "issuer": h.base,
            "authorization_endpoint": format!("{}/authorize", h.base),
            "token_endpoint": format!("{}/token", h.base),
            "registration_endpoint": format!("{}/register", h.base),
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        }))
        .into_response(),
    }
}

async fn hostile_register(State(h): State<Arc<Hostile>>) -> Response {
    h.seen.lock().unwrap().push("register".into());
    (
        StatusCode::CREATED,
        axum::Json(json!({"client_id": "hostile-client", "redirect_uris": []})),
    )
        .into_response()
}

async fn hostile_authorize(
    State(h): State<Arc<Hostile>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    h.seen.lock().unwrap().push("authorize".into());
    let state = query.get("state").cloned().unwrap_or_default();
    let redirect = query.get("redirect_uri").cloned().unwrap_or_default();
    let (target, iss) = match h.attack {
        Attack::WrongIssuer => (redirect, "http://evil.example".to_owned()),
        Attack::ForeignRedirect => ("http://evil.example/callback".to_owned(), h.base.clone()),
        _ => (redirect, h.base.clone()),
    };
    let mut location = url::Url::parse(&target).unwrap();
    location
        .query_pairs_mut()
        .append_pair("code", "stolen-code")
        .append_pair("state", &state)
        .append_pair("iss", &iss);
    (
        StatusCode::FOUND,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

async fn hostile_token(State(h): State<Arc<Hostile>>, _headers: HeaderMap) -> Response {
    h.seen.lock().unwrap().push("token".into());
    axum::Json(json!({"access_token": "hostile-token", "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

/// Connects to a hostile server with `attack`: the error, what it was asked for, and the
/// token file afterwards.
async fn against(attack: Attack) -> (ConnectError, Vec<String>, Option<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    // The other origin a redirect leads to: a well-behaved metadata document.
    let elsewhere = serve(Router::new().route(
        "/.well-known/oauth-authorization-server",
        get(|| async { axum::Json(json!({"issuer": "x", "authorization_endpoint": "http://x/a", "token_endpoint": "http://x/t"})) }),
    ))
    .await;
    let hostile = Arc::new(Hostile {
        attack,
        base: base.clone(),
        elsewhere,
        seen: Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/mcp", post(hostile_mcp).get(hostile_mcp))
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(hostile_resource),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(hostile_metadata),
        )
        .route("/register", post(hostile_register))
        .route("/authorize", get(hostile_authorize))
        .route("/token", post(hostile_token))
        .with_state(hostile.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("credentials.json");
    let options = ConnectOptions {
        timeout: Duration::from_secs(60),
        auth: AuthOptions {
            agent: UserAgent::Direct,
            store: TokenFile::new(tokens.clone()),
            browser: None,
        },
        log_dir: dir.path().to_owned(),
        ..ConnectOptions::default()
    };
    let server = Server {
        name: "hostile".into(),
        transport: Transport::Url {
            url: format!("{base}/mcp"),
            headers: Default::default(),
            kind: UrlKind::Http,
            oauth: OAuthConfig::default(),
        },
        source: dir.path().join("mcp.json"),
        tools: Default::default(),
    };
    let error = match connect(&server, &options).await {
        Ok(_) => panic!("{attack:?}: the connection was made"),
        Err(error) => error,
    };
    let seen = hostile.seen.lock().unwrap().clone();
    (error, seen, std::fs::read_to_string(&tokens).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_authorization_server_is_refused_and_nothing_is_stored() {
    for (attack, says) in [
        (Attack::WrongIssuer, "issuer mismatch"),
        (Attack::OtherResource, "resource mismatch"),
        (Attack::HugeMetadata, "exceeds"),
        (Attack::NotJson, "none published usable metadata"),
        (Attack::CrossOriginRedirect, "redirect"),
        (Attack::ForeignRedirect, "not back to us"),
    ] {
        let (error, seen, tokens) = against(attack).await;
        let message = error.to_string();
        assert!(
            matches!(error, ConnectError::Auth { .. }),
            "{attack:?}: {message}"
        );
        assert!(
            message.to_lowercase().contains(says),
            "{attack:?}: {message}"
        );
        // Nothing kept: no token, no registration.
        let stored = tokens.unwrap_or_default();
        assert!(
            !stored.contains("hostile-token") && !stored.contains("hostile-client"),
            "{attack:?}: {stored}"
        );
        // Whatever the metadata said, no token was asked for with a code from a browser sent
        // elsewhere or a mixed-up issuer; broken metadata stops before the approval.
        assert!(!seen.iter().any(|s| s == "token"), "{attack:?}: {seen:?}");
        if matches!(
            attack,
            Attack::OtherResource
                | Attack::HugeMetadata
                | Attack::NotJson
                | Attack::CrossOriginRedirect
        ) {
            assert!(
                !seen.iter().any(|s| s == "authorize" || s == "register"),
                "{attack:?}: {seen:?}"
            );
        }
        eprintln!("{attack:?}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Node.js and npm (oidc-provider); .ci/run runs it"]
async fn an_unattended_client_gets_its_tokens_by_client_credentials() {
    let issuer = peers::OidcProvider::start(None).await.unwrap();
    let server = HttpServer::start(
        Everything::sessions(),
        &ServeArgs {
            auth_issuer: Some(issuer.url.clone()),
            auth_scopes: vec!["mcp:read".into()],
            ..ServeArgs::http("127.0.0.1:0".parse().unwrap(), &[Serve::Http])
        },
    )
    .await
    .unwrap();
    let url = server.url("/mcp");
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The secret comes from the environment; the entry only names it.
    let config = json!({"mcpServers": {"batch": {"type": "http", "url": url, "oauth": {
        "grant": "client_credentials", "clientId": "mcp-test", "clientSecret": "${BATCH_SECRET}",
        "scopes": ["mcp:read"]}}}})
    .to_string();
    std::fs::write(dir.join("mcp.json"), &config).unwrap();
    let output = Command::new(MCP)
        .arg("--config")
        .arg(dir.join("mcp.json"))
        .args(["call", "batch", "test_simple_text"])
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("BATCH_SECRET", "secret")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("simple text response"));
    let kept = kept(dir, &url).expect("the token is kept");
    let token = kept["token_response"]["access_token"].as_str().unwrap();
    assert!(!stderr.contains(token) && !stderr.contains("secret"));
    assert_eq!(kept["client_id"], "mcp-test");
    // No person was needed (without a terminal any approval would have been refused), and the
    // secret is in no file.
    let stored = std::fs::read_to_string(dir.join("config/mcp-toolkit/credentials.json")).unwrap();
    assert!(!stored.contains("\"secret\""), "{stored}");
}
