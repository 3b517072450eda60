//! Answers from a model on the CPU: the prompt goes through the model once, then one token at a
//! time from the key/value cache. Greedy at temperature 0; otherwise sampled (nucleus, `top_p`)
//! from a generator seeded by the caller, so the same seed gives the same answer.

use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use super::{
    TrainError,
    model::{Cache, Model},
    tokenize::{ChatTokenizer, END_OF_TEXT},
};

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 takes the likeliest token; higher flattens the distribution sampled from.
    pub temperature: f64,
    /// Samples only among the likeliest tokens whose probabilities sum to this (1: all).
    pub top_p: f64,
    /// Seeds the sampling.
    pub seed: u64,
}

impl Sampling {
    /// The likeliest token every time.
    pub const GREEDY: Self = Self {
        temperature: 0.0,
        top_p: 1.0,
        seed: 0,
    };
}

/// Why generation ended: `stop` (the model ended its answer), `length` (`max_tokens` were
/// generated), `cancelled` (the caller stopped it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)] // Variant docs would turn its JSON Schema's `enum` into a `oneOf`.
pub enum Finish {
    Stop,
    Length,
    Cancelled,
}

impl Finish {
    /// The name answers use (`stop`, `length`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Its token ids (without the token that ended it).
    pub ids: Vec<u32>,
    /// Its text.
    pub text: String,
    /// Why it ended.
    pub finish: Finish,
    /// The token that ended it, under [`Finish::Stop`].
    pub stop: Option<u32>,
}

/// The tokens that end an answer: the template's end of turn, the model's end of sequence, and
/// `<|endoftext|>` where the vocabulary has it.
pub fn stop_tokens(model: &Model, tokenizer: &ChatTokenizer) -> Vec<u32> {
    let mut stops: Vec<u32> = [tokenizer.end, tokenizer.tokenizer.token_to_id(END_OF_TEXT)]
        .into_iter()
        .flatten()
        .chain(model.config.eos_ids())
        .collect();
    stops.sort_unstable();
    stops.dedup();
    stops
}

/// Generates up to `max_tokens` after `prompt`; `on_token` hears the count after each token and
/// returns false to stop. `use_lora` false answers as the base model under a LoRA adapter.
pub fn generate(
    model: &Model,
    tokenizer: &ChatTokenizer,
    prompt: &[u32],
    max_tokens: usize,
    sampling: Sampling,
    use_lora: bool,
    on_token: &mut dyn FnMut(usize) -> bool,
) -> Result<Generated, TrainError> {
    if prompt.is_empty() {
        return Err(TrainError::Data("the prompt is empty".to_owned()));
    }
    let room = model
        .config
        .max_position_embeddings
        .saturating_sub(prompt.len());
    if room == 0 {
        return Err(TrainError::Data(format!(
            "the prompt has {} tokens, and the model's context is {}",
            prompt.len(),
            model.config.max_position_embeddings
        )));
    }
    let stops = stop_tokens(model, tokenizer);
    let mut rng = rand::rngs::StdRng::seed_from_u64(sampling.seed);
    let mut cache = Cache::new();
    let mut logits = model.forward_cached(prompt, &mut cache, use_lora)?;
    let mut ids = Vec::new();
    let mut finish = Finish::Length;
    let mut stop = None;
    for _ in 0..max_tokens.min(room) {
        let last: Vec<f32> = logits.get(logits.dim(0)? - 1)?.to_vec1()?;
        let next = choose(&last, sampling, &mut rng);
        if stops.contains(&next) {
            finish = Finish::Stop;
            stop = Some(next);
            break;
        }
        ids.push(next);
        if !on_token(ids.len()) {
            finish = Finish::Cancelled;
            break;
        }
        if ids.len() == max_tokens.min(room) {
            break;
        }
        logits = model.forward_cached(&[next], &mut cache, use_lora)?;
    }
    let text = tokenizer
        .tokenizer
        .decode(&ids, true)
        .map_err(|error| TrainError::Data(format!("decoding the answer: {error}")))?;
    Ok(Generated {
        ids,
        text,
        finish,
        stop,
    })
}

/// The next token from one position's logits.
pub fn choose(logits: &[f32], sampling: Sampling, rng: &mut rand::rngs::StdRng) -> u32 {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i as u32)
    };
    if sampling.temperature <= 0.0 {
        return argmax();
    }
    let scaled: Vec<f64> = logits
        .iter()
        .map(|&l| f64::from(l) / sampling.temperature)
        .collect();
    let top = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut probs: Vec<(u32, f64)> = scaled
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, (l - top).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    // The nucleus: the likeliest tokens until their mass reaches top_p.
    let mut kept = 0;
    let mut mass = 0.0;
    for (_, p) in &probs {
        kept += 1;
        mass += p / total;
        if mass >= sampling.top_p {
            break;
        }
    }
    let probs = &probs[..kept];
    let kept_mass: f64 = probs.iter().map(|p| p.1).sum();
    let mut draw = rng.random::<f64>() * kept_mass;
    for (id, p) in probs {
        if draw < *p {
            return *id;
        }
        draw -= p;
    }
    probs.last().map_or_else(argmax, |p| p.0)
}
