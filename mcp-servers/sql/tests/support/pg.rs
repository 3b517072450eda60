//! A PostgreSQL server for the tests and the benchmark: the one in `MCP_SQL_TEST_PG` (a
//! superuser URL; `.ci/run` starts one), or else a throwaway cluster started with
//! `tests/pg-cluster.sh` (needs Debian's `postgresql` package) and stopped after this process
//! exits.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The test server's superuser URL.
pub struct Cluster {
    pub url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg-cluster.sh")
}

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
        let url = super::start_throwaway(
            &script(),
            &base.join("data"),
            &base,
            "a PostgreSQL cluster: set MCP_SQL_TEST_PG to use a running one",
        );
        Cluster { url }
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
