//! Named collections through the `mcp-docs` binary (BM25 only: no model needed): `index` and
//! `serve` with `NAME=SOURCE…`, a file as a source, one collection's index left byte for byte as
//! it was while others are added and updated, and every tool told a collection or not.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rmcp::model::ReadResourceRequestParams;

use crate::support::{call, ok, refused, serve};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

fn mcp_docs(args: &[&str]) -> std::process::Output {
    std::process::Command::new(MCP_DOCS)
        .args(args)
        .envs(crate::support::store_env())
        .output()
        .unwrap()
}

/// Every file under `dir` with the hash of its bytes and its modification time.
fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut files = BTreeMap::new();
    for entry in walkdir(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        let modified = std::fs::metadata(&entry).unwrap().modified().unwrap();
        files.insert(entry, (Sha256::digest(&bytes).to_vec(), modified));
    }
    files
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Three sources: two folders that both have a README.md, and a recipe file among files that
/// are not part of it.
fn sources(base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let handbook = base.join("handbook");
    let notes = base.join("notes");
    let kitchen = base.join("kitchen");
    for dir in [&handbook, &notes, &kitchen] {
        std::fs::create_dir(dir).unwrap();
    }
    for (path, text) in [
        (
            handbook.join("README.md"),
            "# Handbook\n\nDescale the kettle every month with citric acid.\n",
        ),
        (
            handbook.join("safety.md"),
            "# Safety\n\nNever fill the kettle above the line.\n",
        ),
        (
            notes.join("README.md"),
            "# Notes\n\nThe old kettle whistles; the ice axe is in the shed.\n",
        ),
        (
            kitchen.join("recipe.md"),
            "# Flatbread\n\nKnead the dough with yoghurt and rest it.\n",
        ),
        (
            kitchen.join("shopping.md"),
            "# Shopping\n\nyoghurt flour kettle\n",
        ),
    ] {
        std::fs::write(path, text).unwrap();
    }
    (handbook, notes, kitchen.join("recipe.md"))
}

#[test]
fn indexing_a_collection_leaves_the_others_index_as_it_was() {
    let base = tempfile::tempdir().unwrap();
    let (handbook, notes, recipe) = sources(base.path());
    let data = base.path().join("data");
    let data_arg = data.to_str().unwrap();
    let spec = |name: &str, path: &Path| format!("{name}={}", path.display());

    // `index SPECS… --json`, which must succeed: its report.
    let index = |specs: &[String]| -> Value {
        let mut args = vec!["index".to_owned()];
        args.extend(specs.iter().cloned());
        args.extend(["--bm25-only", "--data-dir", data_arg, "--json"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = mcp_docs(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    };

    let report = index(&[spec("handbook", &handbook), spec("notes", &notes)]);
    assert_eq!(report["added"], 3, "{report}");
    let names: Vec<&str> = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["collection"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["handbook", "notes"]);
    assert_eq!(report["collections"][0]["added"], 2);
    // The notes collection's index: its files locally, its rows in PostgreSQL.
    let notes_fingerprint = || match crate::support::test_store() {
        None => format!("{:?}", fingerprint(&data.join("notes"))),
        Some(_) => crate::support::stored_rows("notes").join("\n"),
    };
    let notes_index = notes_fingerprint();
    assert!(notes_index.len() > 10, "{notes_index}");

    // The handbook changes and a file joins as a third collection; notes is not named at all.
    std::fs::write(
        handbook.join("descale.md"),
        "# Descaling\n\nvinegar works too\n",
    )
    .unwrap();
    let report = index(&[spec("handbook", &handbook), spec("recipe", &recipe)]);
    assert_eq!(report["collections"][0]["added"], 1, "{report}");
    assert_eq!(report["collections"][0]["unchanged"], 2, "{report}");
    // A file's collection holds that file, not its neighbours.
    assert_eq!(report["collections"][1]["added"], 1, "{report}");
    assert_eq!(notes_fingerprint(), notes_index);

    // Searched together or one at a time; hits name their collection.
    let search = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "search".to_owned(),
            "kettle".to_owned(),
            spec("handbook", &handbook),
            spec("notes", &notes),
            spec("recipe", &recipe),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["--data-dir", data_arg, "--bm25-only", "--json"].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = mcp_docs(&args);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&output.stdout).unwrap()
    };
    let all = search(&[]);
    let from: std::collections::BTreeSet<&str> = all
        .iter()
        .map(|h| h["collection"].as_str().unwrap())
        .collect();
    assert_eq!(from, ["handbook", "notes"].into(), "{all:#?}");
    let only = search(&["--collection", "notes"]);
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["path"], "README.md");
    let none = mcp_docs(&[
        "search",
        "kettle",
        &spec("notes", &notes),
        "--collection",
        "nope",
        "--data-dir",
        data_arg,
        "--bm25-only",
    ]);
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no collection \"nope\""));

    // Names that clash, and names that are not names, are refused before anything is written.
    let clash = mcp_docs(&[
        "index",
        &spec("a", &handbook),
        &spec("a", &notes),
        "--bm25-only",
        "--data-dir",
        data_arg,
    ]);
    assert_eq!(clash.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&clash.stderr).contains("NAME=SOURCE"));
    let climbing = mcp_docs(&[
        "index",
        &format!("../x={}", notes.display()),
        "--bm25-only",
        "--data-dir",
        data_arg,
    ]);
    assert_eq!(climbing.status.code(), Some(2));
    assert!(!data.join("x").exists() && !base.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_serves_named_collections_and_every_tool_takes_one() {
    let base = tempfile::tempdir().unwrap();
    let (handbook, notes, recipe) = sources(base.path());
    let data = base.path().join("data");
    let client = serve([
        format!("handbook={}", handbook.display()),
        format!("notes={}", notes.display()),
        format!("recipe={}", recipe.display()),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;

    let listed = ok(&call(&client, "list_sources", json!({})).await);
    let collections = listed["collections"].as_array().unwrap();
    let summary: Vec<(&str, &str, u64)> = collections
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["kind"].as_str().unwrap(),
                c["files"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("handbook", "folder", 2),
            ("notes", "folder", 1),
            ("recipe", "file", 1)
        ]
    );
    assert!(collections.iter().all(|c| c["updated_at"].is_i64()));
    assert_eq!(listed["total"], 4);
    let of_notes = ok(&call(&client, "list_sources", json!({"collection": "notes"})).await);
    assert_eq!(of_notes["total"], 1);
    assert_eq!(of_notes["sources"][0]["collection"], "notes");

    // Search: everywhere, or in one collection; an unknown one is refused with the names.
    let found = ok(&call(
        &client,
        "search",
        json!({"query": "kettle", "mode": "bm25"}),
    )
    .await);
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3, "{found}");
    assert!(hits.iter().any(|h| h["collection"] == "notes"));
    let narrowed = ok(&call(
        &client,
        "search",
        json!({"query": "kettle", "mode": "bm25", "collection": "handbook"}),
    )
    .await);
    let narrowed = narrowed["hits"].as_array().unwrap();
    assert_eq!(narrowed.len(), 2);
    assert!(narrowed.iter().all(|h| h["collection"] == "handbook"));
    let unknown = refused(
        &call(
            &client,
            "search",
            json!({"query": "kettle", "collection": "nope"}),
        )
        .await,
    );
    assert!(unknown.contains("handbook, notes, recipe"), "{unknown}");
    // The recipe's neighbours are not in it.
    let shopping = ok(&call(&client, "search", json!({"query": "flour", "mode": "bm25"})).await);
    assert_eq!(shopping["hits"].as_array().unwrap().len(), 0, "{shopping}");

    // get_document: a path two collections hold needs the collection.
    let ambiguous = refused(&call(&client, "get_document", json!({"path": "README.md"})).await);
    assert!(ambiguous.contains("handbook, notes"), "{ambiguous}");
    let document = call(
        &client,
        "get_document",
        json!({"path": "README.md", "collection": "notes"}),
    )
    .await;
    assert_eq!(ok(&document)["collection"], "notes");
    assert!(
        document.content[0]
            .as_text()
            .unwrap()
            .text
            .contains("ice axe")
    );
    let unique = call(&client, "get_document", json!({"path": "safety.md"})).await;
    assert_eq!(ok(&unique)["collection"], "handbook");

    // Resources name the collection first.
    let resources = client.list_all_resources().await.unwrap();
    assert!(resources.iter().any(|r| r.uri == "docs://recipe/recipe.md"));
    let read = client
        .read_resource(ReadResourceRequestParams::new("docs://notes/README.md"))
        .await
        .unwrap();
    assert!(serde_json::to_string(&read).unwrap().contains("ice axe"));
    assert!(
        client
            .read_resource(ReadResourceRequestParams::new("docs://nope/README.md"))
            .await
            .is_err()
    );

    // Reindex one collection: the others are not read.
    std::fs::write(&recipe, "# Flatbread\n\nKnead the dough with buttermilk.\n").unwrap();
    std::fs::write(notes.join("gear.md"), "# Gear\n\ncrampons\n").unwrap();
    let report = ok(&call(&client, "reindex", json!({"collection": "recipe"})).await);
    assert_eq!(report["updated"], 1, "{report}");
    assert_eq!(report["collections"].as_array().unwrap().len(), 1);
    let outside = refused(
        &call(
            &client,
            "reindex",
            json!({"collection": "recipe", "path": "shopping.md"}),
        )
        .await,
    );
    assert!(outside.contains("holds only recipe.md"), "{outside}");
    let crampons = ok(&call(
        &client,
        "search",
        json!({"query": "crampons", "mode": "bm25"}),
    )
    .await);
    assert_eq!(crampons["hits"].as_array().unwrap().len(), 0);
    let everything = ok(&call(&client, "reindex", json!({})).await);
    assert_eq!(everything["added"], 1, "{everything}");
    assert_eq!(everything["unchanged"], 4, "{everything}");

    let status = ok(&call(&client, "index_status", json!({})).await);
    assert_eq!(status["files"], 5);
    assert_eq!(status["collections"].as_array().unwrap().len(), 3);
    client.cancel().await.unwrap();
}
