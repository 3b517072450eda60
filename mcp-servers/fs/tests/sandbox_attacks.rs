//! Every known way out of a filesystem sandbox, tried through the protocol. Each must fail, and
//! nothing outside the allowed directory may be read, written, listed or revealed.

use std::{
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use mcp_core::testing::{TestClient, connect, text};
use mcp_server_fs::{FsServer, Limits, Sandbox};
use serde_json::json;

const SECRET: &str = "TOP-SECRET-CONTENT";

/// `<tmp>/proj` is allowed; `<tmp>/proj_evil` and `<tmp>/outside` hold secrets.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    proj: PathBuf,
    outside: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let proj = root.join("proj");
        let evil = root.join("proj_evil");
        let outside = root.join("outside");
        for dir in [&proj, &evil, &outside] {
            fs::create_dir(dir).unwrap();
        }
        fs::write(proj.join("ok.txt"), "inside").unwrap();
        fs::write(evil.join("secret.txt"), SECRET).unwrap();
        fs::write(outside.join("secret.txt"), SECRET).unwrap();
        Self {
            _tmp: tmp,
            root,
            proj,
            outside,
        }
    }

    async fn client(&self) -> TestClient {
        let sandbox = Sandbox::new(&[&self.proj]).unwrap();
        connect(FsServer::new(sandbox, Limits::default(), false))
            .await
            .unwrap()
    }

    fn p(&self, relative: &str) -> String {
        self.proj.join(relative).display().to_string()
    }
}

/// Calls a tool and asserts it failed as a tool error, never showing the secret.
async fn refused(client: &TestClient, tool: &str, arguments: serde_json::Value) -> String {
    let result = client.call(tool, arguments.clone()).await.unwrap();
    let shown = text(&result);
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} {arguments} was allowed: {shown}"
    );
    assert!(
        !shown.contains(SECRET),
        "{tool} {arguments} revealed the secret"
    );
    shown
}

fn untouched(outside: &Path) {
    assert_eq!(
        fs::read_to_string(outside.join("secret.txt")).unwrap(),
        SECRET
    );
    let names: Vec<_> = fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "something was created outside: {names:?}");
}

#[tokio::test]
async fn prefix_siblings_are_not_inside() {
    let f = Fixture::new();
    let client = f.client().await;
    let evil = f.root.join("proj_evil/secret.txt").display().to_string();
    let message = refused(&client, "read_text_file", json!({ "path": evil })).await;
    assert!(
        message.contains("outside the allowed directories"),
        "{message}"
    );
    refused(
        &client,
        "list_directory",
        json!({ "path": f.root.join("proj_evil").display().to_string() }),
    )
    .await;
    refused(
        &client,
        "write_file",
        json!({ "path": f.root.join("proj_evil/new").display().to_string(), "content": "x" }),
    )
    .await;
    assert!(!f.root.join("proj_evil/new").exists());
}

#[tokio::test]
async fn dot_dot_absolute_home_nul_and_long_paths_fail_cleanly() {
    let f = Fixture::new();
    let client = f.client().await;
    for path in [
        f.p("../outside/secret.txt"),
        f.p("sub/../../outside/secret.txt"),
        "../outside/secret.txt".to_owned(),
        "/etc/passwd".to_owned(),
        "~/.ssh/id_rsa".to_owned(),
        "~".to_owned(),
        "/".to_owned(),
        format!("{}/../../../../../../../etc/passwd", f.proj.display()),
    ] {
        refused(&client, "read_text_file", json!({ "path": path })).await;
    }
    let nul = refused(
        &client,
        "read_text_file",
        json!({ "path": format!("{}\u{0}x", f.p("ok.txt")) }),
    )
    .await;
    assert!(nul.contains("NUL"), "{nul}");
    refused(&client, "read_text_file", json!({ "path": "" })).await;
    let long = f.p(&"a".repeat(5000));
    refused(&client, "read_text_file", json!({ "path": long.clone() })).await;
    refused(
        &client,
        "write_file",
        json!({ "path": long, "content": "x" }),
    )
    .await;
    // Relative paths are taken inside the first allowed directory.
    let inside = client
        .call("read_text_file", json!({ "path": "ok.txt" }))
        .await
        .unwrap();
    assert_eq!(text(&inside), "inside");
    untouched(&f.outside);
}

#[tokio::test]
async fn symlinks_pointing_out_are_refused_for_every_operation() {
    let f = Fixture::new();
    symlink(f.outside.join("secret.txt"), f.proj.join("file_link")).unwrap();
    symlink(&f.outside, f.proj.join("dir_link")).unwrap();
    let client = f.client().await;

    refused(
        &client,
        "read_text_file",
        json!({ "path": f.p("file_link") }),
    )
    .await;
    refused(
        &client,
        "read_text_file",
        json!({ "path": f.p("dir_link/secret.txt") }),
    )
    .await;
    refused(
        &client,
        "read_media_file",
        json!({ "path": f.p("file_link") }),
    )
    .await;
    refused(
        &client,
        "read_lines",
        json!({ "path": f.p("file_link"), "start_line": 1 }),
    )
    .await;
    refused(
        &client,
        "get_file_info",
        json!({ "path": f.p("dir_link/secret.txt") }),
    )
    .await;
    refused(
        &client,
        "list_directory",
        json!({ "path": f.p("dir_link") }),
    )
    .await;
    refused(
        &client,
        "directory_tree",
        json!({ "path": f.p("dir_link") }),
    )
    .await;
    refused(
        &client,
        "search_files",
        json!({ "path": f.p("dir_link"), "pattern": "*" }),
    )
    .await;
    refused(
        &client,
        "grep",
        json!({ "pattern": "SECRET", "path": f.p("dir_link") }),
    )
    .await;
    refused(
        &client,
        "write_file",
        json!({ "path": f.p("file_link"), "content": "pwned" }),
    )
    .await;
    refused(
        &client,
        "edit_file",
        json!({ "path": f.p("file_link"), "edits": [{"oldText": "TOP", "newText": "x"}] }),
    )
    .await;
    refused(
        &client,
        "copy_file",
        json!({ "source": f.p("file_link"), "destination": f.p("copy.txt") }),
    )
    .await;
    assert!(!f.proj.join("copy.txt").exists());

    // A read through the multi-file tool reports the refusal per file, without the content.
    let many = client
        .call(
            "read_multiple_files",
            json!({ "paths": [f.p("ok.txt"), f.p("file_link")] }),
        )
        .await
        .unwrap();
    assert!(text(&many).contains("inside"));
    assert!(!text(&many).contains(SECRET));

    // Walking the allowed directory never follows the links out.
    for (tool, args) in [
        ("grep", json!({ "pattern": "SECRET", "path": f.p("") })),
        (
            "search_files",
            json!({ "path": f.p(""), "pattern": "**/secret*" }),
        ),
        ("directory_tree", json!({ "path": f.p("") })),
    ] {
        let result = client.call(tool, args).await.unwrap();
        assert!(!text(&result).contains(SECRET), "{tool}");
        assert!(
            !text(&result).contains("secret.txt"),
            "{tool} revealed a name outside: {}",
            text(&result)
        );
    }
    untouched(&f.outside);
}

#[tokio::test]
async fn a_dangling_link_stays_dead_when_its_target_appears_outside() {
    let f = Fixture::new();
    symlink(f.outside.join("later.txt"), f.proj.join("dangling")).unwrap();
    let client = f.client().await;
    refused(
        &client,
        "write_file",
        json!({ "path": f.p("dangling"), "content": "written through a link" }),
    )
    .await;
    assert!(
        !f.outside.join("later.txt").exists(),
        "a write followed the dangling link out"
    );
    fs::write(f.outside.join("later.txt"), SECRET).unwrap();
    refused(
        &client,
        "read_text_file",
        json!({ "path": f.p("dangling") }),
    )
    .await;
    assert_eq!(
        fs::read_to_string(f.outside.join("later.txt")).unwrap(),
        SECRET
    );
}

#[tokio::test]
async fn writes_through_a_symlinked_parent_and_moves_out_fail() {
    let f = Fixture::new();
    symlink(&f.outside, f.proj.join("dir_link")).unwrap();
    let client = f.client().await;
    refused(
        &client,
        "write_file",
        json!({ "path": f.p("dir_link/new.txt"), "content": "x" }),
    )
    .await;
    refused(
        &client,
        "create_directory",
        json!({ "path": f.p("dir_link/newdir") }),
    )
    .await;
    refused(&client, "move_file", json!({ "source": f.p("ok.txt"), "destination": f.outside.join("moved.txt").display().to_string() })).await;
    refused(
        &client,
        "move_file",
        json!({ "source": f.p("ok.txt"), "destination": f.p("dir_link/moved.txt") }),
    )
    .await;
    refused(&client, "move_file", json!({ "source": f.outside.join("secret.txt").display().to_string(), "destination": f.p("stolen.txt") })).await;
    refused(
        &client,
        "copy_file",
        json!({ "source": f.p("ok.txt"), "destination": f.p("dir_link/copy.txt") }),
    )
    .await;
    refused(
        &client,
        "delete_file",
        json!({ "path": f.p("dir_link/secret.txt") }),
    )
    .await;
    assert_eq!(fs::read_to_string(f.proj.join("ok.txt")).unwrap(), "inside");
    assert!(!f.proj.join("stolen.txt").exists());
    untouched(&f.outside);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_swapped_in_between_check_and_use_cannot_leak() {
    let f = Fixture::new();
    fs::write(f.proj.join("decoy.txt"), "harmless").unwrap();
    let client = f.client().await;
    let flip = f.proj.join("flip");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (flip, decoy, secret) = (
            flip.clone(),
            f.proj.join("decoy.txt"),
            f.outside.join("secret.txt"),
        );
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut as_link = false;
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(&flip);
                if as_link {
                    let _ = symlink(&secret, &flip);
                } else {
                    let _ = fs::copy(&decoy, &flip);
                }
                as_link = !as_link;
            }
        })
    };
    let mut served = 0;
    for _ in 0..300 {
        let result = client
            .call(
                "read_text_file",
                json!({ "path": flip.display().to_string() }),
            )
            .await
            .unwrap();
        let shown = text(&result);
        assert!(
            !shown.contains(SECRET),
            "the swapped-in link leaked the secret"
        );
        if result.is_error != Some(true) {
            served += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    // The race was real: some reads caught the regular file.
    assert!(served > 0);
}

/// A walk lists a directory, then opens it: a directory swapped for a link to the outside in
/// between is refused, not followed (in a subdirectory and at the top of a parallel walk).
#[tokio::test]
async fn a_directory_swapped_for_a_link_mid_walk_leads_nowhere() {
    let f = Fixture::new();
    for dir in ["a", "b", "c", "nested"] {
        fs::create_dir(f.proj.join(dir)).unwrap();
    }
    let client = f.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let flips = [f.proj.join("flip"), f.proj.join("nested/flip")];
    let handle = {
        let (flips, outside, stop) = (flips.clone(), f.outside.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for flip in &flips {
                    let _ = fs::create_dir(flip);
                    let _ = fs::write(flip.join("decoy.txt"), "harmless");
                }
                for flip in &flips {
                    let _ = fs::remove_file(flip.join("decoy.txt"));
                    let _ = fs::remove_dir(flip);
                    let _ = symlink(&outside, flip);
                }
                for flip in &flips {
                    let _ = fs::remove_file(flip);
                }
            }
        })
    };
    let mut walked_the_directory = 0;
    for round in 0..400 {
        let (tool, args) = if round % 2 == 0 {
            ("directory_tree", json!({ "path": f.p("") }))
        } else {
            (
                "search_files",
                json!({ "path": f.p(""), "pattern": "**/*.txt" }),
            )
        };
        let result = client.call(tool, args).await.unwrap();
        let shown = text(&result);
        assert!(
            !shown.contains("secret.txt"),
            "{tool} followed a swapped-in link out: {shown}"
        );
        if shown.contains("decoy") {
            walked_the_directory += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    // The race was real: some walks went into the directory.
    assert!(walked_the_directory > 0);
    untouched(&f.outside);
}

#[tokio::test]
async fn non_utf8_names_are_listed_without_breaking_anything() {
    use std::os::unix::ffi::OsStrExt;
    let f = Fixture::new();
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name.txt");
    fs::write(f.proj.join(name), "bytes").unwrap();
    let client = f.client().await;
    let listing = client
        .call("list_directory", json!({ "path": f.p("") }))
        .await
        .unwrap();
    assert_ne!(listing.is_error, Some(true));
    assert!(
        text(&listing).contains("bad-\u{fffd}-name.txt"),
        "{}",
        text(&listing)
    );
    let tree = client
        .call("directory_tree", json!({ "path": f.p("") }))
        .await
        .unwrap();
    assert_ne!(tree.is_error, Some(true));
}

// ---------------------------------------------------------------------------------------------
// --deny and read-only roots

/// `<tmp>/proj` writable with `.env`, `keys/server.pem` and `secrets/` denied, and inside it
/// `archive`, allowed too and read-only; links in proj lead to the denied files and into the
/// archive.
struct Withheld {
    _tmp: tempfile::TempDir,
    proj: PathBuf,
    archive: PathBuf,
}

impl Withheld {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let proj = base.join("proj");
        let archive = proj.join("archive");
        for dir in [
            proj.join("keys"),
            proj.join("secrets/deep"),
            proj.join("src"),
            archive.join("old"),
        ] {
            fs::create_dir_all(dir).unwrap();
        }
        fs::write(proj.join(".env"), SECRET).unwrap();
        fs::write(proj.join("src/.ENV"), SECRET).unwrap();
        fs::write(proj.join("keys/server.pem"), SECRET).unwrap();
        fs::write(proj.join("secrets/deep/token.txt"), SECRET).unwrap();
        fs::write(proj.join("src/main.rs"), "fn main() {}\n").unwrap();
        fs::write(archive.join("old/report.txt"), "kept as it is").unwrap();
        // Relative links, as a repository holds them (the sandbox refuses absolute ones).
        symlink("../.env", proj.join("src/config.txt")).unwrap();
        symlink("../secrets", proj.join("src/vault")).unwrap();
        symlink("../archive/old", proj.join("src/old")).unwrap();
        Self {
            _tmp: tmp,
            proj,
            archive,
        }
    }

    async fn client(&self) -> TestClient {
        let dirs = [self.proj.clone(), self.archive.clone()];
        let policy = mcp_server_fs::Policy::new(
            &["**/.env".into(), "**/*.pem".into(), "secrets".into()],
            &dirs,
            std::slice::from_ref(&self.archive),
        )
        .unwrap();
        let sandbox = Sandbox::new(&dirs).unwrap();
        let settings = mcp_server_fs::Settings {
            policy,
            ..Default::default()
        };
        connect(FsServer::with_settings(sandbox, settings))
            .await
            .unwrap()
    }

    fn p(&self, relative: &str) -> String {
        self.proj.join(relative).display().to_string()
    }
}

/// Denied paths, however they are reached: by name, in another letter case, through `..`,
/// through a link to the file or to its directory; and never listed, found or grepped.
#[tokio::test]
async fn denied_paths_are_refused_and_absent_however_they_are_reached() {
    let w = Withheld::new();
    let client = w.client().await;
    let attempts = [
        ("read_text_file", json!({"path": w.p(".env")})),
        ("read_text_file", json!({"path": w.p("src/.ENV")})),
        ("read_text_file", json!({"path": w.p("src/../.env")})),
        ("read_text_file", json!({"path": w.p("src/config.txt")})),
        (
            "read_text_file",
            json!({"path": w.p("src/vault/deep/token.txt")}),
        ),
        ("read_text_file", json!({"path": w.p("keys/server.pem")})),
        (
            "read_text_file",
            json!({"path": w.p("KEYS/../keys/SERVER.PEM")}),
        ),
        ("read_lines", json!({"path": w.p(".env"), "start_line": 1})),
        ("read_media_file", json!({"path": w.p("keys/server.pem")})),
        ("get_file_info", json!({"path": w.p(".env")})),
        ("list_directory", json!({"path": w.p("secrets")})),
        ("directory_tree", json!({"path": w.p("src/vault")})),
        ("grep", json!({"pattern": "SECRET", "path": w.p("secrets")})),
        ("write_file", json!({"path": w.p(".env"), "content": "x"})),
        (
            "write_file",
            json!({"path": w.p("secrets/new.txt"), "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": w.p(".env"), "edits": [{"oldText": "TOP", "newText": "x"}]}),
        ),
        (
            "move_file",
            json!({"source": w.p(".env"), "destination": w.p("src/free.txt")}),
        ),
        (
            "move_file",
            json!({"source": w.p("src/main.rs"), "destination": w.p("secrets/main.rs")}),
        ),
        (
            "copy_file",
            json!({"source": w.p("keys/server.pem"), "destination": w.p("src/k.txt")}),
        ),
        (
            "copy_file",
            json!({"source": w.p("src/config.txt"), "destination": w.p("src/c.txt")}),
        ),
        ("delete_file", json!({"path": w.p(".env")})),
        ("create_directory", json!({"path": w.p("secrets/more")})),
    ];
    for (tool, arguments) in attempts {
        let result = client.call(tool, arguments.clone()).await.unwrap();
        let said = text(&result);
        assert_eq!(result.is_error, Some(true), "{tool} {arguments}: {said}");
        assert!(said.contains("(--deny "), "{tool} {arguments}: {said}");
        assert!(!said.contains(SECRET), "{tool} {arguments}: {said}");
    }
    let multiple = client
        .call(
            "read_multiple_files",
            json!({"paths": [w.p(".env"), w.p("src/main.rs")]}),
        )
        .await
        .unwrap();
    assert!(!text(&multiple).contains(SECRET), "{}", text(&multiple));
    assert!(text(&multiple).contains("fn main()"));
    // Listings, trees, searches and grep do not show them.
    for (tool, arguments) in [
        ("list_directory", json!({"path": w.p("")})),
        ("list_directory_with_sizes", json!({"path": w.p("keys")})),
        ("directory_tree", json!({"path": w.p("")})),
        ("search_files", json!({"path": w.p(""), "pattern": "**/*"})),
        ("grep", json!({"pattern": "SECRET|main", "path": w.p("")})),
    ] {
        let result = client.call(tool, arguments.clone()).await.unwrap();
        let said = text(&result);
        assert_ne!(result.is_error, Some(true), "{tool}: {said}");
        for hidden in [
            ".env",
            ".ENV",
            "server.pem",
            "token.txt",
            "\"secrets\"",
            "] secrets",
            SECRET,
        ] {
            assert!(!said.contains(hidden), "{tool} shows {hidden}: {said}");
        }
    }
    // What is not denied still works, the files are as they were, and the listing says why.
    assert!(
        !text(
            &client
                .call("read_text_file", json!({"path": w.p("src/main.rs")}))
                .await
                .unwrap()
        )
        .contains("denied")
    );
    assert_eq!(fs::read_to_string(w.proj.join(".env")).unwrap(), SECRET);
    assert_eq!(
        fs::read_to_string(w.proj.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    let allowed = text(
        &client
            .call("list_allowed_directories", json!({}))
            .await
            .unwrap(),
    );
    assert!(
        allowed.contains("**/.env") && allowed.contains("(read-only)"),
        "{allowed}"
    );
}

/// A read-only root can be read and copied from, never changed: not directly, not through a
/// link from a writable root, not as a move's or copy's target.
#[tokio::test]
async fn read_only_roots_are_read_never_changed() {
    let w = Withheld::new();
    let client = w.client().await;
    let report = w.archive.join("old/report.txt").display().to_string();
    let read = client
        .call("read_text_file", json!({"path": report}))
        .await
        .unwrap();
    assert_eq!(text(&read), "kept as it is");
    let into = w.archive.join("old/new.txt").display().to_string();
    let attempts = [
        ("write_file", json!({"path": report, "content": "x"})),
        (
            "write_file",
            json!({"path": report, "content": "x", "mode": "append"}),
        ),
        (
            "write_file",
            json!({"path": into, "content": "x", "mode": "create"}),
        ),
        (
            "write_file",
            json!({"path": w.p("src/old/report.txt"), "content": "x"}),
        ),
        (
            "edit_file",
            json!({"path": report, "edits": [{"oldText": "kept", "newText": "x"}]}),
        ),
        (
            "create_directory",
            json!({"path": w.archive.join("new").display().to_string()}),
        ),
        ("delete_file", json!({"path": report})),
        ("delete_file", json!({"path": w.p("src/old/report.txt")})),
        (
            "move_file",
            json!({"source": report, "destination": w.p("src/r.txt")}),
        ),
        (
            "move_file",
            json!({"source": w.p("src/main.rs"), "destination": into}),
        ),
        (
            "move_file",
            json!({"source": w.p("src/main.rs"), "destination": w.p("src/old/main.rs")}),
        ),
        (
            "copy_file",
            json!({"source": w.p("src/main.rs"), "destination": into}),
        ),
    ];
    for (tool, arguments) in attempts {
        let result = client.call(tool, arguments.clone()).await.unwrap();
        let said = text(&result);
        assert_eq!(result.is_error, Some(true), "{tool} {arguments}: {said}");
        assert!(
            said.contains("is in a read-only directory"),
            "{tool} {arguments}: {said}"
        );
    }
    assert_eq!(
        fs::read_to_string(w.archive.join("old/report.txt")).unwrap(),
        "kept as it is"
    );
    assert_eq!(fs::read_dir(w.archive.join("old")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(&w.archive).unwrap().count(), 1);
    assert!(w.proj.join("src/main.rs").exists());
    // Copying out of it is reading.
    let copied = client
        .call(
            "copy_file",
            json!({"source": report, "destination": w.p("src/report.txt")}),
        )
        .await
        .unwrap();
    assert_ne!(copied.is_error, Some(true), "{}", text(&copied));
}
