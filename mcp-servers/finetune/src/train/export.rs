//! GGUF export with quantization (Q8_0, Q4_0, and the K-quant mixes Q4_K_M, Q5_K_M, Q6_K), in
//! the layout llama.cpp reads: its tensor names, its permuted query/key rows, the tokenizer and
//! chat template in the metadata.

use std::path::Path;

use candle_core::{
    Device,
    quantized::{GgmlDType, QTensor, gguf_file::Value},
};

use super::{
    TrainError,
    model::{self, Model},
    tokenize::ChatTokenizer,
};
use crate::job::Quantization;

/// Writes `model` (adapters merged) to `file` as GGUF, weight matrices quantized.
pub fn gguf(
    model: &Model,
    tokenizer: &ChatTokenizer,
    quantization: Quantization,
    file: &Path,
) -> Result<(), TrainError> {
    write(model, tokenizer, Mix::Llama(quantization), file)
}

/// Which GGML type each tensor gets.
#[derive(Debug, Clone, Copy)]
pub enum Mix {
    /// llama.cpp's choices for its file type (`llama_tensor_get_type` in llama-quant.cpp).
    Llama(Quantization),
    /// One type for every matrix: the tests write F32 to check the layout exactly, without
    /// quantization noise.
    All(GgmlDType),
}

impl Mix {
    /// `general.file_type` as llama.cpp numbers its `LLAMA_FTYPE_MOSTLY_*`.
    fn file_type(self) -> u32 {
        match self {
            Self::Llama(Quantization::Q4_0) => 2,
            Self::Llama(Quantization::Q8_0) => 7,
            Self::Llama(Quantization::Q4KM) => 15,
            Self::Llama(Quantization::Q5KM) => 17,
            Self::Llama(Quantization::Q6K) => 18,
            Self::All(GgmlDType::F16) => 1,
            Self::All(_) => 0,
        }
    }

    /// The type of the matrix `name` (GGUF's name) with rows of `cols` values, in a model of
    /// `layers` blocks with an `output.weight` of its own or not (`tied`).
    pub fn dtype(self, name: &str, cols: usize, layers: usize, tied: bool) -> GgmlDType {
        let quantization = match self {
            Self::All(dtype) => return fallback(dtype, cols),
            Self::Llama(quantization) => quantization,
        };
        let base = match quantization {
            Quantization::Q8_0 => GgmlDType::Q8_0,
            Quantization::Q4_0 => GgmlDType::Q4_0,
            Quantization::Q4KM => GgmlDType::Q4K,
            Quantization::Q5KM => GgmlDType::Q5K,
            Quantization::Q6K => GgmlDType::Q6K,
        };
        let k_mix = matches!(quantization, Quantization::Q4KM | Quantization::Q5KM);
        let layer = name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(layer, _)| layer.parse::<usize>().ok());
        let dtype = if name == "output.weight" || (tied && name == "token_embd.weight") {
            // The output projection is the most sensitive matrix: Q6_K unless Q8_0 was asked
            // for, Q8_0 when its rows do not split into 256-value super-blocks.
            if !cols.is_multiple_of(QK_K) {
                GgmlDType::Q8_0
            } else if base == GgmlDType::Q8_0 {
                base
            } else {
                GgmlDType::Q6K
            }
        } else if k_mix
            && (name.ends_with(".attn_v.weight") || name.ends_with(".ffn_down.weight"))
            && layer.is_some_and(|layer| more_bits(layer, layers))
        {
            // The _M mixes give the value and down projections of the first and last eighth of
            // the blocks, and of every third between, six bits.
            GgmlDType::Q6K
        } else {
            base
        };
        fallback(dtype, cols)
    }
}

/// Values in a K-quant super-block.
const QK_K: usize = 256;

/// llama.cpp's `use_more_bits`.
fn more_bits(layer: usize, layers: usize) -> bool {
    layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2
}

/// The type a matrix whose rows do not split into `dtype`'s blocks gets instead: llama.cpp's
/// replacements for the K-quants (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), and f32 for rows that
/// split into no block at all (a tiny model's).
fn fallback(dtype: GgmlDType, cols: usize) -> GgmlDType {
    let dtype = if cols.is_multiple_of(dtype.block_size()) {
        dtype
    } else {
        match dtype {
            GgmlDType::Q4K => GgmlDType::Q5_0,
            GgmlDType::Q5K => GgmlDType::Q5_1,
            GgmlDType::Q6K => GgmlDType::Q8_0,
            other => other,
        }
    };
    if cols.is_multiple_of(dtype.block_size()) {
        dtype
    } else {
        GgmlDType::F32
    }
}

/// [`gguf`] with any [`Mix`].
pub fn write(
    model: &Model,
    tokenizer: &ChatTokenizer,
    mix: Mix,
    file: &Path,
) -> Result<(), TrainError> {
    let c = &model.config;
    if let Some(why) = c.gguf_unsupported() {
        return Err(TrainError::Data(why));
    }
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String("mcp-finetune".into())),
        ("general.file_type".into(), Value::U32(mix.file_type())),
        (
            "llama.context_length".into(),
            Value::U32(c.max_position_embeddings as u32),
        ),
        (
            "llama.embedding_length".into(),
            Value::U32(c.hidden_size as u32),
        ),
        (
            "llama.block_count".into(),
            Value::U32(c.num_hidden_layers as u32),
        ),
        (
            "llama.feed_forward_length".into(),
            Value::U32(c.intermediate_size as u32),
        ),
        (
            "llama.attention.head_count".into(),
            Value::U32(c.num_attention_heads as u32),
        ),
        (
            "llama.attention.head_count_kv".into(),
            Value::U32(c.kv_heads() as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(c.rms_norm_eps as f32),
        ),
        (
            "llama.rope.freq_base".into(),
            Value::F32(c.rope_theta as f32),
        ),
        (
            "llama.rope.dimension_count".into(),
            Value::U32(c.head_dim() as u32),
        ),
        ("llama.vocab_size".into(), Value::U32(c.vocab_size as u32)),
    ];
    match &model.gguf_metadata {
        // The base came as GGUF: its tokenizer entries are carried over as they were.
        Some(source) => {
            let mut keys: Vec<&String> = source
                .keys()
                .filter(|k| k.starts_with("tokenizer."))
                .collect();
            keys.sort();
            for key in keys {
                metadata.push((key.clone(), source[key].clone()));
            }
        }
        None => metadata.extend(tokenizer_metadata(
            tokenizer,
            c.bos_token_id,
            c.eos_ids().first().copied(),
        )?),
    }
    if let Some(template) = tokenizer.default_template()
        && !metadata.iter().any(|(k, _)| k == "tokenizer.chat_template")
    {
        metadata.push((
            "tokenizer.chat_template".into(),
            Value::String(template.into()),
        ));
    }

    let weights = model.merged_weights()?;
    let tied = !weights.iter().any(|(name, _)| name == "lm_head.weight");
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, tensor) in weights {
        let Some(gguf_name) = model::gguf_name(&name) else {
            continue;
        };
        let tensor = if name.ends_with("q_proj.weight") {
            model::permute(&tensor, c.num_attention_heads)?
        } else if name.ends_with("k_proj.weight") {
            model::permute(&tensor, c.kv_heads())?
        } else {
            tensor
        };
        let tensor = tensor.to_device(&Device::Cpu)?.contiguous()?;
        // Norms (vectors) stay f32, as llama.cpp's converter leaves them.
        let dtype = match tensor.dims() {
            [_, cols] => mix.dtype(&gguf_name, *cols, c.num_hidden_layers, tied),
            _ => GgmlDType::F32,
        };
        tensors.push((gguf_name, QTensor::quantize(&tensor, dtype)?));
    }
    let partial = file.with_extension("gguf.partial");
    let write = || -> Result<(), TrainError> {
        let mut out =
            std::io::BufWriter::new(std::fs::File::create(&partial).map_err(super::io(&partial))?);
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        candle_core::quantized::gguf_file::write(&mut out, &metadata, &tensors)?;
        let file = out.into_inner().map_err(|e| TrainError::Io {
            path: partial.clone(),
            error: e.into_error(),
        })?;
        file.sync_all().map_err(super::io(&partial))?;
        Ok(())
    };
    if let Err(error) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, file).map_err(super::io(file))?;
    Ok(())
}

/// `tokenizer.ggml.*` for a byte-level BPE tokenizer (read back out of its JSON form, which
/// carries the merges).
fn tokenizer_metadata(
    tokenizer: &ChatTokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
) -> Result<Vec<(String, Value)>, TrainError> {
    let json: serde_json::Value = tokenizer
        .tokenizer
        .to_string(false)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| TrainError::Data("cannot serialize the tokenizer".to_owned()))?;
    if json["model"]["type"] != "BPE" {
        return Err(TrainError::Data(
            "GGUF export needs a byte-level BPE tokenizer; this model's is another kind".to_owned(),
        ));
    }
    let vocab = tokenizer.tokenizer.get_vocab(true);
    let size = vocab.values().max().map(|m| *m as usize + 1).unwrap_or(0);
    let mut tokens = vec![String::new(); size];
    for (token, id) in &vocab {
        tokens[*id as usize] = token.clone();
    }
    let special: std::collections::HashSet<String> = json["added_tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["special"] == true)
        .filter_map(|t| t["content"].as_str().map(str::to_owned))
        .collect();
    let types: Vec<Value> = tokens
        .iter()
        .map(|t| Value::I32(if special.contains(t) { 3 } else { 1 }))
        .collect();
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(pair) => Some(format!(
                "{} {}",
                pair.first()?.as_str()?,
                pair.get(1)?.as_str()?
            )),
            _ => None,
        })
        .map(Value::String)
        .collect();
    let mut out = vec![
        (
            "tokenizer.ggml.model".to_owned(),
            Value::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".to_owned(),
            // llama.cpp's name for Llama 3's pre-tokenizer (its regex); others get the default.
            Value::String(
                match tokenizer.template {
                    super::tokenize::Template::Llama3 => "llama-bpe",
                    _ => "default",
                }
                .into(),
            ),
        ),
        (
            "tokenizer.ggml.tokens".to_owned(),
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.token_type".to_owned(), Value::Array(types)),
        ("tokenizer.ggml.merges".to_owned(), Value::Array(merges)),
    ];
    if let Some(bos) = bos {
        out.push(("tokenizer.ggml.bos_token_id".to_owned(), Value::U32(bos)));
    }
    if let Some(eos) = eos.or(tokenizer.end) {
        out.push(("tokenizer.ggml.eos_token_id".to_owned(), Value::U32(eos)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The types llama.cpp's `llama-quantize` gives a 32-block model (SmolLM2-360M's shape) and a
    /// tiny one whose rows fit no super-block.
    #[test]
    fn the_k_quant_mixes_are_llama_cpps() {
        let q4 = Mix::Llama(Quantization::Q4KM);
        let six: Vec<usize> = (0..32)
            .filter(|&i| {
                q4.dtype(&format!("blk.{i}.attn_v.weight"), 1024, 32, true) == GgmlDType::Q6K
            })
            .collect();
        // The first and last eighth (4 blocks each), and every third block between.
        assert_eq!(
            six,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        assert_eq!(
            q4.dtype("blk.6.ffn_down.weight", 2560, 32, true),
            GgmlDType::Q6K
        );
        assert_eq!(
            q4.dtype("blk.5.ffn_down.weight", 2560, 32, true),
            GgmlDType::Q4K
        );
        assert_eq!(
            q4.dtype("blk.6.attn_q.weight", 1024, 32, true),
            GgmlDType::Q4K
        );
        // Tied embeddings are the output: six bits.
        assert_eq!(
            q4.dtype("token_embd.weight", 1024, 32, true),
            GgmlDType::Q6K
        );
        assert_eq!(
            q4.dtype("token_embd.weight", 1024, 32, false),
            GgmlDType::Q4K
        );
        assert_eq!(q4.dtype("output.weight", 1024, 32, false), GgmlDType::Q6K);
        // Rows of 960 values hold no whole super-block: llama.cpp's replacements.
        assert_eq!(
            q4.dtype("blk.5.attn_q.weight", 960, 32, true),
            GgmlDType::Q5_0
        );
        assert_eq!(
            q4.dtype("blk.0.attn_v.weight", 960, 32, true),
            GgmlDType::Q8_0
        );
        assert_eq!(
            q4.dtype("token_embd.weight", 960, 32, true),
            GgmlDType::Q8_0
        );
        let q5 = Mix::Llama(Quantization::Q5KM);
        assert_eq!(
            q5.dtype("blk.5.attn_q.weight", 960, 32, true),
            GgmlDType::Q5_1
        );
        assert_eq!(
            q5.dtype("blk.5.attn_k.weight", 1024, 32, true),
            GgmlDType::Q5K
        );
        assert_eq!(
            q5.dtype("blk.31.ffn_down.weight", 2560, 32, true),
            GgmlDType::Q6K
        );
        let q6 = Mix::Llama(Quantization::Q6K);
        assert_eq!(
            q6.dtype("blk.5.attn_q.weight", 1024, 32, true),
            GgmlDType::Q6K
        );
        assert_eq!(
            q6.dtype("blk.5.attn_q.weight", 960, 32, true),
            GgmlDType::Q8_0
        );
        // Q8_0 keeps its output in Q8_0; a tiny model's 40-value rows stay f32.
        let q8 = Mix::Llama(Quantization::Q8_0);
        assert_eq!(q8.dtype("output.weight", 1024, 32, false), GgmlDType::Q8_0);
        assert_eq!(q8.dtype("blk.0.attn_q.weight", 40, 2, true), GgmlDType::F32);
        assert_eq!(Mix::Llama(Quantization::Q4KM).file_type(), 15);
        assert_eq!(Mix::Llama(Quantization::Q6K).file_type(), 18);
    }
}
