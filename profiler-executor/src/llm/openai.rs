//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`).

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};

use super::http::{Endpoint, Reply};
use super::{ApiKey, Completion, LlmClient, LlmError, LlmRequest, LlmResponse, env_value};

/// The default base URL: OpenAI's.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions client for OpenAI and compatible servers (vLLM, Ollama's `/v1`,
/// LiteLLM proxy). The key is optional: local servers often need none.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    endpoint: Endpoint,
    key: Option<ApiKey>,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `http://localhost:11434/v1`) with an optional key and
    /// the default timeout (120 s).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, key: Option<ApiKey>) -> Result<Self, LlmError> {
        let endpoint = Endpoint::new(base_url)?;
        Ok(Self { endpoint, key })
    }

    /// From `OPENAI_BASE_URL` (default [`OPENAI_DEFAULT_BASE_URL`]) and `OPENAI_API_KEY`.
    ///
    /// # Errors
    /// [`LlmError::MissingApiKey`] when the base URL is OpenAI's and no key is set; when
    /// the HTTP client cannot be built.
    pub fn from_env() -> Result<Self, LlmError> {
        let base =
            env_value("OPENAI_BASE_URL").unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.to_owned());
        let key = ApiKey::from_env("OPENAI_API_KEY");
        if key.is_none() && base.trim_end_matches('/') == OPENAI_DEFAULT_BASE_URL {
            return Err(LlmError::MissingApiKey {
                env_var: "OPENAI_API_KEY".to_owned(),
            });
        }
        Self::new(&base, key)
    }

    /// Another request timeout.
    ///
    /// # Errors
    /// When the HTTP client cannot be rebuilt.
    pub fn with_timeout(self, timeout: Duration) -> Result<Self, LlmError> {
        let endpoint = self.endpoint.with_timeout(timeout)?;
        Ok(Self { endpoint, ..self })
    }

    /// The base URL, its user info (a password, a token) hidden.
    pub fn base_url(&self) -> &str {
        self.endpoint.base_url()
    }

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let mut messages = Vec::new();
        if let Some(system) = &request.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": request.prompt}));
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        });
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let mut headers = HeaderMap::new();
        if let Some(key) = &self.key {
            headers.insert(AUTHORIZATION, key.header_value(true)?);
        }
        let reply = Reply {
            text: |raw| {
                raw.pointer("/choices/0/message/content")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            },
            missing: "no `choices[0].message.content` string (not a Chat Completions answer)",
        };
        let key = self.key.as_ref();
        self.endpoint
            .post("/chat/completions", headers, &body, key, reply)
            .await
    }
}

impl LlmClient for OpenAiClient {
    fn complete<'a>(&'a self, request: &'a LlmRequest) -> Completion<'a> {
        Box::pin(self.call(request))
    }

    fn describe(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "openai-compatible at {} (key from {})",
                self.base_url(),
                key.source()
            ),
            None => format!("openai-compatible at {} (no key)", self.base_url()),
        }
    }
}
