//! Blocks into chunks: a section's blocks (the blocks under one heading path) are packed in order
//! up to a size; a block too big for one chunk is cut at line, then sentence, then word
//! boundaries unless it is atomic (a code fence or a function is never cut); consecutive chunks
//! of a section overlap by the tail of the previous one. Chunks never mix sections.

use crate::extract::Block;

/// Chunk sizes, in bytes of text.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// A chunk's target size (all-MiniLM-L6-v2 reads 256 tokens, about 1,000 bytes of prose).
    pub max: usize,
    /// Text of the previous chunk repeated at the start of the next one in the same section.
    pub overlap: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            max: 1_000,
            overlap: 150,
        }
    }
}

/// A piece of a document, the unit of search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The headings above it, outermost first.
    pub headings: Vec<String>,
    /// Its text.
    pub text: String,
    /// First and last line (1-based, inclusive) of the document the chunk covers.
    pub lines: (usize, usize),
}

/// Cuts a document's blocks into chunks.
pub fn chunks(blocks: &[Block], sizes: Sizes) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut section_start = 0;
    while section_start < blocks.len() {
        let headings = &blocks[section_start].headings;
        let section_end = blocks[section_start..]
            .iter()
            .position(|b| &b.headings != headings)
            .map_or(blocks.len(), |n| section_start + n);
        section(&blocks[section_start..section_end], sizes, &mut out);
        section_start = section_end;
    }
    out
}

/// A piece of a block, with its lines.
struct Piece {
    text: String,
    lines: (usize, usize),
    atomic: bool,
}

fn section(blocks: &[Block], sizes: Sizes, out: &mut Vec<Chunk>) {
    let headings = blocks
        .first()
        .map(|b| b.headings.clone())
        .unwrap_or_default();
    let pieces: Vec<Piece> = blocks
        .iter()
        .flat_map(|b| split_block(b, sizes.max))
        .collect();
    let mut current: Vec<&Piece> = Vec::new();
    let mut size = 0;
    let mut carried: Option<String> = None;
    let mut flush = |current: &mut Vec<&Piece>, size: &mut usize, carried: &mut Option<String>| {
        if current.is_empty() {
            return;
        }
        let mut text = String::new();
        if let Some(overlap) = carried.take() {
            text.push_str(&overlap);
            text.push_str(" …\n");
        }
        text.push_str(
            &current
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        );
        let lines = (
            current.first().map_or(0, |p| p.lines.0),
            current.last().map_or(0, |p| p.lines.1),
        );
        // The next chunk starts with this one's tail, unless this one ended on atomic text.
        *carried = current
            .last()
            .filter(|p| !p.atomic && sizes.overlap > 0)
            .map(|p| tail(&p.text, sizes.overlap))
            .filter(|t| !t.is_empty());
        out.push(Chunk {
            headings: headings.clone(),
            text,
            lines,
        });
        current.clear();
        *size = 0;
    };
    for piece in &pieces {
        if size > 0 && size + piece.text.len() > sizes.max {
            flush(&mut current, &mut size, &mut carried);
        }
        size += piece.text.len() + 2;
        current.push(piece);
    }
    flush(&mut current, &mut size, &mut carried);
}

/// A block as pieces no bigger than `max` (an atomic block stays whole).
fn split_block(block: &Block, max: usize) -> Vec<Piece> {
    if block.atomic || block.text.len() <= max {
        return vec![Piece {
            text: block.text.clone(),
            lines: block.lines,
            atomic: block.atomic,
        }];
    }
    // Cut at line ends first, then sentence ends, then spaces; keep track of lines.
    let mut pieces = Vec::new();
    let mut rest = block.text.as_str();
    let mut line = block.lines.0;
    while !rest.is_empty() {
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            let window = &rest[..floor_boundary(rest, max)];
            window
                .rfind('\n')
                .or_else(|| window.rfind(". ").map(|i| i + 1))
                .or_else(|| window.rfind(' '))
                .filter(|&i| i > max / 4)
                .unwrap_or(window.len())
        };
        let (piece, remainder) = rest.split_at(cut);
        let newlines = piece.matches('\n').count();
        let text = piece.trim();
        if !text.is_empty() {
            let last = line + piece.trim_end().matches('\n').count();
            pieces.push(Piece {
                text: text.to_owned(),
                lines: (line + leading_newlines(piece), last.min(block.lines.1)),
                atomic: false,
            });
        }
        line += newlines;
        rest = remainder;
    }
    pieces
}

/// Newlines before the first character of `text` that is not whitespace.
fn leading_newlines(text: &str) -> usize {
    text[..text.len() - text.trim_start().len()]
        .matches('\n')
        .count()
}

fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The last `bytes` of `text`, starting at a word.
fn tail(text: &str, bytes: usize) -> String {
    if text.len() <= bytes {
        return text.to_owned();
    }
    let mut start = text.len() - bytes;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    match rest.find(char::is_whitespace) {
        Some(space) => rest[space..].trim().to_owned(),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str, lines: (usize, usize), atomic: bool, heading: &str) -> Block {
        Block {
            headings: vec![heading.to_owned()],
            text: text.to_owned(),
            lines,
            atomic,
        }
    }

    #[test]
    fn small_sections_are_one_chunk_each_and_never_mixed() {
        let blocks = [
            block("alpha", (1, 1), false, "A"),
            block("beta", (3, 3), false, "A"),
            block("gamma", (5, 5), false, "B"),
        ];
        let chunks = chunks(&blocks, Sizes::default());
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].text, "alpha\n\nbeta");
        assert_eq!(chunks[0].lines, (1, 3));
        assert_eq!(chunks[1].headings, vec!["B"]);
    }

    #[test]
    fn a_fence_is_never_cut_and_long_prose_is_cut_with_overlap() {
        let fence = format!("```\n{}```", "let x = 1;\n".repeat(200));
        let prose: String = (1..=60)
            .map(|i| format!("Sentence number {i} says something.\n"))
            .collect();
        let lines = prose.lines().count();
        let blocks = [
            block(&prose, (1, lines), false, "A"),
            block(&fence, (lines + 2, lines + 203), true, "A"),
        ];
        let sizes = Sizes {
            max: 400,
            overlap: 60,
        };
        let chunks = chunks(&blocks, sizes);
        let with_fence: Vec<&Chunk> = chunks.iter().filter(|c| c.text.contains("```")).collect();
        assert_eq!(with_fence.len(), 1);
        assert!(with_fence[0].text.ends_with(&fence));
        let prose_chunks: Vec<&Chunk> = chunks.iter().filter(|c| !c.text.contains("```")).collect();
        assert!(prose_chunks.len() >= 4);
        for pair in prose_chunks.windows(2) {
            // The next chunk repeats the end of the previous one.
            let (head, _) = pair[1].text.split_once(" …\n").unwrap();
            assert!(pair[0].text.ends_with(head), "{head:?}");
            assert!(pair[1].lines.0 > pair[0].lines.0);
        }
        // Every sentence is somewhere, and line ranges cover the prose.
        for i in 1..=60 {
            let sentence = format!("Sentence number {i} says");
            assert!(chunks.iter().any(|c| c.text.contains(&sentence)), "{i}");
        }
        assert_eq!(prose_chunks[0].lines.0, 1);
        assert_eq!(prose_chunks.last().unwrap().lines.1, lines);
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::extract::{Kind, extract};

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Any Markdown (headings, fences, lists, long lines, odd Unicode) extracts and chunks
        /// without a panic, into chunks whose line ranges lie within the document.
        #[test]
        fn any_markdown_chunks_within_its_lines(
            lines in proptest::collection::vec(
                prop_oneof!["#{1,6} \\PC{0,30}", "```\\PC{0,10}", "- \\PC{0,40}", "\\PC{0,300}", Just(String::new())],
                0..60,
            )
        ) {
            let text = lines.join("\n");
            let Ok(document) = extract(Path::new("a.md"), Kind::Markdown, text.as_bytes()) else {
                return Ok(());
            };
            let total = document.text.lines().count().max(1);
            for chunk in chunks(&document.blocks, Sizes::default()) {
                prop_assert!(1 <= chunk.lines.0 && chunk.lines.0 <= chunk.lines.1, "{:?}", chunk.lines);
                prop_assert!(chunk.lines.1 <= total, "{:?} of {}", chunk.lines, total);
            }
        }
    }
}
