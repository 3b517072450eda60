//! `edit_file`: exact replacements, falling back to whitespace-tolerant line matching (as the
//! official server does), reported as a git-style unified diff.

/// One replacement.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
pub struct Edit {
    /// Text to search for: an exact match, or lines that match once leading and trailing
    /// whitespace is ignored.
    #[serde(rename = "oldText")]
    pub old_text: String,
    /// Text to replace it with.
    #[serde(rename = "newText")]
    pub new_text: String,
}

fn normalize_line_endings(text: &str) -> String {
    text.replace("\r\n", "\n")
}

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A text file's bytes as an edit sees them: its text, and what the text does not show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFile {
    /// The file began with a UTF-8 byte-order mark (not part of `text`).
    pub bom: bool,
    /// The text, line endings as they are.
    pub text: String,
}

impl TextFile {
    /// Reads a file's bytes as UTF-8 text; anything else is refused with what it seems to be.
    pub fn decode(mut bytes: Vec<u8>) -> Result<Self, String> {
        let bom = bytes.starts_with(BOM);
        if bom {
            bytes.drain(..BOM.len());
        }
        match String::from_utf8(bytes) {
            Ok(text) => Ok(Self { bom, text }),
            Err(error) => {
                let bytes = error.as_bytes();
                let what = if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
                    "UTF-16 text (it starts with a UTF-16 byte-order mark)".to_owned()
                } else if bytes.contains(&0) {
                    "binary (it holds NUL bytes)".to_owned()
                } else {
                    format!(
                        "not UTF-8 (byte {} is not; a legacy encoding such as Latin-1 or Windows-1252?)",
                        error.utf8_error().valid_up_to()
                    )
                };
                Err(format!(
                    "the file is {what}; this tool edits UTF-8 text only and leaves the file as it is"
                ))
            }
        }
    }

    /// The bytes to write: the text, after the byte-order mark if the file had one.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.text.len() + BOM.len());
        if self.bom {
            bytes.extend_from_slice(BOM);
        }
        bytes.extend_from_slice(self.text.as_bytes());
        bytes
    }
}

/// Whether most of the text's line breaks are CRLF.
pub fn mostly_crlf(text: &str) -> bool {
    let breaks = text.matches('\n').count();
    let crlf = text.matches("\r\n").count();
    crlf * 2 > breaks
}

/// New text in the line endings of the file it goes into: `\n` becomes `\r\n` in a file whose
/// line breaks are mostly CRLF (text already in CRLF stays as it is).
pub fn in_line_endings_of(file: &str, text: &str) -> String {
    if mostly_crlf(file) {
        normalize_line_endings(text).replace('\n', "\r\n")
    } else {
        text.to_owned()
    }
}

/// Applies the edits in order to `content` (a file's text, line endings as they are); the error
/// names the edit that did not match and, when there is one, the closest region of the file.
///
/// Line endings are the file's: the edits' text is matched and written in the file's own
/// (CRLF in a CRLF file), and the lines a whitespace-tolerant match replaces keep theirs.
pub fn apply(content: &str, edits: &[Edit]) -> Result<String, String> {
    let mut modified = content.to_owned();
    for (index, edit) in edits.iter().enumerate() {
        let old = normalize_line_endings(&edit.old_text);
        let new = normalize_line_endings(&edit.new_text);
        if old.is_empty() {
            return Err(format!(
                "edit {}: oldText is empty; say which text to replace",
                index + 1
            ));
        }
        let crlf = mostly_crlf(&modified);
        // Exact, in the file's line endings first, then in the other (a file of both kinds).
        let exact = [crlf, !crlf].into_iter().find_map(|crlf| {
            let (old, new) = if crlf {
                (old.replace('\n', "\r\n"), new.replace('\n', "\r\n"))
            } else {
                (old.clone(), new.clone())
            };
            modified.find(&old).map(|at| (at, old.len(), new))
        });
        if let Some((at, len, new)) = exact {
            modified.replace_range(at..at + len, &new);
            continue;
        }
        let old_lines: Vec<&str> = old.split('\n').collect();
        // Lines of a CRLF file keep their `\r`, which `trim` ignores in the comparison.
        let lines: Vec<&str> = modified.split('\n').collect();
        let found = (0..=lines.len().saturating_sub(old_lines.len())).find(|&start| {
            lines.len() >= old_lines.len()
                && old_lines
                    .iter()
                    .enumerate()
                    .all(|(j, old_line)| lines[start + j].trim() == old_line.trim())
        });
        let Some(start) = found else {
            let mut message = format!(
                "edit {}: could not find this text (exactly, or line by line ignoring surrounding whitespace):\n{}",
                index + 1,
                edit.old_text
            );
            if let Some(near) = closest(&modified, &old) {
                message.push_str(&near.describe(&old));
            }
            return Err(message);
        };
        let original_indent = indent_of(lines[start]).to_owned();
        let last_ending = if lines[start + old_lines.len() - 1].ends_with('\r') {
            "\r"
        } else {
            ""
        };
        let new_lines: Vec<&str> = new.split('\n').collect();
        let replacement: Vec<String> = new_lines
            .iter()
            .enumerate()
            .map(|(j, line)| {
                let text = if j == 0 {
                    format!("{original_indent}{}", line.trim_start())
                } else {
                    let old_indent = old_lines.get(j).map(|l| indent_of(l).len()).unwrap_or(0);
                    let new_indent = indent_of(line).len();
                    if old_indent > 0 && new_indent > 0 {
                        let relative = new_indent.saturating_sub(old_indent);
                        format!(
                            "{original_indent}{}{}",
                            " ".repeat(relative),
                            line.trim_start()
                        )
                    } else {
                        (*line).to_owned()
                    }
                };
                let ending = if j + 1 == new_lines.len() {
                    last_ending
                } else if crlf {
                    "\r"
                } else {
                    ""
                };
                format!("{text}{ending}")
            })
            .collect();
        let mut rebuilt: Vec<String> = lines[..start].iter().map(|l| (*l).to_owned()).collect();
        rebuilt.extend(replacement);
        rebuilt.extend(
            lines[start + old_lines.len()..]
                .iter()
                .map(|l| (*l).to_owned()),
        );
        modified = rebuilt.join("\n");
    }
    Ok(modified)
}

/// The region of a file most like an edit's `oldText` that did not match.
#[derive(Debug)]
struct Closest {
    /// First line, counting from 1.
    first: usize,
    /// The region's lines, line endings as LF.
    text: String,
    /// How alike, 0 to 1 (characters, surrounding whitespace ignored).
    similarity: f32,
}

/// How many line comparisons a search for the closest region may make.
const CLOSEST_BUDGET: usize = 400_000;

/// The window of lines of `content` most like `old` (as many lines), by the mean similarity of
/// its lines to old's (surrounding whitespace ignored); `None` when nothing is even half alike.
/// A file too big to compare every window against is compared at the windows whose first line
/// shares a word with old's first non-blank line.
fn closest(content: &str, old: &str) -> Option<Closest> {
    let lines: Vec<&str> = content.split('\n').map(|l| l.trim()).collect();
    let old_lines: Vec<&str> = old.split('\n').map(str::trim).collect();
    let n = old_lines.len();
    if lines.len() < n || n == 0 {
        return None;
    }
    let starts: Vec<usize> = if (lines.len() - n + 1) * n <= CLOSEST_BUDGET {
        (0..=lines.len() - n).collect()
    } else {
        let (offset, anchor) = old_lines
            .iter()
            .enumerate()
            .find(|(_, line)| !line.is_empty())?;
        let words: Vec<&str> = anchor
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| w.len() > 2)
            .collect();
        (offset..lines.len())
            .filter(|&i| words.iter().any(|w| lines[i].contains(w)))
            .filter_map(|i| i.checked_sub(offset))
            .filter(|&start| start + n <= lines.len())
            .take(CLOSEST_BUDGET / n)
            .collect()
    };
    let line_similarity = |a: &str, b: &str| -> f32 {
        if a == b {
            return 1.0;
        }
        similar::TextDiff::configure()
            .algorithm(similar::Algorithm::Myers)
            .diff_chars(a, b)
            .ratio()
    };
    let mut best: Option<(usize, f32)> = None;
    for start in starts {
        let score = (0..n)
            .map(|j| line_similarity(lines[start + j], old_lines[j]))
            .sum::<f32>()
            / n as f32;
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((start, score));
        }
    }
    let (start, similarity) = best.filter(|(_, score)| *score >= 0.5)?;
    let text = content
        .split('\n')
        .skip(start)
        .take(n)
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    Some(Closest {
        first: start + 1,
        text,
        similarity,
    })
}

impl Closest {
    /// What the model needs to retry: where, how alike, what differs (a diff of oldText against
    /// the region), and whether only whitespace does.
    fn describe(&self, old: &str) -> String {
        let last = self.first + self.text.split('\n').count() - 1;
        let mut out = format!(
            "\n\nThe closest text is at lines {}-{last} ({:.0}% alike). How oldText differs from it:\n",
            self.first,
            self.similarity * 100.0
        );
        let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let diff = similar::TextDiff::from_lines(old, &self.text)
            .unified_diff()
            .context_radius(2)
            .header("oldText", "file")
            .to_string();
        let visible = diff.replace('\t', "→").replace('\u{a0}', "⍽");
        out.push_str(&visible);
        if squash(old) == squash(&self.text) {
            out.push_str(
                "\nThey differ only in whitespace (→ is a tab): copy oldText from read_text_file exactly.",
            );
        } else {
            out.push_str("\nCopy oldText from those lines (read_lines shows them exactly).");
        }
        out
    }
}

/// A unified diff of `before` → `after`, fenced with enough backticks to survive its content.
pub fn fenced_diff(before: &str, after: &str, path: &str) -> String {
    let diff = similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header(path, path)
        .to_string();
    let mut fence = "```".to_owned();
    while diff.contains(&fence) {
        fence.push('`');
    }
    format!("{fence}diff\n{diff}{fence}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edit(old: &str, new: &str) -> Edit {
        Edit {
            old_text: old.to_owned(),
            new_text: new.to_owned(),
        }
    }

    #[test]
    fn exact_matches_replace_once() {
        assert_eq!(apply("a b a", &[edit("a", "x")]).unwrap(), "x b a");
    }

    #[test]
    fn whitespace_tolerant_matching_keeps_the_file_indentation() {
        let content = "fn main() {\n        let x = 1;\n        let y = 2;\n}\n";
        let out = apply(
            content,
            &[edit("let x = 1;\nlet y = 2;", "let x = 10;\nlet y = 20;")],
        )
        .unwrap();
        assert_eq!(out, "fn main() {\n        let x = 10;\nlet y = 20;\n}\n");
        let out = apply(
            content,
            &[edit(
                "  let x = 1;\n  let y = 2;",
                "  let x = 10;\n    let y = 20;",
            )],
        )
        .unwrap();
        assert_eq!(
            out,
            "fn main() {\n        let x = 10;\n          let y = 20;\n}\n"
        );
    }

    #[test]
    fn a_missing_text_names_the_edit() {
        let error = apply("abc", &[edit("b", "B"), edit("zzz", "y")]).unwrap_err();
        assert!(error.starts_with("edit 2:"), "{error}");
        assert!(apply("abc", &[edit("", "y")]).is_err());
    }

    #[test]
    fn crlf_files_stay_crlf() {
        // Exact matches, oldText and newText in LF.
        assert_eq!(
            apply("a\r\nb\r\nc\r\n", &[edit("a\nb", "x\ny")]).unwrap(),
            "x\r\ny\r\nc\r\n"
        );
        // Whitespace-tolerant matches keep the ending of every line they replace.
        assert_eq!(
            apply("  a  \r\n  b\r\nc", &[edit("a\nb", "x\ny\nz")]).unwrap(),
            "  x\r\ny\r\nz\r\nc"
        );
        // An LF file stays LF; CRLF in newText goes in as it is written.
        assert_eq!(apply("a\nb\n", &[edit("a", "x")]).unwrap(), "x\nb\n");
        // A file of both kinds: the lines not edited keep theirs.
        assert_eq!(
            apply("a\r\nb\nc\r\n", &[edit("b", "B")]).unwrap(),
            "a\r\nB\nc\r\n"
        );
        assert_eq!(in_line_endings_of("x\r\ny\r\n", "p\nq\r\n"), "p\r\nq\r\n");
        assert_eq!(in_line_endings_of("x\ny\n", "p\r\nq"), "p\r\nq");
    }

    #[test]
    fn byte_order_marks_stay_and_other_encodings_are_refused() {
        let file = TextFile::decode(b"\xEF\xBB\xBFfn main() {}\r\n".to_vec()).unwrap();
        assert!(file.bom);
        assert_eq!(file.text, "fn main() {}\r\n");
        assert_eq!(file.encode(), b"\xEF\xBB\xBFfn main() {}\r\n");
        let utf16 = TextFile::decode(b"\xFF\xFEa\x00b\x00".to_vec()).unwrap_err();
        assert!(utf16.contains("UTF-16"), "{utf16}");
        let latin1 = TextFile::decode(b"caf\xE9\n".to_vec()).unwrap_err();
        assert!(latin1.contains("byte 3 is not"), "{latin1}");
    }

    #[test]
    fn a_miss_shows_the_closest_region_and_what_differs() {
        let content = "fn one() {}\n\nfn main() {\n\tlet x = 1;\n\tlet y = 2;\n}\n";
        let error = apply(
            content,
            &[edit("fn main() {\n  let x = 1;\n  let  y = 2;", "z")],
        )
        .unwrap_err();
        assert!(error.contains("lines 3-5"), "{error}");
        assert!(error.contains("→let x = 1;"), "{error}");
        assert!(error.contains("only in whitespace"), "{error}");
        let error = apply(content, &[edit("fn main() {\n\tlet x = 100;", "z")]).unwrap_err();
        assert!(error.contains("lines 3-4"), "{error}");
        assert!(!error.contains("only in whitespace"), "{error}");
        // Nothing alike: no region is named.
        let error = apply(content, &[edit("completely different words here", "z")]).unwrap_err();
        assert!(!error.contains("closest"), "{error}");
    }

    #[test]
    fn diffs_are_fenced_beyond_their_own_backticks() {
        let diff = fenced_diff("```\n", "````\n", "/x");
        assert!(diff.starts_with("`````diff\n"), "{diff}");
        assert!(diff.contains("-```"));
    }
}
