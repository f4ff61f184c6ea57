//! Where and how to reach MLflow: from the environment, as the official Python client reads
//! it, and from code.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use agent_profiler_http::auth::Auth;
use agent_profiler_http::env::{BOOL_EXPECTED, parse_bool};
use agent_profiler_http::secret::{REDACTED, Secret};
use agent_profiler_http::sender::WarnSink;
use agent_profiler_http::url::{hide_userinfo, percent_decode};
use agent_profiler_runtime::DEFAULT_RING_CAPACITY;

/// Default of `MLFLOW_HTTP_REQUEST_TIMEOUT`: 120 s per request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Default of `MLFLOW_HTTP_REQUEST_MAX_RETRIES`.
pub const DEFAULT_MAX_RETRIES: u32 = 7;
/// Upper bound of `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (the official client refuses more).
pub const MAX_RETRIES_LIMIT: u32 = 10;
/// Default of `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`, seconds.
pub const DEFAULT_BACKOFF_FACTOR: f64 = 2.0;
/// Upper bound of the backoff factor (the official client refuses more), seconds.
pub const MAX_BACKOFF_FACTOR: f64 = 120.0;
/// Default of `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`, seconds.
pub const DEFAULT_BACKOFF_JITTER: f64 = 1.0;
/// Default interval between two sends of the exporter.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Default number of metrics the exporter holds while the server is behind.
pub const DEFAULT_QUEUE_CAPACITY: usize = 100_000;
/// Default time [`MlflowTracker`](super::MlflowTracker) gives itself at shutdown to deliver
/// what is queued.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A setting that cannot be used. Secrets are never part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `MLFLOW_TRACKING_URI` is not set (and no URI was given in code).
    MissingTrackingUri,
    /// The tracking URI is not an `http://` or `https://` URL of a server.
    UnsupportedTrackingUri {
        /// The URI, without user info, query or fragment.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable (or the same setting in code) has a value that cannot be used.
    InvalidValue {
        /// The variable.
        variable: &'static str,
        /// The value given.
        value: String,
        /// What is expected instead.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::MissingTrackingUri => write!(
                f,
                "MLFLOW_TRACKING_URI is not set; set it to the tracking server's URL, e.g. \
                 http://127.0.0.1:5000"
            ),
            ConfigError::UnsupportedTrackingUri { uri, reason } => write!(
                f,
                "tracking URI `{uri}` cannot be used: {reason}; give the http:// or https:// \
                 URL of an MLflow tracking server"
            ),
            ConfigError::InvalidValue {
                variable,
                value,
                expected,
            } => write!(f, "{variable}=`{value}` is invalid: expected {expected}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where the tracking server is, which experiment and run to log into, how to authenticate,
/// retry, and export. Build it with [`from_env`](Self::from_env) (the official client's
/// environment variables) or [`new`](Self::new), then change anything in code.
///
/// ```
/// use std::time::Duration;
/// use agent_profiler_mlflow::MlflowConfig;
///
/// let config = MlflowConfig::new("http://127.0.0.1:5000")
///     .unwrap()
///     .experiment_name("agents")
///     .run_name("nightly")
///     .run_tag("team", "search")
///     .token("s3cr3t")
///     .max_retries(3)
///     .flush_interval(Duration::from_millis(100));
/// assert_eq!(config.tracking_uri(), "http://127.0.0.1:5000");
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// ```
#[derive(Clone)]
pub struct MlflowConfig {
    pub(crate) tracking_uri: String,
    pub(crate) experiment_name: Option<String>,
    pub(crate) experiment_id: Option<String>,
    pub(crate) run_id: Option<String>,
    pub(crate) run_name: Option<String>,
    pub(crate) run_tags: Vec<(String, String)>,
    pub(crate) auth: Auth,
    pub(crate) insecure_tls: bool,
    pub(crate) server_cert_path: Option<PathBuf>,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) backoff_factor: f64,
    pub(crate) backoff_jitter: f64,
    pub(crate) respect_retry_after: bool,
    pub(crate) flush_interval: Duration,
    pub(crate) ring_capacity: usize,
    pub(crate) queue_capacity: usize,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) warnings: bool,
    pub(crate) warn_sink: Option<WarnSink>,
}

impl fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none".to_owned(),
            Auth::Bearer(_) => format!("bearer {REDACTED}"),
            Auth::Basic { .. } => format!("basic {REDACTED}"),
        };
        f.debug_struct("MlflowConfig")
            .field("tracking_uri", &self.tracking_uri)
            .field("experiment_name", &self.experiment_name)
            .field("experiment_id", &self.experiment_id)
            .field("run_id", &self.run_id)
            .field("run_name", &self.run_name)
            .field("run_tags", &self.run_tags)
            .field("auth", &auth)
            .field("insecure_tls", &self.insecure_tls)
            .field("server_cert_path", &self.server_cert_path)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff_factor", &self.backoff_factor)
            .field("backoff_jitter", &self.backoff_jitter)
            .field("respect_retry_after", &self.respect_retry_after)
            .field("flush_interval", &self.flush_interval)
            .field("ring_capacity", &self.ring_capacity)
            .field("queue_capacity", &self.queue_capacity)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("warnings", &self.warnings)
            .field("warn_sink", &self.warn_sink.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// Splits user info out of a tracking URI and checks it names an HTTP(S) server.
fn parse_tracking_uri(uri: &str) -> Result<(String, Option<(String, Secret)>), ConfigError> {
    // Errors show the URI with anything before an `@` (user info) hidden.
    let unsupported = |shown: &str, reason: &str| ConfigError::UnsupportedTrackingUri {
        uri: hide_userinfo(shown),
        reason: reason.to_owned(),
    };
    let mut url =
        Url::parse(uri.trim()).map_err(|e| unsupported(uri, &format!("not a URL ({e})")))?;
    let userinfo = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        let decode = |s: &str| percent_decode(s).unwrap_or_else(|| s.to_owned());
        let user = decode(url.username());
        let password = url.password().map(decode).unwrap_or_default();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        Some((user, Secret::new(password)))
    };
    url.set_query(None);
    url.set_fragment(None);
    let shown = url.as_str().trim_end_matches('/').to_owned();
    match url.scheme() {
        "http" | "https" => {}
        "databricks" | "databricks-uc" | "uc" => {
            return Err(unsupported(&shown, "Databricks URIs are not supported"));
        }
        "file" | "sqlite" | "postgresql" | "mysql" | "mssql" => {
            return Err(unsupported(
                &shown,
                "a local store or database is not a tracking server",
            ));
        }
        other => {
            return Err(unsupported(
                &shown,
                &format!("scheme `{other}` is not supported"),
            ));
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(unsupported(&shown, "it has no host"));
    }
    Ok((shown, userinfo))
}

/// A boolean variable ([`parse_bool`]: blanks around the value are ignored).
fn parse_bool_var(variable: &'static str, value: &str) -> Result<bool, ConfigError> {
    parse_bool(value).ok_or_else(|| ConfigError::InvalidValue {
        variable,
        value: value.to_owned(),
        expected: BOOL_EXPECTED,
    })
}

fn parse_u64(
    variable: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<u64, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map_err(|_| ConfigError::InvalidValue {
            variable,
            value: value.to_owned(),
            expected,
        })
}

fn parse_f64(
    variable: &'static str,
    value: &str,
    expected: &'static str,
) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(ConfigError::InvalidValue {
            variable,
            value: value.to_owned(),
            expected,
        }),
    }
}

impl MlflowConfig {
    /// A configuration for the server at `tracking_uri` (`http://` or `https://`; user info
    /// in it becomes basic authentication and is removed from the URI), with the official
    /// client's defaults and nothing read from the environment.
    ///
    /// # Errors
    /// [`ConfigError::UnsupportedTrackingUri`] for anything but an HTTP(S) server URL.
    pub fn new(tracking_uri: &str) -> Result<Self, ConfigError> {
        let (uri, userinfo) = parse_tracking_uri(tracking_uri)?;
        let auth = match userinfo {
            Some((username, password)) => Auth::Basic { username, password },
            None => Auth::None,
        };
        Ok(Self {
            tracking_uri: uri,
            experiment_name: None,
            experiment_id: None,
            run_id: None,
            run_name: None,
            run_tags: Vec::new(),
            auth,
            insecure_tls: false,
            server_cert_path: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            backoff_factor: DEFAULT_BACKOFF_FACTOR,
            backoff_jitter: DEFAULT_BACKOFF_JITTER,
            respect_retry_after: true,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            ring_capacity: DEFAULT_RING_CAPACITY,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            warnings: true,
            warn_sink: None,
        })
    }

    /// The configuration the official client would use, from the process environment:
    ///
    /// | variable | meaning (default) |
    /// |---|---|
    /// | `MLFLOW_TRACKING_URI` | the server (required) |
    /// | `MLFLOW_EXPERIMENT_NAME` | experiment to log into, created if missing |
    /// | `MLFLOW_EXPERIMENT_ID` | experiment to log into (must match the name if both are set) |
    /// | `MLFLOW_RUN_ID` | log into this existing run instead of creating one |
    /// | `MLFLOW_TRACKING_TOKEN` | bearer token |
    /// | `MLFLOW_TRACKING_USERNAME`, `MLFLOW_TRACKING_PASSWORD` | basic auth (wins over the token) |
    /// | `MLFLOW_TRACKING_INSECURE_TLS` | `true` skips TLS certificate checks (`false`) |
    /// | `MLFLOW_TRACKING_SERVER_CERT_PATH` | PEM file of extra trusted CA certificates |
    /// | `MLFLOW_HTTP_REQUEST_TIMEOUT` | seconds per request (120) |
    /// | `MLFLOW_HTTP_REQUEST_MAX_RETRIES` | retries of transient failures (7, at most 10) |
    /// | `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` | seconds; waits are 0, 2f, 4f, 8f... capped at 120 s (2) |
    /// | `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER` | up to this many random seconds added (1.0) |
    /// | `MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER` | wait as `Retry-After` says on 429/503 (`true`) |
    ///
    /// Empty variables count as unset.
    ///
    /// # Errors
    /// [`ConfigError`] when the URI is missing or unusable, or a variable has a bad value.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) reading variables through `get` instead of the process
    /// environment (for tests, or for settings kept elsewhere).
    ///
    /// # Errors
    /// As [`from_env`](Self::from_env).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let uri = var("MLFLOW_TRACKING_URI").ok_or(ConfigError::MissingTrackingUri)?;
        let mut config = Self::new(&uri)?;
        config.experiment_name = var("MLFLOW_EXPERIMENT_NAME");
        config.experiment_id = var("MLFLOW_EXPERIMENT_ID");
        config.run_id = var("MLFLOW_RUN_ID");
        let username = var("MLFLOW_TRACKING_USERNAME");
        let password = var("MLFLOW_TRACKING_PASSWORD");
        let token = var("MLFLOW_TRACKING_TOKEN");
        if let (Some(username), Some(password)) = (username, password) {
            config.auth = Auth::Basic {
                username,
                password: Secret::new(password),
            };
        } else if let Some(token) = token {
            config.auth = Auth::Bearer(Secret::new(token));
        }
        if let Some(v) = var("MLFLOW_TRACKING_INSECURE_TLS") {
            config.insecure_tls = parse_bool_var("MLFLOW_TRACKING_INSECURE_TLS", &v)?;
        }
        config.server_cert_path = var("MLFLOW_TRACKING_SERVER_CERT_PATH").map(PathBuf::from);
        if let Some(v) = var("MLFLOW_HTTP_REQUEST_TIMEOUT") {
            let secs = parse_u64(
                "MLFLOW_HTTP_REQUEST_TIMEOUT",
                &v,
                "a whole number of seconds above 0",
            )?;
            if secs == 0 {
                return Err(ConfigError::InvalidValue {
                    variable: "MLFLOW_HTTP_REQUEST_TIMEOUT",
                    value: v,
                    expected: "a whole number of seconds above 0",
                });
            }
            config.request_timeout = Duration::from_secs(secs);
        }
        if let Some(v) = var("MLFLOW_HTTP_REQUEST_MAX_RETRIES") {
            let expected = "a whole number from 0 to 10";
            let n = parse_u64("MLFLOW_HTTP_REQUEST_MAX_RETRIES", &v, expected)?;
            if n > u64::from(MAX_RETRIES_LIMIT) {
                return Err(ConfigError::InvalidValue {
                    variable: "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
                    value: v,
                    expected,
                });
            }
            config.max_retries = n as u32;
        }
        if let Some(v) = var("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR") {
            let expected = "a number of seconds from 0 to 120";
            let f = parse_f64("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", &v, expected)?;
            if f > MAX_BACKOFF_FACTOR {
                return Err(ConfigError::InvalidValue {
                    variable: "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                    value: v,
                    expected,
                });
            }
            config.backoff_factor = f;
        }
        if let Some(v) = var("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER") {
            config.backoff_jitter = parse_f64(
                "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER",
                &v,
                "a non-negative number of seconds",
            )?;
        }
        if let Some(v) = var("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER") {
            config.respect_retry_after =
                parse_bool_var("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER", &v)?;
        }
        Ok(config)
    }

    /// The experiment id the run goes to, when one was given.
    pub fn target_experiment_id(&self) -> Option<&str> {
        self.experiment_id.as_deref()
    }

    /// The experiment name the run goes to (looked up, and created when missing), when given
    /// and no id was.
    pub fn target_experiment_name(&self) -> Option<&str> {
        self.experiment_name.as_deref()
    }

    /// The `Authorization` header value of the configured credentials, if any. A secret: never
    /// print it.
    pub fn authorization_header(&self) -> Option<String> {
        self.auth
            .header_value()
            .map(|value| value.expose().to_owned())
    }

    /// Whether certificate checks are off (`MLFLOW_TRACKING_INSECURE_TLS`).
    pub fn is_insecure_tls(&self) -> bool {
        self.insecure_tls
    }

    /// The extra CA file trusted (`MLFLOW_TRACKING_SERVER_CERT_PATH`), if any.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.server_cert_path.as_deref()
    }

    /// The timeout of one request.
    pub fn timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The tracking server's URL, without user info (never holds a secret).
    pub fn tracking_uri(&self) -> &str {
        &self.tracking_uri
    }

    /// Logs into the experiment of this name, created when missing.
    pub fn experiment_name(mut self, name: impl Into<String>) -> Self {
        self.experiment_name = Some(name.into());
        self
    }

    /// Logs into the experiment with this id.
    pub fn experiment_id(mut self, id: impl Into<String>) -> Self {
        self.experiment_id = Some(id.into());
        self
    }

    /// Logs into this existing run (resumed, then finished by the tracker) instead of
    /// creating one.
    pub fn run_id(mut self, id: impl Into<String>) -> Self {
        self.run_id = Some(id.into());
        self
    }

    /// Name of the run created (the server picks one when unset).
    pub fn run_name(mut self, name: impl Into<String>) -> Self {
        self.run_name = Some(name.into());
        self
    }

    /// Adds a tag to the run created.
    pub fn run_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.run_tags.push((key.into(), value.into()));
        self
    }

    /// Authenticates with a bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Bearer(Secret::new(token));
        self
    }

    /// Authenticates with HTTP basic auth.
    pub fn basic_auth(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.auth = Auth::Basic {
            username: username.into(),
            password: Secret::new(password),
        };
        self
    }

    /// Sets (or with [`Auth::None`] removes) authentication.
    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// `true` skips TLS certificate verification (`MLFLOW_TRACKING_INSECURE_TLS`). Off by
    /// default; only for servers you trust by other means.
    pub fn insecure_tls(mut self, insecure: bool) -> Self {
        self.insecure_tls = insecure;
        self
    }

    /// Also trusts the CA certificates in this PEM file (`MLFLOW_TRACKING_SERVER_CERT_PATH`).
    pub fn server_cert_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.server_cert_path = Some(path.into());
        self
    }

    /// Time allowed for one request (`MLFLOW_HTTP_REQUEST_TIMEOUT`).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Retries of a request that failed transiently (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`;
    /// capped at [`MAX_RETRIES_LIMIT`]).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries.min(MAX_RETRIES_LIMIT);
        self
    }

    /// Backoff factor in seconds (`MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`): the waits before
    /// retries are 0, 2f, 4f, 8f... seconds, each at most 120 s, plus jitter.
    pub fn backoff_factor(mut self, seconds: f64) -> Self {
        self.backoff_factor = if seconds.is_finite() {
            seconds.clamp(0.0, MAX_BACKOFF_FACTOR)
        } else {
            DEFAULT_BACKOFF_FACTOR
        };
        self
    }

    /// Up to this many random seconds added to each backoff wait
    /// (`MLFLOW_HTTP_REQUEST_BACKOFF_JITTER`).
    pub fn backoff_jitter(mut self, seconds: f64) -> Self {
        self.backoff_jitter = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// Whether to wait as a 429 or 503 response's `Retry-After` says (default `true`; the
    /// wait is capped at 120 s).
    pub fn respect_retry_after(mut self, respect: bool) -> Self {
        self.respect_retry_after = respect;
        self
    }

    /// How often the exporter drains the per-call records and sends them (default 200 ms).
    pub fn flush_interval(mut self, interval: Duration) -> Self {
        self.flush_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Per-call records each profiling thread keeps until the exporter drains them (the
    /// analyzer's ring; default [`DEFAULT_RING_CAPACITY`]). Beyond it, calls are still in
    /// the totals but their per-call metric is dropped and counted.
    pub fn ring_capacity(mut self, capacity: usize) -> Self {
        self.ring_capacity = capacity.max(1);
        self
    }

    /// Metrics the exporter holds while the server is slow or down (default
    /// [`DEFAULT_QUEUE_CAPACITY`]); beyond it, per-call metrics are dropped and counted.
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Time given at shutdown (drop of the last handle) to deliver what is queued (default
    /// [`DEFAULT_SHUTDOWN_TIMEOUT`]).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether the exporter prints a one-line warning on stderr when it first fails to
    /// deliver, and at shutdown when anything was lost (default `true`).
    pub fn warnings(mut self, warnings: bool) -> Self {
        self.warnings = warnings;
        self
    }

    /// Whether warnings go to a sink set with [`on_warning`](Self::on_warning) (else to
    /// stderr, when on).
    pub fn has_warning_sink(&self) -> bool {
        self.warn_sink.is_some()
    }

    /// Sends the exporter's warnings to `sink` instead of stderr (to a logger, say). Warnings
    /// never hold the token or password.
    pub fn on_warning(mut self, sink: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.warn_sink = Some(std::sync::Arc::new(sink));
        self.warnings = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<MlflowConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        MlflowConfig::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_official_client() {
        let c = from(&[("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000/")]).unwrap();
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000");
        assert_eq!(c.max_retries, 7);
        assert_eq!(c.backoff_factor, 2.0);
        assert_eq!(c.request_timeout, Duration::from_secs(120));
        assert!(!c.insecure_tls);
        assert_eq!(c.auth, Auth::None);
    }

    #[test]
    fn every_variable_is_read() {
        let c = from(&[
            ("MLFLOW_TRACKING_URI", "https://mlflow.example/prefix"),
            ("MLFLOW_EXPERIMENT_NAME", "exp"),
            ("MLFLOW_EXPERIMENT_ID", "7"),
            ("MLFLOW_RUN_ID", "abc"),
            ("MLFLOW_TRACKING_TOKEN", "tok"),
            ("MLFLOW_TRACKING_INSECURE_TLS", "TRUE"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
        ])
        .unwrap();
        assert_eq!(c.tracking_uri(), "https://mlflow.example/prefix");
        assert_eq!(c.experiment_name.as_deref(), Some("exp"));
        assert_eq!(c.experiment_id.as_deref(), Some("7"));
        assert_eq!(c.run_id.as_deref(), Some("abc"));
        assert_eq!(c.auth, Auth::Bearer(Secret::new("tok")));
        assert!(c.insecure_tls);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.max_retries, 2);
        assert_eq!(c.backoff_factor, 0.0);
    }

    #[test]
    fn basic_auth_wins_over_the_token_and_userinfo_is_moved_out_of_the_uri() {
        let c = from(&[
            ("MLFLOW_TRACKING_URI", "http://h:1"),
            ("MLFLOW_TRACKING_TOKEN", "tok"),
            ("MLFLOW_TRACKING_USERNAME", "u"),
            ("MLFLOW_TRACKING_PASSWORD", "p"),
        ])
        .unwrap();
        assert!(matches!(c.auth, Auth::Basic { ref username, .. } if username == "u"));
        let c = MlflowConfig::new("http://alice:pa%40ss@h:1/x?q=1").unwrap();
        assert_eq!(c.tracking_uri(), "http://h:1/x");
        assert_eq!(
            c.auth,
            Auth::Basic {
                username: "alice".into(),
                password: Secret::new("pa@ss")
            }
        );
        assert!(!format!("{c:?}").contains("pa@ss"));
    }

    #[test]
    fn bad_values_are_clear_errors_without_secrets() {
        assert_eq!(from(&[]).unwrap_err(), ConfigError::MissingTrackingUri);
        assert_eq!(
            from(&[("MLFLOW_TRACKING_URI", "")]).unwrap_err(),
            ConfigError::MissingTrackingUri
        );
        for (var, value) in [
            ("MLFLOW_TRACKING_INSECURE_TLS", "yes"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "1.5"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "0"),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "11"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "-1"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "121"),
        ] {
            let err = from(&[("MLFLOW_TRACKING_URI", "http://h"), (var, value)]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        for uri in [
            "file:///tmp/mlruns",
            "sqlite:///db",
            "databricks",
            "not a uri",
            "http://",
        ] {
            assert!(MlflowConfig::new(uri).is_err(), "{uri}");
        }
        let err = MlflowConfig::new("ftp://u:hunter2@h")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        let err = MlflowConfig::new("u:hunter2@ bad").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
