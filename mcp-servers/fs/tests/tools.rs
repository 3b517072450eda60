//! Every tool through the protocol, under the official server's names and argument shapes.
// Roots are deprecated for 2026-07-28, but handshake-era hosts offer them and the server follows.
#![allow(deprecated)]

use std::{fs, path::PathBuf};

use mcp_core::testing::{Era, TestClient, connect, connect_client, connect_with, text};
use mcp_server_fs::{FsServer, Limits, Sandbox, WRITE_TOOLS};
use rmcp::{
    ClientHandler, ErrorData, RoleClient,
    model::{
        ClientCapabilities, ClientConfig, ContentBlock, Implementation, ListRootsResult, Root,
    },
    service::RequestContext,
};
use serde_json::json;

struct Dir {
    _tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Dir {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().canonicalize().unwrap();
        Self { _tmp: tmp, path }
    }

    fn p(&self, relative: &str) -> String {
        self.path.join(relative).display().to_string()
    }

    fn server(&self, limits: Limits, read_only: bool) -> FsServer {
        FsServer::new(Sandbox::new(&[&self.path]).unwrap(), limits, read_only)
    }

    async fn client(&self) -> TestClient {
        connect(self.server(Limits::default(), false))
            .await
            .unwrap()
    }
}

async fn ok(
    client: &TestClient,
    tool: &str,
    arguments: serde_json::Value,
) -> rmcp::model::CallToolResult {
    let result = client.call(tool, arguments.clone()).await.unwrap();
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} {arguments}: {}",
        text(&result)
    );
    result
}

#[tokio::test]
async fn the_official_tool_set_is_listed_with_true_annotations() {
    let d = Dir::new();
    let client = d.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for official in [
        "read_text_file",
        "read_file",
        "read_media_file",
        "read_multiple_files",
        "write_file",
        "edit_file",
        "create_directory",
        "list_directory",
        "list_directory_with_sizes",
        "directory_tree",
        "move_file",
        "search_files",
        "get_file_info",
        "list_allowed_directories",
        "grep",
        "read_lines",
        "delete_file",
        "copy_file",
    ] {
        assert!(names.contains(&official), "missing {official}");
    }
    for tool in &tools {
        let annotations = tool.annotations.as_ref().unwrap();
        let writes = WRITE_TOOLS.contains(&tool.name.as_ref());
        assert_eq!(annotations.read_only_hint, Some(!writes), "{}", tool.name);
        assert!(tool.description.as_ref().is_some_and(|d| !d.is_empty()));
    }
    let destructive = |name: &str| {
        tools
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()
            .destructive_hint
    };
    assert_eq!(destructive("write_file"), Some(true));
    assert_eq!(destructive("move_file"), Some(true));
    assert_eq!(destructive("delete_file"), Some(true));
    assert_eq!(destructive("create_directory"), Some(false));
    let info = tools.iter().find(|t| t.name == "get_file_info").unwrap();
    assert!(info.output_schema.is_some());
}

#[tokio::test]
async fn read_only_mode_does_not_even_list_write_tools() {
    let d = Dir::new();
    fs::write(d.path.join("a.txt"), "a").unwrap();
    let client = connect(d.server(Limits::default(), true)).await.unwrap();
    let names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    for write in WRITE_TOOLS {
        assert!(
            !names.contains(&write.to_owned()),
            "{write} listed in read-only mode"
        );
    }
    let refused = client
        .call("write_file", json!({"path": d.p("a.txt"), "content": "b"}))
        .await;
    assert!(refused.is_err() || refused.unwrap().is_error == Some(true));
    assert_eq!(fs::read_to_string(d.path.join("a.txt")).unwrap(), "a");
    ok(&client, "read_text_file", json!({"path": d.p("a.txt")})).await;
}

#[tokio::test]
async fn reading_text_head_tail_lines_and_pages() {
    let d = Dir::new();
    let lines: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
    fs::write(d.path.join("big.txt"), &lines).unwrap();
    let client = d.client().await;

    let head = ok(
        &client,
        "read_text_file",
        json!({"path": d.p("big.txt"), "head": 2}),
    )
    .await;
    assert_eq!(text(&head), "line 1\nline 2");
    assert_eq!(
        head.structured_content.unwrap()["content"],
        "line 1\nline 2"
    );
    let tail = ok(
        &client,
        "read_text_file",
        json!({"path": d.p("big.txt"), "tail": 2}),
    )
    .await;
    assert_eq!(text(&tail), "line 999\nline 1000");
    let both = client
        .call(
            "read_text_file",
            json!({"path": d.p("big.txt"), "head": 1, "tail": 1}),
        )
        .await
        .unwrap();
    assert_eq!(both.is_error, Some(true));
    let range = ok(
        &client,
        "read_lines",
        json!({"path": d.p("big.txt"), "start_line": 10, "end_line": 11}),
    )
    .await;
    assert_eq!(text(&range), "    10| line 10\n    11| line 11\n");
    let deprecated = ok(
        &client,
        "read_file",
        json!({"path": d.p("big.txt"), "head": 1}),
    )
    .await;
    assert_eq!(text(&deprecated), "line 1");

    // A small answer limit pages the file; the pages add up to it exactly.
    let small = Limits {
        max_text_bytes: 1000,
        ..Limits::default()
    };
    let paged = connect(d.server(small, false)).await.unwrap();
    let mut cursor: Option<String> = None;
    let mut rebuilt = String::new();
    loop {
        let mut args = json!({"path": d.p("big.txt")});
        if let Some(cursor) = &cursor {
            args["cursor"] = json!(cursor);
        }
        let page = text(&ok(&paged, "read_text_file", args).await);
        match page.split_once("\n[truncated") {
            Some((body, notice)) => {
                rebuilt.push_str(body);
                cursor = Some(notice.split('"').nth(1).unwrap().to_owned());
            }
            None => {
                rebuilt.push_str(&page);
                break;
            }
        }
    }
    assert_eq!(rebuilt, lines);
}

#[tokio::test]
async fn writing_editing_moving_copying_deleting() {
    let d = Dir::new();
    let client = d.client().await;
    ok(&client, "create_directory", json!({"path": d.p("a/b/c")})).await;
    ok(&client, "create_directory", json!({"path": d.p("a/b/c")})).await;
    ok(
        &client,
        "write_file",
        json!({"path": d.p("a/b/c/f.rs"), "content": "fn main() {\n    let x = 1;\n}\n"}),
    )
    .await;
    ok(&client, "write_file", json!({"path": d.p("a/b/c/f.rs"), "content": "fn main() {\n    let x = 1;\n    let y = 2;\n}\n"})).await;
    // No temporary file is left behind.
    let names: Vec<_> = fs::read_dir(d.path.join("a/b/c"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");

    let preview = ok(
        &client,
        "edit_file",
        json!({"path": d.p("a/b/c/f.rs"), "dryRun": true,
        "edits": [{"oldText": "let y = 2;", "newText": "let y = 3;"}]}),
    )
    .await;
    assert!(
        text(&preview).contains("-    let y = 2;\n+    let y = 3;"),
        "{}",
        text(&preview)
    );
    assert!(text(&preview).starts_with("```diff\n"));
    assert!(
        fs::read_to_string(d.path.join("a/b/c/f.rs"))
            .unwrap()
            .contains("let y = 2;")
    );
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("a/b/c/f.rs"),
        "edits": [{"oldText": "let x = 1;\nlet y = 2;", "newText": "let x = 10;\nlet y = 20;"}]}),
    )
    .await;
    let edited = fs::read_to_string(d.path.join("a/b/c/f.rs")).unwrap();
    assert!(edited.contains("    let x = 10;"), "{edited}");
    let missing = client
        .call(
            "edit_file",
            json!({"path": d.p("a/b/c/f.rs"),
        "edits": [{"oldText": "nowhere", "newText": "x"}]}),
        )
        .await
        .unwrap();
    assert_eq!(missing.is_error, Some(true));
    assert_eq!(
        fs::read_to_string(d.path.join("a/b/c/f.rs")).unwrap(),
        edited
    );

    ok(
        &client,
        "copy_file",
        json!({"source": d.p("a/b/c/f.rs"), "destination": d.p("copy.rs")}),
    )
    .await;
    let again = client
        .call(
            "copy_file",
            json!({"source": d.p("a/b/c/f.rs"), "destination": d.p("copy.rs")}),
        )
        .await
        .unwrap();
    assert_eq!(again.is_error, Some(true));
    assert!(text(&again).contains("already exists"));
    ok(
        &client,
        "move_file",
        json!({"source": d.p("copy.rs"), "destination": d.p("a/moved.rs")}),
    )
    .await;
    assert!(!d.path.join("copy.rs").exists());
    let onto = client
        .call(
            "move_file",
            json!({"source": d.p("a/moved.rs"), "destination": d.p("a/b/c/f.rs")}),
        )
        .await
        .unwrap();
    assert_eq!(onto.is_error, Some(true), "move_file must not overwrite");
    ok(&client, "delete_file", json!({"path": d.p("a/moved.rs")})).await;
    assert!(!d.path.join("a/moved.rs").exists());
    let dir = client
        .call("delete_file", json!({"path": d.p("a/b")}))
        .await
        .unwrap();
    assert_eq!(dir.is_error, Some(true));
    assert!(d.path.join("a/b").is_dir());
}

#[tokio::test]
async fn listing_trees_searching_and_info() {
    let d = Dir::new();
    fs::create_dir_all(d.path.join("src/deep")).unwrap();
    fs::create_dir_all(d.path.join("node_modules/pkg")).unwrap();
    fs::write(
        d.path.join("src/main.rs"),
        "fn main() { println!(\"hello\"); }\n",
    )
    .unwrap();
    fs::write(
        d.path.join("src/deep/lib.rs"),
        "pub fn hello() {}\n// TODO later\n",
    )
    .unwrap();
    fs::write(d.path.join("node_modules/pkg/index.js"), "hello").unwrap();
    fs::write(d.path.join("README.md"), "# hello\n").unwrap();
    fs::write(d.path.join(".gitignore"), "ignored.log\n").unwrap();
    fs::write(d.path.join("ignored.log"), "hello from the log\n").unwrap();
    let client = d.client().await;

    let listing = text(&ok(&client, "list_directory", json!({"path": d.p("")})).await);
    assert!(
        listing.contains("[DIR] src") && listing.contains("[FILE] README.md"),
        "{listing}"
    );
    let sized = ok(
        &client,
        "list_directory_with_sizes",
        json!({"path": d.p(""), "sortBy": "size"}),
    )
    .await;
    let data = sized.structured_content.clone().unwrap();
    assert_eq!(data["totalDirectories"], 2);
    assert!(text(&sized).contains("Combined size"));

    let tree = ok(
        &client,
        "directory_tree",
        json!({"path": d.p(""), "excludePatterns": ["node_modules"]}),
    )
    .await;
    let nodes = tree.structured_content.unwrap()["tree"].clone();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"src") && !names.contains(&"node_modules"),
        "{names:?}"
    );
    let src = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "src")
        .unwrap();
    assert!(
        src["children"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "deep")
    );

    let found = text(
        &ok(
            &client,
            "search_files",
            json!({"path": d.p(""), "pattern": "**/*.rs"}),
        )
        .await,
    );
    assert!(
        found.contains(&d.p("src/main.rs")) && found.contains(&d.p("src/deep/lib.rs")),
        "{found}"
    );
    let named = text(
        &ok(
            &client,
            "search_files",
            json!({"path": d.p(""), "pattern": "*.rs", "excludePatterns": ["deep"]}),
        )
        .await,
    );
    assert!(
        named.contains("main.rs") && !named.contains("lib.rs"),
        "{named}"
    );
    let none = text(
        &ok(
            &client,
            "search_files",
            json!({"path": d.p(""), "pattern": "*.zig"}),
        )
        .await,
    );
    assert_eq!(none, "No matches found");

    let grep = ok(
        &client,
        "grep",
        json!({"pattern": "hel+o", "path": d.p("")}),
    )
    .await;
    let shown = text(&grep);
    assert!(
        shown.contains("main.rs:1:") && shown.contains("lib.rs:1:"),
        "{shown}"
    );
    assert!(
        !shown.contains("ignored.log"),
        ".gitignore not honoured: {shown}"
    );
    let with_context = text(
        &ok(
            &client,
            "grep",
            json!({"pattern": "TODO", "path": d.p("src"), "context": 1, "glob": "*.rs"}),
        )
        .await,
    );
    assert!(
        with_context.contains("lib.rs:1: pub fn hello")
            && with_context.contains("lib.rs:2: // TODO"),
        "{with_context}"
    );
    let bad = client
        .call("grep", json!({"pattern": "(unclosed"}))
        .await
        .unwrap();
    assert_eq!(bad.is_error, Some(true));
    assert!(text(&bad).contains("invalid regular expression"));

    let info = ok(&client, "get_file_info", json!({"path": d.p("README.md")})).await;
    let data = info.structured_content.unwrap();
    assert_eq!(data["size"], 8);
    assert_eq!(data["type"], "file");
    assert!(data["modified"].as_str().unwrap().ends_with('Z'));

    let allowed = text(&ok(&client, "list_allowed_directories", json!({})).await);
    assert!(allowed.contains(&d.path.display().to_string()));
}

/// A directory longer than the entry limit is listed in pages that add up to it; the other
/// listings and searches stop at their limits and say so.
#[tokio::test]
async fn long_listings_and_searches_stop_at_their_limits_and_say_so() {
    let d = Dir::new();
    let names: Vec<String> = (0..25).map(|i| format!("f{i:02}.txt")).collect();
    for name in &names {
        fs::write(d.path.join(name), "needle\n").unwrap();
    }
    let small = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let client = connect(d.server(small, false)).await.unwrap();

    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut args = json!({"path": d.p("")});
        if let Some(cursor) = &cursor {
            args["cursor"] = json!(cursor);
        }
        let page = text(&ok(&client, "list_directory", args).await);
        pages += 1;
        assert!(pages <= 3, "the pages do not end: {page}");
        let (body, notice) = match page.split_once("\n[truncated") {
            Some((body, notice)) => (body.to_owned(), Some(notice.to_owned())),
            None => (page.clone(), None),
        };
        listed.extend(
            body.lines()
                .map(|line| line.trim_start_matches("[FILE] ").to_owned()),
        );
        match notice {
            Some(notice) => {
                assert_eq!(body.lines().count(), 10, "{page}");
                cursor = Some(notice.split('"').nth(1).unwrap().to_owned());
            }
            None => break,
        }
    }
    assert_eq!(listed, names);

    let sized = ok(
        &client,
        "list_directory_with_sizes",
        json!({"path": d.p("")}),
    )
    .await;
    assert!(
        text(&sized).contains("[truncated: showing 10 of 25 entries; use list_directory to page]"),
        "{}",
        text(&sized)
    );
    let data = sized.structured_content.unwrap();
    assert_eq!(data["entries"].as_array().unwrap().len(), 10);
    assert_eq!(data["totalFiles"], 25);

    let found = text(
        &ok(
            &client,
            "search_files",
            json!({"path": d.p(""), "pattern": "*.txt"}),
        )
        .await,
    );
    assert_eq!(found.lines().count(), 11, "{found}");
    assert!(
        found.ends_with("[truncated: showing the first 10 results; narrow the pattern]"),
        "{found}"
    );

    let grepped = ok(
        &client,
        "grep",
        json!({"pattern": "needle", "path": d.p(""), "max_results": 3}),
    )
    .await;
    let report = grepped.structured_content.clone().unwrap();
    assert_eq!(report["matches"].as_array().unwrap().len(), 3);
    assert_eq!(report["truncated"], true);
    assert!(
        text(&grepped).contains("[truncated: showing the first 3 matches"),
        "{}",
        text(&grepped)
    );
}

/// Over the entry limit (ten times `max_entries` for a tree), the tree keeps its first entries
/// in name order, depth first, and says it was cut.
#[tokio::test]
async fn a_tree_over_the_entry_limit_is_cut_with_a_note() {
    let d = Dir::new();
    for top in ["a", "b", "c"] {
        for sub in ["x", "y"] {
            fs::create_dir_all(d.path.join(top).join(sub)).unwrap();
            for file in ["1", "2"] {
                fs::write(d.path.join(top).join(sub).join(file), "").unwrap();
            }
        }
    }
    /// Every name, depth first.
    fn names(nodes: &serde_json::Value) -> Vec<String> {
        nodes
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|node| {
                let mut out = vec![node["name"].as_str().unwrap().to_owned()];
                if let Some(children) = node.get("children") {
                    out.extend(names(children));
                }
                out
            })
            .collect()
    }

    // 3 + 6 + 12 = 21 entries in all; a limit of 1 lets 10 through.
    let small = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    let client = connect(d.server(small, false)).await.unwrap();
    let result = ok(&client, "directory_tree", json!({"path": d.p("")})).await;
    let data = result.structured_content.clone().unwrap();
    assert_eq!(data["truncated"], true);
    assert_eq!(
        names(&data["tree"]),
        ["a", "x", "1", "2", "y", "1", "2", "b", "x", "1"]
    );
    assert!(
        text(&result)
            .ends_with("[truncated: showing the first 10 entries; list subdirectories separately]"),
        "{}",
        text(&result)
    );

    // Within the limit, the whole tree and no note.
    let whole = ok(
        &d.client().await,
        "directory_tree",
        json!({"path": d.p("")}),
    )
    .await;
    let data = whole.structured_content.unwrap();
    assert_eq!(data["truncated"], false);
    assert_eq!(names(&data["tree"]).len(), 21);
}

#[tokio::test]
async fn media_and_multiple_files() {
    let d = Dir::new();
    let png = [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    fs::write(d.path.join("pic.png"), png).unwrap();
    fs::write(d.path.join("a.txt"), "alpha").unwrap();
    let client = d.client().await;
    let media = ok(&client, "read_media_file", json!({"path": d.p("pic.png")})).await;
    match &media.content[0] {
        ContentBlock::Image(image) => {
            assert_eq!(image.mime_type, "image/png");
            assert_eq!(image.data, "iVBORw0KGgo=");
        }
        other => panic!("expected an image, got {other:?}"),
    }
    let many = text(
        &ok(
            &client,
            "read_multiple_files",
            json!({"paths": [d.p("a.txt"), d.p("missing.txt")]}),
        )
        .await,
    );
    assert!(
        many.contains("alpha") && many.contains("missing.txt: Error"),
        "{many}"
    );
    assert!(many.contains("\n---\n"));
}

#[tokio::test]
async fn works_in_the_stateless_era_too() {
    let d = Dir::new();
    fs::write(d.path.join("a.txt"), "alpha").unwrap();
    let client = connect_with(d.server(Limits::default(), false), Era::Stateless)
        .await
        .unwrap();
    let read = ok(&client, "read_text_file", json!({"path": d.p("a.txt")})).await;
    assert_eq!(text(&read), "alpha");
}

/// A client that offers roots, as Claude Desktop and VS Code do.
struct RootsClient {
    roots: Vec<String>,
}

impl ClientHandler for RootsClient {
    fn get_info(&self) -> ClientConfig {
        #[allow(deprecated)]
        let capabilities = ClientCapabilities::builder().enable_roots().build();
        ClientConfig::new(capabilities, Implementation::new("roots-client", "1"))
    }

    #[allow(deprecated)]
    async fn list_roots(
        &self,
        _: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let roots = self
            .roots
            .iter()
            .map(|uri| Root::new(uri.clone()))
            .collect();
        Ok(ListRootsResult::new(roots))
    }
}

/// `list_allowed_directories` once it names `wanted`: the server asks for the roots once the
/// client is initialized, in a task of its own.
async fn allowed_once_it_names(client: &TestClient<RootsClient>, wanted: &str) -> String {
    let mut allowed = String::new();
    for _ in 0..100 {
        allowed = text(
            &client
                .call("list_allowed_directories", json!({}))
                .await
                .unwrap(),
        );
        if allowed.contains(wanted) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(allowed.contains(wanted), "{allowed}");
    allowed
}

async fn roots_client(server: FsServer, roots: &[String]) -> TestClient<RootsClient> {
    let client = RootsClient {
        roots: roots.to_vec(),
    };
    connect_client(server, client, Era::Handshake)
        .await
        .unwrap()
}

#[tokio::test]
async fn client_roots_narrow_the_command_line_directories() {
    let configured = Dir::new();
    fs::create_dir(configured.path.join("sub")).unwrap();
    fs::write(configured.path.join("old.txt"), "old").unwrap();
    fs::write(configured.path.join("sub/new.txt"), "new").unwrap();
    let client = roots_client(
        configured.server(Limits::default(), false),
        &[format!("file://{}", configured.p("sub"))],
    )
    .await;
    let allowed = allowed_once_it_names(&client, &configured.p("sub")).await;
    assert_eq!(allowed.lines().count(), 2, "{allowed}");
    let new = client
        .call(
            "read_text_file",
            json!({"path": configured.p("sub/new.txt")}),
        )
        .await
        .unwrap();
    assert_eq!(text(&new), "new");
    let old = client
        .call("read_text_file", json!({"path": configured.p("old.txt")}))
        .await
        .unwrap();
    assert_eq!(old.is_error, Some(true));
}

/// The attack: a client offering `file:///` (and a folder of its choosing) to a server started
/// on one directory, read-only. The command line is the ceiling.
#[tokio::test]
async fn client_roots_never_widen_the_command_line_directories() {
    let configured = Dir::new();
    let outside = Dir::new();
    fs::create_dir(configured.path.join("sub")).unwrap();
    fs::write(configured.path.join("mine.txt"), "mine").unwrap();
    fs::write(outside.path.join("secret.txt"), "secret").unwrap();
    let client = roots_client(
        configured.server(Limits::default(), true),
        &[
            "file:///".to_owned(),
            format!("file://{}", outside.path.display()),
            // Lets the test see that the roots were taken.
            format!("file://{}", configured.p("sub")),
        ],
    )
    .await;
    let allowed = allowed_once_it_names(&client, &configured.p("sub")).await;
    assert!(!allowed.contains(&outside.p("")), "{allowed}");
    for path in [outside.p("secret.txt"), "/etc/passwd".to_owned()] {
        let refused = client
            .call("read_text_file", json!({"path": path}))
            .await
            .unwrap();
        assert_eq!(refused.is_error, Some(true), "{path}: {}", text(&refused));
        assert!(
            text(&refused).contains("access denied"),
            "{}",
            text(&refused)
        );
    }
    let mine = client
        .call("read_text_file", json!({"path": configured.p("mine.txt")}))
        .await
        .unwrap();
    assert_eq!(text(&mine), "mine");
}

/// Finding 8 of the attack run: `write_file` and `edit_file` turned a 0600 key into 0644 and a
/// 0755 script into 0644, and replaced a symbolic link with a plain file.
#[tokio::test]
async fn writes_keep_the_mode_and_the_link() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new();
    let read = |name: &str| fs::read_to_string(d.path.join(name)).unwrap();
    let is_link = |name: &str| {
        fs::symlink_metadata(d.path.join(name))
            .unwrap()
            .file_type()
            .is_symlink()
    };
    let mode = |name: &str| {
        fs::metadata(d.path.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    fs::write(d.path.join("key.pem"), "secret").unwrap();
    fs::set_permissions(d.path.join("key.pem"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(d.path.join("run.sh"), "echo one\n").unwrap();
    fs::set_permissions(d.path.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(d.path.join("real.txt"), "real").unwrap();
    std::os::unix::fs::symlink("real.txt", d.path.join("link.txt")).unwrap();
    std::os::unix::fs::symlink("gone.txt", d.path.join("dangling.txt")).unwrap();
    let client = d.client().await;

    ok(
        &client,
        "write_file",
        json!({"path": d.p("key.pem"), "content": "new secret"}),
    )
    .await;
    assert_eq!(mode("key.pem"), 0o600);
    assert_eq!(read("key.pem"), "new secret");
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("run.sh"), "edits": [{"oldText": "one", "newText": "two"}]}),
    )
    .await;
    assert_eq!(mode("run.sh"), 0o755);
    assert_eq!(read("run.sh"), "echo two\n");

    ok(
        &client,
        "write_file",
        json!({"path": d.p("link.txt"), "content": "through"}),
    )
    .await;
    assert!(is_link("link.txt"));
    assert_eq!(read("real.txt"), "through");
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("link.txt"), "edits": [{"oldText": "through", "newText": "edited"}]}),
    )
    .await;
    assert!(is_link("link.txt"));
    assert_eq!(read("real.txt"), "edited");

    let dangling = client
        .call(
            "write_file",
            json!({"path": d.p("dangling.txt"), "content": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(dangling.is_error, Some(true));
    assert!(
        text(&dangling).contains("does not exist"),
        "{}",
        text(&dangling)
    );
    assert!(is_link("dangling.txt"));
}

/// Finding 8, continued: temporary files a killed write leaves (`.NAME.mcp-fs-PID-N.tmp`) showed
/// in listings. They are never listed, and a writable server removes those of dead processes
/// when it starts (a read-only one leaves them).
#[tokio::test]
async fn temporary_files_of_killed_writes_are_never_listed_and_swept_at_start() {
    let d = Dir::new();
    fs::create_dir(d.path.join("sub")).unwrap();
    fs::write(d.path.join("a.txt"), "alpha").unwrap();
    // PIDs above the kernel's maximum (2^22): no process has them.
    let stale = [
        d.path.join(".a.txt.mcp-fs-99999999-0.tmp"),
        d.path.join("sub/.b.txt.mcp-fs-99999998-3.tmp"),
    ];
    for path in &stale {
        fs::write(path, "alpha half-written").unwrap();
    }
    let read_only = connect(d.server(Limits::default(), true)).await.unwrap();
    for (tool, arguments) in [
        ("list_directory", json!({"path": d.p("")})),
        ("list_directory", json!({"path": d.p("sub")})),
        ("list_directory_with_sizes", json!({"path": d.p("")})),
        ("directory_tree", json!({"path": d.p("")})),
        ("search_files", json!({"path": d.p(""), "pattern": "**/*"})),
        ("grep", json!({"path": d.p(""), "pattern": "alpha"})),
    ] {
        let answer = text(&ok(&read_only, tool, arguments).await);
        assert!(!answer.contains("mcp-fs"), "{tool}: {answer}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        stale.iter().all(|p| p.exists()),
        "a read-only server removed files"
    );

    let _writable = d.client().await;
    for _ in 0..100 {
        if stale.iter().all(|p| !p.exists()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        stale.iter().all(|p| !p.exists()),
        "stale temporary files are still there"
    );
    assert_eq!(fs::read_to_string(d.path.join("a.txt")).unwrap(), "alpha");
}

/// Finding 11 (mcp-fs): a name with a newline was listed as two entries, a link to a directory
/// as [FILE], one line longer than an answer as "stopped before line 1 … from line 1", and a
/// FIFO in the sandbox would hold a read forever.
#[tokio::test]
async fn odd_names_links_long_lines_and_fifos() {
    let d = Dir::new();
    fs::create_dir(d.path.join("folder")).unwrap();
    fs::write(d.path.join("evil\n[FILE] fake.txt"), "x").unwrap();
    std::os::unix::fs::symlink("folder", d.path.join("to-folder")).unwrap();
    fs::write(d.path.join("one-line.txt"), "y".repeat(1_000_000)).unwrap();
    assert!(
        std::process::Command::new("mkfifo")
            .arg(d.path.join("pipe"))
            .status()
            .unwrap()
            .success()
    );
    let client = d.client().await;
    let listing = text(&ok(&client, "list_directory", json!({"path": d.p("")})).await);
    assert_eq!(listing.lines().count(), 5, "{listing}");
    assert!(
        listing.contains("[FILE] evil\\n[FILE] fake.txt"),
        "{listing}"
    );
    assert!(listing.contains("[LINK] to-folder"), "{listing}");
    let found = text(
        &ok(
            &client,
            "search_files",
            json!({"path": d.p(""), "pattern": "*fake*"}),
        )
        .await,
    );
    assert_eq!(found.lines().count(), 1, "{found}");

    let lines = text(
        &ok(
            &client,
            "read_lines",
            json!({"path": d.p("one-line.txt"), "start_line": 1}),
        )
        .await,
    );
    assert!(lines.contains("yyyy"), "{}", &lines[..100.min(lines.len())]);
    assert!(
        lines.contains("line 1, which is longer than one answer carries"),
        "{}",
        &lines[lines.len().saturating_sub(200)..]
    );
    assert!(!lines.contains("from line 1]"));

    for tool in ["read_text_file", "read_lines", "read_media_file"] {
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            client.call(tool, json!({"path": d.p("pipe"), "start_line": 1})),
        )
        .await
        .unwrap_or_else(|_| panic!("{tool} on a FIFO never answered"))
        .unwrap();
        assert_eq!(refused.is_error, Some(true), "{tool}: {}", text(&refused));
        assert!(
            text(&refused).contains("FIFO"),
            "{tool}: {}",
            text(&refused)
        );
    }
}

async fn refused(client: &TestClient, tool: &str, arguments: serde_json::Value) -> String {
    let result = client.call(tool, arguments.clone()).await.unwrap();
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {arguments}: {}",
        text(&result)
    );
    text(&result)
}

/// Line endings, byte-order marks and encodings are the file's: edits and overwrites keep CRLF
/// and the BOM, and a file that is not UTF-8 is refused, untouched.
#[tokio::test]
async fn files_keep_their_line_endings_bom_and_encoding() {
    let d = Dir::new();
    let client = d.client().await;
    let crlf = d.path.join("win.txt");
    fs::write(&crlf, b"\xEF\xBB\xBFone\r\ntwo\r\n    three\r\n").unwrap();
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("win.txt"), "edits": [{"oldText": "one\ntwo", "newText": "uno\ndos\ntres"}]}),
    )
    .await;
    assert_eq!(
        fs::read(&crlf).unwrap(),
        b"\xEF\xBB\xBFuno\r\ndos\r\ntres\r\n    three\r\n"
    );
    // A whitespace-tolerant match keeps the endings too.
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("win.txt"), "edits": [{"oldText": "three", "newText": "3\n4"}]}),
    )
    .await;
    assert_eq!(
        fs::read(&crlf).unwrap(),
        b"\xEF\xBB\xBFuno\r\ndos\r\ntres\r\n    3\r\n4\r\n"
    );
    let written = ok(
        &client,
        "write_file",
        json!({"path": d.p("win.txt"), "content": "a\nb\n"}),
    )
    .await;
    assert!(
        text(&written).contains("kept the file's byte-order mark and CRLF line endings"),
        "{}",
        text(&written)
    );
    assert_eq!(fs::read(&crlf).unwrap(), b"\xEF\xBB\xBFa\r\nb\r\n");

    let latin1 = d.path.join("latin1.txt");
    fs::write(&latin1, b"caf\xE9\n").unwrap();
    let error = refused(
        &client,
        "edit_file",
        json!({"path": d.p("latin1.txt"), "edits": [{"oldText": "caf", "newText": "bar"}]}),
    )
    .await;
    assert!(error.contains("not UTF-8"), "{error}");
    assert_eq!(fs::read(&latin1).unwrap(), b"caf\xE9\n");
    let utf16 = d.path.join("utf16.txt");
    fs::write(&utf16, b"\xFF\xFEh\x00i\x00").unwrap();
    let error = refused(
        &client,
        "edit_file",
        json!({"path": d.p("utf16.txt"), "edits": [{"oldText": "hi", "newText": "yo"}]}),
    )
    .await;
    assert!(error.contains("UTF-16"), "{error}");
    assert_eq!(fs::read(&utf16).unwrap(), b"\xFF\xFEh\x00i\x00");
}

/// `printf 'one\ntwo\n' | sha256sum`
const SHA256_ONE_TWO: &str = "c3f9c8c283a2b1f2f1896f27a01cbe3cddc0c9d93f752e4639035a0f5b36f6e8";

/// write_file's modes, and edits and writes that refuse a file changed since it was read.
#[tokio::test]
async fn append_create_and_expected_hashes() {
    let d = Dir::new();
    let client = d.client().await;
    let log = d.path.join("log.txt");
    ok(
        &client,
        "write_file",
        json!({"path": d.p("log.txt"), "content": "one\n", "mode": "append"}),
    )
    .await;
    ok(
        &client,
        "write_file",
        json!({"path": d.p("log.txt"), "content": "two\n", "mode": "append"}),
    )
    .await;
    assert_eq!(fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    let error = refused(
        &client,
        "write_file",
        json!({"path": d.p("log.txt"), "content": "x", "mode": "create"}),
    )
    .await;
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    ok(
        &client,
        "write_file",
        json!({"path": d.p("new.txt"), "content": "fresh", "mode": "create"}),
    )
    .await;
    assert_eq!(fs::read_to_string(d.path.join("new.txt")).unwrap(), "fresh");
    let error = refused(
        &client,
        "write_file",
        json!({"path": d.p("new.txt"), "content": "x", "mode": "sideways"}),
    )
    .await;
    assert!(
        error.contains("sideways") || error.contains("mode"),
        "{error}"
    );
    // Appending to a CRLF file appends CRLF lines.
    fs::write(d.path.join("crlf.txt"), "a\r\n").unwrap();
    ok(
        &client,
        "write_file",
        json!({"path": d.p("crlf.txt"), "content": "b\n", "mode": "append"}),
    )
    .await;
    assert_eq!(fs::read(d.path.join("crlf.txt")).unwrap(), b"a\r\nb\r\n");

    // The hash read_text_file gives (of the whole file, paged or not) guards the next change.
    let read = ok(&client, "read_text_file", json!({"path": d.p("log.txt")})).await;
    let hash = read.structured_content.as_ref().unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hash, SHA256_ONE_TWO);
    let head = ok(
        &client,
        "read_text_file",
        json!({"path": d.p("log.txt"), "head": 1}),
    )
    .await;
    assert_eq!(
        head.structured_content.as_ref().unwrap()["sha256"],
        hash.as_str()
    );
    ok(
        &client,
        "edit_file",
        json!({"path": d.p("log.txt"), "expected_sha256": hash, "edits": [{"oldText": "one", "newText": "1"}]}),
    )
    .await;
    // The same hash again is stale now: nothing is written, the current hash is named.
    let error = refused(
        &client,
        "edit_file",
        json!({"path": d.p("log.txt"), "expected_sha256": hash, "edits": [{"oldText": "two", "newText": "2"}]}),
    )
    .await;
    let now = ok(&client, "read_text_file", json!({"path": d.p("log.txt")})).await;
    let current = now.structured_content.as_ref().unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains(&current) && error.contains("nothing was written"),
        "{error}"
    );
    assert_eq!(fs::read_to_string(&log).unwrap(), "1\ntwo\n");
    let error = refused(
        &client,
        "write_file",
        json!({"path": d.p("log.txt"), "content": "over", "expected_sha256": hash}),
    )
    .await;
    assert!(error.contains(&current), "{error}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "1\ntwo\n");
    ok(
        &client,
        "write_file",
        json!({"path": d.p("log.txt"), "content": "over", "expected_sha256": current.to_uppercase()}),
    )
    .await;
    assert_eq!(fs::read_to_string(&log).unwrap(), "over");
}

/// An edit that matches nowhere names the closest lines and how they differ; directory_tree
/// stops at max_depth.
#[tokio::test]
async fn missed_edits_point_at_the_closest_lines_and_trees_stop_at_a_depth() {
    let d = Dir::new();
    let client = d.client().await;
    fs::write(
        d.path.join("m.py"),
        "import os\n\ndef main():\n\tprint('hi')\n\treturn 0\n",
    )
    .unwrap();
    let error = refused(
        &client,
        "edit_file",
        json!({"path": d.p("m.py"), "edits": [{"oldText": "def main():\n    print('hi')\n    return  0", "newText": "x"}]}),
    )
    .await;
    assert!(error.contains("lines 3-5"), "{error}");
    assert!(error.contains("+→print('hi')"), "{error}");
    assert!(error.contains("only in whitespace"), "{error}");

    fs::create_dir_all(d.path.join("a/b/c")).unwrap();
    fs::create_dir_all(d.path.join("z/y")).unwrap();
    fs::write(d.path.join("a/b/c/deep.txt"), "").unwrap();
    let tree = |depth: Option<u64>| {
        let client = &client;
        let path = d.p("");
        async move {
            let mut args = json!({"path": path});
            if let Some(depth) = depth {
                args["max_depth"] = depth.into();
            }
            let result = ok(client, "directory_tree", args).await;
            result.structured_content.unwrap()["tree"].to_string()
        }
    };
    let one = tree(Some(1)).await;
    assert!(
        one.contains("\"a\"") && !one.contains("\"b\"") && !one.contains("children"),
        "{one}"
    );
    let two = tree(Some(2)).await;
    assert!(
        two.contains("\"b\"") && two.contains("\"y\"") && !two.contains("\"c\""),
        "{two}"
    );
    let all = tree(None).await;
    assert!(all.contains("deep.txt"), "{all}");
    let error = refused(
        &client,
        "directory_tree",
        json!({"path": d.p(""), "max_depth": 0}),
    )
    .await;
    assert!(error.contains("max_depth"), "{error}");
}

/// A server journaling into `data` for undo.
fn journaled(d: &Dir, data: &std::path::Path, max_bytes: u64) -> FsServer {
    FsServer::with_settings(
        Sandbox::new(&[&d.path]).unwrap(),
        mcp_server_fs::Settings {
            journal: Some(mcp_server_fs::Journal::new(data, max_bytes)),
            ..Default::default()
        },
    )
}

/// Every write tool's change undone, newest first, across a restart; a file changed since is
/// left alone and said so; the journal stays within its bound; and a journal that names a path
/// outside the allowed directory (tampered with) restores nothing there.
#[tokio::test]
async fn undo_puts_changes_back_newest_first_and_across_a_restart() {
    let d = Dir::new();
    let data = tempfile::tempdir().unwrap();
    let read = |p: &str| fs::read_to_string(d.path.join(p)).ok();
    fs::write(d.path.join("a.txt"), "one\n").unwrap();
    fs::write(d.path.join("gone.txt"), "keep me\n").unwrap();
    {
        let client = connect(journaled(&d, data.path(), 1 << 20)).await.unwrap();
        ok(
            &client,
            "write_file",
            json!({"path": d.p("a.txt"), "content": "two\n"}),
        )
        .await;
        ok(
            &client,
            "edit_file",
            json!({"path": d.p("a.txt"), "edits": [{"oldText": "two", "newText": "three"}]}),
        )
        .await;
        ok(
            &client,
            "write_file",
            json!({"path": d.p("a.txt"), "content": "four\n", "mode": "append"}),
        )
        .await;
        ok(&client, "create_directory", json!({"path": d.p("x/y")})).await;
        ok(
            &client,
            "write_file",
            json!({"path": d.p("x/y/new.txt"), "content": "new"}),
        )
        .await;
        ok(
            &client,
            "move_file",
            json!({"source": d.p("x/y/new.txt"), "destination": d.p("moved.txt")}),
        )
        .await;
        ok(
            &client,
            "copy_file",
            json!({"source": d.p("moved.txt"), "destination": d.p("copy.txt")}),
        )
        .await;
        ok(&client, "delete_file", json!({"path": d.p("gone.txt")})).await;
        let undone = ok(&client, "undo", json!({"steps": 2})).await;
        assert!(text(&undone).contains("Undid 2"), "{}", text(&undone));
        assert_eq!(read("gone.txt").as_deref(), Some("keep me\n"));
        assert_eq!(read("copy.txt"), None);
    }
    // A restart: the journal is still there.
    let client = connect(journaled(&d, data.path(), 1 << 20)).await.unwrap();
    let undone = ok(&client, "undo", json!({})).await;
    assert!(text(&undone).contains("moved"), "{}", text(&undone));
    assert_eq!(read("moved.txt"), None);
    assert_eq!(read("x/y/new.txt").as_deref(), Some("new"));
    ok(&client, "undo", json!({"steps": 2})).await;
    assert!(
        !d.path.join("x").exists(),
        "the directories it made are gone"
    );
    assert_eq!(read("a.txt").as_deref(), Some("three\nfour\n"));
    // Someone else changes the file: undo leaves it and says so, and goes on.
    fs::write(d.path.join("a.txt"), "theirs\n").unwrap();
    let undone = ok(&client, "undo", json!({})).await;
    assert!(text(&undone).contains("changed since"), "{}", text(&undone));
    assert_eq!(read("a.txt").as_deref(), Some("theirs\n"));
    fs::write(d.path.join("a.txt"), "three\n").unwrap();
    ok(&client, "undo", json!({"steps": 5})).await;
    assert_eq!(read("a.txt").as_deref(), Some("one\n"));
    let empty = ok(&client, "undo", json!({})).await;
    assert!(text(&empty).contains("Nothing to undo"), "{}", text(&empty));

    // The bound: with room for about one snapshot, older changes are forgotten.
    let small = tempfile::tempdir().unwrap();
    let client = connect(journaled(&d, small.path(), 4096)).await.unwrap();
    for i in 0..8 {
        let content = format!("{i}").repeat(1000);
        ok(
            &client,
            "write_file",
            json!({"path": d.p("a.txt"), "content": content}),
        )
        .await;
    }
    let blobs: u64 = walk_sizes(small.path());
    assert!(blobs <= 4096, "{blobs} bytes kept");
    let undone = ok(&client, "undo", json!({"steps": 10})).await;
    // The header, and at most the four changes whose snapshots fit.
    let lines = text(&undone).lines().count();
    assert!((2..=5).contains(&lines), "{}", text(&undone));

    // A tampered journal pointing outside restores nothing there.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim.txt");
    fs::write(&victim, "untouched").unwrap();
    let client = connect(journaled(&d, data.path(), 1 << 20)).await.unwrap();
    ok(
        &client,
        "write_file",
        json!({"path": d.p("a.txt"), "content": "mine"}),
    )
    .await;
    let journal = fs::read_dir(data.path().join("journal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = journal.join("records.jsonl");
    let text_now = fs::read_to_string(&records).unwrap();
    let inside = d.path.join("a.txt").display().to_string();
    fs::write(
        &records,
        text_now.replace(&inside, &victim.display().to_string()),
    )
    .unwrap();
    let undone = ok(&client, "undo", json!({})).await;
    assert!(text(&undone).contains("left as it is"), "{}", text(&undone));
    assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
}

fn walk_sizes(dir: &std::path::Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                walk_sizes(&entry.path())
            } else if entry.path().parent().is_some_and(|p| p.ends_with("blobs")) {
                entry.metadata().unwrap().len()
            } else {
                0
            }
        })
        .sum()
}
