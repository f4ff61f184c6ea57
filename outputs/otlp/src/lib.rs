//! OTLP/HTTP export of traces: a workflow run's spans (from trace mode) sent as one
//! OpenTelemetry trace to MLflow or any OTLP collector, from a background thread.
//!
//! - [`OtlpConfig`]: where to send (the OpenTelemetry SDK's `OTEL_EXPORTER_OTLP_*`
//!   variables, an MLflow tracking server, or code), headers, timeouts, retries, limits.
//! - [`OtlpExporter`]: [`export`](OtlpExporter::export) queues a [`Trace`] and returns at
//!   once; a thread converts and sends it in batches of protobuf requests. Failures never
//!   reach the workflow: they are counted in [`OtlpStats`] and reported once on stderr.
//! - [`to_request`] / [`to_requests`]: the pure conversion, for tests or other transports.
//!
//! What is sent, for one run: one trace (the id of [`Trace::trace_id`]); a root span named
//! after the workflow ([`RootSpan`]), status from the run's outcome, with the run's
//! attributes; a span per node call, nested as the calls nested, status OK or ERROR (message:
//! `error`, `panicked` or `cancelled`), with `agent_profiler.node_id`, `.outcome`,
//! `.thread`, `.is_async`, `.busy_ns`, `.parent_node_id`; and each LLM call in the
//! OpenTelemetry GenAI conventions (`gen_ai.operation.name`, `gen_ai.request.model`,
//! `gen_ai.provider.name`, `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`,
//! `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.cache_write.input_tokens`) with its
//! cost in USD (`agent_profiler.cost_usd`, and `mlflow.llm.cost`, the attribute MLflow reads
//! costs from). See [`LlmSpans`] for where the LLM attributes go.
//!
//! A call timed with `MultiProviderCostTracker::start_call` lasts as long as the call did,
//! with `gen_ai.request.stream`, `gen_ai.response.time_to_first_chunk` (seconds),
//! `agent_profiler.llm.outcome`, `.duration_ms` and `.output_tokens_per_second`; a call
//! that failed has status ERROR with its error (`error.type`, `agent_profiler.llm.error`)
//! and no `gen_ai.usage.*` when nothing was billed. A call tracked from its answer alone
//! is a span of no length at the moment it was tracked.
//!
//! Every span names its MLflow span type (`mlflow.spanType`: `AGENT` for the root, `CHAIN`
//! for a node, `CHAT_MODEL` for an LLM call). Prompts and answers leave the process only
//! when the caller hands them over ([`RootSpan::inputs`], [`RootSpan::outputs`],
//! [`RootSpan::exchange`]): then in `mlflow.spanInputs` / `mlflow.spanOutputs` (MLflow's
//! Input and Output columns come from the root span's) and in `gen_ai.input.messages` /
//! `gen_ai.output.messages`.
//!
//! MLflow (3.6 and later) takes OTLP at `{tracking_uri}/v1/traces`, into the experiment
//! named by the `x-mlflow-experiment-id` header; [`OtlpConfig::for_mlflow`] sets both, and
//! [`RootSpan::mlflow_run`] links the trace to a run (header `x-mlflow-run-id`), so the
//! MLflow UI lists it under the run, next to its metrics, with the token usage and cost
//! per trace.
//!
//! ```no_run
//! use std::time::Duration;
//! use agent_profiler_runtime::{BottleneckAnalyzer, Outcome, ProfilerScope};
//! use agent_profiler_otlp::{OtlpConfig, OtlpExporter, RootSpan};
//!
//! let analyzer = BottleneckAnalyzer::new();
//! analyzer.enable_trace(65_536);
//! // OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ..._HEADERS, OTEL_SERVICE_NAME; else MLflow's
//! // MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID.
//! let exporter = OtlpExporter::start(OtlpConfig::from_env()?)?;
//! {
//!     let _scope = ProfilerScope::new(&analyzer);
//!     // ... run the workflow: #[profile_node] functions ...
//! }
//! if let Some(trace) = analyzer.trace() {
//!     exporter.export(&trace, RootSpan::new("nightly-research").outcome(Outcome::Ok));
//! }
//! exporter.flush(Duration::from_secs(30));
//! let stats = exporter.stats();
//! if stats.anything_lost() {
//!     eprintln!("trace export incomplete: {stats}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod convert;
mod http;
mod metrics;
mod sampler;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use serde::Serialize;

pub use config::{
    DEFAULT_BACKOFF, DEFAULT_EXPORT_INTERVAL, DEFAULT_MAX_RETRIES, DEFAULT_MAX_SPANS_PER_REQUEST,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_SERVICE_NAME, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_TIMEOUT,
    LlmSpans, METRICS_PATH, MLFLOW_EXPERIMENT_HEADER, MLFLOW_RUN_HEADER, OtlpConfig, OtlpError,
    TRACES_PATH,
};
pub use convert::{AttributeValue, LlmExchange, RootSpan, to_request, to_requests};
pub use metrics::{OtlpMetricsExporter, OtlpMetricsStats};
/// The OTLP protobuf messages (from the `opentelemetry-proto` crate) that [`to_request`]
/// returns.
pub use opentelemetry_proto::tonic as proto;
/// The names of the instruments [`OtlpMetricsExporter`] sends.
pub mod instruments {
    pub use crate::metrics::{
        LLM_CALLS, LLM_COST, LLM_FAILED_CALLS, LLM_TOKENS, NODE_CALLS, NODE_DURATION,
        OPERATION_DURATION, TIME_TO_FIRST_CHUNK, TOKEN_USAGE,
    };
}
pub use sampler::{
    DEFAULT_RECENT_RUNS, Decision, MAX_RECENT_RUNS, MIN_RUNS_FOR_SLOW_RULE, RunFacts, Sampler,
};

use agent_profiler_http::sender::{self, State, Thread, Work, write_last_error};
use agent_profiler_runtime::trace::Trace;
use config::Signal;
use http::Sender;

/// What the exporter has done so far. Every span handed to [`OtlpExporter::export`] (the
/// root span included) of a trace the sampler keeps ends up in exactly one of `spans_sent`,
/// `spans_dropped`, `spans_failed`, `spans_rejected`, or is still `pending_spans`; a trace
/// the sampler does not keep is counted in `traces_sampled_out` only (a decision, not a
/// loss).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OtlpStats {
    /// Traces whose every request the receiver accepted.
    pub traces_sent: u64,
    /// Traces not queued: the queue was full, or the exporter was shut down.
    pub traces_dropped: u64,
    /// Traces with at least one request that could not be delivered.
    pub traces_failed: u64,
    /// Spans the receiver accepted.
    pub spans_sent: u64,
    /// Spans of dropped traces.
    pub spans_dropped: u64,
    /// Spans in requests that could not be delivered (refused, no answer after the
    /// retries, or still queued at the shutdown deadline).
    pub spans_failed: u64,
    /// Spans the receiver accepted the request of but refused (OTLP partial success).
    pub spans_rejected: u64,
    /// Requests the receiver accepted.
    pub requests_sent: u64,
    /// Requests that could not be delivered.
    pub requests_failed: u64,
    /// Requests sent again after a transient failure.
    pub retried_requests: u64,
    /// Spans queued or being sent.
    pub pending_spans: u64,
    /// Traces the sampler ([`OtlpConfig::sampler`]) chose not to send: never copied,
    /// converted or queued.
    pub traces_sampled_out: u64,
    /// Traces the head sampler dropped and a tail rule kept: failed runs.
    pub traces_kept_failed: u64,
    /// Traces the head sampler dropped and a tail rule kept: slow runs.
    pub traces_kept_slow: u64,
    /// The last failure, if any (never holds a header value).
    pub last_error: Option<String>,
}

impl OtlpStats {
    /// Spans that will never reach the receiver: dropped, failed and rejected.
    pub fn spans_lost(&self) -> u64 {
        self.spans_dropped + self.spans_failed + self.spans_rejected
    }

    /// Whether anything was lost.
    pub fn anything_lost(&self) -> bool {
        self.spans_lost() > 0
    }
}

impl fmt::Display for OtlpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} traces sent ({} spans in {} requests, {} retries); {} traces dropped ({} spans), \
             {} failed ({} spans in {} requests), {} spans rejected, {} pending",
            self.traces_sent,
            self.spans_sent,
            self.requests_sent,
            self.retried_requests,
            self.traces_dropped,
            self.spans_dropped,
            self.traces_failed,
            self.spans_failed,
            self.requests_failed,
            self.spans_rejected,
            self.pending_spans
        )?;
        if self.traces_sampled_out + self.traces_kept_failed + self.traces_kept_slow > 0 {
            write!(
                f,
                "; sampling: {} traces not sent, {} kept as failed, {} kept as slow",
                self.traces_sampled_out, self.traces_kept_failed, self.traces_kept_slow
            )?;
        }
        write_last_error(f, self.last_error.as_deref())
    }
}

/// A trace waiting to be sent.
struct Job {
    trace: Trace,
    root: RootSpan,
    spans: usize,
    /// Flush requests made before it was queued (they do not wait for it).
    ticket: u64,
}

/// What [`OtlpExporter::export`] queues for the thread.
#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// Spans queued or being sent.
    pending_spans: usize,
}

type Shared = sender::Shared<Worker>;

/// Whether a trace of `spans` spans may be queued: not shutting down, and room left.
fn has_room(config: &OtlpConfig, st: &State<Worker>, spans: usize) -> bool {
    st.accepting() && st.queue.pending_spans + spans <= config.queue_capacity
}

/// Sends traces over OTLP/HTTP from a background thread.
///
/// [`export`](Self::export) copies the trace into a bounded queue (counted in spans, see
/// [`OtlpConfig::queue_capacity`]) and returns at once, whatever the receiver does; a trace
/// that does not fit is dropped whole and counted. The thread converts each trace
/// ([`to_requests`]), sends the requests one after the other with retries of transient
/// failures (no answer, 408, 429, 500, 502, 503, 504; `Retry-After` honoured, in seconds or
/// as a date, and a 413 that has one retried after it), and counts the outcome in
/// [`stats`](Self::stats). Nothing is returned to the caller as an error after
/// [`start`](Self::start), and the first failure is reported once on stderr (see
/// [`OtlpConfig::warnings`]).
///
/// Cheap to clone; clones share the thread. Dropping the last clone (or
/// [`shutdown`](Self::shutdown)) delivers what is queued within the shutdown timeout
/// ([`OtlpConfig::shutdown_timeout`], 10 s by default) and stops the thread; traces still
/// queued at the deadline are counted as failed. A request already in flight is not
/// interrupted (it ends at its own timeout): the wait for it stops 2 s after the deadline,
/// the thread is left to finish by itself, and its spans stay in `pending_spans`. A receiver
/// that refuses connections (nothing listens) is not waited for: a refused request is tried
/// at most twice more, within 0.3 s, and not at all during shutdown.
///
/// ```
/// use std::time::Duration;
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_otlp::{OtlpConfig, OtlpExporter, RootSpan};
///
/// // Nothing listens on port 9 of the loopback: every request fails, fast.
/// let config = OtlpConfig::new("http://127.0.0.1:9/v1/traces")
///     .unwrap()
///     .max_retries(0)
///     .warnings(false);
/// let exporter = OtlpExporter::start(config).unwrap();
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.enable_trace(16);
/// analyzer.record_node("plan", 3.0).unwrap();
/// assert!(exporter.export(&analyzer.trace().unwrap(), RootSpan::new("wf")));
/// assert!(exporter.flush(Duration::from_secs(30)));
/// let stats = exporter.stats();
/// assert_eq!((stats.traces_failed, stats.spans_failed), (1, 2));
/// assert!(stats.anything_lost());
/// ```
#[derive(Clone)]
pub struct OtlpExporter {
    inner: Arc<Thread<Worker>>,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("config", self.config())
            .field("stats", &self.stats())
            .finish()
    }
}

impl OtlpExporter {
    /// Starts the exporter thread. Nothing is sent until a trace is exported; a receiver
    /// that is down is no error here.
    ///
    /// # Errors
    /// [`OtlpError::InvalidHeader`] for a header set in code that cannot be sent,
    /// [`OtlpError::Tls`] when the TLS setup fails (an unreadable CA file), and
    /// [`OtlpError::Spawn`] when the thread cannot be started.
    pub fn start(config: OtlpConfig) -> Result<Self, OtlpError> {
        let names = http::ExporterNames {
            name: "OTLP exporter",
            thread_name: "agent-profiler-otlp",
            subject: "OTLP trace export",
            stats: "OtlpExporter::stats",
        };
        let settings = http::sender_settings(&config, names, None)?;
        let shared = Shared::new(settings, config);
        let thread =
            Thread::spawn(shared, Worker { sender: None }).map_err(|e| OtlpError::Spawn {
                message: e.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(thread),
        })
    }

    /// Queues `trace` (copied) with its root span, to be sent as one OTLP trace; returns at
    /// once. `true` when queued, or not sent by the sampler's choice
    /// ([`OtlpConfig::sampler`]: nothing is copied then); `false` when dropped (queue full,
    /// or the exporter shut down). [`stats`](Self::stats) counts each case.
    pub fn export(&self, trace: &Trace, root: RootSpan) -> bool {
        let shared = &self.inner;
        let config = &shared.context;
        if !config.sampler.sends_everything() {
            match config.sampler.decide(&root.run_facts(trace)) {
                Decision::Drop => {
                    shared.count(|c| c.traces_sampled_out += 1);
                    return true;
                }
                Decision::Failed => shared.count(|c| c.traces_kept_failed += 1),
                Decision::Slow => shared.count(|c| c.traces_kept_slow += 1),
                Decision::Head => {}
            }
        }
        let calls: usize = match config.llm_spans {
            LlmSpans::PerCall => trace.spans.iter().map(|s| s.llm_calls.len()).sum(),
            LlmSpans::OnNode => 0,
        };
        let spans = trace.spans.len() + calls + 1;
        let dropped = || {
            shared.count(|c| {
                c.traces_dropped += 1;
                c.spans_dropped += spans as u64;
            });
            false
        };
        if !has_room(config, &shared.state(), spans) {
            return dropped();
        }
        // Copied outside the lock; the room is checked again before queueing.
        let trace = trace.clone();
        let mut st = shared.state();
        if !has_room(config, &st, spans) {
            drop(st);
            return dropped();
        }
        let ticket = st.flush_requested();
        st.queue.pending_spans += spans;
        st.queue.jobs.push_back(Job {
            trace,
            root,
            spans,
            ticket,
        });
        shared.wake(st);
        true
    }

    /// Waits until every trace exported before this call is sent or failed, or `timeout`
    /// passes; `true` when done in time (also when the exporter has stopped).
    pub fn flush(&self, timeout: Duration) -> bool {
        self.inner.flush(timeout)
    }

    /// What has been sent, dropped and failed so far.
    pub fn stats(&self) -> OtlpStats {
        let shared = &self.inner;
        let mut stats = shared.counters();
        stats.retried_requests = shared.retried();
        stats.pending_spans = shared.state().queue.pending_spans as u64;
        stats.last_error = shared.last_error();
        stats
    }

    /// The configuration.
    pub fn config(&self) -> &OtlpConfig {
        &self.inner.context
    }

    /// Stops accepting traces, delivers what is queued within the shutdown timeout, stops
    /// the thread, and returns the final statistics. Clones stop too; calling it again
    /// returns at once.
    pub fn shutdown(&self) -> OtlpStats {
        self.inner.stop((), self.config().shutdown_timeout);
        self.stats()
    }
}

/// The exporter thread's own state: the HTTP sender, once made.
struct Worker {
    sender: Option<Sender>,
}

impl Work for Worker {
    type Queue = Queue;
    type Stop = ();
    type Counters = OtlpStats;
    type Context = OtlpConfig;

    /// A trace is queued, or a flush waits to be told it is done.
    fn ready(&self, st: &State<Self>) -> bool {
        !st.queue.jobs.is_empty() || st.flush_pending()
    }

    /// Sends the queued traces one after the other, until none is left; after each, the
    /// flush requests that waited for nothing later are done.
    fn cycle(&mut self, shared: &Shared, _: bool) {
        loop {
            let mut st = shared.state();
            let Some(job) = st.queue.jobs.pop_front() else {
                let all = st.flush_requested();
                shared.flushed(st, all);
                return;
            };
            let past_deadline = st
                .shutdown_deadline()
                .is_some_and(|deadline| Instant::now() >= deadline);
            drop(st);
            if past_deadline {
                fail_job(shared, &job, "the shutdown deadline passed before sending");
            } else {
                if self.sender.is_none() {
                    // Tried again for the next trace when it fails (the server may come up).
                    match make_sender(shared) {
                        Ok(made) => self.sender = Some(made),
                        Err(message) => fail_job(shared, &job, &message),
                    }
                }
                if let Some(sender) = &self.sender {
                    send_job(shared, sender, &job);
                }
            }
            let mut st = shared.state();
            st.queue.pending_spans = st.queue.pending_spans.saturating_sub(job.spans);
            let done = st
                .queue
                .jobs
                .front()
                .map_or(st.flush_requested(), |next| next.ticket);
            shared.flushed(st, done);
        }
    }

    fn finish(&mut self, _: &Shared, (): ()) {}

    /// Whatever is left (a panic, or the deadline passed) is counted as failed.
    fn abandon(shared: &Shared, queue: &mut Queue) {
        for job in queue.jobs.drain(..) {
            queue.pending_spans = queue.pending_spans.saturating_sub(job.spans);
            fail_count(shared, job.spans);
        }
    }

    fn on_drop(shared: &Shared) -> ((), Duration) {
        ((), shared.context.shutdown_timeout)
    }
}

/// The sender, once the experiment of an MLflow target known by name is resolved.
fn make_sender(shared: &Shared) -> Result<Sender, String> {
    let config = &shared.context;
    let mut sender =
        Sender::new(config, Signal::Traces, shared.retries().clone()).map_err(|e| e.to_string())?;
    if let Some((mlflow, name)) = &config.mlflow_experiment_name
        && config.experiment_id().is_none()
    {
        let mlflow = (**mlflow)
            .clone()
            .max_retries(config.max_retries.min(3))
            .request_timeout(config.timeout);
        let id = agent_profiler_mlflow::MlflowClient::new(&mlflow)
            .and_then(|client| client.get_or_create_experiment(name))
            .map_err(|e| format!("cannot find the MLflow experiment `{name}`: {e}"))?;
        sender.set_header(MLFLOW_EXPERIMENT_HEADER, &id)?;
    }
    Ok(sender)
}

/// Counts a trace of `spans` spans as failed.
fn fail_count(shared: &Shared, spans: usize) {
    shared.count(|c| {
        c.traces_failed += 1;
        c.spans_failed += spans as u64;
    });
}

fn fail_job(shared: &Shared, job: &Job, message: &str) {
    fail_count(shared, job.spans);
    shared.record_error(message);
}

fn send_job(shared: &Shared, sender: &Sender, job: &Job) {
    let requests = to_requests(&job.trace, &job.root, &shared.context);
    let mut delivered = true;
    for request in requests {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let body = request.encode_to_vec();
        drop(request);
        match sender.send(&body, job.root.mlflow_run_id(), &shared.pacer(false)) {
            Ok(accepted) => {
                let rejected = usize::try_from(accepted.rejected)
                    .unwrap_or(usize::MAX)
                    .min(spans);
                shared.count(|c| {
                    c.requests_sent += 1;
                    c.spans_sent += (spans - rejected) as u64;
                    c.spans_rejected += rejected as u64;
                });
                if rejected > 0 {
                    delivered = false;
                    shared.record_error(&format!(
                        "the receiver refused {rejected} of {spans} spans: {}",
                        accepted.message.as_deref().unwrap_or("no reason given")
                    ));
                }
            }
            Err(message) => {
                shared.count(|c| {
                    c.requests_failed += 1;
                    c.spans_failed += spans as u64;
                });
                delivered = false;
                shared.record_error(&message);
            }
        }
    }
    shared.count(|c| {
        if delivered {
            c.traces_sent += 1;
        } else {
            c.traces_failed += 1;
        }
    });
}
