//! What the HTTP clients share: the reqwest client with rustls, and error mapping.

use std::time::Duration;

use serde_json::Value;

use super::{ApiKey, LlmError};

/// The default request timeout of the HTTP clients.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// A reqwest client with rustls (ring) and the platform's certificate verifier.
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, LlmError> {
    let other = |message: String| LlmError::Other { message };
    let tls = agent_profiler_http::tls::client_config(false, None).map_err(other)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(30)))
        .user_agent(concat!("agent-profiler/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| other(format!("cannot build the HTTP client: {e}")))
}

/// At most 300 characters of `body`, scrubbed of `key`.
pub(crate) fn snippet(body: &str, key: Option<&ApiKey>) -> String {
    let scrubbed = match key {
        Some(k) => k.scrub(body),
        None => body.to_owned(),
    };
    let mut s: String = scrubbed.chars().take(300).collect();
    if scrubbed.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// Sends `request` (a POST with a JSON body) and returns the JSON body of a 2xx answer.
pub(crate) async fn post_json(
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

/// The largest answer read from an LLM endpoint.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// `e` and its sources, `: `-separated.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
