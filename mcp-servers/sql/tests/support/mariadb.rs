//! A MariaDB server for the tests: the one in `MCP_SQL_TEST_MARIADB` (a root URL; `.ci/run`
//! starts one), or else a throwaway server started with `tests/mariadb.sh` (needs Debian's
//! `mariadb-server` package) and stopped after this process exits.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use mysql_async::prelude::Queryable;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mariadb.sh")
}

/// The test server's root URL.
pub fn root_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("MCP_SQL_TEST_MARIADB") {
            return url;
        }
        let base = std::env::temp_dir().join(format!("mcp-sql-mariadb-{}", std::process::id()));
        super::start_throwaway(
            &script(),
            &base,
            &base,
            "MariaDB: set MCP_SQL_TEST_MARIADB to use a running one",
        )
    })
}

/// The URL of `database` as `user` (with `password`), or as root.
pub fn url_for(database: &str, user: Option<(&str, &str)>) -> String {
    let mut url = url::Url::parse(root_url()).unwrap();
    url.set_path(&format!("/{database}"));
    if let Some((user, password)) = user {
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
    }
    url.to_string()
}

/// A root connection to `database`.
pub async fn admin(database: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(&url_for(database, None)).unwrap();
    mysql_async::Conn::new(opts).await.unwrap()
}

/// Runs each statement as root.
pub async fn run(database: &str, statements: &[String]) {
    let mut conn = admin(database).await;
    for statement in statements {
        conn.query_drop(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Everything in `database`, schema and data, as mariadb-dump prints it.
pub fn dump(database: &str) -> String {
    let url = url::Url::parse(root_url()).unwrap();
    let output = Command::new("mariadb-dump")
        .arg("--no-defaults")
        .arg("--skip-dump-date")
        .arg("--skip-comments")
        .arg("-h")
        .arg(url.host_str().unwrap())
        .arg("-P")
        .arg(url.port().unwrap().to_string())
        .arg("-u")
        .arg(url.username())
        .arg(format!("-p{}", url.password().unwrap_or_default()))
        .arg("--routines")
        .arg(database)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
