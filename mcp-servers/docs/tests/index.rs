//! The index with the real model: every format found, failures reported, ignored files left
//! out, incremental updates that embed only what changed, the model mismatch, the writer lock,
//! meaning found without shared words.

use crate::support;

use std::path::Path;

use mcp_server_docs::index::{DocsError, Filter, Hit, Library, Mode, Selection};

fn open(data: &Path, root: &Path) -> (Library, mcp_server_docs::index::Writer) {
    let (library, writer) =
        support::open(data, root, Some(&support::embedder().id), true, true).unwrap();
    (library, writer.unwrap())
}

fn search(library: &Library, query: &str, mode: Mode) -> Vec<Hit> {
    library
        .search(
            query,
            5,
            mode,
            &Filter::default(),
            Some(support::embedder()),
        )
        .unwrap()
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn every_format_is_found_failures_are_reported_and_ignored_files_left_out() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    support::library(root.path());
    let (library, mut writer) = open(data.path(), root.path());
    let report = library
        .update(
            &mut writer,
            &Selection::default(),
            Some(support::embedder()),
            &mut (),
        )
        .unwrap();
    assert_eq!(report.added, 7, "{report:#?}");
    assert_eq!(report.embedded, report.chunks);
    let mut failed: Vec<&str> = report.failed.iter().map(|(p, _)| p.as_str()).collect();
    failed.sort();
    assert_eq!(failed, vec!["notes/binary.txt", "papers/broken.pdf"]);
    assert!(report.failed.iter().any(|(_, why)| why.contains("PDF")));

    // Each format, by a word only it has, in BM25 and in hybrid.
    for (query, path) in [
        ("kettle installer", "guide/install.md"),
        ("ferry sunscreen", "notes/trip.txt"),
        ("codling moths", "site/page.html"),
        ("zebras serengeti", "papers/zebra.pdf"),
        ("hypotenuse triangle", "src/lib.rs"),
        ("walrus", "scripts/tool.py"),
    ] {
        for mode in [Mode::Bm25, Mode::Hybrid] {
            let hits = search(&library, query, mode);
            assert_eq!(
                hits.first().map(|h| h.path.as_str()),
                Some(path),
                "{query} ({mode:?}): {hits:#?}"
            );
        }
    }
    // Structure: the fence stays whole under its headings, with the lines it spans.
    let hit = &search(&library, "restart with kettle", Mode::Bm25)[0];
    assert_eq!(hit.headings, vec!["Installing Frobnicator", "On Linux"]);
    assert!(hit.snippet.contains("**kettle**"), "{}", hit.snippet);
    let (_, text, _) = library
        .document(
            &hit.path,
            Some((hit.lines[0] as usize, hit.lines[1] as usize)),
        )
        .unwrap();
    assert!(
        text.contains("```sh") && text.contains("# then restart\n```"),
        "{text}"
    );
    let html = &search(&library, "codling moths", Mode::Bm25)[0];
    assert_eq!(html.title, "Orchard Care");
    assert_eq!(html.headings, vec!["Orchard Care", "Pests"]);

    // Left out: .gitignore'd, hidden, unsupported.
    for query in ["swordfish", "platypus"] {
        assert!(search(&library, query, Mode::Bm25).is_empty(), "{query}");
    }
    let status = library.status().unwrap();
    assert_eq!(status.files, 7);
    assert_eq!(status.failures.len(), 2);
    assert_eq!(
        status.model.as_deref(),
        Some(support::embedder().id.name.as_str())
    );

    // Filters.
    let md_only = library
        .search(
            "kettle zebras walrus",
            10,
            Mode::Hybrid,
            &Filter {
                file_types: vec!["markdown".into()],
                ..Filter::default()
            },
            Some(support::embedder()),
        )
        .unwrap();
    assert!(!md_only.is_empty() && md_only.iter().all(|h| h.path.ends_with(".md")));
    let in_papers = library
        .search(
            "zebras kettle",
            10,
            Mode::Semantic,
            &Filter {
                path_glob: Some("papers/**".into()),
                ..Filter::default()
            },
            Some(support::embedder()),
        )
        .unwrap();
    assert!(!in_papers.is_empty() && in_papers.iter().all(|h| h.path.starts_with("papers/")));

    // Only indexed documents can be read.
    for outside in ["secret/plans.md", "../../etc/passwd", "/etc/passwd"] {
        assert!(matches!(
            library.document(outside, None),
            Err(DocsError::UnknownDocument(_))
        ));
    }
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn updates_embed_only_what_changed_and_drop_what_is_gone() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    support::library(root.path());
    let (library, mut writer) = open(data.path(), root.path());
    let model = Some(support::embedder());
    let first = library
        .update(&mut writer, &Selection::default(), model, &mut ())
        .unwrap();
    let again = library
        .update(&mut writer, &Selection::default(), model, &mut ())
        .unwrap();
    assert_eq!((again.added, again.updated, again.removed), (0, 0, 0));
    assert_eq!(again.unchanged, first.added);
    assert_eq!(again.embedded, 0, "an unchanged folder embeds nothing");

    std::fs::write(
        root.path().join("notes/trip.txt"),
        "The ferry now leaves at ten, with llamas.\n",
    )
    .unwrap();
    std::fs::remove_file(root.path().join("scripts/tool.py")).unwrap();
    std::fs::write(
        root.path().join("guide/new.md"),
        "# New\n\nAbout narwhals.\n",
    )
    .unwrap();
    let changed = library
        .update(&mut writer, &Selection::default(), model, &mut ())
        .unwrap();
    assert_eq!(
        (changed.added, changed.updated, changed.removed),
        (1, 1, 1),
        "{changed:#?}"
    );
    assert_eq!(changed.embedded, changed.chunks);
    assert_eq!(changed.chunks, 2);
    assert!(search(&library, "walrus", Mode::Bm25).is_empty());
    assert!(search(&library, "sunscreen", Mode::Bm25).is_empty());
    assert_eq!(
        search(&library, "llamas", Mode::Bm25)[0].path,
        "notes/trip.txt"
    );
    assert_eq!(
        search(&library, "narwhals", Mode::Hybrid)[0].path,
        "guide/new.md"
    );
    // No orphan vectors: semantic search over everything finds only live chunks.
    let status = library.status().unwrap();
    assert_eq!(status.vectors, status.chunks);

    // A scoped update leaves the rest alone even if it changed.
    std::fs::write(
        root.path().join("guide/new.md"),
        "# New\n\nAbout belugas.\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("notes/trip.txt"),
        "Changed again: gondolas.\n",
    )
    .unwrap();
    let scoped = library
        .update(
            &mut writer,
            &Selection {
                scope: Some("guide".into()),
                ..Selection::default()
            },
            model,
            &mut (),
        )
        .unwrap();
    assert_eq!((scoped.updated, scoped.removed), (1, 0), "{scoped:#?}");
    assert!(search(&library, "gondolas", Mode::Bm25).is_empty());
    assert_eq!(
        search(&library, "belugas", Mode::Bm25)[0].path,
        "guide/new.md"
    );

    // A reopened index knows it all.
    drop(writer);
    drop(library);
    let (library, _) = support::open(
        data.path(),
        root.path(),
        Some(&support::embedder().id),
        false,
        false,
    )
    .unwrap();
    assert_eq!(
        search(&library, "belugas", Mode::Semantic)[0].path,
        "guide/new.md"
    );
}

#[test]
fn a_second_local_writer_is_busy() {
    // tantivy's lock: the local store's own (PostgreSQL's updates wait for each other: the
    // store module tests that).
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.md"), "# A\n\nAlpha.\n").unwrap();
    let (_library, writer) = Library::open(data.path(), root.path(), None, true, true).unwrap();
    assert!(writer.is_some());

    // While the writer is held, a second one is refused (readers are fine).
    let busy = Library::open(data.path(), root.path(), None, true, true);
    assert!(matches!(busy, Err(DocsError::Busy(_))), "{:?}", busy.err());
    assert!(
        busy.err()
            .unwrap()
            .to_string()
            .contains("in use by another mcp-docs")
    );
    assert!(Library::open(data.path(), root.path(), None, false, false).is_ok());
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn another_model_is_refused_with_the_way_out() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("a.md"), "# A\n\nAlpha.\n").unwrap();
    let (library, mut writer) = open(data.path(), root.path());
    library
        .update(
            &mut writer,
            &Selection::default(),
            Some(support::embedder()),
            &mut (),
        )
        .unwrap();
    drop(writer);
    drop(library);

    let float = support::float_embedder();
    assert_eq!(float.id.dim, support::embedder().id.dim);
    assert_ne!(float.id.name, support::embedder().id.name);
    let error = support::open(data.path(), root.path(), Some(&float.id), true, true)
        .err()
        .unwrap();
    assert!(matches!(error, DocsError::ModelMismatch { .. }));
    let message = error.to_string();
    assert!(
        message.contains("--rebuild") && message.contains(&float.id.name),
        "{message}"
    );

    // Without any model, updating an index that has vectors is refused too.
    let (library, writer) = support::open(data.path(), root.path(), None, true, true).unwrap();
    let refused = library.update(&mut writer.unwrap(), &Selection::default(), None, &mut ());
    assert!(matches!(refused, Err(DocsError::ModelMissing { .. })));
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn meaning_is_found_without_shared_words_and_the_quantised_model_agrees_with_float() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cars.md"),
        "# Vehicle upkeep\n\nChange the engine oil and rotate the tyres every ten thousand kilometres.\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("baking.md"),
        "# Bread\n\nKnead the dough, let it rise, then bake it in a hot oven.\n",
    )
    .unwrap();
    let (library, mut writer) = open(data.path(), root.path());
    library
        .update(
            &mut writer,
            &Selection::default(),
            Some(support::embedder()),
            &mut (),
        )
        .unwrap();
    let query = "how to maintain my automobile";
    assert!(
        search(&library, query, Mode::Bm25)
            .iter()
            .all(|h| h.path != "cars.md")
    );
    assert_eq!(search(&library, query, Mode::Semantic)[0].path, "cars.md");
    assert_eq!(search(&library, query, Mode::Hybrid)[0].path, "cars.md");

    let texts = vec![
        "Change the engine oil.".to_owned(),
        "Knead the dough and bake it.".to_owned(),
    ];
    let quantised = support::embedder().embed(&texts, |_| {}).unwrap();
    let float = support::float_embedder().embed(&texts, |_| {}).unwrap();
    for (q, f) in quantised.iter().zip(&float) {
        let cosine: f32 = q.iter().zip(f).map(|(a, b)| a * b).sum();
        assert!(cosine > 0.97, "cosine {cosine}");
    }
}

#[test]
#[ignore = "needs the embedding model (setup-model.sh); .ci/run runs it"]
fn a_filter_finds_its_documents_however_far_down_the_ranking_they_are() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    // 1,200 notes about kettles, and one about something else (a kettle in passing) in a folder
    // of its own.
    std::fs::create_dir_all(root.path().join("kitchen")).unwrap();
    std::fs::create_dir_all(root.path().join("garden")).unwrap();
    for i in 0..1200 {
        std::fs::write(
            root.path().join(format!("kitchen/{i}.txt")),
            format!("Kettle note {i}: boil the water in the kettle, then pour."),
        )
        .unwrap();
    }
    std::fs::write(
        root.path().join("garden/moles.md"),
        "# Moles\n\nThe moles dug tunnels under the lawn all winter, past an old kettle.\n",
    )
    .unwrap();
    let (library, mut writer) = open(data.path(), root.path());
    library
        .update(
            &mut writer,
            &Selection::default(),
            Some(support::embedder()),
            &mut (),
        )
        .unwrap();
    for (mode, filter) in [
        // The garden note is far below the kitchen's 1,200 for BM25 too.
        (
            Mode::Bm25,
            Filter {
                path_glob: Some("garden/**".into()),
                ..Filter::default()
            },
        ),
        (
            Mode::Semantic,
            Filter {
                path_glob: Some("garden/**".into()),
                ..Filter::default()
            },
        ),
        (
            Mode::Hybrid,
            Filter {
                path_glob: Some("garden/**".into()),
                ..Filter::default()
            },
        ),
        (
            Mode::Semantic,
            Filter {
                file_types: vec!["md".into()],
                ..Filter::default()
            },
        ),
    ] {
        let hits = library
            .search(
                "boiling water in a kettle",
                5,
                mode,
                &filter,
                Some(support::embedder()),
            )
            .unwrap();
        let paths: Vec<&str> = hits.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(paths, ["garden/moles.md"], "{mode:?} {filter:?}");
    }
    // Unfiltered, the kettles come first.
    let hits = search(&library, "boiling water in a kettle", Mode::Hybrid);
    assert!(hits.iter().all(|h| h.path.starts_with("kitchen/")));
}
