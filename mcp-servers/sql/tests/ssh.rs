//! `ssh = "user@host:port"`: a database reached through a real OpenSSH server on 127.0.0.1
//! (Debian's openssh-server, started by `tests/sshd.sh`), with the host key checked against
//! known_hosts and keys from a file or from a real ssh-agent.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::support::{ok, pg::cluster};
use mcp_core::testing::connect;
use mcp_server_sql::{Config, Options, SqlServer};
use rmcp::{ServiceExt, model::ClientConfig, transport::TokioChildProcess};
use serde_json::json;

const MCP_SQL: &str = env!("CARGO_BIN_EXE_mcp-sql");

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sshd.sh")
}

/// An sshd on an ephemeral port, stopped when dropped.
struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
}

impl Sshd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let output = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "could not start sshd (needs Debian's openssh-server):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { dir, port }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

fn user() -> String {
    String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned()
}

/// A config with one PostgreSQL database (the test cluster) behind the sshd.
fn config(sshd: &Sshd, extra: &str) -> String {
    format!(
        "[databases.remote]\nurl = \"{url}\"\nallow_privileged_role = true\nssh = \"{user}@127.0.0.1:{port}\"\n{extra}\n",
        url = cluster().url,
        user = user(),
        port = sshd.port,
    )
}

async fn open(text: &str) -> Result<SqlServer, mcp_server_sql::DbError> {
    let config = Config::parse(text, &|_| None)?;
    SqlServer::open(&config, Options::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSSH (openssh-server) and PostgreSQL; .ci/run runs it"]
async fn a_database_behind_a_bastion_is_reached_only_with_a_known_host_key() {
    let sshd = Sshd::start();
    let known_hosts = sshd.path("known_hosts");
    let key = sshd.path("id_ed25519");
    let with_key = format!(
        "ssh_key = \"{}\"\nssh_known_hosts = \"{}\"",
        key.display(),
        known_hosts.display()
    );

    // An unknown host is refused, with its fingerprint and what to do.
    let unknown = open(&config(&sshd, &with_key)).await.err().unwrap();
    assert!(
        unknown.message.contains("is not in") && unknown.message.contains("SHA256:"),
        "{}",
        unknown.message
    );
    assert!(unknown.hint.unwrap().contains("ssh-keyscan"));
    assert!(!known_hosts.exists());

    // Told to, it learns the key, and then connects through the tunnel.
    let learning = format!("{with_key}\nssh_accept_new_host = true");
    let server = open(&config(&sshd, &learning)).await.unwrap();
    let recorded = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        recorded.contains(&format!("[127.0.0.1]:{}", sshd.port))
            && recorded.contains("ssh-ed25519"),
        "{recorded}"
    );
    let client = connect(server).await.unwrap();
    let answered = client
        .call("query", json!({"sql": "SELECT inet_server_port(), 40 + 2"}))
        .await
        .unwrap();
    let pg_port = url::Url::parse(&cluster().url).unwrap().port().unwrap();
    assert_eq!(ok(&answered)["rows"][0], json!([pg_port, 42]));
    // The connection went through sshd's direct-tcpip channel to the database's port.
    let log = sshd.log();
    assert!(
        log.contains(&format!("to 127.0.0.1 port {pg_port}"))
            || log.contains(&format!("target 127.0.0.1 port {pg_port}")),
        "sshd did not forward to {pg_port}:\n{log}"
    );
    drop(client);

    // Known now: connects without being told to learn.
    assert!(open(&config(&sshd, &with_key)).await.is_ok());

    // A changed key is refused, always.
    let other = sshd.path("other_host_key");
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    let other_key = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let forged = format!(
        "[127.0.0.1]:{} {}",
        sshd.port,
        other_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    std::fs::write(&known_hosts, forged + "\n").unwrap();
    let changed = open(&config(&sshd, &learning)).await.err().unwrap();
    assert!(changed.message.contains("CHANGED"), "{}", changed.message);

    // A key the bastion does not accept.
    std::fs::write(&known_hosts, &recorded).unwrap();
    let stranger = format!(
        "ssh_key = \"{}\"\nssh_known_hosts = \"{}\"",
        other.display(),
        known_hosts.display()
    );
    let refused = open(&config(&sshd, &stranger)).await.err().unwrap();
    assert!(
        refused.message.contains("accepted none"),
        "{}",
        refused.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs OpenSSH (openssh-server, ssh-agent) and PostgreSQL; .ci/run runs it"]
async fn keys_may_come_from_the_ssh_agent() {
    let sshd = Sshd::start();
    let known_hosts = sshd.path("known_hosts");
    let agent_socket = sshd.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..50 {
        if agent_socket.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let added = Command::new("ssh-add")
        .arg(sshd.path("id_ed25519"))
        .env("SSH_AUTH_SOCK", &agent_socket)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );

    let path = sshd.path("sql.toml");
    std::fs::write(
        &path,
        config(
            &sshd,
            &format!(
                "ssh_known_hosts = \"{}\"\nssh_accept_new_host = true",
                known_hosts.display()
            ),
        ),
    )
    .unwrap();
    let mut command = tokio::process::Command::new(MCP_SQL);
    command
        .arg("--config")
        .arg(&path)
        .env("SSH_AUTH_SOCK", &agent_socket)
        .stderr(std::process::Stdio::null());
    let client = ClientConfig::default()
        .serve(TokioChildProcess::new(command).unwrap())
        .await
        .unwrap();
    let result = client
        .call_tool(mcp_core::testing::tool_call(
            "query",
            json!({ "sql": "SELECT 'through the agent'" }),
        ))
        .await
        .unwrap();
    assert_eq!(
        result.structured_content.unwrap()["rows"][0][0],
        "through the agent"
    );
    client.cancel().await.unwrap();

    // Without an agent (and no key file) the server says what to do, and does not start.
    let output = Command::new(MCP_SQL)
        .arg("--config")
        .arg(&path)
        .env_remove("SSH_AUTH_SOCK")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no SSH agent"), "{stderr}");
    let _ = agent.kill();
    let _ = agent.wait();
}
