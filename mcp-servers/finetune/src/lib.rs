//! `mcp-finetune`: the model-facing side of an LLM engineer's work, as MCP tools: check a
//! dataset, launch a training job (LoRA or full SFT, DPO, distillation, GGUF quantization) on a
//! backend (this machine, or Slurm), and follow its events, metrics and checkpoints.
//!
//! Jobs persist in SQLite under the data directory ([`store`]), so a restarted server knows
//! every job, reattaches to those still running and reports those that died.

#![warn(missing_docs)]

pub mod backend;
pub mod dataset;
pub mod generation;
pub mod job;
pub mod manager;
mod recipes;
pub mod reward;
pub mod server;
pub mod store;
pub mod train;
