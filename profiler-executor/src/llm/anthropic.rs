//! Anthropic Messages (`POST {base}/v1/messages`).

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::http::{Endpoint, Reply};
use super::{ApiKey, Completion, LlmClient, LlmError, LlmRequest, LlmResponse, env_value};

/// The default base URL: Anthropic's.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A Messages API client.
#[derive(Clone, Debug)]
pub struct AnthropicClient {
    endpoint: Endpoint,
    key: ApiKey,
}

impl AnthropicClient {
    /// A client for `base_url` with `key` and the default timeout (120 s).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, key: ApiKey) -> Result<Self, LlmError> {
        let endpoint = Endpoint::new(base_url)?;
        Ok(Self { endpoint, key })
    }

    /// From `ANTHROPIC_API_KEY` and `ANTHROPIC_BASE_URL` (default
    /// [`ANTHROPIC_DEFAULT_BASE_URL`]).
    ///
    /// # Errors
    /// [`LlmError::MissingApiKey`] without a key; when the HTTP client cannot be built.
    pub fn from_env() -> Result<Self, LlmError> {
        let key = ApiKey::from_env("ANTHROPIC_API_KEY").ok_or_else(|| LlmError::MissingApiKey {
            env_var: "ANTHROPIC_API_KEY".to_owned(),
        })?;
        let base = env_value("ANTHROPIC_BASE_URL")
            .unwrap_or_else(|| ANTHROPIC_DEFAULT_BASE_URL.to_owned());
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

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let mut body = json!({
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": "user", "content": request.prompt}],
        });
        if let Some(system) = &request.system {
            body["system"] = json!(system);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", self.key.header_value(false)?);
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        let reply = Reply {
            // The text blocks of `content`, joined.
            text: |raw| {
                let blocks = raw.get("content").and_then(Value::as_array)?;
                Some(
                    blocks
                        .iter()
                        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect(),
                )
            },
            missing: "no `content` array (not a Messages answer)",
        };
        self.endpoint
            .post("/v1/messages", headers, &body, Some(&self.key), reply)
            .await
    }
}

impl LlmClient for AnthropicClient {
    fn complete<'a>(&'a self, request: &'a LlmRequest) -> Completion<'a> {
        Box::pin(self.call(request))
    }

    fn describe(&self) -> String {
        let base = self.endpoint.base_url();
        format!("anthropic at {base} (key from {})", self.key.source())
    }
}
