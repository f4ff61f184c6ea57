//! The sum of every watched analyzer's lifetime counters, and of those already gone, with a
//! bounded set of (provider, model) series per node: what every metrics exporter
//! (Prometheus, OTLP) and a service that makes one analyzer per run read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{MetricsSnapshot, OTHER_MODEL};
use crate::BottleneckAnalyzer;

/// (provider, model) pairs with series of their own per node, across every analyzer a
/// [`LifetimeMetrics`] watched; the pairs seen after them are counted under
/// [`OTHER_MODEL`].
pub const MAX_MODELS: usize = 64;

/// The lifetime counters of every analyzer it [watches](Self::watch), added up, those of
/// analyzers already gone included: a service that makes one analyzer per run (as the
/// executor does) watches each, and its exporters read the sum. Cheap to clone: clones
/// share the same totals.
///
/// Counters only grow: an analyzer's [`reset`](BottleneckAnalyzer::reset) does not touch
/// them, and once this holds the last handle of an analyzer (its run is over and it was
/// dropped everywhere else), it reads the analyzer one last time, keeps its figures and
/// lets it go. Per node, at most [`MAX_MODELS`] (provider, model) pairs keep series of
/// their own, the first seen; the rest are counted under [`OTHER_MODEL`].
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_runtime::metrics::LifetimeMetrics;
///
/// let metrics = LifetimeMetrics::new();
/// for _run in 0..3 {
///     let analyzer = BottleneckAnalyzer::new();
///     metrics.watch(&analyzer);
///     analyzer.record_node("plan", 2.0).unwrap();
/// } // each run's analyzer is dropped here: its figures stay
/// assert_eq!(metrics.snapshot().node("plan").unwrap().calls.ok, 3);
/// assert_eq!(metrics.live_analyzers(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct LifetimeMetrics {
    totals: Arc<Mutex<Totals>>,
}

impl LifetimeMetrics {
    /// Totals that watch no analyzer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `analyzer` to the totals (once: watching the same analyzer again changes
    /// nothing). A handle to it is kept until that handle is the last one; then its final
    /// figures stay in the totals and the analyzer is freed.
    pub fn watch(&self, analyzer: &BottleneckAnalyzer) {
        self.totals().watch(analyzer);
    }

    /// The sum of every analyzer's lifetime counters now, the analyzers gone included.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.totals().snapshot()
    }

    /// Analyzers being read live (those not held by these totals alone).
    pub fn live_analyzers(&self) -> usize {
        self.totals().live()
    }

    fn totals(&self) -> MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Default)]
struct Totals {
    /// Analyzers read at each scrape.
    live: Vec<BottleneckAnalyzer>,
    /// The final figures of analyzers no one else holds any more (already folded).
    retired: MetricsSnapshot,
    /// Per node, the pairs that have series of their own. Once in, a pair stays: its
    /// series never turns into `_other`, so no series goes backwards.
    admitted: BTreeMap<String, BTreeSet<(String, String)>>,
    /// The last total given, below which no later one goes: sums of floats added in another
    /// order (an analyzer retired from the middle of `live`) can differ in the last bit.
    published: MetricsSnapshot,
}

impl Drop for Totals {
    /// The analyzers still watched are no longer held by these totals' watch.
    fn drop(&mut self) {
        for analyzer in &self.live {
            analyzer.count_watcher(false);
        }
    }
}

impl Totals {
    fn watch(&mut self, analyzer: &BottleneckAnalyzer) {
        if !self.live.iter().any(|a| a.ptr_eq(analyzer)) {
            analyzer.count_watcher(true);
            self.live.push(analyzer.clone());
        }
        // A service that makes an analyzer per run and is never scraped still lets the
        // finished ones go.
        self.retire_finished();
    }

    fn live(&self) -> usize {
        self.live.len()
    }

    /// Every analyzer's figures added up, the retired ones included.
    fn snapshot(&mut self) -> MetricsSnapshot {
        self.retire_finished();
        let mut total = self.retired.clone();
        for analyzer in &self.live {
            total.add(&analyzer.metrics());
        }
        self.fold(&mut total);
        total.at_least(&self.published);
        self.published = total.clone();
        total
    }

    /// Moves the figures of analyzers that only this exporter still holds into `retired`.
    fn retire_finished(&mut self) {
        let mut finished = Vec::new();
        self.live.retain(|analyzer| {
            // Checked before the last read: with no handle but the watchers' (another
            // `LifetimeMetrics` may watch it too), nothing new can be recorded into it after
            // this read.
            let done = analyzer.only_watched();
            if done {
                finished.push(analyzer.metrics());
                analyzer.count_watcher(false);
            }
            !done
        });
        for snapshot in finished {
            self.retired.add(&snapshot);
        }
        let mut retired = std::mem::take(&mut self.retired);
        self.fold(&mut retired);
        self.retired = retired;
    }

    /// Counts the pairs beyond [`MAX_MODELS`] of a node under `_other`.
    fn fold(&mut self, snapshot: &mut MetricsSnapshot) {
        for node in &mut snapshot.nodes {
            let admitted = self.admitted.entry(node.node_id.clone()).or_default();
            let mut other = Vec::new();
            node.llm.retain(|model| {
                let key = (model.provider.clone(), model.model.clone());
                let own = admitted.contains(&key)
                    || key.0 == OTHER_MODEL && key.1 == OTHER_MODEL
                    || admitted.len() < MAX_MODELS && admitted.insert(key);
                if !own {
                    other.push(model.clone());
                }
                own
            });
            for model in other {
                node.model_entry(OTHER_MODEL, OTHER_MODEL).add(&model);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MultiProviderCostTracker, Usage};

    fn llm_call(analyzer: &BottleneckAnalyzer, node: &str, model: &str) {
        let info = MultiProviderCostTracker::new()
            .track_usage("openai", model, Usage::new(10, 1))
            .unwrap();
        analyzer.record_cost(node, &info).unwrap();
    }

    #[test]
    fn a_dropped_analyzers_figures_stay_in_the_totals() {
        let mut totals = Totals::default();
        let first = BottleneckAnalyzer::new();
        totals.watch(&first);
        totals.watch(&first);
        assert_eq!(totals.live(), 1);
        first.record_node("plan", 1.0).unwrap();
        assert_eq!(totals.snapshot().node("plan").unwrap().calls.ok, 1);
        // Recorded after the last scrape, then dropped: still counted.
        first.record_node("plan", 1.0).unwrap();
        drop(first);
        let second = BottleneckAnalyzer::new();
        second.record_node("plan", 1.0).unwrap();
        totals.watch(&second);
        assert_eq!(totals.live(), 1);
        assert_eq!(totals.snapshot().node("plan").unwrap().calls.ok, 3);
        drop(second);
        assert_eq!(totals.snapshot().node("plan").unwrap().calls.ok, 3);
        assert_eq!(totals.live(), 0);
    }

    #[test]
    fn analyzers_watched_by_two_totals_are_let_go() {
        let (a, b) = (LifetimeMetrics::new(), LifetimeMetrics::new());
        for _ in 0..50 {
            let analyzer = BottleneckAnalyzer::new();
            a.watch(&analyzer);
            b.watch(&analyzer);
            analyzer.record_node("plan", 1.0).unwrap();
        }
        for totals in [&a, &b] {
            assert_eq!(totals.snapshot().node("plan").unwrap().calls.ok, 50);
            assert_eq!(totals.live_analyzers(), 0);
        }
        // Totals dropped while still watching leave the others free to let go.
        let kept = BottleneckAnalyzer::new();
        let short_lived = LifetimeMetrics::new();
        short_lived.watch(&kept);
        a.watch(&kept);
        drop(short_lived);
        drop(kept);
        assert_eq!(a.live_analyzers(), 1);
        a.snapshot();
        assert_eq!(a.live_analyzers(), 0);
    }

    #[test]
    fn float_sums_never_go_backwards_when_an_analyzer_retires() {
        for _ in 0..200 {
            let totals = LifetimeMetrics::new();
            let analyzers: Vec<BottleneckAnalyzer> =
                (0..3).map(|_| BottleneckAnalyzer::new()).collect();
            for (i, analyzer) in analyzers.iter().enumerate() {
                totals.watch(analyzer);
                let info = MultiProviderCostTracker::new()
                    .track_usage("openai", "gpt-4o", Usage::new(1234 + i as u64 * 77, 321))
                    .unwrap();
                analyzer.record_cost("chat", &info).unwrap();
                analyzer
                    .record_node("chat", 0.1 + i as f64 * 0.0123)
                    .unwrap();
            }
            let cost = |t: &LifetimeMetrics| {
                let snapshot = t.snapshot();
                let node = snapshot.node("chat").unwrap().clone();
                (node.llm_totals().cost_usd, node.duration.sum_seconds)
            };
            let before = cost(&totals);
            let mut analyzers = analyzers;
            drop(analyzers.remove(1));
            let after = cost(&totals);
            assert!(
                after.0 >= before.0 && after.1 >= before.1,
                "{before:?} {after:?}"
            );
        }
    }

    #[test]
    fn pairs_beyond_the_cap_go_to_other_and_admitted_ones_stay() {
        let mut totals = Totals::default();
        let analyzers: Vec<BottleneckAnalyzer> =
            (0..5).map(|_| BottleneckAnalyzer::new()).collect();
        // Each analyzer stays within its own cap; together they pass the exporter's.
        for (i, analyzer) in analyzers.iter().enumerate() {
            for j in 0..15 {
                llm_call(analyzer, "chat", &format!("m{i}-{j}"));
            }
            totals.watch(analyzer);
        }
        let snapshot = totals.snapshot();
        let chat = snapshot.node("chat").unwrap();
        assert_eq!(chat.llm.len(), MAX_MODELS + 1);
        assert_eq!(chat.llm_totals().calls, 75);
        let other = chat.model(OTHER_MODEL, OTHER_MODEL).unwrap().calls;
        assert_eq!(other, 75 - MAX_MODELS as u64);
        // Dropping every analyzer keeps the same series and values.
        drop(analyzers);
        assert_eq!(totals.snapshot(), snapshot);
    }
}
