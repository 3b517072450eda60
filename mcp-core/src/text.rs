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

/// What a [`SafeWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Text for people: [`visible`].
    Text,
    /// JSON (serde_json's, which escapes C0 controls already): a character a terminal would act
    /// on becomes a `\uXXXX` escape, which keeps the JSON what it was.
    Json,
}

/// A writer that makes whatever passes through it safe for a terminal, for a program's stdout
/// when it prints what a peer sent. UTF-8 split across writes is put back together first;
/// bytes that are not UTF-8 are shown as `\xNN`.
pub struct SafeWriter<W: std::io::Write> {
    inner: W,
    output: Output,
    /// The start of a UTF-8 sequence whose rest has not been written yet.
    pending: Vec<u8>,
}

impl<W: std::io::Write> SafeWriter<W> {
    /// Writes to `inner`, made safe for `output`.
    pub fn new(inner: W, output: Output) -> Self {
        Self {
            inner,
            output,
            pending: Vec::new(),
        }
    }

    fn emit(&mut self, text: &str) -> std::io::Result<()> {
        match self.output {
            Output::Text => self.inner.write_all(visible(text).as_bytes()),
            Output::Json => {
                if !text.chars().any(|c| acts_on_terminal(c) && c != '\n') {
                    return self.inner.write_all(text.as_bytes());
                }
                let mut out = String::with_capacity(text.len() + 16);
                for c in text.chars() {
                    if acts_on_terminal(c) && c != '\n' {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    } else {
                        out.push(c);
                    }
                }
                self.inner.write_all(out.as_bytes())
            }
        }
    }
}

impl<W: std::io::Write> std::io::Write for SafeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let mut bytes = std::mem::take(&mut self.pending);
        let mut start = 0;
        loop {
            match std::str::from_utf8(&bytes[start..]) {
                Ok(text) => {
                    self.emit(text)?;
                    break;
                }
                Err(error) => {
                    let valid = start + error.valid_up_to();
                    let text = std::str::from_utf8(&bytes[start..valid]).unwrap_or_default();
                    self.emit(text)?;
                    match error.error_len() {
                        Some(bad) => {
                            for byte in &bytes[valid..valid + bad] {
                                self.inner.write_all(format!("\\x{byte:02x}").as_bytes())?;
                            }
                            start = valid + bad;
                        }
                        None => {
                            // An incomplete sequence at the end: wait for its rest.
                            bytes.drain(..valid);
                            self.pending = bytes;
                            return Ok(buf.len());
                        }
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        for byte in std::mem::take(&mut self.pending) {
            self.inner.write_all(format!("\\x{byte:02x}").as_bytes())?;
        }
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for SafeWriter<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

#[cfg(test)]
mod writer_tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use super::*;

    fn through(output: Output, pieces: &[&[u8]]) -> String {
        let mut buffer = Vec::new();
        {
            let mut writer = SafeWriter::new(&mut buffer, output);
            for piece in pieces {
                writer.write_all(piece).unwrap();
            }
        }
        String::from_utf8(buffer).unwrap()
    }

    #[test]
    fn escapes_split_utf8_and_keeps_json_json() {
        let csi = "\u{9b}".as_bytes();
        assert_eq!(
            through(Output::Text, &[b"a\x1b[2J", &csi[..1], &csi[1..], b"b\n"]),
            "a\\u{1b}[2J\\u{9b}b\n"
        );
        assert_eq!(through(Output::Text, &[b"bad \xff byte"]), "bad \\xff byte");
        let json =
            serde_json::to_string(&serde_json::json!({"name": "x\u{1b}]0;t\u{7}\u{9b}\u{202e}"}))
                .unwrap();
        let safe = through(Output::Json, &[json.as_bytes()]);
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["name"], "x\u{1b}]0;t\u{7}\u{9b}\u{202e}");
        assert!(
            !safe.contains('\u{9b}') && !safe.contains('\u{202e}'),
            "{safe}"
        );
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Nothing a terminal acts on survives, but for the layout `visible` keeps; and the writer,
        /// fed the bytes cut anywhere, writes what `visible` gives for the whole.
        #[test]
        fn nothing_active_survives_any_cut(text in "(\\PC|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}]){0,64}", cut in 1usize..9) {
            let shown = visible(&text);
            prop_assert!(!shown.chars().any(|c| acts_on_terminal(c) && c != '\n' && c != '\t'));
            prop_assert!(!visible_line(&text).chars().any(acts_on_terminal));
            let mut out = Vec::new();
            {
                let mut writer = SafeWriter::new(&mut out, Output::Text);
                for piece in text.as_bytes().chunks(cut) {
                    writer.write_all(piece).unwrap();
                }
            }
            prop_assert_eq!(String::from_utf8(out).unwrap(), shown.into_owned());
        }
    }
}
