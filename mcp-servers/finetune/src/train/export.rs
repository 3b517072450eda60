//! GGUF export with quantization (Q8_0, Q4_0), in the layout llama.cpp reads: its tensor names,
//! its permuted query/key rows, the tokenizer and chat template in the metadata.

use std::path::Path;

use candle_core::{
    Device, Tensor,
    quantized::{GgmlDType, QTensor, gguf_file::Value},
};

use super::{
    TrainError,
    model::{self, Model},
    tokenize::{CHATML_TEMPLATE, ChatTokenizer, Template},
};
use crate::job::Quantization;

/// Writes `model` (adapters merged) to `file` as GGUF, weight matrices quantized.
pub fn gguf(
    model: &Model,
    tokenizer: &ChatTokenizer,
    quantization: Quantization,
    file: &Path,
) -> Result<(), TrainError> {
    let (dtype, file_type) = match quantization {
        Quantization::Q8_0 => (GgmlDType::Q8_0, 7u32),
        Quantization::Q4_0 => (GgmlDType::Q4_0, 2u32),
    };
    write(model, tokenizer, dtype, file_type, file)
}

/// [`gguf`] with any of GGML's types (`file_type` as llama.cpp numbers them: 0 for F32); the
/// tests write F32 to check the layout exactly, without quantization noise.
pub fn write(
    model: &Model,
    tokenizer: &ChatTokenizer,
    dtype: GgmlDType,
    file_type: u32,
    file: &Path,
) -> Result<(), TrainError> {
    let c = &model.config;
    if let Some(why) = c.gguf_unsupported() {
        return Err(TrainError::Data(why));
    }
    let mut metadata: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("general.name".into(), Value::String("mcp-finetune".into())),
        ("general.file_type".into(), Value::U32(file_type)),
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
    if tokenizer.template == Template::ChatMl
        && !metadata.iter().any(|(k, _)| k == "tokenizer.chat_template")
    {
        metadata.push((
            "tokenizer.chat_template".into(),
            Value::String(CHATML_TEMPLATE.into()),
        ));
    }

    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, tensor) in model.merged_weights()? {
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
        tensors.push((gguf_name, quantize(&tensor, dtype)?));
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

/// Matrices whose rows split into 32-value blocks are quantized; norms (and odd shapes) stay f32,
/// as llama.cpp's converter does.
fn quantize(tensor: &Tensor, dtype: GgmlDType) -> Result<QTensor, TrainError> {
    let tensor = tensor.to_device(&Device::Cpu)?.contiguous()?;
    let quantizable = tensor.rank() == 2 && tensor.dims()[1].is_multiple_of(dtype.block_size());
    Ok(QTensor::quantize(
        &tensor,
        if quantizable { dtype } else { GgmlDType::F32 },
    )?)
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
            Value::String("default".into()),
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
