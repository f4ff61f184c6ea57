//! OpenAI-compatible Chat Completions (`POST {base}/chat/completions`), in one body or
//! streamed.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde_json::{Value, json};

use super::http::{Endpoint, Reply, Step, StreamDecoder};
use super::sse::SseEvent;
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
        if request.stream {
            // Without `include_usage` a stream says nothing of its tokens: the call could not
            // be priced.
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
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
            .post_or_stream::<ChatStream>(
                request.stream,
                "/chat/completions",
                headers,
                &body,
                key,
                reply,
            )
            .await
    }
}

/// A Chat Completions stream: `data:` chunks whose `choices[0].delta.content` is the next
/// text, a last chunk with `usage` (and no choices), then `data: [DONE]`.
#[derive(Default)]
struct ChatStream {
    id: Option<Value>,
    model: Option<Value>,
    finish_reason: Option<Value>,
    usage: Option<Value>,
}

impl StreamDecoder for ChatStream {
    fn event(&mut self, event: &SseEvent, text: &mut String) -> Step {
        let data = event.data.trim();
        if data == "[DONE]" {
            return Step::Done;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(e) => return Step::Failed(format!("a chunk is not JSON ({e})")),
        };
        // Servers that fail mid-stream (OpenAI, vLLM, LiteLLM) send `{"error": {...}}`.
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            return Step::Failed(format!("the server sent an error: {message}"));
        }
        for (field, slot) in [("id", &mut self.id), ("model", &mut self.model)] {
            if slot.is_none() {
                *slot = chunk.get(field).filter(|v| !v.is_null()).cloned();
            }
        }
        if let Some(choice) = chunk.pointer("/choices/0") {
            if let Some(delta) = choice.pointer("/delta/content").and_then(Value::as_str) {
                text.push_str(delta);
            }
            if let Some(reason) = choice.get("finish_reason").filter(|r| !r.is_null()) {
                self.finish_reason = Some(reason.clone());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        Step::More
    }

    fn usage(&self) -> Option<Value> {
        self.usage.clone()
    }

    fn body(&self, text: &str) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.finish_reason,
            }],
            // `null` when the server sent none: the cost tracker's error then names
            // `include_usage`, which such a server ignored.
            "usage": self.usage,
        })
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
