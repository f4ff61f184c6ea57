//! What the HTTP clients share: the endpoint (its base URL, timeout and the HTTP layer's
//! async client), posting a JSON request, and reading the answer into an [`LlmResponse`]
//! or an [`LlmError`] that never holds the key.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::Value;

use agent_profiler_http::client::{ClientSettings, error_chain};
use agent_profiler_http::secret::{Redactor, Secret};
use agent_profiler_http::url::{hide_userinfo, userinfo_secrets};

use super::{ApiKey, LlmError, LlmResponse};

/// The default request timeout of the HTTP clients.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer read from an LLM endpoint.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Most characters of a body quoted in an error.
const MAX_QUOTED_CHARS: usize = 300;

/// An LLM endpoint: its base URL, and the client that reaches it. A password (or token) in
/// the URL's user info is sent (reqwest turns it into basic authentication) but never
/// shown: the URL is a [`Secret`], what is shown has the user info hidden, and every error
/// is cleaned of it.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    base_url: Secret,
    shown: String,
    userinfo: Vec<Secret>,
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
        let base_url = base_url.trim_end_matches('/');
        Ok(Self {
            base_url: Secret::new(base_url),
            shown: hide_userinfo(base_url),
            userinfo: userinfo_secrets(base_url)
                .into_iter()
                .map(Secret::new)
                .collect(),
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

    /// The base URL as shown: its user info hidden.
    pub(crate) fn base_url(&self) -> &str {
        &self.shown
    }

    /// The redactor of the URL's user info and of `key`.
    fn redactor(&self, key: Option<&ApiKey>) -> Redactor {
        let userinfo = self.userinfo.iter().map(Secret::expose);
        Redactor::new(userinfo.chain(key.map(ApiKey::expose)))
    }

    /// POSTs `body` to `{base_url}{path}` with `headers`, and reads the answer as `reply`
    /// says. Errors show the URL without its user info; quoted bodies and transport errors
    /// are cleaned of the user info and of `key`.
    pub(crate) async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: &Value,
        key: Option<&ApiKey>,
        reply: Reply,
    ) -> Result<LlmResponse, LlmError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url.expose()))
            .headers(headers)
            .json(body);
        let url = format!("{}{path}", self.shown);
        let redactor = self.redactor(key);
        let raw = post_json(request, &url, self.timeout, &redactor).await?;
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
                body: snippet(&raw.to_string(), &redactor),
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

/// At most 300 characters of `body`, cleaned of secrets, on one line.
fn snippet(body: &str, redactor: &Redactor) -> String {
    redactor.excerpt(body, MAX_QUOTED_CHARS)
}

/// Sends `request` (a POST with a JSON body) and returns the JSON body of a 2xx answer;
/// errors name `url` (as shown) and are cleaned by `redactor`.
async fn post_json(
    request: reqwest::RequestBuilder,
    url: &str,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Value, LlmError> {
    let scrub = |s: String| redactor.clean(&s);
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
                body: snippet(&String::from_utf8_lossy(&bytes), redactor),
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
            body: snippet(&body, redactor),
        });
    }
    serde_json::from_str(&body).map_err(|e| LlmError::BadBody {
        url: url.to_owned(),
        reason: format!("not JSON ({e})"),
        body: snippet(&body, redactor),
        usage: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_user_info_of_the_url_is_used_but_never_shown() {
        let endpoint = Endpoint::new("http://agent:pw%2Fs3cret@127.0.0.1:9/v1/").unwrap();
        assert_eq!(endpoint.base_url(), "http://***@127.0.0.1:9/v1");
        let debug = format!("{endpoint:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        // Nothing listens on port 9: the error names the URL as shown, cleaned of the
        // password in every form.
        let reply = Reply {
            text: |_| None,
            missing: "",
        };
        let error = endpoint
            .post("/chat", HeaderMap::new(), &Value::Null, None, reply)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("http://***@127.0.0.1:9/v1/chat"), "{error}");
        for form in ["pw%2Fs3cret", "pw/s3cret", "s3cret"] {
            assert!(!error.contains(form), "{error}");
        }
    }
}
