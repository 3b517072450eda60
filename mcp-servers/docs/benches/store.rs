//! Query latency at 1,000,000 chunks: the PostgreSQL store (full-text search under GIN, pgvector's
//! HNSW index) beside the local store (tantivy, the exact scan over every vector in memory), the
//! same collection in both, in one run.
//!
//! Vectors are synthetic at this scale (embedding a million passages with the model would take
//! days on two cores): a chunk's vector is the sum of a fixed random vector per word, weighted
//! toward rare words, so passages that share words get near vectors, as with a model; the
//! searches do the same work on them as on a model's (384 dimensions, cosine). The text is
//! synthetic too: 10,000 Markdown files of 100 sections of 50 to 120 words drawn from a
//! 30,000-word vocabulary by Zipf's law (exponent 1.07, as in English), one chunk per section.
//! Queries are three words of a random section (so each matches), 1,000 of them
//! (`MCP_DOCS_BENCH_QUERIES`), k = 10, one at a time after a warm-up of a tenth; a search
//! includes the document fetches and the snippets, and the query's embedding (the same
//! synthetic function). Beside them, the server's own execution time (EXPLAIN ANALYZE) of the
//! full-text ranking query alone: the floor under PostgreSQL's BM25 column.
//!
//! `MCP_DOCS_BENCH_PG=postgres://… cargo bench -p mcp-server-docs --bench store` (a server with
//! pgvector; the bench makes and keeps the database `mcp_docs_bench`) writes the store section of
//! `mcp-servers/docs/BENCHMARKS.md`. `MCP_DOCS_BENCH_CHUNKS` sets another size. The folder and
//! both indexes are kept in the target directory: a second run indexes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use mcp_server_docs::{
    embed::{Embedder, ModelId},
    index::{Filter, Library, Mode, Selection, pg},
};

mod common;
use common::{Latency, Printer, cpu, ms, thousands, time_each, write_section};

const SECTIONS: usize = 100;
const VOCABULARY: usize = 30_000;
const DIM: usize = 384;
const K: usize = 10;

/// xorshift64*: a small, seeded, reproducible generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The vocabulary: pronounceable words of two to four syllables, all different.
fn vocabulary() -> Vec<String> {
    const ONSETS: [&str; 16] = [
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "tr",
    ];
    const VOWELS: [&str; 6] = ["a", "e", "i", "o", "u", "ai"];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(VOCABULARY);
    while words.len() < VOCABULARY {
        let syllables = 2 + (rng.next() % 3) as usize;
        let word: String = (0..syllables)
            .map(|_| {
                format!(
                    "{}{}",
                    ONSETS[(rng.next() % 16) as usize],
                    VOWELS[(rng.next() % 6) as usize]
                )
            })
            .collect();
        if seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

/// Draws word ranks by Zipf's law.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(exponent);
                total
            })
            .collect::<Vec<_>>();
        Self {
            cumulative: cumulative.iter().map(|c| c / total).collect(),
        }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(self.cumulative.len() - 1)
    }
}

/// The folder: `files` Markdown files of [`SECTIONS`] sections each, written once.
fn write_corpus(dir: &Path, files: usize, words: &[String]) {
    let done = dir.join(".complete");
    if std::fs::read_to_string(&done).ok().as_deref() == Some(&files.to_string()) {
        return;
    }
    let _ = std::fs::remove_dir_all(dir);
    let zipf = Zipf::new(words.len(), 1.07);
    let mut rng = Rng(42);
    for file in 0..files {
        let folder = dir.join(format!("{:03}", file / 100));
        std::fs::create_dir_all(&folder).unwrap();
        let mut text = format!("# Volume {file}\n\n");
        for section in 0..SECTIONS {
            let _ = write!(text, "## Part {section}\n\n");
            let length = 50 + (rng.next() % 71) as usize;
            for at in 0..length {
                if at > 0 {
                    text.push(' ');
                }
                text.push_str(&words[zipf.draw(&mut rng)]);
            }
            text.push_str(".\n\n");
        }
        std::fs::write(folder.join(format!("{file:05}.md")), text).unwrap();
    }
    std::fs::write(done, files.to_string()).unwrap();
}

/// A word's fixed random vector, from its hash.
fn word_vector(word: &str) -> [f32; DIM] {
    let mut seed = 0xcbf2_9ce4_8422_2325u64;
    for byte in word.bytes() {
        seed = (seed ^ byte as u64).wrapping_mul(0x100_0000_01b3);
    }
    let mut rng = Rng(seed | 1);
    let mut vector = [0f32; DIM];
    for x in &mut vector {
        *x = (rng.unit() * 2.0 - 1.0) as f32;
    }
    vector
}

/// The synthetic embedder: the sum of the words' vectors, each weighted by the log of its rank
/// (rare words count more, as they do for a model's sense of a passage).
fn synthetic_embedder(words: &[String]) -> Embedder {
    let rank: std::collections::HashMap<String, usize> = words
        .iter()
        .enumerate()
        .map(|(i, w)| (w.clone(), i + 1))
        .collect();
    let vectors: std::collections::HashMap<String, [f32; DIM]> =
        words.iter().map(|w| (w.clone(), word_vector(w))).collect();
    Embedder::from_fn(
        ModelId {
            name: "synthetic-bag-of-words-384".into(),
            dim: DIM,
        },
        move |texts| {
            texts
                .iter()
                .map(|text| {
                    let mut sum = vec![0f32; DIM];
                    for word in text.split(|c: char| !c.is_ascii_alphabetic()) {
                        if let (Some(vector), Some(rank)) = (vectors.get(word), rank.get(word)) {
                            let weight = (1.0 + *rank as f32).ln();
                            for (s, v) in sum.iter_mut().zip(vector) {
                                *s += weight * v;
                            }
                        }
                    }
                    if sum.iter().all(|x| *x == 0.0) {
                        sum[0] = 1.0;
                    }
                    sum
                })
                .collect()
        },
    )
}

/// Brings `library` up to date with the folder; how long it took, and whether it indexed the
/// folder from nothing (not a run that found an earlier one's index).
fn update(
    library: &Library,
    writer: Option<mcp_server_docs::index::Writer>,
    embedder: &Embedder,
) -> (Duration, bool) {
    let started = Instant::now();
    let report = library
        .update(
            &mut writer.unwrap(),
            &Selection::default(),
            Some(embedder),
            &mut Printer::default(),
        )
        .unwrap();
    println!(
        "  {} added, {} unchanged, {} chunks",
        report.added, report.unchanged, report.chunks
    );
    (started.elapsed(), report.unchanged == 0)
}

/// The queries: three words of random sections of the folder.
fn queries(dir: &Path, files: usize, n: usize) -> Vec<String> {
    let mut rng = Rng(7);
    (0..n)
        .map(|_| {
            let file = (rng.next() % files as u64) as usize;
            let text = std::fs::read_to_string(
                dir.join(format!("{:03}", file / 100))
                    .join(format!("{file:05}.md")),
            )
            .unwrap();
            let sections: Vec<&str> = text.split("## ").skip(1).collect();
            let section = sections[(rng.next() % sections.len() as u64) as usize];
            let words: Vec<&str> = section
                .lines()
                .nth(2)
                .unwrap_or_default()
                .split(|c: char| !c.is_ascii_alphabetic())
                .filter(|w| !w.is_empty())
                .collect();
            (0..3)
                .map(|_| words[(rng.next() % words.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn main() {
    let url = std::env::var("MCP_DOCS_BENCH_PG")
        .expect("MCP_DOCS_BENCH_PG: a PostgreSQL server with pgvector (a superuser's URL)");
    let chunks: usize = std::env::var("MCP_DOCS_BENCH_CHUNKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let files = chunks.div_ceil(SECTIONS);
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-docs-store");
    let docs = scratch.join(format!("folder-{files}"));
    let words = vocabulary();
    println!("writing {files} files");
    write_corpus(&docs, files, &words);
    let embedder = synthetic_embedder(&words);

    println!("local store");
    let local_dir = scratch.join(format!("local-{files}"));
    let (local, writer) = Library::open(&local_dir, &docs, Some(&embedder.id), true, true).unwrap();
    let local_indexing = update(&local, writer, &embedder);

    println!("PostgreSQL store");
    let database = pg::Database::connect(&url).unwrap();
    let name = format!("bench-{files}");
    let shown = docs.display().to_string();
    let (stored, writer) = Library::open_stored(
        &database,
        &name,
        Some(("folder", &shown)),
        &scratch.join("pg"),
        &docs,
        Some(&embedder.id),
        true,
    )
    .unwrap();
    let stored_indexing = update(&stored, writer, &embedder);
    let status = stored.status().unwrap();
    assert_eq!(status.chunks, local.status().unwrap().chunks);

    let count: usize = std::env::var("MCP_DOCS_BENCH_QUERIES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let warm_up = count / 10;
    let queries = queries(&docs, files, count);
    let time = |library: &Library, mode: Mode| -> Latency {
        time_each(warm_up, &queries, |query| {
            let hits = library
                .search(query, K, mode, &Filter::default(), Some(&embedder))
                .unwrap();
            assert!(!hits.is_empty(), "{query}");
        })
    };
    let mut rows = Vec::new();
    for mode in [Mode::Bm25, Mode::Semantic, Mode::Hybrid] {
        let name = format!("{mode:?}").to_lowercase();
        println!("timing {name}");
        let local = time(&local, mode);
        let stored = time(&stored, mode);
        rows.push((name, local, stored));
    }
    // The floor: the server's own time for the full-text ranking alone, per query.
    println!("timing the server's full-text ranking alone");
    let floor = common::latency(
        queries
            .iter()
            .map(|query| {
                database
                    .explain_words(&name, query, (K * 5).max(50))
                    .unwrap()
            })
            .collect(),
    );
    let mut table = "| search | local p50 ms | local p99 ms | PostgreSQL p50 ms | PostgreSQL p99 ms | PostgreSQL / local (p50) |\n|---|---|---|---|---|---|\n".to_owned();
    for (name, local, stored) in &rows {
        let _ = writeln!(
            table,
            "| {name} | {} | {} | {} | {} | {:.1}x |",
            ms(local.p50),
            ms(local.p99),
            ms(stored.p50),
            ms(stored.p99),
            stored.p50.as_secs_f64() / local.p50.as_secs_f64()
        );
    }
    let _ = writeln!(
        table,
        "| (PostgreSQL's own execution of the full-text ranking query alone) | | | {} | {} | |",
        ms(floor.p50),
        ms(floor.p99)
    );
    let version = database.server_version().unwrap_or_default();
    let section = format!(
        "## The PostgreSQL store beside the local one at {chunks} chunks\n\n\
         `MCP_DOCS_BENCH_PG=postgres://… cargo bench -p mcp-server-docs --bench store`. One \
         collection of {chunks} chunks in both stores: {files} synthetic Markdown files of \
         {SECTIONS} sections (50 to 120 words from a {VOCABULARY}-word vocabulary, by Zipf's law), \
         one chunk each. **The vectors are synthetic** ({DIM} dimensions: per chunk, the sum of a \
         fixed random vector per word, weighted toward rare words), as embedding a million \
         passages with the model is out of reach here; the searches do the same work on them. \
         {queries} queries (three words of a random section), k = {K}, one at a time after a \
         warm-up of {warm_up}, in one process on {cpu} ({threads} threads), the server on the same \
         machine ({version}, pgvector's HNSW index with its defaults m = 16, ef_construction = 64, \
         ef_search = 100; full-text search under GIN, ranked by `ts_rank`). A search includes the \
         query's embedding, the document fetches and the snippets. Local: tantivy's BM25 and the \
         exact scan over every vector in memory.\n\n{table}\n\
         PostgreSQL's full-text search ranks every chunk a query's words match (`ts_rank` has no \
         top-k pruning such as tantivy's block-max WAND), so its BM25 column grows with how many \
         chunks the words are in: the last row is that floor, measured on the server in the same \
         run, and no client-side work can go below it. Dense search through HNSW does not grow \
         so.\n\n\
         Indexing from nothing (reading, chunking, the synthetic vectors, writing): local {local_s:.0} s, \
         PostgreSQL {stored_s:.0} s (its HNSW index built at the end of that update){kept}.\n",
        chunks = thousands(status.chunks),
        files = thousands(files),
        queries = thousands(queries.len()),
        cpu = cpu(),
        threads = std::thread::available_parallelism().map_or(1, |n| n.get()),
        local_s = local_indexing.0.as_secs_f64(),
        stored_s = stored_indexing.0.as_secs_f64(),
        kept = if local_indexing.1 && stored_indexing.1 {
            ""
        } else {
            "; this run found earlier runs' indexes, so these are updates that changed nothing"
        },
    );
    println!("\n{section}");
    if chunks == 1_000_000 {
        write_section(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md"),
            "store",
            &section,
        );
    }
}
