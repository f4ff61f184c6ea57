//! What scrapers read: the analyzer's lifetime counters as a [`MetricsSnapshot`]
//! ([`BottleneckAnalyzer::metrics`]), and percentiles over a recent window
//! ([`BottleneckAnalyzer::recent_timings`]).
//!
//! Everything here is read on the cold side, when a scraper asks: from every thread's
//! counters, the counters of threads that have exited, the calls recorded by hand and the
//! per-node LLM record. Nothing is added to the call path.
//!
//! # Counters that never go backwards
//!
//! Every figure of a snapshot is cumulative over the analyzer's life:
//! [`reset`](BottleneckAnalyzer::reset) starts the analysis afresh but leaves these alone,
//! and each snapshot of one analyzer is at least the one before it, series by series (a call
//! being recorded while a snapshot is read may show in one counter before another; the
//! snapshot never shows less than an earlier one did, and the figures are exact once the
//! call is recorded).
//!
//! # Histogram buckets
//!
//! Every histogram of a snapshot (node durations, LLM call durations, times to first token)
//! has the same fixed upper bounds, [`HISTOGRAM_BOUNDS_SECONDS`]: two per power of two,
//! `2^k` and `1.5 * 2^k` nanoseconds, from 1.024 µs (2^10 ns) to 137.4 s (2^37 ns), 55
//! bounds and the implicit `+Inf`. They never change over time, so Prometheus' `rate` and
//! `histogram_quantile` work across scrapes and restarts, and each is an edge of the
//! analyzer's own log-linear buckets (8 per power of two), so the cumulative count at a
//! bound is not interpolated: it is exact for durations kept in nanoseconds (`record_node`,
//! LLM timings, and every call where the clock is `Instant`). Where the clock is the raw
//! TSC, calls are kept in ticks and their buckets are converted to nanoseconds when read, so
//! a call within one of the analyzer's fine buckets (about 6%) of a bound may be counted on
//! its other side. A bucket counts the durations *below* its bound in
//! whole nanoseconds: a call of exactly `2^k` ns counts in the next bucket, a difference
//! of one nanosecond from Prometheus' "less or equal". A quantile read back from these
//! buckets is known to within its bucket, whose width is at most half its lower bound (the
//! analyzer's own percentiles, from its finer buckets, are within 1/16).
//!
//! [`BottleneckAnalyzer::metrics`]: crate::BottleneckAnalyzer::metrics
//! [`BottleneckAnalyzer::recent_timings`]: crate::BottleneckAnalyzer::recent_timings
//! [`BottleneckAnalyzer`]: crate::BottleneckAnalyzer

mod lifetime;
mod models;
mod recent;

use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::summary::OutcomeCounts;

pub use lifetime::{LifetimeMetrics, MAX_MODELS};
pub(crate) use models::ModelCosts;
pub(crate) use recent::RecentRing;
pub use recent::{
    DEFAULT_RECENT_WINDOW, RECENT_SAMPLE_INTERVAL, RECENT_SAMPLES, RecentNode, RecentTimings,
};

#[cfg(doc)]
use crate::BottleneckAnalyzer;

/// LLM models with a record of their own per node; the calls of any further model of that
/// node are counted under provider and model [`OTHER_MODEL`], so memory stays bounded
/// whatever names the calls bring.
pub const MAX_MODELS_PER_NODE: usize = 16;

/// The provider and model under which a node's calls of models beyond
/// [`MAX_MODELS_PER_NODE`] are counted.
pub const OTHER_MODEL: &str = "_other";

/// The smallest bound is 2^MIN_EXP ns, the largest 2^MAX_EXP ns.
const MIN_EXP: u32 = 10;
const MAX_EXP: u32 = 37;
const BOUND_COUNT: usize = 2 * (MAX_EXP - MIN_EXP) as usize + 1;

const fn bounds_ns() -> [u64; BOUND_COUNT] {
    let mut out = [0; BOUND_COUNT];
    let (mut i, mut k) = (0, MIN_EXP);
    while k < MAX_EXP {
        out[i] = 1 << k;
        out[i + 1] = 3 << (k - 1);
        i += 2;
        k += 1;
    }
    out[i] = 1 << MAX_EXP;
    out
}

const fn bounds_seconds() -> [f64; BOUND_COUNT] {
    let mut out = [0.0; BOUND_COUNT];
    let mut i = 0;
    while i < BOUND_COUNT {
        out[i] = BOUNDS_NS_ARRAY[i] as f64 / 1e9;
        i += 1;
    }
    out
}

const BOUNDS_NS_ARRAY: [u64; BOUND_COUNT] = bounds_ns();
const BOUNDS_SECONDS_ARRAY: [f64; BOUND_COUNT] = bounds_seconds();

/// The upper bounds of every histogram bucket in a snapshot, nanoseconds (see
/// [the module docs](self#histogram-buckets)).
pub const HISTOGRAM_BOUNDS_NS: &[u64] = &BOUNDS_NS_ARRAY;

/// The same bounds in seconds, the unit Prometheus and OpenTelemetry expect:
/// `0.000001024, 0.000001536, 0.000002048, ..., 137.438953472`.
///
/// ```
/// use agent_profiler_runtime::metrics::HISTOGRAM_BOUNDS_SECONDS;
///
/// assert_eq!(HISTOGRAM_BOUNDS_SECONDS.len(), 55);
/// assert_eq!(HISTOGRAM_BOUNDS_SECONDS[0], 1.024e-6);
/// assert_eq!(HISTOGRAM_BOUNDS_SECONDS[1], 1.536e-6);
/// assert_eq!(*HISTOGRAM_BOUNDS_SECONDS.last().unwrap(), 137.438953472);
/// ```
pub const HISTOGRAM_BOUNDS_SECONDS: &[f64] = &BOUNDS_SECONDS_ARRAY;

/// The analyzer's lifetime counters at one moment: per node, calls by outcome and the
/// duration histogram; per node and LLM model, calls, tokens, cost and timings. See
/// [`BottleneckAnalyzer::metrics`] and [the module docs](self).
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, MultiProviderCostTracker, Usage};
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("plan", 3.0).unwrap();
/// let tracker = MultiProviderCostTracker::new();
/// let info = tracker.track_usage("openai", "gpt-4o", Usage::new(1000, 100)).unwrap();
/// analyzer.record_cost("plan", &info).unwrap();
///
/// let snapshot = analyzer.metrics();
/// let plan = snapshot.node("plan").unwrap();
/// assert_eq!(plan.calls.ok, 1);
/// assert_eq!(plan.duration.count, 1);
/// assert!((plan.duration.sum_seconds - 0.003).abs() < 1e-9);
/// let model = &plan.llm[0];
/// assert_eq!((model.provider.as_str(), model.model.as_str()), ("openai", "gpt-4o"));
/// assert_eq!((model.calls, model.tokens.input, model.tokens.output), (1, 1000, 100));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Every node with a call or an LLM call, by node id.
    pub nodes: Vec<NodeMetrics>,
}

/// One node's lifetime counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeMetrics {
    /// The node id.
    pub node_id: String,
    /// Calls by how they ended.
    pub calls: OutcomeCounts,
    /// The calls' wall time (inclusive of nested profiled calls).
    pub duration: SecondsHistogram,
    /// LLM calls made in the node, per provider and model, sorted by provider then model
    /// (at most [`MAX_MODELS_PER_NODE`] models, then [`OTHER_MODEL`]).
    pub llm: Vec<ModelMetrics>,
}

/// The LLM calls of one model made in one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelMetrics {
    /// The provider, canonical (`openai`, `anthropic`, ...), or [`OTHER_MODEL`].
    pub provider: String,
    /// The model as the call named it, or [`OTHER_MODEL`].
    pub model: String,
    /// Calls whose usage was read (priced or not).
    pub calls: u64,
    /// Calls that failed before the provider said what they used: no tokens, no cost.
    pub failed_calls: u64,
    /// Calls whose usage was read but that could not be priced (their cost is not in
    /// `cost_usd`).
    pub unpriced_calls: u64,
    /// Tokens by type.
    pub tokens: TokenCounts,
    /// Cost of the priced calls, USD.
    pub cost_usd: f64,
    /// Wall time of the timed calls (started with `tracker.start_call`), from the request
    /// to the last byte or the failure.
    pub duration: SecondsHistogram,
    /// Time to first token of the streamed calls that sent content.
    pub time_to_first_token: SecondsHistogram,
}

/// Token counts by type. `input` includes the cached input and the cache creation, and
/// `output` includes the reasoning, as providers count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenCounts {
    /// Every input token.
    pub input: u64,
    /// Every output token.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cached_input: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation: u64,
    /// Output tokens spent on reasoning.
    pub reasoning: u64,
}

impl TokenCounts {
    /// Each type with the name exporters give it: `input`, `output`, `cached_input`,
    /// `cache_creation`, `reasoning`.
    pub fn by_type(&self) -> [(&'static str, u64); 5] {
        [
            ("input", self.input),
            ("output", self.output),
            ("cached_input", self.cached_input),
            ("cache_creation", self.cache_creation),
            ("reasoning", self.reasoning),
        ]
    }

    fn add(&mut self, other: &TokenCounts) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cached_input = self.cached_input.saturating_add(other.cached_input);
        self.cache_creation = self.cache_creation.saturating_add(other.cache_creation);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }

    fn at_least(&mut self, floor: &TokenCounts) {
        self.input = self.input.max(floor.input);
        self.output = self.output.max(floor.output);
        self.cached_input = self.cached_input.max(floor.cached_input);
        self.cache_creation = self.cache_creation.max(floor.cache_creation);
        self.reasoning = self.reasoning.max(floor.reasoning);
    }
}

/// A histogram of durations at the fixed bounds [`HISTOGRAM_BOUNDS_SECONDS`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SecondsHistogram {
    /// Cumulative counts: `cumulative[i]` durations were below
    /// `HISTOGRAM_BOUNDS_SECONDS[i]`. Non-decreasing, each at most `count`.
    pub cumulative: Vec<u64>,
    /// Every duration counted (the `+Inf` bucket).
    pub count: u64,
    /// The sum of the durations, seconds (exact to the nanosecond for node durations; for
    /// LLM timings, the sum of each call's nanoseconds).
    pub sum_seconds: f64,
}

impl Default for SecondsHistogram {
    fn default() -> Self {
        Self {
            cumulative: vec![0; BOUND_COUNT],
            count: 0,
            sum_seconds: 0.0,
        }
    }
}

impl SecondsHistogram {
    /// From a histogram in nanoseconds and the sum of its values.
    pub(crate) fn from_ns(histogram: &Histogram, sum_ns: u64) -> Self {
        Self {
            cumulative: histogram.cumulative_below(HISTOGRAM_BOUNDS_NS),
            count: histogram.count(),
            sum_seconds: sum_ns as f64 / 1e9,
        }
    }

    /// Each bucket's own count (not cumulative), the last one for `+Inf`: what encoders
    /// such as `prometheus-client` take.
    pub fn bucket_counts(&self) -> Vec<u64> {
        // Always one count per bound and one for `+Inf`, whatever a hand-made or deserialized
        // histogram holds: a missing bound counts nothing more, an extra one is dropped.
        let mut previous = 0;
        let mut out = Vec::with_capacity(BOUND_COUNT + 1);
        for i in 0..BOUND_COUNT {
            let c = self.cumulative.get(i).copied().unwrap_or(previous);
            out.push(c.saturating_sub(previous));
            previous = previous.max(c);
        }
        out.push(self.count.saturating_sub(previous));
        out
    }

    fn add(&mut self, other: &SecondsHistogram) {
        self.resize();
        for (mine, theirs) in self.cumulative.iter_mut().zip(&other.cumulative) {
            *mine = mine.saturating_add(*theirs);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum_seconds += other.sum_seconds;
    }

    fn at_least(&mut self, floor: &SecondsHistogram) {
        self.resize();
        for (mine, theirs) in self.cumulative.iter_mut().zip(&floor.cumulative) {
            *mine = (*mine).max(*theirs);
        }
        self.count = self.count.max(floor.count);
        self.sum_seconds = self.sum_seconds.max(floor.sum_seconds);
    }

    /// Keeps the one length every histogram of a snapshot has (a deserialized one may lack it).
    fn resize(&mut self) {
        self.cumulative.resize(BOUND_COUNT, self.count);
    }
}

impl ModelMetrics {
    /// An empty record for `provider` and `model`.
    pub fn new(provider: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
            ..Self::default()
        }
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &ModelMetrics) {
        self.calls = self.calls.saturating_add(other.calls);
        self.failed_calls = self.failed_calls.saturating_add(other.failed_calls);
        self.unpriced_calls = self.unpriced_calls.saturating_add(other.unpriced_calls);
        self.tokens.add(&other.tokens);
        self.cost_usd += other.cost_usd;
        self.duration.add(&other.duration);
        self.time_to_first_token.add(&other.time_to_first_token);
    }

    fn at_least(&mut self, floor: &ModelMetrics) {
        self.calls = self.calls.max(floor.calls);
        self.failed_calls = self.failed_calls.max(floor.failed_calls);
        self.unpriced_calls = self.unpriced_calls.max(floor.unpriced_calls);
        self.tokens.at_least(&floor.tokens);
        self.cost_usd = self.cost_usd.max(floor.cost_usd);
        self.duration.at_least(&floor.duration);
        self.time_to_first_token
            .at_least(&floor.time_to_first_token);
    }

    fn key(&self) -> (&str, &str) {
        (&self.provider, &self.model)
    }
}

impl NodeMetrics {
    /// An empty record for `node_id`.
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
            ..Self::default()
        }
    }

    /// Every model's LLM figures added up: the node's LLM totals.
    pub fn llm_totals(&self) -> ModelMetrics {
        let mut total = ModelMetrics::default();
        for model in &self.llm {
            total.add(model);
        }
        total
    }

    /// The record of `provider` and `model`, if the node made such calls.
    pub fn model(&self, provider: &str, model: &str) -> Option<&ModelMetrics> {
        self.llm.iter().find(|m| m.key() == (provider, model))
    }

    /// Adds `other`'s counts (same node) to these; models are matched by provider and model.
    pub fn add(&mut self, other: &NodeMetrics) {
        let calls = &mut self.calls;
        calls.ok = calls.ok.saturating_add(other.calls.ok);
        calls.error = calls.error.saturating_add(other.calls.error);
        calls.panicked = calls.panicked.saturating_add(other.calls.panicked);
        calls.cancelled = calls.cancelled.saturating_add(other.calls.cancelled);
        self.duration.add(&other.duration);
        for model in &other.llm {
            self.model_entry(&model.provider, &model.model).add(model);
        }
    }

    fn at_least(&mut self, floor: &NodeMetrics) {
        let calls = &mut self.calls;
        calls.ok = calls.ok.max(floor.calls.ok);
        calls.error = calls.error.max(floor.calls.error);
        calls.panicked = calls.panicked.max(floor.calls.panicked);
        calls.cancelled = calls.cancelled.max(floor.calls.cancelled);
        self.duration.at_least(&floor.duration);
        for model in &floor.llm {
            self.model_entry(&model.provider, &model.model)
                .at_least(model);
        }
    }

    /// The record of `provider` and `model`, made (in order) when missing.
    pub fn model_entry(&mut self, provider: &str, model: &str) -> &mut ModelMetrics {
        let at = match self
            .llm
            .binary_search_by(|m| m.key().cmp(&(provider, model)))
        {
            Ok(at) => at,
            Err(at) => {
                self.llm.insert(at, ModelMetrics::new(provider, model));
                at
            }
        };
        &mut self.llm[at]
    }
}

impl MetricsSnapshot {
    /// The counters of `node_id`, if it was recorded.
    pub fn node(&self, node_id: &str) -> Option<&NodeMetrics> {
        self.nodes
            .binary_search_by(|n| n.node_id.as_str().cmp(node_id))
            .ok()
            .map(|at| &self.nodes[at])
    }

    /// The record of `node_id`, made (in order) when missing.
    pub fn node_entry(&mut self, node_id: &str) -> &mut NodeMetrics {
        let at = match self
            .nodes
            .binary_search_by(|n| n.node_id.as_str().cmp(node_id))
        {
            Ok(at) => at,
            Err(at) => {
                self.nodes.insert(at, NodeMetrics::new(node_id));
                at
            }
        };
        &mut self.nodes[at]
    }

    /// Adds every counter of `other` to these, node by node and model by model: the totals
    /// of several analyzers (a service that makes one per run), still cumulative.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let (a, b) = (BottleneckAnalyzer::new(), BottleneckAnalyzer::new());
    /// a.record_node("plan", 1.0).unwrap();
    /// b.record_node("plan", 2.0).unwrap();
    /// let mut total = a.metrics();
    /// total.add(&b.metrics());
    /// assert_eq!(total.node("plan").unwrap().calls.ok, 2);
    /// ```
    pub fn add(&mut self, other: &MetricsSnapshot) {
        for node in &other.nodes {
            self.node_entry(&node.node_id).add(node);
        }
    }

    /// Raises each counter to at least its value in `floor` (an earlier snapshot of the same
    /// analyzer), so that no series is ever seen going backwards.
    pub(crate) fn at_least(&mut self, floor: &MetricsSnapshot) {
        for node in &floor.nodes {
            self.node_entry(&node.node_id).at_least(node);
        }
    }
}

/// Bytes a snapshot holds (for the analyzer's memory accounting of the last one it gave).
pub(crate) fn memory_bytes(snapshot: &MetricsSnapshot) -> usize {
    let histogram = |h: &SecondsHistogram| h.cumulative.capacity() * std::mem::size_of::<u64>();
    snapshot.nodes.capacity() * std::mem::size_of::<NodeMetrics>()
        + snapshot
            .nodes
            .iter()
            .map(|n| {
                n.node_id.capacity()
                    + histogram(&n.duration)
                    + n.llm.capacity() * std::mem::size_of::<ModelMetrics>()
                    + n.llm
                        .iter()
                        .map(|m| {
                            m.provider.capacity()
                                + m.model.capacity()
                                + histogram(&m.duration)
                                + histogram(&m.time_to_first_token)
                        })
                        .sum::<usize>()
            })
            .sum::<usize>()
}

#[cfg(test)]
mod tests;
