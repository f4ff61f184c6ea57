//! Token usage read from provider responses, normalised to one [`Usage`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::CostError;

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
        let (format, usage) = detect_object(root)?;
        usage.check()?;
        Ok((format, usage))
    }
}

fn detect_object(root: &Map<String, Value>) -> Result<(ResponseFormat, Usage), CostError> {
    for key in ["usageMetadata", "usage_metadata"] {
        if let Some(meta) = root.get(key) {
            return match meta {
                Value::Object(meta) => gemini(meta, key),
                Value::Null => Err(missing(format!("`{key}` is null"))),
                other => Err(malformed(format!(
                    "`{key}` is a JSON {}, not an object",
                    kind(other)
                ))),
            };
        }
    }
    if let Some(usage) = root.get("usage") {
        return match usage {
            Value::Object(usage) => usage_object(usage, root, "usage"),
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
        && let Some(Value::Object(usage)) = message.get("usage")
    {
        return usage_object(usage, message, "message.usage");
    }
    if root.contains_key("prompt_eval_count") || root.contains_key("eval_count") {
        return ollama(root);
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
        return usage_object(root, root, "usage");
    }
    if root.contains_key("promptTokenCount") || root.contains_key("prompt_token_count") {
        return gemini(root, "usageMetadata");
    }
    if root.get("done") == Some(&Value::Bool(false)) {
        return Err(missing(
            "Ollama `prompt_eval_count`/`eval_count`: this is a streaming chunk with \
             `done: false`; the counts come in the last chunk",
        ));
    }
    Err(missing(LOOKED_FOR))
}

/// A `usage` object: OpenAI chat, OpenAI Responses or Anthropic, told apart by its fields
/// and by the response's own markers.
fn usage_object(
    usage: &Map<String, Value>,
    response: &Map<String, Value>,
    path: &str,
) -> Result<(ResponseFormat, Usage), CostError> {
    if usage.contains_key("prompt_tokens") || usage.contains_key("completion_tokens") {
        return openai_chat(usage, path).map(|u| (ResponseFormat::OpenAiChat, u));
    }
    if !(usage.contains_key("input_tokens") || usage.contains_key("output_tokens")) {
        return Err(missing(format!(
            "`{path}.prompt_tokens` (OpenAI chat) or `{path}.input_tokens` (Anthropic, OpenAI \
             Responses); `{path}` has none"
        )));
    }
    let marker = |key: &str| response.get(key).and_then(Value::as_str);
    let anthropic_fields = ["cache_read_input_tokens", "cache_creation_input_tokens"]
        .iter()
        .any(|k| usage.contains_key(*k));
    let responses_fields = [
        "input_tokens_details",
        "output_tokens_details",
        "total_tokens",
    ]
    .iter()
    .any(|k| usage.contains_key(*k));
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
        anthropic_usage(usage, path).map(|u| (ResponseFormat::Anthropic, u))
    } else {
        openai_responses(usage, path).map(|u| (ResponseFormat::OpenAiResponses, u))
    }
}

fn openai_chat(usage: &Map<String, Value>, path: &str) -> Result<Usage, CostError> {
    let input = required(usage, path, "prompt_tokens")?;
    let output = match count(usage, path, "completion_tokens")? {
        Some(output) => output,
        // Embeddings report only prompt and total tokens.
        None => match count(usage, path, "total_tokens")? {
            Some(total) if total != input => {
                return Err(malformed(format!(
                    "`{path}.completion_tokens` is missing and `{path}.total_tokens` ({total}) \
                     differs from `{path}.prompt_tokens` ({input})"
                )));
            }
            _ => 0,
        },
    };
    let details_path = format!("{path}.prompt_tokens_details");
    let details = object(usage, path, "prompt_tokens_details")?;
    let detail = |key: &str| match details {
        Some(d) => count(d, &details_path, key),
        None => Ok(None),
    };
    // LiteLLM's proxy also copies Anthropic's counters to the top level of `usage`.
    let cached = match detail("cached_tokens")? {
        Some(c) => c,
        None => count(usage, path, "cache_read_input_tokens")?.unwrap_or(0),
    };
    let creation = match detail("cache_creation_tokens")? {
        Some(c) => c,
        None => match detail("cache_write_tokens")? {
            Some(c) => c,
            None => count(usage, path, "cache_creation_input_tokens")?.unwrap_or(0),
        },
    };
    let completion_path = format!("{path}.completion_tokens_details");
    let reasoning = match object(usage, path, "completion_tokens_details")? {
        Some(d) => count(d, &completion_path, "reasoning_tokens")?.unwrap_or(0),
        None => 0,
    };
    build(input, cached, creation, 0, output, reasoning)
}

fn openai_responses(usage: &Map<String, Value>, path: &str) -> Result<Usage, CostError> {
    let input = required(usage, path, "input_tokens")?;
    let output = required(usage, path, "output_tokens")?;
    let input_path = format!("{path}.input_tokens_details");
    let cached = match object(usage, path, "input_tokens_details")? {
        Some(d) => count(d, &input_path, "cached_tokens")?.unwrap_or(0),
        None => 0,
    };
    let output_path = format!("{path}.output_tokens_details");
    let reasoning = match object(usage, path, "output_tokens_details")? {
        Some(d) => count(d, &output_path, "reasoning_tokens")?.unwrap_or(0),
        None => 0,
    };
    build(input, cached, 0, 0, output, reasoning)
}

fn anthropic_usage(usage: &Map<String, Value>, path: &str) -> Result<Usage, CostError> {
    let uncached = required(usage, path, "input_tokens")?;
    let output = required(usage, path, "output_tokens")?;
    let read = count(usage, path, "cache_read_input_tokens")?.unwrap_or(0);
    let by_ttl_path = format!("{path}.cache_creation");
    let by_ttl = match object(usage, path, "cache_creation")? {
        Some(d) => Some((
            count(d, &by_ttl_path, "ephemeral_5m_input_tokens")?.unwrap_or(0),
            count(d, &by_ttl_path, "ephemeral_1h_input_tokens")?.unwrap_or(0),
        )),
        None => None,
    };
    let creation = match count(usage, path, "cache_creation_input_tokens")? {
        Some(c) => c,
        None => by_ttl.map_or(0, |(m5, h1)| m5.saturating_add(h1)),
    };
    let one_hour = by_ttl.map_or(0, |(_, h1)| h1);
    let input = uncached
        .checked_add(read)
        .and_then(|n| n.checked_add(creation))
        .ok_or_else(|| malformed(format!("`{path}` input token counts overflow")))?;
    build(input, read, creation, one_hour, output, 0)
}

fn gemini(meta: &Map<String, Value>, path: &str) -> Result<(ResponseFormat, Usage), CostError> {
    // camelCase from the REST API, snake_case from the Python SDK's `model_dump()`.
    let get = |camel: &str, snake: &str| -> Result<Option<u64>, CostError> {
        match count(meta, path, camel)? {
            Some(n) => Ok(Some(n)),
            None => count(meta, path, snake),
        }
    };
    let prompt = get("promptTokenCount", "prompt_token_count")?
        .ok_or_else(|| missing(format!("`{path}.promptTokenCount`")))?;
    // Gemini leaves out the counts that are zero (no candidates when the budget went to
    // thinking, no thoughts without thinking).
    let candidates = get("candidatesTokenCount", "candidates_token_count")?.unwrap_or(0);
    let thoughts = get("thoughtsTokenCount", "thoughts_token_count")?.unwrap_or(0);
    let tool_prompt = get("toolUsePromptTokenCount", "tool_use_prompt_token_count")?.unwrap_or(0);
    let cached = get("cachedContentTokenCount", "cached_content_token_count")?.unwrap_or(0);
    if cached > prompt {
        return Err(malformed(format!(
            "`{path}.cachedContentTokenCount` ({cached}) exceeds `{path}.promptTokenCount` \
             ({prompt})"
        )));
    }
    let input = prompt
        .checked_add(tool_prompt)
        .ok_or_else(|| malformed(format!("`{path}` input token counts overflow")))?;
    let output = candidates
        .checked_add(thoughts)
        .ok_or_else(|| malformed(format!("`{path}` output token counts overflow")))?;
    build(input, cached, 0, 0, output, thoughts).map(|u| (ResponseFormat::Gemini, u))
}

fn ollama(root: &Map<String, Value>) -> Result<(ResponseFormat, Usage), CostError> {
    // Ollama omits `prompt_eval_count` when the whole prompt came from its cache, and
    // `/api/embed` has no `eval_count`: an absent count of a final response is zero.
    let input = count(root, "", "prompt_eval_count")?.unwrap_or(0);
    let output = count(root, "", "eval_count")?.unwrap_or(0);
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

fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A required token count.
fn required(map: &Map<String, Value>, path: &str, key: &str) -> Result<u64, CostError> {
    count(map, path, key)?.ok_or_else(|| missing(format!("`{}`", field_path(path, key))))
}

/// A token count: absent or null is `None`; a non-negative integer (also written as `12.0`)
/// is the count; anything else is malformed.
fn count(map: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>, CostError> {
    let bad = |what: String| {
        malformed(format!(
            "`{}` is {what}: token counts are non-negative integers",
            field_path(path, key)
        ))
    };
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(n) = n.as_u64() {
                return Ok(Some(n));
            }
            match n.as_f64() {
                // Integral floats up to 2^53 are exact.
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0 => {
                    Ok(Some(f as u64))
                }
                _ => Err(bad(n.to_string())),
            }
        }
        Some(other) => Err(bad(format!("a JSON {} ({other})", kind(other)))),
    }
}

/// An optional nested object: absent or null is `None`.
fn object<'a>(
    map: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, CostError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(malformed(format!(
            "`{}` is a JSON {}, not an object",
            field_path(path, key),
            kind(other)
        ))),
    }
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
