//! Turning examples into token ids with the model's own tokenizer and chat template, and marking
//! which tokens are learned.

use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::{
    AddedToken, Tokenizer,
    decoders::byte_level::ByteLevel as ByteLevelDecoder,
    models::bpe::{BPE, Vocab},
    pre_tokenizers::byte_level::ByteLevel,
};

use crate::dataset::Turn;

/// ChatML's start of a turn.
pub const IM_START: &str = "<|im_start|>";
/// ChatML's end of a turn.
pub const IM_END: &str = "<|im_end|>";
/// The end-of-text token of ChatML tokenizers.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The ChatML template (Jinja, as Hugging Face and llama.cpp read it), for tokenizers that have
/// its tokens.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Llama 3's start of a conversation.
pub const BEGIN_OF_TEXT: &str = "<|begin_of_text|>";
/// Llama 3's start of a turn's header (its role).
pub const START_HEADER: &str = "<|start_header_id|>";
/// Llama 3's end of a turn's header.
pub const END_HEADER: &str = "<|end_header_id|>";
/// Llama 3's end of a turn.
pub const EOT: &str = "<|eot_id|>";

/// Llama 3's template (Jinja) without the system prompt 3.1's adds by default: the layout its
/// instruct models were trained on, for tokenizers with its header tokens.
pub const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// How turns are laid out around their text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// `<|im_start|>role\n…<|im_end|>\n` (SmolLM, Qwen, many others).
    ChatMl,
    /// `<|begin_of_text|>` once, then `<|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>`
    /// (Llama 3.x).
    Llama3,
    /// `### Role:\n…` and the end-of-sequence token after answers, for models without ChatML
    /// tokens.
    Plain,
}

/// A model's tokenizer with the template its turns are laid out in.
pub struct ChatTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// How turns are laid out.
    pub template: Template,
    /// Ends an answer (`<|im_end|>` in ChatML).
    pub end: Option<u32>,
}

/// A tokenized example: ids and, per id, whether it is learned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    /// The token ids.
    pub ids: Vec<u32>,
    /// Per id, whether the model learns it.
    pub trained: Vec<bool>,
}

impl Encoded {
    fn push(&mut self, ids: &[u32], trained: bool) {
        self.ids.extend_from_slice(ids);
        self.trained.extend(std::iter::repeat_n(trained, ids.len()));
    }

    /// Cut to `max` tokens, keeping the start.
    pub fn truncate(&mut self, max: usize) {
        self.ids.truncate(max);
        self.trained.truncate(max);
    }
}

impl ChatTokenizer {
    /// The tokenizer of a model: `tokenizer.json` in its directory, or the one inside a GGUF file.
    pub fn for_model(
        path: &Path,
        gguf: Option<&std::collections::HashMap<String, gguf_file::Value>>,
    ) -> Result<Self, String> {
        let tokenizer = match gguf {
            Some(metadata) => from_gguf(metadata)?,
            None => {
                let file = path.join("tokenizer.json");
                Tokenizer::from_file(&file).map_err(|error| {
                    format!(
                        "cannot read the model's tokenizer {}: {error}",
                        file.display()
                    )
                })?
            }
        };
        Ok(Self::new(tokenizer))
    }

    /// Picks the template from the tokenizer's vocabulary: Llama 3's when it has its header
    /// and end-of-turn tokens, ChatML when it has `<|im_start|>` and `<|im_end|>`, plain
    /// otherwise (answers ending with its end-of-sequence token).
    pub fn new(tokenizer: Tokenizer) -> Self {
        let has = |tokens: &[&str]| tokens.iter().all(|t| tokenizer.token_to_id(t).is_some());
        let template = if has(&[START_HEADER, END_HEADER, EOT]) {
            Template::Llama3
        } else if has(&[IM_START, IM_END]) {
            Template::ChatMl
        } else {
            Template::Plain
        };
        let end = match template {
            Template::Llama3 => tokenizer.token_to_id(EOT),
            Template::ChatMl => tokenizer.token_to_id(IM_END),
            Template::Plain => ["</s>", END_OF_TEXT, "<|end_of_text|>", EOT]
                .iter()
                .find_map(|t| tokenizer.token_to_id(t)),
        };
        Self {
            tokenizer,
            template,
            end,
        }
    }

    /// The Jinja chat template of this layout, for a model whose own is not known.
    pub fn default_template(&self) -> Option<&'static str> {
        match self.template {
            Template::ChatMl => Some(CHATML_TEMPLATE),
            Template::Llama3 => Some(LLAMA3_TEMPLATE),
            Template::Plain => None,
        }
    }

    /// `tokenizer_config.json` for Hugging Face's loaders: the fast tokenizer, its end token and
    /// chat template (the given one, else ChatML when the tokens are there).
    pub fn hf_config(&self, chat_template: Option<&str>, max_len: usize) -> serde_json::Value {
        let token = |id: Option<u32>| id.and_then(|id| self.tokenizer.id_to_token(id));
        let template = chat_template
            .map(str::to_owned)
            .or_else(|| self.default_template().map(str::to_owned));
        serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "eos_token": token(self.end),
            "pad_token": self.tokenizer.token_to_id(END_OF_TEXT).map(|_| END_OF_TEXT).or(token(self.end).as_deref()).map(str::to_owned),
            "chat_template": template,
            "model_max_length": max_len,
        })
    }

    fn ids(&self, text: &str) -> Result<Vec<u32>, String> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|error| format!("tokenizing failed: {error}"))
    }

    /// The ids of a conversation to be answered: its turns with the template, then the opening
    /// of the assistant's turn.
    pub fn prompt(&self, turns: &[Turn]) -> Result<Vec<u32>, String> {
        let mut ids = self.encode(turns)?.ids;
        let opening = match self.template {
            Template::ChatMl => format!("{IM_START}assistant\n"),
            Template::Llama3 => format!("{START_HEADER}assistant{END_HEADER}\n\n"),
            Template::Plain => "### Assistant:\n".to_owned(),
        };
        ids.extend(self.ids(&opening)?);
        Ok(ids)
    }

    /// The ids of plain text (no template).
    pub fn text(&self, text: &str) -> Result<Vec<u32>, String> {
        self.ids(text)
    }

    /// Renders turns with the template; learned tokens are the trained turns' text and the token
    /// that ends them, so the model learns to stop.
    pub fn encode(&self, turns: &[Turn]) -> Result<Encoded, String> {
        let mut out = Encoded::default();
        for turn in turns {
            if turn.role.is_empty() {
                out.push(&self.ids(&turn.text)?, turn.trained);
                if let Some(end) = self.end {
                    out.push(&[end], turn.trained);
                }
                continue;
            }
            match self.template {
                Template::ChatMl => {
                    out.push(&self.ids(&format!("{IM_START}{}\n", turn.role))?, false);
                    out.push(&self.ids(&format!("{}{IM_END}", turn.text))?, turn.trained);
                    out.push(&self.ids("\n")?, false);
                }
                Template::Llama3 => {
                    if out.ids.is_empty() {
                        out.push(&self.ids(BEGIN_OF_TEXT)?, false);
                    }
                    let header = format!("{START_HEADER}{}{END_HEADER}\n\n", turn.role);
                    out.push(&self.ids(&header)?, false);
                    // Its template trims each message.
                    out.push(
                        &self.ids(&format!("{}{EOT}", turn.text.trim()))?,
                        turn.trained,
                    );
                }
                Template::Plain => {
                    let mut role = turn.role.clone();
                    if let Some(first) = role.get_mut(0..1) {
                        first.make_ascii_uppercase();
                    }
                    out.push(&self.ids(&format!("### {role}:\n"))?, false);
                    out.push(&self.ids(&format!("{}\n", turn.text))?, turn.trained);
                    if turn.role == "assistant"
                        && let Some(end) = self.end
                    {
                        out.push(&[end], turn.trained);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A byte-level BPE without merges (one token per byte) plus ChatML's tokens: the tiny test
/// model's tokenizer.
pub fn byte_level_tokenizer() -> Result<Tokenizer, String> {
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    let vocab: Vocab = alphabet
        .iter()
        .enumerate()
        .map(|(i, c)| (c.to_string(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, Vec::new())
        .build()
        .map_err(|error| error.to_string())?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    tokenizer
        .add_special_tokens([
            AddedToken::from(END_OF_TEXT, true),
            AddedToken::from(IM_START, true),
            AddedToken::from(IM_END, true),
        ])
        .map_err(|error| error.to_string())?;
    Ok(tokenizer)
}

/// The BPE tokenizer a GGUF file carries (`tokenizer.ggml.*`, model `gpt2`).
pub fn from_gguf(
    metadata: &std::collections::HashMap<String, gguf_file::Value>,
) -> Result<Tokenizer, String> {
    let model = metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
        .unwrap_or("");
    if model != "gpt2" {
        return Err(format!(
            "the GGUF file's tokenizer is {model:?}; only byte-level BPE (\"gpt2\") is read from GGUF: put the model's tokenizer.json beside a safetensors checkpoint instead"
        ));
    }
    let strings = |key: &str| -> Result<Vec<String>, String> {
        metadata
            .get(key)
            .and_then(|v| v.to_vec().ok())
            .ok_or_else(|| format!("the GGUF file has no {key}"))?
            .iter()
            .map(|v| v.to_string().cloned().map_err(|e| format!("{key}: {e}")))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
        .into_iter()
        .filter_map(|m| m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    let types: Vec<i32> = metadata
        .get("tokenizer.ggml.token_type")
        .and_then(|v| v.to_vec().ok())
        .map(|v| v.iter().map(|t| t.to_i32().unwrap_or(1)).collect())
        .unwrap_or_default();
    let vocab: Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|error| format!("the GGUF file's tokenizer: {error}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    // Control tokens (type 3) are matched whole, never split into bytes.
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(types.iter().chain(std::iter::repeat(&1)))
        .filter(|(_, kind)| **kind == 3)
        .map(|(token, _)| AddedToken::from(token.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(special)
        .map_err(|error| format!("the GGUF file's tokenizer: {error}"))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(role: &str, text: &str) -> Turn {
        Turn {
            role: role.to_owned(),
            text: text.to_owned(),
            trained: role == "assistant",
        }
    }

    /// What Llama 3's own template renders, and its answer (with `<|eot_id|>`) alone learned.
    #[test]
    fn llama3_tokenizers_get_llama3s_layout() {
        let mut tokenizer = byte_level_tokenizer().unwrap();
        tokenizer
            .add_special_tokens(
                [BEGIN_OF_TEXT, START_HEADER, END_HEADER, EOT].map(|t| AddedToken::from(t, true)),
            )
            .unwrap();
        let chat = ChatTokenizer::new(tokenizer);
        assert_eq!(chat.template, Template::Llama3);
        assert_eq!(chat.end, chat.tokenizer.token_to_id(EOT));
        let turns = [
            turn("system", "Be brief."),
            turn("user", "Hi "),
            turn("assistant", "Hello."),
        ];
        let encoded = chat.encode(&turns).unwrap();
        let text = |ids: &[u32]| chat.tokenizer.decode(ids, false).unwrap();
        assert_eq!(
            text(&encoded.ids),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        );
        let learned: Vec<u32> = encoded
            .ids
            .iter()
            .zip(&encoded.trained)
            .filter(|(_, t)| **t)
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(text(&learned), "Hello.<|eot_id|>");
        let prompt = chat.prompt(&turns[1..2]).unwrap();
        assert_eq!(
            text(&prompt),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(chat.default_template(), Some(LLAMA3_TEMPLATE));
    }
}
