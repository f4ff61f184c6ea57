//! What the HTTP clients share: the endpoint (its base URL, timeout and the HTTP layer's
//! async client), posting a JSON request, and reading the answer into an [`LlmResponse`]
//! or an [`LlmError`] that never holds the key.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use agent_profiler_http::client::{ClientSettings, error_chain};
use agent_profiler_http::secret::Redactor;

use super::{ApiKey, LlmError, LlmResponse};

/// The default request timeout of the HTTP clients.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer read from an LLM endpoint.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most characters of a body quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;

/// An LLM endpoint: its base URL, and the client that reaches it.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    base_url: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// What an API's answer must hold, and what it is called when it does not.
pub(crate) struct Reply {
    /// The generated text of an answer, if it is one of the API's.
    pub(crate) text: fn(&Value) -> Option<String>,
    /// Why a JSON body that has no text is not an answer.
    pub(crate) missing: &'static str,
}

impl Endpoint {
    /// `base_url` (a trailing `/` removed) with the default timeout.
    pub(crate) fn new(base_url: &str) -> Result<Self, LlmError> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout: DEFAULT_TIMEOUT,
            http: build_client(DEFAULT_TIMEOUT)?,
        })
    }

    /// The same endpoint with another request timeout (a new client).
    pub(crate) fn with_timeout(self, timeout: Duration) -> Result<Self, LlmError> {
        Ok(Self {
            http: build_client(timeout)?,
            timeout,
            ..self
        })
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// POSTs `body` to `{base_url}{path}` with `headers`, and reads the answer as `reply`
    /// says. Quoted bodies are scrubbed of `key`.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: &Value,
        key: Option<&ApiKey>,
        reply: Reply,
    ) -> Result<LlmResponse, LlmError> {
        let url = format!("{}{path}", self.base_url);
        let request = self.http.post(&url).headers(headers).json(body);
        let raw = post_json(request, &url, self.timeout, key).await?;
        match (reply.text)(&raw) {
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
                reason: reply.missing.to_owned(),
                body: snippet(&raw.to_string(), key),
                usage: raw.get("usage").cloned(),
            }),
        }
    }
}

/// The HTTP layer's async client with `timeout` (connecting: at most 30 s of it).
fn build_client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    let other = |message: String| LlmError::Other { message };
    let tls = agent_profiler_http::tls::client_config(false, None).map_err(other)?;
    ClientSettings::new(tls, timeout)
        .asynchronous()
        .map_err(|e| other(format!("cannot build the HTTP client: {e}")))
}

/// At most 300 characters of `body`, scrubbed of `key`, on one line.
fn snippet(body: &str, key: Option<&ApiKey>) -> String {
    key.map_or_else(Redactor::default, ApiKey::redactor)
        .excerpt(body, MAX_QUOTED_CHARS)
}

/// Sends `request` (a POST with a JSON body) and returns the JSON body of a 2xx answer.
async fn post_json(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    key: Option<&ApiKey>,
) -> Result<Value, LlmError> {
    let scrub = |s: String| match key {
        Some(k) => k.scrub(&s),
        None => s,
    };
    let map_send = |e: reqwest::Error| {
        if e.is_timeout() {
            LlmError::Timeout {
                url: url.to_owned(),
                seconds: timeout.as_secs_f64(),
            }
        } else {
            LlmError::Connect {
                url: url.to_owned(),
                reason: scrub(error_chain(&e)),
            }
        }
    };
    let mut response = request.send().await.map_err(map_send)?;
    let status = response.status();
    // Read in chunks up to a cap: a misbehaving endpoint must not grow memory without bound.
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(map_send)? {
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(LlmError::BadBody {
                url: url.to_owned(),
                reason: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                body: snippet(&String::from_utf8_lossy(&bytes), key),
                usage: None,
            });
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        return Err(LlmError::Http {
            url: url.to_owned(),
            status: status.as_u16(),
            body: snippet(&body, key),
        });
    }
    serde_json::from_str(&body).map_err(|e| LlmError::BadBody {
        url: url.to_owned(),
        reason: format!("not JSON ({e})"),
        body: snippet(&body, key),
        usage: None,
    })
}
