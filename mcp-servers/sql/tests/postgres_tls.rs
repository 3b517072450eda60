//! TLS to a real PostgreSQL with libpq's `sslmode`: the test server is switched to TLS with a
//! certificate from a CA made here, then `mcp-sql` connects with each mode. A test binary of its
//! own, so no other test meets the server while it speaks TLS; it is switched back at the end.
//! The certificate files must be readable by the server, so the server must be local.

use std::{path::Path, process::Command, time::Duration};

use crate::support::pg::{admin, url_for};
use mcp_core::testing::{connect, text};
use mcp_server_sql::{Database, Options, SqlServer, Target};
use serde_json::json;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in [
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=mcp-sql-test-CA -keyout ca.key -out ca.pem",
        "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.pem",
    ] {
        openssl(dir, &args.split(' ').collect::<Vec<_>>());
    }
    // The server refuses a key others can read; when we are root it runs as `postgres`.
    let key = dir.join("server.key");
    let mut permissions = std::fs::metadata(&key).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o600);
    std::fs::set_permissions(&key, permissions).unwrap();
    if is_root() {
        let id = |flag: &str| -> u32 {
            let out = Command::new("id")
                .args([flag, "postgres"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        std::os::unix::fs::chown(&key, Some(id("-u")), Some(id("-g"))).unwrap();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Turns the server's TLS off again however the test ends.
struct TlsOff;

impl Drop for TlsOff {
    fn drop(&mut self) {
        let url = url_for("postgres", None);
        for sql in [
            "ALTER SYSTEM RESET ssl",
            "ALTER SYSTEM RESET ssl_cert_file",
            "ALTER SYSTEM RESET ssl_key_file",
            "SELECT pg_reload_conf()",
        ] {
            let _ = Command::new("psql")
                .args([url.as_str(), "-qAtc", sql])
                .status();
        }
    }
}

async fn encrypted(url: &str) -> Result<bool, String> {
    let target = Target::parse(url).unwrap();
    // As the cluster's superuser: TLS is what is tested here.
    let options = Options {
        allow_privileged_role: true,
        ..Options::default()
    };
    let db = Database::open(&target, options)
        .await
        .map_err(|e| e.to_string())?;
    let client = connect(SqlServer::new(db, target, options)).await.unwrap();
    let result = client
        .call(
            "query",
            json!({ "sql": "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()" }),
        )
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    Ok(result.structured_content.unwrap()["rows"][0][0] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL; .ci/run runs it"]
async fn tls_follows_libpq_sslmode() {
    let dir = std::env::temp_dir().join(format!("mcp-sql-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut permissions = std::fs::metadata(&dir).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&dir, permissions).unwrap();
    certificates(&dir);

    let root = admin("postgres").await;
    let _off = TlsOff;
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            dir.join("server.pem").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            dir.join("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        "SELECT pg_reload_conf()".to_owned(),
    ] {
        root.batch_execute(&sql).await.unwrap();
    }
    // The reload is asynchronous: wait until new sessions see TLS.
    let mut on = false;
    for _ in 0..50 {
        let fresh = admin("postgres").await;
        let ssl: String = fresh.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        if ssl == "on" {
            on = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(on, "the server did not turn TLS on; see its log");

    let base = url_for("mcp_test", None);
    let with = |query: &str| format!("{base}?{query}");
    let ca = dir.join("ca.pem").display().to_string();

    assert!(
        encrypted(&base).await.unwrap(),
        "prefer (the default) encrypts when it can"
    );
    assert!(encrypted(&with("sslmode=require")).await.unwrap());
    assert!(!encrypted(&with("sslmode=disable")).await.unwrap());
    assert!(
        encrypted(&with(&format!("sslmode=verify-full&sslrootcert={ca}")))
            .await
            .unwrap()
    );
    // Without the CA, verification must fail, and say why.
    let refused = encrypted(&with("sslmode=verify-full")).await.unwrap_err();
    assert!(
        refused.contains("cannot connect to PostgreSQL")
            && refused.to_lowercase().contains("certificate"),
        "{refused}"
    );
    // A root certificate that is not the server's CA: refused too.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    openssl(
        &other,
        &"req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=someone-else -keyout ca.key -out ca.pem"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    let wrong = encrypted(&with(&format!(
        "sslmode=require&sslrootcert={}",
        other.join("ca.pem").display()
    )))
    .await
    .unwrap_err();
    assert!(wrong.to_lowercase().contains("certificate"), "{wrong}");

    drop(_off);
    let _ = std::fs::remove_dir_all(&dir);
}
