//! Retrieval quality on documentation nobody here wrote: the HTML books rustup installs.
//!
//! Each section of each book (its blocks under one heading path) is cut into passages of about
//! 100 words; each passage is a document of its own (a text file named by number, so neither its
//! title nor its path gives it away). A section's heading is a query, and that section's passages
//! are the relevant ones; headings that are too short or appear more than once are left out.
//! nDCG@10 and recall@10 for BM25, dense, and fusions of the two; the fusion's weight is chosen
//! on the even-numbered queries and reported on the odd ones (and on all).
//!
//! The same passages are then served as a web site (each an HTML page in a site's chrome,
//! linked from an index page) on 127.0.0.1, crawled by mcp-docs's crawler into its mirror and
//! indexed from there, and ranked again: the web path (crawl, HTML extraction) must keep the
//! quality of the local one.
//!
//! `cargo bench -p mcp-server-docs --bench eval` (needs the model: setup-model.sh) writes
//! `mcp-servers/docs/EVALUATION.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use mcp_server_docs::{
    embed::Embedder,
    index::{Filter, Library, Mode, Selection},
    web::{CrawlReport, Limits, Prefix, Site},
};

mod common;
use common::{BOOKS, PASSAGE_WORDS, collection, html_root, index_passages};

const K: usize = 10;
const POOL: usize = 100;

fn ndcg(ranked: &[usize], relevant: &HashSet<usize>) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(K)
        .enumerate()
        .filter(|(_, id)| relevant.contains(id))
        .map(|(i, _)| 1.0 / ((i + 2) as f64).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(K))
        .map(|i| 1.0 / ((i + 2) as f64).log2())
        .sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

fn recall(ranked: &[usize], relevant: &HashSet<usize>) -> f64 {
    let found = ranked
        .iter()
        .take(K)
        .filter(|id| relevant.contains(id))
        .count();
    found as f64 / relevant.len().max(1) as f64
}

/// A ranking: passage ids with scores, best first.
type Ranked = Vec<(usize, f32)>;
/// A way to rank: query number → passage ids, best first.
type Rank<'a> = dyn Fn(usize) -> Vec<usize> + 'a;

fn rrf(lists: &[(&Ranked, f64)], k: f64) -> Vec<usize> {
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for (list, weight) in lists {
        for (rank, (id, _)) in list.iter().enumerate() {
            *scores.entry(*id).or_default() += weight / (k + rank as f64 + 1.0);
        }
    }
    sorted(scores)
}

/// Scores scaled to 0..1 within each list, then `alpha · dense + (1 − alpha) · bm25`.
fn convex(bm25: &Ranked, dense: &Ranked, alpha: f64) -> Vec<usize> {
    let scale = |list: &Ranked| -> HashMap<usize, f64> {
        let max = list.iter().map(|x| x.1).fold(f32::MIN, f32::max) as f64;
        let min = list.iter().map(|x| x.1).fold(f32::MAX, f32::min) as f64;
        let span = (max - min).max(1e-9);
        list.iter()
            .map(|(id, s)| (*id, (*s as f64 - min) / span))
            .collect()
    };
    let (b, d) = (scale(bm25), scale(dense));
    let mut scores: HashMap<usize, f64> = HashMap::new();
    for (id, s) in &b {
        *scores.entry(*id).or_default() += (1.0 - alpha) * s;
    }
    for (id, s) in &d {
        *scores.entry(*id).or_default() += alpha * s;
    }
    sorted(scores)
}

fn sorted(scores: HashMap<usize, f64>) -> Vec<usize> {
    let mut list: Vec<(usize, f64)> = scores.into_iter().collect();
    list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    list.into_iter().map(|(id, _)| id).collect()
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The passages' vectors as bare text (kept in `scratch` between runs).
fn bare_vectors(scratch: &Path, embedder: &Embedder, passages: &[String]) -> Vec<Vec<f32>> {
    let file = scratch.join(format!("bare-{}.f32", embedder.id.name));
    let dim = embedder.id.dim;
    if let Ok(bytes) = std::fs::read(&file)
        && bytes.len() == passages.len() * dim * 4
    {
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        return floats.chunks_exact(dim).map(<[f32]>::to_vec).collect();
    }
    let vectors = embedder.embed(passages, |_| {}).unwrap();
    let bytes: Vec<u8> = vectors
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(&file, bytes).unwrap();
    vectors
}

/// Each query's BM25, dense and served-hybrid rankings in `library`, as passage ids
/// (`id_of` reads one from a document's path; a passage cut into two chunks counts once).
fn rankings(
    library: &Library,
    embedder: &Embedder,
    queries: &[common::Query],
    id_of: &dyn Fn(&str) -> usize,
) -> (Vec<Ranked>, Vec<Ranked>, Vec<Vec<usize>>) {
    let mut bm25_lists = Vec::new();
    let mut dense_lists = Vec::new();
    let mut served: Vec<Vec<usize>> = Vec::new();
    for query in queries {
        let run = |mode| -> Ranked {
            let mut seen = HashSet::new();
            library
                .search(&query.text, POOL, mode, &Filter::default(), Some(embedder))
                .unwrap()
                .into_iter()
                .map(|h| (id_of(&h.path), h.score))
                .filter(|(id, _)| seen.insert(*id))
                .collect()
        };
        bm25_lists.push(run(Mode::Bm25));
        dense_lists.push(run(Mode::Semantic));
        served.push(
            library
                .search(
                    &query.text,
                    K,
                    Mode::Hybrid,
                    &Filter::default(),
                    Some(embedder),
                )
                .unwrap()
                .into_iter()
                .map(|h| id_of(&h.path))
                .fold(Vec::new(), |mut ids, id| {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                    ids
                }),
        );
    }
    (bm25_lists, dense_lists, served)
}

/// A documentation page around `text`, as sites wrap theirs: a header, a navigation bar with
/// links to the rest of the site, a footer.
fn page(n: usize, count: usize, text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let previous = n.saturating_sub(1);
    let next = (n + 1).min(count - 1);
    format!(
        "<!DOCTYPE html><html><head><title>Passage {n}</title></head><body>\
         <header><a href=\"../index.html\">The Books</a> <input placeholder=\"Search\"></header>\
         <nav><a href=\"{previous}.html\">Previous</a> <a href=\"{next}.html\">Next</a> \
         <a href=\"../index.html\">Contents</a></nav>\
         <main><p>{escaped}</p></main>\
         <footer>Built with mdBook. Licensed under MIT or Apache-2.0.</footer></body></html>"
    )
}

/// The passages served as a site on 127.0.0.1 (`/books/index.html` links to each page,
/// `/books/p/N.html`), crawled by mcp-docs into `scratch` and indexed from its mirror (kept
/// between runs: unchanged pages answer 304 and are not embedded again).
fn web_copy(
    scratch: &Path,
    passages: &[String],
    embedder: &Embedder,
) -> (
    Library,
    CrawlReport,
    mcp_server_docs::index::Report,
    std::time::Duration,
) {
    use axum::{extract::Path as UrlPath, response::Html, routing::get};
    let pages: std::sync::Arc<Vec<String>> = std::sync::Arc::new(
        passages
            .iter()
            .enumerate()
            .map(|(n, text)| page(n, passages.len(), text))
            .collect(),
    );
    let contents: String = (0..passages.len())
        .map(|n| format!("<li><a href=\"p/{n}.html\">Passage {n}</a></li>"))
        .collect();
    let contents = format!(
        "<html><head><title>The Books</title></head><body><main><ul>{contents}</ul></main></body></html>"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/books/index.html",
            get(move || async move { Html(contents) }),
        )
        .route(
            "/books/p/{page}",
            get(move |UrlPath(page): UrlPath<String>| {
                let pages = pages.clone();
                async move {
                    let n: usize = page.trim_end_matches(".html").parse().unwrap_or(usize::MAX);
                    match pages.get(n) {
                        Some(page) => Ok(Html(page.clone())),
                        None => Err(axum::http::StatusCode::NOT_FOUND),
                    }
                }
            }),
        );
    runtime.spawn(async move { axum::serve(listener, app).await });

    let dir = scratch.join(format!("web-{}", embedder.id.name));
    let limits = Limits {
        max_pages: passages.len() + 10,
        delay: std::time::Duration::ZERO,
        ..Limits::default()
    };
    let site = Site::open(
        Prefix::parse(&format!("{origin}/books/index.html")).unwrap(),
        &dir,
        limits,
    )
    .unwrap();
    let started = std::time::Instant::now();
    let crawl = site.crawl(&mut ()).unwrap();
    let (library, writer) =
        Library::open(&dir, &Site::mirror_of(&dir), Some(&embedder.id), true, true).unwrap();
    let report = library
        .update(
            &mut writer.unwrap(),
            &Selection::default(),
            Some(embedder),
            &mut (),
        )
        .unwrap();
    let took = started.elapsed();
    drop(runtime);
    (library, crawl, report, took)
}

fn main() {
    let root = html_root();
    let (passages, queries) = collection(&root, BOOKS, usize::MAX, 30);
    println!(
        "{} passages, {} queries from {}",
        passages.len(),
        queries.len(),
        root.display()
    );
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mcp-docs-eval");
    let (library, embedder, report, indexing) = index_passages("mcp-docs-eval", &passages, &mut ());
    println!(
        "indexed {} passages ({} chunks) in {indexing:.1?}",
        report.added, report.chunks
    );

    let id_of = |path: &str| -> usize { path.trim_end_matches(".txt").parse().unwrap() };
    let (bm25_lists, dense_lists, served) = rankings(&library, &embedder, &queries, &id_of);
    // A check on the collection itself: the passages embedded as bare text, without the line
    // the index puts before each chunk (its file's title: here a number).
    let bare = bare_vectors(&scratch, &embedder, &passages);
    let bare_lists: Vec<Vec<usize>> = queries
        .iter()
        .map(|query| {
            let q = embedder.embed_query(&query.text).unwrap();
            let mut scored: Vec<(usize, f32)> = bare
                .iter()
                .enumerate()
                .map(|(i, v)| (i, v.iter().zip(&q).map(|(a, b)| a * b).sum()))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1));
            scored.into_iter().take(POOL).map(|(i, _)| i).collect()
        })
        .collect();
    let evaluate = |rank: &dyn Fn(usize) -> Vec<usize>, which: &dyn Fn(usize) -> bool| {
        let chosen: Vec<usize> = (0..queries.len()).filter(|&i| which(i)).collect();
        (
            mean(chosen.iter().map(|&i| ndcg(&rank(i), &queries[i].relevant))),
            mean(
                chosen
                    .iter()
                    .map(|&i| recall(&rank(i), &queries[i].relevant)),
            ),
        )
    };
    let ids = |list: &Ranked| list.iter().map(|x| x.0).collect::<Vec<_>>();
    let even = |i: usize| i.is_multiple_of(2);
    let odd = |i: usize| !i.is_multiple_of(2);
    let all = |_: usize| true;

    // Choose the fusion weights on the even queries.
    let mut best_alpha = (0.0, 0.5);
    for step in 0..=20 {
        let alpha = step as f64 / 20.0;
        let (score, _) = evaluate(&|i| convex(&bm25_lists[i], &dense_lists[i], alpha), &even);
        if score > best_alpha.0 {
            best_alpha = (score, alpha);
        }
    }
    let mut best_weight = (0.0, 1.0);
    for weight in [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0] {
        let (score, _) = evaluate(
            &|i| rrf(&[(&bm25_lists[i], 1.0), (&dense_lists[i], weight)], 60.0),
            &even,
        );
        if score > best_weight.0 {
            best_weight = (score, weight);
        }
    }
    let alpha = best_alpha.1;
    let weight = best_weight.1;
    let (bm25_lists, dense_lists, served, bare_lists) =
        (&bm25_lists, &dense_lists, &served, &bare_lists);
    let rows: Vec<(String, Box<Rank<'_>>)> = vec![
        ("bm25".into(), Box::new(|i| ids(&bm25_lists[i]))),
        ("semantic".into(), Box::new(|i| ids(&dense_lists[i]))),
        (
            "(semantic, passages embedded without the title line)".into(),
            Box::new(|i| bare_lists[i].clone()),
        ),
        (
            "hybrid: RRF (k = 60)".into(),
            Box::new(|i| rrf(&[(&bm25_lists[i], 1.0), (&dense_lists[i], 1.0)], 60.0)),
        ),
        (
            format!("hybrid: weighted RRF (dense × {weight})"),
            Box::new(move |i| rrf(&[(&bm25_lists[i], 1.0), (&dense_lists[i], weight)], 60.0)),
        ),
        (
            format!("hybrid: min-max convex (α = {alpha})"),
            Box::new(move |i| convex(&bm25_lists[i], &dense_lists[i], alpha)),
        ),
        (
            format!(
                "**hybrid as `mcp-docs` serves it** (convex, α = {}, top-50 pools)",
                mcp_server_docs::index::DENSE_WEIGHT
            ),
            Box::new(|i| served[i].clone()),
        ),
    ];
    // Each ranking's row, printed as it is worked out (`tag` first).
    let render = |rows: &[(String, Box<Rank<'_>>)], tag: &str| -> String {
        let mut table = String::from(
            "| ranking | nDCG@10 (all) | recall@10 (all) | nDCG@10 (odd: held out) |\n| --- | --- | --- | --- |\n",
        );
        for (name, rank) in rows {
            let (n_all, r_all) = evaluate(rank.as_ref(), &all);
            let (n_odd, _) = evaluate(rank.as_ref(), &odd);
            let line = format!("| {name} | {n_all:.3} | {r_all:.3} | {n_odd:.3} |\n");
            print!("{tag}{line}");
            table.push_str(&line);
        }
        table
    };
    let table = render(&rows, "");
    // The same passages crawled from a site.
    let (web, crawl, web_report, web_took) = web_copy(&scratch, &passages, &embedder);
    println!(
        "crawled {} pages ({} unchanged, {} failed), indexed {} in {web_took:.1?}",
        crawl.fetched,
        crawl.not_modified,
        crawl.failed.len(),
        web_report.added + web_report.updated
    );
    // `p/N.html` is passage N; the contents page is none.
    let web_id = |path: &str| -> usize {
        path.strip_prefix("p/")
            .and_then(|p| p.strip_suffix(".html"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX)
    };
    let (web_bm25, web_dense, web_served) = rankings(&web, &embedder, &queries, &web_id);
    let (web_bm25, web_dense, web_served) = (&web_bm25, &web_dense, &web_served);
    let web_rows: Vec<(String, Box<Rank<'_>>)> = vec![
        ("bm25".into(), Box::new(|i| ids(&web_bm25[i]))),
        ("semantic".into(), Box::new(|i| ids(&web_dense[i]))),
        (
            "hybrid: RRF (k = 60)".into(),
            Box::new(|i| rrf(&[(&web_bm25[i], 1.0), (&web_dense[i], 1.0)], 60.0)),
        ),
        (
            "**hybrid as `mcp-docs` serves it**".into(),
            Box::new(|i| web_served[i].clone()),
        ),
    ];
    let web_table = render(&web_rows, "web ");
    let report = format!(
        "# mcp-docs: retrieval quality\n\n\
         Written by `cargo bench -p mcp-server-docs --bench eval`. The collection is built from the \
         HTML books rustup installs ({}): every section cut into passages of about {PASSAGE_WORDS} \
         words, each passage a document of its own; a section's heading is a query and its passages \
         are the relevant ones (headings shorter than two words or used twice are left out). \
         {} passages, {} queries. Model: {} ({} dimensions). Fusion weights were chosen on the \
         even-numbered queries; the last column is the odd ones, which played no part in choosing.\n\n\
         {table}\n\
         The index is kept between runs in the target directory; this run embedded {} new \
         passages in {:.1} s on {} cores (speed is measured apart, side by side with other \
         embedders).\n\n\
         ## The same passages crawled from the web\n\n\
         Each passage served as an HTML page of a site on 127.0.0.1 (a header with a search \
         box, a navigation bar with Previous / Next / Contents links, the passage in `<main>`, \
         a footer), linked from a contents page; `mcp-docs`'s crawler (robots.txt, sitemaps, \
         links, one request at a time) saved {} pages into its mirror ({} answered 304 as \
         unchanged since the last run, {} failed) and they were indexed from there like any \
         folder, {} embedded in this run; crawl and indexing took {:.1} s.\n\n\
         {web_table}\n",
        BOOKS.join(", "),
        passages.len(),
        queries.len(),
        embedder.id.name,
        embedder.id.dim,
        report.added + report.updated,
        indexing.as_secs_f64(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        crawl.pages,
        crawl.not_modified,
        crawl.failed.len(),
        web_report.embedded,
        web_took.as_secs_f64(),
    );
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("EVALUATION.md");
    std::fs::write(&path, report).unwrap();
    println!("wrote {}", path.display());
}
