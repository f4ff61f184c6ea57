//! Sending one encoded request: the blocking HTTP client (rustls with the `ring` provider and
//! the platform's verifier, as the MLflow client), retries of transient failures with
//! backoff and `Retry-After`, and reading the receiver's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};

use super::config::{MLFLOW_RUN_HEADER, OtlpConfig, OtlpError, hide_userinfo};
use agent_profiler_mlflow::{
    MAX_BACKOFF, RETRY_STATUS_CODES, error_chain, random_unit, retry_after_seconds,
};

/// Statuses whose `Retry-After` header sets the wait.
const RETRY_AFTER_STATUS_CODES: [u16; 2] = [429, 503];
/// Longest part of an error answer kept in a message, in characters.
const MAX_ERROR_BODY: usize = 300;

/// The TLS setup of `config` ([`agent_profiler_http::tls::client_config`]).
pub(crate) fn tls_config(
    config: &OtlpConfig,
) -> Result<agent_profiler_http::tls::ClientConfig, OtlpError> {
    agent_profiler_http::tls::client_config(config.insecure_tls, config.certificate.as_deref())
        .map_err(|message| OtlpError::Tls { message })
}

/// How the sender waits between attempts, and when it must give up.
pub(crate) trait Pace {
    /// When to give up, if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Waits `duration`, or less when woken (shutdown).
    fn sleep(&self, duration: Duration);
}

/// What the receiver did with a request it accepted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Accepted {
    /// Spans it refused (OTLP partial success).
    pub(crate) rejected_spans: u64,
    /// Its message about them.
    pub(crate) message: Option<String>,
}

/// One failed attempt.
struct Failure {
    message: String,
    retryable: bool,
    retry_after: Option<Duration>,
}

/// Sends encoded `ExportTraceServiceRequest`s to one endpoint.
pub(crate) struct Sender {
    http: Client,
    endpoint: String,
    shown_endpoint: String,
    headers: HeaderMap,
    secrets: Vec<String>,
    timeout: Duration,
    max_retries: u32,
    backoff: Duration,
    pub(crate) retries: Arc<AtomicU64>,
}

impl Sender {
    /// A sender for `config`. Builds a blocking HTTP client: call it from a plain thread.
    pub(crate) fn new(config: &OtlpConfig, retries: Arc<AtomicU64>) -> Result<Self, OtlpError> {
        let mut headers = HeaderMap::new();
        let mut secrets = Vec::new();
        for (name, value) in &config.headers {
            let invalid = |reason: String| OtlpError::InvalidHeader {
                source: "code",
                reason,
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a valid HTTP header name")))?;
            let mut value = HeaderValue::from_str(&value.0).map_err(|_| {
                invalid(format!(
                    "the value of `{name}` has characters not allowed in a header"
                ))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        for (_, value) in &config.headers {
            if value.0.len() >= 4 {
                secrets.push(value.0.clone());
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let http = Client::builder()
            .tls_backend_preconfigured(tls_config(config)?)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("agent-profiler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OtlpError::Tls {
                message: format!("HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            http,
            endpoint: config.endpoint.clone(),
            shown_endpoint: hide_userinfo(&config.endpoint),
            headers,
            secrets,
            timeout: config.timeout,
            max_retries: config.max_retries,
            backoff: config.backoff,
            retries,
        })
    }

    /// Sends `value` as header `name` from now on.
    pub(crate) fn set_header(&mut self, name: &'static str, value: &str) -> Result<(), String> {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("`{value}` cannot be sent in the `{name}` header"))?;
        self.headers.insert(name, value);
        Ok(())
    }

    /// Removes header values (secrets) from text that came from outside.
    fn clean(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    /// Sends `body`, retrying transient failures; what the receiver said, or why it failed
    /// (a message without secrets).
    pub(crate) fn send(
        &self,
        body: &[u8],
        mlflow_run: Option<&str>,
        pace: &dyn Pace,
    ) -> Result<Accepted, String> {
        let mut attempts = 0u32;
        let mut last: Option<String> = None;
        loop {
            let mut timeout = self.timeout;
            if let Some(deadline) = pace.deadline() {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(self.gave_up(last, attempts));
                }
                timeout = timeout.min(left);
            }
            attempts += 1;
            let failure = match self.attempt(body, mlflow_run, timeout) {
                Ok(accepted) => return Ok(accepted),
                Err(failure) => failure,
            };
            if !failure.retryable || attempts > self.max_retries {
                return Err(with_attempts(failure.message, attempts));
            }
            let wait = failure
                .retry_after
                .unwrap_or_else(|| backoff(self.backoff, attempts))
                .min(MAX_BACKOFF);
            if let Some(deadline) = pace.deadline()
                && Instant::now() + wait >= deadline
            {
                return Err(self.gave_up(Some(failure.message), attempts));
            }
            last = Some(failure.message);
            self.retries.fetch_add(1, Ordering::Relaxed);
            if !wait.is_zero() {
                pace.sleep(wait);
            }
        }
    }

    fn gave_up(&self, last: Option<String>, attempts: u32) -> String {
        match last {
            Some(last) => format!(
                "shutdown deadline reached; last failure: {}",
                with_attempts(last, attempts)
            ),
            None => format!(
                "OTLP export to {}: shutdown deadline reached before sending",
                self.shown_endpoint
            ),
        }
    }

    fn attempt(
        &self,
        body: &[u8],
        mlflow_run: Option<&str>,
        timeout: Duration,
    ) -> Result<Accepted, Failure> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .timeout(timeout)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(body.to_vec());
        if let Some(run) = mlflow_run
            && let Ok(value) = HeaderValue::from_str(run)
        {
            request = request.header(MLFLOW_RUN_HEADER, value);
        }
        let transport = |e: reqwest::Error| Failure {
            message: format!(
                "OTLP export to {}: no answer: {}",
                self.shown_endpoint,
                self.clean(&error_chain(&e.without_url()))
            ),
            retryable: true,
            retry_after: None,
        };
        let response = request.send().map_err(transport)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after_seconds)
            .filter(|_| RETRY_AFTER_STATUS_CODES.contains(&status));
        let bytes = response.bytes().map_err(transport)?;
        if (200..300).contains(&status) {
            return self.accepted(status, &content_type, &bytes);
        }
        let detail = snippet(&bytes);
        let mut message = format!("OTLP export to {}: HTTP {status}", self.shown_endpoint);
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&self.clean(&detail));
        }
        Err(Failure {
            message,
            retryable: RETRY_STATUS_CODES.contains(&status),
            retry_after,
        })
    }

    /// Reads a 2xx answer: an `ExportTraceServiceResponse` (protobuf, or JSON from some
    /// receivers). A body that is neither is taken as a sign of a wrong endpoint (a web
    /// page answering every path) and counted as a failure.
    fn accepted(&self, status: u16, content_type: &str, bytes: &[u8]) -> Result<Accepted, Failure> {
        if content_type.contains("json") {
            return Ok(Accepted::default());
        }
        let not_otlp = |why: &str| Failure {
            message: format!(
                "OTLP export to {}: HTTP {status} with {why}; is this the trace endpoint of an \
                 OTLP receiver (e.g. http://host:4318/v1/traces, or {{mlflow}}/v1/traces)?",
                self.shown_endpoint
            ),
            retryable: false,
            retry_after: None,
        };
        if content_type.starts_with("text/") {
            return Err(not_otlp(&format!("a `{content_type}` body")));
        }
        match ExportTraceServiceResponse::decode(bytes) {
            Ok(answer) => {
                let partial = answer.partial_success.unwrap_or_default();
                Ok(Accepted {
                    rejected_spans: u64::try_from(partial.rejected_spans).unwrap_or(0),
                    message: Some(partial.error_message)
                        .filter(|m| !m.is_empty())
                        .map(|m| self.clean(&m)),
                })
            }
            Err(_) => Err(not_otlp("a body that is not an OTLP response")),
        }
    }
}

fn with_attempts(message: String, attempts: u32) -> String {
    if attempts > 1 {
        format!("{message} (after {attempts} attempts)")
    } else {
        message
    }
}

/// The start of an error answer, printable characters only.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_ERROR_BODY)
        .collect();
    if text.chars().count() > MAX_ERROR_BODY {
        out.push_str("...");
    }
    out.trim().to_owned()
}

/// The wait after `failures` failed attempts: `first * 2^(failures-1)`, plus up to as much
/// again at random, at most [`MAX_BACKOFF`].
pub(crate) fn backoff(first: Duration, failures: u32) -> Duration {
    let exp = 2f64.powi(failures.clamp(1, 60) as i32 - 1);
    let secs = first.as_secs_f64() * exp * (1.0 + random_unit());
    Duration::from_secs_f64(secs.clamp(0.0, MAX_BACKOFF.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let first = Duration::from_millis(100);
        for failures in 1..6 {
            let base = 0.1 * 2f64.powi(failures as i32 - 1);
            let wait = backoff(first, failures).as_secs_f64();
            assert!(
                wait >= base - 1e-9 && wait <= 2.0 * base + 1e-9,
                "{failures}: {wait}"
            );
        }
        assert_eq!(backoff(Duration::from_secs(10), 40), MAX_BACKOFF);
        assert_eq!(backoff(Duration::ZERO, 3), Duration::ZERO);
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(retry_after_seconds(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_seconds(""), None);
        assert_eq!(retry_after_seconds("-1"), None);
    }

    #[test]
    fn snippets_are_short_and_printable() {
        assert_eq!(
            snippet(b"  {\"detail\": \"bad\"}\n"),
            "{\"detail\": \"bad\"}"
        );
        let long = vec![b'x'; 1000];
        assert_eq!(snippet(&long).len(), MAX_ERROR_BODY + 3);
        assert_eq!(snippet(&[0, 1, b'a']), "a");
    }

    #[test]
    fn header_values_are_removed_from_messages() {
        let config = OtlpConfig::new("http://127.0.0.1:1/v1/traces")
            .unwrap()
            .header("authorization", "Bearer s3cr3t-token")
            .header("x-short", "ab");
        let sender = Sender::new(&config, Arc::default()).unwrap();
        assert_eq!(
            sender.clean("refused Bearer s3cr3t-token here"),
            "refused *** here"
        );
    }
}
