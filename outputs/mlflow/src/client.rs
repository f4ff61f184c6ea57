//! A blocking client for MLflow's REST API (`/api/2.0/mlflow/...` and the artifact proxy
//! `/api/2.0/mlflow-artifacts/...`), with the official client's retries and MLflow's limits.

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::blocking::Client;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use agent_profiler_http::auth::sensitive_header;
use agent_profiler_http::client::{ClientSettings, error_chain};
use agent_profiler_http::retry::{
    self, Backoff, Failure, GaveUp, Jitter, Pacer, Patient, Policy, RETRY_STATUS_CODES,
};
use agent_profiler_http::secret::Redactor;
use agent_profiler_http::tls::certificate_error;
use agent_profiler_http::url::percent_decode;

use super::config::{ConfigError, MlflowConfig};
use super::keys::{
    KeyError, MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH, MAX_PARAM_VALUE_LENGTH,
    MAX_PARAMS_PER_BATCH, MAX_REQUEST_BYTES, MAX_TAG_VALUE_LENGTH, MAX_TAGS_PER_BATCH,
    truncate_chars, validate_key,
};

/// Longest error message body kept in an error, in characters.
const MAX_ERROR_MESSAGE: usize = 1000;

/// What went wrong talking to MLflow. Messages never hold the token or password.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MlflowError {
    /// The configuration cannot be used.
    Config(ConfigError),
    /// A key MLflow would reject; nothing was sent for it.
    Key(KeyError),
    /// The server answered with an error status.
    Api {
        /// The endpoint, e.g. `runs/log-batch`.
        endpoint: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code` (`INVALID_PARAMETER_VALUE`, `RESOURCE_DOES_NOT_EXIST`...),
        /// when the body was MLflow's JSON error.
        error_code: Option<String>,
        /// MLflow's `message`, or the start of a non-JSON body.
        message: String,
        /// Attempts made (1 when not retried).
        attempts: u32,
    },
    /// No HTTP answer: connection refused or reset, timeout, TLS failure...
    Transport {
        /// The endpoint.
        endpoint: String,
        /// What happened.
        message: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server's TLS certificate was refused (not retried).
    Tls {
        /// The endpoint.
        endpoint: String,
        /// Why the certificate was refused.
        message: String,
    },
    /// The caller's deadline came before the request succeeded.
    DeadlineExceeded {
        /// The endpoint.
        endpoint: String,
        /// The last failure before the deadline, if there was an attempt.
        last: Option<Box<MlflowError>>,
    },
    /// The server's answer is not what MLflow sends.
    InvalidResponse {
        /// The endpoint.
        endpoint: String,
        /// What is wrong.
        message: String,
    },
    /// The run's artifacts are not served by the tracking server (`--serve-artifacts` is off
    /// or the run's artifact URI is a local path or a cloud bucket).
    ArtifactsNotProxied {
        /// The run's artifact URI.
        artifact_uri: String,
    },
    /// The HTTP client (TLS settings) could not be built.
    Client {
        /// Why.
        message: String,
    },
    /// The exporter has been shut down; nothing more is sent.
    Stopped,
}

impl MlflowError {
    /// Whether the official client would retry this failure: 408, 429, 500, 502, 503, 504,
    /// and failures without an HTTP answer.
    pub fn is_retryable(&self) -> bool {
        match self {
            MlflowError::Api { status, .. } => RETRY_STATUS_CODES.contains(status),
            MlflowError::Transport { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, for [`MlflowError::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            MlflowError::Api { status, .. } => Some(*status),
            MlflowError::DeadlineExceeded {
                last: Some(last), ..
            } => last.status(),
            _ => None,
        }
    }

    /// MLflow's `error_code`, for [`MlflowError::Api`].
    pub fn error_code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { error_code, .. } => error_code.as_deref(),
            _ => None,
        }
    }

    fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            MlflowError::Api { attempts, .. } | MlflowError::Transport { attempts, .. } => {
                *attempts = n;
            }
            _ => {}
        }
        self
    }
}

impl fmt::Display for MlflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tries = |f: &mut fmt::Formatter<'_>, attempts: u32| {
            if attempts > 1 {
                write!(f, " (after {attempts} attempts)")
            } else {
                Ok(())
            }
        };
        match self {
            MlflowError::Config(e) => write!(f, "MLflow configuration: {e}"),
            MlflowError::Key(e) => e.fmt(f),
            MlflowError::Api {
                endpoint,
                status,
                error_code,
                message,
                attempts,
            } => {
                write!(f, "MLflow {endpoint}: HTTP {status}")?;
                if let Some(code) = error_code {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                tries(f, *attempts)
            }
            MlflowError::Transport {
                endpoint,
                message,
                attempts,
            } => {
                write!(f, "MLflow {endpoint}: no answer from the server: {message}")?;
                tries(f, *attempts)
            }
            MlflowError::Tls { endpoint, message } => write!(
                f,
                "MLflow {endpoint}: the server's TLS certificate was refused: {message}; trust \
                 its CA with MLFLOW_TRACKING_SERVER_CERT_PATH, or turn verification off with \
                 MLFLOW_TRACKING_INSECURE_TLS=true only where the network is trusted"
            ),
            MlflowError::DeadlineExceeded { endpoint, last } => {
                write!(f, "MLflow {endpoint}: deadline reached")?;
                match last {
                    Some(last) => write!(f, "; last failure: {last}"),
                    None => Ok(()),
                }
            }
            MlflowError::InvalidResponse { endpoint, message } => {
                write!(f, "MLflow {endpoint}: unexpected answer: {message}")
            }
            MlflowError::ArtifactsNotProxied { artifact_uri } => write!(
                f,
                "the run's artifact location `{artifact_uri}` is not served by the tracking \
                 server; start it with --serve-artifacts (the default) so that artifacts go \
                 through mlflow-artifacts"
            ),
            MlflowError::Client { message } => write!(f, "MLflow HTTP client: {message}"),
            MlflowError::Stopped => write!(f, "the MLflow exporter has been shut down"),
        }
    }
}

impl std::error::Error for MlflowError {}

impl From<ConfigError> for MlflowError {
    fn from(e: ConfigError) -> Self {
        MlflowError::Config(e)
    }
}

impl From<KeyError> for MlflowError {
    fn from(e: KeyError) -> Self {
        MlflowError::Key(e)
    }
}

/// One value of a metric.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Metric {
    /// The key, e.g. `node_plan_duration_ms`.
    pub key: String,
    /// The value (non-finite values are sent as `"NaN"`, `"Infinity"`, `"-Infinity"`; a
    /// SQL-backed server stores infinities as ±`f64::MAX`).
    #[serde(deserialize_with = "de_f64")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[serde(deserialize_with = "de_i64")]
    pub timestamp: i64,
    /// The step (for per-call metrics: the node's call index).
    #[serde(default, deserialize_with = "de_i64")]
    pub step: i64,
}

impl Metric {
    /// A metric value at `timestamp` (ms since the Unix epoch) and `step`.
    pub fn new(key: impl Into<String>, value: f64, timestamp: i64, step: i64) -> Self {
        Self {
            key: key.into(),
            value,
            timestamp,
            step,
        }
    }
}

/// A run parameter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Param {
    /// The key.
    pub key: String,
    /// The value (cut to 6000 characters when sent).
    #[serde(default)]
    pub value: String,
}

impl Param {
    /// A parameter.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run tag.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RunTag {
    /// The key.
    pub key: String,
    /// The value (cut to 8000 characters when sent).
    #[serde(default)]
    pub value: String,
}

impl RunTag {
    /// A tag.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// How a run ended (or that it still runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Running.
    Running,
    /// Scheduled, not started.
    Scheduled,
    /// Ended normally.
    Finished,
    /// Ended with an error.
    Failed,
    /// Stopped from outside.
    Killed,
}

impl RunStatus {
    /// MLflow's name of the status.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "RUNNING",
            RunStatus::Scheduled => "SCHEDULED",
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }
}

/// What MLflow keeps about a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// The run id.
    pub run_id: String,
    /// Its experiment.
    pub experiment_id: String,
    /// Its name.
    pub run_name: Option<String>,
    /// `RUNNING`, `FINISHED`, `FAILED`, `KILLED` or `SCHEDULED`.
    pub status: String,
    /// Start, ms since the Unix epoch.
    #[serde(deserialize_with = "de_opt_i64")]
    pub start_time: Option<i64>,
    /// End, ms since the Unix epoch.
    #[serde(deserialize_with = "de_opt_i64")]
    pub end_time: Option<i64>,
    /// Where its artifacts go (`mlflow-artifacts:/...` when the server proxies them).
    pub artifact_uri: String,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

/// A run's latest metrics, params and tags.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RunData {
    /// The latest value of each metric.
    pub metrics: Vec<Metric>,
    /// The params.
    pub params: Vec<Param>,
    /// The tags.
    pub tags: Vec<RunTag>,
}

impl RunData {
    /// The value of param `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    /// The value of tag `key`.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|t| t.key == key)
            .map(|t| t.value.as_str())
    }

    /// The latest value of metric `key`.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

/// A run: its info and its data.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Run {
    /// Id, status, times, artifact location.
    pub info: RunInfo,
    /// Metrics, params, tags.
    pub data: RunData,
}

/// An experiment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Experiment {
    /// Its id.
    pub experiment_id: String,
    /// Its name.
    pub name: String,
    /// Where its runs' artifacts go by default.
    pub artifact_location: Option<String>,
    /// `active` or `deleted`.
    pub lifecycle_stage: String,
}

/// An entry of an artifact listing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// Path relative to the listed directory.
    pub path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Size in bytes, for files.
    #[serde(deserialize_with = "de_opt_u64")]
    pub file_size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrString {
    F(f64),
    I(i64),
    S(String),
}

fn de_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::F(v) => Ok(v),
        NumberOrString::I(v) => Ok(v as f64),
        NumberOrString::S(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other.parse().map_err(serde::de::Error::custom),
        },
    }
}

fn de_i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match NumberOrString::deserialize(d)? {
        NumberOrString::I(v) => Ok(v),
        NumberOrString::F(v) => Ok(v as i64),
        NumberOrString::S(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumberOrString>::deserialize(d)?
        .map(|v| match v {
            NumberOrString::I(v) => Ok(v),
            NumberOrString::F(v) => Ok(v as i64),
            NumberOrString::S(s) => s.parse().map_err(serde::de::Error::custom),
        })
        .transpose()
}

fn de_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(de_opt_i64(d)?.map(|v| v.max(0) as u64))
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An error answer: MLflow's JSON (`error_code`, `message`) or any other body.
pub(crate) fn api_error(endpoint: &str, status: u16, body: &str, redact: &Redactor) -> MlflowError {
    #[derive(Deserialize)]
    struct ErrorBody {
        error_code: Option<String>,
        message: Option<String>,
    }
    let (error_code, message) = match serde_json::from_str::<ErrorBody>(body) {
        Ok(parsed) if parsed.error_code.is_some() || parsed.message.is_some() => {
            (parsed.error_code, parsed.message.unwrap_or_default())
        }
        _ => (None, body.trim().to_owned()),
    };
    MlflowError::Api {
        endpoint: endpoint.to_owned(),
        status,
        error_code,
        message: redact.excerpt(&message, MAX_ERROR_MESSAGE),
        attempts: 1,
    }
}

/// A `log-batch` request body under construction, within MLflow's limits.
pub(crate) struct BatchBody {
    head: Vec<u8>,
    metrics: Vec<u8>,
    params: Vec<u8>,
    tags: Vec<u8>,
    n_metrics: usize,
    n_params: usize,
    n_tags: usize,
    item: Vec<u8>,
}

/// `{"run_id":...,"metrics":[` `],"params":[` `],"tags":[` `]}`.
const BATCH_FRAME_BYTES: usize = 40;

impl BatchBody {
    pub(crate) fn new(run_id: &str) -> Self {
        let mut head = b"{\"run_id\":".to_vec();
        let _ = serde_json::to_writer(&mut head, run_id);
        Self {
            head,
            metrics: Vec::with_capacity(64 * 1024),
            params: Vec::new(),
            tags: Vec::new(),
            n_metrics: 0,
            n_params: 0,
            n_tags: 0,
            item: Vec::with_capacity(512),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.n_metrics + self.n_params + self.n_tags
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn metric_count(&self) -> usize {
        self.n_metrics
    }

    fn bytes(&self) -> usize {
        self.head.len()
            + self.metrics.len()
            + self.params.len()
            + self.tags.len()
            + BATCH_FRAME_BYTES
    }

    fn fits(&self, extra: usize) -> bool {
        self.len() < MAX_ENTITIES_PER_BATCH && self.bytes() + extra + 1 < MAX_REQUEST_BYTES
    }

    /// Adds a metric if the batch has room; `false` (nothing added) when it is full.
    pub(crate) fn push_metric(&mut self, key: &str, value: f64, timestamp: i64, step: i64) -> bool {
        if self.n_metrics >= MAX_METRICS_PER_BATCH {
            return false;
        }
        self.item.clear();
        let item = &mut self.item;
        item.extend_from_slice(b"{\"key\":");
        let _ = serde_json::to_writer(&mut *item, key);
        item.extend_from_slice(b",\"value\":");
        if value.is_finite() {
            let _ = serde_json::to_writer(&mut *item, &value);
        } else if value.is_nan() {
            item.extend_from_slice(b"\"NaN\"");
        } else if value > 0.0 {
            item.extend_from_slice(b"\"Infinity\"");
        } else {
            item.extend_from_slice(b"\"-Infinity\"");
        }
        let _ = write!(item, ",\"timestamp\":{timestamp},\"step\":{step}}}");
        if !self.fits(self.item.len()) {
            return false;
        }
        if self.n_metrics > 0 {
            self.metrics.push(b',');
        }
        self.metrics.extend_from_slice(&self.item);
        self.n_metrics += 1;
        true
    }

    fn push_pair(&mut self, tag: bool, key: &str, value: &str) -> bool {
        let (count, limit, max_value) = if tag {
            (self.n_tags, MAX_TAGS_PER_BATCH, MAX_TAG_VALUE_LENGTH)
        } else {
            (self.n_params, MAX_PARAMS_PER_BATCH, MAX_PARAM_VALUE_LENGTH)
        };
        if count >= limit {
            return false;
        }
        self.item.clear();
        self.item.extend_from_slice(b"{\"key\":");
        let _ = serde_json::to_writer(&mut self.item, key);
        self.item.extend_from_slice(b",\"value\":");
        let _ = serde_json::to_writer(&mut self.item, truncate_chars(value, max_value));
        self.item.push(b'}');
        if !self.fits(self.item.len()) {
            return false;
        }
        let (section, n) = if tag {
            (&mut self.tags, &mut self.n_tags)
        } else {
            (&mut self.params, &mut self.n_params)
        };
        if *n > 0 {
            section.push(b',');
        }
        section.extend_from_slice(&self.item);
        *n += 1;
        true
    }

    /// Adds a param (value cut to 6000 characters) if the batch has room.
    pub(crate) fn push_param(&mut self, key: &str, value: &str) -> bool {
        self.push_pair(false, key, value)
    }

    /// Adds a tag (value cut to 8000 characters) if the batch has room.
    pub(crate) fn push_tag(&mut self, key: &str, value: &str) -> bool {
        self.push_pair(true, key, value)
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b",\"metrics\":[");
        out.extend_from_slice(&self.metrics);
        out.extend_from_slice(b"],\"params\":[");
        out.extend_from_slice(&self.params);
        out.extend_from_slice(b"],\"tags\":[");
        out.extend_from_slice(&self.tags);
        out.extend_from_slice(b"]}");
        out
    }

    /// Empties the batch for reuse.
    pub(crate) fn clear(&mut self) {
        self.metrics.clear();
        self.params.clear();
        self.tags.clear();
        self.n_metrics = 0;
        self.n_params = 0;
        self.n_tags = 0;
    }
}

/// A blocking client of one MLflow tracking server, with the official client's retries
/// (408, 429, 500, 502, 503, 504 and connection failures; exponential backoff with jitter;
/// `Retry-After` honoured) and MLflow's limits applied before sending.
///
/// Blocking: call it from plain threads, not from inside an async task.
/// [`MlflowTracker`](super::MlflowTracker) runs one on its own thread.
///
/// ```no_run
/// use agent_profiler_mlflow::{Metric, MlflowClient, MlflowConfig, RunStatus, now_ms};
///
/// let client = MlflowClient::new(&MlflowConfig::from_env()?)?;
/// let experiment = client.get_or_create_experiment("agents")?;
/// let run = client.create_run(&experiment, Some("by hand"), &[])?;
/// client.log_batch(&run.run_id, &[Metric::new("loss", 0.5, now_ms(), 0)], &[], &[])?;
/// client.update_run(&run.run_id, RunStatus::Finished, Some(now_ms()))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct MlflowClient {
    http: Client,
    base: String,
    auth: Option<HeaderValue>,
    redact: Redactor,
    timeout: Duration,
    retry: Policy,
    retries: Arc<AtomicU64>,
}

impl fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowClient")
            .field("tracking_uri", &self.base)
            .field("authenticated", &self.auth.is_some())
            .field("timeout", &self.timeout)
            .field("max_retries", &self.retry.max_retries)
            .finish_non_exhaustive()
    }
}

/// The TLS setup of `config` ([`agent_profiler_http::tls::client_config`]).
fn tls_config(
    config: &MlflowConfig,
) -> Result<agent_profiler_http::tls::ClientConfig, MlflowError> {
    agent_profiler_http::tls::client_config(config.insecure_tls, config.server_cert_path.as_deref())
        .map_err(|message| MlflowError::Client { message })
}

/// A number of seconds (not negative) as a duration; beyond what a duration holds, the
/// longest one (backoff waits are capped far below).
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Builds the TLS setup of `config` once, to report a bad one early.
pub(crate) fn check_tls(config: &MlflowConfig) -> Result<(), MlflowError> {
    tls_config(config).map(drop)
}

impl MlflowClient {
    /// A client of the server in `config` (only its connection settings are used here).
    ///
    /// # Errors
    /// [`MlflowError::Client`] when the TLS setup fails (unreadable CA file...).
    pub fn new(config: &MlflowConfig) -> Result<Self, MlflowError> {
        let redact = config.auth.redactor();
        let auth = match config.auth.header_value() {
            Some(value) => Some(sensitive_header(value.expose()).ok_or_else(|| {
                MlflowError::Client {
                    message: "the token or credentials contain characters not allowed in an \
                              HTTP header"
                        .to_owned(),
                }
            })?),
            None => None,
        };
        let http = ClientSettings::new(tls_config(config)?, config.request_timeout)
            .blocking()
            .map_err(|e| MlflowError::Client {
                message: redact.clean(&error_chain(&e)),
            })?;
        Ok(Self {
            http,
            base: config.tracking_uri.clone(),
            auth,
            redact,
            timeout: config.request_timeout,
            retry: Policy {
                max_retries: config.max_retries,
                backoff: Backoff {
                    base: seconds(config.backoff_factor),
                    first_retry_at_once: true,
                    jitter: Jitter::UpTo(seconds(config.backoff_jitter)),
                },
                respect_retry_after: config.respect_retry_after,
            },
            retries: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A client configured from the environment ([`MlflowConfig::from_env`]).
    ///
    /// # Errors
    /// A [`MlflowError::Config`] for a missing or bad setting, or as [`new`](Self::new).
    pub fn from_env() -> Result<Self, MlflowError> {
        Self::new(&MlflowConfig::from_env()?)
    }

    /// The tracking server's URL (without user info).
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }

    /// Retries made so far by this client and its clones.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Counts this client's retries in `counter` (the exporter's statistics).
    pub(crate) fn with_retry_counter(mut self, counter: Arc<AtomicU64>) -> Self {
        self.retries = counter;
        self
    }

    fn api_url(&self, endpoint: &str) -> Result<Url, MlflowError> {
        Url::parse(&format!("{}/api/2.0/mlflow/{endpoint}", self.base)).map_err(|e| {
            MlflowError::Client {
                message: format!("bad URL for {endpoint}: {e}"),
            }
        })
    }

    /// Sends one request, retrying transient failures; the body of the 2xx answer as text.
    fn send(
        &self,
        method: Method,
        url: Url,
        endpoint: &str,
        body: Option<(&[u8], &'static str)>,
        pacer: &dyn Pacer,
    ) -> Result<String, MlflowError> {
        self.send_bytes(method, url, endpoint, body, pacer, MAX_ANSWER_BYTES)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// [`send`](Self::send), the answer's bytes as they came, refused beyond `limit` bytes
    /// (memory stays bounded whatever the server sends).
    fn send_bytes(
        &self,
        method: Method,
        url: Url,
        endpoint: &str,
        body: Option<(&[u8], &'static str)>,
        pacer: &dyn Pacer,
        limit: u64,
    ) -> Result<Vec<u8>, MlflowError> {
        self.retry
            .run(self.timeout, pacer, &self.retries, |timeout, attempts| {
                self.attempt(&method, &url, endpoint, body, timeout, limit)
                    .map_err(|failure| Failure {
                        error: failure.error.with_attempts(attempts),
                        ..failure
                    })
            })
            .map_err(|gave_up| match gave_up {
                GaveUp::Failed(error) => error,
                GaveUp::Deadline(last) => MlflowError::DeadlineExceeded {
                    endpoint: endpoint.to_owned(),
                    last: last.map(Box::new),
                },
            })
    }

    fn attempt(
        &self,
        method: &Method,
        url: &Url,
        endpoint: &str,
        body: Option<(&[u8], &'static str)>,
        timeout: Duration,
        limit: u64,
    ) -> Result<Vec<u8>, Failure<MlflowError>> {
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .timeout(timeout);
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        if let Some((bytes, content_type)) = body {
            request = request
                .header(CONTENT_TYPE, content_type)
                .body(bytes.to_vec());
        }
        let transport = |e: reqwest::Error| match certificate_error(&e) {
            Some(why) => Failure::fatal(MlflowError::Tls {
                endpoint: endpoint.to_owned(),
                message: why,
            }),
            None => Failure::without_answer(
                MlflowError::Transport {
                    endpoint: endpoint.to_owned(),
                    message: self.redact.clean(&error_chain(&e)),
                    attempts: 1,
                },
                &e,
            ),
        };
        let response = request.send().map_err(transport)?;
        let status = response.status().as_u16();
        let retry_after = retry::retry_after(response.headers());
        let bytes = read_at_most(response, limit).map_err(|e| match e {
            Bounded::Transport(e) => transport(e),
            // The body was cut (a reset, a bad chunk): no whole answer came, try again.
            Bounded::Io(e) => Failure::no_answer(MlflowError::Transport {
                endpoint: endpoint.to_owned(),
                message: self.redact.clean(&format!("reading the answer: {e}")),
                attempts: 1,
            }),
            Bounded::TooLarge => Failure::fatal(MlflowError::InvalidResponse {
                endpoint: endpoint.to_owned(),
                message: format!("the answer is larger than {limit} bytes"),
            }),
        })?;
        if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            let text = String::from_utf8_lossy(&bytes);
            let error = api_error(endpoint, status, &text, &self.redact);
            Err(Failure::answered(error, status, retry_after))
        }
    }

    fn get(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
        pacer: &dyn Pacer,
    ) -> Result<String, MlflowError> {
        let mut url = self.api_url(endpoint)?;
        url.query_pairs_mut().extend_pairs(query);
        self.send(Method::GET, url, endpoint, None, pacer)
    }

    fn post(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
        pacer: &dyn Pacer,
    ) -> Result<String, MlflowError> {
        let url = self.api_url(endpoint)?;
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        self.send(
            Method::POST,
            url,
            endpoint,
            Some((&bytes, "application/json")),
            pacer,
        )
    }

    fn decode<T: DeserializeOwned>(&self, endpoint: &str, text: &str) -> Result<T, MlflowError> {
        serde_json::from_str(text).map_err(|e| MlflowError::InvalidResponse {
            endpoint: endpoint.to_owned(),
            // serde's message may quote part of the answer.
            message: self.redact.clean(&e.to_string()),
        })
    }

    /// The experiment called `name`, or `None` when there is none.
    ///
    /// # Errors
    /// Any failure but "does not exist".
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, MlflowError> {
        self.get_experiment_by_name_with(name, &Patient)
    }

    pub(crate) fn get_experiment_by_name_with(
        &self,
        name: &str,
        pacer: &dyn Pacer,
    ) -> Result<Option<Experiment>, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let endpoint = "experiments/get-by-name";
        match self.get(endpoint, &[("experiment_name", name)], pacer) {
            Ok(text) => Ok(Some(self.decode::<Answer>(endpoint, &text)?.experiment)),
            Err(e) if e.error_code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The experiment with this id.
    ///
    /// # Errors
    /// `RESOURCE_DOES_NOT_EXIST` and any other failure.
    pub fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, MlflowError> {
        self.get_experiment_with(experiment_id, &Patient)
    }

    pub(crate) fn get_experiment_with(
        &self,
        experiment_id: &str,
        pacer: &dyn Pacer,
    ) -> Result<Experiment, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            experiment: Experiment,
        }
        let endpoint = "experiments/get";
        let text = self.get(endpoint, &[("experiment_id", experiment_id)], pacer)?;
        Ok(self.decode::<Answer>(endpoint, &text)?.experiment)
    }

    /// Creates an experiment; its id.
    ///
    /// # Errors
    /// `RESOURCE_ALREADY_EXISTS` when the name is taken, and any other failure.
    pub fn create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        self.create_experiment_with(name, &Patient)
    }

    fn create_experiment_with(&self, name: &str, pacer: &dyn Pacer) -> Result<String, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            experiment_id: String,
        }
        let endpoint = "experiments/create";
        let text = self.post(endpoint, &serde_json::json!({ "name": name }), pacer)?;
        Ok(self.decode::<Answer>(endpoint, &text)?.experiment_id)
    }

    /// The id of the experiment called `name`, created when missing (also when another
    /// client creates it at the same time).
    ///
    /// # Errors
    /// Any failure of the lookup or the creation.
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String, MlflowError> {
        self.get_or_create_experiment_with(name, &Patient)
    }

    pub(crate) fn get_or_create_experiment_with(
        &self,
        name: &str,
        pacer: &dyn Pacer,
    ) -> Result<String, MlflowError> {
        if let Some(found) = self.get_experiment_by_name_with(name, pacer)? {
            return Ok(found.experiment_id);
        }
        match self.create_experiment_with(name, pacer) {
            Ok(id) => Ok(id),
            Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => self
                .get_experiment_by_name_with(name, pacer)?
                .map(|found| found.experiment_id)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Creates a run in an experiment, started now, with a name (or one the server picks)
    /// and tags (invalid tag keys are refused before sending).
    ///
    /// # Errors
    /// [`MlflowError::Key`] for a bad tag key, and any failure of the request.
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        tags: &[RunTag],
    ) -> Result<RunInfo, MlflowError> {
        self.create_run_with(experiment_id, run_name, tags, &Patient)
    }

    pub(crate) fn create_run_with(
        &self,
        experiment_id: &str,
        run_name: Option<&str>,
        tags: &[RunTag],
        pacer: &dyn Pacer,
    ) -> Result<RunInfo, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        for tag in tags {
            validate_key(&tag.key)?;
        }
        let tags: Vec<serde_json::Value> = tags
            .iter()
            .map(|t| {
                serde_json::json!({
                    "key": t.key,
                    "value": truncate_chars(&t.value, MAX_TAG_VALUE_LENGTH),
                })
            })
            .collect();
        let mut body = serde_json::json!({
            "experiment_id": experiment_id,
            "start_time": now_ms(),
            "tags": tags,
        });
        if let Some(name) = run_name {
            body["run_name"] = name.into();
        }
        let endpoint = "runs/create";
        let text = self.post(endpoint, &body, pacer)?;
        Ok(self.decode::<Answer>(endpoint, &text)?.run.info)
    }

    /// A run: info, latest metrics, params, tags.
    ///
    /// # Errors
    /// `RESOURCE_DOES_NOT_EXIST` and any other failure.
    pub fn get_run(&self, run_id: &str) -> Result<Run, MlflowError> {
        self.get_run_with(run_id, &Patient)
    }

    pub(crate) fn get_run_with(&self, run_id: &str, pacer: &dyn Pacer) -> Result<Run, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            run: Run,
        }
        let endpoint = "runs/get";
        let text = self.get(endpoint, &[("run_id", run_id)], pacer)?;
        Ok(self.decode::<Answer>(endpoint, &text)?.run)
    }

    /// Sets a run's status, and its end time when given (ms since the Unix epoch).
    ///
    /// # Errors
    /// Any failure of the request.
    pub fn update_run(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
    ) -> Result<(), MlflowError> {
        self.update_run_with(run_id, status, end_time, &Patient)
    }

    pub(crate) fn update_run_with(
        &self,
        run_id: &str,
        status: RunStatus,
        end_time: Option<i64>,
        pacer: &dyn Pacer,
    ) -> Result<(), MlflowError> {
        let mut body = serde_json::json!({ "run_id": run_id, "status": status.as_str() });
        if let Some(end) = end_time {
            body["end_time"] = end.into();
        }
        self.post("runs/update", &body, pacer).map(drop)
    }

    /// Logs metrics, params and tags, split into as many `log-batch` requests as MLflow's
    /// limits need (1000 metrics, 100 params, 100 tags, 1000 entities, under 1 MB each).
    /// Param values are cut to 6000 characters and tag values to 8000; non-finite values are
    /// sent as `"NaN"`, `"Infinity"`, `"-Infinity"`.
    ///
    /// # Errors
    /// [`MlflowError::Key`] when any key is invalid: then nothing is sent. Otherwise the
    /// first failed request (earlier requests stay logged).
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[RunTag],
    ) -> Result<(), MlflowError> {
        let keys = metrics
            .iter()
            .map(|m| &m.key)
            .chain(params.iter().map(|p| &p.key))
            .chain(tags.iter().map(|t| &t.key));
        for key in keys {
            validate_key(key)?;
        }
        let mut batch = BatchBody::new(run_id);
        let flush = |batch: &mut BatchBody| -> Result<(), MlflowError> {
            if !batch.is_empty() {
                self.log_batch_body(&batch.body(), &Patient)?;
                batch.clear();
            }
            Ok(())
        };
        for m in metrics {
            if !batch.push_metric(&m.key, m.value, m.timestamp, m.step) {
                flush(&mut batch)?;
                batch.push_metric(&m.key, m.value, m.timestamp, m.step);
            }
        }
        for p in params {
            if !batch.push_param(&p.key, &p.value) {
                flush(&mut batch)?;
                batch.push_param(&p.key, &p.value);
            }
        }
        for t in tags {
            if !batch.push_tag(&t.key, &t.value) {
                flush(&mut batch)?;
                batch.push_tag(&t.key, &t.value);
            }
        }
        flush(&mut batch)
    }

    /// Sends one prepared `log-batch` body.
    pub(crate) fn log_batch_body(&self, body: &[u8], pacer: &dyn Pacer) -> Result<(), MlflowError> {
        let endpoint = "runs/log-batch";
        let url = self.api_url(endpoint)?;
        self.send(
            Method::POST,
            url,
            endpoint,
            Some((body, "application/json")),
            pacer,
        )
        .map(drop)
    }

    /// Every value ever logged for a metric of a run, in the server's order (pages of 25000
    /// followed to the end).
    ///
    /// # Errors
    /// Any failure of a request.
    pub fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            metrics: Vec<Metric>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let endpoint = "metrics/get-history";
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let text = self.get(endpoint, &query, &Patient)?;
            let page: Answer = self.decode(endpoint, &text)?;
            all.extend(page.metrics);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) => token = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// The artifact service's root URL (`.../api/2.0/mlflow-artifacts/artifacts`) and the
    /// run's directory under it, when the server proxies the run's artifacts.
    fn artifact_root(&self, artifact_uri: &str) -> Result<(Url, String), MlflowError> {
        const SERVICE: [&str; 4] = ["api", "2.0", "mlflow-artifacts", "artifacts"];
        let not_proxied = || MlflowError::ArtifactsNotProxied {
            artifact_uri: artifact_uri.to_owned(),
        };
        if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
            let mut base = Url::parse(&self.base).map_err(|_| not_proxied())?;
            let root = if let Some(authority_path) = rest.strip_prefix("//") {
                // mlflow-artifacts://host:port/path: that host, the tracking URI's scheme.
                let (authority, root) = authority_path
                    .split_once('/')
                    .unwrap_or((authority_path, ""));
                let other = Url::parse(&format!("{}://{authority}", base.scheme()))
                    .map_err(|_| not_proxied())?;
                base.set_host(other.host_str()).map_err(|_| not_proxied())?;
                base.set_port(other.port()).map_err(|()| not_proxied())?;
                root
            } else {
                rest
            };
            let prefix = base.path().trim_matches('/').to_owned();
            base.path_segments_mut()
                .map_err(|()| not_proxied())?
                .clear()
                .extend(prefix.split('/').filter(|s| !s.is_empty()))
                .extend(SERVICE);
            Ok((base, root.trim_matches('/').to_owned()))
        } else if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
            let url = Url::parse(artifact_uri).map_err(|_| not_proxied())?;
            let segments: Vec<String> = url
                .path_segments()
                .map(|s| {
                    s.map(|p| percent_decode(p).unwrap_or_else(|| p.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let at = segments
                .windows(SERVICE.len())
                .position(|w| w == SERVICE)
                .ok_or_else(not_proxied)?;
            let mut base = url.clone();
            base.set_query(None);
            base.path_segments_mut()
                .map_err(|()| not_proxied())?
                .clear()
                .extend(&segments[..at + SERVICE.len()]);
            Ok((base, segments[at + SERVICE.len()..].join("/")))
        } else {
            Err(not_proxied())
        }
    }

    /// The URL of artifact `path` of a run.
    fn artifact_url(&self, artifact_uri: &str, path: &str) -> Result<Url, MlflowError> {
        let (mut url, root) = self.artifact_root(artifact_uri)?;
        url.path_segments_mut()
            .map_err(|()| MlflowError::ArtifactsNotProxied {
                artifact_uri: artifact_uri.to_owned(),
            })?
            .extend(root.split('/').filter(|s| !s.is_empty()))
            .extend(path.split('/').filter(|s| !s.is_empty()));
        Ok(url)
    }

    /// Uploads `bytes` as the artifact `path` of a run (through the server's
    /// `mlflow-artifacts` proxy).
    ///
    /// # Errors
    /// [`MlflowError::ArtifactsNotProxied`] when the server does not serve the run's
    /// artifacts; any failure of the upload.
    pub fn log_artifact(
        &self,
        run: &RunInfo,
        path: &str,
        bytes: &[u8],
        content_type: &'static str,
    ) -> Result<(), MlflowError> {
        self.log_artifact_with(run, path, bytes, content_type, &Patient)
    }

    pub(crate) fn log_artifact_with(
        &self,
        run: &RunInfo,
        path: &str,
        bytes: &[u8],
        content_type: &'static str,
        pacer: &dyn Pacer,
    ) -> Result<(), MlflowError> {
        let url = self.artifact_url(&run.artifact_uri, path)?;
        self.send(
            Method::PUT,
            url,
            "mlflow-artifacts/artifacts",
            Some((bytes, content_type)),
            pacer,
        )
        .map(drop)
    }

    /// The artifacts of a run under `path` (`None`: the root).
    ///
    /// # Errors
    /// [`MlflowError::ArtifactsNotProxied`], and any failure of the request.
    pub fn list_artifacts(
        &self,
        run: &RunInfo,
        path: Option<&str>,
    ) -> Result<Vec<FileInfo>, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            files: Vec<FileInfo>,
        }
        let (mut list, root) = self.artifact_root(&run.artifact_uri)?;
        let listed = match path.map(|p| p.trim_matches('/')) {
            Some(p) if !p.is_empty() => format!("{root}/{p}"),
            _ => root,
        };
        list.query_pairs_mut().append_pair("path", &listed);
        let endpoint = "mlflow-artifacts/artifacts";
        let text = self.send(Method::GET, list, endpoint, None, &Patient)?;
        Ok(self.decode::<Answer>(endpoint, &text)?.files)
    }

    /// The bytes of artifact `path` of a run.
    ///
    /// # Errors
    /// [`MlflowError::ArtifactsNotProxied`], and any failure of the request.
    pub fn download_artifact(&self, run: &RunInfo, path: &str) -> Result<Vec<u8>, MlflowError> {
        self.download_artifact_limited(run, path, MAX_ANSWER_BYTES)
    }

    /// The bytes of artifact `path` of a run, refused (an [`MlflowError::InvalidResponse`],
    /// not retried) when it is larger than `max_bytes`: a reader of many runs keeps its
    /// memory bounded whatever a run holds. Read through the server's artifact proxy
    /// (`GET /api/2.0/mlflow-artifacts/artifacts/{run's root}/{path}`).
    ///
    /// # Errors
    /// [`MlflowError::ArtifactsNotProxied`]; `RESOURCE_DOES_NOT_EXIST` (a 404) when the run
    /// has no such artifact; any other failure of the request.
    pub fn download_artifact_limited(
        &self,
        run: &RunInfo,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, MlflowError> {
        let url = self.artifact_url(&run.artifact_uri, path)?;
        self.send_bytes(
            Method::GET,
            url,
            "mlflow-artifacts/artifacts",
            None,
            &Patient,
            max_bytes,
        )
    }

    /// One page of the runs of `experiment_ids` that `query` selects
    /// (`POST /api/2.0/mlflow/runs/search`): at most `query.max_results` runs in the order
    /// asked, and the token of the next page when there are more. Follow
    /// [`SearchPage::next_page_token`] (set it as `query.page_token`) to read every page;
    /// one page at a time keeps a reader's memory bounded.
    ///
    /// ```no_run
    /// use agent_profiler_mlflow::{MlflowClient, MlflowConfig, SearchRuns};
    ///
    /// let client = MlflowClient::new(&MlflowConfig::new("http://127.0.0.1:5000")?)?;
    /// let mut query = SearchRuns::new(["0"])
    ///     .filter("tags.`agent_profiler.workflow` = 'research'")
    ///     .order_by("attributes.start_time DESC")
    ///     .max_results(100);
    /// loop {
    ///     let page = client.search_runs(&query)?;
    ///     for run in &page.runs {
    ///         println!("{} {}", run.info.run_id, run.info.status);
    ///     }
    ///     match page.next_page_token {
    ///         Some(token) => query.page_token = Some(token),
    ///         None => break,
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// `INVALID_PARAMETER_VALUE` for a filter or an order MLflow cannot parse; any other
    /// failure of the request.
    pub fn search_runs(&self, query: &SearchRuns) -> Result<SearchPage, MlflowError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            runs: Vec<Run>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let endpoint = "runs/search";
        let mut body = serde_json::json!({
            "experiment_ids": query.experiment_ids,
            "max_results": query.max_results.clamp(1, MAX_SEARCH_RESULTS),
            "run_view_type": if query.deleted { "ALL" } else { "ACTIVE_ONLY" },
        });
        if let Some(filter) = &query.filter {
            body["filter"] = filter.as_str().into();
        }
        if !query.order_by.is_empty() {
            body["order_by"] = query.order_by.clone().into();
        }
        if let Some(token) = &query.page_token {
            body["page_token"] = token.as_str().into();
        }
        let text = self.post(endpoint, &body, &Patient)?;
        let answer: Answer = self.decode(endpoint, &text)?;
        Ok(SearchPage {
            runs: answer.runs,
            next_page_token: answer.next_page_token.filter(|t| !t.is_empty()),
        })
    }
}

/// The most runs one `runs/search` page may ask for (MLflow's own limit is 50000; pages
/// of at most this many keep each answer small).
pub const MAX_SEARCH_RESULTS: u32 = 1000;

/// The largest answer read from the server, in bytes (an artifact download can ask for
/// less): beyond it the answer is refused rather than held in memory.
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024 * 1024;

/// What [`MlflowClient::search_runs`] asks for: the experiments, a filter in MLflow's
/// search syntax, the order, the page size and the page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchRuns {
    /// The experiments searched (ids).
    pub experiment_ids: Vec<String>,
    /// MLflow's filter (`tags.\`key\` = 'value' AND metrics.m > 1`); `None`: every run.
    pub filter: Option<String>,
    /// Columns to order by (`attributes.start_time DESC`, `metrics.m ASC`).
    pub order_by: Vec<String>,
    /// Runs per page (1 to [`MAX_SEARCH_RESULTS`]; default 100).
    pub max_results: u32,
    /// The page: the token of the page before's answer; `None`: the first page.
    pub page_token: Option<String>,
    /// Whether deleted runs are searched too (default: active runs only).
    pub deleted: bool,
}

impl SearchRuns {
    /// Every active run of `experiment_ids`, 100 a page, in the server's default order
    /// (newest start first).
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(experiment_ids: I) -> Self {
        Self {
            experiment_ids: experiment_ids.into_iter().map(Into::into).collect(),
            max_results: 100,
            ..Self::default()
        }
    }

    /// Only the runs `filter` selects (MLflow's search syntax).
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = Some(filter.into());
        self
    }

    /// Adds a column to order by.
    pub fn order_by(mut self, column: impl Into<String>) -> Self {
        self.order_by.push(column.into());
        self
    }

    /// Runs per page.
    pub fn max_results(mut self, n: u32) -> Self {
        self.max_results = n;
        self
    }
}

/// One page of [`MlflowClient::search_runs`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchPage {
    /// The runs of the page, with their info, tags, params and latest metrics.
    pub runs: Vec<Run>,
    /// The token of the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Why a body was not read.
#[derive(Debug)]
enum Bounded {
    /// reqwest's own error, as the reader reported it.
    Transport(reqwest::Error),
    /// Any other read error (a body cut short): a transport failure too, retried.
    Io(std::io::Error),
    /// More than the limit: the only case that is the answer's size.
    TooLarge,
}

/// The body of `response`, at most `limit` bytes (more is [`Bounded::TooLarge`]: the
/// reading stops there, so memory stays bounded).
fn read_at_most(response: reqwest::blocking::Response, limit: u64) -> Result<Vec<u8>, Bounded> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(Bounded::TooLarge);
    }
    read_body_at_most(response, limit)
}

/// `body`, at most `limit` bytes: [`Bounded::TooLarge`] only for the byte count, every
/// read error a transport failure.
fn read_body_at_most(body: impl std::io::Read, limit: u64) -> Result<Vec<u8>, Bounded> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    let mut reader = body.take(limit.saturating_add(1));
    if let Err(e) = reader.read_to_end(&mut bytes) {
        // The blocking response's reader wraps reqwest's error in an io::Error.
        if !e
            .get_ref()
            .is_some_and(|inner| inner.is::<reqwest::Error>())
        {
            return Err(Bounded::Io(e));
        }
        return Err(
            match e.into_inner().map(|i| i.downcast::<reqwest::Error>()) {
                Some(Ok(e)) => Bounded::Transport(*e),
                Some(Err(other)) => Bounded::Io(std::io::Error::other(other)),
                None => Bounded::Io(std::io::Error::other("the answer's body could not be read")),
            },
        );
    }
    if bytes.len() as u64 > limit {
        return Err(Bounded::TooLarge);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `good` bytes, then fails as a cut connection does.
    struct Cut(usize);

    impl std::io::Read for Cut {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ));
            }
            let n = self.0.min(buf.len());
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn a_cut_body_is_a_transport_failure_and_only_size_is_too_large() {
        assert!(matches!(
            read_body_at_most(Cut(10), 100),
            Err(Bounded::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset
        ));
        assert!(matches!(
            read_body_at_most(&[0u8; 101][..], 100),
            Err(Bounded::TooLarge)
        ));
        assert_eq!(read_body_at_most(&[7u8; 100][..], 100).unwrap(), [7u8; 100]);
    }

    #[test]
    fn error_bodies_json_or_not() {
        let r = Redactor::default();
        let e = api_error(
            "runs/log-batch",
            400,
            r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad key"}"#,
            &r,
        );
        assert_eq!(e.error_code(), Some("INVALID_PARAMETER_VALUE"));
        assert_eq!(
            e.to_string(),
            "MLflow runs/log-batch: HTTP 400 INVALID_PARAMETER_VALUE: bad key"
        );
        let e = api_error("runs/get", 502, "<html>Bad Gateway</html>", &r);
        assert_eq!(e.error_code(), None);
        assert!(e.to_string().contains("<html>Bad Gateway</html>"));
        assert!(e.is_retryable());
        let e = api_error("runs/get", 500, &"x".repeat(5000), &r);
        assert!(e.to_string().len() < 1200);
    }

    #[test]
    fn batch_bodies_respect_the_limits_and_encode_non_finite_values() {
        let mut b = BatchBody::new("run");
        assert!(b.push_metric("a", f64::NAN, 1, 0));
        assert!(b.push_metric("a", f64::INFINITY, 2, 1));
        assert!(b.push_metric("a", f64::NEG_INFINITY, 3, 2));
        assert!(b.push_metric("a", 1.5, 4, 3));
        assert!(b.push_param("p", &"v".repeat(7000)));
        assert!(b.push_tag("t", &"w".repeat(9000)));
        let body: serde_json::Value = serde_json::from_slice(&b.body()).unwrap();
        let values: Vec<&serde_json::Value> = body["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["value"])
            .collect();
        assert_eq!(
            values,
            [
                &serde_json::json!("NaN"),
                &serde_json::json!("Infinity"),
                &serde_json::json!("-Infinity"),
                &serde_json::json!(1.5)
            ]
        );
        assert_eq!(body["params"][0]["value"].as_str().unwrap().len(), 6000);
        assert_eq!(body["tags"][0]["value"].as_str().unwrap().len(), 8000);

        let mut b = BatchBody::new("run");
        let mut n = 0;
        while b.push_metric("k", 1.0, 1, n) {
            n += 1;
        }
        assert_eq!(n, 1000);
        let mut b = BatchBody::new("run");
        let mut n = 0;
        while b.push_tag(&format!("t{n}"), "v") {
            n += 1;
        }
        assert_eq!(n, 100);
        let mut b = BatchBody::new("run");
        let big = "\u{1}".repeat(8000); // escaped as \u0001: 6 bytes each
        let mut n = 0;
        while b.push_tag(&format!("t{n}"), &big) {
            n += 1;
        }
        assert!(b.body().len() < MAX_REQUEST_BYTES);
        assert!(n < 100, "{n}");
    }
}
