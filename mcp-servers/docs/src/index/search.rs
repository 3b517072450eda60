//! Searching: each store's BM25 and dense candidates (locally tantivy and an exact scan over
//! the catalog; in PostgreSQL full-text search and the HNSW index), and their fusion.

use std::collections::{HashMap, HashSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use tantivy::{
    TantivyDocument, Term,
    collector::TopDocs,
    query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery, TermSetQuery},
    schema::{Field, IndexRecordOption, Value as _},
    snippet::SnippetGenerator,
};

use super::{DocsError, Filter, Hit, Library, Local, Mode, Store, pg};
use crate::embed::Embedder;

/// Chunk ids with their scores, best first.
type Ranked = Vec<(u64, f32)>;

/// One index's candidates for a query: its best BM25 and dense chunks, unfused.
struct Candidates {
    bm25: Vec<(u64, f32)>,
    dense: Vec<(u64, f32)>,
    used_bm25: bool,
    used_dense: bool,
}

/// Searches several indexes as one (named collections): each gives its best BM25 and dense
/// candidates, and the lists are fused together, so a collection's best chunk counts for what
/// it scores rather than for being its collection's best. Each hit says which collection it is
/// from. `embedder` is needed for `semantic` and `hybrid` (without it they use BM25); the query
/// is embedded once.
pub fn search(
    libraries: &[(&str, &Library)],
    query: &str,
    k: usize,
    mode: Mode,
    filter: &Filter,
    embedder: Option<&Embedder>,
) -> Result<Vec<Hit>, DocsError> {
    let k = k.clamp(1, 100);
    let vector = match embedder {
        Some(embedder)
            if mode != Mode::Bm25 && libraries.iter().any(|(_, l)| l.model().is_some()) =>
        {
            Some(embedder.embed_query(query)?)
        }
        _ => None,
    };
    let (mut bm25, mut dense) = (Vec::new(), Vec::new());
    let (mut used_bm25, mut used_dense) = (false, false);
    for (at, (_, library)) in libraries.iter().enumerate() {
        let found = library.candidates(query, k, mode, filter, vector.as_deref())?;
        bm25.extend(found.bm25.into_iter().map(|(id, s)| ((at, id), s)));
        dense.extend(found.dense.into_iter().map(|(id, s)| ((at, id), s)));
        used_bm25 |= found.used_bm25;
        used_dense |= found.used_dense;
    }
    let best_first = |list: &mut Vec<((usize, u64), f32)>| {
        list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        list.truncate(k);
    };
    let ranked = match (used_bm25, used_dense) {
        (true, true) => fuse(&bm25, &dense, k),
        (true, false) => {
            best_first(&mut bm25);
            bm25
        }
        (false, _) => {
            best_first(&mut dense);
            dense
        }
    };
    // Each index makes the hits of its own chunks, all at once; they are put back in order.
    let mut made: HashMap<(usize, u64), Hit> = HashMap::new();
    for (at, (name, library)) in libraries.iter().enumerate() {
        let ids: Vec<(u64, f32)> = ranked
            .iter()
            .filter(|((of, _), _)| *of == at)
            .map(|((_, id), score)| (*id, *score))
            .collect();
        if ids.is_empty() {
            continue;
        }
        for mut hit in library.hits(query, &ids)? {
            hit.collection = (*name).to_owned();
            made.insert((at, hit.id), hit);
        }
    }
    Ok(ranked
        .iter()
        .filter_map(|(key, _)| made.remove(key))
        .collect())
}

/// A search's filter, made ready: whether a file (its path and kind) passes.
struct Compiled<'a> {
    globs: Option<GlobSet>,
    /// Kinds or extensions, lower case, without a dot.
    types: Vec<String>,
    libraries: &'a [String],
}

impl<'a> Compiled<'a> {
    fn new(filter: &'a Filter) -> Result<Self, DocsError> {
        let globs = match &filter.path_glob {
            Some(glob) => Some(
                GlobSetBuilder::new()
                    .add(
                        Glob::new(glob)
                            .map_err(|e| DocsError::Glob(glob.clone(), e.to_string()))?,
                    )
                    .build()
                    .map_err(|e| DocsError::Glob(glob.clone(), e.to_string()))?,
            ),
            None => None,
        };
        Ok(Self {
            globs,
            types: filter
                .file_types
                .iter()
                .map(|t| t.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
            libraries: &filter.libraries,
        })
    }

    /// Paths narrowed: by a glob, or to libraries (each a folder, `cargo:serde@1.0.219/`).
    fn narrowed(&self) -> bool {
        self.globs.is_some() || !self.libraries.is_empty()
    }

    fn filtered(&self) -> bool {
        self.narrowed() || !self.types.is_empty()
    }

    fn allows(&self, path: &str, kind: &str) -> bool {
        self.globs.as_ref().is_none_or(|g| g.is_match(path))
            && (self.libraries.is_empty()
                || self.libraries.iter().any(|library| {
                    path.strip_prefix(library.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                }))
            && (self.types.is_empty()
                || self
                    .types
                    .iter()
                    .any(|t| t == kind || path.to_ascii_lowercase().ends_with(&format!(".{t}"))))
    }
}

/// What turns one index's chunk ids into hits for one query: its searcher and snippets.
struct HitMaker {
    searcher: tantivy::Searcher,
    snippets: SnippetGenerator,
}

impl HitMaker {
    fn hit(&self, local: &Local, id: u64, score: f32) -> Result<Option<Hit>, DocsError> {
        let f = local.fields;
        let Some(document) = local.chunk(&self.searcher, id)? else {
            return Ok(None);
        };
        let text = text_of(&document, f.text);
        let snippet = self.snippets.snippet(&text);
        let snippet = if snippet.highlighted().is_empty() {
            text.chars().take(240).collect::<String>()
        } else {
            mark(snippet.fragment(), snippet.highlighted())
        };
        let headings = text_of(&document, f.headings);
        Ok(Some(Hit {
            collection: String::new(),
            path: text_of(&document, f.path),
            url: None,
            title: text_of(&document, f.title),
            headings: if headings.is_empty() {
                Vec::new()
            } else {
                headings.split(" > ").map(str::to_owned).collect()
            },
            lines: [
                u64_of(&document, f.line_start),
                u64_of(&document, f.line_end),
            ],
            snippet: snippet.trim().to_owned(),
            text,
            score,
            id,
        }))
    }
}

impl Library {
    /// Searches this index alone; `embedder` is needed for `semantic` and `hybrid` (without it
    /// they use BM25).
    pub fn search(
        &self,
        query: &str,
        k: usize,
        mode: Mode,
        filter: &Filter,
        embedder: Option<&Embedder>,
    ) -> Result<Vec<Hit>, DocsError> {
        search(&[("", self)], query, k, mode, filter, embedder)
    }

    /// The best BM25 and dense candidates for `query` (`vector`, its embedding, when dense
    /// search is asked for), filtered.
    fn candidates(
        &self,
        query: &str,
        k: usize,
        mode: Mode,
        filter: &Filter,
        vector: Option<&[f32]>,
    ) -> Result<Candidates, DocsError> {
        let compiled = Compiled::new(filter)?;
        let pool = (k * 5).max(50);
        let vector = vector.filter(|_| mode != Mode::Bm25 && self.model().is_some());
        let used_dense = vector.is_some();
        let used_bm25 = mode != Mode::Semantic || !used_dense;
        let (bm25, dense) = match &self.store {
            Store::Local(local) => local.candidates(query, pool, &compiled, used_bm25, vector)?,
            Store::Postgres(stored) => {
                stored_candidates(stored, query, pool, &compiled, used_bm25, vector)?
            }
        };
        Ok(Candidates {
            bm25,
            dense,
            used_bm25,
            used_dense,
        })
    }

    /// The hits of this index's chunks `ids` (with their scores) for `query`, in no order.
    fn hits(&self, query: &str, ids: &[(u64, f32)]) -> Result<Vec<Hit>, DocsError> {
        match &self.store {
            Store::Local(local) => {
                let maker = local.hit_maker(query)?;
                let mut hits = Vec::with_capacity(ids.len());
                for &(id, score) in ids {
                    hits.extend(maker.hit(local, id, score)?);
                }
                Ok(hits)
            }
            Store::Postgres(stored) => {
                let scores: HashMap<u64, f32> = ids.iter().copied().collect();
                let chunks =
                    stored.chunks(query, &ids.iter().map(|(id, _)| *id).collect::<Vec<_>>())?;
                Ok(chunks
                    .into_iter()
                    .map(|chunk| Hit {
                        collection: String::new(),
                        url: None,
                        headings: split_headings(&chunk.headings),
                        lines: chunk.lines,
                        snippet: chunk.snippet.trim().to_owned(),
                        score: scores.get(&chunk.id).copied().unwrap_or_default(),
                        id: chunk.id,
                        path: chunk.path,
                        title: chunk.title,
                        text: chunk.text,
                    })
                    .collect())
            }
        }
    }
}

/// A PostgreSQL collection's best BM25 (`used_bm25`) and dense (`vector`) candidates, `pool` of
/// each: the kinds and libraries filtered in SQL, a path glob (which SQL cannot test) on the
/// candidates, and when it admits too few of them and more exist, by searching again among
/// the paths it admits.
fn stored_candidates(
    stored: &pg::Stored,
    query: &str,
    pool: usize,
    compiled: &Compiled<'_>,
    used_bm25: bool,
    vector: Option<&[f32]>,
) -> Result<(Ranked, Ranked), DocsError> {
    let mut sql = pg::SqlFilter {
        types: (!compiled.types.is_empty()).then(|| compiled.types.clone()),
        libraries: (!compiled.libraries.is_empty()).then(|| compiled.libraries.to_vec()),
        paths: None,
    };
    let globbed = compiled.globs.is_some();
    let wanted = if globbed { pool * 10 } else { pool };
    let mut admitted: Option<Vec<String>> = None;
    let mut rank = |search: &dyn Fn(&pg::SqlFilter, usize) -> Result<pg::Found, DocsError>|
     -> Result<Vec<(u64, f32)>, DocsError> {
        let found = search(&sql, wanted)?;
        let more = found.len() == wanted;
        let mut kept: Vec<(u64, f32)> = found
            .into_iter()
            .filter(|(_, path, kind, _)| compiled.allows(path, kind))
            .map(|(id, _, _, score)| (id, score))
            .take(pool)
            .collect();
        if globbed && kept.len() < pool && more {
            let paths = match &admitted {
                Some(paths) => paths.clone(),
                None => {
                    let paths: Vec<String> = stored
                        .files()?
                        .into_iter()
                        .filter(|(path, kind)| compiled.allows(path, kind))
                        .map(|(path, _)| path)
                        .collect();
                    admitted = Some(paths.clone());
                    paths
                }
            };
            sql.paths = Some(paths);
            kept = search(&sql, pool)?
                .into_iter()
                .map(|(id, _, _, score)| (id, score))
                .collect();
            sql.paths = None;
        }
        Ok(kept)
    };
    let bm25 = if used_bm25 {
        rank(&|sql, n| stored.words(query, sql, n))?
    } else {
        Vec::new()
    };
    let dense = match vector {
        Some(vector) => rank(&|sql, n| stored.nearest(vector, sql, n))?,
        None => Vec::new(),
    };
    Ok((bm25, dense))
}

/// A chunk's heading path (`A > B`) as a list.
fn split_headings(headings: &str) -> Vec<String> {
    if headings.is_empty() {
        Vec::new()
    } else {
        headings.split(" > ").map(str::to_owned).collect()
    }
}

impl Local {
    /// The best `pool` BM25 (when `used_bm25`) and dense (when `vector`) candidates.
    fn candidates(
        &self,
        query: &str,
        pool: usize,
        compiled: &Compiled<'_>,
        used_bm25: bool,
        vector: Option<&[f32]>,
    ) -> Result<(Ranked, Ranked), DocsError> {
        let searcher = self.reader.searcher();
        let f = self.fields;
        let text_query = self.words_query(query)?;
        let kinds: Vec<Term> = compiled
            .types
            .iter()
            .flat_map(|t| {
                [
                    Term::from_field_text(f.kind, t),
                    Term::from_field_text(f.extension, t),
                ]
            })
            .collect();
        let bm25_query: Box<dyn Query> = if kinds.is_empty() {
            text_query
        } else {
            Box::new(BooleanQuery::new(vec![
                (Occur::Must, text_query),
                (Occur::Must, Box::new(TermSetQuery::new(kinds))),
            ]))
        };
        let catalog = self
            .catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let narrowed = compiled.narrowed();
        let filtered = compiled.filtered();
        // Whether a file passes the filter, worked out once per file (asked only when filtered).
        let mut verdicts: Vec<Option<bool>> =
            vec![None; if filtered { catalog.files.len() } else { 0 }];
        let mut allowed = |file: usize| -> bool {
            *verdicts[file].get_or_insert_with(|| {
                let (path, kind) = &catalog.files[file];
                compiled.allows(path, kind)
            })
        };

        // BM25 candidates, filtered by path.
        let mut bm25: Vec<(u64, f32)> = Vec::new();
        if used_bm25 {
            // The types are in the query; a path glob is checked on the best candidates. Ids
            // come from their column: no document is decompressed.
            let wanted = if narrowed { pool * 10 } else { pool };
            let columns = searcher
                .segment_readers()
                .iter()
                .map(|segment| segment.fast_fields().u64("id"))
                .collect::<Result<Vec<_>, _>>()?;
            let id_of = |address: tantivy::DocAddress| {
                columns
                    .get(address.segment_ord as usize)
                    .and_then(|column| column.first(address.doc_id))
            };
            let top =
                searcher.search(&bm25_query, &TopDocs::with_limit(wanted).order_by_score())?;
            let more = top.len() == wanted;
            for (score, address) in top {
                let Some(id) = id_of(address) else {
                    continue;
                };
                if !filtered || catalog.file(id).is_some_and(&mut allowed) {
                    bm25.push((id, score));
                    if bm25.len() == pool {
                        break;
                    }
                }
            }
            // The glob admitted too few of them and more exist: search again among the files it
            // admits (every file's path checked once), so none is missed.
            if narrowed && bm25.len() < pool && more {
                let paths: Vec<Term> = (0..catalog.files.len())
                    .filter(|&file| allowed(file))
                    .map(|file| Term::from_field_text(f.path, &catalog.files[file].0))
                    .collect();
                let restricted = BooleanQuery::new(vec![
                    (Occur::Must, bm25_query.box_clone()),
                    (Occur::Must, Box::new(TermSetQuery::new(paths))),
                ]);
                bm25 = searcher
                    .search(&restricted, &TopDocs::with_limit(pool).order_by_score())?
                    .into_iter()
                    .filter_map(|(score, address)| Some((id_of(address)?, score)))
                    .collect();
            }
        }
        // Dense candidates: exact search over every vector the filter allows.
        let dense = match vector {
            Some(vector) => catalog.nearest(vector, pool, |file| !filtered || allowed(file)),
            None => Vec::new(),
        };
        Ok((bm25, dense))
    }

    /// What makes hits of this index's chunks for `query`.
    fn hit_maker(&self, query: &str) -> Result<HitMaker, DocsError> {
        let searcher = self.reader.searcher();
        let text_query = self.words_query(query)?;
        let mut snippets = SnippetGenerator::create(&searcher, &*text_query, self.fields.text)?;
        snippets.set_max_num_chars(240);
        Ok(HitMaker { searcher, snippets })
    }

    /// The query's words, each looked for in the title, headings, text and path (boosted 2, 1.5,
    /// 1 and 0.5), any of them (BM25 sums what matches). Built from the fields' own analyzers
    /// rather than tantivy's query language: a user's `foo-bar` or `a:b` is words, not syntax,
    /// and no phrase query is made (tantivy 0.27's phrase scorer can panic on seek).
    fn words_query(&self, query: &str) -> Result<Box<dyn Query>, DocsError> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in [
            (f.title, 2.0),
            (f.headings, 1.5),
            (f.text, 1.0),
            (f.path_text, 0.5),
        ] {
            let mut analyzer = self.index.tokenizer_for_field(field)?;
            let mut stream = analyzer.token_stream(query);
            let mut seen = HashSet::new();
            while stream.advance() {
                let text = stream.token().text.clone();
                if seen.insert(text.clone()) {
                    let term = TermQuery::new(
                        Term::from_field_text(field, &text),
                        IndexRecordOption::WithFreqs,
                    );
                    clauses.push((
                        Occur::Should,
                        Box::new(BoostQuery::new(Box::new(term), boost)),
                    ));
                }
            }
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }

    fn chunk(
        &self,
        searcher: &tantivy::Searcher,
        id: u64,
    ) -> Result<Option<TantivyDocument>, DocsError> {
        let query = TermQuery::new(
            Term::from_field_u64(self.fields.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        Ok(match top.first() {
            Some((_, address)) => Some(searcher.doc(*address)?),
            None => None,
        })
    }
}

/// How much the dense ranking counts in hybrid search (BM25 counts the rest).
///
/// Chosen on the evaluation in EVALUATION.md: scores scaled to 0..1 within each list and mixed
/// 0.6 BM25 / 0.4 dense beat reciprocal rank fusion there (nDCG@10 0.467 against 0.450 on
/// queries that played no part in choosing), and both beat either list alone.
pub const DENSE_WEIGHT: f32 = 0.4;

/// Fuses a BM25 and a dense ranking: each list's scores scaled to 0..1 (min to max), then
/// mixed by [`DENSE_WEIGHT`] (a chunk missing from a list scores 0 there); the best `n`.
pub fn fuse<K: Copy + Eq + std::hash::Hash + Ord>(
    bm25: &[(K, f32)],
    dense: &[(K, f32)],
    n: usize,
) -> Vec<(K, f32)> {
    let mut scores: HashMap<K, f32> = HashMap::new();
    for (list, weight) in [(bm25, 1.0 - DENSE_WEIGHT), (dense, DENSE_WEIGHT)] {
        let max = list.iter().map(|x| x.1).fold(f32::MIN, f32::max);
        let min = list.iter().map(|x| x.1).fold(f32::MAX, f32::min);
        let span = (max - min).max(1e-6);
        for (id, score) in list {
            *scores.entry(*id).or_default() += weight * (score - min) / span;
        }
    }
    let mut fused: Vec<(K, f32)> = scores.into_iter().collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    fused.truncate(n);
    fused
}

fn text_of(document: &TantivyDocument, field: Field) -> String {
    document
        .get_first(field)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}

fn u64_of(document: &TantivyDocument, field: Field) -> u64 {
    document
        .get_first(field)
        .and_then(|v| v.as_u64())
        .unwrap_or_default()
}

/// `text` with the `ranges` wrapped in `**`.
fn mark(text: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::new();
    let mut at = 0;
    for range in ranges {
        if range.start < at || range.end > text.len() {
            continue;
        }
        out.push_str(&text[at..range.start]);
        out.push_str("**");
        out.push_str(&text[range.clone()]);
        out.push_str("**");
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_rewards_agreement() {
        let bm25 = [(1, 9.0), (2, 8.0), (3, 7.0)];
        let dense = [(3, 0.9), (4, 0.8), (1, 0.7)];
        let fused = fuse(&bm25, &dense, 4);
        let order: Vec<u64> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, vec![1, 3, 2, 4]);
    }

    #[test]
    fn marks_wrap_ranges() {
        assert_eq!(mark("a bc d e", &[2..4, 7..8]), "a **bc** d **e**");
    }
}
