//! Where traces go and how: the OpenTelemetry SDK's environment variables, MLflow's OTLP
//! endpoint, and settings in code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};

use agent_profiler_http::env::{BOOL_EXPECTED, parse_bool};
use agent_profiler_http::secret::{Redactor, Secret};
use agent_profiler_http::url::{hide_userinfo, percent_decode, userinfo_secrets};
use agent_profiler_mlflow::{ConfigError, MlflowConfig};

use crate::sampler::Sampler;

/// Default of `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`: 10 s per request (the SDK's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default service name (`service.name`) when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "agent-profiler";
/// Default largest number of spans in one request; larger traces are split (the
/// collector, or MLflow, puts them back together by trace id).
pub const DEFAULT_MAX_SPANS_PER_REQUEST: usize = 512;
/// Default number of spans the exporter holds while the endpoint is behind.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// Default retries of a request after a transient failure.
pub const DEFAULT_MAX_RETRIES: u32 = 5;
/// Default wait before the first retry; it doubles at each retry.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// Default time the exporter gives itself at shutdown to deliver what is queued.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// The header MLflow reads the experiment of OTLP traces from.
pub const MLFLOW_EXPERIMENT_HEADER: &str = "x-mlflow-experiment-id";
/// The header MLflow reads the run to link OTLP traces to.
pub const MLFLOW_RUN_HEADER: &str = "x-mlflow-run-id";
/// The path of MLflow's (and every OTLP/HTTP receiver's) trace endpoint.
pub const TRACES_PATH: &str = "/v1/traces";
/// The path of every OTLP/HTTP receiver's metrics endpoint.
pub const METRICS_PATH: &str = "/v1/metrics";
/// Default of `OTEL_METRIC_EXPORT_INTERVAL`: 60 s between two metric exports (the SDK's
/// default).
pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(60);

/// What an exporter sends: each signal has its path and its own variables beside the
/// general ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// The path under a base endpoint.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Signal::Traces => TRACES_PATH,
            Signal::Metrics => METRICS_PATH,
        }
    }

    /// `OTEL_EXPORTER_OTLP_{TRACES|METRICS}_{setting}`.
    fn variable(self, setting: &str) -> &'static str {
        match (self, setting) {
            (Signal::Traces, "ENDPOINT") => "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            (Signal::Traces, "HEADERS") => "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            (Signal::Traces, "TIMEOUT") => "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            (Signal::Traces, "PROTOCOL") => "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            (Signal::Traces, "CERTIFICATE") => "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            (Signal::Traces, _) => "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
            (Signal::Metrics, "ENDPOINT") => "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            (Signal::Metrics, "HEADERS") => "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
            (Signal::Metrics, "TIMEOUT") => "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            (Signal::Metrics, "PROTOCOL") => "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            (Signal::Metrics, "CERTIFICATE") => "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            (Signal::Metrics, _) => "OTEL_EXPORTER_OTLP_METRICS_INSECURE",
        }
    }

    /// `OTEL_EXPORTER_OTLP_{setting}`, for every signal.
    fn general_variable(setting: &str) -> &'static str {
        match setting {
            "ENDPOINT" => "OTEL_EXPORTER_OTLP_ENDPOINT",
            "HEADERS" => "OTEL_EXPORTER_OTLP_HEADERS",
            "TIMEOUT" => "OTEL_EXPORTER_OTLP_TIMEOUT",
            "PROTOCOL" => "OTEL_EXPORTER_OTLP_PROTOCOL",
            "CERTIFICATE" => "OTEL_EXPORTER_OTLP_CERTIFICATE",
            _ => "OTEL_EXPORTER_OTLP_INSECURE",
        }
    }
}

/// A setting that cannot be used. Header values (which may hold secrets) are never part of
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpError {
    /// [`OtlpConfig::from_env`] found neither an OTLP endpoint nor an MLflow tracking URI.
    NoEndpoint,
    /// [`OtlpConfig::metrics_from_env`] found no OTLP endpoint.
    NoMetricsEndpoint,
    /// The endpoint is not an `http://` or `https://` URL.
    InvalidEndpoint {
        /// The endpoint, without user info.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` (or `OTEL_EXPORTER_OTLP_PROTOCOL`) asks for a
    /// protocol other than `http/protobuf`.
    UnsupportedProtocol {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// A variable (or the same setting in code) has a value that cannot be used.
    InvalidValue {
        /// The variable, or the builder method.
        variable: &'static str,
        /// The value given.
        value: String,
        /// What is expected instead.
        expected: &'static str,
    },
    /// A header list (`key=value,...`) or a header cannot be used. Only names are shown.
    InvalidHeader {
        /// Where it came from: the variable, or `code`.
        source: &'static str,
        /// What is wrong, naming the header but never showing its value.
        reason: String,
    },
    /// The TLS setup failed (an unreadable CA file...).
    Tls {
        /// Why.
        message: String,
    },
    /// The exporter thread could not be started.
    Spawn {
        /// The system's message.
        message: String,
    },
}

impl fmt::Display for OtlpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OtlpError::NoEndpoint => write!(
                f,
                "no OTLP endpoint: set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL, e.g. \
                 http://127.0.0.1:4318/v1/traces), OTEL_EXPORTER_OTLP_ENDPOINT (the base URL) \
                 or MLFLOW_TRACKING_URI (traces go to MLflow's /v1/traces)"
            ),
            OtlpError::NoMetricsEndpoint => write!(
                f,
                "no OTLP metrics endpoint: set OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (the full \
                 URL, e.g. http://127.0.0.1:4318/v1/metrics) or OTEL_EXPORTER_OTLP_ENDPOINT \
                 (the base URL); MLflow takes no OTLP metrics"
            ),
            OtlpError::InvalidEndpoint { endpoint, reason } => write!(
                f,
                "OTLP endpoint `{endpoint}` cannot be used: {reason}; give an http:// or \
                 https:// URL"
            ),
            OtlpError::UnsupportedProtocol { variable, value } => write!(
                f,
                "{variable}=`{value}` is not supported: agent-profiler sends OTLP over HTTP \
                 with protobuf bodies only; set it to http/protobuf (or unset it) and point \
                 the endpoint at the collector's HTTP port (4318 by default)"
            ),
            OtlpError::InvalidValue {
                variable,
                value,
                expected,
            } => write!(f, "{variable}=`{value}` is invalid: expected {expected}"),
            OtlpError::InvalidHeader { source, reason } => {
                write!(f, "OTLP headers from {source}: {reason}")
            }
            OtlpError::Tls { message } => write!(f, "OTLP TLS setup: {message}"),
            OtlpError::Spawn { message } => {
                write!(f, "cannot start the OTLP exporter thread: {message}")
            }
        }
    }
}

impl std::error::Error for OtlpError {}

/// Where traces go, how requests authenticate, retry and time out, and how much the exporter
/// holds. Build it with [`from_env`](Self::from_env) (the OpenTelemetry SDK's variables),
/// [`for_mlflow`](Self::for_mlflow) / [`from_mlflow`](Self::from_mlflow), or
/// [`new`](Self::new), then change anything in code.
///
/// `Debug` shows header names, never their values.
///
/// ```
/// use std::time::Duration;
/// use agent_profiler_otlp::OtlpConfig;
///
/// let config = OtlpConfig::new("https://collector.example.com:4318/v1/traces")
///     .unwrap()
///     .service_name("research-agent")
///     .header("authorization", "Bearer s3cr3t")
///     .resource_attribute("deployment.environment", "staging")
///     .timeout(Duration::from_secs(5));
/// assert_eq!(config.endpoint(), "https://collector.example.com:4318/v1/traces");
/// assert!(!format!("{config:?}").contains("s3cr3t"));
///
/// // MLflow 3.6+ takes OTLP at {tracking_uri}/v1/traces, into the experiment in a header.
/// let mlflow = OtlpConfig::for_mlflow("http://127.0.0.1:5000", "42").unwrap();
/// assert_eq!(mlflow.endpoint(), "http://127.0.0.1:5000/v1/traces");
/// assert_eq!(mlflow.experiment_id(), Some("42"));
/// ```
#[derive(Clone)]
pub struct OtlpConfig {
    pub(crate) endpoint: String,
    /// Every header value is kept as a secret: any of them may be a key.
    pub(crate) headers: Vec<(String, Secret)>,
    pub(crate) service_name: String,
    pub(crate) resource_attributes: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Duration,
    pub(crate) max_spans_per_request: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) insecure_tls: bool,
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) warnings: bool,
    pub(crate) llm_spans: LlmSpans,
    /// Header names whose values were invalid in code (reported by the exporter's start).
    pub(crate) header_errors: Vec<String>,
    /// An MLflow experiment known by name only: the exporter thread looks its id up (and
    /// creates it when missing) before sending, unless an experiment header is set.
    pub(crate) mlflow_experiment_name: Option<(Box<MlflowConfig>, String)>,
    pub(crate) sampler: Sampler,
    pub(crate) export_interval: Duration,
}

/// How the LLM calls of a node call appear in the trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LlmSpans {
    /// One child span per LLM call (`chat {model}`, kind `CLIENT`) under the node's span,
    /// with the GenAI attributes of that call; the node span carries the sums under
    /// `agent_profiler.llm.*`. Token usage and cost are then on leaves only, which is what
    /// MLflow's per-trace totals and per-model cost charts add up exactly, also when nodes
    /// that call LLMs nest. The call spans mark when the call was tracked: its duration is
    /// not measured, so they last 0 ns. The default.
    #[default]
    PerCall,
    /// No extra spans: the node span carries the GenAI attributes summed over its calls
    /// (`gen_ai.request.model`, `gen_ai.provider.name` and `gen_ai.operation.name = "chat"`
    /// when all calls used one model). Caveat: MLflow counts a span's usage only when no
    /// ancestor span has usage, so when a node that calls an LLM runs inside another that
    /// also does, MLflow's trace totals leave out the inner node's tokens and cost (the
    /// spans themselves are right).
    OnNode,
}

/// Checks an endpoint URL: `http(s)://host...`.
fn check_endpoint(endpoint: &str) -> Result<String, OtlpError> {
    let endpoint = endpoint.trim();
    let invalid = |reason: &str| OtlpError::InvalidEndpoint {
        endpoint: hide_userinfo(endpoint),
        reason: reason.to_owned(),
    };
    let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(&format!(
            "the scheme is `{}`, not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(endpoint.to_owned())
}

/// Parses `key1=value1,key2=value2` (W3C baggage style: values percent-encoded, blanks
/// around items ignored). Errors name the entry's position and key, never its value.
pub(crate) fn parse_key_values(
    source: &'static str,
    list: &str,
) -> Result<Vec<(String, String)>, OtlpError> {
    let mut out = Vec::new();
    for (index, item) in list.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            return Err(OtlpError::InvalidHeader {
                source,
                reason: format!(
                    "entry {} has no `=`; write key=value pairs separated by commas",
                    index + 1
                ),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(OtlpError::InvalidHeader {
                source,
                reason: format!("entry {} has an empty key", index + 1),
            });
        }
        let value = percent_decode(value.trim()).ok_or_else(|| OtlpError::InvalidHeader {
            source,
            reason: format!("the value of `{key}` is not UTF-8 once percent-decoded"),
        })?;
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// Checks that a header can be sent; the reason names the header only.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))?;
    HeaderValue::from_str(value)
        .map_err(|_| format!("the value of `{name}` has characters not allowed in a header"))?;
    Ok(())
}

fn parse_millis(variable: &'static str, value: &str) -> Result<Duration, OtlpError> {
    let expected = "a whole number of milliseconds above 0";
    match value.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(OtlpError::InvalidValue {
            variable,
            value: value.to_owned(),
            expected,
        }),
    }
}

/// A boolean variable ([`parse_bool`]: blanks around the value are ignored).
fn parse_bool_var(variable: &'static str, value: &str) -> Result<bool, OtlpError> {
    parse_bool(value).ok_or_else(|| OtlpError::InvalidValue {
        variable,
        value: value.to_owned(),
        expected: BOOL_EXPECTED,
    })
}

impl OtlpConfig {
    /// A configuration sending to `endpoint`, the full URL of the trace receiver (used as
    /// is: for a collector, `http://host:4318/v1/traces`), with the defaults and nothing
    /// read from the environment.
    ///
    /// # Errors
    /// [`OtlpError::InvalidEndpoint`] for anything but an `http://` or `https://` URL.
    pub fn new(endpoint: &str) -> Result<Self, OtlpError> {
        Ok(Self {
            endpoint: check_endpoint(endpoint)?,
            headers: Vec::new(),
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
            resource_attributes: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff: DEFAULT_BACKOFF,
            max_spans_per_request: DEFAULT_MAX_SPANS_PER_REQUEST,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            insecure_tls: false,
            certificate: None,
            warnings: true,
            llm_spans: LlmSpans::default(),
            header_errors: Vec::new(),
            mlflow_experiment_name: None,
            sampler: Sampler::default(),
            export_interval: DEFAULT_EXPORT_INTERVAL,
        })
    }

    /// Traces to an MLflow tracking server (3.6 or later), which takes OTLP at
    /// `{tracking_uri}/v1/traces` into the experiment named by the `x-mlflow-experiment-id`
    /// header. User info in the URI becomes basic authentication.
    ///
    /// # Errors
    /// [`OtlpError::InvalidEndpoint`] for a URI that is not an HTTP(S) server, and
    /// [`OtlpError::InvalidValue`] for an empty experiment id.
    pub fn for_mlflow(tracking_uri: &str, experiment_id: &str) -> Result<Self, OtlpError> {
        let mlflow = MlflowConfig::new(tracking_uri).map_err(|e| mlflow_error(&e))?;
        Self::from_mlflow(&mlflow, experiment_id)
    }

    /// Traces to the MLflow server of an [`MlflowConfig`] (the one of the metrics exporter),
    /// into experiment `experiment_id`, with its authentication (`Authorization` header),
    /// TLS settings and request timeout.
    ///
    /// # Errors
    /// [`OtlpError::InvalidValue`] for an empty experiment id, [`OtlpError::InvalidHeader`]
    /// when the credentials cannot go in a header.
    pub fn from_mlflow(mlflow: &MlflowConfig, experiment_id: &str) -> Result<Self, OtlpError> {
        let experiment_id = experiment_id.trim();
        if experiment_id.is_empty() {
            return Err(OtlpError::InvalidValue {
                variable: "experiment_id",
                value: String::new(),
                expected: "the id of an MLflow experiment (\"0\" is the default experiment)",
            });
        }
        let base = mlflow.tracking_uri().trim_end_matches('/');
        let mut config = Self::new(&format!("{base}{TRACES_PATH}"))?;
        config.headers.push((
            MLFLOW_EXPERIMENT_HEADER.to_owned(),
            Secret::new(experiment_id),
        ));
        if let Some(auth) = mlflow.authorization_header() {
            check_header("authorization", &auth).map_err(|reason| OtlpError::InvalidHeader {
                source: "the MLflow credentials",
                reason,
            })?;
            config
                .headers
                .push(("authorization".to_owned(), Secret::new(auth)));
        }
        config.insecure_tls = mlflow.is_insecure_tls();
        config.certificate = mlflow.ca_file().map(Into::into);
        config.timeout = mlflow.timeout().min(Duration::from_secs(60));
        Ok(config)
    }

    /// Traces to the server and experiment of an [`MlflowConfig`], the one the metrics
    /// exporter ([`MlflowTracker`](agent_profiler_mlflow::MlflowTracker)) uses: its experiment id,
    /// else its experiment name (looked up, and created when missing, by the exporter
    /// thread before the first request), else `0`, MLflow's default experiment; with its
    /// authentication, TLS settings and timeout (see [`from_mlflow`](Self::from_mlflow)).
    ///
    /// # Errors
    /// As [`from_mlflow`](Self::from_mlflow).
    pub fn from_mlflow_config(mlflow: &MlflowConfig) -> Result<Self, OtlpError> {
        match (
            mlflow.target_experiment_id(),
            mlflow.target_experiment_name(),
        ) {
            (Some(id), _) => Self::from_mlflow(mlflow, id),
            (None, Some(name)) => {
                let mut config = Self::from_mlflow(mlflow, "0")?;
                config
                    .headers
                    .retain(|(n, _)| n != MLFLOW_EXPERIMENT_HEADER);
                config.mlflow_experiment_name = Some((Box::new(mlflow.clone()), name.to_owned()));
                Ok(config)
            }
            (None, None) => Self::from_mlflow(mlflow, "0"),
        }
    }

    /// The configuration the OpenTelemetry SDK would use, from the process environment:
    ///
    /// | variable | meaning (default) |
    /// |---|---|
    /// | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the receiver's full URL, used as is |
    /// | `OTEL_EXPORTER_OTLP_ENDPOINT` | base URL; traces go to `{base}/v1/traces` |
    /// | `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, `OTEL_EXPORTER_OTLP_HEADERS` | `key=value,...`, values percent-encoded (the first set wins) |
    /// | `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `OTEL_EXPORTER_OTLP_TIMEOUT` | ms per request (10000) |
    /// | `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, `OTEL_EXPORTER_OTLP_PROTOCOL` | only `http/protobuf` is accepted |
    /// | `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE`, `OTEL_EXPORTER_OTLP_CERTIFICATE` | PEM file of extra trusted CA certificates |
    /// | `OTEL_SERVICE_NAME` | `service.name` (`agent-profiler`) |
    /// | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,...` resource attributes |
    /// | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | which runs' traces are sent ([`Sampler::from_env`]; all) |
    ///
    /// With no OTLP endpoint set, an MLflow tracking server is the target when
    /// `MLFLOW_TRACKING_URI` names one: `{uri}/v1/traces`, into the experiment
    /// `MLFLOW_EXPERIMENT_ID`, else `MLFLOW_EXPERIMENT_NAME`, else `0` (MLflow's default
    /// experiment), with the credentials, TLS settings and timeout of
    /// [`MlflowConfig::from_env`] (see [`from_mlflow_config`](Self::from_mlflow_config)).
    /// Empty variables count as unset. Compression settings are ignored: bodies are sent
    /// uncompressed, which every receiver accepts.
    ///
    /// # Errors
    /// [`OtlpError::NoEndpoint`] when no target is set, and the error of any variable with
    /// a value that cannot be used.
    pub fn from_env() -> Result<Self, OtlpError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `get` instead of the process
    /// environment (for tests, or settings kept elsewhere).
    ///
    /// ```
    /// use agent_profiler_otlp::OtlpConfig;
    ///
    /// let vars = [
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
    ///     ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%3D%3D,x-team=search"),
    ///     ("OTEL_SERVICE_NAME", "research-agent"),
    /// ];
    /// let get = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// let config = OtlpConfig::from_vars(get).unwrap();
    /// assert_eq!(config.endpoint(), "http://collector:4318/v1/traces");
    /// assert_eq!(config.header_names(), ["x-api-key", "x-team"]);
    /// assert_eq!(config.get_service_name(), "research-agent");
    ///
    /// let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
    ///             ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
    /// let get = |name: &str| grpc.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// assert!(OtlpConfig::from_vars(get).is_err());
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpError> {
        let mut config = Self::from_signal_vars(Signal::Traces, &get)?;
        config.sampler = Sampler::from_vars(&get)?;
        Ok(config)
    }

    /// The configuration of an OTLP *metrics* exporter
    /// ([`OtlpMetricsExporter`](crate::OtlpMetricsExporter)) the OpenTelemetry SDK would use,
    /// from the process environment: the variables of [`from_env`](Self::from_env) with
    /// `METRICS` in place of `TRACES` (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, the full URL;
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/metrics`; `..._METRICS_HEADERS`,
    /// `..._METRICS_TIMEOUT`, ...), and
    ///
    /// | variable | meaning (default) |
    /// |---|---|
    /// | `OTEL_METRIC_EXPORT_INTERVAL` | ms between two exports (60000) |
    /// | `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` | only `cumulative` (the default) is accepted |
    ///
    /// MLflow takes no OTLP metrics: an MLflow tracking URI alone is no target here.
    ///
    /// # Errors
    /// [`OtlpError::NoMetricsEndpoint`] when no OTLP endpoint is set, and the error of any
    /// variable with a value that cannot be used.
    pub fn metrics_from_env() -> Result<Self, OtlpError> {
        Self::metrics_from_vars(|name| std::env::var(name).ok())
    }

    /// [`metrics_from_env`](Self::metrics_from_env) reading variables through `get`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use agent_profiler_otlp::OtlpConfig;
    ///
    /// let vars = [
    ///     ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
    ///     ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
    /// ];
    /// let get = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// let config = OtlpConfig::metrics_from_vars(get).unwrap();
    /// assert_eq!(config.endpoint(), "http://collector:4318/v1/metrics");
    /// assert_eq!(config.get_export_interval(), Duration::from_secs(15));
    /// ```
    ///
    /// # Errors
    /// As [`metrics_from_env`](Self::metrics_from_env).
    pub fn metrics_from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpError> {
        let mut config = Self::from_signal_vars(Signal::Metrics, &get)?;
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        if let Some(value) = var("OTEL_METRIC_EXPORT_INTERVAL") {
            config.export_interval = parse_millis("OTEL_METRIC_EXPORT_INTERVAL", &value)?;
        }
        let temporality = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
        if let Some(value) = var(temporality)
            && !value.trim().eq_ignore_ascii_case("cumulative")
        {
            return Err(OtlpError::InvalidValue {
                variable: temporality,
                value,
                expected: "cumulative (the profiler's counters are cumulative; unset it or \
                           set it to cumulative)",
            });
        }
        Ok(config)
    }

    /// The variables common to every signal: endpoint, headers, timeout, protocol, TLS and
    /// the resource.
    fn from_signal_vars(
        signal: Signal,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, OtlpError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let either = |setting: &'static str| {
            let specific = signal.variable(setting);
            let general = Signal::general_variable(setting);
            var(specific)
                .map(|v| (specific, v))
                .or_else(|| var(general).map(|v| (general, v)))
        };
        if let Some((variable, value)) = either("PROTOCOL")
            && value.trim() != "http/protobuf"
        {
            return Err(OtlpError::UnsupportedProtocol { variable, value });
        }
        let mut config = if let Some(endpoint) = var(signal.variable("ENDPOINT")) {
            Self::new(&endpoint)?
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            let base = base.trim().trim_end_matches('/');
            Self::new(&format!("{base}{}", signal.path()))?
        } else if signal == Signal::Traces && var("MLFLOW_TRACKING_URI").is_some() {
            let mlflow = MlflowConfig::from_vars(get).map_err(|e| mlflow_error(&e))?;
            Self::from_mlflow_config(&mlflow)?
        } else if signal == Signal::Metrics {
            return Err(OtlpError::NoMetricsEndpoint);
        } else {
            return Err(OtlpError::NoEndpoint);
        };
        if let Some((variable, list)) = either("HEADERS") {
            for (name, value) in parse_key_values(variable, &list)? {
                check_header(&name, &value).map_err(|reason| OtlpError::InvalidHeader {
                    source: variable,
                    reason,
                })?;
                config.set_header(name, value);
            }
        }
        if let Some((variable, value)) = either("TIMEOUT") {
            config.timeout = parse_millis(variable, &value)?;
        }
        if let Some((_, path)) = either("CERTIFICATE") {
            config.certificate = Some(PathBuf::from(path.trim()));
        }
        if let Some((variable, value)) = either("INSECURE") {
            // Meant for gRPC by the specification; honoured here only to turn TLS
            // verification off for https endpoints when explicitly asked for.
            config.insecure_tls = parse_bool_var(variable, &value)?;
        }
        if let Some(list) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in parse_key_values("OTEL_RESOURCE_ATTRIBUTES", &list)? {
                if key == "service.name" {
                    config.service_name = value;
                } else {
                    config.resource_attributes.push((key, value));
                }
            }
        }
        if let Some(name) = var("OTEL_SERVICE_NAME") {
            config.service_name = name.trim().to_owned();
        }
        Ok(config)
    }

    fn set_header(&mut self, name: String, value: String) {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, Secret::new(value)));
    }

    /// A redactor of the header values, for messages. MLflow's experiment and run ids are
    /// ids, not secrets (an experiment id `0` would otherwise blank every `0` of a message).
    pub(crate) fn redactor(&self) -> Redactor {
        let userinfo = userinfo_secrets(&self.endpoint);
        Redactor::new(
            self.headers
                .iter()
                .filter(|(name, _)| name != MLFLOW_EXPERIMENT_HEADER && name != MLFLOW_RUN_HEADER)
                .map(|(_, value)| value.expose())
                .chain(userinfo.iter().map(String::as_str)),
        )
    }

    /// The receiver's URL, as shown: a password or token in its user info hidden (it is
    /// sent, as basic authentication, but never shown).
    pub fn endpoint(&self) -> String {
        hide_userinfo(&self.endpoint)
    }

    /// The names of the headers sent with every request (their values are not readable).
    pub fn header_names(&self) -> Vec<&str> {
        self.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The MLflow experiment traces go to (the `x-mlflow-experiment-id` header), if any.
    pub fn experiment_id(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == MLFLOW_EXPERIMENT_HEADER)
            .map(|(_, v)| v.expose())
    }

    /// The `service.name` of the resource.
    pub fn get_service_name(&self) -> &str {
        &self.service_name
    }

    /// The request timeout.
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// Adds (or replaces) a header sent with every request, e.g. an API key. Its value is
    /// never shown (`Debug`, errors, statistics). A name or value that cannot be sent is
    /// reported by [`OtlpExporter::start`](super::OtlpExporter::start).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        if let Err(reason) = check_header(&name, &value) {
            self.header_errors.push(reason);
        }
        self.set_header(name, value);
        self
    }

    /// Sends traces into this MLflow experiment (the `x-mlflow-experiment-id` header).
    pub fn mlflow_experiment(self, experiment_id: impl Into<String>) -> Self {
        self.header(MLFLOW_EXPERIMENT_HEADER, experiment_id)
    }

    /// Sets `service.name`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Adds a resource attribute (MLflow keeps them as trace tags).
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.resource_attributes.retain(|(k, _)| *k != key);
        self.resource_attributes.push((key, value.into()));
        self
    }

    /// Time allowed per request (at least 1 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Retries after a transient failure (no answer, 408, 429, 500, 502, 503, 504).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// The wait before the first retry; it doubles at each retry (plus up to as much again
    /// at random), at most 120 s. A `Retry-After` header (seconds or an HTTP date) on 429
    /// and 503 wins, and makes a 413 retried too.
    pub fn backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// The largest number of spans per request (at least 1); larger traces are split.
    pub fn max_spans_per_request(mut self, spans: usize) -> Self {
        self.max_spans_per_request = spans.max(1);
        self
    }

    /// Spans the exporter holds at most while the receiver is behind (at least 1). A trace
    /// that does not fit is dropped whole and counted.
    pub fn queue_capacity(mut self, spans: usize) -> Self {
        self.queue_capacity = spans.max(1);
        self
    }

    /// Time given to deliver what is queued when the exporter shuts down.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Skips TLS certificate checks (only where the network is trusted).
    pub fn insecure_tls(mut self, insecure: bool) -> Self {
        self.insecure_tls = insecure;
        self
    }

    /// A PEM file of extra CA certificates to trust.
    pub fn certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.certificate = Some(path.into());
        self
    }

    /// Whether the exporter warns on stderr (once) when delivery fails (on by default).
    pub fn warnings(mut self, warnings: bool) -> Self {
        self.warnings = warnings;
        self
    }

    /// How LLM calls appear in the trace (see [`LlmSpans`]).
    pub fn llm_spans(mut self, mode: LlmSpans) -> Self {
        self.llm_spans = mode;
        self
    }

    /// Which runs' traces are sent (see [`Sampler`]; every one by default, or as
    /// `OTEL_TRACES_SAMPLER` says with [`from_env`](Self::from_env)).
    ///
    /// ```
    /// use agent_profiler_otlp::{OtlpConfig, Sampler};
    ///
    /// // One run in ten, every failed run, and every run slower than 99% of recent ones.
    /// let sampler = Sampler::trace_id_ratio(0.1).unwrap().keep_slower_than(99.0).unwrap();
    /// let config = OtlpConfig::new("http://127.0.0.1:4318/v1/traces").unwrap().sampler(sampler);
    /// assert!(!config.get_sampler().sends_everything());
    /// ```
    pub fn sampler(mut self, sampler: Sampler) -> Self {
        self.sampler = sampler;
        self
    }

    /// The sampler in use.
    pub fn get_sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Time between two exports of a metrics exporter (at least 1 ms;
    /// [`DEFAULT_EXPORT_INTERVAL`] by default). Traces take no interval: each is sent as it
    /// comes.
    pub fn export_interval(mut self, interval: Duration) -> Self {
        self.export_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Time between two exports of a metrics exporter.
    pub fn get_export_interval(&self) -> Duration {
        self.export_interval
    }
}

fn mlflow_error(e: &ConfigError) -> OtlpError {
    match e {
        ConfigError::UnsupportedTrackingUri { uri, reason } => OtlpError::InvalidEndpoint {
            endpoint: uri.clone(),
            reason: format!("as an MLflow tracking URI: {reason}"),
        },
        ConfigError::InvalidValue {
            variable,
            value,
            expected,
        } => OtlpError::InvalidValue {
            variable,
            value: value.clone(),
            expected,
        },
        _ => OtlpError::NoEndpoint,
    }
}

impl fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &hide_userinfo(&self.endpoint))
            .field("headers", &self.header_names())
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("max_spans_per_request", &self.max_spans_per_request)
            .field("queue_capacity", &self.queue_capacity)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("insecure_tls", &self.insecure_tls)
            .field("certificate", &self.certificate)
            .field("warnings", &self.warnings)
            .field("llm_spans", &self.llm_spans)
            .field("sampler", &self.sampler)
            .field("export_interval", &self.export_interval)
            .field(
                "mlflow_experiment_name",
                &self.mlflow_experiment_name.as_ref().map(|(_, name)| name),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// The config from `pairs` and the base endpoint `http://b:4318`.
    fn with_endpoint(pairs: &[(&str, &str)]) -> Result<OtlpConfig, OtlpError> {
        let mut all = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318")];
        all.extend_from_slice(pairs);
        OtlpConfig::from_vars(vars(&all))
    }

    fn header<'a>(config: &'a OtlpConfig, name: &str) -> Option<&'a str> {
        config
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.expose())
    }

    #[test]
    fn traces_endpoint_is_used_as_is_and_wins() {
        let c = OtlpConfig::from_vars(vars(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a:4318/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:4318"),
            ("MLFLOW_TRACKING_URI", "http://c:5000"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint(), "http://a:4318/custom");
        assert_eq!(c.experiment_id(), None);
    }

    #[test]
    fn base_endpoint_gets_the_signal_path() {
        for (base, want) in [
            ("http://b:4318", "http://b:4318/v1/traces"),
            ("http://b:4318/", "http://b:4318/v1/traces"),
            ("https://b/otlp", "https://b/otlp/v1/traces"),
        ] {
            let c = OtlpConfig::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", base)])).unwrap();
            assert_eq!(c.endpoint(), want);
        }
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let e = OtlpConfig::from_vars(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])).unwrap_err();
        assert_eq!(e, OtlpError::NoEndpoint);
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"));
    }

    #[test]
    fn the_user_info_of_an_endpoint_is_never_shown() {
        let c = OtlpConfig::new("http://u:s3cr3t-pw@a:4318/v1/traces").unwrap();
        assert_eq!(c.endpoint(), "http://***@a:4318/v1/traces");
        assert!(!format!("{c:?}").contains("s3cr3t-pw"));
        assert_eq!(
            c.redactor()
                .clean("for url (http://u:s3cr3t-pw@a:4318/v1/traces)"),
            "for url (http://***@a:4318/v1/traces)"
        );
    }

    #[test]
    fn bad_endpoints_are_refused() {
        for bad in [
            "localhost:4318",
            "ftp://x/v1/traces",
            "http://",
            "not a url",
        ] {
            let e = OtlpConfig::new(bad).unwrap_err();
            assert!(
                matches!(e, OtlpError::InvalidEndpoint { .. }),
                "{bad}: {e:?}"
            );
        }
        let e = OtlpConfig::new("ftp://user:pw@x/v1/traces").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }

    #[test]
    fn headers_are_parsed_and_percent_decoded() {
        let c = with_endpoint(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                " Authorization=Basic%20dXNlcjpwdw%3D%3D , x-mlflow-experiment-id=7,,",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-ignored=1"),
        ])
        .unwrap();
        assert_eq!(header(&c, "authorization"), Some("Basic dXNlcjpwdw=="));
        assert_eq!(c.experiment_id(), Some("7"));
        assert_eq!(header(&c, "x-ignored"), None, "the signal's own list wins");
        let debug = format!("{c:?}");
        assert!(!debug.contains("dXNlcjpwdw"), "{debug}");
        assert!(debug.contains("authorization"), "{debug}");
    }

    #[test]
    fn bad_headers_are_errors_that_show_no_value() {
        for list in [
            "novalue",
            "=x",
            "k=%FF%FE",
            "bad name=s3cr3t",
            "k=s3cr3t\u{7f}x",
        ] {
            let e = with_endpoint(&[("OTEL_EXPORTER_OTLP_HEADERS", list)]).unwrap_err();
            assert!(
                matches!(e, OtlpError::InvalidHeader { .. }),
                "{list}: {e:?}"
            );
            assert!(!e.to_string().contains("s3cr3t"), "{e}");
        }
    }

    #[test]
    fn protocol_other_than_http_protobuf_is_refused() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ] {
            let e = with_endpoint(&[(var, value)]).unwrap_err();
            assert!(matches!(e, OtlpError::UnsupportedProtocol { .. }), "{e:?}");
            assert!(e.to_string().contains("http/protobuf"));
        }
        with_endpoint(&[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ])
        .expect("the signal's own setting wins");
    }

    #[test]
    fn timeout_service_name_and_resource_attributes() {
        let c = with_endpoint(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,deployment.environment=prod%20eu",
            ),
        ])
        .unwrap();
        assert_eq!(c.get_timeout(), Duration::from_millis(2500));
        assert_eq!(c.get_service_name(), "from-attrs");
        assert_eq!(
            c.resource_attributes,
            [("deployment.environment".to_owned(), "prod eu".to_owned())]
        );
        let c = with_endpoint(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "named"),
        ])
        .unwrap();
        assert_eq!(c.get_service_name(), "named");
        for bad in ["0", "-1", "1.5", "soon"] {
            let e = with_endpoint(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", bad)]).unwrap_err();
            assert!(matches!(e, OtlpError::InvalidValue { .. }), "{bad}: {e:?}");
        }
    }

    #[test]
    fn mlflow_is_the_default_target() {
        let c = OtlpConfig::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "https://user:pw@mlflow.example.com/"),
            ("MLFLOW_EXPERIMENT_ID", "12"),
        ]))
        .unwrap();
        assert_eq!(c.endpoint(), "https://mlflow.example.com/v1/traces");
        assert_eq!(c.experiment_id(), Some("12"));
        assert_eq!(header(&c, "authorization"), Some("Basic dXNlcjpwdw=="));
        assert!(!format!("{c:?}").contains("dXNlcjpwdw"));

        let c = OtlpConfig::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_TRACKING_TOKEN", "tok"),
        ]))
        .unwrap();
        assert_eq!(c.experiment_id(), Some("0"), "MLflow's default experiment");
        assert_eq!(header(&c, "authorization"), Some("Bearer tok"));

        let c = OtlpConfig::from_vars(vars(&[
            ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"),
            ("MLFLOW_EXPERIMENT_NAME", "agents"),
        ]))
        .unwrap();
        assert_eq!(c.experiment_id(), None, "looked up by the exporter thread");
        assert_eq!(
            c.mlflow_experiment_name.as_ref().map(|(_, n)| n.as_str()),
            Some("agents")
        );
        assert!(format!("{c:?}").contains("agents"));

        let e = OtlpConfig::from_vars(vars(&[("MLFLOW_TRACKING_URI", "databricks")])).unwrap_err();
        assert!(matches!(e, OtlpError::InvalidEndpoint { .. }), "{e:?}");
    }

    #[test]
    fn for_mlflow_and_builders() {
        let c = OtlpConfig::for_mlflow("http://127.0.0.1:5000/", "3")
            .unwrap()
            .header("X-Api-Key", "k1")
            .header("x-api-key", "k2")
            .max_spans_per_request(0)
            .queue_capacity(0);
        assert_eq!(c.endpoint(), "http://127.0.0.1:5000/v1/traces");
        assert_eq!(header(&c, "x-api-key"), Some("k2"));
        assert_eq!(c.header_names(), [MLFLOW_EXPERIMENT_HEADER, "x-api-key"]);
        assert_eq!((c.max_spans_per_request, c.queue_capacity), (1, 1));
        assert!(c.header_errors.is_empty());
        let c = c.header("bad name", "v");
        assert_eq!(c.header_errors.len(), 1);
        assert!(OtlpConfig::for_mlflow("http://127.0.0.1:5000", " ").is_err());
    }
}
