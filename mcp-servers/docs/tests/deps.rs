//! Dependency docs through the `mcp-docs` binary (BM25 only: no model needed). Rust's are the
//! real crates this workspace builds, read from Cargo's registry (unpacked, and from a `.crate`
//! alone); npm's and Python's are hand-made installs here (a package, one installed at another
//! version, one missing), and, in the gated test, the real Node and Python SDK peers `.ci/run`
//! installs.

use std::path::{Path, PathBuf};

use crate::support::{call, ok, serve};
use serde_json::{Value, json};

const MCP_DOCS: &str = env!("CARGO_BIN_EXE_mcp-docs");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The version of `name` the workspace's Cargo.lock pins (so Cargo's registry has it).
fn pinned(name: &str) -> String {
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    let at = lock
        .find(&format!("\nname = \"{name}\"\n"))
        .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
    let rest = &lock[at..];
    let version = rest.split("version = \"").nth(1).unwrap();
    version[..version.find('"').unwrap()].to_owned()
}

fn cargo_lock(crates: &[(&str, &str)]) -> String {
    let mut lock = "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n".to_owned();
    for (name, version) in crates {
        lock.push_str(&format!(
            "\n[[package]]\nname = \"{name}\"\nversion = \"{version}\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n"
        ));
    }
    lock
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"))
}

fn mcp_docs(args: &[&str], envs: &[(&str, &Path)]) -> (Option<i32>, String, String) {
    let mut command = std::process::Command::new(MCP_DOCS);
    command.args(args).envs(crate::support::store_env());
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `mcp-docs index SOURCES… --bm25-only --json`: its exit code and report.
fn index_json(sources: &[&str], envs: &[(&str, &Path)]) -> (Option<i32>, Value) {
    let args = [&["index"], sources, &["--bm25-only", "--json"]].concat();
    let (code, out, err) = mcp_docs(&args, envs);
    let report = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    (code, report)
}

/// `mcp-docs search QUERY SOURCES… --library LIBRARY --bm25-only --json`: the hits.
fn search_json(sources: &[&str], query: &str, library: &str) -> Vec<Value> {
    let args = [
        &["search", query, "--library", library],
        sources,
        &["--bm25-only", "--json"],
    ]
    .concat();
    let (code, out, err) = mcp_docs(&args, &[]);
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(&out).unwrap()
}

fn failure<'a>(report: &'a Value, id: &str) -> Option<&'a str> {
    report["failed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f[0] == id)
        .and_then(|f| f[1].as_str())
}

#[test]
fn a_cargo_lock_indexes_each_crates_readme_and_api_docs_at_its_version() {
    let base = tempfile::tempdir().unwrap();
    let project = base.path().join("app");
    std::fs::create_dir(&project).unwrap();
    let (serde, robots, tar) = (pinned("serde"), pinned("robotstxt"), pinned("tar"));
    let lock = project.join("Cargo.lock");
    std::fs::write(
        &lock,
        cargo_lock(&[
            ("serde", &serde),
            ("robotstxt", &robots),
            ("tar", &tar),
            ("no-such-crate", "9.9.9"),
        ]),
    )
    .unwrap();
    let data = base.path().join("data");
    let (lock_arg, data_arg) = (lock.to_str().unwrap(), data.to_str().unwrap());
    let sources = ["--deps", lock_arg, "--data-dir", data_arg];

    let (code, report) = index_json(&sources, &[]);
    // The missing crate is reported by name, with what to do; the rest is indexed.
    assert_eq!(code, Some(1), "{report:#}");
    let missing = failure(&report, "cargo:no-such-crate@9.9.9").unwrap();
    assert!(missing.contains("cargo fetch"), "{missing}");
    let libraries = &report["collections"][0]["libraries"];
    assert_eq!(
        libraries["added"],
        json!([
            format!("cargo:robotstxt@{robots}"),
            format!("cargo:serde@{serde}"),
            format!("cargo:tar@{tar}")
        ]),
        "{report:#}"
    );

    let search = |query: &str, library: &str| search_json(&sources, query, library);
    // API docs: the doc comment with its signature, under the item's heading.
    let hits = search("allowed by robots user agent", "robotstxt");
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h["path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cargo:robotstxt@{robots}/"))),
        "{hits:#?}"
    );
    let api = search(
        "Deserializer trait deserialize_struct",
        &format!("serde@{serde}"),
    );
    let best = &api[0];
    assert!(
        best["path"].as_str().unwrap().ends_with(".rs.md"),
        "{best:#}"
    );
    assert!(
        best["headings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h.as_str().unwrap().contains("trait Deserializer")),
        "{best:#}"
    );
    // Signatures and doc comments, not code: a statement of a function's body in the crate's
    // source is not in its API docs, while the function's signature is.
    let source = std::fs::read_dir(cargo_home().join("registry/src"))
        .unwrap()
        .flatten()
        .map(|index| {
            index
                .path()
                .join(format!("robotstxt-{robots}/src/matcher.rs"))
        })
        .find(|p| p.is_file())
        .expect("robotstxt's source in Cargo's registry");
    let body_line = "self.disallow.specific.priority() > self.allow.specific.priority()";
    assert!(std::fs::read_to_string(source).unwrap().contains(body_line));
    let api = std::fs::read_to_string(
        data.join(format!("deps/cargo:robotstxt@{robots}/src/matcher.rs.md")),
    )
    .unwrap();
    assert!(!api.contains(body_line), "{api}");
    assert!(api.contains("pub fn one_agent_allowed_by_robots("), "{api}");
    let (code, _, err) = mcp_docs(
        &[
            "search",
            "x",
            "--deps",
            lock_arg,
            "--library",
            "serde@0.0.1",
            "--bm25-only",
            "--data-dir",
            data_arg,
        ],
        &[],
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("resolve_library"), "{err}");

    // tar leaves the lock: its docs leave the index; the others are not read again.
    std::fs::write(
        &lock,
        cargo_lock(&[("serde", &serde), ("robotstxt", &robots)]),
    )
    .unwrap();
    let (code, report) = index_json(&sources, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    let libraries = &report["collections"][0]["libraries"];
    assert_eq!(libraries["removed"], json!([format!("cargo:tar@{tar}")]));
    assert_eq!(libraries["unchanged"], 2);
    assert!(report["removed"].as_u64().unwrap() > 0);
    assert_eq!(report["added"], 0);

    // A crate only fetched (its .crate in the cache, never unpacked) is read from the archive.
    let fetched = base.path().join("fetched-home");
    let cache = fetched.join("registry/cache/index.crates.io-test");
    std::fs::create_dir_all(&cache).unwrap();
    let archive = std::fs::read_dir(cargo_home().join("registry/cache"))
        .unwrap()
        .flatten()
        .map(|index| index.path().join(format!("robotstxt-{robots}.crate")))
        .find(|p| p.is_file())
        .expect("robotstxt's .crate in Cargo's cache");
    std::fs::copy(&archive, cache.join(archive.file_name().unwrap())).unwrap();
    let other = base.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_lock = other.join("Cargo.lock");
    std::fs::write(
        &other_lock,
        cargo_lock(&[("robotstxt", &robots), ("serde", &serde)]),
    )
    .unwrap();
    let other_data = base.path().join("other-data");
    let (code, report) = index_json(
        &[
            "--deps",
            other_lock.to_str().unwrap(),
            "--data-dir",
            other_data.to_str().unwrap(),
        ],
        &[("CARGO_HOME", &fetched)],
    );
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(
        report["collections"][0]["libraries"]["added"],
        json!([format!("cargo:robotstxt@{robots}")])
    );
    assert!(failure(&report, &format!("cargo:serde@{serde}")).is_some());
    assert!(
        other_data
            .join(format!("deps/cargo:robotstxt@{robots}/src/lib.rs.md"))
            .is_file()
    );
}

/// A hand-made project: an npm install with a package, one at another version than the lock's
/// and one missing; a virtualenv with a package, and a requirements file with it, a missing one
/// and an unpinned one.
fn installs(base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let project = base.join("project");
    let module = project.join("node_modules/@acme/kettle");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("package.json"),
        r#"{"name": "@acme/kettle", "version": "1.4.0"}"#,
    )
    .unwrap();
    std::fs::write(
        module.join("README.md"),
        "# Kettle\n\nBoils water for tea, quickly.\n",
    )
    .unwrap();
    std::fs::write(
        module.join("index.d.ts"),
        "/** Options for boiling. */\nexport interface BoilOptions {\n  /** Target temperature in Celsius. */\n  celsius?: number;\n}\n\
         /** Boils the water and resolves when it whistles. */\nexport declare function boil(options?: BoilOptions): Promise<void>;\n",
    )
    .unwrap();
    let old = project.join("node_modules/teapot");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        old.join("package.json"),
        r#"{"name": "teapot", "version": "1.9.0"}"#,
    )
    .unwrap();
    let npm_lock = project.join("package-lock.json");
    std::fs::write(
        &npm_lock,
        r#"{"name": "project", "lockfileVersion": 3, "packages": {
            "": {"name": "project"},
            "node_modules/@acme/kettle": {"version": "1.4.0"},
            "node_modules/teapot": {"version": "2.0.0"},
            "node_modules/absent": {"version": "1.0.0"}}}"#,
    )
    .unwrap();

    let venv = base.join("venv");
    let site = venv.join("lib/python3.12/site-packages");
    std::fs::create_dir_all(site.join("tea_leaves")).unwrap();
    std::fs::create_dir_all(site.join("tea_leaves-2.1.0.dist-info")).unwrap();
    std::fs::write(
        site.join("tea_leaves-2.1.0.dist-info/METADATA"),
        "Metadata-Version: 2.1\nName: tea_leaves\nVersion: 2.1.0\n\
         Description-Content-Type: text/markdown\n\n# tea-leaves\n\nReads fortunes from the cup.\n",
    )
    .unwrap();
    std::fs::write(
        site.join("tea_leaves-2.1.0.dist-info/RECORD"),
        "tea_leaves/__init__.py,sha256=x,10\n../../../../escape.py,sha256=x,1\n\
         tea_leaves-2.1.0.dist-info/METADATA,sha256=x,10\n",
    )
    .unwrap();
    std::fs::write(
        site.join("tea_leaves/__init__.py"),
        "\"\"\"Tea leaf reading.\"\"\"\n\ndef steep(minutes=3):\n    \"\"\"Steeps the leaves for a number of minutes before reading.\"\"\"\n    return minutes\n",
    )
    .unwrap();
    // RECORD may name files outside site-packages (pip's console scripts): none is read.
    std::fs::write(base.join("escape.py"), "\"\"\"Stolen marmalade.\"\"\"\n").unwrap();
    let requirements = project.join("requirements.txt");
    std::fs::write(&requirements, "tea_leaves==2.1.0\nsugar==1.0\nmilk\n").unwrap();
    (npm_lock, requirements, venv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_and_python_libraries_are_served_resolved_and_searched() {
    let base = tempfile::tempdir().unwrap();
    let (npm_lock, requirements, venv) = installs(base.path());
    let data = base.path().join("data");
    let client = serve([
        "--deps".into(),
        npm_lock.display().to_string(),
        "--deps".into(),
        format!("python={}", requirements.display()),
        "--venv".into(),
        venv.display().to_string(),
        "--data-dir".into(),
        data.display().to_string(),
    ])
    .await;

    let all = ok(&call(&client, "resolve_library", json!({"name": "kettle"})).await);
    assert_eq!(
        all["libraries"][0]["library"], "npm:@acme/kettle@1.4.0",
        "{all:#}"
    );
    assert_eq!(all["libraries"][0]["collection"], "npm");
    assert_eq!(all["libraries"][0]["documents"], 2, "{all:#}");
    let tea = ok(&call(&client, "resolve_library", json!({"name": "tea_leaves"})).await);
    assert_eq!(
        tea["libraries"][0]["library"], "pypi:tea-leaves@2.1.0",
        "{tea:#}"
    );
    assert_eq!(tea["libraries"][0]["exact"], true);
    let none = ok(&call(&client, "resolve_library", json!({"name": "teapot"})).await);
    assert_eq!(none["libraries"], json!([]));

    let boil = ok(&call(
        &client,
        "search",
        json!({"query": "whistles boil", "library": "@acme/kettle"}),
    )
    .await);
    let hit = &boil["hits"][0];
    assert_eq!(
        hit["path"], "npm:@acme/kettle@1.4.0/index.d.ts.md",
        "{boil:#}"
    );
    assert!(
        hit["headings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "boil")
    );
    let steep = ok(&call(
        &client,
        "search",
        json!({"query": "steeps leaves minutes", "library": "pypi:tea-leaves@2.1.0"}),
    )
    .await);
    assert_eq!(
        steep["hits"][0]["path"],
        "pypi:tea-leaves@2.1.0/tea_leaves/__init__.py.md"
    );
    // A library narrows to itself: the npm package's words are not found in the Python one.
    let narrowed = ok(&call(
        &client,
        "search",
        json!({"query": "whistles boil", "library": "tea-leaves"}),
    )
    .await);
    assert_eq!(narrowed["hits"], json!([]));
    let unknown = call(
        &client,
        "search",
        json!({"query": "x", "library": "left-pad"}),
    )
    .await;
    assert_eq!(unknown.is_error, Some(true));

    // Each bad package is named in the index report, the good ones indexed.
    let report = ok(&call(&client, "reindex", json!({})).await);
    let failed = |id: &str| {
        report["failed"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f[0].as_str().unwrap().ends_with(id))
            .map(|f| f[1].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("{id}: {report:#}"))
    };
    assert!(failed("npm:teapot@2.0.0").contains("1.9.0 is installed"));
    assert!(failed("npm:absent@1.0.0").contains("not installed"));
    assert!(failed("pypi:sugar@1.0").contains("not installed"));
    assert!(failed("pypi:milk").contains("no version pinned"));
    let stolen = ok(&call(&client, "search", json!({"query": "stolen marmalade"})).await);
    assert_eq!(stolen["hits"], json!([]));
    let sources = ok(&call(&client, "list_sources", json!({})).await);
    assert_eq!(sources["collections"][0]["kind"], "deps");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Node and Python SDK peers (.ci/run installs them)"]
async fn the_real_sdk_peers_docs_are_indexed_from_their_locks() {
    let peers = workspace().join("conformance/peers");
    let node_modules = peers.join("node/node_modules");
    assert!(
        node_modules
            .join("@modelcontextprotocol/sdk/package.json")
            .is_file(),
        "the Node peers are not installed in {} (.ci/run installs them)",
        node_modules.display()
    );
    let venv = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("mcp-toolkit/python-peers");
    assert!(
        venv.join("bin/python").exists(),
        "the Python SDK peer is not installed in {} (.ci/run installs it)",
        venv.display()
    );
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    let npm_lock = peers.join("node/package-lock.json");
    let requirements = peers.join("python/requirements.txt");
    let sources = [
        "--deps",
        npm_lock.to_str().unwrap(),
        "--deps",
        requirements.to_str().unwrap(),
        "--venv",
        venv.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let (code, report) = index_json(&sources, &[]);
    assert!(code == Some(0) || code == Some(1), "{report:#}");
    let added: Vec<String> = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["libraries"]["added"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert!(
        added
            .iter()
            .any(|id| id.starts_with("npm:@modelcontextprotocol/sdk@")),
        "{report:#}"
    );
    assert!(added.iter().any(|id| id == "pypi:mcp@2.3.0"), "{report:#}");

    let search = |query: &str, library: &str| search_json(&sources, query, library);
    let ts = search("connect transport client", "@modelcontextprotocol/sdk");
    assert!(!ts.is_empty());
    assert!(ts.iter().all(|h| {
        h["path"]
            .as_str()
            .unwrap()
            .starts_with("npm:@modelcontextprotocol/sdk@")
    }));
    let py = search("client session initialize", "mcp");
    assert!(!py.is_empty());
    assert!(
        py.iter()
            .all(|h| h["path"].as_str().unwrap().starts_with("pypi:mcp@2.3.0/"))
    );
}
