//! Query latency at 100,000 chunks, beside SQLite FTS5 (the full-text engine docs-mcp-server
//! searches with) on the same passages.
//!
//! The collection is built like the evaluation's (EVALUATION.md), ten times bigger: passages of
//! about 100 words cut from the HTML that rustup installs (the books, then the API documentation
//! of `std`, `alloc`, `core` and the rest, whose many short sections are kept down to 8 words),
//! one text file each, indexed by `Library::update` with the real model; the queries are the
//! section headings. Every query is timed in each mode, one at a time, k = 10, after a warm-up;
//! a search includes the query's embedding (semantic and hybrid), the document fetches and the
//! snippets. FTS5 (porter stemmer, any of the words, ranked by its bm25(), with a snippet) gets
//! the same queries.
//!
//! `cargo bench -p mcp-server-docs --bench latency` (needs the model: setup-model.sh) writes the
//! latency section of `mcp-servers/docs/BENCHMARKS.md`. The index is kept in the target
//! directory between runs: the first run embeds the 100,000 passages (about 20 minutes on two
//! cores), later ones nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;

use mcp_server_docs::index::{Filter, Mode};
use rusqlite::Connection;

mod common;
use common::{
    BOOKS, Latency, Printer, collection, cpu, html_root, index_passages, ms, thousands, time_each,
    write_section,
};

const CHUNKS: usize = 100_000;
const K: usize = 10;
const WARM_UP: usize = 100;
const QUERIES: usize = 2_000;

/// The passages in an FTS5 table (built once, kept beside the index).
fn fts5(path: &Path, passages: &[String]) -> Connection {
    let complete = path.is_file();
    let db = Connection::open(path).unwrap();
    let rows: i64 = if complete {
        db.query_row("SELECT count(*) FROM passages", [], |r| r.get(0))
            .unwrap_or(-1)
    } else {
        -1
    };
    if rows != passages.len() as i64 {
        db.execute_batch(
            "DROP TABLE IF EXISTS passages;
             CREATE VIRTUAL TABLE passages USING fts5(text, tokenize = 'porter unicode61');",
        )
        .unwrap();
        let tx = db.unchecked_transaction().unwrap();
        {
            let mut insert = tx
                .prepare("INSERT INTO passages (rowid, text) VALUES (?1, ?2)")
                .unwrap();
            for (i, passage) in passages.iter().enumerate() {
                insert
                    .execute(rusqlite::params![i as i64, passage])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    db
}

/// A query as FTS5 wants it: each word quoted (no syntax), any of them.
fn fts5_query(query: &str) -> String {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| format!("\"{w}\""))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn main() {
    let root = html_root();
    let mut dirs = BOOKS.to_vec();
    dirs.extend([
        "std",
        "alloc",
        "core",
        "proc_macro",
        "test",
        "unstable-book",
        "error_codes",
    ]);
    // API documentation is many short sections (a method and a line about it): kept here.
    let (mut passages, queries) = collection(&root, &dirs, CHUNKS, 8);
    passages.truncate(CHUNKS);
    // 2,000 of them, spread over the collection.
    let step = queries.len().div_ceil(QUERIES).max(1);
    let queries: Vec<String> = queries.into_iter().step_by(step).map(|q| q.text).collect();
    println!(
        "{} passages, {} queries from {}",
        passages.len(),
        queries.len(),
        root.display()
    );
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-docs-latency");
    let (library, embedder, report, took) =
        index_passages("mcp-docs-latency", &passages, &mut Printer::default());
    println!(
        "index: {} added, {} unchanged, {} embedded, in {:.1?}",
        report.added, report.unchanged, report.embedded, took
    );
    let status = library.status().unwrap();
    assert!(
        status.chunks >= CHUNKS && status.vectors == status.chunks,
        "{status:?}"
    );
    let fts = fts5(&scratch.join("fts5.sqlite"), &passages);

    let time_ours = |mode: Mode, filter: &Filter| -> Latency {
        time_each(WARM_UP, &queries, |query| {
            std::hint::black_box(
                library
                    .search(query, K, mode, filter, Some(&embedder))
                    .unwrap(),
            );
        })
    };
    let time_embedding = || -> Latency {
        time_each(WARM_UP, &queries, |query| {
            std::hint::black_box(embedder.embed_query(query).unwrap());
        })
    };
    let time_fts5 = || -> Latency {
        let mut statement = fts
            .prepare(
                "SELECT rowid, bm25(passages), snippet(passages, 0, '**', '**', '…', 40)
                 FROM passages WHERE passages MATCH ?1 ORDER BY rank LIMIT ?2",
            )
            .unwrap();
        time_each(WARM_UP, &queries, |query| {
            let rows: Vec<(i64, f64, String)> = statement
                .query_map(rusqlite::params![fts5_query(query), K as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            std::hint::black_box(rows);
        })
    };

    let fts5 = time_fts5();
    let bm25 = time_ours(Mode::Bm25, &Filter::default());
    let semantic = time_ours(Mode::Semantic, &Filter::default());
    let hybrid = time_ours(Mode::Hybrid, &Filter::default());
    // Passages 10000 to 19999: a tenth of the collection.
    let tenth = Filter {
        path_glob: Some("1????.txt".into()),
        ..Filter::default()
    };
    let hybrid_filtered = time_ours(Mode::Hybrid, &tenth);
    let embedding = time_embedding();
    let row = |name: &str, l: &Latency| {
        format!(
            "| {name} | {} | {} | {} | {} |\n",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.mean)
        )
    };
    let mut table =
        String::from("| search | p50 ms | p90 ms | p99 ms | mean ms |\n|---|---|---|---|---|\n");
    table += &row("mcp-docs bm25", &bm25);
    table += &row("mcp-docs semantic", &semantic);
    table += &row("mcp-docs hybrid", &hybrid);
    table += &row(
        "mcp-docs hybrid, `path_glob` admitting a tenth",
        &hybrid_filtered,
    );
    table += &row("(the query's embedding alone)", &embedding);
    table += &row("SQLite FTS5 bm25", &fts5);
    let ratio = fts5.p50.as_secs_f64() / bm25.p50.as_secs_f64();
    let cpu = cpu();
    let section = format!(
        "## Query latency at {chunks} chunks\n\n\
         `cargo bench -p mcp-server-docs --bench latency`. {passages} passages of about 100 words \
         from the documentation rustup installs (the books, then the API documentation), one text \
         file each: {chunks} chunks (a long passage is two), each with its {dim}-dimension vector (model `{model}`); {queries} queries (section \
         headings, spread over the collection), each run once per mode after a warm-up of {WARM_UP}, one at a time, \
         k = {K}, in one process on {cpu} ({threads} threads available). A search includes the \
         query's embedding (semantic, hybrid), the exact scan over every vector, the document \
         fetches and the snippets. SQLite FTS5 ({sqlite}, porter stemmer, any of the words, its \
         `bm25()` ranking and `snippet()`) searches the same passages.\n\n{table}\n\
         BM25 p50: mcp-docs is {ratio:.1}x SQLite FTS5's speed. The exact scan over every vector \
         costs about {scan:.1} ms (semantic minus the query's embedding, at p50): no approximate \
         index is needed at this size.\n",
        scan = (semantic.p50.as_secs_f64() - embedding.p50.as_secs_f64()) * 1000.0,
        chunks = thousands(status.chunks),
        passages = thousands(passages.len()),
        model = embedder.id.name,
        dim = embedder.id.dim,
        queries = queries.len(),
        threads = std::thread::available_parallelism().map_or(1, |n| n.get()),
        sqlite = rusqlite::version(),
    );
    println!("\n{section}");
    write_section(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
        "latency",
        &section,
    );
}
