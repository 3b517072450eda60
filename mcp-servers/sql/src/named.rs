//! Named parameters (`:user_id`) in a config tool's SQL, turned into the engine's placeholders.
//! The SQL is the config author's, not a peer's: this only finds where the names are, skipping
//! string literals, quoted identifiers, comments, PostgreSQL's dollar quotes and `::` casts.
//! Values are always bound, never pasted in.

/// How an engine numbers its placeholders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `$1`, `$2` (PostgreSQL); a name used twice keeps its number.
    Dollar,
    /// `?1`, `?2` (SQLite); a name used twice keeps its number.
    QuestionNumbered,
    /// `?` for each use, bound in order (MariaDB/MySQL).
    Question,
}

/// One `:name` found in the SQL: its byte range (colon included) and name.
fn find(sql: &str) -> Vec<(usize, usize, &str)> {
    let bytes = sql.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                // To the closing quote; a doubled quote is an escaped one. (Backslash escapes in
                // MySQL strings: a `\'` skips the quote too.)
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' && quote == b'\'' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == quote {
                        if bytes.get(i + 1) == Some(&quote) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'$' => {
                // $tag$ … $tag$ (a `$1` placeholder is not a tag: a tag does not start with a
                // digit).
                let tag_end = bytes[i + 1..]
                    .iter()
                    .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                    .map(|n| i + 1 + n);
                match tag_end {
                    Some(end)
                        if bytes[end] == b'$'
                            && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = &sql[i..=end];
                        match sql[end + 1..].find(tag) {
                            Some(close) => i = end + 1 + close + tag.len(),
                            None => i = bytes.len(),
                        }
                    }
                    _ => i += 1,
                }
            }
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' if bytes
                .get(i + 1)
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_') =>
            {
                let start = i;
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                found.push((start, i, &sql[start + 1..i]));
            }
            _ => i += 1,
        }
    }
    found
}

/// The names the SQL uses, each once, in order of first use.
pub fn names(sql: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, _, name) in find(sql) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The SQL with the engine's placeholders, and the names to bind in order.
pub fn rewrite(sql: &str, style: Style) -> (String, Vec<String>) {
    let mut out = String::with_capacity(sql.len());
    let mut order: Vec<String> = Vec::new();
    let mut last = 0;
    for (start, end, name) in find(sql) {
        out.push_str(&sql[last..start]);
        match style {
            Style::Question => {
                order.push(name.to_owned());
                out.push('?');
            }
            Style::Dollar | Style::QuestionNumbered => {
                let number = match order.iter().position(|n| n == name) {
                    Some(i) => i + 1,
                    None => {
                        order.push(name.to_owned());
                        order.len()
                    }
                };
                out.push(if style == Style::Dollar { '$' } else { '?' });
                out.push_str(&number.to_string());
            }
        }
        last = end;
    }
    out.push_str(&sql[last..]);
    (out, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_outside_quotes_comments_and_casts_are_found() {
        let sql = "SELECT ':no', \"a:no\", `b:no`, x::text, $q$ :no $q$ -- :no\n\
                   FROM t /* :no */ WHERE a = :one AND b = :two OR c = :one AND d = 'it''s :no'";
        assert_eq!(names(sql), ["one", "two"]);
        let (pg, order) = rewrite(sql, Style::Dollar);
        assert!(
            pg.ends_with("a = $1 AND b = $2 OR c = $1 AND d = 'it''s :no'"),
            "{pg}"
        );
        assert!(pg.contains("x::text"), "{pg}");
        assert_eq!(order, ["one", "two"]);
        let (my, order) = rewrite(sql, Style::Question);
        assert!(my.contains("a = ? AND b = ? OR c = ?"), "{my}");
        assert_eq!(order, ["one", "two", "one"]);
        let (lite, _) = rewrite("SELECT :a, :b, :a", Style::QuestionNumbered);
        assert_eq!(lite, "SELECT ?1, ?2, ?1");
    }

    #[test]
    fn odd_sql_does_not_panic() {
        for sql in [
            "'", "\"", "$", "$a", "$a$", "/*", ":", "::", "-", "a:1", "'\\", "$1:x",
        ] {
            let _ = rewrite(sql, Style::Dollar);
        }
        assert_eq!(names("$1:x"), ["x"]);
    }
}
