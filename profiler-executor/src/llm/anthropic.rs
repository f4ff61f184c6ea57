//! Anthropic Messages (`POST {base}/v1/messages`).

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{DEFAULT_TIMEOUT, build_client, post_json, snippet};
use super::{ApiKey, BoxFuture, LlmClient, LlmError, LlmRequest, LlmResponse};

/// The default base URL: Anthropic's.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// A Messages API client.
#[derive(Clone, Debug)]
pub struct AnthropicClient {
    base_url: String,
    key: ApiKey,
    timeout: Duration,
    http: reqwest::Client,
}

impl AnthropicClient {
    /// A client for `base_url` with `key` and the default timeout (120 s).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, key: ApiKey) -> Result<Self, LlmError> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            timeout: DEFAULT_TIMEOUT,
            http: build_client(DEFAULT_TIMEOUT)?,
        })
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
        let base = std::env::var("ANTHROPIC_BASE_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| ANTHROPIC_DEFAULT_BASE_URL.to_owned());
        Self::new(&base, key)
    }

    /// Another request timeout.
    ///
    /// # Errors
    /// When the HTTP client cannot be rebuilt.
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, LlmError> {
        self.timeout = timeout;
        self.http = build_client(timeout)?;
        Ok(self)
    }

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let url = format!("{}/v1/messages", self.base_url);
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
        let mut value =
            reqwest::header::HeaderValue::from_str(self.key.expose()).map_err(|_| {
                LlmError::Other {
                    message: format!(
                        "the API key from {} contains characters not allowed in an HTTP header",
                        self.key.source()
                    ),
                }
            })?;
        value.set_sensitive(true);
        let builder = self
            .http
            .post(&url)
            .header("x-api-key", value)
            .header("anthropic-version", ANTHROPIC_VERSION)
            .json(&body);
        let raw = post_json(builder, &url, self.timeout, Some(&self.key)).await?;
        let text: Option<String> = raw.get("content").and_then(Value::as_array).map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect()
        });
        match text {
            Some(text) => Ok(LlmResponse {
                text,
                model: raw
                    .get("model")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                raw,
                simulated: false,
            }),
            None => Err(LlmError::BadBody {
                url,
                reason: "no `content` array (not a Messages answer)".to_owned(),
                body: snippet(&raw.to_string(), Some(&self.key)),
                usage: raw.get("usage").cloned(),
            }),
        }
    }
}

impl LlmClient for AnthropicClient {
    fn complete<'a>(
        &'a self,
        request: &'a LlmRequest,
    ) -> BoxFuture<'a, Result<LlmResponse, LlmError>> {
        Box::pin(self.call(request))
    }

    fn describe(&self) -> String {
        format!(
            "anthropic at {} (key from {})",
            self.base_url,
            self.key.source()
        )
    }
}
