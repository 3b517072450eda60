//! Search results fitted to a model's context: `search {max_tokens}` answers with passages (whole
//! chunks, not snippets), the hits of one file that touch or overlap merged into one passage,
//! near-duplicates (the same text in two places) dropped, in rank order until the budget is
//! spent; each passage keeps its citation (path, line range, title, heading path).
//!
//! Tokens are estimated, not counted with one model's tokenizer (the host's model is not known
//! here): a token per three ASCII characters and one per other character. GPT-4o's and Claude's
//! tokenizers average about four characters a token on English prose and code, and at least a
//! character per token elsewhere, so the estimate errs high and an answer fits the budget in
//! the host model's own tokens.

use std::collections::HashSet;

use crate::index::Hit;

/// The estimated tokens of `text` (see the module's documentation).
pub fn tokens(text: &str) -> usize {
    let ascii = text.bytes().filter(u8::is_ascii).count();
    let other = text.chars().filter(|c| !c.is_ascii()).count();
    ascii.div_ceil(3) + other
}

/// A passage of the answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Passage {
    /// The collection the document is in (empty when one index was searched alone).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub collection: String,
    /// The document's path, relative to the indexed folder.
    pub path: String,
    /// A web page's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The document's title.
    pub title: String,
    /// The headings above the passage, outermost first (those its merged hits share).
    pub headings: Vec<String>,
    /// First and last line of the document (1-based, inclusive).
    pub lines: [u64; 2],
    /// The passage's text.
    pub text: String,
    /// The best score among the hits it holds.
    pub score: f32,
    /// Cut short at a line's end to stay within the budget.
    pub truncated: bool,
}

/// What fitting did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Fitted {
    /// The passages, best first.
    pub passages: Vec<Passage>,
    /// Their estimated tokens, headers included (at most the budget).
    pub tokens: usize,
    /// Hits merged into a neighbour of the same file.
    pub merged: usize,
    /// Passages dropped as near-duplicates of a better one.
    pub duplicates: usize,
    /// Passages left out for want of budget.
    pub left_out: usize,
}

/// Where a passage is, as a reader says it: `Title › Heading › Subheading` (a heading that
/// repeats the title left out).
pub fn place(title: &str, headings: &[String]) -> String {
    let mut place = title.to_owned();
    for heading in headings.iter().filter(|h| *h != title) {
        place.push_str(" › ");
        place.push_str(heading);
    }
    place
}

/// The header a passage is shown under, as [`render`] writes it.
fn header(rank: usize, passage: &Passage) -> String {
    let place = place(&passage.title, &passage.headings);
    format!(
        "[{rank}] {}{}:{}-{}{} — {place}{}\n",
        crate::collection::label(&passage.collection),
        passage.path,
        passage.lines[0],
        passage.lines[1],
        passage
            .url
            .as_deref()
            .map(|url| format!(" <{url}>"))
            .unwrap_or_default(),
        if passage.truncated {
            " (cut short)"
        } else {
            ""
        }
    )
}

/// The passages as the text answer shows them: each under its citation.
pub fn render(fitted: &Fitted) -> String {
    fitted
        .passages
        .iter()
        .enumerate()
        .map(|(i, passage)| format!("{}{}\n", header(i + 1, passage), passage.text))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fits `hits` (best first, each with its chunk's whole text) into `max_tokens`.
pub fn fit(hits: &[Hit], max_tokens: usize) -> Fitted {
    let mut fitted = Fitted::default();
    // Each hit a passage, best first; then touching passages of a file merged, the later into
    // the earlier (which keeps the better rank), until none touch: a merge can make a passage
    // reach one it did not.
    let mut passages: Vec<Passage> = hits
        .iter()
        .map(|hit| Passage {
            collection: hit.collection.clone(),
            path: hit.path.clone(),
            url: hit.url.clone(),
            title: hit.title.clone(),
            headings: hit.headings.clone(),
            lines: hit.lines,
            text: hit.text.clone(),
            score: hit.score,
            truncated: false,
        })
        .collect();
    while let Some((i, j)) = (0..passages.len())
        .flat_map(|i| (i + 1..passages.len()).map(move |j| (i, j)))
        .find(|&(i, j)| touch(&passages[i], &passages[j]))
    {
        let later = passages.remove(j);
        merge(&mut passages[i], later);
        fitted.merged += 1;
    }
    // Drop near-duplicates of better passages.
    let mut kept: Vec<(Passage, HashSet<u64>)> = Vec::new();
    for passage in passages {
        let shingles = shingles(&passage.text);
        if kept
            .iter()
            .any(|(_, other)| similarity(&shingles, other) >= NEAR_DUPLICATE)
        {
            fitted.duplicates += 1;
            continue;
        }
        kept.push((passage, shingles));
    }
    // Spend the budget in rank order; the first passage that does not fit whole is cut at a
    // line's end if enough of it fits to be worth reading.
    // Passages after that one are left out, even a small one that would fit: the answer is the
    // best passages in order, not a packing.
    let mut left = max_tokens;
    let total = kept.len();
    for (mut passage, _) in kept {
        let rank = fitted.passages.len() + 1;
        let cost = tokens(&header(rank, &passage)) + tokens(&passage.text) + 1;
        if cost <= left {
            left -= cost;
            fitted.passages.push(passage);
            continue;
        }
        passage.truncated = true;
        let head = tokens(&header(rank, &passage)) + 1;
        if left >= head + MIN_CUT_TOKENS && cut(&mut passage, left - head) {
            left -= head + tokens(&passage.text);
            fitted.passages.push(passage);
        }
        break;
    }
    fitted.left_out = total - fitted.passages.len();
    fitted.tokens = max_tokens - left;
    fitted
}

/// Passages at least this similar (Jaccard of word 5-grams) are near-duplicates.
const NEAR_DUPLICATE: f64 = 0.8;
/// A passage is cut to fit only if this many tokens of it fit.
const MIN_CUT_TOKENS: usize = 40;

/// Whether two passages are of one file and their lines overlap or follow each other.
fn touch(a: &Passage, b: &Passage) -> bool {
    a.collection == b.collection
        && a.path == b.path
        && b.lines[0] <= a.lines[1] + 1
        && a.lines[0] <= b.lines[1] + 1
}

/// Joins `other` (of the same file, touching `passage`) to `passage`: the line range's union,
/// the text joined where the two overlap (chunks of a section share about 150 bytes), the
/// headings both share, the better score.
fn merge(passage: &mut Passage, other: Passage) {
    let (first, second) = if other.lines[0] < passage.lines[0] {
        (other.text.as_str(), passage.text.as_str())
    } else {
        (passage.text.as_str(), other.text.as_str())
    };
    let text = if first.contains(second) {
        first.to_owned()
    } else if second.contains(first) {
        second.to_owned()
    } else {
        let overlap = (1..=first.len().min(second.len()))
            .rev()
            .find(|&n| {
                first.is_char_boundary(first.len() - n)
                    && second.is_char_boundary(n)
                    && first[first.len() - n..] == second[..n]
            })
            .unwrap_or(0);
        if overlap > 0 {
            format!("{first}{}", &second[overlap..])
        } else {
            format!("{first}\n{second}")
        }
    };
    passage.text = text;
    passage.lines = [
        passage.lines[0].min(other.lines[0]),
        passage.lines[1].max(other.lines[1]),
    ];
    let shared = passage
        .headings
        .iter()
        .zip(&other.headings)
        .take_while(|(a, b)| a == b)
        .count();
    passage.headings.truncate(shared);
    passage.score = passage.score.max(other.score);
}

/// Cuts `passage` to its first lines that fit in `budget` tokens; false if not even one does.
fn cut(passage: &mut Passage, budget: usize) -> bool {
    let mut kept = 0;
    let mut used = 0;
    let mut lines = 0u64;
    for line in passage.text.split_inclusive('\n') {
        let cost = tokens(line);
        if used + cost > budget {
            break;
        }
        used += cost;
        kept += line.len();
        lines += 1;
    }
    if lines == 0 {
        return false;
    }
    passage.text.truncate(kept);
    let trimmed = passage.text.trim_end().len();
    passage.text.truncate(trimmed);
    passage.lines[1] = passage.lines[0] + lines - 1;
    true
}

/// The hashes of a text's word 5-grams (lowercased; a shorter text is one gram).
fn shingles(text: &str) -> HashSet<u64> {
    use std::hash::{Hash, Hasher};
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words
        .windows(5.min(words.len().max(1)))
        .map(|gram| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            gram.hash(&mut hasher);
            hasher.finish()
        })
        .collect()
}

fn similarity(a: &HashSet<u64>, b: &HashSet<u64>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.intersection(b).count() as f64 / a.union(b).count() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(path: &str, lines: [u64; 2], headings: &[&str], text: &str, score: f32) -> Hit {
        Hit {
            collection: String::new(),
            path: path.into(),
            url: None,
            title: "Guide".into(),
            headings: headings.iter().map(|h| h.to_string()).collect(),
            lines,
            snippet: String::new(),
            text: text.into(),
            score,
            id: 0,
        }
    }

    #[test]
    fn touching_hits_of_a_file_merge_and_their_overlap_is_said_once() {
        let hits = [
            hit(
                "a.md",
                [10, 14],
                &["Guide", "Install"],
                "line ten\nshared tail\n",
                0.9,
            ),
            hit("b.md", [1, 3], &["Other"], "something else entirely", 0.8),
            hit(
                "a.md",
                [14, 20],
                &["Guide", "Install", "Linux"],
                "shared tail\nline twenty",
                0.7,
            ),
            hit("a.md", [40, 41], &["Guide"], "far away", 0.6),
        ];
        let fitted = fit(&hits, 10_000);
        assert_eq!(fitted.merged, 1);
        assert_eq!(fitted.passages.len(), 3);
        let first = &fitted.passages[0];
        assert_eq!(first.lines, [10, 20]);
        assert_eq!(first.text, "line ten\nshared tail\nline twenty");
        assert_eq!(first.headings, vec!["Guide", "Install"]);
        assert_eq!(first.score, 0.9);
        assert_eq!(fitted.passages[2].lines, [40, 41]);
    }

    #[test]
    fn a_merge_that_reaches_an_earlier_passage_joins_it_too() {
        // 1 and 3 do not touch; 2 joins 3 and then reaches 1.
        let hits = [
            hit("a.md", [1, 5], &[], "one", 0.9),
            hit("a.md", [12, 20], &[], "three", 0.8),
            hit("a.md", [6, 11], &[], "two", 0.7),
        ];
        let fitted = fit(&hits, 10_000);
        assert_eq!(fitted.merged, 2);
        assert_eq!(fitted.passages.len(), 1);
        assert_eq!(fitted.passages[0].lines, [1, 20]);
        assert_eq!(fitted.passages[0].text, "one\ntwo\nthree");
        assert_eq!(fitted.passages[0].score, 0.9);
    }

    #[test]
    fn a_near_duplicate_of_a_better_passage_is_dropped() {
        let text = "the quick brown fox jumps over the lazy dog near the river bank at dawn";
        let hits = [
            hit("v1/readme.md", [1, 2], &[], text, 0.9),
            hit("v2/readme.md", [1, 2], &[], &text.to_uppercase(), 0.8),
            hit(
                "c.md",
                [1, 2],
                &[],
                "an unrelated passage about ferries and sunscreen",
                0.7,
            ),
        ];
        let fitted = fit(&hits, 10_000);
        assert_eq!(fitted.duplicates, 1);
        let paths: Vec<&str> = fitted.passages.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, vec!["v1/readme.md", "c.md"]);
    }

    #[test]
    fn the_answer_stays_within_the_budget_and_cuts_at_a_line() {
        let long: String = (1..=200)
            .map(|i| format!("line number {i} of the long passage\n"))
            .collect();
        let hits = [
            hit("short.md", [1, 1], &[], "a short passage", 0.9),
            hit("long.md", [1, 200], &[], &long, 0.8),
            hit("later.md", [1, 1], &[], "never reached", 0.7),
        ];
        for budget in [0, 10, 60, 300, 1_000, 100_000] {
            let fitted = fit(&hits, budget);
            assert!(fitted.tokens <= budget, "{budget}: {fitted:?}");
            let shown = tokens(&render(&fitted));
            assert!(shown <= budget, "{budget}: rendered {shown} tokens");
            for passage in &fitted.passages {
                let n = passage.lines[1] - passage.lines[0] + 1;
                assert_eq!(passage.text.lines().count() as u64, n, "{passage:?}");
            }
        }
        let fitted = fit(&hits, 300);
        assert_eq!(fitted.passages.len(), 2);
        assert!(fitted.passages[1].truncated);
        assert!(fitted.passages[1].text.starts_with("line number 1 "));
        assert_eq!(fitted.left_out, 1);
        let everything = fit(&hits, 100_000);
        assert_eq!(everything.passages.len(), 3);
        assert!(everything.passages.iter().all(|p| !p.truncated));
    }

    #[test]
    fn tokens_are_estimated_high() {
        assert_eq!(tokens(""), 0);
        assert_eq!(tokens("abcd"), 2);
        // One per character outside ASCII.
        assert_eq!(tokens("日本語"), 3);
    }
}
