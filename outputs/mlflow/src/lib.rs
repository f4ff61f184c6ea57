//! MLflow: every profiled call's duration and every LLM call's cost as metrics of an MLflow
//! run, and the bottleneck report at the end of a workflow, sent to a tracking server over
//! its REST API without slowing the workflow down.
//!
//! - [`MlflowTracker`]: the exporter. [`attach`](MlflowTracker::attach) an analyzer and every
//!   call of node `id` becomes a value of `node_{id}_duration_ms` (timestamp: when the call
//!   ended; step: the node's call index). Give its
//!   [`cost_sink`](MlflowTracker::cost_sink) to a cost tracker
//!   ([`CostTrackerBuilder::sink`](agent_profiler_runtime::CostTrackerBuilder::sink)) and each priced LLM
//!   call made inside a node becomes a value of `node_{id}_cost_usd`; each timed call a
//!   value of `node_{id}_llm_ms`, and each streamed one of `node_{id}_ttft_ms`.
//!   [`log_bottleneck_report`](MlflowTracker::log_bottleneck_report) logs the summary.
//! - [`MlflowClient`]: the blocking REST client underneath, for direct use.
//! - [`MlflowConfig`]: the server and the run, from the environment variables of the
//!   official client and from code.
//!
//! The profiled call path never touches the network: it writes its thread's bounded ring,
//! which a background thread drains every flush interval (200 ms by default) into
//! `log-batch` requests of up to 1000 metrics. When the server is slow or down, calls keep
//! their normal cost; per-call metrics beyond the rings' and the queue's capacity are
//! dropped and counted ([`ExportStats`]), while the analyzer's totals stay exact. A server
//! that refuses connections (nothing listens) is not waited for: a refused request is tried
//! at most twice more, within 0.3 s, and not at all once the tracker is finishing, so that
//! [`finish`](MlflowTracker::finish) then returns at once with the losses counted; a server
//! that answers, however slowly, gets the whole shutdown timeout.
//!
//! ```no_run
//! use std::time::Duration;
//! use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerScope};
//! use agent_profiler_mlflow::{MlflowConfig, MlflowTracker, RunStatus};
//!
//! let analyzer = BottleneckAnalyzer::new();
//! let config = MlflowConfig::from_env()?.experiment_name("agents").run_name("nightly");
//! let mlflow = MlflowTracker::start(config)?;
//! mlflow.attach(&analyzer);
//! {
//!     let _scope = ProfilerScope::new(&analyzer);
//!     // ... run the workflow: #[profile_node] functions ...
//! }
//! mlflow.log_bottleneck_report(&analyzer.get_summary());
//! let stats = mlflow.finish(RunStatus::Finished); // delivers what is queued, ends the run
//! if stats.anything_lost() {
//!     eprintln!("MLflow export incomplete: {stats}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod config;
mod critical;
mod exporter;
mod keys;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// From the environment as the official client reads it: `MLFLOW_TRACKING_USERNAME` and
/// `MLFLOW_TRACKING_PASSWORD` (or the tracking URI's user info) for basic,
/// `MLFLOW_TRACKING_TOKEN` for a bearer token.
#[doc(inline)]
pub use agent_profiler_http::auth::Auth;
#[doc(inline)]
pub use agent_profiler_http::retry::{MAX_BACKOFF, RETRY_STATUS_CODES};
#[doc(inline)]
pub use agent_profiler_http::secret::Secret;
/// See [`MlflowConfig::on_warning`].
#[doc(inline)]
pub use agent_profiler_http::sender::WarnSink;
pub use client::{
    Experiment, FileInfo, MAX_ANSWER_BYTES, MAX_SEARCH_RESULTS, Metric, MlflowClient, MlflowError,
    Param, Run, RunData, RunInfo, RunStatus, RunTag, SearchPage, SearchRuns, now_ms,
};
pub use config::{
    ConfigError, DEFAULT_BACKOFF_FACTOR, DEFAULT_BACKOFF_JITTER, DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_RETRIES, DEFAULT_QUEUE_CAPACITY, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT,
    MAX_BACKOFF_FACTOR, MAX_RETRIES_LIMIT, MlflowConfig,
};
pub use critical::WHAT_IF_METRICS;
pub use exporter::{ExportStats, REPORT_ARTIFACT};
pub use keys::{
    KeyError, MAX_ENTITIES_PER_BATCH, MAX_KEY_LENGTH, MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_LENGTH, MAX_PARAMS_PER_BATCH, MAX_REQUEST_BYTES, MAX_TAG_VALUE_LENGTH,
    MAX_TAGS_PER_BATCH, is_key_char, node_metric_key, node_metric_key_disambiguated, sanitize_key,
    truncate_chars, validate_key,
};

use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::Summary;
use agent_profiler_runtime::cost::{CostInfo, CostSink};
use exporter::Exporter;

/// Logs a workflow to an MLflow run from a background thread: per-call durations of the
/// attached analyzers, LLM costs, params, tags, metrics, and the bottleneck report.
///
/// Cheap to clone; clones share the exporter. The run is created (or resumed, with
/// `MLFLOW_RUN_ID`) by the exporter thread, so [`start`](Self::start) returns at once even
/// when the server is down. [`finish`](Self::finish) delivers what is queued within the
/// shutdown timeout and ends the run; dropping the last clone does the same, with status
/// `FINISHED` (or `FAILED` while panicking).
///
/// Nothing here fails or blocks the workflow: every method but [`flush`](Self::flush),
/// [`finish`](Self::finish) and [`wait_for_run`](Self::wait_for_run) (and the drop of the
/// last clone, which finishes) returns at once, and delivery failures are counted in
/// [`stats`](Self::stats), reported once on stderr (see [`MlflowConfig::warnings`]), and
/// never returned as errors. Those that wait do so for at most the time given (or the
/// configured shutdown timeout), whatever the server does.
#[derive(Clone)]
pub struct MlflowTracker {
    inner: Arc<Exporter>,
}

impl fmt::Debug for MlflowTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowTracker")
            .field("tracking_uri", &self.tracking_uri())
            .field("run_id", &self.run_id())
            .field("stats", &self.stats())
            .finish()
    }
}

impl MlflowTracker {
    /// Starts the exporter thread for `config`; it finds or creates the experiment and
    /// creates (or resumes) the run in the background.
    ///
    /// # Errors
    /// [`MlflowError::Key`] for a run tag key MLflow would reject, [`MlflowError::Client`]
    /// when the TLS setup fails or the thread cannot be started. A server that is down is
    /// not an error here: see [`stats`](Self::stats).
    pub fn start(config: MlflowConfig) -> Result<Self, MlflowError> {
        for (key, _) in &config.run_tags {
            validate_key(key)?;
        }
        Ok(Self {
            inner: Arc::new(Exporter::start(config)?),
        })
    }

    /// [`start`](Self::start) with [`MlflowConfig::from_env`].
    ///
    /// # Errors
    /// [`MlflowError::Config`] when `MLFLOW_TRACKING_URI` is unset or a variable is bad; as
    /// [`start`](Self::start).
    pub fn from_env() -> Result<Self, MlflowError> {
        Self::start(MlflowConfig::from_env()?)
    }

    /// The tracking server's URL (without user info).
    pub fn tracking_uri(&self) -> &str {
        self.inner.config().tracking_uri()
    }

    /// Exports every call of `analyzer` from now on (turns on its per-call records with this
    /// tracker's ring capacity). One exporter per analyzer: two would split its calls.
    pub fn attach(&self, analyzer: &BottleneckAnalyzer) {
        self.inner.attach(analyzer);
    }

    /// The run's id, once the exporter has created or resumed it.
    pub fn run_id(&self) -> Option<String> {
        self.inner.run_info().map(|r| r.run_id.clone())
    }

    /// The run's info (as when it was created), once it exists.
    pub fn run_info(&self) -> Option<RunInfo> {
        self.inner.run_info().cloned()
    }

    /// Waits up to `timeout` for the run to exist; `None` if it does not by then (server
    /// down, bad experiment: see [`stats`](Self::stats)'s `last_error`).
    pub fn wait_for_run(&self, timeout: Duration) -> Option<RunInfo> {
        self.inner.wait_for_run(timeout)
    }

    /// Waits up to `timeout` for the run to exist, or for the first attempt to create it
    /// to fail (a server that refuses connections fails at once); the run, if it exists.
    /// Unlike [`wait_for_run`](Self::wait_for_run), it does not wait for the retries.
    pub fn wait_for_run_attempt(&self, timeout: Duration) -> Option<RunInfo> {
        self.inner.wait_for_run_attempt(timeout)
    }

    /// Queues one value of a metric (timestamp: now).
    ///
    /// # Errors
    /// [`MlflowError::Key`] for a key MLflow would reject (nothing is queued);
    /// [`MlflowError::Stopped`] after [`finish`](Self::finish). A full queue is not an error:
    /// the value is dropped and counted.
    pub fn log_metric(&self, key: &str, value: f64, step: i64) -> Result<(), MlflowError> {
        validate_key(key)?;
        if self.inner.is_stopped() {
            return Err(MlflowError::Stopped);
        }
        self.inner
            .push_metric(Arc::from(key), value, now_ms(), step);
        Ok(())
    }

    /// Queues a param (value cut to 6000 characters when sent).
    ///
    /// # Errors
    /// [`MlflowError::Key`] for a bad key; [`MlflowError::Stopped`] after
    /// [`finish`](Self::finish).
    pub fn log_param(&self, key: &str, value: impl Into<String>) -> Result<(), MlflowError> {
        validate_key(key)?;
        self.inner.push_param(Param::new(key, value))
    }

    /// Queues a run tag (value cut to 8000 characters when sent).
    ///
    /// # Errors
    /// [`MlflowError::Key`] for a bad key; [`MlflowError::Stopped`] after
    /// [`finish`](Self::finish).
    pub fn set_tag(&self, key: &str, value: impl Into<String>) -> Result<(), MlflowError> {
        validate_key(key)?;
        self.inner.push_tag(RunTag::new(key, value))
    }

    /// Queues one LLM call's cost as a value of `node_{node_id}_cost_usd` (step: the node's
    /// count of costs so far). A cost tracker given
    /// [`cost_sink`](Self::cost_sink) does this for every
    /// priced call made inside a profiled node.
    pub fn log_node_cost(&self, node_id: &str, cost_usd: f64) {
        self.inner
            .push_node_metric(node_id, "cost_usd", cost_usd, now_ms());
    }

    /// Queues the bottleneck report of a workflow: metrics `total_time_ms`, `node_count`, `bottleneck_count`, `total_cost_usd` (step:
    /// how many reports came before), tags `slowest_node` and `bottlenecks` (ids, comma
    /// separated), and the whole summary as the artifact `bottleneck_report.json`. When the
    /// summary has a critical path, also the tags `critical_path` (`a -> b -> c`),
    /// `critical_path.method` (`structure` or `trace`) and `what_if.best_node`, and the
    /// metrics `critical_path_ms`, `what_if_best_saves_ms` and `what_if_{node}_saves_ms` for
    /// the [`WHAT_IF_METRICS`] nodes whose speed-up saves the most (2x faster). When
    /// anything was lost by then, the tag `export_lost` and the artifact's `export` field
    /// show the [`ExportStats`].
    ///
    /// Reports go before per-call metrics, are kept across transient failures, and are
    /// delivered at shutdown when the server is reachable.
    pub fn log_bottleneck_report(&self, summary: &Summary) {
        if self.inner.push_report(summary).is_err() {
            // After finish: nothing can be sent any more; the summary is the caller's still.
        }
    }

    /// Queues `bytes` as the run's artifact `path` (relative to the run's artifact root),
    /// uploaded by the exporter's thread with its own client at the run's end
    /// ([`finish`](Self::finish), or the drop of the last handle), before the run's status
    /// is set: within the shutdown timeout, which it shares with what else is still queued
    /// (the final status update keeps its part). Uploading only then keeps every upload
    /// under that one deadline; [`flush`](Self::flush) does not send it. An upload refused,
    /// or not done by the deadline, is counted in [`ExportStats::artifacts_failed`] and
    /// explained in [`ExportStats::last_error`]; memory: the bytes are held until then.
    ///
    /// # Errors
    /// [`MlflowError::Stopped`] after [`finish`](Self::finish).
    pub fn log_artifact(
        &self,
        path: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), MlflowError> {
        self.inner.push_artifact(path, bytes, content_type)
    }

    /// Sends everything queued before this call (per-call records, costs, params, tags,
    /// reports) and waits up to `timeout`. `true` when all of it was handled: delivered, or
    /// refused by the server and counted in [`stats`](Self::stats); `false` on timeout
    /// (the exporter keeps trying).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    /// What the exporter has sent, retried, dropped and failed so far.
    pub fn stats(&self) -> ExportStats {
        self.inner.stats()
    }

    /// Delivers what is queued within the configured shutdown timeout, sets the run's status
    /// and end time, and stops the exporter; the final statistics. Later calls (and other
    /// clones) log nothing more.
    pub fn finish(&self, status: RunStatus) -> ExportStats {
        let timeout = self.inner.config().shutdown_timeout;
        self.inner.stop(status, timeout)
    }

    /// [`finish`](Self::finish) with another deadline.
    pub fn finish_within(&self, status: RunStatus, timeout: Duration) -> ExportStats {
        self.inner.stop(status, timeout)
    }

    /// What to give a cost tracker
    /// ([`CostTrackerBuilder::sink`](agent_profiler_runtime::CostTrackerBuilder::sink)) so that
    /// each priced LLM call made inside a node becomes one value of `node_{id}_cost_usd` (step:
    /// the node's count of priced calls so far). A call timed with
    /// [`start_call`](agent_profiler_runtime::MultiProviderCostTracker::start_call) also
    /// becomes a value of `node_{id}_llm_ms` (its wall time, failed calls included), and a
    /// streamed one that sent a first chunk a value of `node_{id}_ttft_ms` (its time to first
    /// token); their steps count the node's values of each key, their timestamp is when the
    /// call ended. Queued without blocking (bounded; dropped and counted when the exporter is
    /// behind). It does not keep the exporter alive.
    pub fn cost_sink(&self) -> Arc<dyn CostSink> {
        Arc::new(MlflowCostSink(Arc::downgrade(&self.inner)))
    }
}

/// How a [`MultiProviderCostTracker`](agent_profiler_runtime::MultiProviderCostTracker) reaches
/// the exporter.
struct MlflowCostSink(std::sync::Weak<Exporter>);

impl CostSink for MlflowCostSink {
    fn node_call(&self, node_id: &str, info: &CostInfo) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if let Some(cost) = info.cost_usd {
            shared.push_node_metric(node_id, "cost_usd", cost, (info.timestamp * 1000.0) as i64);
        }
        if let Some(timing) = &info.timing {
            let ended_ms = i64::try_from(timing.end_unix_ns / 1_000_000).unwrap_or(i64::MAX);
            let ms = |ns: u64| ns as f64 / 1e6;
            shared.push_node_metric(node_id, "llm_ms", ms(timing.duration_ns()), ended_ms);
            if let Some(ttft) = timing.ttft_ns() {
                shared.push_node_metric(node_id, "ttft_ms", ms(ttft), ended_ms);
            }
        }
    }
}
