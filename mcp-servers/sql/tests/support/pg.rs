//! A PostgreSQL server for the tests and the benchmark: the one in `MCP_SQL_TEST_PG` (a
//! superuser URL; `.ci/run` starts one), or else a throwaway cluster started with
//! `tests/pg-cluster.sh` (needs Debian's `postgresql` package) and stopped after this process
//! exits.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The test server's superuser URL.
pub struct Cluster {
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg-cluster.sh")
}

// The watcher process outlives this one by design: it stops the cluster after we exit.
#[allow(clippy::zombie_processes)]
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        if let Ok(url) = std::env::var("MCP_SQL_TEST_PG") {
            return Cluster { url };
        }
        // In the system's temporary directory: a place the `postgres` user can reach when we
        // are root (not under /root).
        let base = std::env::temp_dir().join(format!("mcp-sql-pg-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let mut permissions = std::fs::metadata(&base).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&base, permissions).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = base.join("data");
        let output = Command::new(script())
            .arg("start")
            .arg(&data)
            .arg(port.to_string())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "could not start a PostgreSQL cluster (set MCP_SQL_TEST_PG to use a running one):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // A static is never dropped: a watcher stops the cluster once this process is gone.
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 1; done; '{script}' stop '{data}'; rm -rf '{base}'",
                pid = std::process::id(),
                script = script().display(),
                data = data.display(),
                base = base.display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Cluster {
            url: String::from_utf8(output.stdout).unwrap().trim().to_owned(),
        }
    })
}

/// The URL of `database` on the test server, as `user` (with `password`, if any).
pub fn url_for(database: &str, user: Option<(&str, Option<&str>)>) -> String {
    let mut url = url::Url::parse(&cluster().url).unwrap();
    url.set_path(&format!("/{database}"));
    if let Some((user, password)) = user {
        url.set_username(user).unwrap();
        url.set_password(password).unwrap();
    }
    url.to_string()
}

pub async fn admin(database: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&url_for(database, None), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}
