//! Tool names as a model API accepts them: every server's tools in one namespace as
//! `server__tool`, only `[A-Za-z0-9_-]`, at most 64 characters. A name that is too long, or that
//! collides with another after its odd characters are replaced, is shortened deterministically
//! (a prefix and a hash of the original pair), and the map back always finds the original.

use std::collections::BTreeMap;

/// The longest tool name the model APIs accept (OpenAI's and Anthropic's limit).
pub const MAX_NAME: usize = 64;
const SEPARATOR: &str = "__";
/// `_` and 8 hex digits.
const HASH_SUFFIX: usize = 9;

/// Model-facing names for `(server, tool)` pairs, both ways.
#[derive(Debug, Default, Clone)]
pub struct ToolNames {
    forward: BTreeMap<(String, String), String>,
    back: BTreeMap<String, (String, String)>,
}

impl ToolNames {
    /// Names every pair. The same pairs give the same names, whatever their order.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut pairs: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(s, t)| (s.to_owned(), t.to_owned()))
            .collect();
        pairs.sort();
        pairs.dedup();
        // Which plain names more than one pair would get: those are all hashed.
        let mut plain_counts: BTreeMap<String, usize> = BTreeMap::new();
        for (server, tool) in &pairs {
            *plain_counts.entry(plain(server, tool)).or_default() += 1;
        }
        let mut names = Self::default();
        for (server, tool) in pairs {
            let plain = plain(&server, &tool);
            let name = if plain.len() <= MAX_NAME && plain_counts[&plain] == 1 {
                plain
            } else {
                hashed(&plain, &server, &tool)
            };
            names
                .back
                .insert(name.clone(), (server.clone(), tool.clone()));
            names.forward.insert((server, tool), name);
        }
        names
    }

    /// The model-facing name of a server's tool.
    pub fn name(&self, server: &str, tool: &str) -> Option<&str> {
        self.forward
            .get(&(server.to_owned(), tool.to_owned()))
            .map(String::as_str)
    }

    /// The server and tool a model-facing name stands for.
    pub fn resolve(&self, name: &str) -> Option<(&str, &str)> {
        self.back
            .get(name)
            .map(|(server, tool)| (server.as_str(), tool.as_str()))
    }
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn plain(server: &str, tool: &str) -> String {
    format!("{}{SEPARATOR}{}", sanitize(server), sanitize(tool))
}

/// A prefix of the plain name, `_`, and eight hex digits of the original pair.
fn hashed(plain: &str, server: &str, tool: &str) -> String {
    let keep = MAX_NAME - HASH_SUFFIX;
    let prefix: String = plain.chars().take(keep).collect();
    format!("{prefix}_{:08x}", fnv1a(server, tool) as u32)
}

/// FNV-1a over `server`, a NUL, and `tool`: stable across runs and Rust releases, unlike std's
/// hasher.
fn fnv1a(server: &str, tool: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in server.bytes().chain([0]).chain(tool.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }

    #[test]
    fn plain_names_stay_readable_and_map_back() {
        let names = ToolNames::new([("files", "read_text_file"), ("db", "query")]);
        assert_eq!(
            names.name("files", "read_text_file"),
            Some("files__read_text_file")
        );
        assert_eq!(names.resolve("db__query"), Some(("db", "query")));
        assert_eq!(names.resolve("db__nope"), None);
    }

    #[test]
    fn odd_characters_long_names_and_collisions_are_all_valid_and_distinct() {
        let long_tool = "t".repeat(80);
        let pairs = [
            ("my.server", "get-item"),
            ("my_server", "get-item"),
            ("github (work)", "search/code"),
            ("s", long_tool.as_str()),
            ("über", "naïve"),
        ];
        let names = ToolNames::new(pairs);
        let mut seen = std::collections::BTreeSet::new();
        for (server, tool) in pairs {
            let name = names.name(server, tool).unwrap();
            assert!(valid(name), "{name:?}");
            assert!(seen.insert(name.to_owned()), "{name} given twice");
            assert_eq!(names.resolve(name), Some((server, tool)));
        }
        // The two that collide after sanitising are both hashed, not first-come-first-served.
        assert_ne!(
            names.name("my.server", "get-item"),
            Some("my_server__get-item")
        );
        assert_ne!(
            names.name("my_server", "get-item"),
            Some("my_server__get-item")
        );
        assert_eq!(
            names.name("github (work)", "search/code"),
            Some("github__work___search_code")
        );
        assert_eq!(names.name("s", &long_tool).unwrap().len(), MAX_NAME);
    }

    #[test]
    fn names_do_not_depend_on_order() {
        let a = ToolNames::new([("x.y", "t"), ("x_y", "t"), ("b", "c")]);
        let b = ToolNames::new([("b", "c"), ("x_y", "t"), ("x.y", "t")]);
        for (server, tool) in [("x.y", "t"), ("x_y", "t"), ("b", "c")] {
            assert_eq!(a.name(server, tool), b.name(server, tool));
        }
        assert_eq!(a.forward.len(), 3);
    }
}
