//! Anthropic Messages (`POST {base}/v1/messages`), in one body or streamed.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Map, Value, json};

use super::http::{Endpoint, Reply, Step, StreamDecoder};
use super::sse::SseEvent;
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
        if request.stream {
            body["stream"] = json!(true);
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
        let key = Some(&self.key);
        self.endpoint
            .post_or_stream::<MessageStream>(
                request.stream,
                "/v1/messages",
                headers,
                &body,
                key,
                reply,
            )
            .await
    }
}

/// A Messages stream: `message_start` (the message without content, with the input usage),
/// `content_block_start` / `content_block_delta` (`text_delta`) / `content_block_stop` per
/// block, `message_delta` (stop reason, cumulative usage), `message_stop`; `ping` at any
/// time; `error` when the API fails mid-stream.
#[derive(Default)]
struct MessageStream {
    id: Option<Value>,
    model: Option<Value>,
    stop_reason: Option<Value>,
    usage: Option<Map<String, Value>>,
}

impl MessageStream {
    /// Later counts replace earlier ones: `message_delta`'s are cumulative.
    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(Value::Object(fields)) = usage {
            let merged = self.usage.get_or_insert_with(Map::new);
            for (name, count) in fields {
                if !count.is_null() {
                    merged.insert(name.clone(), count.clone());
                }
            }
        }
    }
}

impl StreamDecoder for MessageStream {
    fn event(&mut self, event: &SseEvent, text: &mut String) -> Step {
        let data: Value = match serde_json::from_str(&event.data) {
            Ok(data) => data,
            Err(e) => return Step::Failed(format!("an event is not JSON ({e})")),
        };
        // The `type` in the data is the API's; `event:` repeats it.
        let kind = data
            .get("type")
            .and_then(Value::as_str)
            .or(event.event.as_deref())
            .unwrap_or_default();
        match kind {
            "message_start" => {
                let message = &data["message"];
                self.id = message.get("id").cloned();
                self.model = message.get("model").cloned();
                self.merge_usage(message.get("usage"));
            }
            "content_block_start" => {
                let block = &data["content_block"];
                if block["type"] == "text"
                    && let Some(start) = block["text"].as_str()
                {
                    text.push_str(start);
                }
            }
            // Thinking and tool-input deltas are not the answer's text.
            "content_block_delta" if data["delta"]["type"] == "text_delta" => {
                if let Some(delta) = data["delta"]["text"].as_str() {
                    text.push_str(delta);
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"].get("stop_reason").filter(|r| !r.is_null()) {
                    self.stop_reason = Some(reason.clone());
                }
                self.merge_usage(data.get("usage"));
            }
            "message_stop" => return Step::Done,
            "error" => {
                let error = &data["error"];
                let kind = error["type"].as_str().unwrap_or("error");
                let message = error["message"].as_str().unwrap_or_default();
                return Step::Failed(format!("the API sent an error event: {kind}: {message}"));
            }
            // `ping`, `content_block_stop`, and event types added later.
            _ => {}
        }
        Step::More
    }

    fn usage(&self) -> Option<Value> {
        let mut usage = self.usage.clone()?;
        // The cache counters mark the object as Anthropic's for the cost tracker, which
        // otherwise could not tell `input_tokens` from the Responses API's (which counts
        // the cache in).
        for counter in ["cache_creation_input_tokens", "cache_read_input_tokens"] {
            usage.entry(counter).or_insert(json!(0));
        }
        Some(Value::Object(usage))
    }

    fn body(&self, text: &str) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": self.stop_reason,
            "usage": self.usage(),
        })
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
