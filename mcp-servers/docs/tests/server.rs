//! The `mcp-docs` binary: the CLI (index, search, their JSON, exit codes) and the MCP server over
//! stdio with rmcp as the client (every tool, progress while reindexing, resources), and a second
//! process refused while the first holds the index.

use crate::support::{self, call, ok};

use std::{path::Path, process::Stdio};

use mcp_core::testing::ProgressRecorder;
use rmcp::{
    ServiceExt as _,
    model::{
        CallToolRequestParams, NumberOrString, ProgressToken, ReadResourceRequestParams,
        RequestParamsMeta as _,
    },
    transport::TokioChildProcess,
};
use serde_json::{Value, json};

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

/// `mcp-docs ARGS… --data-dir DATA` on the store the tests run on.
fn cli(args: &[&str], data: &Path) -> std::process::Output {
    std::process::Command::new(MCP_DOCS)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .envs(support::store_env())
        .output()
        .unwrap()
}

/// The same on the local store, whatever the tests run on.
fn local_cli(args: &[&str], data: &Path) -> std::process::Output {
    std::process::Command::new(MCP_DOCS)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("MCP_DOCS_STORE")
        .output()
        .unwrap()
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn the_cli_indexes_searches_and_says_what_failed() {
    support::ensure_model();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    support::library(root.path());
    let dir = root.path().to_str().unwrap();
    let index = cli(&["index", dir, "--json"], data.path());
    // Indexed, but two files failed: exit 1 and both named.
    assert_eq!(
        index.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&index.stderr)
    );
    let report: Value = serde_json::from_slice(&index.stdout).unwrap();
    assert_eq!(report["added"], 7);
    assert_eq!(report["failed"].as_array().unwrap().len(), 2);

    let search = cli(
        &[
            "search",
            "zebras crossing the plains",
            dir,
            "--json",
            "-k",
            "3",
        ],
        data.path(),
    );
    assert!(
        search.status.success(),
        "{}",
        String::from_utf8_lossy(&search.stderr)
    );
    let hits: Value = serde_json::from_slice(&search.stdout).unwrap();
    assert_eq!(hits[0]["path"], "papers/zebra.pdf");

    let human = cli(&["search", "kettle", dir, "--mode", "bm25"], data.path());
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.starts_with("1. guide/install.md:"), "{text}");
    assert!(text.contains("**kettle**"), "{text}");

    // Nothing there, and a folder never indexed: clear errors, exit 2.
    let missing = cli(&["index", &format!("{dir}/notes/nothing.txt")], data.path());
    assert_eq!(missing.status.code(), Some(2));
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(
        said.contains("nothing.txt") && said.contains("give a folder or a file"),
        "{said}"
    );
    let (empty, unindexed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let never = cli(
        &["search", "x", unindexed.path().to_str().unwrap()],
        empty.path(),
    );
    assert_eq!(never.status.code(), Some(2));
    let said = String::from_utf8_lossy(&never.stderr);
    assert!(
        said.contains("run `mcp-docs index") && said.contains("` first"),
        "{said}"
    );
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn an_index_from_another_version_says_rebuild_and_rebuild_works() {
    support::ensure_model();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.md"), "# Anchors\n\nAweigh.\n").unwrap();
    let dir = root.path().to_str().unwrap();
    // A tantivy index with another schema, as an older mcp-docs might have left.
    {
        let mut schema = tantivy::schema::Schema::builder();
        schema.add_text_field("body", tantivy::schema::TEXT);
        std::fs::create_dir_all(data.path().join("tantivy")).unwrap();
        tantivy::Index::create_in_dir(data.path().join("tantivy"), schema.build()).unwrap();
    }
    let search = local_cli(&["search", "anchors", dir], data.path());
    assert_eq!(search.status.code(), Some(2));
    let message = String::from_utf8_lossy(&search.stderr);
    assert!(
        message.contains("another version of mcp-docs") && message.contains("--rebuild"),
        "{message}"
    );
    let rebuilt = local_cli(&["index", dir, "--rebuild", "--json"], data.path());
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let search = local_cli(&["search", "anchors", dir, "--json"], data.path());
    let hits: Value = serde_json::from_slice(&search.stdout).unwrap();
    assert_eq!(hits[0]["path"], "a.md");

    // A named model (fastembed's, from Hugging Face) needs the `hub` feature; without it the
    // request is refused, not quietly turned into BM25.
    if !cfg!(feature = "hub") {
        let named = local_cli(
            &[
                "search",
                "anchors",
                dir,
                "--model",
                "BAAI/bge-small-en-v1.5",
            ],
            data.path(),
        );
        assert_eq!(named.status.code(), Some(2));
        let message = String::from_utf8_lossy(&named.stderr);
        assert!(message.contains("--features hub"), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
async fn the_server_answers_every_tool_reports_progress_and_holds_the_index() {
    tokio::task::spawn_blocking(support::ensure_model)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    support::library(root.path());
    let mut command = tokio::process::Command::new(MCP_DOCS);
    command
        .args(["serve", root.path().to_str().unwrap(), "--data-dir"])
        .arg(data.path())
        .envs(support::store_env());
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let recorder = ProgressRecorder::default();
    let client = recorder.clone().serve(transport).await.unwrap();

    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for name in [
        "search",
        "get_document",
        "list_sources",
        "index_status",
        "reindex",
    ] {
        assert!(tools.contains(&name.to_owned()), "{tools:?}");
    }

    // The server indexed the folder before answering.
    let found = ok(&call(
        &client,
        "search",
        json!({"query": "pruning apple trees in winter", "k": 3}),
    )
    .await);
    assert_eq!(found["mode"], "hybrid");
    let hit = &found["hits"][0];
    assert_eq!(hit["path"], "site/page.html");
    let lines = hit["lines"].as_array().unwrap();
    let document = call(
        &client,
        "get_document",
        json!({"path": "site/page.html", "start_line": lines[0], "end_line": lines[1]}),
    )
    .await;
    assert!(
        document.content[0]
            .as_text()
            .unwrap()
            .text
            .contains("Prune the apple trees")
    );
    let outside = call(
        &client,
        "get_document",
        json!({"path": "../secret/plans.md"}),
    )
    .await;
    assert_eq!(outside.is_error, Some(true));

    // Fitted to a token budget: whole passages, cited, the answer within the budget.
    for budget in [120, 400] {
        let result = call(
            &client,
            "search",
            json!({"query": "kettle installer restart", "mode": "bm25", "max_tokens": budget}),
        )
        .await;
        let fitted = ok(&result);
        assert!(fitted.get("hits").is_none(), "{fitted}");
        let passages = fitted["passages"].as_array().unwrap();
        assert!(!passages.is_empty(), "{fitted}");
        assert_eq!(passages[0]["path"], "guide/install.md");
        assert!(passages[0]["headings"].as_array().is_some(), "{fitted}");
        let used = fitted["tokens"].as_u64().unwrap();
        assert!(used <= budget, "{fitted}");
        let text = &result.content[0].as_text().unwrap().text;
        assert!(
            mcp_server_docs::budget::tokens(text) <= budget as usize,
            "{text}"
        );
        assert!(text.starts_with("[1] guide/install.md:"), "{text}");
    }
    let too_small = call(
        &client,
        "search",
        json!({"query": "kettle", "max_tokens": 10}),
    )
    .await;
    assert_eq!(too_small.is_error, Some(true));

    let status = ok(&call(&client, "index_status", json!({})).await);
    assert_eq!(status["files"], 7);
    assert_eq!(status["failures"].as_array().unwrap().len(), 2);
    let sources = ok(&call(&client, "list_sources", json!({})).await);
    assert_eq!(sources["total"], 7);

    // Reindex after a change, with progress notifications.
    std::fs::write(
        root.path().join("notes/new.md"),
        "# Gear\n\nPack the ice axe.\n",
    )
    .unwrap();
    let mut request = CallToolRequestParams::new("reindex");
    request.set_progress_token(ProgressToken(NumberOrString::Number(7)));
    let report = ok(&client.call_tool(request).await.unwrap());
    assert_eq!(report["added"], 1);
    assert_eq!(report["embedded"], 1);
    // Every notification is sent before the response; rmcp's client may hand the last ones to
    // its handler a moment after returning the response.
    for _ in 0..100 {
        let seen = recorder.received();
        if seen.iter().any(|p| {
            p.total == Some(p.progress)
                && p.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("writing"))
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let progress = recorder.received();
    assert!(!progress.is_empty(), "no progress notifications");
    // One token (rmcp's client puts its own on every request), distinct values (rmcp's client
    // may hand them to the handler out of order), and the end reported.
    assert!(
        progress
            .iter()
            .all(|p| p.progress_token == progress[0].progress_token),
        "{progress:?}"
    );
    let last = progress
        .iter()
        .max_by(|a, b| a.progress.total_cmp(&b.progress))
        .unwrap();
    assert_eq!(Some(last.progress), last.total, "{progress:?}");
    assert!(
        last.message.as_deref().unwrap().starts_with("writing"),
        "{progress:?}"
    );
    let found = ok(&call(
        &client,
        "search",
        json!({"query": "ice axe", "mode": "bm25"}),
    )
    .await);
    assert_eq!(found["hits"][0]["path"], "notes/new.md");

    // Documents as resources.
    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "docs://notes/new.md"));
    let read = client
        .read_resource(ReadResourceRequestParams::new("docs://notes/new.md"))
        .await
        .unwrap();
    assert!(serde_json::to_string(&read).unwrap().contains("ice axe"));

    // A second process on the same index, while this one serves: locally it is refused
    // (tantivy's lock); in PostgreSQL it updates the shared index, finding nothing changed.
    let second = tokio::process::Command::new(MCP_DOCS)
        .args(["index", root.path().to_str().unwrap(), "--data-dir"])
        .arg(data.path())
        .envs(support::store_env())
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr),
    );
    if support::test_store().is_none() {
        assert_eq!(second.status.code(), Some(2));
        assert!(stderr.contains("in use by another mcp-docs"), "{stderr}");
    } else {
        // Exit 1: the library's broken files are still reported as failures.
        assert_eq!(second.status.code(), Some(1), "{stderr}");
        assert!(stdout.contains("0 added, 0 updated"), "{stdout}");
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
async fn serve_watch_follows_the_folder() {
    tokio::task::spawn_blocking(support::ensure_model)
        .await
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.md"), "# A\n\nAlpha centauri.\n").unwrap();
    let mut command = tokio::process::Command::new(MCP_DOCS);
    command
        .args([
            "serve",
            "--watch",
            root.path().to_str().unwrap(),
            "--data-dir",
        ])
        .arg(data.path())
        .envs(support::store_env());
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = ProgressRecorder::default().serve(transport).await.unwrap();
    let find = async |query: &str| -> Vec<String> {
        let found = ok(&call(&client, "search", json!({"query": query, "mode": "bm25"})).await);
        found["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(find("centauri").await, vec!["a.md"]);

    // A new file, an edit and a deletion are each seen without asking.
    std::fs::write(root.path().join("b.md"), "# B\n\nBetelgeuse is red.\n").unwrap();
    std::fs::write(root.path().join("a.md"), "# A\n\nAldebaran now.\n").unwrap();
    let mut seen = false;
    for _ in 0..200 {
        if find("betelgeuse").await == vec!["b.md"] && find("aldebaran").await == vec!["a.md"] {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the changes were not indexed");
    assert!(find("centauri").await.is_empty());
    std::fs::remove_file(root.path().join("b.md")).unwrap();
    let mut gone = false;
    for _ in 0..200 {
        if find("betelgeuse").await.is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the deleted file is still found");
    client.cancel().await.unwrap();
}
