//! Word documents, EPUB books, Jupyter notebooks, reStructuredText and the documents inside zip
//! archives: found by their words under their headings, read back by `get_document`'s path, and
//! broken or hostile ones reported by name while the rest is indexed. BM25 only: no model.
//!
//! The docx, epub and notebook are files no one here wrote by hand: `fixtures/make_fixtures.py`
//! made them with python-docx 1.2.0, EbookLib 0.20 and nbformat 5.11.1.

use std::{io::Write as _, path::Path};

use mcp_server_docs::index::{Filter, Hit, Library, Mode, Report, Selection};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn update(library: &Library, writer: &mut mcp_server_docs::index::Writer) -> Report {
    library
        .update(writer, &Selection::default(), None, &mut ())
        .unwrap()
}

fn search(library: &Library, query: &str) -> Vec<Hit> {
    library
        .search(query, 5, Mode::Bm25, &Filter::default(), None)
        .unwrap()
}

fn top(library: &Library, query: &str) -> Hit {
    search(library, query)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("nothing found for {query}"))
}

/// A zip archive at `path` of `(name, bytes)` entries, deflated.
fn zip(path: &Path, entries: &[(&str, &[u8])]) {
    let mut archive = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in entries {
        archive.start_file(*name, options).unwrap();
        archive.write_all(bytes).unwrap();
    }
    archive.finish().unwrap();
}

const RST: &str = "\
=========
Telescope
=========

Collimation
-----------

Align the secondary mirror with a Cheshire eyepiece::

    turn the three hex bolts
    a quarter at a time

Dew
---

A heater strip keeps the corrector plate clear.
";

#[test]
fn every_new_format_is_found_under_its_headings_and_read_back() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    for fixture in ["handbook.docx", "lighthouse.epub", "sourdough.ipynb"] {
        std::fs::copy(Path::new(FIXTURES).join(fixture), root.path().join(fixture)).unwrap();
    }
    std::fs::write(root.path().join("telescope.rst"), RST).unwrap();
    let inner = tempfile::tempdir().unwrap();
    zip(
        &inner.path().join("nested.zip"),
        &[("deep.md", b"# Deep\n\nThe capybara hides here.\n")],
    );
    let nested = std::fs::read(inner.path().join("nested.zip")).unwrap();
    zip(
        &root.path().join("manuals.zip"),
        &[
            (
                "manual/setup.md",
                b"# Setup\n\n## Unpacking\n\nLift the quokka carefully.\n",
            ),
            (
                "manual/page.html",
                b"<html><head><title>Care</title></head><body><h1>Care</h1><p>Feed the narwhal.</p></body></html>",
            ),
            ("manual/", b""),
            ("nested.zip", &nested),
            ("../escape.md", b"The wombat climbed out."),
            ("/absolute.md", b"The axolotl is absolute."),
            ("picture.png", b"\x89PNG not read"),
        ],
    );
    let (library, writer) =
        crate::support::open(data.path(), root.path(), None, true, true).unwrap();
    let mut writer = writer.unwrap();
    let report = update(&library, &mut writer);
    assert!(report.failed.is_empty(), "{report:#?}");
    assert_eq!(report.added, 6, "{report:#?}");

    // Word: paragraphs under the heading styles, the title from the document's properties, a
    // tab run and an entity kept.
    let hit = top(&library, "oxalic");
    assert_eq!(hit.path, "handbook.docx");
    assert_eq!(hit.title, "Beekeeping Handbook");
    assert_eq!(hit.headings, vec!["Hive inspection", "Varroa mites"]);
    let (_, text, _) = library.document("handbook.docx", None).unwrap();
    assert!(
        text.contains("Treat with oxalic acid\tin late autumn & early winter."),
        "{text}"
    );
    assert!(text.contains("burlap and pine needles"), "{text}");
    assert_eq!(top(&library, "capped").headings, vec!["Harvest"]);

    // EPUB: chapters in the spine's order (storms first), each under its own headings.
    let hit = top(&library, "Fresnel");
    assert_eq!(hit.path, "lighthouse.epub");
    assert_eq!(hit.title, "Lighthouse Keeping");
    assert_eq!(hit.headings, vec!["Lamps", "Lenses"]);
    assert_eq!(top(&library, "foghorn").headings, vec!["Storms"]);
    let (_, text, _) = library.document("lighthouse.epub", None).unwrap();
    let (storms, lamps) = (
        text.find("foghorn").unwrap(),
        text.find("paraffin").unwrap(),
    );
    assert!(storms < lamps, "{text}");
    // The lines a hit gives are lines of the text get_document shows.
    let lines = (hit.lines[0] as usize, hit.lines[1] as usize);
    let (_, part, _) = library.document("lighthouse.epub", Some(lines)).unwrap();
    assert!(part.contains("Fresnel"), "{part}");

    // Notebook: Markdown cells' headings, code cells as fences, outputs left out.
    let hit = top(&library, "levain");
    assert_eq!(hit.path, "sourdough.ipynb");
    assert_eq!(hit.title, "Sourdough analysis");
    let (_, text, _) = library.document("sourdough.ipynb", None).unwrap();
    assert!(text.contains("```python\nimport statistics"), "{text}");
    assert!(search(&library, "zeppelin").is_empty());

    // reStructuredText: titles by their adornments, the literal block whole.
    let hit = top(&library, "hex bolts");
    assert_eq!(hit.path, "telescope.rst");
    assert_eq!(hit.headings, vec!["Telescope", "Collimation"]);
    // The section's paragraph and its literal block, packed into one chunk.
    assert_eq!(hit.lines, [8, 11]);
    assert_eq!(
        top(&library, "corrector").headings,
        vec!["Telescope", "Dew"]
    );

    // A zip archive's documents, under its path and theirs, each in its own format.
    let hit = top(&library, "quokka");
    assert_eq!(hit.path, "manuals.zip!/manual/setup.md");
    assert_eq!(hit.headings, vec!["Setup", "Unpacking"]);
    assert_eq!(
        top(&library, "narwhal").path,
        "manuals.zip!/manual/page.html"
    );
    let (title, text, _) = library
        .document("manuals.zip!/manual/setup.md", None)
        .unwrap();
    assert_eq!(title, "Setup");
    assert!(text.contains("Lift the quokka"), "{text}");
    // Kind filters see the documents' own kinds.
    let html_only = library
        .search(
            "quokka narwhal",
            5,
            Mode::Bm25,
            &Filter {
                file_types: vec!["html".into()],
                ..Filter::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(html_only.len(), 1);
    assert_eq!(html_only[0].path, "manuals.zip!/manual/page.html");
    // Not opened: an archive inside the archive; not indexed: names that climb out or are
    // absolute, kinds we do not read.
    for word in ["capybara", "wombat", "axolotl"] {
        assert!(search(&library, word).is_empty(), "{word}");
    }
    let sources: Vec<String> = library
        .sources()
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert!(
        !sources
            .iter()
            .any(|p| p.contains("..") || p.contains("!//")),
        "{sources:?}"
    );
    assert!(library.document("manuals.zip!/../escape.md", None).is_err());
}

#[test]
fn an_archive_that_changes_is_followed_document_by_document() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let archive = root.path().join("notes.zip");
    zip(
        &archive,
        &[
            ("a.md", b"# A\n\nThe pelican stays.\n"),
            ("b.md", b"# B\n\nThe heron changes.\n"),
            ("c.md", b"# C\n\nThe stork leaves.\n"),
        ],
    );
    let (library, writer) =
        crate::support::open(data.path(), root.path(), None, true, true).unwrap();
    let mut writer = writer.unwrap();
    assert_eq!(update(&library, &mut writer).added, 3);

    zip(
        &archive,
        &[
            ("a.md", b"# A\n\nThe pelican stays.\n"),
            ("b.md", b"# B\n\nThe flamingo came instead.\n"),
            ("d.md", b"# D\n\nThe ibis arrives.\n"),
        ],
    );
    let report = update(&library, &mut writer);
    assert_eq!(
        (
            report.unchanged,
            report.updated,
            report.added,
            report.removed
        ),
        (1, 1, 1, 1),
        "{report:#?}"
    );
    assert!(search(&library, "heron").is_empty());
    assert!(search(&library, "stork").is_empty());
    assert_eq!(top(&library, "flamingo").path, "notes.zip!/b.md");
    assert_eq!(top(&library, "ibis").path, "notes.zip!/d.md");

    // The archive gone: its documents go with it.
    std::fs::remove_file(&archive).unwrap();
    let report = update(&library, &mut writer);
    assert_eq!(report.removed, 3, "{report:#?}");
    assert!(search(&library, "pelican").is_empty());
}

#[test]
fn broken_and_hostile_containers_are_reported_by_name_and_the_rest_is_indexed() {
    let root = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let path = |name: &str| root.path().join(name);
    std::fs::write(path("fine.md"), "# Fine\n\nThe marmot is well.\n").unwrap();
    // Not zip archives at all, or cut short.
    std::fs::write(path("letter.docx"), "just text, not a Word document").unwrap();
    std::fs::write(path("novel.epub"), "PK\x03\x04 and then nothing").unwrap();
    let whole = std::fs::read(Path::new(FIXTURES).join("handbook.docx")).unwrap();
    std::fs::write(path("cut.docx"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(path("junk.zip"), b"PK\x05\x06 nothing after").unwrap();
    std::fs::write(path("broken.ipynb"), "{\"cells\": 3}").unwrap();
    // Zip archives that are not what their name says.
    zip(
        &path("empty.docx"),
        &[("readme.txt", b"no word/document.xml")],
    );
    zip(&path("bare.epub"), &[("mimetype", b"application/epub+zip")]);
    // A bomb: one small entry that inflates past the limit for a document, beside a good one.
    let zeros = vec![0u8; 33 * 1024 * 1024];
    zip(
        &path("bomb.zip"),
        &[
            ("zeros.txt", &zeros),
            ("good.md", b"# Good\n\nThe lemur survived.\n"),
        ],
    );
    drop(zeros);

    let (library, writer) =
        crate::support::open(data.path(), root.path(), None, true, true).unwrap();
    let mut writer = writer.unwrap();
    let report = update(&library, &mut writer);
    let mut failed: Vec<(&str, &str)> = report
        .failed
        .iter()
        .map(|(p, why)| (p.as_str(), why.as_str()))
        .collect();
    failed.sort();
    let names: Vec<&str> = failed.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        names,
        vec![
            "bare.epub",
            "bomb.zip!/zeros.txt",
            "broken.ipynb",
            "cut.docx",
            "empty.docx",
            "junk.zip",
            "letter.docx",
            "novel.epub",
        ],
        "{failed:#?}"
    );
    let why = |name: &str| failed.iter().find(|(p, _)| *p == name).unwrap().1;
    assert!(why("bomb.zip!/zeros.txt").contains("inflates to more than 32 MB"));
    assert!(why("empty.docx").contains("no word/document.xml"));
    assert!(why("bare.epub").contains("no META-INF/container.xml"));
    assert!(why("letter.docx").contains("not a readable Word document"));
    assert!(why("broken.ipynb").contains("not a Jupyter notebook"));
    assert!(why("junk.zip").contains("not a readable zip archive"));
    // The rest is indexed.
    assert_eq!(top(&library, "marmot").path, "fine.md");
    assert_eq!(top(&library, "lemur").path, "bomb.zip!/good.md");
}
