//! Attacks on the server, through the protocol, as a hostile client or a hostile file would try
//! them. BM25 only: no model needed.

use crate::support;

use std::{path::Path, sync::Arc};

use mcp_core::testing::{TestClient, connect, text};
use mcp_server_docs::{
    collection::Collection,
    index::{Filter, Mode, Progress, Selection},
    server::{DocsServer, Shared},
};
use rmcp::model::ReadResourceRequestParams;
use serde_json::json;

/// A folder with two notes, indexed (BM25 only) and served in-process.
async fn served(root: &Path, data: &Path) -> TestClient {
    std::fs::write(root.join("a.md"), "# Alpha\n\nalpha words here\n").unwrap();
    std::fs::write(root.join("b.md"), "# Beta\n\nbeta words here\n").unwrap();
    let (library, writer) = support::open(data, root, None, true, true).unwrap();
    let mut writer = writer.unwrap();
    let report = library
        .update(&mut writer, &Selection::default(), None, &mut ())
        .unwrap();
    assert!(report.added >= 2, "{report:#?}");
    let shared = Arc::new(Shared::new(
        vec![Collection::of_folder(library, Some(writer))],
        None,
        None,
    ));
    let tasks = mcp_core::tasks::Tasks::in_memory().unwrap();
    connect(DocsServer::new(shared, tasks)).await.unwrap()
}

/// What `get_document` answers for a file swapped after indexing: locally, a refusal that
/// says why (`local_reason`: the file is read again, through the sandbox); in PostgreSQL, the
/// text as indexed (`indexed`), the disk not being read at all. Never `TOPSECRET`.
fn assert_swapped(answer: &rmcp::model::CallToolResult, local_reason: &str, indexed: &str) {
    assert!(!text(answer).contains("TOPSECRET"), "{}", text(answer));
    if support::test_store().is_none() {
        assert_eq!(answer.is_error, Some(true), "{}", text(answer));
        assert!(text(answer).contains(local_reason), "{}", text(answer));
    } else {
        assert_ne!(answer.is_error, Some(true), "{}", text(answer));
        assert!(text(answer).contains(indexed), "{}", text(answer));
    }
}

async fn read_resource(client: &TestClient, uri: &str) -> Result<String, String> {
    client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await
        .map(|result| format!("{result:?}"))
        .map_err(|error| error.to_string())
}

/// Finding 1: index a folder with `a.md`, then `ln -sf SECRET a.md`; neither `get_document` nor
/// `resources/read` may serve the secret.
#[tokio::test]
async fn an_indexed_file_swapped_for_a_link_is_not_followed() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("shadow");
    std::fs::write(&secret, "root:TOPSECRET:19000:0:99999:7:::\n").unwrap();
    let client = served(root.path(), data.path()).await;

    let before = client
        .call("get_document", json!({"path": "a.md"}))
        .await
        .unwrap();
    assert!(text(&before).contains("alpha words"), "{}", text(&before));

    std::fs::remove_file(root.path().join("a.md")).unwrap();
    std::os::unix::fs::symlink(&secret, root.path().join("a.md")).unwrap();
    // A link that stays inside the folder is refused as well: the walk never indexes links.
    std::fs::remove_file(root.path().join("b.md")).unwrap();
    std::os::unix::fs::symlink(root.path().join("a.md"), root.path().join("b.md")).unwrap();

    for path in ["a.md", "b.md"] {
        let answer = client
            .call("get_document", json!({"path": path}))
            .await
            .unwrap();
        assert_swapped(&answer, "symbolic link", "words here");
        let resource = read_resource(&client, &format!("docs://{path}")).await;
        assert_eq!(
            resource.is_err(),
            support::test_store().is_none(),
            "{resource:?}"
        );
        assert!(!format!("{resource:?}").contains("TOPSECRET"));
    }

    // Reindexing drops them rather than reading the secret into the index.
    let reindex = client.call("reindex", json!({})).await.unwrap();
    assert!(!text(&reindex).contains("TOPSECRET"), "{}", text(&reindex));
    let search = client
        .call("search", json!({"query": "TOPSECRET root", "mode": "bm25"}))
        .await
        .unwrap();
    let hits = &search.structured_content.as_ref().unwrap()["hits"];
    assert_eq!(hits.as_array().map(Vec::len), Some(0), "{hits}");
}

/// A directory on the way swapped for a link out: the sandbox resolves beneath the folder.
#[tokio::test]
async fn a_directory_swapped_for_a_link_out_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("sub")).unwrap();
    std::fs::write(root.path().join("sub/c.md"), "# C\n\ngamma words\n").unwrap();
    std::fs::write(outside.path().join("c.md"), "# C\n\nTOPSECRET\n").unwrap();
    let client = served(root.path(), data.path()).await;
    std::fs::remove_dir_all(root.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("sub")).unwrap();
    let answer = client
        .call("get_document", json!({"path": "sub/c.md"}))
        .await
        .unwrap();
    assert_swapped(
        &answer,
        "leads outside the allowed directories",
        "gamma words",
    );
}

/// An indexed file swapped for a FIFO with no writer: refused at once, not waited on forever.
#[tokio::test]
async fn an_indexed_file_swapped_for_a_fifo_is_refused_without_waiting() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let client = served(root.path(), data.path()).await;
    std::fs::remove_file(root.path().join("a.md")).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(root.path().join("a.md"))
        .status()
        .unwrap();
    assert!(made.success());
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.call("get_document", json!({"path": "a.md"})),
    )
    .await
    .expect("get_document on a FIFO never answered")
    .unwrap();
    assert_swapped(&answer, "FIFO", "alpha words");
}

/// A one-page PDF whose page content is `text`, deflated (FlateDecode), followed by `padding`
/// more deflated streams of 1 MB of zeros each (objects nothing refers to).
fn deflated_pdf(text: &str, padding: usize) -> Vec<u8> {
    use std::io::Write;
    let deflate = |bytes: &[u8]| {
        let mut encoder =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    };
    let stream = |data: &[u8]| {
        let mut object = format!(
            "<< /Length {} /Filter /FlateDecode >>\nstream\n",
            data.len()
        )
        .into_bytes();
        object.extend_from_slice(data);
        object.extend_from_slice(b"\nendstream");
        object
    };
    let content = stream(&deflate(
        format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET").as_bytes(),
    ));
    let zeros = stream(&deflate(&vec![0u8; 1024 * 1024]));
    let mut streams = vec![content];
    streams.extend(std::iter::repeat_n(zeros, padding));
    support::pdf_of(&streams)
}

/// Finding 7 of the attack run: a 2 MB PDF inflating to 2 GB took the indexer to 4.18 GB. A
/// PDF whose streams inflate past the limit is reported as a bomb and not read; a deflated PDF
/// of ordinary size is indexed as before.
#[tokio::test]
async fn a_pdf_decompression_bomb_is_reported_not_inflated() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let bomb = deflated_pdf("kaboom", 300);
    assert!(bomb.len() < 2 * 1024 * 1024, "{}", bomb.len());
    std::fs::write(root.path().join("bomb.pdf"), &bomb).unwrap();
    std::fs::write(
        root.path().join("fine.pdf"),
        deflated_pdf("zebras graze", 3),
    )
    .unwrap();
    let client = served(root.path(), data.path()).await;
    let status = client.call("index_status", json!({})).await.unwrap();
    let failures = &status.structured_content.as_ref().unwrap()["failures"];
    let failed = failures.to_string();
    assert!(failed.contains("bomb.pdf"), "{failed} {}", text(&status));
    assert!(failed.contains("decompression bomb"), "{failed}");
    assert!(!failed.contains("fine.pdf"), "{failed}");
    let found = client
        .call("search", json!({"query": "zebras", "mode": "bm25"}))
        .await
        .unwrap();
    assert!(text(&found).contains("fine.pdf"), "{}", text(&found));
}

/// Finding 7, the indexer's memory across one update: it held every changed file's chunks, the
/// texts for the model and their vectors until the end, so a large folder took as much memory
/// as its text several times over (and an update stopped late lost everything). An update now
/// writes a batch at a time: stopped part-way (here by a panic from its progress callback), it
/// keeps the batches it wrote, and the next update finishes the rest without duplicates.
#[test]
fn an_update_writes_in_batches_and_one_stopped_part_way_keeps_them() {
    const FILES: usize = 40;
    const STOP_AT: usize = 25;
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let paragraph = "Words to fill a chunk, said again. ".repeat(27);
    for i in 0..FILES {
        let sections: String = (0..3)
            .map(|s| format!("## Part {s}\n\nk{i}x {paragraph}\n\n"))
            .collect();
        std::fs::write(root.path().join(format!("f{i:02}.md")), sections).unwrap();
    }

    struct StopAt(usize);
    impl Progress for StopAt {
        fn stage(&mut self, _: &str, _: usize) {}
        fn advance(&mut self, done: usize) {
            assert!(done < self.0, "stopped at file {done}");
        }
    }
    let open = || {
        let (mut library, writer) =
            support::open(data.path(), root.path(), None, true, true).unwrap();
        library.set_batch_chunks(10);
        (library, writer.unwrap())
    };
    let (library, mut writer) = open();
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        library.update(
            &mut writer,
            &Selection::default(),
            None,
            &mut StopAt(STOP_AT),
        )
    }));
    assert!(stopped.is_err(), "the update was not stopped");
    drop((library, writer));

    let (library, mut writer) = open();
    let report = library
        .update(&mut writer, &Selection::default(), None, &mut ())
        .unwrap();
    assert!(
        report.unchanged >= STOP_AT - 4 && report.unchanged < FILES,
        "the stopped update kept {} files of the {STOP_AT} it had read: {report:#?}",
        report.unchanged
    );
    assert_eq!(report.unchanged + report.added, FILES, "{report:#?}");
    let status = library.status().unwrap();
    assert_eq!(status.files, FILES);
    assert_eq!(status.chunks, 3 * FILES);
    for i in [0, STOP_AT - 1, FILES - 1] {
        let hits = library
            .search(&format!("k{i}x"), 20, Mode::Bm25, &Filter::default(), None)
            .unwrap();
        assert_eq!(hits.len(), 3, "file {i}: {hits:#?}");
        assert!(hits.iter().all(|hit| hit.path == format!("f{i:02}.md")));
    }
}

/// `reindex` as a task (SEP-2663) for a client that declared the extension: the task ends with
/// the update's report, its status message said the stage; and an update asked to stop stops
/// between files, keeping what it wrote, and the next one takes up the rest.
#[tokio::test]
async fn reindex_runs_as_a_task_and_a_stopped_update_loses_nothing() {
    use mcp_core::testing::{Era, connect_client, tool_call};
    use rmcp::model::{
        CallToolResponse, ClientCapabilities, ClientConfig, GetTaskParams, TaskPayload,
    };

    let dir = tempfile::tempdir().unwrap();
    let (root, data) = (dir.path().join("root"), dir.path().join("data"));
    std::fs::create_dir(&root).unwrap();
    for i in 0..20 {
        std::fs::write(
            root.join(format!("n{i}.md")),
            format!("# Note {i}\n\nword{i} text\n"),
        )
        .unwrap();
    }
    let (library, writer) = support::open(&data, &root, None, true, true).unwrap();
    let mut writer = writer.unwrap();

    /// Asks to stop when asked the `n`th time (before the `n`th file).
    struct StopAfter(usize, std::cell::Cell<usize>);
    impl Progress for StopAfter {
        fn stage(&mut self, _: &str, _: usize) {}
        fn advance(&mut self, _: usize) {}
        fn stopped(&self) -> bool {
            self.1.set(self.1.get() + 1);
            self.1.get() >= self.0
        }
    }
    let mut stop = StopAfter(6, std::cell::Cell::new(0));
    let stopped = library.update(&mut writer, &Selection::default(), None, &mut stop);
    assert!(stopped.is_err(), "{stopped:?}");
    let rest = library
        .update(&mut writer, &Selection::default(), None, &mut ())
        .unwrap();
    assert_eq!(
        (rest.added, rest.unchanged),
        (15, 5),
        "the five files read before the stop were kept: {rest:#?}"
    );

    std::fs::write(root.join("late.md"), "# Late\n\nlate words\n").unwrap();
    let shared = Arc::new(Shared::new(
        vec![Collection::of_folder(library, Some(writer))],
        None,
        None,
    ));
    let tasks = mcp_core::tasks::Tasks::in_memory().unwrap();
    let mut config = ClientConfig::default();
    config.capabilities = ClientCapabilities::builder().enable_tasks().build();
    let client = connect_client(DocsServer::new(shared, tasks), config, Era::Stateless)
        .await
        .unwrap();
    let CallToolResponse::Task(created) = client
        .call_tool_once(tool_call("reindex", json!({})))
        .await
        .unwrap()
    else {
        panic!("a task");
    };
    let id = created.task.task_id;
    let mut ended = None;
    for _ in 0..1500 {
        let task = client
            .get_task(GetTaskParams::new(id.clone()))
            .await
            .unwrap();
        if task.task.status().is_terminal() {
            ended = Some(task);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ended = ended.expect("the reindex task ends within 30 s");
    let TaskPayload::Completed { result } = &ended.task.payload else {
        panic!("{ended:?}");
    };
    assert_eq!(result["structuredContent"]["added"], 1, "{result:?}");
    assert!(
        ended
            .task
            .task
            .status_message
            .as_deref()
            .unwrap_or_default()
            .starts_with("writing"),
        "{ended:?}"
    );
}
