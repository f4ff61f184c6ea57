//! LLM cost tracking: token usage from provider responses, prices, and the
//! [`MultiProviderCostTracker`] that adds each call's cost to the profiled node that made it.
//!
//! ```
//! use agent_profiler_runtime::{extract_provider, MultiProviderCostTracker};
//! use serde_json::json;
//!
//! let tracker = MultiProviderCostTracker::new();
//! let response = json!({
//!     "model": "gpt-4o-mini-2024-07-18",
//!     "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}
//! });
//! let model = "gpt-4o-mini";
//! let info = tracker.track_call(&extract_provider(model), model, &response).unwrap();
//! // 1200 * $0.15/M + 300 * $0.60/M
//! assert!((info.cost_usd.unwrap() - 0.00036).abs() < 1e-12);
//!
//! let unknown = tracker.track_call("openai", "gpt-9-preview", &response).unwrap();
//! assert_eq!(unknown.cost_usd, None); // unpriced, never $0
//!
//! let summary = tracker.get_cost_summary();
//! assert_eq!((summary.calls, summary.unpriced_calls), (2, 1));
//! assert_eq!(summary.total_tokens, 3000);
//! ```
//!
//! Calls tracked while a `#[profile_node]` function runs (a sync call, or an async node
//! while it is polled, on whatever thread) also add their tokens and cost to that node in
//! the analyzer installed for it: see [`MultiProviderCostTracker::track_call`].

mod fields;
mod pricing;
mod provider;
mod usage;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

pub use pricing::{ModelPrice, PriceMatch, PriceTier, PricingTable};
pub use provider::{UNKNOWN_PROVIDER, canonical_provider, extract_provider};
pub use usage::{ResponseFormat, Usage};

use crate::analyzer::Ticks;
use crate::clock::now_unix_seconds;
use crate::llm::{LlmTiming, Origin};

/// How many calls [`MultiProviderCostTracker::get_history`] keeps by default.
pub const DEFAULT_HISTORY_LIMIT: usize = 1000;

/// Why a call's usage (or a price file) could not be read. Nothing recorded before is
/// affected by it; the tracker counts the call as failed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum CostError {
    /// The response carries no token usage (a streaming chunk, `"usage": null`, an error
    /// body), or a required count is absent.
    MissingUsage {
        /// What was looked for.
        looked_for: String,
    },
    /// The usage is there but wrong: a negative, fractional or non-numeric count, or parts
    /// larger than their whole.
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// A response body or price file given as text is not JSON.
    InvalidJson {
        /// The parser's message.
        reason: String,
    },
    /// A price file entry is unusable.
    InvalidPrice {
        /// The model key of the entry (empty for the file as a whole).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A price file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The system's message.
        reason: String,
    },
}

impl std::fmt::Display for CostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CostError::MissingUsage { looked_for } => {
                write!(f, "no token usage in the response; looked for {looked_for}")
            }
            CostError::Malformed { reason } => write!(f, "malformed token usage: {reason}"),
            CostError::InvalidJson { reason } => write!(f, "not valid JSON: {reason}"),
            CostError::InvalidPrice { key, reason } if key.is_empty() => {
                write!(f, "invalid price file: {reason}")
            }
            CostError::InvalidPrice { key, reason } => {
                write!(f, "invalid price for `{key}`: {reason}")
            }
            CostError::Io { path, reason } => {
                write!(f, "cannot read price file {}: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for CostError {}

/// One tracked LLM call: who served it, its tokens, its cost and the node that made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CostInfo {
    /// The provider, canonical (see [`canonical_provider`]).
    pub provider: String,
    /// The model, as given to `track_call`.
    pub model: String,
    /// Every input token, cache reads and writes included.
    pub input_tokens: u64,
    /// Every output token, reasoning included.
    pub output_tokens: u64,
    /// `input_tokens + output_tokens`.
    pub total_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cached_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_creation_input_tokens: u64,
    /// Output tokens spent on reasoning.
    pub reasoning_tokens: u64,
    /// The cost in USD; `None` when the call could not be priced (never a silent 0).
    pub cost_usd: Option<f64>,
    /// Why the call is unpriced, when it is.
    pub unpriced_reason: Option<String>,
    /// The price table key that priced the call (`gpt-4o`, `ollama/*`, ...).
    #[serde(default)]
    pub price_key: Option<String>,
    /// The profiled node running when the call was tracked, if any.
    pub node_id: Option<String>,
    /// When the call was tracked, seconds since the Unix epoch.
    pub timestamp: f64,
    /// When the call ran and how it ended, for a call timed with
    /// [`MultiProviderCostTracker::start_call`]; `None` for one tracked from its body alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<LlmTiming>,
    /// `false` for a timed call that failed before the provider said what it used: it has
    /// no tokens and no cost, and counts in the failed calls ([`CostBreakdown::failed_calls`]).
    #[serde(default = "yes")]
    pub has_usage: bool,
}

fn yes() -> bool {
    true
}

impl CostInfo {
    /// The call's token counts as a [`Usage`] (without the one-hour split of cache writes,
    /// which `CostInfo` does not keep).
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_creation_input_tokens: self.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: 0,
            output_tokens: self.output_tokens,
            reasoning_tokens: self.reasoning_tokens,
            total_tokens: self.total_tokens,
        }
    }
}

/// Totals for a group of calls (all of them, one provider, one model).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostBreakdown {
    /// Calls tracked (priced or not).
    pub calls: u64,
    /// Calls tracked without a price; their tokens are counted, their cost is not.
    pub unpriced_calls: u64,
    /// Calls whose response could not be read (see [`CostError`]).
    pub failed_calls: u64,
    /// Sum of the priced calls' cost, USD. A lower bound when `unpriced_calls > 0`.
    pub cost_usd: f64,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of total tokens.
    pub total_tokens: u64,
    /// Sum of cached input tokens.
    pub cached_input_tokens: u64,
    /// Sum of cache-creation input tokens.
    pub cache_creation_input_tokens: u64,
    /// Sum of reasoning tokens.
    pub reasoning_tokens: u64,
}

impl CostBreakdown {
    /// Adds one tracked call (a call without usage only to `failed_calls`).
    pub fn add(&mut self, info: &CostInfo) {
        if !info.has_usage {
            self.failed_calls += 1;
            return;
        }
        self.calls += 1;
        match info.cost_usd {
            Some(cost) => self.cost_usd += cost,
            None => self.unpriced_calls += 1,
        }
        self.input_tokens = self.input_tokens.saturating_add(info.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(info.output_tokens);
        self.total_tokens = self.total_tokens.saturating_add(info.total_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(info.cached_input_tokens);
        self.cache_creation_input_tokens = self
            .cache_creation_input_tokens
            .saturating_add(info.cache_creation_input_tokens);
        self.reasoning_tokens = self.reasoning_tokens.saturating_add(info.reasoning_tokens);
    }
}

/// What a [`MultiProviderCostTracker`] has tracked: totals, and the same per provider and
/// per model. Totals cover every call since the tracker was made (or [`reset`]), however
/// short the history is.
///
/// [`reset`]: MultiProviderCostTracker::reset
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostSummary {
    /// Sum of the priced calls' cost, USD. A lower bound when `unpriced_calls > 0`.
    pub total_cost_usd: f64,
    /// Sum of input plus output tokens of every tracked call.
    pub total_tokens: u64,
    /// Sum of input tokens.
    pub input_tokens: u64,
    /// Sum of output tokens.
    pub output_tokens: u64,
    /// Sum of cached input tokens.
    pub cached_input_tokens: u64,
    /// Sum of cache-creation input tokens.
    pub cache_creation_input_tokens: u64,
    /// Sum of reasoning tokens.
    pub reasoning_tokens: u64,
    /// Calls tracked (priced or not).
    pub calls: u64,
    /// Calls tracked with a price.
    pub priced_calls: u64,
    /// Calls tracked without a price (unknown model): not counted in `total_cost_usd`.
    pub unpriced_calls: u64,
    /// Calls whose response could not be read.
    pub failed_calls: u64,
    /// Per provider.
    pub by_provider: BTreeMap<String, CostBreakdown>,
    /// Per model (as given to `track_call`).
    pub by_model: BTreeMap<String, CostBreakdown>,
    /// Calls in the history now.
    pub history_len: usize,
    /// Calls dropped from the history to keep it within its limit.
    pub history_dropped: u64,
}

/// Tracks the tokens and cost of LLM calls across providers: totals by provider and by
/// model, a bounded history of calls, and each call's cost added to the profiled node that
/// made it.
///
/// Cheap to clone (clones share the same totals) and usable from many threads: every
/// call is counted exactly once. Totals are kept apart from the history, so a bounded
/// history never loses cost.
///
/// ```
/// use agent_profiler_runtime::{ModelPrice, MultiProviderCostTracker, PricingTable};
///
/// let pricing = PricingTable::default()
///     .with_price("vllm/my-model", ModelPrice::per_million(0.10, 0.40));
/// let tracker = MultiProviderCostTracker::builder()
///     .pricing(pricing)
///     .history_limit(100)
///     .build();
/// let body = r#"{"model": "my-model", "usage": {"prompt_tokens": 1000, "completion_tokens": 100}}"#;
/// let info = tracker.track_call("vllm", "my-model", body).unwrap();
/// assert!((info.cost_usd.unwrap() - 0.00014).abs() < 1e-12);
/// ```
#[derive(Clone)]
pub struct MultiProviderCostTracker {
    inner: Arc<TrackerInner>,
}

struct TrackerInner {
    pricing: PricingTable,
    history_limit: usize,
    state: Mutex<State>,
    /// Outputs told of each call made inside a node (an MLflow exporter, for example).
    sinks: Vec<Arc<dyn CostSink>>,
}

#[derive(Default)]
struct State {
    totals: CostBreakdown,
    by_provider: BTreeMap<String, CostBreakdown>,
    by_model: BTreeMap<String, CostBreakdown>,
    history: VecDeque<CostInfo>,
    dropped: u64,
}

/// An output that hears of every LLM call tracked inside a profiled node, as the call is
/// tracked: the MLflow exporter implements it to log `node_{id}_cost_usd`.
///
/// It runs on the thread that tracked the call, inside the node's measured time: an
/// implementation must only queue (no I/O, no blocking lock held for long).
pub trait CostSink: Send + Sync {
    /// `info` was tracked while node `node_id` was the innermost running node.
    fn node_call(&self, node_id: &str, info: &CostInfo);
}

/// Builds a [`MultiProviderCostTracker`] with other prices, another history limit, or
/// outputs ([`sink`](Self::sink)) told of each call, such as an MLflow exporter that logs each
/// call's cost as `node_{id}_cost_usd`.
#[must_use = "call `build()` to get the tracker"]
pub struct CostTrackerBuilder {
    pricing: Option<PricingTable>,
    history_limit: usize,
    sinks: Vec<Arc<dyn CostSink>>,
}

impl std::fmt::Debug for CostTrackerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostTrackerBuilder")
            .field("pricing", &self.pricing)
            .field("history_limit", &self.history_limit)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl CostTrackerBuilder {
    /// Prices calls with `pricing` instead of [`PricingTable::default()`].
    pub fn pricing(mut self, pricing: PricingTable) -> Self {
        self.pricing = Some(pricing);
        self
    }

    /// Keeps the last `limit` calls in the history (default [`DEFAULT_HISTORY_LIMIT`]; 0
    /// keeps none). Totals are not affected.
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit;
        self
    }

    /// Also tells `sink` of every call tracked inside a profiled node. An MLflow exporter's
    /// `cost_sink()` logs each priced call as one value of `node_{id}_cost_usd`.
    pub fn sink(mut self, sink: Arc<dyn CostSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// The tracker.
    pub fn build(self) -> MultiProviderCostTracker {
        MultiProviderCostTracker {
            inner: Arc::new(TrackerInner {
                pricing: self.pricing.unwrap_or_default(),
                history_limit: self.history_limit,
                state: Mutex::new(State::default()),
                sinks: self.sinks,
            }),
        }
    }
}

impl Default for MultiProviderCostTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MultiProviderCostTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiProviderCostTracker")
            .field("prices", &self.inner.pricing.len())
            .field("history_limit", &self.inner.history_limit)
            .finish_non_exhaustive()
    }
}

impl MultiProviderCostTracker {
    /// A tracker with the embedded prices ([`PricingTable::default()`]) and a history of
    /// the last [`DEFAULT_HISTORY_LIMIT`] calls.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A tracker with these prices.
    pub fn with_pricing(pricing: PricingTable) -> Self {
        Self::builder().pricing(pricing).build()
    }

    /// A builder, for other prices or another history limit.
    pub fn builder() -> CostTrackerBuilder {
        CostTrackerBuilder {
            pricing: None,
            history_limit: DEFAULT_HISTORY_LIMIT,
            sinks: Vec::new(),
        }
    }

    /// The prices this tracker uses.
    pub fn pricing(&self) -> &PricingTable {
        &self.inner.pricing
    }

    /// Tracks one call of `model` served by `provider`, from its `response`: any
    /// serializable response (a provider SDK type, a `serde_json::Value`, or the raw body as
    /// `&str`). See [`Usage`] for the shapes understood. An empty `provider` is taken from
    /// the model name with [`extract_provider`].
    ///
    /// When a profiled node is running on this thread (for an async node: while it is
    /// polled) and an analyzer is installed for it, the call's tokens and cost are added to
    /// that node ([`BottleneckAnalyzer::record_cost`](crate::BottleneckAnalyzer::record_cost))
    /// and the node's id is in the returned [`CostInfo`].
    ///
    /// A model without a price is tracked with `cost_usd: None` and the reason, and counted
    /// in [`CostSummary::unpriced_calls`].
    ///
    /// # Errors
    /// A [`CostError`] when the response has no readable usage. The call is counted in
    /// [`CostSummary::failed_calls`]; nothing else changes.
    pub fn track_call<R: Serialize + ?Sized>(
        &self,
        provider: &str,
        model: &str,
        response: &R,
    ) -> Result<CostInfo, CostError> {
        let provider = resolve_provider(provider, model);
        match Usage::from_response(response) {
            Ok(usage) => Ok(self.record(provider, model, usage)),
            Err(error) => {
                self.record_failure(&provider, model);
                Err(error)
            }
        }
    }

    /// Tracks one call whose token counts you already have (for example summed from a
    /// stream), like [`track_call`](Self::track_call).
    ///
    /// # Errors
    /// [`CostError::Malformed`] when the parts of `usage` do not fit in their wholes (see
    /// [`Usage::check`]); the call is counted as failed.
    pub fn track_usage(
        &self,
        provider: &str,
        model: &str,
        usage: Usage,
    ) -> Result<CostInfo, CostError> {
        let provider = resolve_provider(provider, model);
        match usage.check() {
            Ok(()) => Ok(self.record(provider, model, usage)),
            Err(error) => {
                self.record_failure(&provider, model);
                Err(error)
            }
        }
    }

    /// The cost of `usage` (or `None`), why it is unpriced, and the table key used.
    fn quote(
        &self,
        provider: &str,
        model: &str,
        usage: &Usage,
    ) -> (Option<f64>, Option<String>, Option<String>) {
        let provider = resolve_provider(provider, model);
        match self.inner.pricing.lookup(&provider, model) {
            Some(found) => match found.price.cost_usd(usage) {
                Ok(cost) => (Some(cost), None, Some(found.key.to_owned())),
                Err(why) => (
                    None,
                    Some(format!("`{}`: {why}", found.key)),
                    Some(found.key.to_owned()),
                ),
            },
            None => (
                None,
                Some(format!(
                    "no price for model `{model}` of provider `{provider}` (looked up \
                     `{provider}/{model}` and `{model}`); add it with \
                     `PricingTable::set_price` or load a LiteLLM price file"
                )),
                None,
            ),
        }
    }

    fn record(&self, provider: String, model: &str, usage: Usage) -> CostInfo {
        let origin = Origin::here();
        let info = self.info(&origin, provider, model, Some(usage), None);
        self.keep(&origin, &info, None);
        info
    }

    /// Records a call timed by an [`LlmCall`](crate::LlmCall): `usage` is `None` for one
    /// that failed before any was billed; `ticks` are its start and end on the profiler's
    /// clock.
    pub(crate) fn record_timed(
        &self,
        origin: &Origin,
        provider: &str,
        model: &str,
        usage: Option<Usage>,
        timing: LlmTiming,
        ticks: Ticks,
    ) -> CostInfo {
        let provider = resolve_provider(provider, model);
        let info = self.info(origin, provider, model, usage, Some(timing));
        self.keep(origin, &info, Some(ticks));
        info
    }

    /// The record of one call made by `origin`'s node: priced when it has usage.
    fn info(
        &self,
        origin: &Origin,
        provider: String,
        model: &str,
        usage: Option<Usage>,
        timing: Option<LlmTiming>,
    ) -> CostInfo {
        let has_usage = usage.is_some();
        let usage = usage.unwrap_or_default();
        let (cost_usd, unpriced_reason, price_key) = if has_usage {
            self.quote(&provider, model, &usage)
        } else {
            (None, None, None)
        };
        CostInfo {
            provider,
            model: model.to_owned(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_creation_input_tokens: usage.cache_creation_input_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            cost_usd,
            unpriced_reason,
            price_key,
            node_id: origin.node.map(str::to_owned),
            timestamp: now_unix_seconds(),
            timing,
            has_usage,
        }
    }

    /// Adds `info` to the totals and the history, to its node (with its interval, when
    /// timed) and to the sinks.
    fn keep(&self, origin: &Origin, info: &CostInfo, ticks: Option<Ticks>) {
        {
            let mut state = self.lock();
            state.totals.add(info);
            state
                .by_provider
                .entry(info.provider.clone())
                .or_default()
                .add(info);
            state
                .by_model
                .entry(info.model.clone())
                .or_default()
                .add(info);
            if self.inner.history_limit == 0 {
                state.dropped += 1;
            } else {
                if state.history.len() >= self.inner.history_limit {
                    state.history.pop_front();
                    state.dropped += 1;
                }
                state.history.push_back(info.clone());
            }
        }
        if let Some((node, analyzer)) = origin.target() {
            analyzer.record_llm_call(node, info, origin.span, ticks);
        }
        if let Some(node) = origin.node {
            for sink in &self.inner.sinks {
                sink.node_call(node, info);
            }
        }
    }

    fn record_failure(&self, provider: &str, model: &str) {
        let mut state = self.lock();
        state.totals.failed_calls += 1;
        state
            .by_provider
            .entry(provider.to_owned())
            .or_default()
            .failed_calls += 1;
        state
            .by_model
            .entry(model.to_owned())
            .or_default()
            .failed_calls += 1;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Totals, per provider and per model, of every call tracked.
    pub fn get_cost_summary(&self) -> CostSummary {
        let state = self.lock();
        let t = &state.totals;
        CostSummary {
            total_cost_usd: t.cost_usd,
            total_tokens: t.total_tokens,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cached_input_tokens: t.cached_input_tokens,
            cache_creation_input_tokens: t.cache_creation_input_tokens,
            reasoning_tokens: t.reasoning_tokens,
            calls: t.calls,
            priced_calls: t.calls - t.unpriced_calls,
            unpriced_calls: t.unpriced_calls,
            failed_calls: t.failed_calls,
            by_provider: state.by_provider.clone(),
            by_model: state.by_model.clone(),
            history_len: state.history.len(),
            history_dropped: state.dropped,
        }
    }

    /// The most recent calls, oldest first: at most the history limit of them.
    pub fn get_history(&self) -> Vec<CostInfo> {
        self.lock().history.iter().cloned().collect()
    }

    /// Empties the history (and its dropped count). The totals of
    /// [`get_cost_summary`](Self::get_cost_summary) stay; [`reset`](Self::reset) clears them
    /// too.
    pub fn clear_history(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.dropped = 0;
    }

    /// Forgets everything tracked: totals and history.
    pub fn reset(&self) {
        *self.lock() = State::default();
    }
}

fn resolve_provider(provider: &str, model: &str) -> String {
    if provider.trim().is_empty() {
        extract_provider(model)
    } else {
        canonical_provider(provider)
    }
}

#[cfg(test)]
mod tests;
