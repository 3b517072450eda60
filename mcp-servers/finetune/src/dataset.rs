//! Checking a training file before anything is launched: every line is read, every problem is
//! reported with its line number, and the statistics a person needs to pick hyperparameters
//! (token counts, duplicates) come with it.
//!
//! Accepted shapes, one JSON object per line (the ones OpenAI's fine-tuning API and Hugging Face
//! TRL read):
//! - `sft` and `distill` (a teacher's answers are the assistant turns):
//!   `{"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}`,
//!   `{"prompt": …, "completion": …}` (strings or message lists), or `{"text": "…"}`;
//! - `dpo`: OpenAI's `{"input": {"messages": […]}, "preferred_output": […],
//!   "non_preferred_output": […]}` or TRL's `{"prompt": …, "chosen": …, "rejected": …}`.
//!
//! The file is streamed: a file of any size is checked in constant memory but for one hash and
//! one token count per example.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    io::{BufRead, BufReader, Read},
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use mcp_core::sandbox::SandboxError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::job::Method;

/// Fewer examples than this is an error: nothing useful is learned from them.
pub const MIN_EXAMPLES: usize = 10;
/// Problems listed one by one; past this only their number is kept.
const MAX_LISTED: usize = 50;
/// Longest line read; a longer one is an error of its own (and is not held in memory).
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Tokens a chat template adds around each message (role markers, separators), as in OpenAI's
/// counting guide; used with a real tokenizer and with the estimate alike.
const TOKENS_PER_MESSAGE: usize = 4;

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

/// How tokens are counted: a model's own tokenizer, or an estimate when none is at hand.
pub enum TokenCounter {
    /// The model's own tokenizer.
    Tokenizer(Box<tokenizers::Tokenizer>),
    /// About four bytes of English text per token.
    Estimate,
}

impl TokenCounter {
    /// The tokenizer in a model directory (`tokenizer.json`), or the estimate if it has none.
    pub fn for_model_dir(dir: &Path) -> Result<Self, String> {
        /// Larger than any real tokenizer (the biggest are tens of megabytes).
        const MAX_TOKENIZER_BYTES: u64 = 256 * 1024 * 1024;
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Ok(Self::Estimate);
        }
        let mut bytes = Vec::new();
        open(&file)?
            .take(MAX_TOKENIZER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("cannot read {}: {error}", file.display()))?;
        if bytes.len() as u64 > MAX_TOKENIZER_BYTES {
            return Err(format!(
                "{} is over {} MB, larger than any tokenizer",
                file.display(),
                MAX_TOKENIZER_BYTES / (1024 * 1024)
            ));
        }
        tokenizers::Tokenizer::from_bytes(&bytes)
            .map(|tokenizer| Self::Tokenizer(Box::new(tokenizer)))
            .map_err(|error| format!("cannot read {}: {error}", file.display()))
    }

    fn count(&self, text: &str) -> usize {
        match self {
            Self::Tokenizer(tokenizer) => tokenizer
                .encode_fast(text, false)
                .map(|encoding| encoding.len())
                .unwrap_or_else(|_| text.len().div_ceil(4)),
            Self::Estimate => text.len().div_ceil(4),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Self::Tokenizer(_) => "the model's tokenizer",
            Self::Estimate => {
                "an estimate (4 bytes per token; pass a model with a tokenizer.json for exact counts)"
            }
        }
    }
}

/// One problem, where it is.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number in the file.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Distribution of a count over the examples.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema, PartialEq)]
pub struct Distribution {
    /// The smallest.
    pub min: usize,
    /// The mean.
    pub mean: f64,
    /// The median.
    pub p50: usize,
    /// The 95th percentile.
    pub p95: usize,
    /// The largest.
    pub max: usize,
    /// The sum.
    pub total: usize,
}

impl Distribution {
    fn of(mut values: Vec<usize>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let total: usize = values.iter().sum();
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Self {
            min: values[0],
            mean: total as f64 / values.len() as f64,
            p50: at(0.5),
            p95: at(0.95),
            max: values[values.len() - 1],
            total,
        }
    }
}

/// What `validate_dataset` reports.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The file.
    pub path: String,
    /// The method it was checked for.
    pub method: Method,
    /// True when there are no errors (warnings do not stop a job).
    pub valid: bool,
    /// Examples read.
    pub examples: usize,
    /// Problems that stop a job, first ones listed.
    pub errors: Vec<Problem>,
    /// How many errors there were in all (more than are listed when many).
    pub error_count: usize,
    /// Oddities that do not stop a job, first ones listed.
    pub warnings: Vec<Problem>,
    /// How many warnings there were in all.
    pub warning_count: usize,
    /// Tokens per example (all turns, with template overhead).
    pub tokens: Distribution,
    /// Tokens the model is trained on per example (the assistant's turns, or the chosen answer).
    pub trained_tokens: Distribution,
    /// How the tokens were counted.
    pub tokenizer: String,
    /// Examples that repeat an earlier one exactly: (line, line of the first).
    pub duplicates: Vec<(usize, usize)>,
    /// How many duplicates there were in all.
    pub duplicate_count: usize,
    /// Examples longer than `max_seq_len` (they would be cut).
    pub over_max_len: usize,
}

impl Report {
    /// A few lines for a person or a model.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} for {}: {} examples, {} errors, {} warnings",
            self.path,
            if self.valid { "valid" } else { "INVALID" },
            self.method,
            self.examples,
            self.error_count,
            self.warning_count
        );
        for problem in &self.errors {
            out.push_str(&format!(
                "\nerror: line {}: {}",
                problem.line, problem.message
            ));
        }
        if self.error_count > self.errors.len() {
            out.push_str(&format!(
                "\n… and {} more errors",
                self.error_count - self.errors.len()
            ));
        }
        for problem in &self.warnings {
            out.push_str(&format!(
                "\nwarning: line {}: {}",
                problem.line, problem.message
            ));
        }
        if self.warning_count > self.warnings.len() {
            out.push_str(&format!(
                "\n… and {} more warnings",
                self.warning_count - self.warnings.len()
            ));
        }
        if self.examples > 0 {
            let t = &self.tokens;
            out.push_str(&format!(
                "\ntokens per example ({}): min {} / mean {:.0} / p50 {} / p95 {} / max {}; {} in all, {} trained",
                self.tokenizer, t.min, t.mean, t.p50, t.p95, t.max, t.total, self.trained_tokens.total
            ));
        }
        if self.duplicate_count > 0 {
            out.push_str(&format!(
                "\n{} duplicate examples (line, first seen on line): {:?}",
                self.duplicate_count, self.duplicates
            ));
        }
        if self.over_max_len > 0 {
            out.push_str(&format!(
                "\n{} examples are longer than max_seq_len and will be cut",
                self.over_max_len
            ));
        }
        out
    }
}

/// Opens a dataset or model file named on the command line: a regular file only (a FIFO, a
/// device such as `/dev/zero` or a directory is refused at once, not read forever), as the
/// server's sandbox opens what clients name ([`mcp_core::sandbox::open_regular_path`]).
pub fn open(path: &Path) -> Result<std::fs::File, String> {
    mcp_core::sandbox::open_regular_path(path)
        .map(|(file, _)| file)
        .map_err(|error| match error {
            SandboxError::Io { .. } => format!("cannot open {error}"),
            other => other.to_string(),
        })
}

/// Checks a dataset file for a method. `Err` only when the file cannot be read at all.
pub fn validate(
    path: &Path,
    method: Method,
    counter: &TokenCounter,
    max_seq_len: usize,
) -> Result<Report, String> {
    let file = open(path)?;
    validate_reader(
        file,
        path,
        method,
        counter,
        max_seq_len,
        &AtomicBool::new(false),
    )
}

/// [`validate`] on an opened file (`path` names it in the report), stopping with an error as
/// soon as `stop` is set: the caller went away, or the server is shutting down.
pub fn validate_reader(
    file: impl Read,
    path: &Path,
    method: Method,
    counter: &TokenCounter,
    max_seq_len: usize,
    stop: &AtomicBool,
) -> Result<Report, String> {
    let mut checker = Checker::new(method, counter, max_seq_len);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(format!("checking {} was cancelled", path.display()));
        }
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(|error| format!("reading {} failed: {error}", path.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            checker.error(number, format!("line longer than {MAX_LINE_BYTES} bytes"));
            // Skip the rest of it without holding it.
            loop {
                let buffer = reader
                    .fill_buf()
                    .map_err(|error| format!("reading {} failed: {error}", path.display()))?;
                if buffer.is_empty() {
                    break;
                }
                match buffer.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        reader.consume(end + 1);
                        break;
                    }
                    None => {
                        let all = buffer.len();
                        reader.consume(all);
                    }
                }
            }
            continue;
        }
        checker.line(number, &line);
    }
    Ok(checker.finish(path))
}

struct Checker<'a> {
    method: Method,
    counter: &'a TokenCounter,
    max_seq_len: usize,
    errors: Vec<Problem>,
    error_count: usize,
    warnings: Vec<Problem>,
    warning_count: usize,
    tokens: Vec<usize>,
    trained: Vec<usize>,
    seen: HashMap<u64, usize>,
    duplicates: Vec<(usize, usize)>,
    duplicate_count: usize,
    over_max_len: usize,
    /// Blank lines skipped: how many, and the first.
    blank_lines: (usize, usize),
}

impl<'a> Checker<'a> {
    fn new(method: Method, counter: &'a TokenCounter, max_seq_len: usize) -> Self {
        Self {
            method,
            counter,
            max_seq_len,
            errors: Vec::new(),
            error_count: 0,
            warnings: Vec::new(),
            warning_count: 0,
            tokens: Vec::new(),
            trained: Vec::new(),
            seen: HashMap::new(),
            duplicates: Vec::new(),
            duplicate_count: 0,
            over_max_len: 0,
            blank_lines: (0, 0),
        }
    }

    fn error(&mut self, line: usize, message: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_LISTED {
            self.errors.push(Problem { line, message });
        }
    }

    fn warning(&mut self, line: usize, message: String) {
        self.warning_count += 1;
        if self.warnings.len() < MAX_LISTED {
            self.warnings.push(Problem { line, message });
        }
    }

    fn line(&mut self, number: usize, bytes: &[u8]) {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.trim(),
            Err(error) => {
                self.error(
                    number,
                    format!("not UTF-8 (byte {})", error.valid_up_to() + 1),
                );
                return;
            }
        };
        if text.is_empty() {
            if self.blank_lines.0 == 0 {
                self.blank_lines.1 = number;
            }
            self.blank_lines.0 += 1;
            return;
        }
        let example = match parse_example(text, self.method) {
            Ok(example) => example,
            Err(message) => {
                self.error(number, message);
                return;
            }
        };
        for warning in &example.warnings {
            self.warning(number, warning.clone());
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        let hash = hasher.finish();
        if let Some(&first) = self.seen.get(&hash) {
            self.duplicate_count += 1;
            if self.duplicates.len() < MAX_LISTED {
                self.duplicates.push((number, first));
            }
        } else {
            self.seen.insert(hash, number);
        }
        let count = |turn: &Turn| self.counter.count(&turn.text) + TOKENS_PER_MESSAGE;
        let total: usize = example
            .turns
            .iter()
            .chain(&example.rejected)
            .map(count)
            .sum();
        let trained: usize = example.turns.iter().filter(|t| t.trained).map(count).sum();
        if total > self.max_seq_len {
            self.over_max_len += 1;
        }
        self.tokens.push(total);
        self.trained.push(trained);
    }

    fn finish(mut self, path: &Path) -> Report {
        let examples = self.tokens.len();
        // A blank line at the very end is what editors leave; blank lines inside are worth a word.
        let (blank, first_blank) = self.blank_lines;
        if blank > 0 {
            self.warning(
                first_blank,
                format!("{blank} blank lines skipped (first on line {first_blank})"),
            );
        }
        if examples < MIN_EXAMPLES {
            self.error(
                0,
                format!(
                    "{examples} valid examples; at least {MIN_EXAMPLES} are needed to train anything"
                ),
            );
        }
        if self.duplicate_count > 0 {
            let first = self.duplicates.first().map(|d| d.0).unwrap_or(0);
            self.warning(
                first,
                format!(
                    "{} examples repeat an earlier one exactly (they weigh double)",
                    self.duplicate_count
                ),
            );
        }
        Report {
            path: path.display().to_string(),
            method: self.method,
            valid: self.error_count == 0,
            examples,
            errors: self.errors,
            error_count: self.error_count,
            warnings: self.warnings,
            warning_count: self.warning_count,
            tokens: Distribution::of(self.tokens),
            trained_tokens: Distribution::of(self.trained),
            tokenizer: self.counter.describe().to_owned(),
            duplicates: self.duplicates,
            duplicate_count: self.duplicate_count,
            over_max_len: self.over_max_len,
        }
    }
}

/// One turn of an example, as the trainer renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// `system`, `user`, `assistant`, …; empty for raw `text` (no chat template).
    pub role: String,
    /// Its text.
    pub text: String,
    /// Whether the model learns to produce it (assistant turns not weighted 0; the answers).
    pub trained: bool,
}

/// One example: its conversation (for DPO the prompt and the chosen answer) and, for DPO, the
/// rejected answer; with what is odd about it but allowed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Example {
    /// The conversation (for DPO, the prompt and the chosen answer).
    pub turns: Vec<Turn>,
    /// For DPO, the rejected answer.
    pub rejected: Vec<Turn>,
    /// For GRPO, what a good answer is.
    pub reward: Option<crate::reward::RewardSpec>,
    /// What is odd about it but allowed.
    pub warnings: Vec<String>,
}

impl Example {
    /// The turns before the first trained one (DPO's prompt).
    pub fn prompt(&self) -> &[Turn] {
        let end = self
            .turns
            .iter()
            .position(|turn| turn.trained)
            .unwrap_or(self.turns.len());
        &self.turns[..end]
    }
}

/// Reads one line of a dataset for a method: the checks `validate_dataset` reports, and the
/// example the trainer trains on.
pub fn parse_example(line: &str, method: Method) -> Result<Example, String> {
    let value: Value = serde_json::from_str(line)
        .map_err(|error| format!("not valid JSON: {error} (one JSON object per line)"))?;
    let Value::Object(object) = &value else {
        return Err(format!("expected a JSON object, found {}", kind(&value)));
    };
    match method {
        Method::Sft | Method::Distill => sft_example(object),
        Method::Dpo => dpo_example(object),
        Method::Grpo => grpo_example(object),
        Method::Quantize => Err("quantize takes no dataset".to_owned()),
    }
}

/// A prompt (`prompt`: text or messages; or `messages` without an answer) and its reward.
fn grpo_example(object: &Map<String, Value>) -> Result<Example, String> {
    let mut example = Example::default();
    let (value, field) = match (object.get("prompt"), object.get("messages")) {
        (Some(prompt), _) => (prompt, "prompt"),
        (None, Some(messages)) => (messages, "messages"),
        (None, None) => {
            return Err(format!(
                "missing \"prompt\" (expected {{\"prompt\": \"…\" or [messages], \"answer\" | \"pattern\" | \"schema\": …}}; found keys {})",
                keys(object)
            ));
        }
    };
    turn_into(
        value,
        field,
        &mut example.turns,
        &mut example.warnings,
        false,
    )?;
    if example
        .turns
        .last()
        .is_some_and(|turn| turn.role == "assistant")
    {
        return Err(format!(
            "\"{field}\" ends with an assistant message: grpo samples the answer itself, so the prompt ends with the user's turn"
        ));
    }
    for turn in &mut example.turns {
        turn.trained = false;
    }
    example.reward = Some(crate::reward::RewardSpec::read(object)?);
    Ok(example)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn sft_example(object: &Map<String, Value>) -> Result<Example, String> {
    let mut example = Example::default();
    if let Some(messages) = object.get("messages") {
        messages_into(
            messages,
            "messages",
            &mut example.turns,
            &mut example.warnings,
            true,
        )?;
        if !example.turns.iter().any(|turn| turn.role == "assistant") {
            return Err(
                "no assistant turn: there is nothing to learn from (add a message with \"role\": \"assistant\")"
                    .to_owned(),
            );
        }
        if !example.turns.iter().any(|turn| turn.trained) {
            example
                .warnings
                .push("every assistant turn has weight 0: nothing is learned from it".to_owned());
        }
        return Ok(example);
    }
    if let (Some(prompt), Some(completion)) = (object.get("prompt"), object.get("completion")) {
        turn_into(
            prompt,
            "prompt",
            &mut example.turns,
            &mut example.warnings,
            false,
        )?;
        turn_into(
            completion,
            "completion",
            &mut example.turns,
            &mut example.warnings,
            true,
        )?;
        return Ok(example);
    }
    if let Some(text) = object.get("text") {
        let Value::String(text) = text else {
            return Err(format!("\"text\" must be a string, found {}", kind(text)));
        };
        if text.trim().is_empty() {
            return Err("\"text\" is empty".to_owned());
        }
        example.turns.push(Turn {
            role: String::new(),
            text: text.clone(),
            trained: true,
        });
        return Ok(example);
    }
    if object.contains_key("prompt") {
        return Err("\"prompt\" without \"completion\"".to_owned());
    }
    Err(format!(
        "missing \"messages\" (expected {{\"messages\": [...]}}, {{\"prompt\", \"completion\"}} or {{\"text\"}}; found keys {})",
        keys(object)
    ))
}

fn dpo_example(object: &Map<String, Value>) -> Result<Example, String> {
    let mut example = Example::default();
    let (chosen, rejected, names) = if object.contains_key("preferred_output")
        || object.contains_key("non_preferred_output")
        || object.contains_key("input")
    {
        let input = object
            .get("input")
            .ok_or("missing \"input\" (expected {\"input\": {\"messages\": [...]}, \"preferred_output\": [...], \"non_preferred_output\": [...]})")?;
        let messages = input
            .get("messages")
            .ok_or("\"input\" has no \"messages\"")?;
        messages_into(
            messages,
            "input.messages",
            &mut example.turns,
            &mut example.warnings,
            false,
        )?;
        (
            object.get("preferred_output"),
            object.get("non_preferred_output"),
            ("preferred_output", "non_preferred_output"),
        )
    } else {
        if let Some(prompt) = object.get("prompt") {
            turn_into(
                prompt,
                "prompt",
                &mut example.turns,
                &mut example.warnings,
                false,
            )?;
        }
        (
            object.get("chosen"),
            object.get("rejected"),
            ("chosen", "rejected"),
        )
    };
    let missing = |name: &str| {
        format!(
            "missing \"{name}\": a preference pair needs a preferred and a rejected answer (found keys {})",
            keys(object)
        )
    };
    let chosen = chosen.ok_or_else(|| missing(names.0))?;
    let rejected = rejected.ok_or_else(|| missing(names.1))?;
    let before = example.turns.len();
    turn_into(
        chosen,
        names.0,
        &mut example.turns,
        &mut example.warnings,
        true,
    )?;
    turn_into(
        rejected,
        names.1,
        &mut example.rejected,
        &mut example.warnings,
        true,
    )?;
    if example.turns[before..] == example.rejected[..] {
        example.warnings.push(format!(
            "\"{}\" and \"{}\" are the same answer: the pair teaches nothing",
            names.0, names.1
        ));
    }
    Ok(example)
}

/// A prompt or answer: a plain string (a user turn, or an assistant one when `trained`), or a
/// list of messages.
fn turn_into(
    value: &Value,
    field: &str,
    turns: &mut Vec<Turn>,
    warnings: &mut Vec<String>,
    trained: bool,
) -> Result<(), String> {
    match value {
        Value::String(text) => {
            if trained && text.trim().is_empty() {
                return Err(format!("\"{field}\" is empty"));
            }
            turns.push(Turn {
                role: if trained { "assistant" } else { "user" }.to_owned(),
                text: text.clone(),
                trained,
            });
            Ok(())
        }
        Value::Array(_) => {
            let before = turns.len();
            messages_into(value, field, turns, warnings, trained)?;
            if trained && !turns[before..].iter().any(|turn| turn.role == "assistant") {
                return Err(format!("\"{field}\" has no assistant message"));
            }
            Ok(())
        }
        other => Err(format!(
            "\"{field}\" must be a string or a list of messages, found {}",
            kind(other)
        )),
    }
}

/// Checks a list of chat messages; assistant turns are trained when `trained` (and not weighted
/// 0).
fn messages_into(
    messages: &Value,
    field: &str,
    turns: &mut Vec<Turn>,
    warnings: &mut Vec<String>,
    trained: bool,
) -> Result<(), String> {
    let Value::Array(list) = messages else {
        return Err(format!(
            "\"{field}\" must be a list of messages, found {}",
            kind(messages)
        ));
    };
    if list.is_empty() {
        return Err(format!("\"{field}\" is empty"));
    }
    for (i, message) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let Value::Object(message) = message else {
            return Err(format!("{at} must be an object, found {}", kind(message)));
        };
        let role = match message.get("role") {
            Some(Value::String(role)) => role.as_str(),
            Some(other) => {
                return Err(format!("{at}.role must be a string, found {}", kind(other)));
            }
            None => return Err(format!("{at} has no \"role\"")),
        };
        if !ROLES.contains(&role) {
            return Err(format!(
                "{at}: unknown role {role:?} (expected one of {})",
                ROLES.join(", ")
            ));
        }
        let weight = match message.get("weight") {
            None => 1,
            Some(weight) => match weight.as_u64() {
                Some(w @ (0 | 1)) => w,
                _ => return Err(format!("{at}.weight must be 0 or 1, found {weight}")),
            },
        };
        let tool_calls = message
            .get("tool_calls")
            .filter(|calls| calls.as_array().is_some_and(|c| !c.is_empty()));
        let text = match message.get("content") {
            Some(Value::String(text)) => {
                if text.is_empty() && tool_calls.is_none() {
                    warnings.push(format!("{at} has empty content"));
                }
                text.clone()
            }
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match part.get("text") {
                        Some(Value::String(part)) => text.push_str(part),
                        _ => {
                            return Err(format!(
                                "{at}.content[{j}] is not a text part ({{\"type\": \"text\", \"text\": \"…\"}}); only text can be trained on"
                            ));
                        }
                    }
                }
                text
            }
            Some(Value::Null) | None if role == "assistant" && tool_calls.is_some() => {
                String::new()
            }
            Some(other) => {
                return Err(format!(
                    "{at}.content must be a string, found {}",
                    kind(other)
                ));
            }
            None => return Err(format!("{at} has no \"content\"")),
        };
        // A turn that calls tools is learned with its calls, as JSON after any text.
        let text = match tool_calls {
            Some(calls) if role == "assistant" => format!("{text}{calls}"),
            _ => text,
        };
        turns.push(Turn {
            role: role.to_owned(),
            text,
            trained: trained && role == "assistant" && weight == 1,
        });
    }
    Ok(())
}

fn keys(object: &Map<String, Value>) -> String {
    if object.is_empty() {
        return "none".to_owned();
    }
    object
        .keys()
        .map(|k| format!("{k:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any line, for any method, is an example or an error that says why: never a panic.
        #[test]
        fn any_line_is_read_or_refused(line in ".{0,200}", pick in 0usize..3) {
            let method = [Method::Sft, Method::Dpo, Method::Distill][pick];
            if let Err(why) = parse_example(&line, method) {
                prop_assert!(!why.is_empty());
            }
        }

        /// A chat of any text in its turns is read.
        #[test]
        fn any_chat_text_is_an_example(user in "\\PC{0,80}", assistant in "\\PC{1,80}") {
            let line = serde_json::json!({"messages": [
                {"role": "user", "content": user},
                {"role": "assistant", "content": assistant},
            ]})
            .to_string();
            prop_assert!(parse_example(&line, Method::Sft).is_ok(), "{}", line);
        }
    }
}
