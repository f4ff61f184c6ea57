//! `BottleneckAnalyzer`: gathers every thread's counters into per-node timings, the slowest
//! node and the bottlenecks.
//!
//! The analysis rules (the contract of [`BottleneckAnalyzer::get_slowest_node`],
//! [`BottleneckAnalyzer::get_bottlenecks`] and [`BottleneckAnalyzer::get_summary`]) are
//! written out on [`BottleneckAnalyzer`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::clock::{self, Conversion};
use crate::cost::{CostBreakdown, CostInfo};
use crate::export::{CallRecord, DEFAULT_RING_CAPACITY, ExportState};
use crate::histogram::Histogram;
use crate::llm::NodeLlm;
use crate::metrics::{MetricsSnapshot, ModelCosts, RecentRing, RecentTimings, SecondsHistogram};
use crate::node_id::{NodeIdError, check_node_id};
use crate::outcome::Outcome;
use crate::shard::{Shard, Shared};
use crate::site::CallSite;
use crate::stats::{Call, Stats};
use crate::summary::{NodeCostShare, NodeShare, NodeTimings, OutcomeCounts, Summary, percent};
use crate::trace::{self, Span, Trace, TraceBuffer};

/// Every live analyzer by id, for the one cold path that has only an id: an async node that
/// finishes on another thread than the one it started on.
static LIVE: Mutex<Vec<(u64, Weak<Inner>)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Refreshes the shards of every live analyzer (after the process-wide switch moved).
pub(crate) fn refresh_all_flags() {
    let live: Vec<Arc<Inner>> = LIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(_, inner)| inner.upgrade())
        .collect();
    for inner in live {
        inner.refresh_flags();
    }
}

/// The analyzer with id `id`, if it still exists.
pub(crate) fn find_analyzer(id: u64) -> Option<Arc<Inner>> {
    LIVE.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|(live, _)| *live == id)
        .and_then(|(_, inner)| inner.upgrade())
}

/// The default bottleneck threshold: a node is a bottleneck above half of the total time.
pub const DEFAULT_THRESHOLD_PERCENT: f64 = 50.0;

/// Collects node timings and finds the slowest node and the bottlenecks.
///
/// Cheap to clone (clones share the same data) and usable from many threads. Profiled calls
/// record into the analyzer installed on their thread ([`set_profiler`](crate::set_profiler));
/// [`record_node`](Self::record_node) records by hand.
///
/// # The analysis rules
///
/// Each node has a *total* (inclusive) time, the sum of its calls' durations, nested profiled
/// calls included, and a *self* (exclusive) time, the total less the time of the profiled
/// calls nested inside it. Without nesting the two are equal.
///
/// - **Slowest node** ([`get_slowest_node`](Self::get_slowest_node)): the node with the
///   highest *total* duration, not the highest average: a node called twice for 100 and
///   150 ms (250 ms) is slower than one called once for 200 ms. On a tie, the node called
///   first. Nodes with LLM cost but no timed call are not candidates.
/// - **Total time** ([`Summary::total_time_ms`]): the sum of every node's *self* time, so that
///   nested time is counted once. Without nesting it equals the sum of the totals.
/// - **Share** ([`NodeShare::percent_of_total`]): a node's *self* time as a percentage of
///   that total time (0 when the total is 0). The shares add up to 100.
/// - **Bottleneck** ([`get_bottlenecks`](Self::get_bottlenecks)): a node whose share is
///   *strictly greater* than the threshold ([`DEFAULT_THRESHOLD_PERCENT`], 50, in
///   [`get_summary`](Self::get_summary)), listed largest share first (equal shares in the
///   order of first call). A single node has 100%, so it is a bottleneck at 50 but not at
///   100; a threshold of 0 returns every node with non-zero self time.
/// - **Zero durations**: a node recorded with 0 ms is a node (it is in
///   [`get_timings`](Self::get_timings) and in [`Summary::node_count`]) and never a
///   bottleneck, whatever the threshold.
/// - **Nothing recorded**: no bottlenecks (an empty list), no slowest node (`None`), and a
///   summary of zeros.
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("fast", 50.0).unwrap();
/// analyzer.record_node("slow", 450.0).unwrap();
/// let bottlenecks = analyzer.get_bottlenecks(50.0);
/// assert_eq!(bottlenecks.len(), 1);
/// assert_eq!(bottlenecks[0].node_id, "slow");
/// assert_eq!(bottlenecks[0].percent_of_total, 90.0);
///
/// // Slowest is the highest total, not the highest average: 100 + 150 ms beat 200 ms.
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("retry", 100.0).unwrap();
/// analyzer.record_node("retry", 150.0).unwrap();
/// analyzer.record_node("once", 200.0).unwrap();
/// let slowest = analyzer.get_slowest_node().unwrap();
/// assert_eq!((slowest.node_id.as_str(), slowest.total_duration_ms), ("retry", 250.0));
/// assert_eq!(analyzer.get_summary().total_time_ms, 450.0);
///
/// // A share must be strictly above the threshold: a lone node (100%) is a bottleneck at 50,
/// // not at 100; a zero-duration node is a node but never a bottleneck, even at 0.
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("solo", 80.0).unwrap();
/// analyzer.record_node("instant", 0.0).unwrap();
/// assert_eq!(analyzer.get_bottlenecks(50.0)[0].percent_of_total, 100.0);
/// assert!(analyzer.get_bottlenecks(100.0).is_empty());
/// let at_zero = analyzer.get_bottlenecks(0.0);
/// assert_eq!(at_zero.len(), 1);
/// assert_eq!(analyzer.get_summary().node_count, 2);
///
/// // Nothing recorded: an empty list, no slowest node, zeros.
/// let empty = BottleneckAnalyzer::new();
/// assert!(empty.get_bottlenecks(0.0).is_empty());
/// assert!(empty.get_slowest_node().is_none());
/// assert_eq!((empty.get_summary().total_time_ms, empty.get_summary().node_count), (0.0, 0));
/// ```
///
/// [`Summary::total_time_ms`]: crate::Summary::total_time_ms
/// [`Summary::node_count`]: crate::Summary::node_count
/// [`NodeShare::percent_of_total`]: crate::NodeShare::percent_of_total
#[derive(Clone)]
pub struct BottleneckAnalyzer {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    shared: Arc<Shared>,
    registry: Mutex<Registry>,
    /// Calls recorded with `record_node`, in nanoseconds and Unix nanoseconds.
    manual: Mutex<HashMap<String, Stats>>,
    /// LLM tokens and cost per node ([`BottleneckAnalyzer::record_cost`]). Written once per
    /// LLM call, far from the timing hot path, so a lock is fine.
    costs: Mutex<HashMap<String, NodeCost>>,
    /// Per-call records on their way to exporters (see [`BottleneckAnalyzer::drain_calls`]).
    /// Locked after `registry` when both are held.
    export: Mutex<ExportState>,
    /// The lifetime counters at the last [`BottleneckAnalyzer::reset`], which the analysis
    /// subtracts (shards are written by their owners only, so they cannot be zeroed).
    baseline: Mutex<Option<Arc<Baseline>>>,
    /// The last snapshot [`BottleneckAnalyzer::metrics`] gave, below which no later one goes.
    published: Mutex<MetricsSnapshot>,
    /// Cumulative samples for [`BottleneckAnalyzer::recent_timings`].
    recent: Mutex<RecentRing>,
    /// How many [`LifetimeMetrics`](crate::metrics::LifetimeMetrics) hold a handle to it:
    /// when they hold every handle, the run is over and they may read it a last time.
    watchers: AtomicUsize,
}

/// What the analysis subtracts after a [`BottleneckAnalyzer::reset`]: every counter as it
/// was then.
#[derive(Default)]
struct Baseline {
    /// The reset on the profiler's clock (for the shards' counters, in ticks) and in Unix
    /// nanoseconds (for the calls recorded by hand, and the trace).
    tick: u64,
    unix_ns: u64,
    /// Per call site (its address), live and retired shards together, in ticks.
    sites: HashMap<usize, Stats>,
    /// Calls recorded with `record_node`, in nanoseconds.
    manual: HashMap<String, Stats>,
    /// Per node, its LLM record's cumulative figures.
    costs: HashMap<String, CostBaseline>,
}

/// A node's LLM figures at a reset.
#[derive(Clone, Debug, Default)]
struct CostBaseline {
    totals: CostBreakdown,
    llm_ticks: u64,
    tool_ticks: u64,
    tool_calls: u64,
    streamed: u64,
    ttft: Option<Histogram>,
}

impl Baseline {
    fn memory_bytes(&self) -> usize {
        let stats = std::mem::size_of::<Stats>() + HISTOGRAM_BYTES;
        self.sites.capacity() * std::mem::size_of::<(usize, Stats)>()
            + self.sites.len() * HISTOGRAM_BYTES
            + self.manual.capacity() * std::mem::size_of::<(String, Stats)>()
            + self
                .manual
                .keys()
                .map(|k| k.capacity() + stats)
                .sum::<usize>()
            + self.costs.capacity() * std::mem::size_of::<(String, CostBaseline)>()
            + self
                .costs
                .iter()
                .map(|(k, c)| k.capacity() + c.ttft.as_ref().map_or(0, |_| HISTOGRAM_BYTES))
                .sum::<usize>()
    }
}

/// A timed call's start and end on the profiler's clock, and whether its start was counted
/// in its node's calls in flight.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticks {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) counted: bool,
}

/// The LLM calls attributed to one node: the same totals a cost tracker keeps per provider.
#[derive(Clone, Debug, Default)]
struct NodeCost {
    totals: CostBreakdown,
    /// When the first call was recorded, seconds since the Unix epoch.
    first_timestamp: f64,
    /// The timed calls' intervals and times to first token, and the tool calls.
    llm: NodeLlm,
    /// The same calls per provider and model, for scrapers ([`BottleneckAnalyzer::metrics`]).
    models: ModelCosts,
}

impl NodeCost {
    /// A node's record, first seen now.
    fn new() -> Self {
        Self {
            first_timestamp: crate::clock::now_unix_seconds(),
            ..Self::default()
        }
    }

    fn add(&mut self, info: &CostInfo) {
        self.totals.add(info);
        self.models.add(info);
    }

    /// The node's cumulative figures at tick `now`, which a reset at `now` keeps.
    fn baseline(&self, now: u64) -> CostBaseline {
        CostBaseline {
            totals: self.totals.clone(),
            llm_ticks: self.llm.flight.total_ticks_at(now),
            tool_ticks: self.llm.tools.total_ticks_at(now),
            tool_calls: self.llm.tools.calls(),
            streamed: self.llm.streamed,
            ttft: self.models.ttft_histogram(),
        }
    }

    /// Whether anything ended for the node since `base` (all time: `None`); a call only in
    /// flight is not reported.
    fn has_figures(&self, base: Option<&CostBaseline>) -> bool {
        let (calls, tools) = base.map_or((0, 0), |b| {
            (b.totals.calls + b.totals.failed_calls, b.tool_calls)
        });
        self.totals.calls + self.totals.failed_calls > calls || self.llm.tools.calls() > tools
    }

    /// Writes the node's LLM figures since `base` (all time: `None`) into `node`; `now`:
    /// the tick the summary is taken at (calls still in flight count up to it).
    fn apply(
        &self,
        base: Option<&CostBaseline>,
        node: &mut NodeTimings,
        conv: &Conversion,
        now: u64,
    ) {
        let zero = CostBaseline::default();
        let b = base.unwrap_or(&zero);
        let t = &breakdown_since(&self.totals, &b.totals);
        let ms_of_ticks = |ticks| ms(conv.ticks_to_ns(ticks));
        let llm_ticks = self.llm.flight.total_ticks_at(now);
        node.llm_time_ms = ms_of_ticks(llm_ticks.saturating_sub(b.llm_ticks));
        node.own_time_ms = (node.self_duration_ms - node.llm_time_ms).max(0.0);
        node.llm_failed_calls = t.failed_calls;
        node.streamed_calls = self.llm.streamed.saturating_sub(b.streamed);
        match base {
            None => {
                node.ttft_p50_ms = self.llm.ttft_quantile(0.50).map(ms);
                node.ttft_p95_ms = self.llm.ttft_quantile(0.95).map(ms);
            }
            Some(b) => {
                let all = self.models.ttft_histogram().unwrap_or_default();
                let since = match &b.ttft {
                    Some(before) => all.since(before),
                    None => all,
                };
                let quantile = |q| (since.count() > 0).then(|| ms(since.quantile(q)));
                node.ttft_p50_ms = quantile(0.50);
                node.ttft_p95_ms = quantile(0.95);
            }
        }
        node.tool_calls = self.llm.tools.calls().saturating_sub(b.tool_calls);
        let tool_ticks = self.llm.tools.total_ticks_at(now);
        node.tool_time_ms = ms_of_ticks(tool_ticks.saturating_sub(b.tool_ticks));
        node.llm_calls = t.calls;
        node.unpriced_calls = t.unpriced_calls;
        node.cost_usd = t.cost_usd;
        node.input_tokens = t.input_tokens;
        node.output_tokens = t.output_tokens;
        node.total_tokens = t.total_tokens;
        node.cached_input_tokens = t.cached_input_tokens;
        node.cache_creation_input_tokens = t.cache_creation_input_tokens;
        node.reasoning_tokens = t.reasoning_tokens;
    }
}

/// The shards of live threads, and the counts of threads that have exited (in ticks), under
/// one lock so that a summary sees a retiring thread's calls exactly once.
#[derive(Default)]
struct Registry {
    shards: Vec<Arc<Shard>>,
    /// Keyed by the call site's address.
    retired: HashMap<usize, (&'static CallSite, Stats)>,
}

/// A bad argument to [`BottleneckAnalyzer::record_node`] or
/// [`BottleneckAnalyzer::record_cost`]. Nothing is recorded for it, and nothing recorded
/// before is affected.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordError {
    /// The node id is empty.
    EmptyNodeId,
    /// The node id breaks another of the node-id rules ([`check_node_id`](crate::check_node_id)):
    /// a character other than ASCII letters, digits and `_ - . /`, or more than
    /// [`MAX_NODE_ID_LEN`](crate::MAX_NODE_ID_LEN) characters.
    InvalidNodeId {
        /// The rejected id.
        node_id: String,
        /// The rule it breaks; its message is the one every entry point gives.
        reason: NodeIdError,
    },
    /// The duration is negative, NaN or infinite.
    InvalidDuration {
        /// The node the duration was given for.
        node_id: String,
        /// The rejected value.
        duration_ms: f64,
    },
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::EmptyNodeId => std::fmt::Display::fmt(&NodeIdError::Empty, f),
            RecordError::InvalidNodeId { node_id, reason } => {
                write!(f, "cannot record node `{node_id}`: {reason}")
            }
            RecordError::InvalidDuration {
                node_id,
                duration_ms,
            } => write!(
                f,
                "duration {duration_ms} ms for node `{node_id}` is not a finite, non-negative number"
            ),
        }
    }
}

impl std::error::Error for RecordError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RecordError::InvalidNodeId { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// The id checked against the node-id rules, as a [`RecordError`].
fn check_record_id(node_id: &str) -> Result<(), RecordError> {
    check_node_id(node_id).map_err(|reason| match reason {
        NodeIdError::Empty => RecordError::EmptyNodeId,
        reason => RecordError::InvalidNodeId {
            node_id: node_id.to_owned(),
            reason,
        },
    })
}

impl Default for BottleneckAnalyzer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for BottleneckAnalyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BottleneckAnalyzer")
            .field("enabled", &self.is_enabled())
            .finish_non_exhaustive()
    }
}

impl BottleneckAnalyzer {
    /// An empty, enabled analyzer.
    pub fn new() -> Self {
        clock::init();
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let analyzer = Self {
            inner: Arc::new(Inner {
                shared: Arc::new(Shared {
                    id,
                    enabled: AtomicBool::new(true),
                    export: AtomicBool::new(false),
                    ring_capacity: AtomicUsize::new(DEFAULT_RING_CAPACITY),
                    trace: AtomicBool::new(false),
                    trace_buffer: OnceLock::new(),
                }),
                registry: Mutex::new(Registry::default()),
                manual: Mutex::new(HashMap::new()),
                costs: Mutex::new(HashMap::new()),
                export: Mutex::new(ExportState::default()),
                baseline: Mutex::new(None),
                published: Mutex::new(MetricsSnapshot::default()),
                watchers: AtomicUsize::new(0),
                recent: Mutex::new(RecentRing::new(Instant::now())),
            }),
        };
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((id, Arc::downgrade(&analyzer.inner)));
        analyzer
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Whether two handles are the same analyzer.
    pub fn ptr_eq(&self, other: &BottleneckAnalyzer) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// How many handles of this analyzer exist: its clones, and those that threads
    /// ([`set_profiler`](crate::set_profiler)), futures and LLM calls in flight hold to record
    /// into it. An exporter that holds the only one left knows that the analyzer's figures
    /// are final: nothing can be recorded into it any more but an async node already
    /// running, which finishes into it only while a handle exists.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// let clone = analyzer.clone();
    /// assert_eq!(analyzer.handle_count(), 2);
    /// drop(clone);
    /// assert_eq!(analyzer.handle_count(), 1);
    /// ```
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Whether only watchers hold it now (see `watchers`): nothing else can record into it.
    pub(crate) fn only_watched(&self) -> bool {
        Arc::strong_count(&self.inner) <= self.inner.watchers.load(Ordering::Acquire)
    }

    /// One more (`true`) or one fewer watcher holds a handle.
    pub(crate) fn count_watcher(&self, added: bool) {
        match added {
            true => self.inner.watchers.fetch_add(1, Ordering::AcqRel),
            false => self.inner.watchers.fetch_sub(1, Ordering::AcqRel),
        };
    }

    /// Whether the analyzer records: on from [`new`](Self::new), switched by
    /// [`set_enabled`](Self::set_enabled).
    pub fn is_enabled(&self) -> bool {
        self.inner.shared.enabled.load(Ordering::Relaxed)
    }

    /// Turns recording on or off. Disabled, neither profiled calls nor
    /// [`record_node`](Self::record_node) record anything; what was recorded stays.
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.set_flag(|s| &s.enabled, enabled);
    }

    /// Records one call of `node_id` that took `duration_ms` milliseconds.
    ///
    /// # Errors
    /// An id that breaks the node-id rules ([`check_node_id`](crate::check_node_id):
    /// [`RecordError::EmptyNodeId`] when empty, [`RecordError::InvalidNodeId`] otherwise), or a
    /// duration that is negative, NaN or infinite ([`RecordError::InvalidDuration`]), is
    /// refused and records nothing. The id is checked first, also while the analyzer is
    /// disabled.
    ///
    /// ```
    /// use agent_profiler_runtime::{BottleneckAnalyzer, RecordError};
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// assert_eq!(analyzer.record_node("", 1.0), Err(RecordError::EmptyNodeId));
    /// let err = analyzer.record_node("tool:search", 1.0).unwrap_err();
    /// assert!(matches!(err, RecordError::InvalidNodeId { .. }));
    /// assert!(err.to_string().starts_with(
    ///     "cannot record node `tool:search`: the node id contains ':', which is not allowed"
    /// ));
    /// assert!(analyzer.get_timings().is_empty());
    /// ```
    pub fn record_node(&self, node_id: &str, duration_ms: f64) -> Result<(), RecordError> {
        check_record_id(node_id)?;
        if !duration_ms.is_finite() || duration_ms < 0.0 {
            return Err(RecordError::InvalidDuration {
                node_id: node_id.to_owned(),
                duration_ms,
            });
        }
        if !self.is_enabled() {
            return Ok(());
        }
        let duration_ns = (duration_ms * 1e6).round() as u64;
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let call = Call {
            start: end.saturating_sub(duration_ns),
            end,
            self_time: duration_ns,
            busy: duration_ns,
            outcome: Outcome::Ok,
        };
        let mut manual = self.inner.manual();
        match manual.get_mut(node_id) {
            Some(stats) => stats.add(&call),
            None => {
                let mut stats = Stats::default();
                stats.add(&call);
                manual.insert(node_id.to_owned(), stats);
            }
        }
        drop(manual);
        if let Some(buffer) = self.trace_buffer() {
            let (span_id, parent, thread) = trace::manual_span_ids();
            buffer.push_manual(Span {
                span_id,
                parent_span_id: (parent != 0).then_some(parent),
                node_id: node_id.to_owned().into(),
                parent_node_id: crate::context::current_node_id().map(Into::into),
                start_unix_ns: call.start,
                end_unix_ns: call.end,
                busy_ns: duration_ns,
                thread,
                is_async: false,
                outcome: Outcome::Ok,
                llm_calls: Vec::new(),
            });
        }
        if self.inner.shared.export.load(Ordering::Relaxed) {
            let record = CallRecord {
                node_id: node_id.to_owned(),
                duration_ms,
                start_unix_ms: call.start as f64 / 1e6,
                end_unix_ms: call.end as f64 / 1e6,
                outcome: Outcome::Ok,
                call_index: 0,
            };
            self.inner.export_state().keep(record, self.ring_capacity());
        }
        Ok(())
    }

    /// Starts keeping every call one by one for an exporter, besides the totals: each thread
    /// keeps up to `per_thread_capacity` calls until [`drain_calls`](Self::drain_calls) takes
    /// them; beyond that, per-call records are dropped and counted
    /// ([`dropped_calls`](Self::dropped_calls)) while the totals stay exact.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.enable_call_export(1024);
    /// analyzer.record_node("plan", 12.5).unwrap();
    /// let mut calls = Vec::new();
    /// analyzer.drain_calls(&mut calls);
    /// assert_eq!((calls[0].node_id.as_str(), calls[0].duration_ms), ("plan", 12.5));
    /// ```
    pub fn enable_call_export(&self, per_thread_capacity: usize) {
        self.inner
            .shared
            .ring_capacity
            .store(per_thread_capacity.max(1), Ordering::Relaxed);
        self.inner.set_flag(|s| &s.export, true);
    }

    /// Stops keeping calls one by one; what is already kept can still be drained.
    pub fn disable_call_export(&self) {
        self.inner.set_flag(|s| &s.export, false);
    }

    /// Whether calls are kept one by one for an exporter.
    pub fn is_call_export_enabled(&self) -> bool {
        self.inner.shared.export.load(Ordering::Relaxed)
    }

    /// Moves every call kept since the last drain into `out`, in the order they ended, each
    /// numbered with its node's call index; returns how many. Safe to call from any thread
    /// while others record.
    pub fn drain_calls(&self, out: &mut Vec<CallRecord>) -> usize {
        let shards = self.inner.registry().shards.clone();
        self.inner.export_state().drain(&shards, out)
    }

    /// Per-call records that were dropped because an exporter did not drain in time. The
    /// calls themselves are in the totals all the same.
    pub fn dropped_calls(&self) -> u64 {
        let live: u64 = self
            .inner
            .registry()
            .shards
            .iter()
            .map(|s| s.dropped_calls())
            .sum();
        live + self.inner.export_state().dropped()
    }

    /// Starts trace mode: from now on every call is also kept as a [`Span`] (with its
    /// parent, thread, outcome and LLM usage), up to `capacity` spans and polls in all; later
    /// ones are counted in [`Trace::dropped`] and not kept. The buffer is allocated once, at
    /// the first call, with that call's capacity; turning trace mode off and on again keeps
    /// it and what it holds. Off, the call path costs what it costs without trace mode.
    ///
    /// ```
    /// use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerFutureExt, profile_call};
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.enable_trace(100);
    /// let workflow = profile_call("outer", async { profile_call("inner", async {}).await });
    /// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// runtime.block_on(workflow.with_profiler(analyzer.clone()));
    /// let trace = analyzer.trace().unwrap();
    /// let (inner, outer) = (&trace.spans[0], &trace.spans[1]);
    /// assert_eq!(inner.parent_span_id, Some(outer.span_id));
    /// assert_eq!(inner.parent_node_id.as_deref(), Some("outer"));
    /// ```
    pub fn enable_trace(&self, capacity: usize) {
        let id = self.inner.shared.id;
        self.inner
            .shared
            .trace_buffer
            .get_or_init(|| TraceBuffer::new(capacity, id));
        self.inner.set_flag(|s| &s.trace, true);
    }

    /// Stops keeping spans; those kept so far stay readable with [`trace`](Self::trace).
    pub fn disable_trace(&self) {
        self.inner.set_flag(|s| &s.trace, false);
    }

    /// Whether trace mode is on.
    pub fn is_trace_enabled(&self) -> bool {
        self.inner.shared.trace.load(Ordering::Relaxed)
    }

    /// The spans kept so far (a copy), or `None` if trace mode was never turned on. Calls
    /// still running are not in it yet.
    pub fn trace(&self) -> Option<Trace> {
        self.inner
            .shared
            .trace_buffer
            .get()
            .map(TraceBuffer::snapshot)
    }

    /// The trace buffer, while trace mode is on.
    fn trace_buffer(&self) -> Option<&TraceBuffer> {
        if !self.is_trace_enabled() {
            return None;
        }
        self.inner.shared.trace_buffer.get()
    }

    fn ring_capacity(&self) -> usize {
        self.inner.shared.ring_capacity.load(Ordering::Relaxed)
    }

    /// Adds one LLM call's tokens and cost to `node_id`. [`MultiProviderCostTracker::track_call`]
    /// does this for the node running when it is called; call it yourself for calls made
    /// elsewhere. A node with cost but no timing still appears in
    /// [`get_timings`](Self::get_timings), with zero calls.
    ///
    /// ```
    /// use agent_profiler_runtime::{BottleneckAnalyzer, MultiProviderCostTracker, Usage};
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// let tracker = MultiProviderCostTracker::new();
    /// let info = tracker.track_usage("openai", "gpt-4o", Usage::new(1000, 100)).unwrap();
    /// analyzer.record_cost("plan", &info).unwrap();
    /// let node = analyzer.get_node("plan").unwrap();
    /// assert_eq!((node.llm_calls, node.total_tokens), (1, 1100));
    /// assert!((node.cost_usd - 0.0035).abs() < 1e-12);
    /// ```
    ///
    /// [`MultiProviderCostTracker::track_call`]: crate::MultiProviderCostTracker::track_call
    ///
    /// # Errors
    /// An id that breaks the node-id rules is refused, as by
    /// [`record_node`](Self::record_node), and records nothing.
    pub fn record_cost(&self, node_id: &str, info: &CostInfo) -> Result<(), RecordError> {
        check_record_id(node_id)?;
        if !self.is_enabled() {
            return Ok(());
        }
        self.record_llm_call(node_id, info, trace::current_span(), None);
        Ok(())
    }

    /// Adds one LLM call to `node_id` (an id the node-id rules accept) and, in trace mode,
    /// to span `span`; `ticks`: its start and end on the profiler's clock, for a timed call.
    pub(crate) fn record_llm_call(
        &self,
        node_id: &str,
        info: &CostInfo,
        span: u64,
        ticks: Option<Ticks>,
    ) {
        if !self.is_enabled() {
            // A start counted before the analyzer was turned off must still leave the
            // count, or the node's LLM time would stop growing for good.
            if let Some(Ticks { counted: true, .. }) = ticks {
                self.with_node_cost(node_id, |cost| cost.llm.flight.forget(span));
            }
            return;
        }
        if let Some(buffer) = self.trace_buffer() {
            buffer.add_llm_call(span, info);
        }
        self.with_node_cost(node_id, |cost| {
            cost.add(info);
            if let Some(t) = ticks {
                cost.llm.flight.ended(span, t.start, t.end, t.counted);
            }
            if let Some(ttft) = info.timing.as_ref().and_then(|t| t.ttft_ns()) {
                cost.llm.add_ttft(ttft);
            }
        });
    }

    /// A timed LLM call of `node_id` started at `tick`; whether it was counted (the
    /// analyzer is on), which its end must say.
    pub(crate) fn llm_started(&self, node_id: &str, span: u64, tick: u64) -> bool {
        let on = self.is_enabled();
        if on {
            self.with_node_cost(node_id, |cost| cost.llm.flight.started(span, tick));
        }
        on
    }

    /// A tool call of `node_id` started; whether it was counted.
    pub(crate) fn tool_started(&self, node_id: &str, span: u64, tick: u64) -> bool {
        let on = self.is_enabled();
        if on {
            self.with_node_cost(node_id, |cost| cost.llm.tools.started(span, tick));
        }
        on
    }

    /// A tool call of `node_id` ended (see [`Ticks`]).
    pub(crate) fn tool_ended(&self, node_id: &str, span: u64, t: Ticks) {
        let on = self.is_enabled();
        if on || t.counted {
            self.with_node_cost(node_id, |cost| match on {
                true => cost.llm.tools.ended(span, t.start, t.end, t.counted),
                false => cost.llm.tools.forget(span),
            });
        }
    }

    fn with_node_cost(&self, node_id: &str, f: impl FnOnce(&mut NodeCost)) {
        let mut costs = self.inner.costs();
        match costs.get_mut(node_id) {
            Some(cost) => f(cost),
            None => {
                let mut cost = NodeCost::new();
                f(&mut cost);
                costs.insert(node_id.to_owned(), cost);
            }
        }
    }

    /// Every node's timings, in the order of their first call.
    pub fn get_timings(&self) -> Vec<NodeTimings> {
        self.inner.collect()
    }

    /// One node's timings, if it was recorded.
    pub fn get_node(&self, node_id: &str) -> Option<NodeTimings> {
        self.get_timings()
            .into_iter()
            .find(|n| n.node_id == node_id)
    }

    /// Nodes whose share of the total time (their self time over the sum of every node's self
    /// time) is strictly above `threshold_percent`, largest share first. Nodes with zero self
    /// time are never bottlenecks; at threshold 0 every other node is; with nothing recorded
    /// the list is empty. See [the analysis rules](Self#the-analysis-rules).
    pub fn get_bottlenecks(&self, threshold_percent: f64) -> Vec<NodeShare> {
        bottlenecks(&self.get_timings(), threshold_percent)
    }

    /// The node with the highest total (inclusive) duration, not the highest average; on a
    /// tie, the node called first. Its `percent_of_total` is its self-time share, as for a
    /// bottleneck. `None` when no call was recorded.
    pub fn get_slowest_node(&self) -> Option<NodeShare> {
        slowest(&self.get_timings())
    }

    /// Total time (the sum of self times), node count, slowest node and bottlenecks at the
    /// default threshold ([`DEFAULT_THRESHOLD_PERCENT`]), every node, and the LLM cost totals.
    /// With nothing recorded: zeros, `None` and empty lists. Safe to call while other threads
    /// record.
    pub fn get_summary(&self) -> Summary {
        self.get_summary_with_threshold(DEFAULT_THRESHOLD_PERCENT)
    }

    /// [`get_summary`](Self::get_summary) with another bottleneck threshold.
    pub fn get_summary_with_threshold(&self, threshold_percent: f64) -> Summary {
        let nodes = self.get_timings();
        Summary {
            total_time_ms: total_self_ms(&nodes),
            node_count: nodes.len(),
            slowest_node: slowest(&nodes),
            bottlenecks: bottlenecks(&nodes, threshold_percent),
            threshold_percent,
            total_cost_usd: nodes.iter().map(|n| n.cost_usd).sum(),
            total_tokens: nodes.iter().map(|n| n.total_tokens).sum(),
            llm_calls: nodes.iter().map(|n| n.llm_calls).sum(),
            unpriced_calls: nodes.iter().map(|n| n.unpriced_calls).sum(),
            costliest_node: costliest(&nodes),
            nodes,
            critical_path: self.critical_path_since_reset(crate::critical::DEFAULT_SPEEDUP),
        }
    }

    /// The critical path of the spans that started since the last reset (all of them
    /// without one).
    fn critical_path_since_reset(&self, speedup: f64) -> Option<crate::critical::CriticalPath> {
        let Some(baseline) = self.inner.baseline() else {
            return self.critical_path(speedup);
        };
        let mut trace = self.trace()?;
        trace.spans.retain(|s| s.start_unix_ns >= baseline.unix_ns);
        trace.polls.retain(|p| p.start_unix_ns >= baseline.unix_ns);
        if trace.spans.is_empty() {
            return None;
        }
        Some(
            crate::critical::Flow::from_trace(&trace)
                .analyze(crate::critical::PathMethod::Trace, speedup),
        )
    }

    /// Bytes the analyzer holds for its counters. Bounded whatever the number of calls: it
    /// grows as nodes are first called on each thread (in trace mode, also as the first
    /// read counts a node's calls from their spans), as the recent window's ring fills (at
    /// most 24 samples) and with the last published snapshot and reset baseline (one copy of
    /// the counters each), then stays constant.
    pub fn memory_bytes(&self) -> usize {
        let registry = self.inner.registry();
        let shards: usize = registry.shards.iter().map(|s| s.memory_bytes()).sum();
        let retired = registry.retired.capacity() * std::mem::size_of::<(usize, Stats)>()
            + registry.retired.len() * HISTOGRAM_BYTES;
        drop(registry);
        let manual = self.inner.manual();
        let manual_bytes = manual.capacity() * std::mem::size_of::<(String, Stats)>()
            + manual
                .keys()
                .map(|k| k.capacity() + HISTOGRAM_BYTES)
                .sum::<usize>();
        drop(manual);
        let costs = self.inner.costs();
        let cost_bytes = costs.capacity() * std::mem::size_of::<(String, NodeCost)>()
            + costs.keys().map(String::capacity).sum::<usize>()
            + costs
                .values()
                .map(|c| c.llm.memory_bytes() + c.models.memory_bytes())
                .sum::<usize>();
        drop(costs);
        let export = self.inner.export_state().memory_bytes();
        let trace = self
            .inner
            .shared
            .trace_buffer
            .get()
            .map_or(0, TraceBuffer::memory_bytes);
        let baseline = self.inner.baseline().map_or(0, |b| b.memory_bytes());
        let published = crate::metrics::memory_bytes(&self.inner.published());
        let recent = self.inner.recent().memory_bytes();
        std::mem::size_of::<Inner>()
            + shards
            + retired
            + manual_bytes
            + cost_bytes
            + export
            + trace
            + baseline
            + published
            + recent
    }

    /// The analyzer's lifetime counters, for scrapers (Prometheus, OpenTelemetry metrics):
    /// per node, calls by outcome and the duration histogram; per node and LLM model, calls,
    /// failed calls, tokens by type, cost, call durations and times to first token.
    ///
    /// Read on the cold side from every thread's counters, those of exited threads, the
    /// spans that hold their call's counters (trace mode), the calls recorded by hand and
    /// the per-node LLM record: nothing is added to the call
    /// path, and a profiled call never waits for a scrape. Every figure is cumulative over
    /// the analyzer's life, untouched by [`reset`](Self::reset), and never below what an
    /// earlier call returned (see [`metrics`](crate::metrics) for the buckets and that
    /// rule). Each call also feeds [`recent_timings`](Self::recent_timings)' samples.
    pub fn metrics(&self) -> MetricsSnapshot {
        let conv = Conversion::current();
        let lifetime = self.inner.lifetime_nodes(&conv);
        self.inner.recent().observe(Instant::now(), &lifetime);
        let mut snapshot = MetricsSnapshot::default();
        for (id, stats) in &lifetime {
            let node = snapshot.node_entry(id);
            node.calls = OutcomeCounts::from_array(stats.outcomes);
            node.duration = SecondsHistogram::from_ns(&stats.histogram, stats.total);
        }
        let models: Vec<(String, Vec<crate::metrics::ModelMetrics>)> = self
            .inner
            .costs()
            .iter()
            .map(|(id, cost)| (id.clone(), cost.models.metrics().collect::<Vec<_>>()))
            .filter(|(_, models)| !models.is_empty())
            .collect();
        for (id, models) in models {
            let node = snapshot.node_entry(&id);
            for model in models {
                node.model_entry(&model.provider, &model.model).add(&model);
            }
        }
        let mut published = self.inner.published();
        snapshot.at_least(&published);
        published.clone_from(&snapshot);
        snapshot
    }

    /// Starts the analysis afresh from now: [`get_summary`](Self::get_summary),
    /// [`get_timings`](Self::get_timings), [`get_bottlenecks`](Self::get_bottlenecks) and
    /// [`get_slowest_node`](Self::get_slowest_node) show only what ended after the reset,
    /// while the lifetime counters that [`metrics`](Self::metrics) and
    /// [`recent_timings`](Self::recent_timings) read go on growing (a scraper never sees a
    /// counter go backwards).
    ///
    /// Threads write their counters alone, so nothing is zeroed: the reset keeps a copy of
    /// every counter and the analysis subtracts it. What that means for each figure:
    ///
    /// - counts, totals, self and busy time, outcomes, LLM calls, tokens, cost, LLM and tool
    ///   time, percentiles: exactly those of the calls since the reset (a call in flight at
    ///   the reset counts when it ends, and its LLM wait from the reset on);
    /// - `min_duration_ms` and `max_duration_ms`: exact when a call since the reset set a
    ///   new all-time minimum or maximum; otherwise the edges of the histogram buckets that
    ///   hold the calls since the reset, kept within the all-time extremes (within about 6%);
    /// - `duration_ms` and `timestamp` (the last call): exact;
    /// - `first_timestamp`: exact for a node first called after the reset; for one called
    ///   before, the reset itself (the order of nodes in the summary follows it);
    /// - a node without a call since the reset is not in the analysis;
    /// - in trace mode, the critical path is that of the spans that started after the
    ///   reset; [`trace`](Self::trace) itself still returns every span kept.
    ///
    /// Per-call export ([`drain_calls`](Self::drain_calls)) is not affected.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.record_node("plan", 40.0).unwrap();
    /// analyzer.reset();
    /// assert_eq!(analyzer.get_summary().node_count, 0);
    /// analyzer.record_node("act", 10.0).unwrap();
    /// assert_eq!(analyzer.get_summary().total_time_ms, 10.0);
    /// // The lifetime counters still hold both calls.
    /// let metrics = analyzer.metrics();
    /// assert_eq!(metrics.node("plan").unwrap().calls.ok, 1);
    /// assert_eq!(metrics.node("act").unwrap().calls.ok, 1);
    /// ```
    pub fn reset(&self) {
        let tick = clock::now();
        let unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let sites = self
            .inner
            .site_totals()
            .into_iter()
            .map(|(site, stats)| (site_key(site), stats))
            .collect();
        let manual = self.inner.manual().clone();
        let costs = self
            .inner
            .costs()
            .iter()
            .map(|(id, cost)| (id.clone(), cost.baseline(tick)))
            .collect();
        *self
            .inner
            .baseline
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Baseline {
            tick,
            unix_ns,
            sites,
            manual,
            costs,
        }));
    }

    /// Per-node timings of the calls that ended in the last `window` (for a long-lived
    /// analyzer, beside the all-time figures of [`get_timings`](Self::get_timings)):
    /// calls, outcomes, total, mean and percentiles.
    ///
    /// How precise: the analyzer keeps a ring of at most
    /// [`RECENT_SAMPLES`](crate::metrics::RECENT_SAMPLES) cumulative samples of its lifetime
    /// counters, taken on reads of this method and of [`metrics`](Self::metrics) at most
    /// every [`RECENT_SAMPLE_INTERVAL`](crate::metrics::RECENT_SAMPLE_INTERVAL) (15 s),
    /// histograms kept sparse; its first sample is the analyzer's creation. The window
    /// starts at the newest sample at or before `now - window`, so it can be longer than
    /// asked by up to the time between two samples (15 s when read at least that often, as
    /// a Prometheus scrape does), and shorter when the oldest kept sample is younger (the
    /// ring reaches back at least 5 min 45 s once full); [`RecentTimings::window_seconds`]
    /// says which span was covered. Percentiles are bucket midpoints, within 1/16 of the
    /// true value. Memory is bounded whatever the run time: at most `RECENT_SAMPLES` samples
    /// of each node's non-empty buckets (counted by [`memory_bytes`](Self::memory_bytes)).
    /// [`reset`](Self::reset) does not cut the window.
    ///
    /// ```
    /// use std::time::Duration;
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    /// use agent_profiler_runtime::metrics::DEFAULT_RECENT_WINDOW;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.record_node("plan", 12.0).unwrap();
    /// let recent = analyzer.recent_timings(DEFAULT_RECENT_WINDOW);
    /// // A young analyzer: the window covers its whole life so far.
    /// assert!(recent.window_seconds < 300.0);
    /// assert_eq!(recent.nodes[0].call_count, 1);
    /// assert!((recent.nodes[0].p50_duration_ms - 12.0).abs() < 12.0 / 16.0);
    /// ```
    ///
    /// [`RecentTimings::window_seconds`]: crate::metrics::RecentTimings::window_seconds
    pub fn recent_timings(&self, window: Duration) -> RecentTimings {
        self.recent_timings_at(Instant::now(), window)
    }

    /// [`recent_timings`](Self::recent_timings) as read at `now`.
    pub(crate) fn recent_timings_at(&self, now: Instant, window: Duration) -> RecentTimings {
        let lifetime = self.inner.lifetime_nodes(&Conversion::current());
        let mut ring = self.inner.recent();
        ring.observe(now, &lifetime);
        ring.window(now, window, &lifetime)
    }
}

/// A call site's key in the per-site maps: its address (sites are statics).
fn site_key(site: &'static CallSite) -> usize {
    std::ptr::from_ref(site) as usize
}

/// The calls of `now` that are not in `before` (an older copy of the same totals).
fn breakdown_since(now: &CostBreakdown, before: &CostBreakdown) -> CostBreakdown {
    let calls = now.calls.saturating_sub(before.calls);
    CostBreakdown {
        calls,
        unpriced_calls: now.unpriced_calls.saturating_sub(before.unpriced_calls),
        failed_calls: now.failed_calls.saturating_sub(before.failed_calls),
        // No call since: exactly zero, not a rounding residue.
        cost_usd: if calls == 0 {
            0.0
        } else {
            (now.cost_usd - before.cost_usd).max(0.0)
        },
        input_tokens: now.input_tokens.saturating_sub(before.input_tokens),
        output_tokens: now.output_tokens.saturating_sub(before.output_tokens),
        total_tokens: now.total_tokens.saturating_sub(before.total_tokens),
        cached_input_tokens: now
            .cached_input_tokens
            .saturating_sub(before.cached_input_tokens),
        cache_creation_input_tokens: now
            .cache_creation_input_tokens
            .saturating_sub(before.cache_creation_input_tokens),
        reasoning_tokens: now.reasoning_tokens.saturating_sub(before.reasoning_tokens),
    }
}

const HISTOGRAM_BYTES: usize = crate::histogram::BUCKETS * std::mem::size_of::<u64>();

impl Drop for Inner {
    fn drop(&mut self) {
        let id = self.shared.id;
        LIVE.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(live, _)| *live != id);
    }
}

impl Inner {
    /// A new shard of this analyzer for the calling thread.
    pub(crate) fn register_shard(this: &Arc<Inner>) -> Arc<Shard> {
        // Made under the registry lock, so that it copies flags no `set_flag` is changing.
        let mut registry = this.registry();
        let shard = Arc::new(Shard::new(this.shared.clone(), Arc::downgrade(this)));
        registry.shards.push(shard.clone());
        shard
    }

    /// Sets a flag in `shared`, then refreshes every shard's copies, under the registry lock.
    fn set_flag(&self, flag: impl Fn(&Shared) -> &AtomicBool, value: bool) {
        let registry = self.registry();
        flag(&self.shared).store(value, Ordering::Relaxed);
        for shard in &registry.shards {
            shard.copy_flags();
        }
    }

    /// Refreshes every shard's copies of the flags (after the process-wide switch moved).
    pub(crate) fn refresh_flags(&self) {
        for shard in &self.registry().shards {
            shard.copy_flags();
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn export_state(&self) -> std::sync::MutexGuard<'_, ExportState> {
        self.export.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn manual(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stats>> {
        self.manual.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn costs(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeCost>> {
        self.costs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn baseline(&self) -> Option<Arc<Baseline>> {
        self.baseline
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn published(&self) -> MutexGuard<'_, MetricsSnapshot> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn recent(&self) -> MutexGuard<'_, RecentRing> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Each call site's counters, live and retired shards and the spans that hold calls'
    /// counters (trace mode) added up, in ticks.
    fn site_totals(&self) -> Vec<(&'static CallSite, Stats)> {
        let registry = self.registry();
        let mut by_site: HashMap<usize, (&'static CallSite, Stats)> = HashMap::new();
        let live = registry.shards.iter().flat_map(|s| s.snapshot());
        let retired = registry
            .retired
            .values()
            .map(|(site, s)| (*site, s.clone()));
        let mut add = |site: &'static CallSite, stats: &Stats| {
            by_site
                .entry(site_key(site))
                .or_insert_with(|| (site, Stats::default()))
                .1
                .merge(stats);
        };
        for (site, raw) in live.chain(retired) {
            add(site, &raw);
        }
        // Released before the spans are counted, which may take a while after a long run: a
        // call is counted either in a shard or in its span, never moves from one to the
        // other, and each only grows, so the sum stays exact and never goes backwards.
        drop(registry);
        // Sync calls whose span holds their counters (trace mode) are counted only there.
        if let Some(buffer) = self.shared.trace_buffer.get() {
            buffer.counted_calls(&mut add);
        }
        by_site.into_values().collect()
    }

    /// Every node's lifetime counters (nanoseconds), by node id: what scrapers read.
    fn lifetime_nodes(&self, conv: &Conversion) -> Vec<(String, Stats)> {
        let mut by_id: BTreeMap<String, Stats> = BTreeMap::new();
        for (site, raw) in self.site_totals() {
            if raw.calls > 0 {
                by_id
                    .entry(site.id().to_owned())
                    .or_default()
                    .merge(&raw.converted(conv));
            }
        }
        for (id, stats) in self.manual().iter() {
            by_id.entry(id.clone()).or_default().merge(stats);
        }
        by_id.into_iter().collect()
    }

    /// Folds an exiting thread's shard into the retired totals. Called on that thread.
    pub(crate) fn retire_shard(&self, shard: &Arc<Shard>) {
        let mut registry = self.registry();
        let Some(position) = registry.shards.iter().position(|s| Arc::ptr_eq(s, shard)) else {
            return;
        };
        registry.shards.swap_remove(position);
        if let Some(buffer) = self.shared.trace_buffer.get() {
            // The exiting thread's run of slots: it holds them, on this thread.
            buffer.close_run(&shard.trace_run);
        }
        let capacity = self.shared.ring_capacity.load(Ordering::Relaxed);
        self.export_state().keep_ring_of(shard, capacity);
        for (site, stats) in shard.snapshot() {
            registry
                .retired
                .entry(std::ptr::from_ref(site) as usize)
                .or_insert_with(|| (site, Stats::default()))
                .1
                .merge(&stats);
        }
    }

    /// Every node's counters since the last reset (all time without one), converted and
    /// merged by node id.
    fn collect(&self) -> Vec<NodeTimings> {
        let conv = Conversion::current();
        let baseline = self.baseline();
        let empty = Stats::default();
        let mut by_id: BTreeMap<String, (Stats, bool)> = BTreeMap::new();
        let mut add = |id: &str, stats: &Stats, is_async: bool| {
            let entry = by_id.entry(id.to_owned()).or_default();
            entry.0.merge(stats);
            entry.1 |= is_async;
        };
        for (site, raw) in self.site_totals() {
            let raw = match &baseline {
                Some(b) => raw.since(b.sites.get(&site_key(site)).unwrap_or(&empty), b.tick),
                None => raw,
            };
            if raw.calls > 0 {
                add(site.id(), &raw.converted(&conv), site.is_async());
            }
        }
        for (id, stats) in self.manual().iter() {
            match &baseline {
                Some(b) => add(
                    id,
                    &stats.since(b.manual.get(id).unwrap_or(&empty), b.unix_ns),
                    false,
                ),
                None => add(id, stats, false),
            }
        }
        by_id.retain(|_, (stats, _)| stats.calls > 0);
        let mut costs = self.costs().clone();
        let now = clock::now();
        let cost_base = |id: &str| baseline.as_ref().and_then(|b| b.costs.get(id));
        // After a reset, a node's LLM record counts from the reset even if it had none then.
        let zero = CostBaseline::default();
        let base_of = |id: &str| match &baseline {
            Some(_) => Some(cost_base(id).unwrap_or(&zero)),
            None => None,
        };
        let mut nodes: Vec<NodeTimings> = by_id
            .into_iter()
            .map(|(id, (stats, is_async))| {
                let mut node = timings(id, &stats, is_async);
                if let Some(cost) = costs.remove(&node.node_id) {
                    cost.apply(base_of(&node.node_id), &mut node, &conv, now);
                }
                node
            })
            .collect();
        // Nodes that made LLM calls but have no timing (yet): still reported, once a call
        // of theirs ended.
        for (id, cost) in costs {
            let base = base_of(&id);
            if !cost.has_figures(base) {
                continue;
            }
            let mut node = timings(id, &Stats::default(), false);
            node.first_timestamp = match &baseline {
                Some(b) => cost.first_timestamp.max(seconds(b.unix_ns)),
                None => cost.first_timestamp,
            };
            cost.apply(base, &mut node, &conv, now);
            nodes.push(node);
        }
        nodes.sort_by(|a, b| {
            a.first_timestamp
                .total_cmp(&b.first_timestamp)
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        nodes
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn seconds(unix_ns: u64) -> f64 {
    unix_ns as f64 / 1e9
}

/// One node's report from its merged counters (nanoseconds).
fn timings(node_id: String, stats: &Stats, is_async: bool) -> NodeTimings {
    let calls = stats.calls.max(1) as f64;
    // A bucket midpoint can fall outside what was seen; the true extremes bound it.
    let quantile = |q| {
        let value = stats.histogram.quantile(q);
        // `min <= max` always holds for recorded calls; checked so that a torn read can
        // never make `clamp` panic.
        ms(if stats.min <= stats.max {
            value.clamp(stats.min, stats.max)
        } else {
            value
        })
    };
    NodeTimings {
        node_id,
        duration_ms: ms(stats.last),
        timestamp: seconds(stats.last_end),
        call_count: stats.calls,
        total_duration_ms: ms(stats.total),
        avg_duration_ms: ms(stats.total) / calls,
        self_duration_ms: ms(stats.self_total),
        busy_duration_ms: ms(stats.busy),
        min_duration_ms: ms(stats.min),
        max_duration_ms: ms(stats.max),
        p50_duration_ms: quantile(0.50),
        p95_duration_ms: quantile(0.95),
        p99_duration_ms: quantile(0.99),
        outcomes: OutcomeCounts::from_array(stats.outcomes),
        first_timestamp: seconds(stats.first_start),
        is_async,
        llm_calls: 0,
        unpriced_calls: 0,
        cost_usd: 0.0,
        input_tokens: 0,
        output_tokens: 0,
        total_tokens: 0,
        cached_input_tokens: 0,
        cache_creation_input_tokens: 0,
        reasoning_tokens: 0,
        llm_failed_calls: 0,
        llm_time_ms: 0.0,
        own_time_ms: ms(stats.self_total),
        streamed_calls: 0,
        ttft_p50_ms: None,
        ttft_p95_ms: None,
        tool_calls: 0,
        tool_time_ms: 0.0,
    }
}

/// The total time: every node's self time, so that nested time counts once.
fn total_self_ms(nodes: &[NodeTimings]) -> f64 {
    nodes.iter().map(|n| n.self_duration_ms).sum()
}

/// A node's figures with its share: its self time over the total (0 when the total is 0).
fn share(node: &NodeTimings, total_ms: f64) -> NodeShare {
    NodeShare {
        node_id: node.node_id.clone(),
        total_duration_ms: node.total_duration_ms,
        avg_duration_ms: node.avg_duration_ms,
        call_count: node.call_count,
        percent_of_total: percent(node.self_duration_ms, total_ms),
        self_duration_ms: node.self_duration_ms,
    }
}

/// Shares strictly above the threshold, of nodes with self time; largest first, and equal
/// shares in the order of first call (the sort is stable).
fn bottlenecks(nodes: &[NodeTimings], threshold_percent: f64) -> Vec<NodeShare> {
    let total = total_self_ms(nodes);
    let mut found: Vec<NodeShare> = nodes
        .iter()
        .map(|n| share(n, total))
        .filter(|s| s.self_duration_ms > 0.0 && s.percent_of_total > threshold_percent)
        .collect();
    found.sort_by(|a, b| b.percent_of_total.total_cmp(&a.percent_of_total));
    found
}

/// Highest total duration; on a tie, the node called first. Nodes with LLM cost but no
/// timed call are not candidates.
fn slowest(nodes: &[NodeTimings]) -> Option<NodeShare> {
    let total = total_self_ms(nodes);
    let timed = nodes.iter().filter(|n| n.call_count > 0);
    first_highest(timed, |n| n.total_duration_ms).map(|n| share(n, total))
}

/// Highest priced LLM cost; on a tie, the node called first. `None` when no node has a
/// cost above zero.
fn costliest(nodes: &[NodeTimings]) -> Option<NodeCostShare> {
    let total: f64 = nodes.iter().map(|n| n.cost_usd).sum();
    let priced = nodes.iter().filter(|n| n.cost_usd > 0.0);
    first_highest(priced, |n| n.cost_usd).map(|n| NodeCostShare {
        node_id: n.node_id.clone(),
        cost_usd: n.cost_usd,
        percent_of_cost: percent(n.cost_usd, total),
        llm_calls: n.llm_calls,
        unpriced_calls: n.unpriced_calls,
        total_tokens: n.total_tokens,
    })
}

/// The first of `nodes` with the highest `key`: a later node wins only with a strictly
/// higher one, so ties go to the node called first.
fn first_highest<'a>(
    nodes: impl Iterator<Item = &'a NodeTimings>,
    key: impl Fn(&NodeTimings) -> f64,
) -> Option<&'a NodeTimings> {
    nodes.fold(None, |best, n| match best {
        Some(b) if key(b) >= key(n) => Some(b),
        _ => Some(n),
    })
}
