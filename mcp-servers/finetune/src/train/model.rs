//! A llama-family decoder (Llama, SmolLM, Qwen2-style without biases, Mistral without sliding
//! windows) written for training on the CPU: every operation is one candle differentiates (no
//! fused kernels without a backward pass), f32 throughout, LoRA adapters on the attention
//! projections.
//!
//! Weights come from a Hugging Face directory (`config.json` + `*.safetensors`) or a GGUF file,
//! dequantized to f32 (candle's quantized matmul has given wrong output on such models, so
//! training never runs on quantized weights). Internally the weights are in Hugging Face's
//! layout and naming; GGUF's query/key rows, which llama.cpp permutes for its interleaved
//! rotary embedding, are put back on load and permuted again on export.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use candle_core::{D, DType, Device, Tensor, Var, quantized::gguf_file};
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// A model operation's result.
pub type Result<T> = std::result::Result<T, ModelError>;

/// Why a model could not be loaded, built or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A tensor operation failed.
    #[error("{0}")]
    Candle(#[from] candle_core::Error),
    /// A file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The model is not one this trainer can handle (the message says why).
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> ModelError {
    ModelError::Invalid(message.into())
}

/// The shape of the model (Hugging Face `config.json` names). Keys it does not use are kept
/// (`extra`) and written back with the merged model, so Hugging Face's loaders read it as they
/// read the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Tokens in the vocabulary.
    pub vocab_size: usize,
    /// Width of the hidden state.
    pub hidden_size: usize,
    /// Width of the MLP's inner layer.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention); all heads when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head, when it is not `hidden_size / num_attention_heads` (Qwen3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// RMSNorm's epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary embeddings' base (transformers 5 writes it inside `rope_parameters`).
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Longest context it was trained for.
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    /// Whether the output layer shares the embedding's weights.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token(s): one id or a list (Llama 3.1).
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// What Hugging Face's loaders look for; written out so a merged model loads there too.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Model classes Hugging Face's loaders try.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// Rotary scaling, as transformers 4 writes it (`llama3` and `linear` are implemented;
    /// others are refused, not trained wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// Rotary settings, as transformers 5 writes them (`rope_theta`, `rope_type`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_parameters: Option<serde_json::Value>,
    /// Qwen2's sliding-window attention (refused when on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_sliding_window: Option<bool>,
    /// Biases on the MLP's projections (refused when on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlp_bias: Option<bool>,
    /// Everything else the base's config.json says.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn default_model_type() -> String {
    "llama".to_owned()
}
fn default_architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".to_owned()]
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    2048
}

/// A mixture of experts' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moe {
    /// Experts per routed layer (0: not a mixture).
    pub experts: usize,
    /// Experts each token goes to.
    pub top_k: usize,
    /// Whether the chosen experts' weights are renormalised to sum to 1.
    pub normalize: bool,
    /// The load-balancing loss's weight in training.
    pub aux_coefficient: f64,
}

/// How rotary embeddings' frequencies are scaled for a longer context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// As trained.
    None,
    /// Every frequency divided by a factor.
    Linear(f64),
    /// Llama 3.1's: low frequencies divided by `factor`, high ones kept, a smooth blend between.
    Llama3 {
        /// Divides the low frequencies.
        factor: f64,
        /// Wavelengths above `original / low` are low frequencies.
        low: f64,
        /// Wavelengths below `original / high` are high frequencies.
        high: f64,
        /// The context the model was first trained for.
        original: f64,
    },
}

impl RopeScaling {
    /// Scales the inverse frequencies `1 / θ^(2i/d)` as transformers does.
    pub fn apply(self, inv_freq: &mut [f64]) {
        match self {
            Self::None => {}
            Self::Linear(factor) => inv_freq.iter_mut().for_each(|f| *f /= factor),
            Self::Llama3 {
                factor,
                low,
                high,
                original,
            } => {
                let (low_wavelen, high_wavelen) = (original / low, original / high);
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f64::consts::PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (original / wavelen - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
    }
}

impl Config {
    /// Key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The mixture of experts, when the model is one (Qwen3-MoE's keys; `experts` 0 when not).
    pub fn moe(&self) -> Moe {
        Moe {
            experts: self
                .setting("num_experts")
                .or(self.setting("num_local_experts"))
                .unwrap_or(0),
            top_k: self.setting("num_experts_per_tok").unwrap_or(0),
            normalize: self.setting("norm_topk_prob").unwrap_or(false),
            aux_coefficient: self.setting("router_aux_loss_coef").unwrap_or(0.001),
        }
    }

    /// Whether layer `i` routes to experts (Qwen3-MoE: every `decoder_sparse_step`-th layer
    /// that is not in `mlp_only_layers`).
    pub fn sparse_layer(&self, i: usize) -> bool {
        let step: usize = self.setting("decoder_sparse_step").unwrap_or(1).max(1);
        let dense = self
            .setting::<Vec<usize>>("mlp_only_layers")
            .is_some_and(|layers| layers.contains(&i));
        self.moe().experts > 0 && !dense && (i + 1).is_multiple_of(step)
    }

    /// A key of the config this struct does not name, when it has the type asked for.
    fn setting<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_value(self.extra.get(key)?.clone()).ok()
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The end-of-sequence ids (one, or Llama 3.1's several).
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => {
                n.as_u64().map(|n| n as u32).into_iter().collect()
            }
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .filter_map(|id| id.as_u64().map(|n| n as u32))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The rotary settings, wherever the config keeps them: transformers 5's
    /// `rope_parameters`, or 4's `rope_theta` and `rope_scaling`.
    pub fn rope(&self) -> Result<(f64, RopeScaling)> {
        let parameters = self
            .rope_parameters
            .as_ref()
            .filter(|v| v.is_object())
            .or(self.rope_scaling.as_ref().filter(|v| v.is_object()));
        let theta = self
            .rope_parameters
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(self.rope_theta);
        let Some(parameters) = parameters else {
            return Ok((theta, RopeScaling::None));
        };
        let number = |key: &str| -> Result<f64> {
            parameters
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| invalid(format!("rope scaling {parameters} has no {key}")))
        };
        let kind = parameters
            .get("rope_type")
            .or_else(|| parameters.get("type"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("default");
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear(number("factor")?),
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low: number("low_freq_factor")?,
                high: number("high_freq_factor")?,
                original: number("original_max_position_embeddings")?,
            },
            other => {
                return Err(invalid(format!(
                    "the model uses {other:?} rotary scaling, which the built-in trainer does not implement (llama3 and linear are); use the trl trainer for it"
                )));
            }
        };
        Ok((theta, scaling))
    }

    /// Why GGUF export cannot write this model yet, if it cannot: only plain llama models are
    /// laid out for llama.cpp here (Qwen's tensors and Llama 3.1's rope_freqs are not).
    pub fn gguf_unsupported(&self) -> Option<String> {
        let scaled = !matches!(self.rope(), Ok((_, RopeScaling::None)));
        let extras = self.setting("attention_bias") == Some(true);
        let head = self
            .head_dim
            .is_some_and(|d| d * self.num_attention_heads != self.hidden_size);
        (self.model_type != "llama" || scaled || extras || head).then(|| {
            format!(
                "GGUF export of {} models{} is not implemented yet (plain llama models are); the merged model directory is what to convert with llama.cpp's convert_hf_to_gguf.py",
                self.model_type,
                if scaled { " with rotary scaling" } else { "" }
            )
        })
    }

    fn check(&self) -> Result<()> {
        self.rope()?;
        let moe = self.moe();
        if moe.experts > 0 && !(1..=moe.experts).contains(&moe.top_k) {
            return Err(invalid(format!(
                "a mixture of {} experts needs num_experts_per_tok between 1 and that, not {}",
                moe.experts, moe.top_k
            )));
        }
        if self.use_sliding_window == Some(true) {
            return Err(invalid(
                "the model uses sliding-window attention, which the built-in trainer does not implement; use the trl trainer for it",
            ));
        }
        if self.mlp_bias == Some(true) {
            return Err(invalid(
                "the model has bias terms on its MLP, which the built-in trainer does not implement; use the trl trainer for it",
            ));
        }
        let head_dim_fits = match self.head_dim {
            Some(d) => d > 0,
            None => {
                self.num_attention_heads > 0
                    && self.hidden_size.is_multiple_of(self.num_attention_heads)
            }
        };
        if self.num_attention_heads == 0
            || !head_dim_fits
            || !self.head_dim().is_multiple_of(2)
            || self.kv_heads() == 0
            || !self.num_attention_heads.is_multiple_of(self.kv_heads())
            || self.num_hidden_layers == 0
            || self.vocab_size == 0
        {
            return Err(invalid(format!(
                "unsupported model shape: {self:?} (heads must divide the hidden size into an even head size, and key/value heads must divide the heads)"
            )));
        }
        Ok(())
    }
}

/// Where the base weights were read from (it decides the export format's defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A Hugging Face directory (safetensors and `config.json`).
    HuggingFace,
    /// A GGUF file.
    Gguf,
}

/// Base weights (HF names) and what they came from.
pub struct Weights {
    /// The model's shape.
    pub config: Config,
    /// The weights, by Hugging Face names.
    pub tensors: HashMap<String, Tensor>,
    /// Where they were read from.
    pub source: Source,
    /// The GGUF file's metadata, kept for export (tokenizer, chat template).
    pub gguf_metadata: Option<HashMap<String, gguf_file::Value>>,
}

/// The config of a Hugging Face directory, without its weights (`None` for a GGUF file).
pub fn read_config(path: &Path) -> Result<Option<Config>> {
    if !path.is_dir() {
        return Ok(None);
    }
    hf_config(path).map(Some)
}

/// A Hugging Face directory's `config.json`, checked.
fn hf_config(dir: &Path) -> Result<Config> {
    let file = dir.join("config.json");
    let text = std::fs::read_to_string(&file).map_err(|error| ModelError::Io {
        path: file.clone(),
        error,
    })?;
    let config: Config = serde_json::from_str(&text)
        .map_err(|error| invalid(format!("{}: {error}", file.display())))?;
    config.check()?;
    Ok(config)
}

/// Loads a model from a directory (HF) or a `.gguf` file.
pub fn load(path: &Path) -> Result<Weights> {
    if path.is_dir() {
        load_hf(path)
    } else if path.extension().is_some_and(|e| e == "gguf") {
        load_gguf(path)
    } else if path.exists() {
        Err(invalid(format!(
            "{} is neither a model directory (config.json + *.safetensors) nor a .gguf file",
            path.display()
        )))
    } else {
        Err(invalid(format!("no model at {}", path.display())))
    }
}

fn load_hf(dir: &Path) -> Result<Weights> {
    let config = hf_config(dir)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| ModelError::Io {
            path: dir.to_owned(),
            error,
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(invalid(format!("no *.safetensors in {}", dir.display())));
    }
    let mut tensors = HashMap::new();
    for file in files {
        for (name, tensor) in candle_core::safetensors::load(&file, &Device::Cpu)? {
            let projection_bias = ["q_proj.bias", "k_proj.bias", "v_proj.bias"]
                .iter()
                .any(|b| name.ends_with(b));
            if name.ends_with(".bias") && !projection_bias {
                return Err(invalid(format!(
                    "{}: the model has a bias term the built-in trainer does not implement ({name}; it has those of the query, key and value projections); use the trl trainer for it",
                    dir.display()
                )));
            }
            tensors.insert(name, tensor.to_dtype(DType::F32)?);
        }
    }
    Ok(Weights {
        config,
        tensors,
        source: Source::HuggingFace,
        gguf_metadata: None,
    })
}

fn load_gguf(path: &Path) -> Result<Weights> {
    let mut file = std::fs::File::open(path).map_err(|error| ModelError::Io {
        path: path.to_owned(),
        error,
    })?;
    let content = gguf_file::Content::read(&mut file)
        .map_err(|error| invalid(format!("{}: not a GGUF file: {error}", path.display())))?;
    let meta = &content.metadata;
    let arch = meta
        .get("general.architecture")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    if arch != "llama" {
        return Err(invalid(format!(
            "{}: architecture {arch:?}; only llama-family GGUF models are supported",
            path.display()
        )));
    }
    let get = |key: &str| -> Result<&gguf_file::Value> {
        meta.get(&format!("llama.{key}")).ok_or_else(|| {
            invalid(format!(
                "{}: no llama.{key} in the metadata",
                path.display()
            ))
        })
    };
    let tokens = meta
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.to_vec().ok())
        .map(Vec::len);
    let heads = get("attention.head_count")?.to_u32()? as usize;
    let config = Config {
        vocab_size: tokens.unwrap_or(0),
        hidden_size: get("embedding_length")?.to_u32()? as usize,
        intermediate_size: get("feed_forward_length")?.to_u32()? as usize,
        num_hidden_layers: get("block_count")?.to_u32()? as usize,
        num_attention_heads: heads,
        num_key_value_heads: Some(
            get("attention.head_count_kv")
                .and_then(|v| Ok(v.to_u32()?))
                .map(|v| v as usize)
                .unwrap_or(heads),
        ),
        rms_norm_eps: get("attention.layer_norm_rms_epsilon")
            .and_then(|v| Ok(v.to_f32()?))
            .map(f64::from)
            .unwrap_or(1e-5),
        rope_theta: get("rope.freq_base")
            .and_then(|v| Ok(v.to_f32()?))
            .map(f64::from)
            .unwrap_or(10_000.0),
        max_position_embeddings: get("context_length")
            .and_then(|v| Ok(v.to_u32()?))
            .map(|v| v as usize)
            .unwrap_or(2048),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        bos_token_id: meta
            .get("tokenizer.ggml.bos_token_id")
            .and_then(|v| v.to_u32().ok()),
        eos_token_id: meta
            .get("tokenizer.ggml.eos_token_id")
            .and_then(|v| v.to_u32().ok())
            .map(serde_json::Value::from),
        model_type: default_model_type(),
        architectures: default_architectures(),
        head_dim: None,
        rope_scaling: None,
        rope_parameters: None,
        use_sliding_window: None,
        mlp_bias: None,
        extra: serde_json::Map::new(),
    };
    if content.tensor_infos.contains_key("rope_freqs.weight") {
        return Err(invalid(format!(
            "{}: the GGUF file scales its rotary embedding (rope_freqs, Llama 3.1+), which the built-in trainer reads only from a Hugging Face directory: train from that",
            path.display()
        )));
    }
    let mut tensors = HashMap::new();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    for gguf_name in names {
        let Some(name) = hf_name(&gguf_name) else {
            continue;
        };
        let tensor = content
            .tensor(&mut file, &gguf_name, &Device::Cpu)?
            .dequantize(&Device::Cpu)?;
        let tensor = if name.ends_with("q_proj.weight") {
            unpermute(&tensor, config.num_attention_heads)?
        } else if name.ends_with("k_proj.weight") {
            unpermute(&tensor, config.kv_heads())?
        } else {
            tensor
        };
        tensors.insert(name, tensor);
    }
    let mut config = config;
    if config.vocab_size == 0 {
        config.vocab_size = tensors
            .get("model.embed_tokens.weight")
            .map(|t| t.dims()[0])
            .unwrap_or(0);
    }
    config.check()?;
    Ok(Weights {
        config,
        tensors,
        source: Source::Gguf,
        gguf_metadata: Some(content.metadata),
    })
}

/// GGUF tensor name → Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".to_owned(),
        "output_norm.weight" => "model.norm.weight".to_owned(),
        "output.weight" => "lm_head.weight".to_owned(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (layer, part) = rest.split_once('.')?;
            let part = match part {
                "attn_norm.weight" => "input_layernorm.weight",
                "attn_q.weight" => "self_attn.q_proj.weight",
                "attn_k.weight" => "self_attn.k_proj.weight",
                "attn_v.weight" => "self_attn.v_proj.weight",
                "attn_output.weight" => "self_attn.o_proj.weight",
                "ffn_norm.weight" => "post_attention_layernorm.weight",
                "ffn_gate.weight" => "mlp.gate_proj.weight",
                "ffn_up.weight" => "mlp.up_proj.weight",
                "ffn_down.weight" => "mlp.down_proj.weight",
                _ => return None,
            };
            format!("model.layers.{layer}.{part}")
        }
    })
}

/// Hugging Face name → GGUF name (for export).
pub fn gguf_name(hf: &str) -> Option<String> {
    Some(match hf {
        "model.embed_tokens.weight" => "token_embd.weight".to_owned(),
        "model.norm.weight" => "output_norm.weight".to_owned(),
        "lm_head.weight" => "output.weight".to_owned(),
        _ => {
            let rest = hf.strip_prefix("model.layers.")?;
            let (layer, part) = rest.split_once('.')?;
            let part = match part {
                "input_layernorm.weight" => "attn_norm.weight",
                "self_attn.q_proj.weight" => "attn_q.weight",
                "self_attn.k_proj.weight" => "attn_k.weight",
                "self_attn.v_proj.weight" => "attn_v.weight",
                "self_attn.o_proj.weight" => "attn_output.weight",
                "post_attention_layernorm.weight" => "ffn_norm.weight",
                "mlp.gate_proj.weight" => "ffn_gate.weight",
                "mlp.up_proj.weight" => "ffn_up.weight",
                "mlp.down_proj.weight" => "ffn_down.weight",
                _ => return None,
            };
            format!("blk.{layer}.{part}")
        }
    })
}

/// llama.cpp's permutation of query/key rows (HF's half-split rotary layout → interleaved).
pub fn permute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// The inverse of [`permute`].
pub fn unpermute(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    Ok(w.reshape((heads, rows / heads / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// A projection `y = x Wᵀ`, with a LoRA adapter `+ s·(x Aᵀ) Bᵀ` when one is attached.
pub struct Linear {
    /// The base weight, `[out, in]`.
    pub weight: Tensor,
    /// The bias, `[out]`, when the projection has one (Qwen2's query, key and value).
    pub bias: Option<Tensor>,
    /// The adapter, when one is attached.
    pub lora: Option<Lora>,
}

/// A LoRA adapter: `B A`, scaled.
pub struct Lora {
    /// `[rank, in]`, random at the start.
    pub a: Var,
    /// `[out, rank]`, zero at the start, so training starts from the base model exactly.
    pub b: Var,
    /// The scale (alpha / rank).
    pub scale: f64,
}

impl Linear {
    fn forward(&self, x: &Tensor, use_lora: bool) -> Result<Tensor> {
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        match &self.lora {
            Some(lora) if use_lora => {
                let delta = x
                    .matmul(&lora.a.as_tensor().t()?)?
                    .matmul(&lora.b.as_tensor().t()?)?;
                Ok((y + (delta * lora.scale)?)?)
            }
            _ => Ok(y),
        }
    }

    /// `W + s·B A`: the adapter folded into the weight.
    pub fn merged(&self) -> Result<Tensor> {
        match &self.lora {
            Some(lora) => {
                let delta = lora.b.as_tensor().matmul(lora.a.as_tensor())?;
                Ok((&self.weight + (delta * lora.scale)?)?)
            }
            None => Ok(self.weight.clone()),
        }
    }
}

struct Layer {
    input_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Qwen3's RMSNorm of each query and key head, before the rotary embedding.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_norm: Tensor,
    feed_forward: FeedForward,
}

/// A SwiGLU MLP: `down(silu(gate(x)) · up(x))`.
struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor, use_lora: bool) -> Result<Tensor> {
        let gate = self.gate.forward(x, use_lora)?.silu()?;
        self.down
            .forward(&(gate * self.up.forward(x, use_lora)?)?, use_lora)
    }
}

/// A layer's feed-forward part: one MLP, or a mixture of experts (Qwen3-MoE) whose router
/// sends each token to its top-k experts, their outputs weighed by the router.
enum FeedForward {
    Dense(Mlp),
    Experts {
        /// `[experts, hidden]`.
        router: Tensor,
        experts: Vec<Mlp>,
    },
}

/// What the load-balancing loss needs from every routed layer (Switch/Mixtral's, as
/// transformers computes it over all layers' tokens at once).
#[derive(Default)]
struct Routing {
    /// Router probabilities summed over tokens, `[experts]`.
    probabilities: Option<Tensor>,
    /// How often each (rank, expert) was chosen, `[top_k · experts]`.
    chosen: Vec<f32>,
    /// Tokens routed (per layer, added up).
    tokens: usize,
}

/// The projections that get adapters: every linear layer of the blocks (QLoRA's finding: adapters
/// on all of them match full fine-tuning far better than on the attention alone).
pub const LORA_TARGETS: &[&str] = &[
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A Llama-architecture model, trainable on the CPU with candle.
pub struct Model {
    /// Its shape.
    pub config: Config,
    /// The rotary base and scaling, read from the config once.
    rope: (f64, RopeScaling),
    /// The mixture of experts' settings, read from the config once.
    moe: Moe,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    /// What the optimizer updates: LoRA matrices, or every weight in full fine-tuning.
    trainable: Vec<(String, Var)>,
    /// Where its base weights were read from.
    pub source: Source,
    /// The GGUF file's metadata, when it came from one.
    pub gguf_metadata: Option<HashMap<String, gguf_file::Value>>,
}

/// How the weights are trained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tuning {
    /// Adapters of this rank and alpha on every linear projection of the blocks ([`LORA_TARGETS`]).
    Lora {
        /// The adapters' rank.
        rank: usize,
        /// Their alpha.
        alpha: f64,
        /// Seeds the adapters' random start.
        seed: u64,
    },
    /// Every weight (`lora_rank` 0).
    Full,
    /// Nothing (a frozen teacher or reference).
    Frozen,
}

impl Model {
    /// Builds the model from `weights`, with adapters or trainable weights as `tuning` says.
    pub fn new(weights: Weights, tuning: Tuning) -> Result<Self> {
        let Weights {
            config,
            mut tensors,
            source,
            gguf_metadata,
        } = weights;
        let mut trainable = Vec::new();
        let present: std::collections::HashSet<String> = tensors.keys().cloned().collect();
        let mut take = |name: &str| -> Result<Tensor> {
            let tensor = tensors
                .remove(name)
                .ok_or_else(|| invalid(format!("the model has no tensor {name}")))?;
            if tuning == Tuning::Full {
                let var = Var::from_tensor(&tensor)?;
                let tensor = var.as_tensor().clone();
                trainable.push((name.to_owned(), var));
                Ok(tensor)
            } else {
                Ok(tensor)
            }
        };
        let embed = take("model.embed_tokens.weight")?;
        let mut raw_layers = Vec::new();
        // Per layer: the router (a mixture of experts' layers) and the MLP's projections, one
        // set, or one per expert.
        let mut raw_mlps: Vec<(Option<Tensor>, Vec<[Tensor; 3]>)> = Vec::new();
        // Per layer: the query, key and value biases and the query and key norms, where the
        // model has them.
        let mut optional: Vec<[Option<Tensor>; 5]> = Vec::new();
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut extra = [
                "self_attn.q_proj.bias",
                "self_attn.k_proj.bias",
                "self_attn.v_proj.bias",
                "self_attn.q_norm.weight",
                "self_attn.k_norm.weight",
            ]
            .map(|part| format!("{p}.{part}"))
            .map(|name| present.contains(&name).then_some(name));
            let mut found = [None, None, None, None, None];
            for (slot, name) in found.iter_mut().zip(extra.iter_mut()) {
                if let Some(name) = name.take() {
                    *slot = Some(take(&name)?);
                }
            }
            optional.push(found);
            raw_layers.push([
                take(&format!("{p}.input_layernorm.weight"))?,
                take(&format!("{p}.self_attn.q_proj.weight"))?,
                take(&format!("{p}.self_attn.k_proj.weight"))?,
                take(&format!("{p}.self_attn.v_proj.weight"))?,
                take(&format!("{p}.self_attn.o_proj.weight"))?,
                take(&format!("{p}.post_attention_layernorm.weight"))?,
            ]);
            let mut projections = |prefix: &str| -> Result<[Tensor; 3]> {
                Ok([
                    take(&format!("{prefix}.gate_proj.weight"))?,
                    take(&format!("{prefix}.up_proj.weight"))?,
                    take(&format!("{prefix}.down_proj.weight"))?,
                ])
            };
            raw_mlps.push(if config.sparse_layer(i) {
                let experts = (0..config.moe().experts)
                    .map(|e| projections(&format!("{p}.mlp.experts.{e}")))
                    .collect::<Result<Vec<_>>>()?;
                (Some(take(&format!("{p}.mlp.gate.weight"))?), experts)
            } else {
                (None, vec![projections(&format!("{p}.mlp"))?])
            });
        }
        let norm = take("model.norm.weight")?;
        let lm_head = if config.tie_word_embeddings {
            embed.clone()
        } else {
            match take("lm_head.weight") {
                Ok(head) => head,
                // Some checkpoints tie without saying so.
                Err(_) => embed.clone(),
            }
        };
        let mut layers = Vec::new();
        let mut rng = match tuning {
            Tuning::Lora { seed, .. } => rand::rngs::StdRng::seed_from_u64(seed),
            _ => rand::rngs::StdRng::seed_from_u64(0),
        };
        for (i, (([input_norm, q, k, v, o, post_norm], extra), (router, mlps))) in raw_layers
            .into_iter()
            .zip(optional)
            .zip(raw_mlps)
            .enumerate()
        {
            let [q_bias, k_bias, v_bias, q_norm, k_norm] = extra;
            // `module`: the projection's path in the layer (`self_attn.q_proj`,
            // `mlp.experts.3.up_proj`), which names its adapter as PEFT does.
            let mut linear =
                |weight: Tensor, bias: Option<Tensor>, module: &str| -> Result<Linear> {
                    let target = module.rsplit('.').next().unwrap_or(module);
                    let lora = match tuning {
                        Tuning::Lora { rank, alpha, .. } if LORA_TARGETS.contains(&target) => {
                            let (out, inp) = weight.dims2()?;
                            let a = Var::from_tensor(&normal(
                                &mut rng,
                                (1.0 / inp as f64).sqrt() as f32,
                                rank,
                                inp,
                            )?)?;
                            let b = Var::zeros((out, rank), DType::F32, &Device::Cpu)?;
                            let name = format!("model.layers.{i}.{module}");
                            trainable.push((format!("{name}.lora_A.weight"), a.clone()));
                            trainable.push((format!("{name}.lora_B.weight"), b.clone()));
                            Some(Lora {
                                a,
                                b,
                                scale: alpha / rank as f64,
                            })
                        }
                        _ => None,
                    };
                    Ok(Linear { weight, bias, lora })
                };
            let q = linear(q, q_bias, "self_attn.q_proj")?;
            let k = linear(k, k_bias, "self_attn.k_proj")?;
            let v = linear(v, v_bias, "self_attn.v_proj")?;
            let o = linear(o, None, "self_attn.o_proj")?;
            let mut mlps = mlps
                .into_iter()
                .enumerate()
                .map(|(e, [gate, up, down])| {
                    let prefix = match router {
                        Some(_) => format!("mlp.experts.{e}"),
                        None => "mlp".to_owned(),
                    };
                    Ok(Mlp {
                        gate: linear(gate, None, &format!("{prefix}.gate_proj"))?,
                        up: linear(up, None, &format!("{prefix}.up_proj"))?,
                        down: linear(down, None, &format!("{prefix}.down_proj"))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let feed_forward = match router {
                Some(router) => FeedForward::Experts {
                    router,
                    experts: mlps,
                },
                None => FeedForward::Dense(mlps.remove(0)),
            };
            layers.push(Layer {
                input_norm,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                post_norm,
                feed_forward,
            });
        }
        Ok(Self {
            rope: config.rope()?,
            moe: config.moe(),
            config,
            embed,
            layers,
            norm,
            lm_head,
            trainable,
            source,
            gguf_metadata,
        })
    }

    /// The variables the optimizer updates, with their names (PEFT's names for adapters).
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.trainable
    }

    /// Number of trainable parameters.
    pub fn trainable_count(&self) -> usize {
        self.trainable.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Sets trainable variables from a checkpoint (by name); names it lacks are an error.
    pub fn load_trainable(&self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in &self.trainable {
            let tensor = tensors
                .get(name)
                .ok_or_else(|| invalid(format!("the checkpoint has no {name}")))?;
            var.set(tensor)?;
        }
        Ok(())
    }

    /// Logits `[len, vocab]` for a sequence of token ids; `use_lora` false gives the base model
    /// (DPO's reference).
    pub fn forward(&self, ids: &[u32], use_lora: bool) -> Result<Tensor> {
        self.forward_packed(ids, &[ids.len()], use_lora)
    }

    /// Logits `[len, vocab]` for several sequences packed into one: `lengths` are theirs, in
    /// order, summing to `ids.len()`. Each attends only to itself and starts at position 0, so
    /// its logits are those it has alone.
    pub fn forward_packed(&self, ids: &[u32], lengths: &[usize], use_lora: bool) -> Result<Tensor> {
        Ok(self.forward_with_balance(ids, lengths, use_lora)?.0)
    }

    /// [`Model::forward_packed`], and for a mixture of experts the load-balancing loss over
    /// its routed layers (already weighed by `router_aux_loss_coef`), for training.
    pub fn forward_with_balance(
        &self,
        ids: &[u32],
        lengths: &[usize],
        use_lora: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let len = ids.len();
        if len == 0 {
            return Err(invalid("empty sequence"));
        }
        if lengths.iter().sum::<usize>() != len || lengths.contains(&0) {
            return Err(invalid(format!(
                "packed lengths {lengths:?} do not cover {len} tokens"
            )));
        }
        let positions: Vec<u32> = lengths.iter().flat_map(|&n| 0..n as u32).collect();
        let mask = causal_mask(lengths, 0)?;
        self.layers_forward(ids, &positions, Some(&mask), None, use_lora)
    }

    /// Logits `[ids.len(), vocab]` for tokens that follow those already in `cache` (none at the
    /// start), whose keys and values are added to it: generation's prompt, then one token at a
    /// time, without computing the past again.
    pub fn forward_cached(&self, ids: &[u32], cache: &mut Cache, use_lora: bool) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(invalid("empty sequence"));
        }
        let past = cache.len;
        if past + ids.len() > self.config.max_position_embeddings {
            return Err(invalid(format!(
                "{} tokens go past the model's context of {}",
                past + ids.len(),
                self.config.max_position_embeddings
            )));
        }
        if cache.layers.len() != self.layers.len() {
            cache.layers = vec![None; self.layers.len()];
        }
        let positions: Vec<u32> = (past..past + ids.len()).map(|p| p as u32).collect();
        // One new token sees everything: no mask.
        let mask = (ids.len() > 1)
            .then(|| causal_mask(&[ids.len()], past))
            .transpose()?;
        let (logits, _) =
            self.layers_forward(ids, &positions, mask.as_ref(), Some(cache), use_lora)?;
        cache.len += ids.len();
        Ok(logits)
    }

    /// The decoder over `ids` at `positions`, attention limited by `mask` (`[len, past + len]`),
    /// after the keys and values in `cache` when there is one.
    fn layers_forward(
        &self,
        ids: &[u32],
        positions: &[u32],
        mask: Option<&Tensor>,
        mut cache: Option<&mut Cache>,
        use_lora: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let len = ids.len();
        let device = Device::Cpu;
        let c = &self.config;
        let (heads, kv_heads, head_dim) = (c.num_attention_heads, c.kv_heads(), c.head_dim());
        let ids = Tensor::new(ids, &device)?;
        let mut x = self.embed.index_select(&ids, 0)?;
        let (theta, scaling) = self.rope;
        let (cos, sin) = rope_tables(positions, head_dim, theta, scaling)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut routing = Routing::default();
        for (i, layer) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &layer.input_norm, c.rms_norm_eps)?;
            let q = layer
                .q
                .forward(&h, use_lora)?
                .reshape((len, heads, head_dim))?
                .transpose(0, 1)?;
            let k = layer
                .k
                .forward(&h, use_lora)?
                .reshape((len, kv_heads, head_dim))?
                .transpose(0, 1)?;
            let v = layer
                .v
                .forward(&h, use_lora)?
                .reshape((len, kv_heads, head_dim))?
                .transpose(0, 1)?
                .contiguous()?;
            let (mut q, mut k) = (q.contiguous()?, k.contiguous()?);
            if let Some(norm) = &layer.q_norm {
                q = rms_norm(&q, norm, c.rms_norm_eps)?;
            }
            if let Some(norm) = &layer.k_norm {
                k = rms_norm(&k, norm, c.rms_norm_eps)?;
            }
            let q = rope(&q, &cos, &sin)?;
            let k = rope(&k, &cos, &sin)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(cache) => {
                    let (k, v) = match cache.layers[i].take() {
                        Some((past_k, past_v)) => {
                            (Tensor::cat(&[past_k, k], 1)?, Tensor::cat(&[past_v, v], 1)?)
                        }
                        None => (k, v),
                    };
                    cache.layers[i] = Some((k.clone(), v.clone()));
                    (k, v)
                }
                None => (k, v),
            };
            let k = repeat_kv(&k, heads / kv_heads)?;
            let v = repeat_kv(&v, heads / kv_heads)?;
            let mut scores = (q.matmul(&k.t()?)? * scale)?;
            if let Some(mask) = mask {
                scores = scores.broadcast_add(mask)?;
            }
            let attention = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let out = attention
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((len, heads * head_dim))?;
            x = (x + layer.o.forward(&out, use_lora)?)?;
            let h = rms_norm(&x, &layer.post_norm, c.rms_norm_eps)?;
            let mlp = match &layer.feed_forward {
                FeedForward::Dense(mlp) => mlp.forward(&h, use_lora)?,
                FeedForward::Experts { router, experts } => {
                    route(&h, router, experts, self.moe, use_lora, &mut routing)?
                }
            };
            x = (x + mlp)?;
        }
        let x = rms_norm(&x, &self.norm, c.rms_norm_eps)?;
        let balance = routing.loss(self.moe)?;
        Ok((x.matmul(&self.lm_head.t()?)?, balance))
    }

    /// Every weight with adapters folded in, in HF naming (for export).
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![("model.embed_tokens.weight".to_owned(), self.embed.clone())];
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((
                format!("{p}.input_layernorm.weight"),
                layer.input_norm.clone(),
            ));
            out.push((format!("{p}.self_attn.q_proj.weight"), layer.q.merged()?));
            out.push((format!("{p}.self_attn.k_proj.weight"), layer.k.merged()?));
            out.push((format!("{p}.self_attn.v_proj.weight"), layer.v.merged()?));
            for (part, tensor) in [
                ("self_attn.q_proj.bias", &layer.q.bias),
                ("self_attn.k_proj.bias", &layer.k.bias),
                ("self_attn.v_proj.bias", &layer.v.bias),
                ("self_attn.q_norm.weight", &layer.q_norm),
                ("self_attn.k_norm.weight", &layer.k_norm),
            ] {
                if let Some(tensor) = tensor {
                    out.push((format!("{p}.{part}"), tensor.clone()));
                }
            }
            out.push((format!("{p}.self_attn.o_proj.weight"), layer.o.merged()?));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                layer.post_norm.clone(),
            ));
            let mut mlp = |prefix: String, mlp: &Mlp| -> Result<()> {
                out.push((format!("{prefix}.gate_proj.weight"), mlp.gate.merged()?));
                out.push((format!("{prefix}.up_proj.weight"), mlp.up.merged()?));
                out.push((format!("{prefix}.down_proj.weight"), mlp.down.merged()?));
                Ok(())
            };
            match &layer.feed_forward {
                FeedForward::Dense(dense) => mlp(format!("{p}.mlp"), dense)?,
                FeedForward::Experts { router, experts } => {
                    for (e, expert) in experts.iter().enumerate() {
                        mlp(format!("{p}.mlp.experts.{e}"), expert)?;
                    }
                    out.push((format!("{p}.mlp.gate.weight"), router.clone()));
                }
            }
        }
        out.push(("model.norm.weight".to_owned(), self.norm.clone()));
        if !self.config.tie_word_embeddings {
            out.push(("lm_head.weight".to_owned(), self.lm_head.clone()));
        }
        Ok(out)
    }
}

/// A mixture of experts on `h` (`[len, hidden]`): the router's softmax, each token's top-k
/// experts (their weights renormalised when the model says so), each expert on its tokens, the
/// outputs weighed and added back expert by expert, as transformers does.
fn route(
    h: &Tensor,
    router: &Tensor,
    experts: &[Mlp],
    moe: Moe,
    use_lora: bool,
    routing: &mut Routing,
) -> Result<Tensor> {
    let (len, _) = h.dims2()?;
    let count = experts.len();
    let k = moe.top_k;
    let probabilities = candle_nn::ops::softmax(&h.matmul(&router.t()?)?, D::Minus1)?;
    let host: Vec<Vec<f32>> = probabilities.to_vec2()?;
    let mut chosen: Vec<u32> = Vec::with_capacity(len * k);
    for row in &host {
        let mut order: Vec<usize> = (0..count).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        chosen.extend(order[..k].iter().map(|&e| e as u32));
    }
    let index = Tensor::from_vec(chosen.clone(), (len, k), &Device::Cpu)?;
    let mut weights = probabilities.gather(&index, 1)?;
    if moe.normalize {
        weights = weights.broadcast_div(&weights.sum_keepdim(1)?)?;
    }
    let weights = weights.flatten_all()?;
    let mut out = h.zeros_like()?;
    for (e, expert) in experts.iter().enumerate() {
        let (tokens, slots): (Vec<u32>, Vec<u32>) = chosen
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c as usize == e)
            .map(|(slot, _)| ((slot / k) as u32, slot as u32))
            .unzip();
        if tokens.is_empty() {
            continue;
        }
        let tokens = Tensor::new(tokens.as_slice(), &Device::Cpu)?;
        let slots = Tensor::new(slots.as_slice(), &Device::Cpu)?;
        let y = expert.forward(&h.index_select(&tokens, 0)?, use_lora)?;
        let y = y.broadcast_mul(&weights.index_select(&slots, 0)?.unsqueeze(1)?)?;
        out = out.index_add(&tokens, &y, 0)?;
    }
    // For the load-balancing loss: probabilities summed over tokens, choices counted by rank.
    let summed = probabilities.sum(0)?;
    routing.probabilities = Some(match routing.probabilities.take() {
        Some(sum) => (sum + summed)?,
        None => summed,
    });
    routing.chosen.resize(k * count, 0.0);
    for (slot, &e) in chosen.iter().enumerate() {
        routing.chosen[(slot % k) * count + e as usize] += 1.0;
    }
    routing.tokens += len;
    Ok(out)
}

impl Routing {
    /// `coefficient · experts · Σ_{rank, expert} (share of tokens given that choice) · (mean
    /// probability of the expert)`, over every routed layer's tokens at once; `None` when
    /// nothing was routed.
    fn loss(&self, moe: Moe) -> Result<Option<Tensor>> {
        let Some(probabilities) = &self.probabilities else {
            return Ok(None);
        };
        let n = self.tokens.max(1) as f64;
        let shares: Vec<f32> = self
            .chosen
            .iter()
            .map(|&c| (f64::from(c) / n) as f32)
            .collect();
        let shares = Tensor::from_vec(shares, (moe.top_k, moe.experts), &Device::Cpu)?;
        let mean = (probabilities / n)?.unsqueeze(0)?;
        let balance = shares.broadcast_mul(&mean)?.sum_all()?;
        Ok(Some(
            (balance * (moe.experts as f64 * moe.aux_coefficient))?,
        ))
    }
}

/// `x / rms(x) · w`, from differentiable parts.
fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(mean_square + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(weight)?)
}

/// cos and sin tables `[positions, head_dim / 2]`.
fn rope_tables(
    positions: &[u32],
    head_dim: usize,
    theta: f64,
    scaling: RopeScaling,
) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64))
        .collect();
    scaling.apply(&mut inv);
    let inv: Vec<f32> = inv.into_iter().map(|f| f as f32).collect();
    let inv = Tensor::from_vec(inv, (1, half), &Device::Cpu)?;
    let positions = Tensor::new(positions, &Device::Cpu)?
        .to_dtype(DType::F32)?
        .reshape((positions.len(), 1))?;
    let angles = positions.broadcast_mul(&inv)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Rotary embedding in Hugging Face's half-split layout, on `[heads, len, head_dim]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(D::Minus1)? / 2;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let first = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let second = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Ok(Tensor::cat(&[first, second], D::Minus1)?)
}

/// `[kv_heads, len, d]` → `[kv_heads · n, len, d]`, each key/value head serving `n` query heads.
fn repeat_kv(x: &Tensor, n: usize) -> Result<Tensor> {
    if n == 1 {
        return Ok(x.clone());
    }
    let (kv, len, d) = x.dims3()?;
    Ok(x.unsqueeze(1)?
        .broadcast_as((kv, n, len, d))?
        .contiguous()?
        .reshape((kv * n, len, d))?)
}

/// 0 where a position may look (itself and the earlier positions of its own sequence, and the
/// `past` positions before them all), −∞ elsewhere: no position sees the future, nor another
/// packed sequence. `[len, past + len]`.
fn causal_mask(lengths: &[usize], past: usize) -> Result<Tensor> {
    let len: usize = lengths.iter().sum();
    let width = past + len;
    let mut mask = vec![f32::NEG_INFINITY; len * width];
    let mut start = 0;
    for &n in lengths {
        for i in start..start + n {
            let row = i * width;
            mask[row..row + past].fill(0.0);
            mask[row + past + start..=row + past + i].fill(0.0);
        }
        start += n;
    }
    Ok(Tensor::from_vec(mask, (len, width), &Device::Cpu)?)
}

/// The keys and values of the tokens a model has seen, per layer (after the rotary embedding,
/// before they are shared across query heads).
#[derive(Default)]
pub struct Cache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl Cache {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tokens seen.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been seen.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A `[rows, cols]` tensor of normal draws from a seeded generator (candle's own `randn` draws
/// from an unseeded one, and a run must be repeatable from its seed).
fn normal(rng: &mut rand::rngs::StdRng, std: f32, rows: usize, cols: usize) -> Result<Tensor> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| {
            // Box–Muller: two uniforms to one normal.
            let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect();
    Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
}

/// Writes a small random llama (and a byte-level tokenizer with a ChatML template) to `dir`:
/// what the tests and a first try of a backend train in seconds.
pub fn create_tiny(dir: &Path) -> std::result::Result<(), String> {
    create_tiny_arch(dir, Arch::Llama)
}

/// The architectures the built-in trainer implements, as `create-tiny-model --arch` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// Llama 2-style: no biases, plain rotary embedding (SmolLM, Mistral without windows).
    Llama,
    /// Llama 3.1+: the `llama3` rotary scaling.
    Llama3,
    /// Qwen2 and 2.5 (and DeepSeek-R1's Qwen distills): query, key and value biases.
    Qwen2,
    /// Qwen3: a norm on each query and key head, and a head width of its own.
    Qwen3,
    /// Qwen3-MoE: Qwen3's attention, and a mixture of experts for the MLP.
    Qwen3Moe,
}

/// [`create_tiny`] in another architecture.
pub fn create_tiny_arch(dir: &Path, arch: Arch) -> std::result::Result<(), String> {
    create_tiny_sized(dir, arch, 64, 128)
}

/// [`create_tiny_arch`] with other widths: 256 and its multiples fill GGUF's K-quant
/// super-blocks, which 64 does not.
pub fn create_tiny_sized(
    dir: &Path,
    arch: Arch,
    hidden_size: usize,
    intermediate_size: usize,
) -> std::result::Result<(), String> {
    let tokenizer = super::tokenize::byte_level_tokenizer()?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let mut config = Config {
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 512,
        tie_word_embeddings: true,
        bos_token_id: None,
        eos_token_id: tokenizer
            .token_to_id(super::tokenize::IM_END)
            .map(serde_json::Value::from),
        model_type: default_model_type(),
        architectures: default_architectures(),
        head_dim: None,
        rope_scaling: None,
        rope_parameters: None,
        use_sliding_window: None,
        mlp_bias: None,
        extra: serde_json::Map::new(),
    };
    let name = |model_type: &str, class: &str| (model_type.to_owned(), vec![class.to_owned()]);
    match arch {
        Arch::Llama => {}
        Arch::Llama3 => {
            config.rope_theta = 500_000.0;
            config.rope_scaling = Some(serde_json::json!({
                "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 64,
            }));
        }
        Arch::Qwen2 => {
            (config.model_type, config.architectures) = name("qwen2", "Qwen2ForCausalLM");
            config.rope_theta = 1_000_000.0;
            config.rms_norm_eps = 1e-6;
            config.use_sliding_window = Some(false);
        }
        Arch::Qwen3 => {
            (config.model_type, config.architectures) = name("qwen3", "Qwen3ForCausalLM");
            config.rope_theta = 1_000_000.0;
            config.rms_norm_eps = 1e-6;
            config.head_dim = Some(32);
        }
        Arch::Qwen3Moe => {
            (config.model_type, config.architectures) = name("qwen3_moe", "Qwen3MoeForCausalLM");
            config.rope_theta = 1_000_000.0;
            config.rms_norm_eps = 1e-6;
            config.head_dim = Some(16);
            let serde_json::Value::Object(moe) = serde_json::json!({
                "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
                "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
                "router_aux_loss_coef": 0.001,
            }) else {
                unreachable!("a JSON object literal")
            };
            config.extra = moe;
        }
    }
    let build = || -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let (h, m, kv) = (
            config.hidden_size,
            config.intermediate_size,
            config.kv_heads() * config.head_dim(),
        );
        let qd = config.num_attention_heads * config.head_dim();
        // Seeded, so every tiny model is the same one: a test that trains it sees the same
        // start each run.
        let rng = std::cell::RefCell::new(rand::rngs::StdRng::seed_from_u64(0x7179));
        let normal =
            |std: f32, rows: usize, cols: usize| normal(&mut rng.borrow_mut(), std, rows, cols);
        let init = |rows: usize, cols: usize| normal(0.02, rows, cols);
        let mut t = HashMap::new();
        // Embeddings (tied to the output) large enough that adapters on the blocks alone can move
        // the logits: with GPT-2's 0.02 they are bounded to about ±1.3 at this width.
        t.insert(
            "model.embed_tokens.weight".to_owned(),
            normal(0.3, vocab_size, h)?,
        );
        t.insert(
            "model.norm.weight".to_owned(),
            Tensor::ones(h, DType::F32, &dev)?,
        );
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            t.insert(
                format!("{p}.input_layernorm.weight"),
                Tensor::ones(h, DType::F32, &dev)?,
            );
            t.insert(
                format!("{p}.post_attention_layernorm.weight"),
                Tensor::ones(h, DType::F32, &dev)?,
            );
            t.insert(format!("{p}.self_attn.q_proj.weight"), init(qd, h)?);
            t.insert(format!("{p}.self_attn.k_proj.weight"), init(kv, h)?);
            t.insert(format!("{p}.self_attn.v_proj.weight"), init(kv, h)?);
            t.insert(format!("{p}.self_attn.o_proj.weight"), init(h, qd)?);
            if config.sparse_layer(i) {
                let moe = config.moe();
                t.insert(format!("{p}.mlp.gate.weight"), normal(0.3, moe.experts, h)?);
                for e in 0..moe.experts {
                    let q = format!("{p}.mlp.experts.{e}");
                    t.insert(format!("{q}.gate_proj.weight"), init(32, h)?);
                    t.insert(format!("{q}.up_proj.weight"), init(32, h)?);
                    t.insert(format!("{q}.down_proj.weight"), init(h, 32)?);
                }
            } else {
                t.insert(format!("{p}.mlp.gate_proj.weight"), init(m, h)?);
                t.insert(format!("{p}.mlp.up_proj.weight"), init(m, h)?);
                t.insert(format!("{p}.mlp.down_proj.weight"), init(h, m)?);
            }
            match arch {
                Arch::Qwen2 => {
                    for (part, width) in [("q_proj", qd), ("k_proj", kv), ("v_proj", kv)] {
                        let bias = normal(0.1, 1, width)?.flatten_all()?;
                        t.insert(format!("{p}.self_attn.{part}.bias"), bias);
                    }
                }
                Arch::Qwen3 | Arch::Qwen3Moe => {
                    for part in ["q_norm", "k_norm"] {
                        t.insert(
                            format!("{p}.self_attn.{part}.weight"),
                            Tensor::ones(config.head_dim(), DType::F32, &dev)?,
                        );
                    }
                }
                Arch::Llama | Arch::Llama3 => {}
            }
        }
        Ok(t)
    };
    let tensors = build().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .map_err(|e| e.to_string())?;
    let config = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("config.json"), config)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    tokenizer
        .save(dir.join("tokenizer.json"), true)
        .map_err(|e| e.to_string())?;
    let chat = super::tokenize::ChatTokenizer::new(tokenizer);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        chat.hf_config(None, 512).to_string(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(())
}
