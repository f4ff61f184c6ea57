//! Token usage read from provider responses, normalised to one [`Usage`].
//!
//! The response's shape is found from the fields present (`usage`, `usageMetadata`,
//! `prompt_eval_count`, and markers such as `"type": "message"`); each provider's usage
//! object is then read into a typed struct of its own (`ChatUsage`, `ResponsesUsage`,
//! `AnthropicUsage`, `GeminiUsage`, `OllamaCounts`), whose errors name the field at fault.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CostError;
use super::fields::{Count, n, read};

/// Token counts of one LLM call, normalised across providers.
///
/// The parts nest: `input_tokens` counts every input token, cache reads and cache writes
/// included (what OpenAI calls `prompt_tokens`); `cached_input_tokens` and
/// `cache_creation_input_tokens` are the parts of it read from and written to a prompt
/// cache. `output_tokens` counts every output token, reasoning included;
/// `reasoning_tokens` is the part spent thinking. `total_tokens` is `input + output`.
///
/// How each provider maps onto it:
///
/// | provider | input | cached | cache creation | output | reasoning |
/// |---|---|---|---|---|---|
/// | OpenAI Chat Completions, vLLM, LiteLLM proxy | `prompt_tokens` | `prompt_tokens_details.cached_tokens` | `prompt_tokens_details.cache_creation_tokens` (LiteLLM) | `completion_tokens` | `completion_tokens_details.reasoning_tokens` |
/// | OpenAI Responses | `input_tokens` | `input_tokens_details.cached_tokens` | - | `output_tokens` | `output_tokens_details.reasoning_tokens` |
/// | Anthropic Messages | `input_tokens + cache_read_input_tokens + cache_creation_input_tokens` | `cache_read_input_tokens` | `cache_creation_input_tokens` | `output_tokens` | - (included in output) |
/// | Gemini (`usageMetadata`) | `promptTokenCount + toolUsePromptTokenCount` | `cachedContentTokenCount` | - | `candidatesTokenCount + thoughtsTokenCount` | `thoughtsTokenCount` |
/// | Ollama | `prompt_eval_count` | - | - | `eval_count` | - |
///
/// ```
/// use agent_profiler_runtime::Usage;
/// use serde_json::json;
///
/// let anthropic = json!({
///     "type": "message",
///     "usage": {
///         "input_tokens": 20,
///         "cache_read_input_tokens": 1000,
///         "cache_creation_input_tokens": 300,
///         "output_tokens": 50
///     }
/// });
/// let usage = Usage::from_value(&anthropic).unwrap();
/// assert_eq!(usage.input_tokens, 1320);
/// assert_eq!(usage.cached_input_tokens, 1000);
/// assert_eq!(usage.total_tokens, 1370);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Every input token, cache reads and cache writes included.
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache (part of `input_tokens`).
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache (part of `input_tokens`).
    pub cache_creation_input_tokens: u64,
    /// Cache writes with a one-hour lifetime, which Anthropic bills higher (part of
    /// `cache_creation_input_tokens`).
    #[serde(default)]
    pub cache_creation_1h_input_tokens: u64,
    /// Every output token, reasoning included.
    pub output_tokens: u64,
    /// Output tokens spent on reasoning / thinking (part of `output_tokens`).
    pub reasoning_tokens: u64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u64,
}

/// The response shapes [`Usage`] understands, found from the fields present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    /// OpenAI Chat Completions, and OpenAI-compatible servers (vLLM, LiteLLM proxy, Ollama's
    /// `/v1` endpoint): `usage.prompt_tokens` / `usage.completion_tokens`.
    OpenAiChat,
    /// OpenAI Responses API: `usage.input_tokens` with `input_tokens_details`.
    OpenAiResponses,
    /// Anthropic Messages: `usage.input_tokens` without the cache, and the cache counters.
    Anthropic,
    /// Google Gemini (AI Studio and Vertex): `usageMetadata`.
    Gemini,
    /// Ollama's native API: `prompt_eval_count` / `eval_count`.
    Ollama,
}

const LOOKED_FOR: &str = "`usage` (OpenAI, Anthropic, vLLM, LiteLLM), `usageMetadata` (Gemini) \
     or `prompt_eval_count`/`eval_count` (Ollama)";

impl Usage {
    /// Usage with `input_tokens` in and `output_tokens` out, no cache and no reasoning.
    ///
    /// ```
    /// use agent_profiler_runtime::Usage;
    ///
    /// let usage = Usage::new(1000, 200).with_cached_input(800).with_reasoning(120);
    /// assert_eq!(usage.total_tokens, 1200);
    /// assert!(usage.check().is_ok());
    /// ```
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            ..Self::default()
        }
    }

    /// The same usage, with `tokens` of the input read from the cache.
    pub fn with_cached_input(mut self, tokens: u64) -> Self {
        self.cached_input_tokens = tokens;
        self
    }

    /// The same usage, with `tokens` of the input written to the cache.
    pub fn with_cache_creation(mut self, tokens: u64) -> Self {
        self.cache_creation_input_tokens = tokens;
        self
    }

    /// The same usage, with `tokens` of the output spent on reasoning.
    pub fn with_reasoning(mut self, tokens: u64) -> Self {
        self.reasoning_tokens = tokens;
        self
    }

    /// Input tokens neither read from nor written to the cache.
    pub fn uncached_input_tokens(&self) -> u64 {
        self.input_tokens
            .saturating_sub(self.cached_input_tokens)
            .saturating_sub(self.cache_creation_input_tokens)
    }

    /// Checks that the parts fit in their wholes and that the total adds up.
    ///
    /// # Errors
    /// [`CostError::Malformed`] naming the count that does not fit.
    pub fn check(&self) -> Result<(), CostError> {
        let cache = self
            .cached_input_tokens
            .checked_add(self.cache_creation_input_tokens)
            .ok_or_else(|| malformed("cache token counts overflow"))?;
        if cache > self.input_tokens {
            return Err(malformed(format!(
                "cached ({}) plus cache-creation ({}) input tokens exceed the input tokens ({})",
                self.cached_input_tokens, self.cache_creation_input_tokens, self.input_tokens
            )));
        }
        if self.cache_creation_1h_input_tokens > self.cache_creation_input_tokens {
            return Err(malformed(format!(
                "one-hour cache-creation tokens ({}) exceed the cache-creation tokens ({})",
                self.cache_creation_1h_input_tokens, self.cache_creation_input_tokens
            )));
        }
        if self.reasoning_tokens > self.output_tokens {
            return Err(malformed(format!(
                "reasoning tokens ({}) exceed the output tokens ({})",
                self.reasoning_tokens, self.output_tokens
            )));
        }
        let total = self
            .input_tokens
            .checked_add(self.output_tokens)
            .ok_or_else(|| malformed("input plus output tokens overflow"))?;
        if total != self.total_tokens {
            return Err(malformed(format!(
                "total tokens ({}) are not input ({}) plus output ({})",
                self.total_tokens, self.input_tokens, self.output_tokens
            )));
        }
        Ok(())
    }

    /// Usage from any serializable response: a provider SDK's response type, a
    /// `serde_json::Value`, or the raw response body as a string (`&str`/`String`, parsed as
    /// JSON).
    ///
    /// # Errors
    /// [`CostError::InvalidJson`] for a string that is not JSON, otherwise as
    /// [`from_value`](Self::from_value).
    pub fn from_response<R: Serialize + ?Sized>(response: &R) -> Result<Self, CostError> {
        let value = serde_json::to_value(response).map_err(|e| CostError::Malformed {
            reason: format!("the response could not be serialized to JSON: {e}"),
        })?;
        Self::from_value(&value)
    }

    /// Usage from a response body given as JSON text.
    ///
    /// # Errors
    /// [`CostError::InvalidJson`] when `body` is not JSON, otherwise as
    /// [`from_value`](Self::from_value).
    pub fn from_json_str(body: &str) -> Result<Self, CostError> {
        let value: Value = serde_json::from_str(body).map_err(|e| CostError::InvalidJson {
            reason: e.to_string(),
        })?;
        Self::from_value(&value)
    }

    /// Usage from a response (or its `usage` object alone) as a JSON value. A JSON string is
    /// taken as the response body and parsed.
    ///
    /// # Errors
    /// - [`CostError::MissingUsage`] when no usage is found (for example a streaming chunk,
    ///   or `"usage": null`), or a required count is absent;
    /// - [`CostError::Malformed`] when a count is negative, fractional, of the wrong type,
    ///   or the parts do not fit in their wholes;
    /// - [`CostError::InvalidJson`] for a string that is not JSON.
    pub fn from_value(value: &Value) -> Result<Self, CostError> {
        Self::detect(value).map(|(_, usage)| usage)
    }

    /// Like [`from_value`](Self::from_value), also telling which response shape was
    /// recognised.
    ///
    /// # Errors
    /// As [`from_value`](Self::from_value).
    pub fn detect(value: &Value) -> Result<(ResponseFormat, Self), CostError> {
        let parsed;
        let value = match value {
            Value::String(body) => {
                parsed =
                    serde_json::from_str::<Value>(body).map_err(|e| CostError::InvalidJson {
                        reason: e.to_string(),
                    })?;
                &parsed
            }
            other => other,
        };
        let Value::Object(root) = value else {
            return Err(malformed(format!(
                "the response is a JSON {}, not an object",
                kind(value)
            )));
        };
        let (format, usage) = detect_object(value, root)?;
        usage.check()?;
        Ok((format, usage))
    }
}

/// Finds the usage in a response object by the fields present, and reads it.
fn detect_object(
    response: &Value,
    root: &Map<String, Value>,
) -> Result<(ResponseFormat, Usage), CostError> {
    for key in ["usageMetadata", "usage_metadata"] {
        if let Some(meta) = root.get(key) {
            if meta.is_null() {
                return Err(missing(format!("`{key}` is null")));
            }
            return gemini(read(meta, key)?, key);
        }
    }
    if let Some(usage) = root.get("usage") {
        return match usage {
            Value::Object(fields) => usage_object(usage, fields, root, "usage"),
            Value::Null => Err(missing(
                "`usage` is null (a streaming chunk? OpenAI sends usage in the last chunk \
                 only with `stream_options: {\"include_usage\": true}`)",
            )),
            other => Err(malformed(format!(
                "`usage` is a JSON {}, not an object",
                kind(other)
            ))),
        };
    }
    // Anthropic's streaming `message_start` event nests the message.
    if let Some(Value::Object(message)) = root.get("message")
        && let Some(usage @ Value::Object(fields)) = message.get("usage")
    {
        return usage_object(usage, fields, message, "message.usage");
    }
    if root.contains_key("prompt_eval_count") || root.contains_key("eval_count") {
        return ollama(read(response, "")?);
    }
    // The usage object itself, passed without its response.
    if [
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
    ]
    .iter()
    .any(|k| root.contains_key(*k))
    {
        return usage_object(response, root, root, "usage");
    }
    if root.contains_key("promptTokenCount") || root.contains_key("prompt_token_count") {
        return gemini(read(response, "usageMetadata")?, "usageMetadata");
    }
    if root.get("done") == Some(&Value::Bool(false)) {
        return Err(missing(
            "Ollama `prompt_eval_count`/`eval_count`: this is a streaming chunk with \
             `done: false`; the counts come in the last chunk",
        ));
    }
    Err(missing(LOOKED_FOR))
}

/// A `usage` object (`usage`, the JSON value, whose `fields` are given apart): OpenAI chat,
/// OpenAI Responses or Anthropic, told apart by its fields and by the response's own markers.
fn usage_object(
    usage: &Value,
    fields: &Map<String, Value>,
    response: &Map<String, Value>,
    path: &str,
) -> Result<(ResponseFormat, Usage), CostError> {
    let has = |key: &str| fields.contains_key(key);
    if has("prompt_tokens") || has("completion_tokens") {
        return openai_chat(read(usage, path)?, path).map(|u| (ResponseFormat::OpenAiChat, u));
    }
    if !(has("input_tokens") || has("output_tokens")) {
        return Err(missing(format!(
            "`{path}.prompt_tokens` (OpenAI chat) or `{path}.input_tokens` (Anthropic, OpenAI \
             Responses); `{path}` has none"
        )));
    }
    let marker = |key: &str| response.get(key).and_then(Value::as_str);
    let anthropic_fields = has("cache_read_input_tokens") || has("cache_creation_input_tokens");
    let responses_fields =
        has("input_tokens_details") || has("output_tokens_details") || has("total_tokens");
    let anthropic = if marker("object") == Some("response") {
        false
    } else if marker("type") == Some("message") || marker("role") == Some("assistant") {
        true
    } else if anthropic_fields && responses_fields {
        return Err(malformed(format!(
            "`{path}` has both Anthropic cache counters and OpenAI Responses details; \
             cannot tell whether `input_tokens` includes the cache"
        )));
    } else {
        anthropic_fields
    };
    if anthropic {
        anthropic_usage(read(usage, path)?, path).map(|u| (ResponseFormat::Anthropic, u))
    } else {
        openai_responses(read(usage, path)?).map(|u| (ResponseFormat::OpenAiResponses, u))
    }
}

// The usage shapes, one struct per provider. Fields not listed are ignored (providers add
// counters over time); an absent or null optional count is zero; a required count that is
// absent or null is `MissingUsage`, anything else wrong is `Malformed`, and both name the
// field (see `fields::read`).

/// OpenAI Chat Completions `usage`, which vLLM, the LiteLLM proxy and Ollama's `/v1`
/// endpoint copy.
#[derive(Deserialize)]
#[serde(expecting = "a usage object")]
struct ChatUsage {
    prompt_tokens: Count,
    completion_tokens: Option<Count>,
    /// Only read when `completion_tokens` is absent (embeddings), to check that it equals
    /// `prompt_tokens`.
    total_tokens: Option<Count>,
    prompt_tokens_details: Option<ChatPromptDetails>,
    completion_tokens_details: Option<ReasoningDetails>,
    /// The LiteLLM proxy also copies Anthropic's counters to the top level.
    cache_read_input_tokens: Option<Count>,
    cache_creation_input_tokens: Option<Count>,
}

/// `usage.prompt_tokens_details` of a chat completion.
#[derive(Default, Deserialize)]
#[serde(expecting = "an object of token counts")]
struct ChatPromptDetails {
    cached_tokens: Option<Count>,
    /// Cache writes, as the LiteLLM proxy reports them (`cache_write_tokens` in some
    /// versions).
    cache_creation_tokens: Option<Count>,
    cache_write_tokens: Option<Count>,
}

/// `completion_tokens_details` (chat) and `output_tokens_details` (Responses).
#[derive(Deserialize)]
#[serde(expecting = "an object of token counts")]
struct ReasoningDetails {
    reasoning_tokens: Option<Count>,
}

/// OpenAI Responses API `usage`.
#[derive(Deserialize)]
#[serde(expecting = "a usage object")]
struct ResponsesUsage {
    input_tokens: Count,
    output_tokens: Count,
    input_tokens_details: Option<CachedDetails>,
    output_tokens_details: Option<ReasoningDetails>,
}

/// `usage.input_tokens_details` of a Responses API response.
#[derive(Deserialize)]
#[serde(expecting = "an object of token counts")]
struct CachedDetails {
    cached_tokens: Option<Count>,
}

/// Anthropic Messages `usage`: `input_tokens` leaves out the cache reads and writes.
#[derive(Deserialize)]
#[serde(expecting = "a usage object")]
struct AnthropicUsage {
    input_tokens: Count,
    output_tokens: Count,
    cache_read_input_tokens: Option<Count>,
    cache_creation_input_tokens: Option<Count>,
    /// The cache writes by lifetime.
    cache_creation: Option<AnthropicCacheWrites>,
}

/// `usage.cache_creation` of an Anthropic message.
#[derive(Clone, Copy, Deserialize)]
#[serde(expecting = "an object of token counts")]
struct AnthropicCacheWrites {
    ephemeral_5m_input_tokens: Option<Count>,
    ephemeral_1h_input_tokens: Option<Count>,
}

/// Gemini `usageMetadata`: camelCase from the REST API, snake_case from the Python SDK's
/// `model_dump()`. Gemini leaves out the counts that are zero (no candidates when the whole
/// budget went to thinking, no thoughts without thinking).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a usage object")]
struct GeminiUsage {
    #[serde(alias = "prompt_token_count")]
    prompt_token_count: Count,
    #[serde(alias = "candidates_token_count")]
    candidates_token_count: Option<Count>,
    #[serde(alias = "thoughts_token_count")]
    thoughts_token_count: Option<Count>,
    #[serde(alias = "tool_use_prompt_token_count")]
    tool_use_prompt_token_count: Option<Count>,
    #[serde(alias = "cached_content_token_count")]
    cached_content_token_count: Option<Count>,
}

/// The counts at the top level of an Ollama `/api/chat` or `/api/generate` response. Ollama
/// omits `prompt_eval_count` when the whole prompt came from its cache, and `/api/embed` has
/// no `eval_count`: an absent count of a final response is zero.
#[derive(Deserialize)]
#[serde(expecting = "a response object")]
struct OllamaCounts {
    prompt_eval_count: Option<Count>,
    eval_count: Option<Count>,
}

fn openai_chat(u: ChatUsage, path: &str) -> Result<Usage, CostError> {
    let input = u.prompt_tokens.0;
    let output = match (u.completion_tokens, u.total_tokens) {
        (Some(output), _) => output.0,
        // Embeddings report only prompt and total tokens.
        (None, Some(Count(total))) if total != input => {
            return Err(malformed(format!(
                "`{path}.completion_tokens` is missing and `{path}.total_tokens` ({total}) \
                 differs from `{path}.prompt_tokens` ({input})"
            )));
        }
        (None, _) => 0,
    };
    let details = u.prompt_tokens_details.unwrap_or_default();
    let cached = details.cached_tokens.or(u.cache_read_input_tokens);
    let creation = details
        .cache_creation_tokens
        .or(details.cache_write_tokens)
        .or(u.cache_creation_input_tokens);
    let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
    build(input, n(cached), n(creation), 0, output, n(reasoning))
}

fn openai_responses(u: ResponsesUsage) -> Result<Usage, CostError> {
    let cached = u.input_tokens_details.and_then(|d| d.cached_tokens);
    let reasoning = u.output_tokens_details.and_then(|d| d.reasoning_tokens);
    build(
        u.input_tokens.0,
        n(cached),
        0,
        0,
        u.output_tokens.0,
        n(reasoning),
    )
}

fn anthropic_usage(u: AnthropicUsage, path: &str) -> Result<Usage, CostError> {
    let read = n(u.cache_read_input_tokens);
    let by_lifetime = u.cache_creation;
    let creation = match u.cache_creation_input_tokens {
        Some(Count(c)) => c,
        None => by_lifetime.map_or(0, |w| {
            n(w.ephemeral_5m_input_tokens).saturating_add(n(w.ephemeral_1h_input_tokens))
        }),
    };
    let one_hour = by_lifetime.map_or(0, |w| n(w.ephemeral_1h_input_tokens));
    let input = u
        .input_tokens
        .0
        .checked_add(read)
        .and_then(|i| i.checked_add(creation))
        .ok_or_else(|| malformed(format!("`{path}` input token counts overflow")))?;
    build(input, read, creation, one_hour, u.output_tokens.0, 0)
}

fn gemini(meta: GeminiUsage, path: &str) -> Result<(ResponseFormat, Usage), CostError> {
    let prompt = meta.prompt_token_count.0;
    let cached = n(meta.cached_content_token_count);
    let thoughts = n(meta.thoughts_token_count);
    if cached > prompt {
        return Err(malformed(format!(
            "`{path}.cachedContentTokenCount` ({cached}) exceeds `{path}.promptTokenCount` \
             ({prompt})"
        )));
    }
    let input = prompt
        .checked_add(n(meta.tool_use_prompt_token_count))
        .ok_or_else(|| malformed(format!("`{path}` input token counts overflow")))?;
    let output = n(meta.candidates_token_count)
        .checked_add(thoughts)
        .ok_or_else(|| malformed(format!("`{path}` output token counts overflow")))?;
    build(input, cached, 0, 0, output, thoughts).map(|u| (ResponseFormat::Gemini, u))
}

fn ollama(counts: OllamaCounts) -> Result<(ResponseFormat, Usage), CostError> {
    let (input, output) = (n(counts.prompt_eval_count), n(counts.eval_count));
    build(input, 0, 0, 0, output, 0).map(|u| (ResponseFormat::Ollama, u))
}

fn build(
    input: u64,
    cached: u64,
    creation: u64,
    creation_1h: u64,
    output: u64,
    reasoning: u64,
) -> Result<Usage, CostError> {
    let total = input
        .checked_add(output)
        .ok_or_else(|| malformed("input plus output tokens overflow"))?;
    Ok(Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_creation_input_tokens: creation,
        cache_creation_1h_input_tokens: creation_1h,
        output_tokens: output,
        reasoning_tokens: reasoning,
        total_tokens: total,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn malformed(reason: impl Into<String>) -> CostError {
    CostError::Malformed {
        reason: reason.into(),
    }
}

fn missing(looked_for: impl Into<String>) -> CostError {
    CostError::MissingUsage {
        looked_for: looked_for.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<(ResponseFormat, Usage), CostError> {
        Usage::detect(&v)
    }

    #[test]
    fn openai_chat_with_cache_and_reasoning() {
        let (format, u) = parse(json!({
            "object": "chat.completion",
            "usage": {
                "prompt_tokens": 2006, "completion_tokens": 300, "total_tokens": 2306,
                "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 128, "audio_tokens": 0}
            }
        }))
        .unwrap();
        assert_eq!(format, ResponseFormat::OpenAiChat);
        assert_eq!(
            u,
            Usage::new(2006, 300)
                .with_cached_input(1920)
                .with_reasoning(128)
        );
    }

    #[test]
    fn null_details_and_embeddings() {
        let u = Usage::from_value(&json!({"usage": {
            "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": null, "completion_tokens_details": null
        }}))
        .unwrap();
        assert_eq!(u, Usage::new(10, 5));
        let embedding = json!({"object": "list", "usage": {"prompt_tokens": 8, "total_tokens": 8}});
        assert_eq!(Usage::from_value(&embedding).unwrap(), Usage::new(8, 0));
        let inconsistent = json!({"usage": {"prompt_tokens": 8, "total_tokens": 9}});
        assert!(matches!(
            Usage::from_value(&inconsistent),
            Err(CostError::Malformed { .. })
        ));
    }

    #[test]
    fn litellm_proxy_anthropic_counters() {
        let u = Usage::from_value(&json!({"usage": {
            "prompt_tokens": 1320, "completion_tokens": 50, "total_tokens": 1370,
            "prompt_tokens_details": {"cached_tokens": 1000, "cache_creation_tokens": 300},
            "cache_creation_input_tokens": 300, "cache_read_input_tokens": 1000
        }}))
        .unwrap();
        assert_eq!(
            u,
            Usage::new(1320, 50)
                .with_cached_input(1000)
                .with_cache_creation(300)
        );
    }

    #[test]
    fn responses_and_anthropic_are_told_apart() {
        let (format, u) = parse(json!({"object": "response", "usage": {
            "input_tokens": 100, "output_tokens": 20,
            "input_tokens_details": {"cached_tokens": 64},
            "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 120
        }}))
        .unwrap();
        assert_eq!(format, ResponseFormat::OpenAiResponses);
        assert_eq!(
            u,
            Usage::new(100, 20).with_cached_input(64).with_reasoning(12)
        );

        let (format, u) = parse(json!({"usage": {
            "input_tokens": 100, "output_tokens": 20, "cache_read_input_tokens": 64
        }}))
        .unwrap();
        assert_eq!(format, ResponseFormat::Anthropic);
        assert_eq!(u, Usage::new(164, 20).with_cached_input(64));

        let ambiguous = json!({"usage": {
            "input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": 1,
            "input_tokens_details": {"cached_tokens": 1}
        }});
        assert!(matches!(parse(ambiguous), Err(CostError::Malformed { .. })));
    }

    #[test]
    fn anthropic_one_hour_cache_writes() {
        let u = Usage::from_value(&json!({"type": "message", "usage": {
            "input_tokens": 10, "output_tokens": 5,
            "cache_creation_input_tokens": 300, "cache_read_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}
        }}))
        .unwrap();
        assert_eq!(u.input_tokens, 310);
        assert_eq!(u.cache_creation_input_tokens, 300);
        assert_eq!(u.cache_creation_1h_input_tokens, 200);
    }

    #[test]
    fn anthropic_message_start_event() {
        let u = Usage::from_value(&json!({"type": "message_start", "message": {
            "type": "message", "role": "assistant",
            "usage": {"input_tokens": 25, "output_tokens": 1}
        }}))
        .unwrap();
        assert_eq!(u, Usage::new(25, 1));
    }

    #[test]
    fn gemini_camel_and_snake_case() {
        let camel = json!({"usageMetadata": {
            "promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 40, "toolUsePromptTokenCount": 5, "totalTokenCount": 155
        }});
        let snake = json!({"usage_metadata": {
            "prompt_token_count": 100, "candidates_token_count": 20, "thoughts_token_count": 30,
            "cached_content_token_count": 40, "tool_use_prompt_token_count": 5
        }});
        let want = Usage::new(105, 50).with_cached_input(40).with_reasoning(30);
        assert_eq!(parse(camel).unwrap(), (ResponseFormat::Gemini, want));
        assert_eq!(parse(snake).unwrap(), (ResponseFormat::Gemini, want));
        // All of the budget spent thinking: no candidatesTokenCount.
        let thinking_only =
            json!({"usageMetadata": {"promptTokenCount": 7, "thoughtsTokenCount": 9}});
        assert_eq!(
            Usage::from_value(&thinking_only).unwrap(),
            Usage::new(7, 9).with_reasoning(9)
        );
    }

    #[test]
    fn ollama_counts_and_streaming_chunks() {
        let u = Usage::from_value(&json!({
            "model": "llama3.2", "done": true, "prompt_eval_count": 26, "eval_count": 298
        }))
        .unwrap();
        assert_eq!(u, Usage::new(26, 298));
        let cached_prompt = json!({"done": true, "eval_count": 12});
        assert_eq!(
            Usage::from_value(&cached_prompt).unwrap(),
            Usage::new(0, 12)
        );
        let chunk = json!({"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": false});
        assert!(matches!(
            Usage::from_value(&chunk),
            Err(CostError::MissingUsage { .. })
        ));
    }

    #[test]
    fn bare_usage_objects() {
        let u = Usage::from_value(&json!({"prompt_tokens": 3, "completion_tokens": 4})).unwrap();
        assert_eq!(u, Usage::new(3, 4));
        let u =
            Usage::from_value(&json!({"promptTokenCount": 3, "candidatesTokenCount": 4})).unwrap();
        assert_eq!(u, Usage::new(3, 4));
    }

    #[test]
    fn missing_usage_is_an_error_never_zero() {
        for response in [
            json!({}),
            json!({"id": "chatcmpl-1", "choices": []}),
            json!({"usage": null}),
            json!({"usage": {}}),
            json!({"usageMetadata": {}}),
            json!({"usage": {"completion_tokens": 3}}),
            json!({"type": "message_delta", "usage": {"output_tokens": 15}}),
        ] {
            let got = Usage::from_value(&response);
            assert!(
                matches!(got, Err(CostError::MissingUsage { .. })),
                "{response}: {got:?}"
            );
        }
    }

    #[test]
    fn bad_counts_are_malformed() {
        for response in [
            json!({"usage": {"prompt_tokens": -5, "completion_tokens": 1}}),
            json!({"usage": {"prompt_tokens": 1.5, "completion_tokens": 1}}),
            json!({"usage": {"prompt_tokens": "12", "completion_tokens": 1}}),
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": 11}}}),
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                "completion_tokens_details": {"reasoning_tokens": 2}}}),
            json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                "prompt_tokens_details": 3}}),
            json!({"usage": [1, 2]}),
            json!({"usage": {"prompt_tokens": u64::MAX, "completion_tokens": 1}}),
            json!({"usageMetadata": {"promptTokenCount": 1, "cachedContentTokenCount": 2}}),
            json!([1, 2, 3]),
        ] {
            let got = Usage::from_value(&response);
            assert!(
                matches!(got, Err(CostError::Malformed { .. })),
                "{response}: {got:?}"
            );
        }
        let integral = json!({"usage": {"prompt_tokens": 12.0, "completion_tokens": 1}});
        assert_eq!(Usage::from_value(&integral).unwrap(), Usage::new(12, 1));
    }

    #[test]
    fn errors_name_the_field_they_are_about() {
        let reason = |v: Value| match Usage::from_value(&v) {
            Err(CostError::Malformed { reason }) => reason,
            other => panic!("{v}: {other:?}"),
        };
        let looked_for = |v: Value| match Usage::from_value(&v) {
            Err(CostError::MissingUsage { looked_for }) => looked_for,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(
            reason(json!({"usage": {"prompt_tokens": "12", "completion_tokens": 1}})),
            "`usage.prompt_tokens`: invalid type: string \"12\", expected a token count \
             (a non-negative integer)"
        );
        assert_eq!(
            reason(
                json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                "prompt_tokens_details": {"cached_tokens": -3}}})
            ),
            "`usage.prompt_tokens_details.cached_tokens`: invalid value: integer `-3`, \
             expected a token count (a non-negative integer)"
        );
        assert_eq!(
            reason(
                json!({"usage": {"prompt_tokens": 10, "completion_tokens": 1,
                "prompt_tokens_details": 3}})
            ),
            "`usage.prompt_tokens_details`: invalid type: integer `3`, expected an object of \
             token counts"
        );
        assert!(
            reason(
                json!({"type": "message", "usage": {"input_tokens": 1, "output_tokens": 1,
                "cache_creation": {"ephemeral_1h_input_tokens": 0.5}}})
            )
            .starts_with("`usage.cache_creation.ephemeral_1h_input_tokens`: invalid value")
        );
        assert!(
            reason(json!({"usageMetadata": {"promptTokenCount": [1]}}))
                .starts_with("`usageMetadata.promptTokenCount`: invalid type: sequence")
        );
        assert!(reason(json!({"done": true, "eval_count": true})).starts_with("`eval_count`: "));
        assert_eq!(
            reason(json!({"usageMetadata": "none"})),
            "`usageMetadata`: invalid type: string \"none\", expected a usage object"
        );

        // A required count absent or null is missing usage, named.
        assert_eq!(
            looked_for(json!({"usage": {"completion_tokens": 3}})),
            "`usage.prompt_tokens`"
        );
        assert_eq!(
            looked_for(json!({"usage": {"prompt_tokens": null, "completion_tokens": 3}})),
            "`usage.prompt_tokens`"
        );
        assert_eq!(
            looked_for(
                json!({"type": "message_start", "message": {"type": "message",
                "usage": {"output_tokens": 1}}})
            ),
            "`message.usage.input_tokens`"
        );
        assert_eq!(
            looked_for(json!({"usage_metadata": {"candidates_token_count": 1}})),
            "`usage_metadata.promptTokenCount`"
        );
    }

    #[test]
    fn fields_no_shape_names_are_ignored() {
        // Anthropic's service tier and server tool counters, Gemini's per-modality arrays.
        let anthropic = json!({"type": "message", "usage": {
            "input_tokens": 10, "output_tokens": 5, "service_tier": "standard",
            "server_tool_use": {"web_search_requests": 1}
        }});
        assert_eq!(Usage::from_value(&anthropic).unwrap(), Usage::new(10, 5));
        let gemini = json!({"usageMetadata": {
            "promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 4}]
        }});
        assert_eq!(Usage::from_value(&gemini).unwrap(), Usage::new(4, 2));
        // Optional counts and detail objects may be null.
        let nulls = json!({"object": "response", "usage": {
            "input_tokens": 3, "output_tokens": 2, "input_tokens_details": null,
            "output_tokens_details": {"reasoning_tokens": null}
        }});
        assert_eq!(Usage::from_value(&nulls).unwrap(), Usage::new(3, 2));
    }

    #[test]
    fn strings_are_response_bodies() {
        let body = r#"{"usage": {"prompt_tokens": 5, "completion_tokens": 6}}"#;
        assert_eq!(Usage::from_response(body).unwrap(), Usage::new(5, 6));
        assert_eq!(Usage::from_json_str(body).unwrap(), Usage::new(5, 6));
        for bad in [r#"{"usage": "#, "not json", ""] {
            assert!(matches!(
                Usage::from_response(bad),
                Err(CostError::InvalidJson { .. })
            ));
        }
    }

    #[test]
    fn typed_responses_serialize() {
        #[derive(Serialize)]
        struct Details {
            cached_tokens: u32,
        }
        #[derive(Serialize)]
        struct MyUsage {
            prompt_tokens: u32,
            completion_tokens: u32,
            prompt_tokens_details: Option<Details>,
        }
        #[derive(Serialize)]
        struct MyResponse {
            id: String,
            usage: Option<MyUsage>,
        }
        let typed = MyResponse {
            id: "x".into(),
            usage: Some(MyUsage {
                prompt_tokens: 50,
                completion_tokens: 7,
                prompt_tokens_details: Some(Details { cached_tokens: 32 }),
            }),
        };
        assert_eq!(
            Usage::from_response(&typed).unwrap(),
            Usage::new(50, 7).with_cached_input(32)
        );
        let none = MyResponse {
            id: "x".into(),
            usage: None,
        };
        assert!(matches!(
            Usage::from_response(&none),
            Err(CostError::MissingUsage { .. })
        ));
    }
}
