//! LLM clients behind one async trait: OpenAI-compatible Chat Completions
//! ([`OpenAiClient`]: OpenAI, vLLM, Ollama's `/v1`, LiteLLM proxy), Anthropic Messages
//! ([`AnthropicClient`]), and a [`SimulatedClient`] for examples and tests offline.
//!
//! Every client returns the provider's raw JSON body with its `usage`, so that the cost
//! tracker prices the call from what the provider said. A request may ask for the answer as
//! a stream ([`LlmRequest::stream`]): the clients then read the provider's server-sent
//! events as they come, note when the first text arrived ([`LlmResponse::first_chunk`], for
//! the time to first token), and rebuild from the events a body of the same shape as the
//! non-streamed answer, usage included, so that the cost tracker reads either alike. A
//! stream that ends before its end marker is an error ([`LlmError::StreamCut`]) carrying
//! the usage that arrived. Errors are values
//! ([`LlmError`]), never panics, and never contain the API key. TLS, the HTTP client, the
//! key's secret type and its redaction are the HTTP layer's (`agent-profiler-http`), shared
//! with the exporters.

mod anthropic;
mod http;
mod openai;
mod simulated;
mod sse;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agent_profiler_http::auth::{bearer, sensitive_header};
use agent_profiler_http::secret::{REDACTED, Redactor, Secret};

pub use anthropic::{ANTHROPIC_DEFAULT_BASE_URL, ANTHROPIC_VERSION, AnthropicClient};
pub use openai::{OPENAI_DEFAULT_BASE_URL, OpenAiClient};
pub use simulated::SimulatedClient;

/// A boxed, `Send` future: what [`LlmClient::complete`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`LlmClient::complete`] returns: a future of the answer.
pub type Completion<'a> = BoxFuture<'a, Result<LlmResponse, LlmError>>;

/// One request: a model, an optional system prompt, the user prompt, a token limit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    /// The model name as the endpoint knows it (`gpt-4o-mini`, `claude-3-5-haiku-latest`).
    pub model: String,
    /// The system prompt, if any.
    pub system: Option<String>,
    /// The user message.
    pub prompt: String,
    /// The most output tokens to generate.
    pub max_tokens: u32,
    /// Sampling temperature, if set.
    pub temperature: Option<f64>,
    /// Whether to ask for the answer as a stream of server-sent events. The total time is
    /// about the same; a stream also tells when the first text came
    /// ([`LlmResponse::first_chunk`]).
    #[serde(default)]
    pub stream: bool,
}

/// A completed call: the text, and the provider's raw JSON body (with `usage`).
#[derive(Clone, Debug, PartialEq)]
pub struct LlmResponse {
    /// The generated text.
    pub text: String,
    /// The model that answered, as the provider reports it.
    pub model: String,
    /// The provider's JSON body, as received (the cost tracker reads its `usage`).
    pub raw: Value,
    /// Whether the answer came from [`SimulatedClient`] rather than a model.
    pub simulated: bool,
    /// When the first text of a streamed answer arrived (the first non-empty text delta,
    /// not the first event: role and keep-alive events carry no token). `None` for an
    /// answer that was not streamed or had no text.
    pub first_chunk: Option<Instant>,
    /// Whether the answer came as a stream. A server that ignores the request for a stream
    /// and answers in one body gives `false`.
    pub stream: bool,
}

/// Why an LLM call failed. Messages never contain the API key (bodies quoted in them are
/// cut short and scrubbed of it).
#[derive(Clone, Debug, PartialEq)]
pub enum LlmError {
    /// No API key where one is required.
    MissingApiKey {
        /// The environment variable the key was looked for in.
        env_var: String,
    },
    /// The endpoint could not be reached (refused, DNS, TLS).
    Connect {
        /// The endpoint's URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// No answer within the timeout.
    Timeout {
        /// The endpoint's URL.
        url: String,
        /// The timeout, seconds.
        seconds: f64,
    },
    /// The endpoint answered with an HTTP error status.
    Http {
        /// The endpoint's URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body (scrubbed of the key).
        body: String,
    },
    /// The body is not the JSON the API defines.
    BadBody {
        /// The endpoint's URL.
        url: String,
        /// What is wrong with it.
        reason: String,
        /// The start of the body (scrubbed of the key).
        body: String,
        /// The body's `usage` object, when it had one: the call was billed all the same.
        /// (Boxed, as in `StreamCut`: it keeps every `Result<_, LlmError>` small.)
        usage: Option<Box<Value>>,
    },
    /// A streamed answer that did not reach its end: the connection closed or failed before
    /// the end marker (`data: [DONE]`, `message_stop`), the provider sent an error event,
    /// an event was not the JSON the API defines, the stream outgrew the client's cap, or
    /// the timeout struck after the provider had said what the call used.
    /// The call may have been billed all the same: `usage` says for what, when the provider
    /// said it before the cut.
    StreamCut {
        /// The endpoint's URL.
        url: String,
        /// Why the stream ended early (scrubbed of the key).
        reason: String,
        /// The usage that arrived before the cut, as a `usage` object the cost tracker
        /// reads (an Anthropic stream says its input tokens first, an OpenAI stream says
        /// everything last).
        usage: Option<Box<Value>>,
        /// When the first text arrived, if any did.
        first_chunk: Option<Instant>,
        /// How many bytes of text arrived before the cut.
        text_len: usize,
        /// The cut was the client's timeout, after the provider had said some usage (a
        /// stream that times out before any is [`LlmError::Timeout`]).
        timed_out: bool,
    },
    /// Any other failure (a client that cannot be built, a simulated failure).
    Other {
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for LlmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LlmError::MissingApiKey { env_var } => {
                write!(f, "no API key: set {env_var} or pass one in code")
            }
            LlmError::Connect { url, reason } => write!(f, "cannot reach {url}: {reason}"),
            LlmError::Timeout { url, seconds } => {
                write!(f, "no answer from {url} within {seconds:.1}s")
            }
            LlmError::Http { url, status, body } => {
                write!(f, "{url} answered HTTP {status}: {body}")
            }
            LlmError::BadBody {
                url, reason, body, ..
            } => {
                write!(
                    f,
                    "unexpected body from {url}: {reason}; body starts: {body}"
                )
            }
            LlmError::StreamCut {
                url,
                reason,
                text_len,
                ..
            } => {
                write!(
                    f,
                    "the stream from {url} was cut off after {text_len} bytes of text: {reason}"
                )
            }
            LlmError::Other { message } => f.write_str(message),
        }
    }
}

impl LlmError {
    /// The usage the provider billed although the call failed: the `usage` of a body that
    /// was not an answer, or what a cut stream said before the cut.
    pub fn billed_usage(&self) -> Option<&Value> {
        match self {
            LlmError::BadBody { usage, .. } | LlmError::StreamCut { usage, .. } => usage.as_deref(),
            _ => None,
        }
    }
}

impl std::error::Error for LlmError {}

/// An LLM endpoint. Implementations must be cheap to share across tasks.
pub trait LlmClient: Send + Sync {
    /// Sends `request` and waits for the answer.
    fn complete<'a>(&'a self, request: &'a LlmRequest) -> Completion<'a>;

    /// A one-line description for reports and run records (`openai-compatible at
    /// https://...`, `simulated`): never the key.
    fn describe(&self) -> String;
}

/// An API key: its value is never shown by `Debug` or `Display`, only where it came from.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    value: Secret,
    source: String,
}

impl ApiKey {
    /// A key given in code; `source` says where it came from (never the value itself).
    pub fn new(value: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            value: Secret::new(value),
            source: source.into(),
        }
    }

    /// The key in environment variable `var`, if set and not empty (blanks around it
    /// removed).
    pub fn from_env(var: &str) -> Option<Self> {
        env_value(var).map(|v| Self::new(v.trim(), format!("env:{var}")))
    }

    /// The key itself: only for the request header.
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// Where the key came from (`env:OPENAI_API_KEY`, `code`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `text` with every occurrence of the key replaced by `***` (keys shorter than 4
    /// characters are left: see [`Redactor`]).
    pub fn scrub(&self, text: &str) -> String {
        self.redactor().clean(text)
    }

    /// The redactor of this key.
    pub(crate) fn redactor(&self) -> Redactor {
        Redactor::new([self.expose()])
    }

    /// The key as a header value marked sensitive: `Bearer <key>` when `bearer`, else the
    /// key alone.
    pub(crate) fn header_value(&self, bearer_token: bool) -> Result<HeaderValue, LlmError> {
        let value = if bearer_token {
            bearer(&self.value)
        } else {
            self.value.clone()
        };
        sensitive_header(value.expose()).ok_or_else(|| LlmError::Other {
            message: format!(
                "the API key from {} contains characters not allowed in an HTTP header",
                self.source
            ),
        })
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(from {}, {REDACTED})", self.source)
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{REDACTED} (key from {})", self.source)
    }
}

/// The value of environment variable `var`, when set and not blank.
fn env_value(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

/// The client the environment names: [`OpenAiClient`] when `OPENAI_BASE_URL` or
/// `OPENAI_API_KEY` is set, else [`AnthropicClient`] when `ANTHROPIC_API_KEY` is set, else
/// `None` (use a [`SimulatedClient`]).
///
/// # Errors
/// When the named client cannot be built.
pub fn client_from_env() -> Result<Option<std::sync::Arc<dyn LlmClient>>, LlmError> {
    let set = |var: &str| env_value(var).is_some();
    if set("OPENAI_BASE_URL") || set("OPENAI_API_KEY") {
        return Ok(Some(std::sync::Arc::new(OpenAiClient::from_env()?)));
    }
    if set("ANTHROPIC_API_KEY") {
        return Ok(Some(std::sync::Arc::new(AnthropicClient::from_env()?)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_show() {
        let key = ApiKey::new("sk-0123456789", "code");
        assert_eq!(format!("{key:?}"), "ApiKey(from code, ***)");
        assert_eq!(key.to_string(), "*** (key from code)");
        assert_eq!(key.scrub("echo sk-0123456789!"), "echo ***!");
        let header = key.header_value(true).unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.to_str().unwrap(), "Bearer sk-0123456789");
        assert!(ApiKey::new("bad\nkey", "code").header_value(false).is_err());
    }
}
