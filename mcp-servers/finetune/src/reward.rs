//! GRPO's verifiable rewards: what a dataset line says a good answer is, checked on each
//! sampled answer. Every check given scores 0 or 1; the reward is their mean.

use regex::Regex;
use serde_json::{Map, Value};

/// What an example rewards, as its dataset line gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RewardSpec {
    /// The expected answer, matched exactly (surrounding whitespace aside).
    pub answer: Option<String>,
    /// A regular expression the answer must match (anywhere: anchor it with `^…$` for the
    /// whole answer).
    pub pattern: Option<String>,
    /// A JSON Schema the answer, read as JSON, must satisfy.
    pub schema: Option<Value>,
}

/// Patterns larger than this once compiled are refused: a hostile dataset cannot make the
/// trainer build a huge automaton (matching itself is linear in the answer).
const PATTERN_LIMIT: usize = 1 << 20;

impl RewardSpec {
    /// Reads `answer`, `pattern` and `schema` from a dataset line; at least one is needed.
    pub fn read(object: &Map<String, Value>) -> Result<Self, String> {
        let answer = match object.get("answer") {
            None => None,
            Some(Value::String(text)) => Some(text.trim().to_owned()),
            Some(value @ (Value::Number(_) | Value::Bool(_))) => Some(value.to_string()),
            Some(other) => {
                return Err(format!(
                    "\"answer\" must be a string (or a number), found {other}"
                ));
            }
        };
        let pattern = match object.get("pattern") {
            None => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => return Err(format!("\"pattern\" must be a string, found {other}")),
        };
        let schema = object.get("schema").cloned();
        let spec = Self {
            answer,
            pattern,
            schema,
        };
        if spec.answer.is_none() && spec.pattern.is_none() && spec.schema.is_none() {
            return Err(
                "no reward: grpo needs \"answer\" (matched exactly), \"pattern\" (a regular expression) or \"schema\" (a JSON Schema) beside the prompt"
                    .to_owned(),
            );
        }
        spec.compile()?;
        Ok(spec)
    }

    /// The checks, ready to score answers; an error says what is wrong with a pattern or schema.
    pub fn compile(&self) -> Result<Reward, String> {
        let pattern = self
            .pattern
            .as_deref()
            .map(|p| {
                regex::RegexBuilder::new(p)
                    .size_limit(PATTERN_LIMIT)
                    .build()
                    .map_err(|e| format!("\"pattern\" is not a regular expression: {e}"))
            })
            .transpose()?;
        let schema = self
            .schema
            .as_ref()
            .map(|s| {
                jsonschema::validator_for(s)
                    .map_err(|e| format!("\"schema\" is not a JSON Schema: {e}"))
            })
            .transpose()?;
        Ok(Reward {
            answer: self.answer.clone(),
            pattern,
            schema,
        })
    }
}

/// Compiled checks.
pub struct Reward {
    answer: Option<String>,
    pattern: Option<Regex>,
    schema: Option<jsonschema::Validator>,
}

impl Reward {
    /// The mean of the checks `answer` passes, in `[0, 1]`.
    pub fn score(&self, answer: &str) -> f64 {
        let mut checks = Vec::with_capacity(3);
        if let Some(expected) = &self.answer {
            checks.push(answer.trim() == expected);
        }
        if let Some(pattern) = &self.pattern {
            checks.push(pattern.is_match(answer));
        }
        if let Some(schema) = &self.schema {
            checks.push(
                serde_json::from_str::<Value>(answer.trim()).is_ok_and(|v| schema.is_valid(&v)),
            );
        }
        checks.iter().filter(|&&passed| passed).count() as f64 / checks.len().max(1) as f64
    }
}

impl std::fmt::Debug for Reward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reward")
            .field("answer", &self.answer)
            .field("pattern", &self.pattern)
            .field("schema", &self.schema.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(line: Value) -> Result<RewardSpec, String> {
        RewardSpec::read(line.as_object().unwrap())
    }

    #[test]
    fn each_check_scores_and_the_reward_is_their_mean() {
        let exact = spec(serde_json::json!({"answer": " Paris "}))
            .unwrap()
            .compile()
            .unwrap();
        assert_eq!(exact.score("Paris\n"), 1.0);
        assert_eq!(exact.score("paris"), 0.0);
        let number = spec(serde_json::json!({"answer": 42}))
            .unwrap()
            .compile()
            .unwrap();
        assert_eq!(number.score(" 42"), 1.0);
        let both = spec(serde_json::json!({
            "pattern": "^\\d+$",
            "schema": {"type": "integer", "minimum": 10},
        }))
        .unwrap()
        .compile()
        .unwrap();
        assert_eq!(both.score("12"), 1.0);
        assert_eq!(both.score("7"), 0.5);
        assert_eq!(both.score("{\"a\": 1}"), 0.0);
    }

    #[test]
    fn bad_rewards_are_refused_with_the_reason() {
        let error = spec(serde_json::json!({"prompt": "x"})).unwrap_err();
        assert!(error.contains("no reward"), "{error}");
        let error = spec(serde_json::json!({"pattern": "(unclosed"})).unwrap_err();
        assert!(error.contains("not a regular expression"), "{error}");
        let error = spec(serde_json::json!({"schema": {"type": 12}})).unwrap_err();
        assert!(error.contains("not a JSON Schema"), "{error}");
        let error = spec(serde_json::json!({"answer": ["a"]})).unwrap_err();
        assert!(error.contains("must be a string"), "{error}");
        // A pattern whose automaton would be huge.
        let error =
            spec(serde_json::json!({"pattern": "\\w{1000}\\w{1000}\\w{1000}"})).unwrap_err();
        assert!(error.contains("not a regular expression"), "{error}");
    }
}
