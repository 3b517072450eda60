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

/// Applies the edits in order; the error names the edit that did not match.
pub fn apply(content: &str, edits: &[Edit]) -> Result<String, String> {
    let mut modified = normalize_line_endings(content);
    for (index, edit) in edits.iter().enumerate() {
        let old = normalize_line_endings(&edit.old_text);
        let new = normalize_line_endings(&edit.new_text);
        if old.is_empty() {
            return Err(format!(
                "edit {}: oldText is empty; say which text to replace",
                index + 1
            ));
        }
        if let Some(at) = modified.find(&old) {
            modified.replace_range(at..at + old.len(), &new);
            continue;
        }
        let old_lines: Vec<&str> = old.split('\n').collect();
        let lines: Vec<String> = modified.split('\n').map(str::to_owned).collect();
        let found = (0..=lines.len().saturating_sub(old_lines.len())).find(|&start| {
            lines.len() >= old_lines.len()
                && old_lines
                    .iter()
                    .enumerate()
                    .all(|(j, old_line)| lines[start + j].trim() == old_line.trim())
        });
        let Some(start) = found else {
            return Err(format!(
                "edit {}: could not find this text (exactly, or line by line ignoring surrounding whitespace):\n{}",
                index + 1,
                edit.old_text
            ));
        };
        let original_indent = indent_of(&lines[start]).to_owned();
        let replacement: Vec<String> = new
            .split('\n')
            .enumerate()
            .map(|(j, line)| {
                if j == 0 {
                    return format!("{original_indent}{}", line.trim_start());
                }
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
                    line.to_owned()
                }
            })
            .collect();
        let mut rebuilt = lines[..start].to_vec();
        rebuilt.extend(replacement);
        rebuilt.extend_from_slice(&lines[start + old_lines.len()..]);
        modified = rebuilt.join("\n");
    }
    Ok(modified)
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
    fn crlf_files_match_lf_edits() {
        assert_eq!(apply("a\r\nb\r\n", &[edit("a\nb", "c")]).unwrap(), "c\n");
    }

    #[test]
    fn diffs_are_fenced_beyond_their_own_backticks() {
        let diff = fenced_diff("```\n", "````\n", "/x");
        assert!(diff.starts_with("`````diff\n"), "{diff}");
        assert!(diff.contains("-```"));
    }
}
