//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`).

use std::time::Duration;

use serde_json::{Value, json};

use super::http::{DEFAULT_TIMEOUT, build_client, post_json, snippet};
use super::{ApiKey, BoxFuture, LlmClient, LlmError, LlmRequest, LlmResponse};

/// The default base URL: OpenAI's.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// A Chat Completions client for OpenAI and compatible servers (vLLM, Ollama's `/v1`,
/// LiteLLM proxy). The key is optional: local servers often need none.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    base_url: String,
    key: Option<ApiKey>,
    timeout: Duration,
    http: reqwest::Client,
}

impl OpenAiClient {
    /// A client for `base_url` (e.g. `http://localhost:11434/v1`) with an optional key and
    /// the default timeout (120 s).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(base_url: &str, key: Option<ApiKey>) -> Result<Self, LlmError> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            timeout: DEFAULT_TIMEOUT,
            http: build_client(DEFAULT_TIMEOUT)?,
        })
    }

    /// From `OPENAI_BASE_URL` (default [`OPENAI_DEFAULT_BASE_URL`]) and `OPENAI_API_KEY`.
    ///
    /// # Errors
    /// [`LlmError::MissingApiKey`] when the base URL is OpenAI's and no key is set; when
    /// the HTTP client cannot be built.
    pub fn from_env() -> Result<Self, LlmError> {
        let base = std::env::var("OPENAI_BASE_URL")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| OPENAI_DEFAULT_BASE_URL.to_owned());
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
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, LlmError> {
        self.timeout = timeout;
        self.http = build_client(timeout)?;
        Ok(self)
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let url = format!("{}/chat/completions", self.base_url);
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
        let mut builder = self.http.post(&url).json(&body);
        if let Some(key) = &self.key {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| LlmError::Other {
                        message: format!(
                            "the API key from {} contains characters not allowed in an HTTP header",
                            key.source()
                        ),
                    })?;
            value.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        let raw = post_json(builder, &url, self.timeout, self.key.as_ref()).await?;
        parse(&url, raw, self.key.as_ref())
    }
}

/// The text of a Chat Completions body.
fn parse(url: &str, raw: Value, key: Option<&ApiKey>) -> Result<LlmResponse, LlmError> {
    let text = raw
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .map(str::to_owned);
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
            url: url.to_owned(),
            reason: "no `choices[0].message.content` string (not a Chat Completions answer)"
                .to_owned(),
            body: snippet(&raw.to_string(), key),
            usage: raw.get("usage").cloned(),
        }),
    }
}

impl LlmClient for OpenAiClient {
    fn complete<'a>(
        &'a self,
        request: &'a LlmRequest,
    ) -> BoxFuture<'a, Result<LlmResponse, LlmError>> {
        Box::pin(self.call(request))
    }

    fn describe(&self) -> String {
        match &self.key {
            Some(key) => format!(
                "openai-compatible at {} (key from {})",
                self.base_url,
                key.source()
            ),
            None => format!("openai-compatible at {} (no key)", self.base_url),
        }
    }
}
