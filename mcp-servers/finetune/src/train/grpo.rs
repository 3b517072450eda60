//! Group-relative policy optimization (GRPO: DeepSeekMath's, as DeepSeek-R1 was trained). For
//! each prompt a group of answers is sampled from the model through [`generate`]'s KV cache and
//! scored by the example's verifiable reward; an answer's advantage is its reward against the
//! group's mean, in units of the group's standard deviation. The loss raises the likelihood of
//! the answers above the mean and lowers the others', and a KL penalty (the `k3` estimator,
//! `e^(ref − logp) − (ref − logp) − 1` per token) holds the model near its reference.
//!
//! One update per batch of samples, so the importance ratio is 1 in value and its gradient the
//! log-likelihood's: TRL's `GRPOTrainer` with `num_iterations = 1` and its `grpo` loss (each
//! answer's mean over its tokens, then the group's mean).

use candle_core::{Device, Tensor};

use super::{
    Sample, TrainError,
    generate::{Sampling, generate},
    model::Model,
    next_token_logprobs,
    tokenize::{ChatTokenizer, Encoded},
};

/// GRPO's settings for a run.
pub(super) struct Grpo<'a> {
    /// Renders answers to text for the reward.
    pub tokenizer: &'a ChatTokenizer,
    /// Answers per prompt.
    pub generations: usize,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// The run's seed: with the step and the prompt's place in it, each answer's sampling seed.
    pub seed: u64,
}

/// A batch's GRPO loss, summed over its prompts (each the mean over its group), and the rewards
/// its answers got.
pub(super) struct GroupLoss {
    /// The loss, with a graph behind it; `None` when no prompt had anything to learn from.
    pub loss: Option<Tensor>,
    /// Every answer's reward.
    pub rewards: Vec<f64>,
}

/// Samples, scores and weighs the answers to `prompts`, the `first`th prompt onward of optimizer
/// step `step`.
pub(super) fn group_loss(
    grpo: &Grpo<'_>,
    model: &Model,
    reference: Option<&Model>,
    beta: f64,
    prompts: &[&Sample],
    step: u64,
    first: usize,
) -> Result<GroupLoss, TrainError> {
    let mut total: Option<Tensor> = None;
    let mut all_rewards = Vec::new();
    for (i, sample) in prompts.iter().enumerate() {
        let reward = sample
            .reward
            .as_ref()
            .ok_or_else(|| TrainError::Data("a grpo example without a reward".to_owned()))?;
        let prompt = &sample.main.ids;
        let mut answers = Vec::with_capacity(grpo.generations);
        for g in 0..grpo.generations {
            let sampling = Sampling {
                temperature: grpo.temperature,
                top_p: 1.0,
                seed: answer_seed(grpo.seed, step, first + i, g),
            };
            let answer = generate(
                model,
                grpo.tokenizer,
                prompt,
                grpo.max_tokens,
                sampling,
                true,
                &mut |_| true,
            )?;
            answers.push(answer);
        }
        let rewards: Vec<f64> = answers.iter().map(|a| reward.score(&a.text)).collect();
        all_rewards.extend(&rewards);
        let advantages = advantages(&rewards);
        // Nothing to learn: every answer as good as the others, and no pull toward the reference.
        if beta == 0.0 && advantages.iter().all(|&a| a == 0.0) {
            continue;
        }
        // The group's answers packed into one sequence (each attends to itself alone): one
        // forward and backward pass for the group. Each learned token weighs its answer's
        // advantage over its answer's length, so that each answer's loss is a mean over its
        // tokens, and the group's a mean over its answers.
        let mut packed = Encoded::default();
        let mut lengths = Vec::with_capacity(answers.len());
        let (mut policy_weights, mut kl_weights) = (Vec::new(), Vec::new());
        for (answer, advantage) in answers.iter().zip(&advantages) {
            // The answer, and the token that ended it: the model learns when to stop too.
            let learned: Vec<u32> = answer.ids.iter().chain(&answer.stop).copied().collect();
            if learned.is_empty() {
                continue;
            }
            let share = 1.0 / (learned.len() * grpo.generations) as f32;
            packed.ids.extend(prompt);
            packed
                .trained
                .extend(std::iter::repeat_n(false, prompt.len()));
            packed.ids.extend(&learned);
            packed
                .trained
                .extend(std::iter::repeat_n(true, learned.len()));
            lengths.push(prompt.len() + learned.len());
            // Weights of the targets: the token after each position.
            let skipped = if policy_weights.is_empty() { 1 } else { 0 };
            let padding = prompt.len() - skipped;
            policy_weights.extend(std::iter::repeat_n(0f32, padding));
            kl_weights.extend(std::iter::repeat_n(0f32, padding));
            policy_weights.extend(std::iter::repeat_n(
                -*advantage as f32 * share,
                learned.len(),
            ));
            kl_weights.extend(std::iter::repeat_n(share, learned.len()));
        }
        if lengths.is_empty() {
            continue;
        }
        let targets = packed.ids.len() - 1;
        let policy_weights = Tensor::from_vec(policy_weights, targets, &Device::Cpu)?;
        let kl_weights = Tensor::from_vec(kl_weights, targets, &Device::Cpu)?;
        let next = next_token_logprobs(model, &packed, &lengths, true)?;
        let reference = match reference {
            Some(reference) => next_token_logprobs(reference, &packed, &lengths, false)?,
            None => next_token_logprobs(model, &packed, &lengths, false)?,
        }
        .logprobs
        .detach();
        // The policy gradient: e^(logp − logp̸) is 1, its gradient ∇logp.
        let ratio = (&next.logprobs - next.logprobs.detach())?.exp()?;
        let delta = (reference - &next.logprobs)?;
        let kl = ((delta.exp()? - &delta)? - 1.0)?;
        let mut loss =
            ((ratio * policy_weights)?.sum_all()? + ((kl * kl_weights)?.sum_all()? * beta)?)?;
        if let Some(balance) = next.balance {
            loss = (loss + balance)?;
        }
        total = Some(match total {
            Some(sum) => (sum + loss)?,
            None => loss,
        });
    }
    Ok(GroupLoss {
        loss: total,
        rewards: all_rewards,
    })
}

/// Each reward against the group's: `(r − mean) / (std + 1e-4)`, the standard deviation the
/// sample's (n − 1), as TRL computes it.
fn advantages(rewards: &[f64]) -> Vec<f64> {
    let n = rewards.len() as f64;
    let mean = rewards.iter().sum::<f64>() / n;
    let variance = rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    rewards
        .iter()
        .map(|r| (r - mean) / (variance.sqrt() + 1e-4))
        .collect()
}

/// The sampling seed of answer `g` to the `prompt`th prompt of optimizer step `step`: the same
/// run draws the same answers, resumed or not.
fn answer_seed(seed: u64, step: u64, prompt: usize, g: usize) -> u64 {
    // SplitMix64's finalizer over the four, so that neighbouring steps do not share streams.
    let mut z = seed
        ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (prompt as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9)
        ^ (g as u64).wrapping_mul(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The mean reward of the model's greedy answers to (at most 64 of) `prompts`; `use_lora` false
/// answers as the base under a LoRA adapter.
pub(super) fn greedy_reward(
    grpo: &Grpo<'_>,
    model: &Model,
    prompts: &[Sample],
    use_lora: bool,
) -> Result<f64, TrainError> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for sample in prompts.iter().take(64) {
        let Some(reward) = &sample.reward else {
            continue;
        };
        let answer = generate(
            model,
            grpo.tokenizer,
            &sample.main.ids,
            grpo.max_tokens,
            Sampling::GREEDY,
            use_lora,
            &mut |_| true,
        )?;
        sum += reward.score(&answer.text);
        n += 1;
    }
    Ok(sum / n.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advantages_are_rewards_against_the_group() {
        let a = advantages(&[1.0, 0.0, 0.0, 0.0]);
        // mean 0.25, sample std 0.5.
        assert!(
            (a[0] - 1.5).abs() < 1e-3 && (a[1] + 0.5).abs() < 1e-3,
            "{a:?}"
        );
        assert_eq!(advantages(&[0.5, 0.5]), [0.0, 0.0]);
    }

    #[test]
    fn each_answer_has_a_seed_of_its_own() {
        let mut seeds: Vec<u64> = (0..4)
            .flat_map(|step| {
                (0..4).flat_map(move |p| (0..4).map(move |g| answer_seed(7, step, p, g)))
            })
            .collect();
        seeds.sort_unstable();
        seeds.dedup();
        assert_eq!(seeds.len(), 64);
    }
}
