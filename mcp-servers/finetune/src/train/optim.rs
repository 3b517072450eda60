//! AdamW with its state in the open: gradients summed over several batches before a step, and
//! the moments saved in checkpoints, so that a resumed run takes exactly the steps an unbroken
//! one would (candle-nn's AdamW keeps its moments private).
//!
//! The update is candle-nn's (and PyTorch's): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `θ ← θ(1 − ηλ) − η·m̂ / (√v̂ + ε)` with the bias-corrected moments `m̂`, `v̂`.

use std::{collections::HashMap, path::Path};

use candle_core::{DType, Device, Tensor, Var, backprop::GradStore};

/// AdamW over named variables.
pub struct AdamW {
    vars: Vec<(String, Var)>,
    first: Vec<Tensor>,
    second: Vec<Tensor>,
    /// Gradients summed since the last step, per variable.
    pending: Vec<Option<Tensor>>,
    /// Steps taken (for the bias correction).
    steps: u64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

/// The file a checkpoint keeps the moments in.
pub const FILE: &str = "optimizer.safetensors";

impl AdamW {
    /// Zero moments for `vars`, with PyTorch's defaults (β₁ 0.9, β₂ 0.999, ε 1e-8) and no
    /// weight decay.
    pub fn new(vars: &[(String, Var)]) -> candle_core::Result<Self> {
        let zeros = |var: &Var| Tensor::zeros(var.shape(), DType::F32, &Device::Cpu);
        Ok(Self {
            first: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            second: vars
                .iter()
                .map(|(_, v)| zeros(v))
                .collect::<Result<_, _>>()?,
            pending: vec![None; vars.len()],
            vars: vars.to_vec(),
            steps: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        })
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Adds one backward pass's gradients to those of the coming step.
    pub fn accumulate(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        for ((_, var), pending) in self.vars.iter().zip(&mut self.pending) {
            if let Some(grad) = grads.get(var.as_tensor()) {
                *pending = Some(match pending.take() {
                    Some(sum) => (sum + grad)?,
                    None => grad.clone(),
                });
            }
        }
        Ok(())
    }

    /// One update at learning rate `lr` from the gradients accumulated since the last one.
    pub fn step(&mut self, lr: f64) -> candle_core::Result<()> {
        self.steps += 1;
        let t = self.steps as i32;
        let scale_first = 1.0 / (1.0 - self.beta1.powi(t));
        let scale_second = 1.0 / (1.0 - self.beta2.powi(t));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(grad) = self.pending[i].take() else {
                continue;
            };
            let first = ((&self.first[i] * self.beta1)? + (&grad * (1.0 - self.beta1))?)?;
            let second = ((&self.second[i] * self.beta2)? + (grad.sqr()? * (1.0 - self.beta2))?)?;
            let adjusted =
                ((&first * scale_first)? / ((&second * scale_second)?.sqrt()? + self.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * self.weight_decay))?;
            var.set(&(decayed - (adjusted * lr)?)?)?;
            self.first[i] = first;
            self.second[i] = second;
        }
        Ok(())
    }

    /// Writes the moments into `dir`; the step count goes into the checkpoint's state.
    pub fn save(&self, dir: &Path) -> candle_core::Result<()> {
        let mut tensors = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            tensors.insert(format!("first.{name}"), self.first[i].clone());
            tensors.insert(format!("second.{name}"), self.second[i].clone());
        }
        candle_core::safetensors::save(&tensors, dir.join(FILE))
    }

    /// Reads the moments a checkpoint in `dir` saved after `steps` steps. `Ok(false)` when it
    /// has none (a checkpoint from before they were kept): the moments start from zero.
    pub fn load(&mut self, dir: &Path, steps: u64) -> candle_core::Result<bool> {
        let file = dir.join(FILE);
        if !file.is_file() {
            return Ok(false);
        }
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)?;
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (kind, slot) in [
                ("first", &mut self.first[i]),
                ("second", &mut self.second[i]),
            ] {
                let tensor = tensors.get(&format!("{kind}.{name}")).ok_or_else(|| {
                    candle_core::Error::Msg(format!("{}: no {kind}.{name}", file.display()))
                })?;
                if tensor.shape() != var.shape() {
                    return Err(candle_core::Error::Msg(format!(
                        "{}: {kind}.{name} has shape {:?}, the model's is {:?}",
                        file.display(),
                        tensor.shape(),
                        var.shape()
                    )));
                }
                *slot = tensor.clone();
            }
        }
        self.steps = steps;
        Ok(true)
    }
}
