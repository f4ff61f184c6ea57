//! The exporter: one background thread that drains the analyzers' per-call rings and the
//! queued metrics, params, tags and reports, and sends them in `log-batch` requests.
//!
//! Nothing here runs on a profiled call's path: the call path only writes its thread's ring
//! (see `export.rs`), and cost tracking pushes into a bounded queue under a short lock. When
//! the server is slow or down, the rings and the queue fill up and further per-call metrics
//! are dropped and counted; memory stays bounded by the ring and queue capacities.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use agent_profiler_http::wait::{deadline_after, lock, wait_until};
use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::CallRecord;
use agent_profiler_runtime::Summary;

use super::client::{
    BatchBody, MlflowClient, MlflowError, Pacer, Param, Redactor, RunInfo, RunStatus, RunTag,
    now_ms,
};
use super::config::{ConfigError, MlflowConfig};
use super::keys::{MAX_METRICS_PER_BATCH, node_metric_key};

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
        self.lost_metrics() > 0 || self.failed_params_and_tags > 0 || self.reports_failed > 0
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
        if let Some(error) = &self.last_error {
            write!(f, "; last error: {error}")?;
        }
        Ok(())
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
}

#[derive(Default)]
struct Counters {
    sent_metrics: AtomicU64,
    sent_batches: AtomicU64,
    sent_params: AtomicU64,
    sent_tags: AtomicU64,
    dropped: AtomicU64,
    failed_batches: AtomicU64,
    failed_metrics: AtomicU64,
    failed_params_and_tags: AtomicU64,
    rejected_metrics: AtomicU64,
    sanitized_keys: AtomicU64,
    reports_sent: AtomicU64,
    reports_failed: AtomicU64,
    pending: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

struct Attached {
    analyzer: BottleneckAnalyzer,
    /// Its dropped calls when attached (or at shutdown, once frozen).
    baseline: u64,
    /// Dropped calls counted at shutdown, after which the analyzer is no longer read.
    frozen: Option<u64>,
}

#[derive(Default)]
struct State {
    metrics: VecDeque<QueuedMetric>,
    cost_keys: HashMap<String, Option<Arc<str>>>,
    cost_steps: HashMap<String, u64>,
    control: VecDeque<Control>,
    reports: u64,
    flush_requested: u64,
    flush_done: u64,
    /// Status to end the run with, the deadline, and the time kept back from it for the
    /// run's final status update.
    shutdown: Option<(RunStatus, Instant, Duration)>,
    stopped: bool,
}

/// What the tracker's handles and the exporter thread share.
pub(crate) struct Shared {
    config: MlflowConfig,
    redact: Redactor,
    state: Mutex<State>,
    /// Wakes the exporter: new control items, flush, shutdown.
    wake: Condvar,
    /// Wakes callers: flush done, run created, stopped.
    progress: Condvar,
    counters: Counters,
    retries: Arc<AtomicU64>,
    last_error: Mutex<Option<String>>,
    warned: AtomicBool,
    run: OnceLock<RunInfo>,
    analyzers: Mutex<Vec<Attached>>,
}

/// Most params, tags and reports waiting at once; beyond, they are counted as failed.
const CONTROL_CAPACITY: usize = 10_000;

impl Shared {
    pub(crate) fn new(config: MlflowConfig) -> Arc<Self> {
        Arc::new(Self {
            redact: Redactor::new(&config.auth),
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            progress: Condvar::new(),
            counters: Counters::default(),
            retries: Arc::new(AtomicU64::new(0)),
            last_error: Mutex::new(None),
            warned: AtomicBool::new(false),
            run: OnceLock::new(),
            analyzers: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn config(&self) -> &MlflowConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub(crate) fn attach(&self, analyzer: &BottleneckAnalyzer) {
        if self.is_stopped() {
            return;
        }
        let mut list = lock(&self.analyzers);
        if list.iter().any(|a| a.analyzer.ptr_eq(analyzer)) {
            return;
        }
        analyzer.enable_call_export(self.config.ring_capacity);
        list.push(Attached {
            baseline: analyzer.dropped_calls(),
            analyzer: analyzer.clone(),
            frozen: None,
        });
    }

    pub(crate) fn is_stopped(&self) -> bool {
        let st = self.state();
        st.stopped || st.shutdown.is_some()
    }

    /// Queues a metric; `false` when the queue is full (counted as dropped) or the exporter
    /// has stopped.
    pub(crate) fn push_metric(&self, key: Arc<str>, value: f64, timestamp: i64, step: i64) -> bool {
        let mut st = self.state();
        if st.stopped || st.metrics.len() >= self.config.queue_capacity {
            add(&self.counters.dropped, 1);
            return false;
        }
        st.metrics.push_back(QueuedMetric {
            key,
            value,
            timestamp,
            step,
        });
        true
    }

    /// Queues one LLM call's cost as `node_{id}_cost_usd`, step = the node's cost index.
    pub(crate) fn push_cost(&self, node_id: &str, cost_usd: f64, timestamp_ms: i64) {
        let cached = {
            let st = self.state();
            if st.stopped {
                add(&self.counters.dropped, 1);
                return;
            }
            st.cost_keys.get(node_id).cloned()
        };
        // Made outside the lock: a bad key records an error, which may call the user's
        // warning sink.
        let key = cached.unwrap_or_else(|| self.make_key(node_id, "cost_usd"));
        let mut st = self.state();
        if !st.cost_keys.contains_key(node_id) {
            st.cost_keys.insert(node_id.to_owned(), key.clone());
        }
        let Some(key) = key else {
            add(&self.counters.rejected_metrics, 1);
            return;
        };
        if st.stopped || st.metrics.len() >= self.config.queue_capacity {
            add(&self.counters.dropped, 1);
            return;
        }
        let step = st.cost_steps.entry(node_id.to_owned()).or_insert(0);
        let this = *step;
        *step += 1;
        st.metrics.push_back(QueuedMetric {
            key,
            value: cost_usd,
            timestamp: timestamp_ms,
            step: i64::try_from(this).unwrap_or(i64::MAX),
        });
    }

    /// `node_{id}_{suffix}`, sanitised; `None` (and the error recorded) when MLflow would
    /// reject it even so.
    fn make_key(&self, node_id: &str, suffix: &str) -> Option<Arc<str>> {
        let raw = format!("node_{node_id}_{suffix}");
        match node_metric_key(node_id, suffix) {
            Ok(key) => {
                if key != raw {
                    add(&self.counters.sanitized_keys, 1);
                }
                Some(Arc::from(key))
            }
            Err(e) => {
                self.record_error(&format!(
                    "metrics of node `{}` are not sent: {e}",
                    super::keys::truncate_chars(node_id, 60)
                ));
                None
            }
        }
    }

    fn push_control(&self, item: Control) -> Result<(), MlflowError> {
        let mut st = self.state();
        if st.stopped || st.shutdown.is_some() {
            return Err(MlflowError::Stopped);
        }
        if st.control.len() >= CONTROL_CAPACITY {
            add(&self.counters.failed_params_and_tags, 1);
            return Ok(());
        }
        st.control.push_back(item);
        drop(st);
        self.wake.notify_all();
        Ok(())
    }

    pub(crate) fn push_param(&self, param: Param) -> Result<(), MlflowError> {
        self.push_control(Control::Param(param))
    }

    pub(crate) fn push_tag(&self, tag: RunTag) -> Result<(), MlflowError> {
        self.push_control(Control::Tag(tag))
    }

    pub(crate) fn push_report(&self, summary: &Summary) -> Result<(), MlflowError> {
        let mut st = self.state();
        if st.stopped || st.shutdown.is_some() {
            return Err(MlflowError::Stopped);
        }
        if st.control.len() >= CONTROL_CAPACITY {
            add(&self.counters.reports_failed, 1);
            return Ok(());
        }
        let index = st.reports;
        st.reports += 1;
        st.control.push_back(Control::Report {
            summary: Box::new(summary.clone()),
            index,
            logged: false,
        });
        drop(st);
        self.wake.notify_all();
        Ok(())
    }

    /// Asks for everything queued so far to be sent; waits up to `timeout`.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut st = self.state();
        if st.stopped {
            return true;
        }
        st.flush_requested += 1;
        let mine = st.flush_requested;
        self.wake.notify_all();
        wait_until(&self.progress, st, deadline, |st| {
            st.flush_done >= mine || st.stopped
        })
    }

    /// Asks the exporter to deliver what is queued and finish the run by `deadline`; waits
    /// until it has stopped (or a little past the deadline).
    pub(crate) fn shutdown(&self, status: RunStatus, timeout: Duration) -> bool {
        let deadline = deadline_after(timeout);
        let mut st = self.state();
        if !st.stopped && st.shutdown.is_none() {
            let reserve = (timeout / 5).min(Duration::from_secs(2));
            st.shutdown = Some((status, deadline, reserve));
        }
        let deadline = st.shutdown.map_or(deadline, |(_, d, _)| d);
        self.wake.notify_all();
        // A request in flight ends by the deadline (its timeout is cut to it); allow a margin
        // for the run's final status update and for joining.
        let give_up = deadline + Duration::from_secs(2);
        wait_until(&self.progress, st, give_up, |st| st.stopped)
    }

    pub(crate) fn run_info(&self) -> Option<&RunInfo> {
        self.run.get()
    }

    pub(crate) fn wait_for_run(&self, timeout: Duration) -> Option<RunInfo> {
        let deadline = deadline_after(timeout);
        let mut st = self.state();
        loop {
            if let Some(run) = self.run.get() {
                return Some(run.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if st.stopped || left.is_zero() {
                return None;
            }
            st = self
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub(crate) fn stats(&self) -> ExportStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ring_dropped: u64 = lock(&self.analyzers)
            .iter()
            .map(|a| {
                a.frozen
                    .unwrap_or_else(|| a.analyzer.dropped_calls().saturating_sub(a.baseline))
            })
            .sum();
        let queued = self.state().metrics.len() as u64;
        ExportStats {
            sent_metrics: get(&c.sent_metrics),
            sent_batches: get(&c.sent_batches),
            sent_params: get(&c.sent_params),
            sent_tags: get(&c.sent_tags),
            retried_requests: get(&self.retries),
            dropped_metrics: get(&c.dropped) + ring_dropped,
            failed_batches: get(&c.failed_batches),
            failed_metrics: get(&c.failed_metrics),
            failed_params_and_tags: get(&c.failed_params_and_tags),
            rejected_metrics: get(&c.rejected_metrics),
            sanitized_keys: get(&c.sanitized_keys),
            reports_sent: get(&c.reports_sent),
            reports_failed: get(&c.reports_failed),
            pending_metrics: get(&c.pending) + queued,
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn record_error(&self, message: &str) {
        let message = self.redact.clean(message);
        *lock(&self.last_error) = Some(message.clone());
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.warn(&format!(
                "MLflow export to {} is failing: {message}. The workflow is not affected; \
                 what cannot be delivered is counted (MlflowTracker::stats).",
                self.config.tracking_uri
            ));
        }
    }

    fn warn(&self, message: &str) {
        if !self.config.warnings {
            return;
        }
        let message = self.redact.clean(message);
        match &self.config.warn_sink {
            Some(sink) => sink(&message),
            None => eprintln!("agent-profiler: {message}"),
        }
    }
}

/// The exporter's waits: interrupted by shutdown, after which requests have a deadline.
struct WorkerPacer<'a> {
    shared: &'a Shared,
    /// Whether to keep back part of the shutdown window (for the run's final status update).
    reserve: bool,
}

impl Pacer for WorkerPacer<'_> {
    fn on_retry(&self, error: &MlflowError) {
        // Shown in the statistics at once; a warning only if delivery fails in the end.
        let message = self.shared.redact.clean(&format!("{error} (retrying)"));
        *lock(&self.shared.last_error) = Some(message);
    }

    fn deadline(&self) -> Option<Instant> {
        self.shared.state().shutdown.map(|(_, deadline, reserve)| {
            if self.reserve {
                deadline.checked_sub(reserve).unwrap_or(deadline)
            } else {
                deadline
            }
        })
    }

    fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let st = self.shared.state();
        let shutting_down = st.shutdown.is_some();
        wait_until(&self.shared.wake, st, until, |st| {
            st.shutdown.is_some() != shutting_down
        });
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
            keys: HashMap::new(),
            calls: Vec::new(),
            flush_seen: 0,
            flush_goal: None,
            next_setup: Instant::now(),
            setup_failures: 0,
            shutting_down: false,
        }
    }

    /// The thread's body: cycles until shutdown, then finishes the run. A bug here must
    /// not leave callers waiting: a panic marks the exporter stopped.
    pub(crate) fn run(self) {
        let shared = self.shared.clone();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.work()));
        if outcome.is_err() {
            shared.record_error("the MLflow exporter thread panicked; nothing more is sent");
            let mut st = shared.state();
            st.stopped = true;
            st.flush_done = st.flush_requested;
            drop(st);
            shared.progress.notify_all();
        }
    }

    fn work(mut self) {
        let mut first = true;
        loop {
            let shutdown = if first { None } else { self.wait() };
            first = false;
            self.shutting_down = shutdown.is_some();
            self.cycle();
            if let Some((status, _, _)) = shutdown {
                self.finish(status);
                break;
            }
        }
    }

    fn wait(&mut self) -> Option<(RunStatus, Instant, Duration)> {
        let shared = self.shared.clone();
        let until = deadline_after(shared.config.flush_interval);
        let mut st = shared.state();
        loop {
            if st.shutdown.is_some() {
                return st.shutdown;
            }
            if st.flush_requested > self.flush_seen || !st.control.is_empty() {
                return None;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = shared
                .wake
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn pacer(&self) -> WorkerPacer<'_> {
        WorkerPacer {
            shared: &self.shared,
            reserve: true,
        }
    }

    fn cycle(&mut self) {
        self.collect();
        if self.run.is_none() && !self.try_setup() {
            self.check_flush();
            return;
        }
        while self.send_controls() && self.send_metrics() {}
        self.check_flush();
    }

    fn publish_pending(&self) {
        self.shared
            .counters
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    fn enqueue(&mut self, metric: QueuedMetric) {
        if self.pending.len() >= self.shared.config.queue_capacity {
            add(&self.shared.counters.dropped, 1);
        } else {
            self.pending.push_back(metric);
            self.pushed += 1;
        }
    }

    /// Moves per-call records and queued items into the worker.
    fn collect(&mut self) {
        let requested = self.shared.state().flush_requested;
        if self.pending.len() < self.shared.config.queue_capacity {
            {
                let analyzers = lock(&self.shared.analyzers);
                for attached in analyzers.iter().filter(|a| a.frozen.is_none()) {
                    attached.analyzer.drain_calls(&mut self.calls);
                }
            }
            let mut calls = std::mem::take(&mut self.calls);
            for call in calls.drain(..) {
                let key = match self.keys.get(&call.node_id) {
                    Some(key) => key.clone(),
                    None => {
                        let key = self.shared.make_key(&call.node_id, "duration_ms");
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
                    None => add(&self.shared.counters.rejected_metrics, 1),
                }
            }
            self.calls = calls;
        }
        let (metrics, controls) = {
            let mut st = self.shared.state();
            (
                std::mem::take(&mut st.metrics),
                std::mem::take(&mut st.control),
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
            let mut st = self.shared.state();
            st.flush_done = st.flush_done.max(request);
            drop(st);
            self.shared.progress.notify_all();
        }
    }

    fn try_setup(&mut self) -> bool {
        if !self.shutting_down && Instant::now() < self.next_setup {
            return false;
        }
        if self.client.is_none() {
            match MlflowClient::new(&self.shared.config) {
                Ok(client) => {
                    self.client = Some(client.with_retry_counter(self.shared.retries.clone()))
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
        let result = setup(&client, &self.shared.config, &self.pacer());
        match result {
            Ok(info) => {
                self.run = Some(info.clone());
                let _ = self.shared.run.set(info);
                let _st = self.shared.state();
                self.shared.progress.notify_all();
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
        while let Some(front) = self.controls.front() {
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
                    Ok(()) => add(&self.shared.counters.reports_sent, 1),
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
                        add(&self.shared.counters.reports_failed, 1);
                        self.shared
                            .record_error(&format!("bottleneck report not delivered: {e}"));
                    }
                }
                continue;
            }
            // A run of params and tags: one batch (split when the server refuses it).
            let mut items = Vec::new();
            while let Some(Control::Param(_) | Control::Tag(_)) = self.controls.front() {
                if items.len() >= super::keys::MAX_PARAMS_PER_BATCH {
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
                Control::Report { .. } => {}
            }
        }
        match client.log_batch_body(&body.body(), &self.pacer()) {
            Ok(()) => {
                add(&self.shared.counters.sent_params, params);
                add(&self.shared.counters.sent_tags, tags);
                add(&self.shared.counters.sent_batches, 1);
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
                add(&self.shared.counters.failed_params_and_tags, 1);
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
        let stats = self.shared.stats();
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
            if stats.anything_lost() {
                body.push_tag("export_lost", &stats.to_string());
            }
            client.log_batch_body(&body.body(), &self.pacer())?;
            add(&self.shared.counters.sent_batches, 1);
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
        let c = &self.shared.counters;
        match result {
            Ok(()) => {
                self.pending.drain(..count);
                self.handled += count as u64;
                add(&c.sent_metrics, count as u64);
                add(&c.sent_batches, 1);
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
                add(&c.failed_metrics, count as u64);
                add(&c.failed_batches, 1);
                self.shared.record_error(&e.to_string());
                Ok(())
            }
        }
    }

    /// After the last cycle: counts what was not delivered, ends the run, stops.
    fn finish(&mut self, status: RunStatus) {
        let c = &self.shared.counters;
        let left = self.pending.len() as u64;
        if left > 0 {
            add(&c.failed_metrics, left);
            add(
                &c.failed_batches,
                left.div_ceil(MAX_METRICS_PER_BATCH as u64),
            );
            self.handled += left;
            self.pending.clear();
        }
        for item in self.controls.drain(..) {
            match item {
                Control::Report { .. } => add(&c.reports_failed, 1),
                Control::Param(_) | Control::Tag(_) => add(&c.failed_params_and_tags, 1),
            }
        }
        self.publish_pending();
        if left > 0 {
            self.shared.record_error(&format!(
                "{left} metrics were not delivered before the shutdown deadline"
            ));
        }
        if let (Some(client), Some(run)) = (self.client.clone(), self.run.clone()) {
            let pacer = WorkerPacer {
                shared: &self.shared,
                reserve: false,
            };
            if let Err(e) = client.update_run_with(&run.run_id, status, Some(now_ms()), &pacer) {
                self.shared.record_error(&format!(
                    "cannot set the run's status to {}: {e}",
                    status.as_str()
                ));
            }
        }
        // Stop reading the analyzers: later calls are neither kept nor counted as dropped.
        {
            let mut analyzers = lock(&self.shared.analyzers);
            for a in analyzers.iter_mut() {
                a.analyzer.disable_call_export();
                let mut rest = Vec::new();
                a.analyzer.drain_calls(&mut rest);
                let dropped = a.analyzer.dropped_calls().saturating_sub(a.baseline);
                a.frozen = Some(dropped + rest.len() as u64);
            }
        }
        let stats = self.shared.stats();
        if stats.anything_lost() {
            self.shared
                .warn(&format!("MLflow export finished with losses: {stats}"));
        }
        let mut st = self.shared.state();
        let late = st.metrics.len() as u64;
        add(&c.dropped, late);
        st.metrics.clear();
        st.stopped = true;
        st.flush_done = st.flush_requested;
        drop(st);
        self.shared.progress.notify_all();
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
