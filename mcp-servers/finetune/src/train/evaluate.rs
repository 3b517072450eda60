//! Scoring answers against a file of expected ones, the base model beside the tuned one: each
//! example's last assistant turn is the expected answer, the turns before it the prompt.
//!
//! Metrics: `exact_match` (after trimming and collapsing whitespace), `contains` (the expected
//! answer anywhere in the answer, ignoring case), `rouge_l` (ROUGE-L's F1 over lower-cased
//! words), each from a greedy answer; and `loss` (the mean negative log-likelihood per token of
//! the expected answer, no generation; lower is better).

use std::{collections::BTreeMap, path::Path};

use candle_core::D;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    TrainError,
    generate::{Sampling, generate},
    model::Model,
    next_token_logprobs,
    tokenize::ChatTokenizer,
};
use crate::{
    dataset::{Turn, parse_example},
    job::Method,
};

/// How answers are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Metric {
    ExactMatch,
    Contains,
    RougeL,
    Loss,
}

impl Metric {
    /// The name reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExactMatch => "exact_match",
            Self::Contains => "contains",
            Self::RougeL => "rouge_l",
            Self::Loss => "loss",
        }
    }
}

/// One example to score: the conversation before the answer, and the answer expected.
#[derive(Debug, Clone)]
pub struct Case {
    prompt: Vec<Turn>,
    expected: String,
}

/// The cases of JSONL text read from `path` (chat, prompt/completion, or DPO's chosen answers),
/// at most `limit`; and how many lines had no answer to compare.
pub fn read_cases(text: &str, path: &Path, limit: usize) -> Result<(Vec<Case>, usize), TrainError> {
    let mut cases = Vec::new();
    let mut skipped = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        if cases.len() == limit {
            break;
        }
        let example = parse_example(line, Method::Sft)
            .or_else(|_| parse_example(line, Method::Dpo))
            .map_err(|error| {
                TrainError::Data(format!("{}: line {}: {error}", path.display(), i + 1))
            })?;
        let Some(last) = example.turns.iter().rposition(|t| t.role == "assistant") else {
            skipped += 1;
            continue;
        };
        let prompt: Vec<Turn> = example.turns[..last]
            .iter()
            .map(|t| Turn {
                trained: false,
                ..t.clone()
            })
            .collect();
        if prompt.is_empty() {
            skipped += 1;
            continue;
        }
        cases.push(Case {
            prompt,
            expected: example.turns[last].text.clone(),
        });
    }
    Ok((cases, skipped))
}

/// A model as it answers: its weights, and whether its adapters are on (off: the base model).
#[derive(Clone, Copy)]
pub struct Answerer<'a> {
    /// The model.
    pub model: &'a Model,
    /// Adapters on.
    pub use_lora: bool,
}

/// The base model's scores beside the tuned model's, and the examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evaluation {
    /// The file the examples came from.
    pub file: std::path::PathBuf,
    /// Examples scored.
    pub scored: usize,
    /// Lines with no answer to compare (no assistant turn, or nothing before it).
    pub skipped: usize,
    /// The scores.
    #[serde(flatten)]
    pub scores: Scores,
}

/// Both models' mean scores, and the first examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Scores {
    /// The base model's score per metric.
    pub base: BTreeMap<String, f64>,
    /// The tuned model's score per metric.
    pub tuned: BTreeMap<String, f64>,
    /// The first examples, with both models' answers and scores.
    pub examples: Vec<Scored>,
}

/// One example's answers and scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Scored {
    /// The last turn of the prompt.
    pub prompt: String,
    /// The answer expected.
    pub expected: String,
    /// The base model's answer (absent for `loss` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_answer: Option<String>,
    /// The tuned model's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned_answer: Option<String>,
    /// The base model's score per metric.
    pub base: BTreeMap<String, f64>,
    /// The tuned model's score per metric.
    pub tuned: BTreeMap<String, f64>,
}

/// Where a job keeps its latest evaluation (the `evaluation.json` resource).
pub const REPORT_FILE: &str = "evaluation.json";

/// Examples kept in an evaluation's report.
pub const SHOWN: usize = 20;

/// Scores `base` and `tuned` on `cases` by each of `metrics`; answers are greedy, at most
/// `max_tokens` long. `on_case` hears the count done and returns false to stop.
pub fn evaluate(
    base: Answerer<'_>,
    tuned: Answerer<'_>,
    tokenizer: &ChatTokenizer,
    cases: &[Case],
    metrics: &[Metric],
    max_tokens: usize,
    on_case: &mut dyn FnMut(usize) -> bool,
) -> Result<Scores, TrainError> {
    let mut sums: [BTreeMap<String, f64>; 2] = Default::default();
    let mut shown = Vec::new();
    let generating = metrics.iter().any(|&m| m != Metric::Loss);
    for (done, case) in cases.iter().enumerate() {
        let prompt = tokenizer.prompt(&case.prompt).map_err(TrainError::Data)?;
        let mut scores: [BTreeMap<String, f64>; 2] = Default::default();
        let mut answers: [Option<String>; 2] = [None, None];
        for (side, who) in [base, tuned].into_iter().enumerate() {
            if generating {
                let answer = generate(
                    who.model,
                    tokenizer,
                    &prompt,
                    max_tokens,
                    Sampling::GREEDY,
                    who.use_lora,
                    &mut |_| true,
                )?;
                answers[side] = Some(answer.text);
            }
            for &metric in metrics {
                let score = match (metric, &answers[side]) {
                    (Metric::Loss, _) => answer_loss(who, tokenizer, case)?,
                    (_, Some(answer)) => text_score(metric, answer, &case.expected),
                    (_, None) => continue,
                };
                scores[side].insert(metric.as_str().to_owned(), score);
                *sums[side].entry(metric.as_str().to_owned()).or_default() += score;
            }
        }
        if shown.len() < SHOWN {
            let [base_answer, tuned_answer] = answers;
            let [base_scores, tuned_scores] = scores;
            shown.push(Scored {
                prompt: case
                    .prompt
                    .last()
                    .map(|t| t.text.clone())
                    .unwrap_or_default(),
                expected: case.expected.clone(),
                base_answer,
                tuned_answer,
                base: base_scores,
                tuned: tuned_scores,
            });
        }
        if !on_case(done + 1) {
            return Err(TrainError::Data("the evaluation was stopped".to_owned()));
        }
    }
    let n = cases.len().max(1) as f64;
    let [base_sums, tuned_sums] = sums;
    let mean = |sums: BTreeMap<String, f64>| sums.into_iter().map(|(k, v)| (k, v / n)).collect();
    Ok(Scores {
        base: mean(base_sums),
        tuned: mean(tuned_sums),
        examples: shown,
    })
}

/// The mean negative log-likelihood per token of the expected answer (and the token ending it).
fn answer_loss(
    who: Answerer<'_>,
    tokenizer: &ChatTokenizer,
    case: &Case,
) -> Result<f64, TrainError> {
    let mut turns = case.prompt.clone();
    turns.push(Turn {
        role: "assistant".to_owned(),
        text: case.expected.clone(),
        trained: true,
    });
    let mut encoded = tokenizer.encode(&turns).map_err(TrainError::Data)?;
    encoded.truncate(who.model.config.max_position_embeddings);
    if encoded.ids.len() < 2 || !encoded.trained[1..].iter().any(|&t| t) {
        return Ok(0.0);
    }
    let next = next_token_logprobs(who.model, &encoded, &[encoded.ids.len()], who.use_lora)?;
    let total = f64::from(
        (next.logprobs * &next.mask)?
            .sum_all()?
            .to_scalar::<f32>()?,
    );
    let count = f64::from(next.mask.sum(D::Minus1)?.to_scalar::<f32>()?);
    Ok(-total / count.max(1.0))
}

/// A generated answer's score against the expected one (1 is a perfect answer).
pub fn text_score(metric: Metric, answer: &str, expected: &str) -> f64 {
    let squash = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    match metric {
        Metric::ExactMatch => f64::from(u8::from(squash(answer) == squash(expected))),
        Metric::Contains => {
            let expected = squash(expected).to_lowercase();
            f64::from(u8::from(
                !expected.is_empty() && squash(answer).to_lowercase().contains(&expected),
            ))
        }
        Metric::RougeL => rouge_l(answer, expected),
        Metric::Loss => 0.0,
    }
}

/// ROUGE-L's F1: the longest common subsequence of lower-cased words, over both lengths.
pub fn rouge_l(answer: &str, expected: &str) -> f64 {
    let words =
        |text: &str| -> Vec<String> { text.split_whitespace().map(str::to_lowercase).collect() };
    let (a, e) = (words(answer), words(expected));
    if a.is_empty() || e.is_empty() {
        return 0.0;
    }
    let mut row = vec![0usize; e.len() + 1];
    for x in &a {
        let mut diagonal = 0;
        for (j, y) in e.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                row[j + 1].max(row[j])
            };
            diagonal = above;
        }
    }
    let common = row[e.len()] as f64;
    if common == 0.0 {
        return 0.0;
    }
    let (precision, recall) = (common / a.len() as f64, common / e.len() as f64);
    2.0 * precision * recall / (precision + recall)
}

/// Writes an evaluation's report to `path` whole or not at all.
pub fn save(evaluation: &Evaluation, path: &Path) -> Result<(), TrainError> {
    let text = serde_json::to_vec_pretty(evaluation)
        .map_err(|error| TrainError::Data(error.to_string()))?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(super::io(path))
}

/// An evaluation in one line: `loss 2.3100 → 0.4200, contains 0.00 → 0.83` (base → tuned).
pub fn summary(evaluation: &Evaluation) -> String {
    let scores = &evaluation.scores;
    scores
        .base
        .iter()
        .filter_map(|(metric, base)| {
            let tuned = scores.tuned.get(metric)?;
            Some(if metric == "loss" {
                format!("{metric} {base:.4} → {tuned:.4}")
            } else {
                format!("{metric} {base:.2} → {tuned:.2}")
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}
