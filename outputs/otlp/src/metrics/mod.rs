//! OTLP metrics: the analyzer's lifetime counters ([`MetricsSnapshot`]) sent every
//! interval as cumulative OpenTelemetry metrics, from a background thread, through the same
//! HTTP sender, retry policy and background-thread machinery as traces.
//!
//! Nothing is recorded for this on the call path: at each interval the thread reads a
//! snapshot (what a Prometheus scrape reads too), converts it and sends one request.

mod convert;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde::Serialize;

use agent_profiler_http::sender::{self, State, Thread, Work, write_last_error};
use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::metrics::{LifetimeMetrics, MetricsSnapshot};

use crate::config::{OtlpConfig, OtlpError, Signal};
use crate::http::{self, Sender};
use convert::Times;
pub use convert::{
    LLM_CALLS, LLM_COST, LLM_FAILED_CALLS, LLM_TOKENS, NODE_CALLS, NODE_DURATION,
    OPERATION_DURATION, TIME_TO_FIRST_CHUNK, TOKEN_USAGE,
};

/// What the metrics exporter has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OtlpMetricsStats {
    /// Exports the receiver accepted.
    pub exports_sent: u64,
    /// Exports that could not be delivered (the next one carries the same cumulative
    /// figures, so nothing is lost for good unless the last one fails).
    pub exports_failed: u64,
    /// Data points the receiver accepted.
    pub points_sent: u64,
    /// Data points the receiver accepted the request of but refused (OTLP partial success).
    pub points_rejected: u64,
    /// Requests sent again after a transient failure.
    pub retried_requests: u64,
    /// The last failure, if any (never holds a header value).
    pub last_error: Option<String>,
}

impl fmt::Display for OtlpMetricsStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} exports sent ({} data points, {} retries), {} failed, {} data points rejected",
            self.exports_sent,
            self.points_sent,
            self.retried_requests,
            self.exports_failed,
            self.points_rejected
        )?;
        write_last_error(f, self.last_error.as_deref())
    }
}

/// Where the figures come from: one analyzer, several merged, or anything that makes a
/// snapshot.
type Source = Box<dyn Fn() -> MetricsSnapshot + Send + Sync>;

/// What the handles and the thread share outside the lock.
struct Context {
    config: OtlpConfig,
    source: Source,
    /// When the cumulative series started: the exporter's start.
    start_ns: u64,
}

type Shared = sender::Shared<Worker>;

/// Sends an analyzer's lifetime counters as OTLP metrics every
/// [`export_interval`](OtlpConfig::export_interval) (60 s by default, or
/// `OTEL_METRIC_EXPORT_INTERVAL` with [`OtlpConfig::metrics_from_env`]).
///
/// The instruments, all cumulative:
///
/// | name | kind, unit | attributes |
/// |---|---|---|
/// | `agent_profiler.node.duration` | histogram, s | `agent_profiler.node_id` |
/// | `agent_profiler.node.calls` | sum, `{call}` | node id, `agent_profiler.outcome` |
/// | `gen_ai.client.operation.duration` | histogram, s | `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`, node id |
/// | `gen_ai.client.operation.time_to_first_chunk` | histogram, s | the same |
/// | `gen_ai.client.token.usage` | histogram, `{token}` | the same and `gen_ai.token.type` (`input`, `output`) |
/// | `agent_profiler.llm.tokens` | sum, `{token}` | the same, every type the profiler counts |
/// | `agent_profiler.llm.calls`, `agent_profiler.llm.failed_calls` | sum, `{call}` | model and node |
/// | `agent_profiler.llm.cost` | sum, `{USD}` | model and node |
///
/// Durations use the snapshot's fixed bucket bounds
/// ([`HISTOGRAM_BOUNDS_SECONDS`](agent_profiler_runtime::metrics::HISTOGRAM_BOUNDS_SECONDS)).
/// Token usage per call is not kept, only its sum: `gen_ai.client.token.usage` has one
/// bucket, with the count of calls and the sum of tokens.
///
/// Dropping the last clone, or [`shutdown`](Self::shutdown), sends the figures one last
/// time within the shutdown timeout.
///
/// ```no_run
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_otlp::{OtlpConfig, OtlpMetricsExporter};
///
/// let analyzer = BottleneckAnalyzer::new();
/// // OTEL_EXPORTER_OTLP_METRICS_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, ...
/// let exporter = OtlpMetricsExporter::for_analyzer(OtlpConfig::metrics_from_env()?, &analyzer)?;
/// // ... the service runs, its nodes recording into `analyzer` ...
/// exporter.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct OtlpMetricsExporter {
    inner: Arc<Thread<Worker>>,
}

impl fmt::Debug for OtlpMetricsExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpMetricsExporter")
            .field("config", &self.inner.context.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl OtlpMetricsExporter {
    /// Sends the lifetime counters of `analyzer` (see [`BottleneckAnalyzer::metrics`]).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn for_analyzer(
        config: OtlpConfig,
        analyzer: &BottleneckAnalyzer,
    ) -> Result<Self, OtlpError> {
        let analyzer = analyzer.clone();
        Self::start(config, move || analyzer.metrics())
    }

    /// Sends the sum of the analyzers `metrics` watches, those gone included: what a service
    /// that makes one analyzer per run (the executor's
    /// `WorkflowExecutor::metrics`) exports.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn for_metrics(config: OtlpConfig, metrics: &LifetimeMetrics) -> Result<Self, OtlpError> {
        let metrics = metrics.clone();
        Self::start(config, move || metrics.snapshot())
    }

    /// Sends what `source` returns at each interval: any snapshot, e.g. several analyzers'
    /// merged with [`MetricsSnapshot::add`]. Its figures must be cumulative, never smaller
    /// than the ones before.
    ///
    /// # Errors
    /// [`OtlpError::InvalidHeader`] for a header set in code that cannot be sent,
    /// [`OtlpError::Tls`] when the TLS setup fails, [`OtlpError::Spawn`] when the thread
    /// cannot be started.
    pub fn start(
        config: OtlpConfig,
        source: impl Fn() -> MetricsSnapshot + Send + Sync + 'static,
    ) -> Result<Self, OtlpError> {
        check_metrics_target(&config)?;
        let names = http::ExporterNames {
            name: "OTLP metrics exporter",
            thread_name: "agent-profiler-otlp-metrics",
            subject: "OTLP metrics export",
            stats: "OtlpMetricsExporter::stats",
        };
        let settings = http::sender_settings(&config, names, Some(config.export_interval))?;
        let context = Context {
            config,
            source: Box::new(source),
            start_ns: now_ns(),
        };
        let shared = Shared::new(settings, context);
        let worker = Worker {
            sender: None,
            next_export: Instant::now() + shared.context.config.export_interval,
        };
        let thread = Thread::spawn(shared, worker).map_err(|e| OtlpError::Spawn {
            message: e.to_string(),
        })?;
        Ok(Self {
            inner: Arc::new(thread),
        })
    }

    /// Sends the figures now, and waits up to `timeout` for the answer; `true` when done in
    /// time (also when the exporter has stopped).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    /// What has been sent and failed so far.
    pub fn stats(&self) -> OtlpMetricsStats {
        let mut stats = self.inner.counters();
        stats.retried_requests = self.inner.retried();
        stats.last_error = self.inner.last_error();
        stats
    }

    /// The configuration.
    pub fn config(&self) -> &OtlpConfig {
        &self.inner.context.config
    }

    /// Sends the figures one last time (within the shutdown timeout), stops the thread, and
    /// returns the final statistics. Clones stop too.
    pub fn shutdown(&self) -> OtlpMetricsStats {
        self.inner
            .stop((), self.inner.context.config.shutdown_timeout);
        self.stats()
    }
}

/// A configuration made for traces (a `/v1/traces` endpoint, an MLflow target) would send
/// metrics where a receiver takes spans: refused, with what to write instead.
fn check_metrics_target(config: &OtlpConfig) -> Result<(), OtlpError> {
    let endpoint = config.endpoint();
    let path = endpoint.split(['?', '#']).next().unwrap_or_default();
    let reason = if path.trim_end_matches('/').ends_with(crate::TRACES_PATH) {
        "it is a trace endpoint"
    } else if config.experiment_id().is_some() || config.mlflow_experiment_name.is_some() {
        "it is an MLflow target, and MLflow takes no OTLP metrics"
    } else {
        return Ok(());
    };
    Err(OtlpError::InvalidEndpoint {
        endpoint,
        reason: format!(
            "{reason}; give the collector's metrics endpoint (e.g. \
             http://127.0.0.1:4318{}), or use OtlpConfig::metrics_from_env",
            crate::METRICS_PATH
        ),
    })
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The thread's own state: the HTTP sender once made, and when the next export is due.
struct Worker {
    sender: Option<Sender>,
    next_export: Instant,
}

impl Work for Worker {
    type Queue = ();
    type Stop = ();
    type Counters = OtlpMetricsStats;
    type Context = Context;

    /// Only a flush wakes the thread before the interval.
    fn ready(&self, st: &State<Self>) -> bool {
        st.flush_pending()
    }

    /// Exports when the interval has passed, a flush asks, or the exporter stops.
    fn cycle(&mut self, shared: &Shared, stopping: bool) {
        let (flush, flushing) = {
            let st = shared.state();
            (st.flush_requested(), st.flush_pending())
        };
        if stopping || flushing || Instant::now() >= self.next_export {
            self.next_export = Instant::now() + shared.context.config.export_interval;
            self.export(shared, stopping);
        }
        shared.flushed(shared.state(), flush);
    }

    fn finish(&mut self, _: &Shared, (): ()) {}

    fn abandon(_: &Shared, (): &mut ()) {}

    fn on_drop(shared: &Shared) -> ((), Duration) {
        ((), shared.context.config.shutdown_timeout)
    }
}

impl Worker {
    fn export(&mut self, shared: &Shared, stopping: bool) {
        let context = &shared.context;
        let times = Times {
            start_ns: context.start_ns,
            now_ns: now_ns(),
        };
        let Some(request) = convert::to_request(&(context.source)(), &context.config, times) else {
            return;
        };
        if self.sender.is_none() {
            match Sender::new(&context.config, Signal::Metrics, shared.retries().clone()) {
                Ok(made) => self.sender = Some(made),
                Err(e) => return fail(shared, &e.to_string()),
            }
        }
        let Some(sender) = &self.sender else {
            return;
        };
        let points = data_points(&request);
        let body = request.encode_to_vec();
        match sender.send(&body, None, &shared.pacer(stopping)) {
            Ok(accepted) => {
                let rejected = accepted.rejected.min(points);
                shared.count(|c| {
                    c.exports_sent += 1;
                    c.points_sent += points - rejected;
                    c.points_rejected += rejected;
                });
                if rejected > 0 {
                    shared.record_error(&format!(
                        "the receiver refused {rejected} of {points} data points: {}",
                        accepted.message.as_deref().unwrap_or("no reason given")
                    ));
                }
            }
            Err(message) => fail(shared, &message),
        }
    }
}

fn fail(shared: &Shared, message: &str) {
    shared.count(|c| c.exports_failed += 1);
    shared.record_error(message);
}

fn data_points(
    request: &opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest,
) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics);
    metrics
        .map(|m| match &m.data {
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            _ => 0,
        } as u64)
        .sum()
}
