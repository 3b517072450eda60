//! The expressions of a workflow: `${{ … }}` in its texts, evaluated by minijinja (Jinja's
//! expression language: `inputs.path`, `steps.search.structured.hits[0].path`,
//! `steps.list.items | length`, `x == "y" and n > 3`, filters such as `tojson`, `join`,
//! `default`). A text that is one whole `${{ expr }}` keeps the expression's type (a number, a
//! list, an object); any other text is rendered to a string. What a step may refer to:
//! `inputs`, the `steps` before it, and `item` and `index` under `for_each`. Nothing is
//! evaluated as code, and data from servers is only ever a value, never a template.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior, syntax::SyntaxConfig};
use serde_json::Value;

use super::file::{Problem, Text, Tree};

/// Evaluates a workflow's texts.
pub struct Engine {
    env: Environment<'static>,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// The names a workflow's texts may start from.
pub const ROOTS: [&str; 4] = ["inputs", "steps", "item", "index"];

impl Engine {
    /// `${{ }}` for expressions (Jinja's `{{ }}` stays plain text, as in prompts that show
    /// templates); an undefined name or attribute is an error, not an empty string.
    pub fn new() -> Self {
        let mut env = Environment::new();
        // Three distinct, non-empty pairs: minijinja refuses only empty or clashing ones.
        if let Ok(syntax) = SyntaxConfig::builder()
            .variable_delimiters("${{", "}}")
            .block_delimiters("${%", "%}")
            .comment_delimiters("${#", "#}")
            .build()
        {
            env.set_syntax(syntax);
        }
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // In a text, true and false read as JSON writes them (Jinja's Python would say True).
        env.set_formatter(|out, state, value| {
            if value.kind() == minijinja::value::ValueKind::Bool {
                let text = if value.is_true() { "true" } else { "false" };
                return out.write_str(text).map_err(|_| {
                    minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing")
                });
            }
            minijinja::escape_formatter(out, state, value)
        });
        // A bound on the work one text can make, whatever the data it is given.
        env.set_fuel(Some(1_000_000));
        Self { env }
    }

    /// The expression of a text that is one whole `${{ expr }}`.
    fn whole(text: &str) -> Option<&str> {
        let inner = text.trim().strip_prefix("${{")?.strip_suffix("}}")?;
        (!inner.contains("${{") && !inner.contains("}}")).then_some(inner)
    }

    /// The dotted names a text refers to (`steps.search.structured`, `inputs.path`), or why it
    /// does not compile.
    pub fn references(&self, text: &Text) -> Result<BTreeSet<String>, Problem> {
        let failed = |error: minijinja::Error| Problem {
            line: text.line,
            message: format!("{:?}: {}", text.source, error_text(&error)),
        };
        let names = match Self::whole(&text.source) {
            Some(expr) => self
                .env
                .compile_expression(expr)
                .map_err(failed)?
                .undeclared_variables(true),
            None => self
                .env
                .template_from_str(&text.source)
                .map_err(failed)?
                .undeclared_variables(true),
        };
        // Jinja's functions (`range`, `dict`, `namespace`) are names too.
        let globals: Vec<&str> = self.env.globals().map(|(name, _)| name).collect();
        Ok(names
            .into_iter()
            .filter(|name| !globals.contains(&name.split('.').next().unwrap_or_default()))
            .collect())
    }

    /// A text's value in `context` (`{inputs, steps, item, index}`).
    pub fn eval(&self, text: &Text, context: &Value) -> Result<Value, Problem> {
        let failed = |error: minijinja::Error| Problem {
            line: text.line,
            message: format!("{:?}: {}", text.source, error_text(&error)),
        };
        let context = minijinja::Value::from(minijinja::value::Serde(context));
        match Self::whole(&text.source) {
            Some(expr) => {
                let value = self
                    .env
                    .compile_expression(expr)
                    .map_err(failed)?
                    .eval(context)
                    .map_err(failed)?;
                serde_json::to_value(&value).map_err(|e| Problem {
                    line: text.line,
                    message: format!("{:?}: its value is not JSON: {e}", text.source),
                })
            }
            None => Ok(Value::String(
                self.env.render_str(&text.source, context).map_err(failed)?,
            )),
        }
    }

    /// Whether a condition holds (Jinja's truth: empty, zero, false and none are false).
    pub fn truth(&self, text: &Text, context: &Value) -> Result<bool, Problem> {
        Ok(match self.eval(text, context)? {
            Value::Null => false,
            Value::Bool(b) => b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty() && s != "false",
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
        })
    }

    /// Arguments with their texts filled in.
    pub fn fill(&self, tree: &Tree, context: &Value) -> Result<Value, Problem> {
        Ok(match tree {
            Tree::Literal(value, _) => value.clone(),
            Tree::Text(text) => self.eval(text, context)?,
            Tree::List(items, _) => Value::Array(
                items
                    .iter()
                    .map(|t| self.fill(t, context))
                    .collect::<Result<_, _>>()?,
            ),
            Tree::Map(entries, _) => Value::Object(
                entries
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), self.fill(t, context)?)))
                    .collect::<Result<_, Problem>>()?,
            ),
        })
    }
}

/// minijinja's message without its template excerpt.
fn error_text(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    if let Some(detail) = error.detail()
        && !text.contains(detail)
    {
        text = format!("{text}: {detail}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(source: &str) -> Text {
        Text {
            source: source.to_owned(),
            line: 7,
        }
    }

    #[test]
    fn whole_expressions_keep_their_type_and_texts_render() {
        let engine = Engine::new();
        let context = serde_json::json!({
            "inputs": {"n": 3, "name": "a.txt"},
            "steps": {"search": {"structured": {"hits": [{"path": "/x"}, {"path": "/y"}]}}},
        });
        let eval = |s: &str| engine.eval(&text(s), &context).unwrap();
        assert_eq!(eval("${{ inputs.n }}"), Value::from(3));
        assert_eq!(
            eval(" ${{ steps.search.structured.hits[1].path }} "),
            Value::from("/y")
        );
        assert_eq!(
            eval("${{ steps.search.structured.hits | map(attribute='path') | list }}"),
            serde_json::json!(["/x", "/y"])
        );
        assert_eq!(
            eval("file ${{ inputs.name }} of ${{ inputs.n + 1 }}"),
            Value::from("file a.txt of 4")
        );
        // Jinja's own delimiters are text here.
        assert_eq!(eval("{{ x }}"), Value::from("{{ x }}"));
        assert!(
            engine
                .truth(&text("${{ inputs.n > 2 }}"), &context)
                .unwrap()
        );
        let error = engine
            .eval(&text("${{ steps.nope.text }}"), &context)
            .unwrap_err();
        assert_eq!(error.line, 7);
        assert!(error.message.contains("undefined"), "{error}");
    }

    #[test]
    fn references_name_what_a_text_reads() {
        let engine = Engine::new();
        let names = engine
            .references(&text(
                "${{ steps.search.structured.hits[0].path }} and ${{ inputs.q }}",
            ))
            .unwrap();
        assert!(names.contains("inputs.q"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("steps.search")),
            "{names:?}"
        );
        let error = engine.references(&text("${{ steps.a + }}")).unwrap_err();
        assert_eq!(error.line, 7);
    }

    #[test]
    fn hostile_data_is_a_value_and_runaway_work_stops() {
        let engine = Engine::new();
        // A server's answer that looks like a template stays text.
        let context = serde_json::json!({"steps": {"a": {"text": "${{ 7 * 7 }}"}}});
        assert_eq!(
            engine.eval(&text("${{ steps.a.text }}"), &context).unwrap(),
            Value::from("${{ 7 * 7 }}")
        );
        let error = engine
            .eval(
                &text("${% for i in range(100000) %}${% for j in range(100000) %}x${% endfor %}${% endfor %}"),
                &context,
            )
            .unwrap_err();
        assert!(error.message.contains("fuel"), "{error}");
    }
}
