//! Sending one encoded request: the blocking HTTP client of the HTTP layer, its retry
//! policy (transient failures retried with backoff and `Retry-After`), and reading the
//! receiver's answer.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};

use agent_profiler_http::auth::sensitive_header;
use agent_profiler_http::client::{ClientSettings, error_chain};
use agent_profiler_http::retry::{self, Backoff, Failure, GaveUp, Jitter, Pacer, Policy};
use agent_profiler_http::secret::Redactor;
use agent_profiler_http::url::hide_userinfo;

use super::config::{MLFLOW_RUN_HEADER, OtlpConfig, OtlpError, Signal};

/// Longest part of an error answer kept in a message, in characters.
const MAX_ERROR_BODY: usize = 300;

/// The TLS setup of `config` ([`agent_profiler_http::tls::client_config`]).
/// What names an exporter in its messages and its thread.
pub(crate) struct ExporterNames {
    pub(crate) name: &'static str,
    pub(crate) thread_name: &'static str,
    pub(crate) subject: &'static str,
    pub(crate) stats: &'static str,
}

/// The background sender's settings for an exporter of `config`, once the headers set in
/// code and the TLS setup are checked (so that a bad setting fails the start, not every
/// request).
pub(crate) fn sender_settings(
    config: &OtlpConfig,
    names: ExporterNames,
    interval: Option<Duration>,
) -> Result<agent_profiler_http::sender::Settings, OtlpError> {
    if let Some(reason) = config.header_errors.first() {
        return Err(OtlpError::InvalidHeader {
            source: "code",
            reason: reason.clone(),
        });
    }
    tls_config(config)?;
    Ok(agent_profiler_http::sender::Settings {
        name: names.name,
        thread_name: names.thread_name,
        subject: names.subject.to_owned(),
        stats: names.stats,
        warnings: config.warnings,
        warn_sink: None,
        redactor: config.redactor(),
        interval,
    })
}

pub(crate) fn tls_config(
    config: &OtlpConfig,
) -> Result<agent_profiler_http::tls::ClientConfig, OtlpError> {
    agent_profiler_http::tls::client_config(config.insecure_tls, config.certificate.as_deref())
        .map_err(|message| OtlpError::Tls { message })
}

/// What the receiver did with a request it accepted.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Accepted {
    /// Spans it refused (OTLP partial success).
    /// Spans, or metric data points, the receiver refused (OTLP partial success).
    pub(crate) rejected: u64,
    /// Its message about them.
    pub(crate) message: Option<String>,
}

/// Sends encoded `ExportTraceServiceRequest`s to one endpoint.
pub(crate) struct Sender {
    signal: Signal,
    http: Client,
    endpoint: String,
    shown_endpoint: String,
    headers: HeaderMap,
    redact: Redactor,
    timeout: Duration,
    retry: Policy,
    retries: Arc<AtomicU64>,
}

impl Sender {
    /// A sender for `config`. Builds a blocking HTTP client: call it from a plain thread.
    pub(crate) fn new(
        config: &OtlpConfig,
        signal: Signal,
        retries: Arc<AtomicU64>,
    ) -> Result<Self, OtlpError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let invalid = |reason: String| OtlpError::InvalidHeader {
                source: "code",
                reason,
            };
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("`{name}` is not a valid HTTP header name")))?;
            let value = sensitive_header(value.expose()).ok_or_else(|| {
                invalid(format!(
                    "the value of `{name}` has characters not allowed in a header"
                ))
            })?;
            headers.insert(name, value);
        }
        let http = ClientSettings::new(tls_config(config)?, config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .no_redirects()
            .blocking()
            .map_err(|e| OtlpError::Tls {
                message: format!("HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            signal,
            http,
            endpoint: config.endpoint.clone(),
            shown_endpoint: hide_userinfo(&config.endpoint),
            headers,
            redact: config.redactor(),
            timeout: config.timeout,
            retry: Policy {
                max_retries: config.max_retries,
                backoff: Backoff {
                    base: config.backoff,
                    first_retry_at_once: false,
                    jitter: Jitter::AsMuchAgain,
                },
                respect_retry_after: true,
            },
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

    /// Sends `body`, retrying transient failures; what the receiver said, or why it failed
    /// (a message without secrets).
    pub(crate) fn send(
        &self,
        body: &[u8],
        mlflow_run: Option<&str>,
        pacer: &dyn Pacer,
    ) -> Result<Accepted, String> {
        self.retry
            .run(self.timeout, pacer, &self.retries, |timeout, attempts| {
                self.attempt(body, mlflow_run, timeout)
                    .map_err(|failure| Failure {
                        error: with_attempts(failure.error, attempts),
                        ..failure
                    })
            })
            .map_err(|gave_up| match gave_up {
                GaveUp::Failed(message) => message,
                GaveUp::Deadline(Some(last)) => {
                    format!("shutdown deadline reached; last failure: {last}")
                }
                GaveUp::Deadline(None) => format!(
                    "OTLP export to {}: shutdown deadline reached before sending",
                    self.shown_endpoint
                ),
            })
    }

    fn attempt(
        &self,
        body: &[u8],
        mlflow_run: Option<&str>,
        timeout: Duration,
    ) -> Result<Accepted, Failure<String>> {
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
        let transport = |e: reqwest::Error| {
            let e = e.without_url();
            let message = format!(
                "OTLP export to {}: no answer: {}",
                self.shown_endpoint,
                self.redact.clean(&error_chain(&e))
            );
            Failure::without_answer(message, &e)
        };
        let response = request.send().map_err(transport)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = retry::retry_after(response.headers());
        let bytes = response.bytes().map_err(transport)?;
        if (200..300).contains(&status) {
            return self.accepted(status, &content_type, &bytes);
        }
        let detail = self
            .redact
            .excerpt(&String::from_utf8_lossy(&bytes), MAX_ERROR_BODY);
        let mut message = format!("OTLP export to {}: HTTP {status}", self.shown_endpoint);
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        Err(Failure::answered(message, status, retry_after))
    }

    /// Reads a 2xx answer: an `ExportTraceServiceResponse` (protobuf, or JSON from some
    /// receivers). A body that is neither is taken as a sign of a wrong endpoint (a web
    /// page answering every path) and counted as a failure.
    fn accepted(
        &self,
        status: u16,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<Accepted, Failure<String>> {
        if content_type.contains("json") {
            return Ok(Accepted::default());
        }
        let not_otlp = |why: &str| {
            Failure::fatal(format!(
                "OTLP export to {}: HTTP {status} with {why}; is this the {} endpoint of an \
                 OTLP receiver (e.g. http://host:4318{})?",
                self.shown_endpoint,
                match self.signal {
                    Signal::Traces => "trace",
                    Signal::Metrics => "metrics",
                },
                self.signal.path()
            ))
        };
        if content_type.starts_with("text/") {
            return Err(not_otlp(&format!("a `{content_type}` body")));
        }
        let partial = match self.signal {
            Signal::Traces => ExportTraceServiceResponse::decode(bytes).map(|answer| {
                let partial = answer.partial_success.unwrap_or_default();
                (partial.rejected_spans, partial.error_message)
            }),
            Signal::Metrics => ExportMetricsServiceResponse::decode(bytes).map(|answer| {
                let partial = answer.partial_success.unwrap_or_default();
                (partial.rejected_data_points, partial.error_message)
            }),
        };
        match partial {
            Ok((rejected, message)) => Ok(Accepted {
                rejected: u64::try_from(rejected).unwrap_or(0),
                message: Some(message)
                    .filter(|m| !m.is_empty())
                    .map(|m| self.redact.clean(&m)),
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_removed_from_messages() {
        let config = OtlpConfig::new("http://127.0.0.1:1/v1/traces")
            .unwrap()
            .header("authorization", "Bearer s3cr3t-token")
            .header("x-short", "ab");
        let sender = Sender::new(&config, Signal::Traces, Arc::default()).unwrap();
        assert_eq!(
            sender.redact.clean("refused Bearer s3cr3t-token here"),
            "refused *** here"
        );
    }
}
