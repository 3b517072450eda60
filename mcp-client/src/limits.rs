//! Keeping tool results from flooding a model's context: a long result keeps its head and its
//! tail (where errors and summaries usually are) and says, in place, how much was cut.

/// Room kept for the note that says what was cut.
const NOTE_BYTES: usize = 96;

/// `text` if it fits in `max_bytes`; otherwise its first and last parts (each about half of what
/// the note leaves, cut at character boundaries, preferring line ends) around a note of what was
/// left out. The answer fits in `max_bytes` (give it at least a few hundred).
pub fn head_and_tail(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let half = max_bytes.saturating_sub(NOTE_BYTES) / 2;
    let head_end = line_end_before(text, half);
    let tail_start = line_start_after(text, text.len() - half).max(head_end);
    let cut = &text[head_end..tail_start];
    format!(
        "{}\n[… {} bytes ({} lines) cut from the middle of this result …]\n{}",
        text[..head_end].trim_end_matches('\n'),
        cut.len(),
        cut.lines().count(),
        text[tail_start..].trim_start_matches('\n'),
    )
}

/// The largest char boundary at or before `at`, moved back to just after a newline when one is
/// in the last quarter of the head.
fn line_end_before(text: &str, at: usize) -> usize {
    let mut end = at.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind('\n') {
        Some(newline) if newline + 1 >= end - end / 4 => newline + 1,
        _ => end,
    }
}

/// The smallest char boundary at or after `at`, moved forward to just after a newline when one
/// is in the first quarter of the tail.
fn line_start_after(text: &str, at: usize) -> usize {
    let mut start = at.min(text.len());
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let span = text.len() - start;
    match text[start..].find('\n') {
        Some(newline) if newline <= span / 4 => start + newline + 1,
        _ => start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert_eq!(head_and_tail("abc", 3), "abc");
    }

    #[test]
    fn long_text_keeps_head_and_tail_on_line_boundaries() {
        let text: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
        let kept = head_and_tail(&text, 200);
        assert!(kept.starts_with("line 1\nline 2\n"), "{kept}");
        assert!(kept.trim_end().ends_with("line 1000"), "{kept}");
        assert!(kept.contains("bytes ("), "{kept}");
        assert!(kept.len() <= 200, "{} bytes", kept.len());
        // Whole lines on both sides of the note.
        let before = kept.split("\n[…").next().unwrap();
        assert!(before.lines().all(|l| l.starts_with("line ")), "{before}");
    }

    #[test]
    fn multibyte_text_is_cut_at_character_boundaries() {
        let text = "é".repeat(1000);
        let kept = head_and_tail(&text, 120);
        assert!(kept.starts_with('é') && kept.ends_with('é'));
        assert!(kept.contains("cut from the middle"));
    }
}
