//! The workflow file: YAML read with each node's line kept, so that every problem, found now
//! or by the check, names its line.
//!
//! ```yaml
//! name: answer-from-docs
//! inputs:
//!   question: {type: string}
//!   limit: {type: integer, default: 5}
//! steps:
//!   - id: search
//!     call: docs.search                 # SERVER.TOOL
//!     with: {query: "${{ inputs.question }}", limit: "${{ inputs.limit }}"}
//!   - id: answer
//!     llm: "Answer {{ ... }}"           # a prompt to the configured model
//!     schema: {type: object}            # the answer must be JSON of this schema
//! ```
//!
//! Steps may also `read: URI`, `prompt: SERVER.PROMPT` (with `with:` arguments) or `approve:` a
//! question to the person running the workflow; each may carry `if:`, `for_each:` (with
//! `concurrency:`), `retry: {attempts, backoff, on}`, `timeout:`, `continue_on_error:` and
//! `idempotent:`.

use std::{fmt, time::Duration};

use marked_yaml::{Node, types::MarkedMappingNode};
use serde_json::Value;

/// A problem with a workflow file, at its line (1-based; 0 when it is about the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where.
    pub line: usize,
    /// What, and what to do.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// A workflow.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// Its name (a tool's name when served).
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// What it takes.
    pub inputs: Vec<InputSpec>,
    /// What it does, in order.
    pub steps: Vec<Step>,
}

/// The type of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// true or false.
    Boolean,
    /// A JSON object.
    Object,
    /// A JSON array.
    Array,
}

impl Kind {
    /// Its JSON Schema name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Object => "object",
            Self::Array => "array",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "string" => Self::String,
            "number" => Self::Number,
            "integer" => Self::Integer,
            "boolean" => Self::Boolean,
            "object" => Self::Object,
            "array" => Self::Array,
            _ => return None,
        })
    }

    /// Whether `value` is of this type.
    pub fn admits(self, value: &Value) -> bool {
        match self {
            Self::String => value.is_string(),
            Self::Number => value.is_number(),
            Self::Integer => value.is_i64() || value.is_u64(),
            Self::Boolean => value.is_boolean(),
            Self::Object => value.is_object(),
            Self::Array => value.is_array(),
        }
    }
}

/// One input.
#[derive(Debug, Clone)]
pub struct InputSpec {
    /// Its name (`inputs.NAME` in templates).
    pub name: String,
    /// Its type.
    pub kind: Kind,
    /// Its value when none is given; without one, the input is required.
    pub default: Option<Value>,
    /// What it is.
    pub description: Option<String>,
    /// Where it is declared.
    pub line: usize,
}

/// Text that may hold `${{ … }}` expressions, with its line.
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    /// The text as written.
    pub source: String,
    /// Where.
    pub line: usize,
}

/// Arguments as written: literal values and texts to fill in, with their lines.
#[derive(Debug, Clone, PartialEq)]
pub enum Tree {
    /// A literal value.
    Literal(Value, usize),
    /// A text with expressions (a whole `${{ expr }}` keeps the expression's type).
    Text(Text),
    /// A list.
    List(Vec<Tree>, usize),
    /// An object, in the file's order.
    Map(Vec<(String, Tree)>, usize),
}

impl Tree {
    /// Its line.
    pub fn line(&self) -> usize {
        match self {
            Self::Literal(_, line) | Self::List(_, line) | Self::Map(_, line) => *line,
            Self::Text(text) => text.line,
        }
    }

    /// Every text in it.
    pub fn texts(&self) -> Vec<&Text> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Text>) {
        match self {
            Self::Literal(..) => {}
            Self::Text(text) => out.push(text),
            Self::List(items, _) => items.iter().for_each(|t| t.collect(out)),
            Self::Map(entries, _) => entries.iter().for_each(|(_, t)| t.collect(out)),
        }
    }
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Calls a tool.
    Call {
        /// The server, by its name in the config files.
        server: String,
        /// The tool.
        tool: String,
        /// Its arguments.
        with: Tree,
    },
    /// Asks the configured model.
    Llm {
        /// The prompt.
        prompt: Text,
        /// A system prompt.
        system: Option<Text>,
        /// A JSON Schema the answer (as JSON) must satisfy; asked again on a mismatch.
        schema: Option<Value>,
    },
    /// Gets a prompt from a server.
    Prompt {
        /// The server.
        server: String,
        /// The prompt's name.
        name: String,
        /// Its arguments.
        with: Tree,
    },
    /// Reads a resource.
    Read {
        /// Its URI.
        uri: Text,
        /// The server that has it (else the first that does).
        server: Option<String>,
    },
    /// Asks the person running the workflow; a no stops the run.
    Approve {
        /// The question.
        question: Text,
    },
}

impl Action {
    /// The key that names it in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Call { .. } => "call",
            Self::Llm { .. } => "llm",
            Self::Prompt { .. } => "prompt",
            Self::Read { .. } => "read",
            Self::Approve { .. } => "approve",
        }
    }
}

/// Which failures a step is tried again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The tool answered with an error (`isError`).
    ToolError,
    /// The server could not be reached, or the call broke on the way.
    Transport,
    /// The step took longer than its `timeout`.
    Timeout,
    /// The model's answer did not satisfy the step's schema.
    Schema,
}

impl Failure {
    /// Its name in `retry.on`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToolError => "tool_error",
            Self::Transport => "transport",
            Self::Timeout => "timeout",
            Self::Schema => "schema",
        }
    }

    const ALL: [Self; 4] = [
        Self::ToolError,
        Self::Transport,
        Self::Timeout,
        Self::Schema,
    ];
}

/// How a step is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Tries in all (1: no retry).
    pub attempts: u32,
    /// The wait before the second try, doubled before each later one.
    pub backoff: Duration,
    /// After which failures.
    pub on: Vec<Failure>,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff: Duration::from_secs(1),
            on: vec![Failure::Transport, Failure::Timeout, Failure::Schema],
        }
    }
}

/// One step.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its id (`steps.ID` in later templates).
    pub id: String,
    /// Where it starts.
    pub line: usize,
    /// What it does.
    pub action: Action,
    /// Runs only when this is true.
    pub when: Option<Text>,
    /// Runs once per item of this list (`item` and `index` in its templates).
    pub for_each: Option<Text>,
    /// Items run at once under `for_each`.
    pub concurrency: usize,
    /// Tries again after a failure.
    pub retry: Retry,
    /// Longest one try may take.
    pub timeout: Option<Duration>,
    /// A failure is recorded and the run goes on.
    pub continue_on_error: bool,
    /// Running it twice does no harm: after a crash in the middle of it, a resumed run tries
    /// it again without asking.
    pub idempotent: Option<bool>,
}

/// The most items of a `for_each` run at once.
pub const MAX_CONCURRENCY: usize = 64;

const STEP_KEYS: [&str; 16] = [
    "id",
    "call",
    "with",
    "llm",
    "system",
    "schema",
    "prompt",
    "read",
    "server",
    "approve",
    "if",
    "for_each",
    "concurrency",
    "retry",
    "timeout",
    "continue_on_error",
];
const STEP_KEYS_MORE: [&str; 1] = ["idempotent"];

fn line_of(node: &Node) -> usize {
    node.span().start().map_or(0, |m| m.line())
}

/// A YAML node as JSON: unquoted scalars typed as YAML reads them (null, booleans, numbers).
pub fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(scalar) => scalar_json(scalar),
        Node::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

fn scalar_json(scalar: &marked_yaml::types::MarkedScalarNode) -> Value {
    let text = scalar.as_str();
    if !scalar.may_coerce() {
        return Value::String(text.to_owned());
    }
    if let Some(b) = scalar.as_bool() {
        return Value::Bool(b);
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = text.parse::<f64>()
        && n.is_finite()
        && text.chars().any(|c| c.is_ascii_digit())
    {
        return Value::from(n);
    }
    Value::String(text.to_owned())
}

/// A node as arguments: strings with `${{` are texts to fill in.
fn to_tree(node: &Node) -> Tree {
    let line = line_of(node);
    match node {
        Node::Scalar(_) => match to_json(node) {
            Value::String(s) if s.contains("${{") => Tree::Text(Text { source: s, line }),
            value => Tree::Literal(value, line),
        },
        Node::Sequence(items) => Tree::List(items.iter().map(to_tree).collect(), line),
        Node::Mapping(map) => Tree::Map(
            map.iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_tree(v)))
                .collect(),
            line,
        ),
    }
}

/// Reads a workflow file's text; every problem found, each with its line.
pub fn parse(text: &str) -> Result<Workflow, Vec<Problem>> {
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    let root = match marked_yaml::parse_yaml_with_options(0, text, options) {
        Ok(root) => root,
        Err(error) => {
            return Err(vec![Problem {
                line: 0,
                message: format!("not a YAML mapping: {error}"),
            }]);
        }
    };
    let Some(root) = root.as_mapping() else {
        return Err(vec![Problem {
            line: 1,
            message: "a workflow is a mapping with name, inputs and steps".to_owned(),
        }]);
    };
    let mut problems = Vec::new();
    let mut problem = |line: usize, message: String| problems.push(Problem { line, message });
    for (key, _) in root.iter() {
        if !["name", "description", "inputs", "steps"].contains(&key.as_str()) {
            problem(
                line_of(&Node::Scalar(key.clone())),
                format!(
                    "unknown key {:?} (a workflow has name, description, inputs, steps)",
                    key.as_str()
                ),
            );
        }
    }
    let name = match root.get_scalar("name") {
        Some(name) if valid_name(name.as_str()) => name.as_str().to_owned(),
        Some(name) => {
            problem(
                line_of(&Node::Scalar(name.clone())),
                format!(
                    "name {:?}: letters, digits, - and _ (it names the workflow's tool)",
                    name.as_str()
                ),
            );
            String::new()
        }
        None => {
            problem(1, "no name".to_owned());
            String::new()
        }
    };
    let description = root
        .get_scalar("description")
        .map(|d| d.as_str().to_owned());
    let inputs = match root.get_node("inputs") {
        None => Vec::new(),
        Some(Node::Mapping(map)) => read_inputs(map, &mut problem),
        Some(other) => {
            problem(
                line_of(other),
                "inputs: a mapping of NAME: {type, default, description}".to_owned(),
            );
            Vec::new()
        }
    };
    let steps = match root.get_node("steps") {
        Some(Node::Sequence(list)) if !list.is_empty() => list
            .iter()
            .filter_map(|node| read_step(node, &mut problem))
            .collect(),
        Some(other) => {
            problem(
                line_of(other),
                "steps: a list of steps, at least one".to_owned(),
            );
            Vec::new()
        }
        None => {
            problem(1, "no steps".to_owned());
            Vec::new()
        }
    };
    if problems.is_empty() {
        Ok(Workflow {
            name,
            description,
            inputs,
            steps,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read_inputs(map: &MarkedMappingNode, problem: &mut impl FnMut(usize, String)) -> Vec<InputSpec> {
    let mut inputs = Vec::new();
    for (key, node) in map.iter() {
        let name = key.as_str().to_owned();
        let line = line_of(node);
        if !valid_name(&name) || name.contains('-') {
            problem(line, format!("input {name:?}: letters, digits and _"));
            continue;
        }
        let (kind, default, description) = match node {
            // `name: string` is short for `name: {type: string}`.
            Node::Scalar(kind) => (Kind::parse(kind.as_str()), None, None),
            Node::Mapping(spec) => {
                for (k, _) in spec.iter() {
                    if !["type", "default", "description"].contains(&k.as_str()) {
                        problem(
                            line,
                            format!(
                                "input {name}: unknown key {:?} (type, default, description)",
                                k.as_str()
                            ),
                        );
                    }
                }
                (
                    spec.get_scalar("type")
                        .map_or(Some(Kind::String), |t| Kind::parse(t.as_str())),
                    spec.get_node("default").map(to_json),
                    spec.get_scalar("description")
                        .map(|d| d.as_str().to_owned()),
                )
            }
            Node::Sequence(_) => (None, None, None),
        };
        let Some(kind) = kind else {
            problem(
                line,
                format!(
                    "input {name}: type must be string, number, integer, boolean, object or array"
                ),
            );
            continue;
        };
        if let Some(default) = &default
            && !kind.admits(default)
        {
            problem(
                line,
                format!(
                    "input {name}: the default {default} is not a {}",
                    kind.as_str()
                ),
            );
        }
        inputs.push(InputSpec {
            name,
            kind,
            default,
            description,
            line,
        });
    }
    inputs
}

/// `SERVER.NAME`.
fn qualified(
    node: &Node,
    key: &str,
    problem: &mut impl FnMut(usize, String),
) -> Option<(String, String)> {
    let text = node
        .as_scalar()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    match text.split_once('.') {
        Some((server, name)) if !server.is_empty() && !name.is_empty() => {
            Some((server.to_owned(), name.to_owned()))
        }
        _ => {
            problem(
                line_of(node),
                format!(
                    "{key}: SERVER.NAME (a server of the config files and its {key}), not {text:?}"
                ),
            );
            None
        }
    }
}

fn text_of(node: &Node, key: &str, problem: &mut impl FnMut(usize, String)) -> Option<Text> {
    match node {
        Node::Scalar(scalar) => Some(Text {
            source: scalar.as_str().to_owned(),
            line: line_of(node),
        }),
        _ => {
            problem(line_of(node), format!("{key}: text"));
            None
        }
    }
}

/// A duration: seconds as a number, or `500ms`, `30s`, `5m`, `1h`.
fn duration(node: &Node, key: &str, problem: &mut impl FnMut(usize, String)) -> Option<Duration> {
    let text = node
        .as_scalar()
        .map(|s| s.as_str().trim().to_owned())
        .unwrap_or_default();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text.as_str(), "s"),
    };
    let seconds = number.trim().parse::<f64>().ok().and_then(|n| {
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        Some(n * scale)
    });
    match seconds {
        Some(s) if s.is_finite() && (0.0..=7.0 * 86_400.0).contains(&s) => {
            Some(Duration::from_secs_f64(s))
        }
        _ => {
            problem(
                line_of(node),
                format!("{key}: a duration (30, 500ms, 30s, 5m, 1h), not {text:?}"),
            );
            None
        }
    }
}

fn boolean(node: &Node, key: &str, problem: &mut impl FnMut(usize, String)) -> Option<bool> {
    match to_json(node) {
        Value::Bool(b) => Some(b),
        other => {
            problem(line_of(node), format!("{key}: true or false, not {other}"));
            None
        }
    }
}

fn read_step(node: &Node, problem: &mut impl FnMut(usize, String)) -> Option<Step> {
    let line = line_of(node);
    let Some(map) = node.as_mapping() else {
        problem(
            line,
            "a step is a mapping (id, and one of call, llm, prompt, read, approve)".to_owned(),
        );
        return None;
    };
    for (key, _) in map.iter() {
        if !STEP_KEYS.contains(&key.as_str()) && !STEP_KEYS_MORE.contains(&key.as_str()) {
            problem(
                line_of(&Node::Scalar(key.clone())),
                format!(
                    "unknown key {:?} in a step (known: {})",
                    key.as_str(),
                    STEP_KEYS
                        .iter()
                        .chain(&STEP_KEYS_MORE)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    let id = match map.get_scalar("id") {
        Some(id) if valid_name(id.as_str()) && !id.as_str().contains('-') => id.as_str().to_owned(),
        Some(id) => {
            problem(
                line,
                format!(
                    "step id {:?}: letters, digits and _ (it is steps.ID in templates)",
                    id.as_str()
                ),
            );
            return None;
        }
        None => {
            problem(line, "a step without an id".to_owned());
            return None;
        }
    };
    let at = |key: &str| map.get_node(key);
    let kinds: Vec<&str> = ["call", "llm", "prompt", "read", "approve"]
        .into_iter()
        .filter(|k| at(k).is_some())
        .collect();
    if kinds.len() != 1 {
        problem(
            line,
            format!(
                "step {id}: one of call, llm, prompt, read or approve (found {})",
                if kinds.is_empty() {
                    "none".to_owned()
                } else {
                    kinds.join(", ")
                }
            ),
        );
        return None;
    }
    let with = at("with")
        .map(to_tree)
        .unwrap_or(Tree::Map(Vec::new(), line));
    if !matches!(with, Tree::Map(..)) {
        problem(
            with.line(),
            format!("step {id}: with: a mapping of arguments"),
        );
    }
    let action = match kinds[0] {
        "call" => {
            let (server, tool) = qualified(at("call")?, "call", problem)?;
            Action::Call { server, tool, with }
        }
        "prompt" => {
            let (server, name) = qualified(at("prompt")?, "prompt", problem)?;
            Action::Prompt { server, name, with }
        }
        "llm" => Action::Llm {
            prompt: text_of(at("llm")?, "llm", problem)?,
            system: at("system").and_then(|n| text_of(n, "system", problem)),
            schema: match at("schema") {
                None => None,
                Some(node) => {
                    let schema = to_json(node);
                    if let Err(error) = jsonschema::validator_for(&schema) {
                        problem(
                            line_of(node),
                            format!("step {id}: schema is not a JSON Schema: {error}"),
                        );
                    }
                    Some(schema)
                }
            },
        },
        "read" => Action::Read {
            uri: text_of(at("read")?, "read", problem)?,
            server: at("server")
                .and_then(|n| n.as_scalar())
                .map(|s| s.as_str().to_owned()),
        },
        _ => Action::Approve {
            question: text_of(at("approve")?, "approve", problem)?,
        },
    };
    for key in ["with", "server", "system", "schema"] {
        let allowed = match key {
            "with" => matches!(action, Action::Call { .. } | Action::Prompt { .. }),
            "server" => matches!(action, Action::Read { .. }),
            _ => matches!(action, Action::Llm { .. }),
        };
        if let (Some(node), false) = (at(key), allowed) {
            problem(
                line_of(node),
                format!("step {id}: {key} does not go with {}", action.kind()),
            );
        }
    }
    let mut retry = Retry::default();
    if let Some(node) = at("retry") {
        match node {
            Node::Mapping(spec) => {
                if let Some(n) = spec.get_node("attempts") {
                    match to_json(n).as_u64() {
                        Some(a @ 1..=100) => retry.attempts = a as u32,
                        _ => problem(line_of(n), "retry.attempts: 1 to 100".to_owned()),
                    }
                }
                if let Some(n) = spec.get_node("backoff")
                    && let Some(d) = duration(n, "retry.backoff", problem)
                {
                    retry.backoff = d;
                }
                if let Some(n) = spec.get_node("on") {
                    let names: Vec<String> = match to_json(n) {
                        Value::String(s) => vec![s],
                        Value::Array(items) => items
                            .iter()
                            .map(|v| v.as_str().unwrap_or("").to_owned())
                            .collect(),
                        _ => vec![String::new()],
                    };
                    retry.on.clear();
                    for name in names {
                        match Failure::ALL.iter().find(|f| f.as_str() == name) {
                            Some(f) => retry.on.push(*f),
                            None => problem(
                                line_of(n),
                                format!(
                                    "retry.on: {name:?} is not one of tool_error, transport, timeout, schema"
                                ),
                            ),
                        }
                    }
                }
            }
            _ => match to_json(node).as_u64() {
                // `retry: 3` is short for `retry: {attempts: 3}`.
                Some(a @ 1..=100) => retry.attempts = a as u32,
                _ => problem(
                    line_of(node),
                    "retry: attempts (1 to 100) or {attempts, backoff, on}".to_owned(),
                ),
            },
        }
    }
    let concurrency = match at("concurrency") {
        None => 1,
        Some(node) => match to_json(node).as_u64() {
            Some(n @ 1..) if n as usize <= MAX_CONCURRENCY => n as usize,
            _ => {
                problem(
                    line_of(node),
                    format!("concurrency: 1 to {MAX_CONCURRENCY}"),
                );
                1
            }
        },
    };
    if at("concurrency").is_some() && at("for_each").is_none() {
        problem(line, format!("step {id}: concurrency goes with for_each"));
    }
    Some(Step {
        when: at("if").and_then(|n| text_of(n, "if", problem)),
        for_each: at("for_each").and_then(|n| text_of(n, "for_each", problem)),
        concurrency,
        retry,
        timeout: at("timeout").and_then(|n| duration(n, "timeout", problem)),
        continue_on_error: at("continue_on_error")
            .and_then(|n| boolean(n, "continue_on_error", problem))
            .unwrap_or(false),
        idempotent: at("idempotent").and_then(|n| boolean(n, "idempotent", problem)),
        id,
        line,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_reads_with_its_lines() {
        let workflow = parse(
            "name: docs\ninputs:\n  question: {type: string}\n  limit: {type: integer, default: 5}\nsteps:\n  - id: search\n    call: docs.search\n    with:\n      query: ${{ inputs.question }}\n      limit: 3\n    retry: {attempts: 3, backoff: 500ms, on: [transport]}\n  - id: answer\n    llm: \"Answer from ${{ steps.search.text }}\"\n    schema: {type: object}\n    timeout: 2m\n",
        )
        .unwrap();
        assert_eq!(workflow.name, "docs");
        assert_eq!(workflow.inputs[1].default, Some(Value::from(5)));
        let search = &workflow.steps[0];
        assert_eq!(search.line, 6);
        let Action::Call { server, tool, with } = &search.action else {
            panic!("{search:?}")
        };
        assert_eq!((server.as_str(), tool.as_str()), ("docs", "search"));
        let Tree::Map(args, _) = with else { panic!() };
        assert_eq!(
            args[0].1,
            Tree::Text(Text {
                source: "${{ inputs.question }}".into(),
                line: 9
            })
        );
        assert_eq!(args[1].1, Tree::Literal(Value::from(3), 10));
        assert_eq!(search.retry.attempts, 3);
        assert_eq!(search.retry.backoff, Duration::from_millis(500));
        assert_eq!(search.retry.on, [Failure::Transport]);
        assert_eq!(workflow.steps[1].timeout, Some(Duration::from_secs(120)));
    }

    #[test]
    fn every_problem_is_named_with_its_line() {
        let problems = parse(
            "name: x y\nsteps:\n  - id: a\n    call: nodot\n  - id: b\n    llm: hi\n    with: {a: 1}\n  - call: s.t\n  - id: c\n    read: x\n    approve: y\n  - id: d\n    call: s.t\n    timeout: soon\n    frobnicate: 1\n",
        )
        .unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(lines, [1, 4, 7, 8, 9, 14, 15], "{text:#?}");
        assert!(text[1].contains("SERVER.NAME"), "{text:#?}");
        assert!(text[4].contains("one of call"), "{text:#?}");
    }
}
