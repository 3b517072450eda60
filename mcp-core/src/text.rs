//! Text a peer controls, made safe to show: to a terminal (where escape sequences clear the
//! screen, set the title, write the clipboard or move the cursor back over what was shown) and
//! in line-oriented listings (where a newline in a name would read as two entries).

use std::borrow::Cow;

/// Whether a terminal would act on `c` rather than show it: C0 and C1 controls (ESC starts
/// every escape sequence; U+009B is an 8-bit CSI), DEL, and the bidirectional overrides and
/// isolates that reorder what is shown (text that reads one way and is another).
fn acts_on_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(c: char, out: &mut String) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        other => out.push_str(&format!("\\u{{{:x}}}", u32::from(other))),
    }
}

fn escaped(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| acts_on_terminal(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if acts_on_terminal(c) && !keep(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every character a terminal would act on shown as an escape (`\u{1b}`, `\r`),
/// but for newlines and tabs, which lay out multi-line text. Borrowed when there is none.
///
/// ```
/// assert_eq!(mcp_core::text::visible("ok\x1b]52;c;aGk=\x07\n"), "ok\\u{1b}]52;c;aGk=\\u{7}\n");
/// ```
pub fn visible(text: &str) -> Cow<'_, str> {
    escaped(text, |c| c == '\n' || c == '\t')
}

/// [`visible`] for one line (a name, a title): newlines and tabs are escaped too, so the text
/// cannot pass for more than one line or entry.
///
/// ```
/// assert_eq!(mcp_core::text::visible_line("a\nb.txt"), "a\\nb.txt");
/// ```
pub fn visible_line(text: &str) -> Cow<'_, str> {
    escaped(text, |_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_and_controls_are_escaped() {
        assert!(matches!(visible("plain ünïcode\n\ttext"), Cow::Borrowed(_)));
        assert_eq!(
            visible("\x1b[2J\x1b]0;title\x07"),
            "\\u{1b}[2J\\u{1b}]0;title\\u{7}"
        );
        assert_eq!(visible("back\roverwrite\x08"), "back\\roverwrite\\u{8}");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(visible("abc\u{202e}txt.exe"), "abc\\u{202e}txt.exe");
        assert_eq!(visible_line("two\nlines\tand tab"), "two\\nlines\\tand tab");
    }
}
