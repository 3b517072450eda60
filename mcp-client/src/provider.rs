//! The model behind the agent: an OpenAI-compatible chat-completions API (OpenAI, Ollama, vLLM,
//! llama.cpp's server, LM Studio, anything with a base URL) or the Anthropic Messages API, streamed,
//! with tool calls. The wire formats are `genai`'s; this module picks the endpoint and key, streams
//! one turn and hands back its text and tool calls.

use futures::StreamExt as _;
use genai::{
    Client,
    adapter::AdapterKind,
    chat::{ChatMessage, ChatOptions, ChatRequest, ChatStreamEvent, Tool, ToolCall},
    resolver::{AuthData, Endpoint},
};

/// Which API the model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// OpenAI-compatible chat completions (`POST {base}/chat/completions`).
    Openai,
    /// Anthropic Messages (`POST {base}/messages`).
    Anthropic,
}

impl Api {
    /// Where requests go unless `--base-url` says otherwise.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Api::Openai => "https://api.openai.com/v1/",
            Api::Anthropic => "https://api.anthropic.com/v1/",
        }
    }

    /// The environment variable the API key is read from by default.
    pub fn key_variable(self) -> &'static str {
        match self {
            Api::Openai => "OPENAI_API_KEY",
            Api::Anthropic => "ANTHROPIC_API_KEY",
        }
    }
}

/// How to reach the model.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which wire format the API speaks.
    pub api: Api,
    /// The model's name as the API knows it.
    pub model: String,
    /// The API's base URL (ending in `/v1` or similar); the API's own when `None`.
    pub base_url: Option<String>,
    /// The key; `None` for a local server that needs none.
    pub api_key: Option<String>,
    /// Most tokens one answer may have.
    pub max_tokens: u32,
}

/// Why the model could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The model is not set up (no model, no key, a bad URL).
    #[error("{0}")]
    Config(String),
    /// The request to the API failed.
    #[error("the model API at {url} failed: {reason}")]
    Request {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
}

/// What the model said in one turn.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// The text of the answer (empty when it only calls tools).
    pub text: String,
    /// The tool calls it made.
    pub tool_calls: Vec<ToolCall>,
}

/// A connection to one model.
#[derive(Clone)]
pub struct Provider {
    client: Client,
    config: ProviderConfig,
    base_url: String,
}

impl Provider {
    /// A connection to the model `config` names (nothing is sent yet).
    pub fn new(config: ProviderConfig) -> Result<Self, ProviderError> {
        let mut base_url = config
            .base_url
            .clone()
            .unwrap_or_else(|| config.api.default_base_url().to_owned());
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        if reqwest::Url::parse(&base_url).is_err() {
            return Err(ProviderError::Config(format!(
                "--base-url {base_url:?} is not a URL (e.g. http://127.0.0.1:11434/v1)"
            )));
        }
        let auth = match (&config.api_key, config.base_url.is_some()) {
            (Some(key), _) => AuthData::Key(key.clone()),
            (None, false) => {
                return Err(ProviderError::Config(format!(
                    "no API key: set {} (or pass --base-url for a local server that needs none)",
                    config.api.key_variable()
                )));
            }
            // A local server without keys: the adapters insist on one, and such servers ignore it.
            (None, true) => AuthData::Key("none".to_owned()),
        };
        let kind = match config.api {
            Api::Openai => AdapterKind::OpenAI,
            Api::Anthropic => AdapterKind::Anthropic,
        };
        let client = Client::builder()
            .with_adapter_kind(kind)
            .append_provider_config(kind, (Endpoint::from_owned(base_url.clone()), auth))
            .build()
            .map_err(|e| ProviderError::Config(format!("model client: {e}")))?;
        Ok(Self {
            client,
            config,
            base_url,
        })
    }

    /// The model's name.
    pub fn model(&self) -> &str {
        &self.config.model
    }

    fn options(&self) -> ChatOptions {
        ChatOptions::default()
            .with_max_tokens(self.config.max_tokens)
            .with_capture_content(true)
            .with_capture_tool_calls(true)
    }

    /// The error with its causes (reqwest keeps "connection refused" two levels down), and a
    /// hint when the server is not there at all.
    fn failed(&self, error: genai::Error) -> ProviderError {
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !reason.contains(&cause_text) {
                reason.push_str(&format!(": {cause_text}"));
            }
            source = cause.source();
        }
        if reason.contains("error sending request") {
            reason.push_str("\n  hint: is the model server running there? (--base-url)");
        }
        ProviderError::Request {
            url: self.base_url.clone(),
            reason,
        }
    }

    /// One streamed turn: `on_text` sees the answer's text as it arrives.
    pub async fn stream(
        &self,
        system: Option<&str>,
        messages: &[ChatMessage],
        tools: &[Tool],
        mut on_text: impl FnMut(&str),
    ) -> Result<Turn, ProviderError> {
        let mut request = ChatRequest::new(messages.to_vec());
        if let Some(system) = system {
            request = request.with_system(system);
        }
        if !tools.is_empty() {
            request = request.with_tools(tools.to_vec());
        }
        let response = self
            .client
            .exec_chat_stream(&self.config.model, request, Some(&self.options()))
            .await
            .map_err(|e| self.failed(e))?;
        let mut stream = response.stream;
        let mut turn = Turn::default();
        while let Some(event) = stream.next().await {
            match event.map_err(|e| self.failed(e))? {
                ChatStreamEvent::Chunk(chunk) => {
                    on_text(&chunk.content);
                    turn.text.push_str(&chunk.content);
                }
                ChatStreamEvent::End(end) => {
                    if let Some(content) = end.captured_content {
                        turn.tool_calls = content.into_tool_calls();
                    }
                }
                _ => {}
            }
        }
        Ok(turn)
    }

    /// One answer without tools or streaming (for sampling requests).
    pub async fn complete(
        &self,
        system: Option<&str>,
        messages: Vec<ChatMessage>,
        max_tokens: Option<u32>,
    ) -> Result<String, ProviderError> {
        let mut request = ChatRequest::new(messages);
        if let Some(system) = system {
            request = request.with_system(system);
        }
        let mut options = ChatOptions::default().with_max_tokens(self.config.max_tokens);
        if let Some(max_tokens) = max_tokens {
            options = options.with_max_tokens(max_tokens.min(self.config.max_tokens));
        }
        let response = self
            .client
            .exec_chat(&self.config.model, request, Some(&options))
            .await
            .map_err(|e| self.failed(e))?;
        Ok(response.into_texts().join(""))
    }
}
