//! The PostgreSQL store's own cases, on the server `MCP_DOCS_TEST_PG` (or
//! `MCP_DOCS_TEST_STORE`, with which the rest of the suite runs on the store too): processes that index one collection at once, a replica without the
//! source, query text that is tsquery syntax, a store without pgvector, a store out of reach.

use std::{path::Path, process::Output};

use serde_json::{Value, json};

use crate::support::{self, call, ok, refused, serve};

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

/// This test's database on the PostgreSQL server given.
fn store() -> String {
    let base = std::env::var("MCP_DOCS_TEST_PG")
        .ok()
        .filter(|url| !url.is_empty())
        .or_else(support::test_store)
        .expect(
            "MCP_DOCS_TEST_PG must name a PostgreSQL server with pgvector, as a superuser's URL \
             (.ci/run starts one)",
        );
    support::database_for_test(&base)
}

fn index(store: &str, source: &str, data: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(MCP_DOCS);
    command
        .args(["index", source, "--bm25-only", "--json", "--store", store])
        .arg("--data-dir")
        .arg(data);
    command
}

fn report(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL with pgvector (MCP_DOCS_TEST_STORE); .ci/run runs it"]
async fn replicas_share_one_index_and_updates_take_turns() {
    let store = store();
    let work = tempfile::tempdir().unwrap();
    let folder = work.path().join("handbook");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(
        folder.join("kettle.md"),
        "# Kettles\n\nDescale the kettle with citric acid.\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("bread.md"),
        "# Bread\n\nKnead the dough for ten minutes.\n",
    )
    .unwrap();
    let source = format!("handbook={}", folder.display());

    // Two processes index the collection at once, each with its own data folder (two
    // machines): one waits for the other's update, then finds the files unchanged.
    let (first, second) = tokio::join!(
        index(&store, &source, &work.path().join("one")).output(),
        index(&store, &source, &work.path().join("two")).output(),
    );
    let (first, second) = (report(&first.unwrap()), report(&second.unwrap()));
    assert_eq!(
        first["added"].as_u64().unwrap() + second["added"].as_u64().unwrap(),
        2,
        "{first}\n{second}"
    );
    let id = &support::sql(
        &store,
        "SELECT id FROM mcp_docs_collections WHERE name = 'handbook'",
    )[0];
    let counts = support::sql(
        &store,
        &format!("SELECT count(*), count(DISTINCT path) FROM mcp_docs_{id}_chunks"),
    );
    assert_eq!(counts, ["2|2"], "every chunk once");

    // A replica with no source: every collection in the store, served from it. The folder is
    // moved away, so documents can only come from the store.
    let moved = work.path().join("elsewhere");
    std::fs::rename(&folder, &moved).unwrap();
    let replica_data = work.path().join("replica");
    let replica = serve([
        "--store",
        &store,
        "--data-dir",
        replica_data.to_str().unwrap(),
    ])
    .await;
    let listed = ok(&call(&replica, "list_sources", json!({})).await);
    assert_eq!(listed["collections"][0]["name"], "handbook", "{listed}");
    assert_eq!(listed["collections"][0]["files"], 2, "{listed}");
    let found = ok(&call(&replica, "search", json!({"query": "citric"})).await);
    assert_eq!(found["hits"][0]["path"], "kettle.md", "{found}");
    let document = call(&replica, "get_document", json!({"path": "kettle.md"})).await;
    ok(&document);
    let text = &document.content[0].as_text().unwrap().text;
    assert!(text.contains("citric acid"), "{text}");
    let said = refused(&call(&replica, "reindex", json!({})).await);
    assert!(said.contains("served from the shared store"), "{said}");

    // Query text that is tsquery syntax is words, not syntax.
    for hostile in ["a & b | !c", "( ) : * ' \\ <-> <2>", "knead:* & !", "''"] {
        let answer = call(&replica, "search", json!({"query": hostile})).await;
        assert_ne!(answer.is_error, Some(true), "{hostile}: {answer:?}");
    }

    // Updated where the source is; the replica sees it without a restart.
    std::fs::rename(&moved, &folder).unwrap();
    std::fs::write(
        folder.join("limescale.md"),
        "# Limescale\n\nVinegar dissolves limescale.\n",
    )
    .unwrap();
    let again = report(
        &index(&store, &source, &work.path().join("one"))
            .output()
            .await
            .unwrap(),
    );
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(1), Some(2))
    );
    let found = ok(&call(&replica, "search", json!({"query": "vinegar"})).await);
    assert_eq!(found["hits"][0]["path"], "limescale.md", "{found}");

    // Rebuilding drops the collection's rows and writes them anew.
    let rebuilt = index(&store, &source, &work.path().join("one"))
        .arg("--rebuild")
        .output()
        .await
        .unwrap();
    assert_eq!(report(&rebuilt)["added"], 3);
    replica.cancel().await.unwrap();
}

#[test]
#[ignore = "needs PostgreSQL with pgvector (MCP_DOCS_TEST_STORE); .ci/run runs it"]
fn a_store_without_pgvector_or_out_of_reach_says_what_to_do() {
    let store = store();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("a.md"), "# A\n\nAlpha.\n").unwrap();
    let run = |url: &str| {
        std::process::Command::new(MCP_DOCS)
            .args(["index", folder.path().to_str().unwrap(), "--bm25-only"])
            .args(["--store", url])
            .arg("--data-dir")
            .arg(folder.path().join(".data"))
            .output()
            .unwrap()
    };

    // Nothing listens there.
    let away = run("postgres://docs:hunter2@127.0.0.1:1/docs");
    assert_eq!(away.status.code(), Some(2));
    let said = String::from_utf8_lossy(&away.stderr);
    assert!(said.contains("PostgreSQL store"), "{said}");
    assert!(
        !said.contains("hunter2") && !said.contains("panicked"),
        "{said}"
    );

    // A role that may not create extensions, in a database without pgvector (this test's,
    // where no mcp-docs has been yet).
    support::sql(
        &store,
        "DO $$ BEGIN CREATE ROLE docs_plain LOGIN PASSWORD 'plain-secret';
         EXCEPTION WHEN duplicate_object THEN NULL; END $$",
    );
    let mut url = url::Url::parse(&store).unwrap();
    url.set_username("docs_plain").unwrap();
    url.set_password(Some("plain-secret")).unwrap();
    let plain = run(url.as_str());
    assert_eq!(plain.status.code(), Some(2));
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("CREATE EXTENSION vector"), "{said}");
    assert!(!said.contains("plain-secret"), "{said}");
}
