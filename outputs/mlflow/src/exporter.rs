//! The exporter: one background thread (the HTTP layer's sender) that drains the analyzers'
//! per-call rings and the queued metrics, params, tags and reports, and sends them in
//! `log-batch` requests.
//!
//! Nothing here runs on a profiled call's path: the call path only writes its thread's ring
//! (the analyzer's call export), and cost tracking pushes into a bounded queue under a short
//! lock. When the server is slow or down, the rings and the queue fill up and further
//! per-call metrics are dropped and counted; memory stays bounded by the ring and queue
//! capacities.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;

use agent_profiler_http::retry::Pacer;
use agent_profiler_http::sender::{self, Settings, State, Thread, Work, write_last_error};
use agent_profiler_http::wait::lock;
use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::CallRecord;
use agent_profiler_runtime::Summary;

use super::client::{
    BatchBody, MlflowClient, MlflowError, Param, RunInfo, RunStatus, RunTag, check_tls, now_ms,
};
use super::config::{ConfigError, MlflowConfig};
use super::keys::{
    MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, node_metric_key, node_metric_key_disambiguated,
    sanitize_key, truncate_chars,
};

/// The artifact [`log_bottleneck_report`](super::MlflowTracker::log_bottleneck_report)
/// writes.
pub const REPORT_ARTIFACT: &str = "bottleneck_report.json";

/// What the exporter has done so far. Every per-call metric handed to the exporter ends up
/// in exactly one of `sent_metrics`, `dropped_metrics`, `failed_metrics`,
/// `rejected_metrics`, or is still `pending_metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExportStats {
    /// Metrics (per call, per cost, logged by hand) the server accepted.
    pub sent_metrics: u64,
    /// `log-batch` requests the server accepted.
    pub sent_batches: u64,
    /// Params the server accepted.
    pub sent_params: u64,
    /// Tags the server accepted.
    pub sent_tags: u64,
    /// Requests sent again after a transient failure.
    pub retried_requests: u64,
    /// Per-call metrics dropped because the exporter was behind (a full per-thread ring or a
    /// full queue). The calls are in the analyzer's totals all the same.
    pub dropped_metrics: u64,
    /// Batches the server refused, or that could not be delivered before shutdown.
    pub failed_batches: u64,
    /// Metrics in those batches.
    pub failed_metrics: u64,
    /// Params and tags refused or undelivered.
    pub failed_params_and_tags: u64,
    /// Metrics not sent because their node id makes a key MLflow rejects even after
    /// sanitising (longer than 250 characters).
    pub rejected_metrics: u64,
    /// Node ids whose metric keys had characters or path segments MLflow rejects, and
    /// were sent with those replaced by `_`.
    pub sanitized_keys: u64,
    /// Bottleneck reports delivered (metrics, tags and artifact).
    pub reports_sent: u64,
    /// Bottleneck reports that could not be delivered.
    pub reports_failed: u64,
    /// Artifacts of [`log_artifact`](super::MlflowTracker::log_artifact) uploaded.
    pub artifacts_sent: u64,
    /// Artifacts of [`log_artifact`](super::MlflowTracker::log_artifact) refused or not
    /// uploaded before the shutdown deadline.
    pub artifacts_failed: u64,
    /// Metrics waiting to be sent.
    pub pending_metrics: u64,
    /// The last failure, if any (never holds a secret).
    pub last_error: Option<String>,
}

impl ExportStats {
    /// Metrics that will never reach the server: dropped, failed and rejected.
    pub fn lost_metrics(&self) -> u64 {
        self.dropped_metrics + self.failed_metrics + self.rejected_metrics
    }

    /// Whether anything (metric, param, tag, report) was lost.
    pub fn anything_lost(&self) -> bool {
        self.lost_metrics() > 0
            || self.failed_params_and_tags > 0
            || self.reports_failed > 0
            || self.artifacts_failed > 0
    }
}

impl std::fmt::Display for ExportStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} metrics sent in {} batches ({} retries), {} dropped, {} failed, {} rejected, \
             {} pending; {} reports sent, {} failed",
            self.sent_metrics,
            self.sent_batches,
            self.retried_requests,
            self.dropped_metrics,
            self.failed_metrics,
            self.rejected_metrics,
            self.pending_metrics,
            self.reports_sent,
            self.reports_failed
        )?;
        if self.artifacts_sent + self.artifacts_failed > 0 {
            write!(
                f,
                "; {} artifacts sent, {} failed",
                self.artifacts_sent, self.artifacts_failed
            )?;
        }
        write_last_error(f, self.last_error.as_deref())
    }
}

/// A metric on its way: the key is shared by every value of the same series.
#[derive(Clone)]
pub(crate) struct QueuedMetric {
    key: Arc<str>,
    value: f64,
    timestamp: i64,
    step: i64,
}

/// Params, tags and reports: sent before metrics, kept across transient failures.
enum Control {
    Param(Param),
    Tag(RunTag),
    Report {
        summary: Box<Summary>,
        index: u64,
        logged: bool,
    },
    /// A file for the run's artifact root, uploaded in the order queued.
    Artifact {
        path: String,
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

impl Control {
    /// Counts this item as not delivered.
    fn count_failed(&self, stats: &mut ExportStats) {
        match self {
            Control::Report { .. } => stats.reports_failed += 1,
            Control::Artifact { .. } => stats.artifacts_failed += 1,
            Control::Param(_) | Control::Tag(_) => stats.failed_params_and_tags += 1,
        }
    }
}

struct Attached {
    analyzer: BottleneckAnalyzer,
    /// Its dropped calls when attached (or at shutdown, once frozen).
    baseline: u64,
    /// Dropped calls counted at shutdown, after which the analyzer is no longer read.
    frozen: Option<u64>,
}

/// What the tracker's handles queue for the exporter thread.
#[derive(Default)]
pub(crate) struct Queue {
    metrics: VecDeque<QueuedMetric>,
    /// The key of each (suffix, node) a per-call LLM metric was queued for: `None` when
    /// MLflow would reject it.
    node_keys: HashMap<(&'static str, String), Option<Arc<str>>>,
    /// The next step of each (suffix, node).
    node_steps: HashMap<(&'static str, String), u64>,
    control: VecDeque<Control>,
    reports: u64,
}

/// What the handles and the thread share besides the queue.
pub(crate) struct Context {
    config: MlflowConfig,
    run: OnceLock<RunInfo>,
    analyzers: Mutex<Vec<Attached>>,
    /// Which node id each node key (`node_{id}_`, sanitised) belongs to: the first id to use
    /// it. Another id that sanitises to the same key gets a key of its own.
    claims: Mutex<HashMap<String, String>>,
    /// Failed attempts to find the experiment and create (or resume) the run.
    setup_failures: AtomicU64,
}

type Shared = sender::Shared<Worker>;

/// Most params, tags and reports waiting at once; beyond, they are counted as failed.
const CONTROL_CAPACITY: usize = 10_000;

/// The tracker's side of the exporter: queues work for the thread, reads its statistics.
pub(crate) struct Exporter {
    thread: Thread<Worker>,
}

impl Exporter {
    /// Starts the exporter thread for `config`.
    pub(crate) fn start(config: MlflowConfig) -> Result<Self, MlflowError> {
        // Build the TLS setup once here so that a bad CA file is reported to the caller; the
        // HTTP client itself is built (and dropped) on the exporter thread, outside any async
        // runtime the caller may be in.
        check_tls(&config)?;
        let settings = Settings {
            name: "MLflow exporter",
            thread_name: "agent-profiler-mlflow",
            subject: format!("MLflow export to {}", config.tracking_uri()),
            stats: "MlflowTracker::stats",
            warnings: config.warnings,
            warn_sink: config.warn_sink.clone(),
            redactor: config.auth.redactor(),
            interval: Some(config.flush_interval),
        };
        let shared = Shared::new(
            settings,
            Context {
                config,
                run: OnceLock::new(),
                analyzers: Mutex::new(Vec::new()),
                claims: Mutex::new(HashMap::new()),
                setup_failures: AtomicU64::new(0),
            },
        );
        let worker = Worker::new(shared.clone());
        let thread = Thread::spawn(shared, worker).map_err(|e| MlflowError::Client {
            message: format!("cannot start the exporter thread: {e}"),
        })?;
        Ok(Self { thread })
    }

    pub(crate) fn config(&self) -> &MlflowConfig {
        &self.thread.context.config
    }

    pub(crate) fn attach(&self, analyzer: &BottleneckAnalyzer) {
        if self.thread.is_stopped() {
            return;
        }
        let mut list = lock(&self.thread.context.analyzers);
        if list.iter().any(|a| a.analyzer.ptr_eq(analyzer)) {
            return;
        }
        analyzer.enable_call_export(self.config().ring_capacity);
        list.push(Attached {
            baseline: analyzer.dropped_calls(),
            analyzer: analyzer.clone(),
            frozen: None,
        });
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.thread.is_stopped()
    }

    /// Queues a metric; `false` when the queue is full (counted as dropped) or the exporter
    /// has stopped.
    pub(crate) fn push_metric(&self, key: Arc<str>, value: f64, timestamp: i64, step: i64) -> bool {
        let mut st = self.thread.state();
        if !self.has_room(&st) {
            return false;
        }
        st.queue.metrics.push_back(QueuedMetric {
            key,
            value,
            timestamp,
            step,
        });
        true
    }

    /// Whether one more metric fits: not stopped and room left; if not, it is counted as
    /// dropped.
    fn has_room(&self, st: &State<Worker>) -> bool {
        if st.stopped() || st.queue.metrics.len() >= self.config().queue_capacity {
            self.thread.count(|c| c.dropped_metrics += 1);
            return false;
        }
        true
    }

    /// Queues one LLM call's figure as `node_{id}_{suffix}` (`cost_usd`, `llm_ms`,
    /// `ttft_ms`), step = the count of values of that key so far.
    pub(crate) fn push_node_metric(
        &self,
        node_id: &str,
        suffix: &'static str,
        value: f64,
        timestamp_ms: i64,
    ) {
        let slot = (suffix, node_id.to_owned());
        let cached = {
            let st = self.thread.state();
            if st.stopped() {
                self.thread.count(|c| c.dropped_metrics += 1);
                return;
            }
            st.queue.node_keys.get(&slot).cloned()
        };
        // Made outside the lock: a bad key records an error, which may call the user's
        // warning sink.
        let key = cached.unwrap_or_else(|| make_key(&self.thread, node_id, suffix));
        let mut st = self.thread.state();
        if !st.queue.node_keys.contains_key(&slot) {
            st.queue.node_keys.insert(slot.clone(), key.clone());
        }
        let Some(key) = key else {
            self.thread.count(|c| c.rejected_metrics += 1);
            return;
        };
        if !self.has_room(&st) {
            return;
        }
        let step = st.queue.node_steps.entry(slot).or_insert(0);
        let this = *step;
        *step += 1;
        st.queue.metrics.push_back(QueuedMetric {
            key,
            value,
            timestamp: timestamp_ms,
            step: i64::try_from(this).unwrap_or(i64::MAX),
        });
    }

    /// Queues a param, tag or report for the thread (counted as failed when too many wait);
    /// a report gets the next report index.
    fn push_control(&self, mut item: Control) -> Result<(), MlflowError> {
        let mut st = self.thread.state();
        if !st.accepting() {
            return Err(MlflowError::Stopped);
        }
        if st.queue.control.len() >= CONTROL_CAPACITY {
            self.thread.count(|c| item.count_failed(c));
            return Ok(());
        }
        if let Control::Report { index, .. } = &mut item {
            *index = st.queue.reports;
            st.queue.reports += 1;
        }
        st.queue.control.push_back(item);
        self.thread.wake(st);
        Ok(())
    }

    pub(crate) fn push_param(&self, param: Param) -> Result<(), MlflowError> {
        self.push_control(Control::Param(param))
    }

    pub(crate) fn push_tag(&self, tag: RunTag) -> Result<(), MlflowError> {
        self.push_control(Control::Tag(tag))
    }

    pub(crate) fn push_artifact(
        &self,
        path: &str,
        bytes: Vec<u8>,
        content_type: &'static str,
    ) -> Result<(), MlflowError> {
        self.push_control(Control::Artifact {
            path: path.to_owned(),
            bytes,
            content_type,
        })
    }

    pub(crate) fn push_report(&self, summary: &Summary) -> Result<(), MlflowError> {
        self.push_control(Control::Report {
            summary: Box::new(summary.clone()),
            index: 0,
            logged: false,
        })
    }

    /// Asks for everything queued so far to be sent; waits up to `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.thread.flush(timeout)
    }

    /// Delivers what is queued and finishes the run by `timeout` from now; the final
    /// statistics.
    pub(crate) fn stop(&self, status: RunStatus, timeout: Duration) -> ExportStats {
        self.thread.stop(status, timeout);
        self.stats()
    }

    pub(crate) fn run_info(&self) -> Option<&RunInfo> {
        self.thread.context.run.get()
    }

    pub(crate) fn wait_for_run(&self, timeout: Duration) -> Option<RunInfo> {
        let run = &self.thread.context.run;
        self.thread.wait_for(timeout, |_| run.get().is_some());
        run.get().cloned()
    }

    pub(crate) fn wait_for_run_attempt(&self, timeout: Duration) -> Option<RunInfo> {
        let context = &self.thread.context;
        self.thread.wait_for(timeout, |_| {
            context.run.get().is_some() || context.setup_failures.load(Ordering::Relaxed) > 0
        });
        context.run.get().cloned()
    }

    pub(crate) fn stats(&self) -> ExportStats {
        stats(&self.thread)
    }
}

/// What the exporter has done so far: its counters, plus the calls the analyzers' rings
/// dropped and the metrics still queued.
fn stats(shared: &Shared) -> ExportStats {
    let ring_dropped: u64 = lock(&shared.context.analyzers)
        .iter()
        .map(|a| {
            a.frozen
                .unwrap_or_else(|| a.analyzer.dropped_calls().saturating_sub(a.baseline))
        })
        .sum();
    let queued = shared.state().queue.metrics.len() as u64;
    let mut stats = shared.counters();
    stats.retried_requests = shared.retried();
    stats.dropped_metrics += ring_dropped;
    stats.pending_metrics += queued;
    stats.last_error = shared.last_error();
    stats
}

/// `node_{id}_{suffix}`, sanitised; `None` (and the error recorded) when MLflow would reject
/// it even so. Two node ids never share a key: an id whose sanitised key is another id's
/// gets a key of its own ([`node_metric_key_disambiguated`]), and a warning says so.
fn make_key(shared: &Shared, node_id: &str, suffix: &str) -> Option<Arc<str>> {
    let raw = format!("node_{node_id}_{suffix}");
    let claim = sanitize_key(&format!("node_{node_id}_"))
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| raw.clone());
    let taken_by = {
        let mut claims = lock(&shared.context.claims);
        let owner = claims.entry(claim).or_insert_with(|| node_id.to_owned());
        (owner != node_id).then(|| owner.clone())
    };
    let key = match &taken_by {
        None => node_metric_key(node_id, suffix),
        Some(_) => node_metric_key_disambiguated(node_id, suffix),
    };
    match key {
        Ok(key) => {
            if key != raw {
                shared.count(|c| c.sanitized_keys += 1);
            }
            if let Some(other) = taken_by {
                shared.warn(&format!(
                    "node ids `{}` and `{}` would share MLflow key `{}`; the metrics of `{}` \
                     go to `{key}`",
                    truncate_chars(&other, 60),
                    truncate_chars(node_id, 60),
                    node_metric_key(node_id, suffix).unwrap_or_default(),
                    truncate_chars(node_id, 60),
                ));
            }
            Some(Arc::from(key))
        }
        Err(e) => {
            shared.record_error(&format!(
                "metrics of node `{}` are not sent: {e}",
                truncate_chars(node_id, 60)
            ));
            None
        }
    }
}

/// Whether a failure may go away by itself (then what failed is kept and tried again).
fn transient(e: &MlflowError) -> bool {
    e.is_retryable() || matches!(e, MlflowError::DeadlineExceeded { .. })
}

/// The exporter thread's own state.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    client: Option<MlflowClient>,
    run: Option<RunInfo>,
    pending: VecDeque<QueuedMetric>,
    /// Metrics ever put in `pending`, and metrics taken out of it (sent, failed).
    pushed: u64,
    handled: u64,
    controls: VecDeque<Control>,
    /// Artifacts kept for the run's end: uploaded only once shutdown was asked for, when
    /// every request has the shutdown deadline (one started before would have the whole
    /// request timeout).
    artifacts: Vec<Control>,
    keys: HashMap<String, Option<Arc<str>>>,
    calls: Vec<CallRecord>,
    flush_seen: u64,
    /// A flush request and the `pushed` count it waits for.
    flush_goal: Option<(u64, u64)>,
    next_setup: Instant,
    setup_failures: u32,
    shutting_down: bool,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            client: None,
            run: None,
            pending: VecDeque::new(),
            pushed: 0,
            handled: 0,
            controls: VecDeque::new(),
            artifacts: Vec::new(),
            keys: HashMap::new(),
            calls: Vec::new(),
            flush_seen: 0,
            flush_goal: None,
            next_setup: Instant::now(),
            setup_failures: 0,
            shutting_down: false,
        }
    }

    /// The pacer of the run's requests, which leaves part of the shutdown window to the
    /// run's final status update.
    fn pacer(&self) -> impl Pacer + '_ {
        self.shared.pacer(true)
    }

    fn publish_pending(&self) {
        let pending = self.pending.len() as u64;
        self.shared.count(|c| c.pending_metrics = pending);
    }

    fn enqueue(&mut self, metric: QueuedMetric) {
        if self.pending.len() >= self.shared.context.config.queue_capacity {
            self.shared.count(|c| c.dropped_metrics += 1);
        } else {
            self.pending.push_back(metric);
            self.pushed += 1;
        }
    }

    /// Moves per-call records and queued items into the worker.
    fn collect(&mut self) {
        let requested = self.shared.state().flush_requested();
        if self.pending.len() < self.shared.context.config.queue_capacity {
            {
                let analyzers = lock(&self.shared.context.analyzers);
                for attached in analyzers.iter().filter(|a| a.frozen.is_none()) {
                    attached.analyzer.drain_calls(&mut self.calls);
                }
            }
            let mut calls = std::mem::take(&mut self.calls);
            for call in calls.drain(..) {
                let key = match self.keys.get(&call.node_id) {
                    Some(key) => key.clone(),
                    None => {
                        let key = make_key(&self.shared, &call.node_id, "duration_ms");
                        self.keys.insert(call.node_id.clone(), key.clone());
                        key
                    }
                };
                match key {
                    Some(key) => self.enqueue(QueuedMetric {
                        key,
                        value: call.duration_ms,
                        timestamp: call.end_unix_ms as i64,
                        step: i64::try_from(call.call_index).unwrap_or(i64::MAX),
                    }),
                    None => self.shared.count(|c| c.rejected_metrics += 1),
                }
            }
            self.calls = calls;
        }
        let (metrics, controls) = {
            let mut st = self.shared.state();
            (
                std::mem::take(&mut st.queue.metrics),
                std::mem::take(&mut st.queue.control),
            )
        };
        for metric in metrics {
            self.enqueue(metric);
        }
        self.controls.extend(controls);
        if requested > self.flush_seen {
            self.flush_seen = requested;
            self.flush_goal = Some((requested, self.pushed));
        }
        self.publish_pending();
    }

    fn check_flush(&mut self) {
        let Some((request, mark)) = self.flush_goal else {
            return;
        };
        if self.handled >= mark && self.controls.is_empty() {
            self.flush_goal = None;
            self.shared.flushed(self.shared.state(), request);
        }
    }

    fn try_setup(&mut self) -> bool {
        if !self.shutting_down && Instant::now() < self.next_setup {
            return false;
        }
        if self.client.is_none() {
            match MlflowClient::new(&self.shared.context.config) {
                Ok(client) => {
                    self.client = Some(client.with_retry_counter(self.shared.retries().clone()))
                }
                Err(e) => {
                    self.setup_failed(&e);
                    return false;
                }
            }
        }
        let Some(client) = self.client.clone() else {
            return false;
        };
        let result = setup(&client, &self.shared.context.config, &self.pacer());
        match result {
            Ok(info) => {
                self.run = Some(info.clone());
                let _ = self.shared.context.run.set(info);
                self.shared.notify();
                true
            }
            Err(e) => {
                self.setup_failed(&e);
                false
            }
        }
    }

    fn setup_failed(&mut self, e: &MlflowError) {
        self.shared
            .record_error(&format!("cannot start the MLflow run: {e}"));
        self.shared
            .context
            .setup_failures
            .fetch_add(1, Ordering::Relaxed);
        self.shared.notify();
        self.setup_failures = self.setup_failures.saturating_add(1);
        let wait =
            Duration::from_secs(1u64 << self.setup_failures.min(6)).min(Duration::from_secs(60));
        self.next_setup = Instant::now() + wait;
    }

    /// Sends params, tags and reports; `false` when one failed transiently (kept for later).
    fn send_controls(&mut self) -> bool {
        let (Some(client), Some(run)) = (self.client.clone(), self.run.clone()) else {
            return false;
        };
        if self.shutting_down {
            self.controls.extend(self.artifacts.drain(..));
        }
        while let Some(front) = self.controls.front() {
            if matches!(front, Control::Artifact { .. }) && !self.shutting_down {
                if let Some(artifact) = self.controls.pop_front() {
                    self.artifacts.push(artifact);
                }
                continue;
            }
            if matches!(front, Control::Artifact { .. }) {
                let Some(Control::Artifact {
                    path,
                    bytes,
                    content_type,
                }) = self.controls.pop_front()
                else {
                    continue;
                };
                let uploaded =
                    client.log_artifact_with(&run, &path, &bytes, content_type, &self.pacer());
                match uploaded {
                    Ok(()) => self.shared.count(|c| c.artifacts_sent += 1),
                    Err(e) if transient(&e) => {
                        self.shared.record_error(&e.to_string());
                        self.controls.push_front(Control::Artifact {
                            path,
                            bytes,
                            content_type,
                        });
                        return false;
                    }
                    Err(e) => {
                        self.shared.count(|c| c.artifacts_failed += 1);
                        self.shared
                            .record_error(&format!("artifact {path} not uploaded: {e}"));
                    }
                }
                continue;
            }
            if matches!(front, Control::Report { .. }) {
                let Some(Control::Report {
                    summary,
                    index,
                    mut logged,
                }) = self.controls.pop_front()
                else {
                    continue;
                };
                match self.send_report(&client, &run, &summary, index, &mut logged) {
                    Ok(()) => self.shared.count(|c| c.reports_sent += 1),
                    Err(e) if transient(&e) => {
                        self.shared.record_error(&e.to_string());
                        self.controls.push_front(Control::Report {
                            summary,
                            index,
                            logged,
                        });
                        return false;
                    }
                    Err(e) => {
                        self.shared.count(|c| c.reports_failed += 1);
                        self.shared
                            .record_error(&format!("bottleneck report not delivered: {e}"));
                    }
                }
                continue;
            }
            // A run of params and tags: one batch (split when the server refuses it).
            let mut items = Vec::new();
            while let Some(Control::Param(_) | Control::Tag(_)) = self.controls.front() {
                if items.len() >= MAX_PARAMS_PER_BATCH {
                    break;
                }
                if let Some(item) = self.controls.pop_front() {
                    items.push(item);
                }
            }
            if let Err(e) = self.send_pairs(&client, &run.run_id, &items) {
                for item in items.into_iter().rev() {
                    self.controls.push_front(item);
                }
                self.shared.record_error(&e.to_string());
                return false;
            }
        }
        true
    }

    /// Sends params and tags in one batch; on refusal, one by one. Transient failure: `Err`.
    fn send_pairs(
        &self,
        client: &MlflowClient,
        run_id: &str,
        items: &[Control],
    ) -> Result<(), MlflowError> {
        let mut body = BatchBody::new(run_id);
        let (mut params, mut tags) = (0, 0);
        for item in items {
            match item {
                Control::Param(p) => {
                    body.push_param(&p.key, &p.value);
                    params += 1;
                }
                Control::Tag(t) => {
                    body.push_tag(&t.key, &t.value);
                    tags += 1;
                }
                Control::Report { .. } | Control::Artifact { .. } => {}
            }
        }
        match client.log_batch_body(&body.body(), &self.pacer()) {
            Ok(()) => {
                self.shared.count(|c| {
                    c.sent_params += params;
                    c.sent_tags += tags;
                    c.sent_batches += 1;
                });
                Ok(())
            }
            Err(e) if transient(&e) => Err(e),
            Err(e) if items.len() > 1 => {
                let _ = e;
                for item in items {
                    self.send_pairs(client, run_id, std::slice::from_ref(item))?;
                }
                Ok(())
            }
            Err(e) => {
                self.shared.count(|c| c.failed_params_and_tags += 1);
                self.shared.record_error(&e.to_string());
                Ok(())
            }
        }
    }

    fn send_report(
        &self,
        client: &MlflowClient,
        run: &RunInfo,
        summary: &Summary,
        index: u64,
        logged: &mut bool,
    ) -> Result<(), MlflowError> {
        let stats = stats(&self.shared);
        if !*logged {
            let now = now_ms();
            let step = i64::try_from(index).unwrap_or(i64::MAX);
            let mut body = BatchBody::new(&run.run_id);
            body.push_metric("total_time_ms", summary.total_time_ms, now, step);
            body.push_metric("node_count", summary.node_count as f64, now, step);
            body.push_metric(
                "bottleneck_count",
                summary.bottlenecks.len() as f64,
                now,
                step,
            );
            body.push_metric("total_cost_usd", summary.total_cost_usd, now, step);
            if let Some(slowest) = &summary.slowest_node {
                body.push_tag("slowest_node", &slowest.node_id);
            }
            let ids: Vec<&str> = summary
                .bottlenecks
                .iter()
                .map(|b| b.node_id.as_str())
                .collect();
            body.push_tag("bottlenecks", &ids.join(","));
            if let Some(path) = &summary.critical_path {
                super::critical::push_critical_path(&mut body, path, now, step);
            }
            if stats.anything_lost() {
                body.push_tag("export_lost", &stats.to_string());
            }
            client.log_batch_body(&body.body(), &self.pacer())?;
            self.shared.count(|c| c.sent_batches += 1);
            *logged = true;
        }
        let mut report = serde_json::to_value(summary).map_err(|e| MlflowError::Client {
            message: format!("cannot serialise the summary: {e}"),
        })?;
        if stats.anything_lost()
            && let (Some(map), Ok(export)) = (report.as_object_mut(), serde_json::to_value(&stats))
        {
            map.insert("export".to_owned(), export);
        }
        let bytes = serde_json::to_vec_pretty(&report).unwrap_or_default();
        client.log_artifact_with(
            run,
            REPORT_ARTIFACT,
            &bytes,
            "application/json",
            &self.pacer(),
        )
    }

    /// Sends pending metrics in full batches, collecting more in between, until nothing is
    /// left, a control item arrives (then `true`: send it first), or a send fails
    /// transiently.
    fn send_metrics(&mut self) -> bool {
        let (Some(client), Some(run)) = (self.client.clone(), self.run.clone()) else {
            return false;
        };
        let mut body = BatchBody::new(&run.run_id);
        loop {
            if self.pending.len() < MAX_METRICS_PER_BATCH {
                self.collect();
            }
            if !self.controls.is_empty() {
                return true;
            }
            if self.pending.is_empty() {
                return false;
            }
            let n = self.pending.len().min(MAX_METRICS_PER_BATCH);
            let sent = self.send_front(&client, &mut body, n);
            self.publish_pending();
            self.check_flush();
            if let Err(e) = sent {
                self.shared.record_error(&e.to_string());
                return false;
            }
        }
    }

    /// Sends up to the first `n` pending metrics (fewer if the size limit says so). A batch
    /// the server refuses as invalid is split in halves until the bad metric is alone, so
    /// one bad value never loses the rest of its batch.
    fn send_front(
        &mut self,
        client: &MlflowClient,
        body: &mut BatchBody,
        n: usize,
    ) -> Result<(), MlflowError> {
        body.clear();
        for m in self.pending.iter().take(n) {
            if !body.push_metric(&m.key, m.value, m.timestamp, m.step) {
                break;
            }
        }
        let count = body.metric_count();
        if count == 0 {
            return Ok(());
        }
        let result = client.log_batch_body(&body.body(), &self.pacer());
        match result {
            Ok(()) => {
                self.pending.drain(..count);
                self.handled += count as u64;
                self.shared.count(|c| {
                    c.sent_metrics += count as u64;
                    c.sent_batches += 1;
                });
                Ok(())
            }
            Err(e) if transient(&e) => Err(e),
            Err(e) if count > 1 && e.error_code() == Some("INVALID_PARAMETER_VALUE") => {
                let half = count / 2;
                self.send_front(client, body, half)?;
                self.send_front(client, body, count - half)
            }
            Err(e) => {
                self.pending.drain(..count);
                self.handled += count as u64;
                self.shared.count(|c| {
                    c.failed_metrics += count as u64;
                    c.failed_batches += 1;
                });
                self.shared.record_error(&e.to_string());
                Ok(())
            }
        }
    }

    /// After the last cycle: counts what was not delivered, ends the run.
    fn end(&mut self, status: RunStatus) {
        let left = self.pending.len() as u64;
        let controls: Vec<Control> = self
            .controls
            .drain(..)
            .chain(self.artifacts.drain(..))
            .collect();
        self.shared.count(|c| {
            c.failed_metrics += left;
            c.failed_batches += left.div_ceil(MAX_METRICS_PER_BATCH as u64);
            for item in &controls {
                item.count_failed(c);
            }
        });
        self.handled += left;
        self.pending.clear();
        self.publish_pending();
        if left > 0 {
            let why = match (&self.run, self.shared.last_error()) {
                // Keep the cause: the run was never created (server refusing, down...).
                (None, Some(cause)) => format!("no MLflow run ({cause})"),
                (None, None) => "no MLflow run".to_owned(),
                (Some(_), _) => "not delivered before the shutdown deadline".to_owned(),
            };
            self.shared
                .record_error(&format!("{left} metrics were not delivered: {why}"));
        }
        if let (Some(client), Some(run)) = (self.client.clone(), self.run.clone()) {
            // With all that is left of the shutdown window.
            let pacer = self.shared.pacer(false);
            if let Err(e) = client.update_run_with(&run.run_id, status, Some(now_ms()), &pacer) {
                self.shared.record_error(&format!(
                    "cannot set the run's status to {}: {e}",
                    status.as_str()
                ));
            }
        }
        // Stop reading the analyzers: later calls are neither kept nor counted as dropped.
        {
            let mut analyzers = lock(&self.shared.context.analyzers);
            for a in analyzers.iter_mut() {
                a.analyzer.disable_call_export();
                let mut rest = Vec::new();
                a.analyzer.drain_calls(&mut rest);
                let dropped = a.analyzer.dropped_calls().saturating_sub(a.baseline);
                a.frozen = Some(dropped + rest.len() as u64);
            }
        }
        let stats = stats(&self.shared);
        if stats.anything_lost() {
            self.shared
                .warn(&format!("MLflow export finished with losses: {stats}"));
        }
    }
}

impl Work for Worker {
    type Queue = Queue;
    type Stop = RunStatus;
    type Counters = ExportStats;
    type Context = Context;

    /// A flush request or a param, tag or report is waiting; otherwise the thread sends
    /// every flush interval.
    fn ready(&self, st: &State<Self>) -> bool {
        st.flush_requested() > self.flush_seen || !st.queue.control.is_empty()
    }

    fn cycle(&mut self, _: &Shared, stopping: bool) {
        self.shutting_down = stopping;
        self.collect();
        if self.run.is_none() && !self.try_setup() {
            self.check_flush();
            return;
        }
        while self.send_controls() && self.send_metrics() {}
        self.check_flush();
    }

    fn finish(&mut self, _: &Shared, status: RunStatus) {
        self.end(status);
    }

    /// Metrics and controls queued too late for the last cycle.
    fn abandon(shared: &Shared, queue: &mut Queue) {
        let late = queue.metrics.len() as u64;
        queue.metrics.clear();
        let controls: Vec<Control> = queue.control.drain(..).collect();
        shared.count(|c| {
            c.dropped_metrics += late;
            for item in &controls {
                item.count_failed(c);
            }
        });
    }

    /// Dropping the last handle finishes the run: `FAILED` while panicking, else `FINISHED`.
    fn on_drop(shared: &Shared) -> (RunStatus, Duration) {
        let status = if std::thread::panicking() {
            RunStatus::Failed
        } else {
            RunStatus::Finished
        };
        (status, shared.context.config.shutdown_timeout)
    }

    /// A fifth of the window, at most 2 s, for the run's final status update.
    fn reserve(timeout: Duration) -> Duration {
        (timeout / 5).min(Duration::from_secs(2))
    }
}

/// Finds or creates the experiment and creates (or resumes) the run.
fn setup(
    client: &MlflowClient,
    config: &MlflowConfig,
    pacer: &dyn Pacer,
) -> Result<RunInfo, MlflowError> {
    if let Some(run_id) = &config.run_id {
        let run = client.get_run_with(run_id, pacer)?;
        if run.info.lifecycle_stage == "deleted" {
            return Err(MlflowError::InvalidResponse {
                endpoint: "runs/get".to_owned(),
                message: format!("run {run_id} (MLFLOW_RUN_ID) is deleted"),
            });
        }
        if run.info.status != RunStatus::Running.as_str() {
            client.update_run_with(run_id, RunStatus::Running, None, pacer)?;
        }
        return Ok(run.info);
    }
    let experiment_id = match (&config.experiment_name, &config.experiment_id) {
        (Some(name), id) => {
            let found = client.get_or_create_experiment_with(name, pacer)?;
            if let Some(id) = id
                && *id != found
            {
                return Err(MlflowError::Config(ConfigError::InvalidValue {
                    variable: "MLFLOW_EXPERIMENT_ID",
                    value: id.clone(),
                    expected: "the id of the experiment named by MLFLOW_EXPERIMENT_NAME",
                }));
            }
            found
        }
        (None, Some(id)) => client.get_experiment_with(id, pacer)?.experiment_id,
        (None, None) => "0".to_owned(),
    };
    let mut tags: Vec<RunTag> = Vec::new();
    let mut default_tag = |key: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty())
            && !config.run_tags.iter().any(|(k, _)| k == key)
        {
            tags.push(RunTag::new(key, value));
        }
    };
    default_tag(
        "mlflow.user",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok(),
    );
    default_tag(
        "mlflow.source.name",
        std::env::current_exe().ok().and_then(|p| {
            p.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        }),
    );
    default_tag("mlflow.source.type", Some("LOCAL".to_owned()));
    tags.extend(
        config
            .run_tags
            .iter()
            .map(|(k, v)| RunTag::new(k.clone(), v.clone())),
    );
    client.create_run_with(&experiment_id, config.run_name.as_deref(), &tags, pacer)
}
