//! The GenAI attributes the layer reads, gathered from a span's creation and from every
//! later `record`, and what they make of a [`Usage`].

use std::fmt;

use agent_profiler_runtime::Usage;
use tracing_core::field::{Field, Visit};

/// Strings kept from a span (model, provider, error, tool name) are cut to this many bytes:
/// a span's state must stay small whatever a framework records.
pub(crate) const MAX_TEXT_LEN: usize = 200;

/// What a span's `gen_ai.operation.name` makes of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A request to a model: timed, counted and priced.
    Llm,
    /// `execute_tool`: a tool call of the node.
    Tool,
    /// Any other operation (`invoke_agent`, `create_agent`, ...): not a call of its own.
    Other,
}

/// The operations that are one request to a model. `chat_streaming` is rig's name for a
/// streamed chat in the releases before it moved streaming to `gen_ai.request.stream`.
pub(crate) fn kind_of(operation: &str) -> Kind {
    match operation {
        "chat" | "chat_streaming" | "text_completion" | "generate_content" | "embeddings" => {
            Kind::Llm
        }
        "execute_tool" => Kind::Tool,
        _ => Kind::Other,
    }
}

/// The provider names of the OpenTelemetry GenAI conventions (which genai emits) differ from
/// the pricing table's LiteLLM names for a few providers; any other name passes through
/// lower-cased.
pub(crate) fn pricing_provider(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let mapped = match lower.as_str() {
        "gcp.gemini" | "gcp.gen_ai" => "gemini",
        "gcp.vertex_ai" => "vertex_ai",
        "aws.bedrock" => "bedrock",
        "azure.ai.openai" => "azure",
        "azure.ai.inference" => "azure_ai",
        "mistral_ai" => "mistral",
        "x_ai" => "xai",
        "moonshot_ai" => "moonshot",
        "ibm.watsonx.ai" => "watsonx",
        _ => return lower,
    };
    mapped.to_owned()
}

/// Every GenAI attribute of one span the layer cares about, as last recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct GenAiFields {
    pub(crate) kind: Option<Kind>,
    pub(crate) stream: Option<bool>,
    /// `gen_ai.provider.name`, the current convention's name.
    pub(crate) provider_name: Option<String>,
    /// `gen_ai.system`, the older convention's name: used when the newer one is absent.
    pub(crate) system: Option<String>,
    pub(crate) request_model: Option<String>,
    pub(crate) response_model: Option<String>,
    pub(crate) input_tokens: Option<u64>,
    pub(crate) output_tokens: Option<u64>,
    pub(crate) cache_read_tokens: Option<u64>,
    pub(crate) cache_creation_tokens: Option<u64>,
    pub(crate) reasoning_tokens: Option<u64>,
    /// Why the span failed, once anything said it did.
    pub(crate) error: Option<String>,
    pub(crate) tool_name: Option<String>,
    /// The first chunk of a stream was reported (genai's `time_to_first_chunk`) since the
    /// layer last looked.
    pub(crate) first_chunk: bool,
}

/// A field's value in the few shapes the mapping needs.
enum Value<'a> {
    Text(&'a str),
    Number(u64),
    Bool(bool),
    /// A negative or fractional number: meaningless as a token count.
    Other,
}

impl GenAiFields {
    /// Whether a field of this name is one the layer reads: a span that declares none of
    /// them gets no state at all.
    pub(crate) fn reads(name: &str) -> bool {
        name.starts_with("gen_ai.") && Self::is_read(name)
            || matches!(name, "otel.status_code" | "error.type" | "error")
    }

    fn is_read(name: &str) -> bool {
        matches!(
            name,
            "gen_ai.operation.name"
                | "gen_ai.provider.name"
                | "gen_ai.system"
                | "gen_ai.request.model"
                | "gen_ai.response.model"
                | "gen_ai.request.stream"
                | "gen_ai.usage.input_tokens"
                | "gen_ai.usage.prompt_tokens"
                | "gen_ai.usage.output_tokens"
                | "gen_ai.usage.completion_tokens"
                | "gen_ai.usage.cache_read.input_tokens"
                | "gen_ai.usage.cache_read_input_tokens"
                | "gen_ai.usage.cache_creation.input_tokens"
                | "gen_ai.usage.cache_creation_input_tokens"
                | "gen_ai.usage.reasoning_tokens"
                | "gen_ai.usage.reasoning.output_tokens"
                | "gen_ai.response.time_to_first_chunk"
                | "gen_ai.tool.name"
                | "gen_ai.tool.call.outcome"
                | "gen_ai.tool.error.type"
        )
    }

    /// The provider to price with: the convention's name, mapped to the pricing table's.
    pub(crate) fn provider(&self) -> Option<String> {
        self.provider_name
            .as_deref()
            .or(self.system.as_deref())
            .map(pricing_provider)
    }

    /// The model to price with: the one that answered when the response said, else the one
    /// asked for.
    pub(crate) fn model(&self) -> Option<&str> {
        self.response_model
            .as_deref()
            .or(self.request_model.as_deref())
    }

    /// The tokens recorded, or `None` when no token count was recorded at all (a call that
    /// ended before the provider said what it used).
    ///
    /// The conventions count cache reads and writes inside the input tokens and reasoning
    /// inside the output tokens, as [`Usage`] does; an emitter that counted them apart would
    /// leave a part larger than its whole, so the whole is raised to its parts.
    pub(crate) fn usage(&self) -> Option<Usage> {
        let any = [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_creation_tokens,
            self.reasoning_tokens,
        ]
        .iter()
        .any(Option::is_some);
        if !any {
            return None;
        }
        let cache_read = self.cache_read_tokens.unwrap_or(0);
        let cache_creation = self.cache_creation_tokens.unwrap_or(0);
        let reasoning = self.reasoning_tokens.unwrap_or(0);
        let input = self
            .input_tokens
            .unwrap_or(0)
            .max(cache_read.saturating_add(cache_creation));
        let output = self.output_tokens.unwrap_or(0).max(reasoning);
        Some(
            Usage::new(input, output)
                .with_cached_input(cache_read)
                .with_cache_creation(cache_creation)
                .with_reasoning(reasoning),
        )
    }

    /// Takes the fields another span recorded: a GenAI span nested in an LLM span reports
    /// into it.
    pub(crate) fn merge(&mut self, other: &GenAiFields) {
        fn take<T: Clone>(to: &mut Option<T>, from: &Option<T>) {
            if from.is_some() {
                to.clone_from(from);
            }
        }
        take(&mut self.stream, &other.stream);
        take(&mut self.provider_name, &other.provider_name);
        take(&mut self.system, &other.system);
        take(&mut self.request_model, &other.request_model);
        take(&mut self.response_model, &other.response_model);
        take(&mut self.input_tokens, &other.input_tokens);
        take(&mut self.output_tokens, &other.output_tokens);
        take(&mut self.cache_read_tokens, &other.cache_read_tokens);
        take(
            &mut self.cache_creation_tokens,
            &other.cache_creation_tokens,
        );
        take(&mut self.reasoning_tokens, &other.reasoning_tokens);
        take(&mut self.error, &other.error);
        self.first_chunk |= other.first_chunk;
    }

    fn set(&mut self, name: &str, value: Value<'_>) {
        match name {
            "gen_ai.operation.name" => {
                if let Value::Text(operation) = value {
                    self.kind = Some(kind_of(operation));
                    if operation == "chat_streaming" {
                        self.stream = Some(true);
                    }
                }
            }
            "gen_ai.provider.name" => set_text(&mut self.provider_name, value),
            "gen_ai.system" => set_text(&mut self.system, value),
            "gen_ai.request.model" => set_text(&mut self.request_model, value),
            "gen_ai.response.model" => set_text(&mut self.response_model, value),
            "gen_ai.request.stream" => {
                if let Some(stream) = as_bool(&value) {
                    self.stream = Some(stream);
                }
            }
            "gen_ai.usage.input_tokens" | "gen_ai.usage.prompt_tokens" => {
                set_count(&mut self.input_tokens, value)
            }
            "gen_ai.usage.output_tokens" | "gen_ai.usage.completion_tokens" => {
                set_count(&mut self.output_tokens, value)
            }
            "gen_ai.usage.cache_read.input_tokens" | "gen_ai.usage.cache_read_input_tokens" => {
                set_count(&mut self.cache_read_tokens, value)
            }
            "gen_ai.usage.cache_creation.input_tokens"
            | "gen_ai.usage.cache_creation_input_tokens" => {
                set_count(&mut self.cache_creation_tokens, value)
            }
            "gen_ai.usage.reasoning_tokens" | "gen_ai.usage.reasoning.output_tokens" => {
                set_count(&mut self.reasoning_tokens, value)
            }
            "gen_ai.response.time_to_first_chunk" => self.first_chunk = true,
            "gen_ai.tool.name" => set_text(&mut self.tool_name, value),
            "gen_ai.tool.call.outcome" => {
                if let Value::Text(outcome) = value
                    && !matches!(outcome, "success" | "ok")
                {
                    self.error = Some(clip(outcome));
                }
            }
            "otel.status_code" => {
                if let Value::Text(status) = value
                    && status.eq_ignore_ascii_case("error")
                    && self.error.is_none()
                {
                    self.error = Some("error".to_owned());
                }
            }
            "error.type" | "gen_ai.tool.error.type" | "error" => match value {
                Value::Text(reason) if !reason.is_empty() => {
                    self.error = Some(clip(&without_url_secrets(reason)));
                }
                Value::Bool(false) => {}
                _ => {
                    if self.error.is_none() {
                        self.error = Some("error".to_owned());
                    }
                }
            },
            _ => {}
        }
    }
}

fn set_text(to: &mut Option<String>, value: Value<'_>) {
    if let Value::Text(text) = value
        && !text.is_empty()
    {
        *to = Some(clip(text));
    }
}

fn set_count(to: &mut Option<u64>, value: Value<'_>) {
    match value {
        Value::Number(n) => *to = Some(n),
        Value::Text(text) => {
            if let Ok(n) = text.trim().parse() {
                *to = Some(n);
            }
        }
        Value::Bool(_) | Value::Other => {}
    }
}

fn as_bool(value: &Value<'_>) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Text(text) => text.trim().parse().ok(),
        Value::Number(_) | Value::Other => None,
    }
}

/// `text`, cut to [`MAX_TEXT_LEN`] bytes on a character boundary.
/// `text` with every URL's query and user info cut out: an HTTP client's error quotes its
/// URL, and some providers take the API key in the query (`?key=...`); the error goes into
/// exported spans.
fn without_url_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, url) = rest.split_at(at + 3);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>'))
            .unwrap_or(url.len());
        let (address, after) = url.split_at(end);
        let address = address.split(['?', '#']).next().unwrap_or_default();
        let host = match address.split_once('/') {
            Some((authority, path)) => (authority, Some(path)),
            None => (address, None),
        };
        let authority = host.0.rsplit_once('@').map_or(host.0, |(_, h)| h);
        out.push_str(authority);
        if let Some(path) = host.1 {
            out.push('/');
            out.push_str(path);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_TEXT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Visit for GenAiFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::Text(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::Number(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        let value = u64::try_from(value).map_or(Value::Other, Value::Number);
        self.set(field.name(), value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value = u64::try_from(value).map_or(Value::Other, Value::Number);
        self.set(field.name(), value);
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value = u64::try_from(value).map_or(Value::Other, Value::Number);
        self.set(field.name(), value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let whole = value >= 0.0 && value.fract() == 0.0 && value <= u64::MAX as f64;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let value = if whole {
            Value::Number(value as u64)
        } else {
            Value::Other
        };
        self.set(field.name(), value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if field.name() == "error" {
            let reason = value.to_string();
            self.set("error", Value::Text(&reason));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Formatting costs an allocation: only for the fields read (never for the message
        // contents some frameworks record).
        if !Self::reads(field.name()) {
            return;
        }
        let text = format!("{value:?}");
        // `?value` of a string quotes it; `%value` does not.
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(&text);
        self.set(field.name(), Value::Text(text));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn urls_in_errors_lose_their_query_and_user_info() {
        let text = "error sending request for url \
                    (https://user:pw@generativelanguage.googleapis.com/v1/models?key=AIza-SECRET): \
                    connection refused";
        let cleaned = without_url_secrets(text);
        assert_eq!(
            cleaned,
            "error sending request for url (https://generativelanguage.googleapis.com/v1/models): \
             connection refused"
        );
        assert_eq!(without_url_secrets("no url here"), "no url here");
        assert_eq!(
            without_url_secrets("http://h?k=v and http://x"),
            "http://h and http://x"
        );
    }

    use super::*;

    /// The fields a span built by `make` was created with.
    fn fields_of(make: impl FnOnce() -> tracing::Span) -> GenAiFields {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::{Context, SubscriberExt};

        struct Capture(Arc<Mutex<GenAiFields>>);
        impl<S: tracing_core::Subscriber> tracing_subscriber::Layer<S> for Capture {
            fn on_new_span(
                &self,
                attrs: &tracing_core::span::Attributes<'_>,
                _: &tracing_core::span::Id,
                _: Context<'_, S>,
            ) {
                attrs.record(&mut *self.0.lock().unwrap());
            }
            fn on_record(
                &self,
                _: &tracing_core::span::Id,
                values: &tracing_core::span::Record<'_>,
                _: Context<'_, S>,
            ) {
                values.record(&mut *self.0.lock().unwrap());
            }
        }
        let seen = Arc::new(Mutex::new(GenAiFields::default()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::with_default(subscriber, || drop(make()));
        seen.lock().unwrap().clone()
    }

    #[test]
    fn standard_names_make_a_usage() {
        let fields = fields_of(|| {
            tracing::info_span!(
                "chat",
                "gen_ai.operation.name" = "chat",
                "gen_ai.provider.name" = "openai",
                "gen_ai.request.model" = "gpt-4o-mini",
                "gen_ai.usage.input_tokens" = 1200_u64,
                "gen_ai.usage.output_tokens" = 300_i64,
                "gen_ai.usage.cache_read.input_tokens" = 1000,
                "gen_ai.usage.cache_creation.input_tokens" = 100,
                "gen_ai.usage.reasoning.output_tokens" = 50,
            )
        });
        assert_eq!(fields.kind, Some(Kind::Llm));
        assert_eq!(fields.provider().as_deref(), Some("openai"));
        assert_eq!(fields.model(), Some("gpt-4o-mini"));
        let expected = Usage::new(1200, 300)
            .with_cached_input(1000)
            .with_cache_creation(100)
            .with_reasoning(50);
        assert_eq!(fields.usage(), Some(expected));
        assert_eq!(fields.error, None);
    }

    #[test]
    fn rig_names_recorded_later_are_read() {
        let fields = fields_of(|| {
            let span = tracing::info_span!(
                "chat_streaming",
                "gen_ai.operation.name" = "chat_streaming",
                "gen_ai.system" = "openai",
                "gen_ai.request.model" = "gpt-4o",
                "gen_ai.response.model" = tracing::field::Empty,
                "gen_ai.usage.input_tokens" = tracing::field::Empty,
                "gen_ai.usage.output_tokens" = tracing::field::Empty,
                "gen_ai.usage.reasoning_tokens" = tracing::field::Empty,
                "gen_ai.input.messages" = tracing::field::Empty,
            );
            span.record("gen_ai.input.messages", "[{\"role\":\"user\"}]");
            span.record("gen_ai.response.model", "gpt-4o-2024-08-06");
            span.record("gen_ai.usage.input_tokens", 40_u64);
            span.record("gen_ai.usage.output_tokens", 90_u64);
            span.record("gen_ai.usage.reasoning_tokens", 64_u64);
            span
        });
        assert_eq!(fields.kind, Some(Kind::Llm));
        assert_eq!(fields.stream, Some(true));
        assert_eq!(fields.provider().as_deref(), Some("openai"));
        // The model that answered prices the call.
        assert_eq!(fields.model(), Some("gpt-4o-2024-08-06"));
        assert_eq!(fields.usage(), Some(Usage::new(40, 90).with_reasoning(64)));
    }

    #[test]
    fn provider_name_wins_over_system_and_maps_to_pricing_names() {
        let fields = fields_of(|| {
            tracing::info_span!(
                "chat",
                "gen_ai.provider.name" = "gcp.gemini",
                "gen_ai.system" = "google",
            )
        });
        assert_eq!(fields.provider().as_deref(), Some("gemini"));
        for (otel, pricing) in [
            ("aws.bedrock", "bedrock"),
            ("gcp.vertex_ai", "vertex_ai"),
            ("azure.ai.openai", "azure"),
            ("mistral_ai", "mistral"),
            ("x_ai", "xai"),
            ("Anthropic", "anthropic"),
            ("deepseek", "deepseek"),
        ] {
            assert_eq!(pricing_provider(otel), pricing, "{otel}");
        }
    }

    #[test]
    fn counts_as_text_or_debug_are_parsed_and_nonsense_ignored() {
        let fields = fields_of(|| {
            tracing::info_span!(
                "chat",
                "gen_ai.operation.name" = %"chat",
                "gen_ai.request.model" = ?"gpt-4o",
                "gen_ai.usage.input_tokens" = %12,
                "gen_ai.usage.output_tokens" = -3,
                "gen_ai.usage.cache_read.input_tokens" = 2.5,
                "gen_ai.request.stream" = "true",
            )
        });
        assert_eq!(fields.kind, Some(Kind::Llm));
        assert_eq!(fields.model(), Some("gpt-4o"));
        assert_eq!(fields.input_tokens, Some(12));
        assert_eq!(fields.output_tokens, None);
        assert_eq!(fields.cache_read_tokens, None);
        assert_eq!(fields.stream, Some(true));
    }

    #[test]
    fn no_token_field_is_no_usage_and_parts_never_exceed_wholes() {
        let fields = fields_of(|| tracing::info_span!("chat", "gen_ai.operation.name" = "chat"));
        assert_eq!(fields.usage(), None);

        // Cache counted apart from the input (not the convention): the input is raised.
        let fields = fields_of(|| {
            tracing::info_span!(
                "chat",
                "gen_ai.usage.input_tokens" = 20,
                "gen_ai.usage.cache_read.input_tokens" = 1000,
                "gen_ai.usage.reasoning_tokens" = 7,
            )
        });
        let usage = fields.usage().unwrap();
        assert_eq!((usage.input_tokens, usage.output_tokens), (1000, 7));
        assert_eq!(usage.total_tokens, 1007);
    }

    #[test]
    fn errors_from_status_error_type_and_error_fields() {
        // genai: lower-case status, then the type.
        let fields = fields_of(|| {
            let span = tracing::info_span!(
                "chat",
                "otel.status_code" = tracing::field::Empty,
                "error.type" = tracing::field::Empty,
            );
            span.record("otel.status_code", "error");
            span.record("error.type", "rate_limited");
            span
        });
        assert_eq!(fields.error.as_deref(), Some("rate_limited"));

        let fields = fields_of(|| tracing::info_span!("chat", "otel.status_code" = "ERROR"));
        assert_eq!(fields.error.as_deref(), Some("error"));
        let fields = fields_of(|| tracing::info_span!("chat", "otel.status_code" = "OK"));
        assert_eq!(fields.error, None);

        let failure = std::io::Error::other("connection reset");
        let fields = fields_of(|| {
            tracing::info_span!(
                "chat",
                error = &failure as &(dyn std::error::Error + 'static)
            )
        });
        assert_eq!(fields.error.as_deref(), Some("connection reset"));
    }

    #[test]
    fn tool_spans_name_and_outcome() {
        let fields = fields_of(|| {
            let span = tracing::info_span!(
                "execute_tool",
                "gen_ai.operation.name" = "execute_tool",
                "gen_ai.tool.name" = tracing::field::Empty,
                "gen_ai.tool.call.outcome" = tracing::field::Empty,
            );
            span.record("gen_ai.tool.name", "get_weather");
            span.record("gen_ai.tool.call.outcome", "success");
            span
        });
        assert_eq!(fields.kind, Some(Kind::Tool));
        assert_eq!(fields.tool_name.as_deref(), Some("get_weather"));
        assert_eq!(fields.error, None);

        let fields = fields_of(|| tracing::info_span!("t", "gen_ai.tool.call.outcome" = "denied"));
        assert_eq!(fields.error.as_deref(), Some("denied"));
    }

    #[test]
    fn other_operations_and_long_text() {
        for (operation, kind) in [
            ("invoke_agent", Kind::Other),
            ("create_agent", Kind::Other),
            ("embeddings", Kind::Llm),
            ("generate_content", Kind::Llm),
            ("text_completion", Kind::Llm),
            ("execute_tool", Kind::Tool),
        ] {
            assert_eq!(kind_of(operation), kind, "{operation}");
        }
        let long = "é".repeat(MAX_TEXT_LEN);
        let fields = fields_of(|| tracing::info_span!("chat", "gen_ai.request.model" = %long));
        let model = fields.model().unwrap();
        assert!(model.len() <= MAX_TEXT_LEN && model.chars().all(|c| c == 'é'));
    }
}
