//! What the HTTP clients share: the endpoint (its base URL, timeout and the HTTP layer's
//! async client), posting a JSON request, and reading the answer (one JSON body, or a
//! stream of server-sent events an API's [`StreamDecoder`] understands) into an
//! [`LlmResponse`] or an [`LlmError`] that never holds the key.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use agent_profiler_http::client::{ClientSettings, error_chain};
use agent_profiler_http::secret::{Redactor, Secret};
use agent_profiler_http::url::{hide_userinfo, userinfo_secrets};

use super::sse::{SseEvent, SseParser, TooLarge};
use super::{ApiKey, LlmError, LlmResponse};

/// The default request timeout of the HTTP clients.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The largest answer read from an LLM endpoint: a JSON body, the text of a stream, and
/// what a stream may hold buffered (the line being read and the event's data).
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

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

/// What an event of an API's stream does.
pub(crate) enum Step {
    /// More events follow.
    More,
    /// The end marker: the answer is complete.
    Done,
    /// The stream cannot go on (an error event, an event that is not the API's JSON): why.
    Failed(String),
}

/// One API's stream: it reads the events in order, appends the text deltas to the answer's
/// text, keeps the usage, and at the end rebuilds the body a non-streamed call would have
/// returned.
pub(crate) trait StreamDecoder {
    /// Reads one event, appending its text (if any) to `text`.
    fn event(&mut self, event: &SseEvent, text: &mut String) -> Step;

    /// The usage said so far, as a `usage` object the cost tracker reads.
    fn usage(&self) -> Option<Value>;

    /// The body of the same shape as the API's non-streamed answer, with `text`.
    fn body(&self, text: &str) -> Value;
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

    /// POSTs `body` as [`post_stream`](Self::post_stream) does with a `D` decoder when
    /// `stream`, else as [`post`](Self::post) does.
    pub(crate) async fn post_or_stream<D: StreamDecoder + Default>(
        &self,
        stream: bool,
        path: &str,
        headers: HeaderMap,
        body: &Value,
        key: Option<&ApiKey>,
        reply: Reply,
    ) -> Result<LlmResponse, LlmError> {
        if stream {
            self.post_stream(path, headers, body, key, reply, D::default())
                .await
        } else {
            self.post(path, headers, body, key, reply).await
        }
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
        let call = self.call(path, key);
        let response = call.send(self.request(path, headers, body)).await?;
        let raw = call.read_json(response).await?;
        call.answer(raw, &reply)
    }

    /// Like [`post`](Self::post) for a request that asked for a stream: the events are read
    /// as they come and `decoder` makes the answer of them. A server that answers with one
    /// JSON body instead (some ignore `stream`) is read as [`post`](Self::post) reads it.
    pub(crate) async fn post_stream(
        &self,
        path: &str,
        mut headers: HeaderMap,
        body: &Value,
        key: Option<&ApiKey>,
        reply: Reply,
        decoder: impl StreamDecoder,
    ) -> Result<LlmResponse, LlmError> {
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let call = self.call(path, key);
        let response = call.send(self.request(path, headers, body)).await?;
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        if !response.status().is_success() || is_json {
            let raw = call.read_json(response).await?;
            return call.answer(raw, &reply);
        }
        call.read_stream(response, decoder).await
    }

    fn request(&self, path: &str, headers: HeaderMap, body: &Value) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base_url.expose()))
            .headers(headers)
            .json(body)
    }

    fn call(&self, path: &str, key: Option<&ApiKey>) -> Call {
        Call {
            url: format!("{}{path}", self.shown),
            timeout: self.timeout,
            redactor: self.redactor(key),
        }
    }
}

/// One request under way: what its errors say (the URL as shown, the timeout) and how they
/// are cleaned of secrets.
struct Call {
    url: String,
    timeout: Duration,
    redactor: Redactor,
}

impl Call {
    /// A transport error as an [`LlmError`]: a timeout, else a connection failure.
    fn transport(&self, e: &reqwest::Error) -> LlmError {
        if e.is_timeout() {
            LlmError::Timeout {
                url: self.url.clone(),
                seconds: self.timeout.as_secs_f64(),
            }
        } else {
            LlmError::Connect {
                url: self.url.clone(),
                reason: self.redactor.clean(&error_chain(e)),
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, LlmError> {
        request.send().await.map_err(|e| self.transport(&e))
    }

    /// The JSON body of a 2xx answer; the status and the start of the body otherwise.
    async fn read_json(&self, mut response: reqwest::Response) -> Result<Value, LlmError> {
        let status = response.status();
        // Read in chunks up to a cap: a misbehaving endpoint must not grow memory without
        // bound.
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(LlmError::BadBody {
                    url: self.url.clone(),
                    reason: format!("answer larger than {MAX_BODY_BYTES} bytes"),
                    body: snippet(&String::from_utf8_lossy(&bytes), &self.redactor),
                    usage: None,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&bytes);
        if !status.is_success() {
            return Err(LlmError::Http {
                url: self.url.clone(),
                status: status.as_u16(),
                body: snippet(&body, &self.redactor),
            });
        }
        serde_json::from_str(&body).map_err(|e| LlmError::BadBody {
            url: self.url.clone(),
            reason: format!("not JSON ({e})"),
            body: snippet(&body, &self.redactor),
            usage: None,
        })
    }

    /// The answer in a JSON body `raw`, as `reply` finds it.
    fn answer(&self, raw: Value, reply: &Reply) -> Result<LlmResponse, LlmError> {
        match (reply.text)(&raw) {
            Some(text) => Ok(LlmResponse {
                text,
                model: model_of(&raw),
                raw,
                simulated: false,
                first_chunk: None,
                stream: false,
            }),
            None => Err(LlmError::BadBody {
                url: self.url.clone(),
                reason: reply.missing.to_owned(),
                body: snippet(&raw.to_string(), &self.redactor),
                usage: raw.get("usage").cloned().map(Box::new),
            }),
        }
    }

    /// Reads a stream of server-sent events to its end marker. Memory stays bounded: the
    /// parser's buffer and the text are each capped at [`MAX_BODY_BYTES`].
    async fn read_stream(
        &self,
        mut response: reqwest::Response,
        mut decoder: impl StreamDecoder,
    ) -> Result<LlmResponse, LlmError> {
        let mut parser = SseParser::new(MAX_BODY_BYTES);
        let mut events = Vec::new();
        let mut text = String::new();
        let mut first_chunk = None;
        let cut = |reason: String, decoder: &dyn StreamDecoder, text: &str, first_chunk| {
            LlmError::StreamCut {
                url: self.url.clone(),
                reason: self.redactor.clean(&reason),
                usage: decoder.usage().map(Box::new),
                first_chunk,
                text_len: text.len(),
                timed_out: false,
            }
        };
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    let reason = "the connection closed before the end of the stream";
                    return Err(cut(reason.to_owned(), &decoder, &text, first_chunk));
                }
                // Billed usage already said (Anthropic says the input first) is kept, with
                // the first chunk's time: a timeout must not hide what the call cost.
                Err(e) if e.is_timeout() && decoder.usage().is_some() => {
                    let reason = format!(
                        "no end of the stream within {:.1}s",
                        self.timeout.as_secs_f64()
                    );
                    let mut error = cut(reason, &decoder, &text, first_chunk);
                    if let LlmError::StreamCut { timed_out, .. } = &mut error {
                        *timed_out = true;
                    }
                    return Err(error);
                }
                Err(e) if e.is_timeout() => return Err(self.transport(&e)),
                Err(e) => {
                    let reason = format!("the connection failed: {}", error_chain(&e));
                    return Err(cut(reason, &decoder, &text, first_chunk));
                }
            };
            // The time the bytes came, not the time the parser got to the event in them.
            let arrived = Instant::now();
            let fed = parser.feed(&chunk, &mut events);
            for event in events.drain(..) {
                let before = text.len();
                let step = decoder.event(&event, &mut text);
                if first_chunk.is_none() && text.len() > before {
                    first_chunk = Some(arrived);
                }
                match step {
                    Step::More => {}
                    Step::Done => {
                        let raw = decoder.body(&text);
                        return Ok(LlmResponse {
                            model: model_of(&raw),
                            text,
                            raw,
                            simulated: false,
                            first_chunk,
                            stream: true,
                        });
                    }
                    Step::Failed(reason) => {
                        return Err(cut(reason, &decoder, &text, first_chunk));
                    }
                }
                if text.len() > MAX_BODY_BYTES {
                    let reason = format!("the answer grew beyond {MAX_BODY_BYTES} bytes");
                    return Err(cut(reason, &decoder, &text, first_chunk));
                }
            }
            if let Err(TooLarge(bytes)) = fed {
                let reason = format!(
                    "an event held {bytes} bytes before its end, more than the \
                     {MAX_BODY_BYTES} bytes read"
                );
                return Err(cut(reason, &decoder, &text, first_chunk));
            }
        }
    }
}

/// The `model` a body names, or nothing.
fn model_of(raw: &Value) -> String {
    raw.get("model")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
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
