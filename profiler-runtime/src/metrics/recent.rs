//! Timings over a recent window for a long-lived analyzer: a bounded ring of cumulative
//! samples, taken on reads, and the difference between now and the sample at the window's
//! start.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::histogram::Histogram;
use crate::stats::Stats;
use crate::summary::OutcomeCounts;

/// Samples are taken at most this often (on reads of [`metrics`] or [`recent_timings`]).
///
/// [`metrics`]: crate::BottleneckAnalyzer::metrics
/// [`recent_timings`]: crate::BottleneckAnalyzer::recent_timings
pub const RECENT_SAMPLE_INTERVAL: Duration = Duration::from_secs(15);

/// Samples kept: with one every [`RECENT_SAMPLE_INTERVAL`] at most, the oldest is at least
/// 23 intervals (5 min 45 s) old once the ring is full, which covers
/// [`DEFAULT_RECENT_WINDOW`].
pub const RECENT_SAMPLES: usize = 24;

/// The window [`recent_timings`](crate::BottleneckAnalyzer::recent_timings) is usually
/// asked for: the last 5 minutes.
pub const DEFAULT_RECENT_WINDOW: Duration = Duration::from_secs(300);

/// Per-node timings over a recent window (see
/// [`BottleneckAnalyzer::recent_timings`](crate::BottleneckAnalyzer::recent_timings)).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecentTimings {
    /// The span the figures cover, seconds: from the sample the window starts at to now.
    /// At least the window asked for once the analyzer is that old and was read often
    /// enough, and longer by up to the time between two samples; shorter when the analyzer
    /// (or its oldest kept sample) is younger than the window.
    pub window_seconds: f64,
    /// Nodes with calls that ended in the window, by node id.
    pub nodes: Vec<RecentNode>,
}

/// One node's calls that ended within a recent window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RecentNode {
    /// The node id.
    pub node_id: String,
    /// Calls in the window.
    pub call_count: u64,
    /// How they ended.
    pub outcomes: OutcomeCounts,
    /// Their total (inclusive) duration, ms.
    pub total_duration_ms: f64,
    /// Their mean duration, ms.
    pub avg_duration_ms: f64,
    /// Median duration, ms (a bucket's midpoint: within 1/16 of the true value).
    pub p50_duration_ms: f64,
    /// 95th percentile, ms (same precision).
    pub p95_duration_ms: f64,
    /// 99th percentile, ms (same precision).
    pub p99_duration_ms: f64,
}

/// The cumulative samples, oldest first, at most [`RECENT_SAMPLES`].
#[derive(Debug)]
pub(crate) struct RecentRing {
    samples: VecDeque<Sample>,
}

#[derive(Debug)]
struct Sample {
    at: Instant,
    /// Sorted by node id.
    nodes: Vec<NodeSample>,
}

/// A node's cumulative counters at a sample, with its histogram kept sparse (only the
/// non-empty buckets).
#[derive(Debug)]
struct NodeSample {
    node_id: Arc<str>,
    calls: u64,
    total_ns: u64,
    outcomes: [u64; 4],
    histogram: Vec<(u16, u64)>,
}

impl RecentRing {
    /// A ring whose first sample, empty, is the analyzer's creation at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        let mut samples = VecDeque::with_capacity(RECENT_SAMPLES);
        samples.push_back(Sample {
            at: now,
            nodes: Vec::new(),
        });
        Self { samples }
    }

    /// Keeps `current` (every node's lifetime counters in nanoseconds, sorted by id) as a
    /// sample when the last one is at least [`RECENT_SAMPLE_INTERVAL`] old.
    pub(crate) fn observe(&mut self, now: Instant, current: &[(String, Stats)]) {
        let due = self
            .samples
            .back()
            .is_none_or(|last| now.saturating_duration_since(last.at) >= RECENT_SAMPLE_INTERVAL);
        if !due {
            return;
        }
        let previous = self
            .samples
            .back()
            .map(|s| s.nodes.as_slice())
            .unwrap_or(&[]);
        let nodes = current
            .iter()
            .map(|(id, stats)| NodeSample {
                // The id's allocation is shared with the previous sample's when it has it.
                node_id: find(previous, id)
                    .map_or_else(|| Arc::from(id.as_str()), |n| n.node_id.clone()),
                calls: stats.calls,
                total_ns: stats.total,
                outcomes: stats.outcomes,
                histogram: stats.histogram.to_sparse(),
            })
            .collect();
        if self.samples.len() == RECENT_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { at: now, nodes });
    }

    /// The calls between the window's start and `current` (taken at `now`): the window
    /// starts at the newest sample at or before `now - window`, else at the oldest kept.
    pub(crate) fn window(
        &self,
        now: Instant,
        window: Duration,
        current: &[(String, Stats)],
    ) -> RecentTimings {
        let start = now.checked_sub(window);
        let base = self
            .samples
            .iter()
            .rev()
            .find(|s| start.is_some_and(|start| s.at <= start))
            .or_else(|| self.samples.front());
        let Some(base) = base else {
            return RecentTimings::default();
        };
        let nodes = current
            .iter()
            .filter_map(|(id, stats)| recent_node(id, stats, find(&base.nodes, id)))
            .collect();
        RecentTimings {
            window_seconds: now.saturating_duration_since(base.at).as_secs_f64(),
            nodes,
        }
    }

    /// Bytes held: the samples, their node lists and their sparse histograms.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.samples.capacity() * std::mem::size_of::<Sample>()
            + self
                .samples
                .iter()
                .map(|s| {
                    s.nodes.capacity() * std::mem::size_of::<NodeSample>()
                        + s.nodes
                            .iter()
                            .map(|n| {
                                n.histogram.capacity() * std::mem::size_of::<(u16, u64)>()
                                    + n.node_id.len()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
}

fn find<'a>(nodes: &'a [NodeSample], id: &str) -> Option<&'a NodeSample> {
    nodes
        .binary_search_by(|n| (*n.node_id).cmp(id))
        .ok()
        .map(|at| &nodes[at])
}

/// A node's calls since `base` (its counters at the window's start; none: it had no call
/// then); `None` when it had no call in the window.
fn recent_node(id: &str, now: &Stats, base: Option<&NodeSample>) -> Option<RecentNode> {
    let (calls_before, total_before, outcomes_before, histogram_before) = match base {
        Some(b) => (
            b.calls,
            b.total_ns,
            b.outcomes,
            Histogram::from_sparse(&b.histogram),
        ),
        None => (0, 0, [0; 4], Histogram::new()),
    };
    let calls = now.calls.saturating_sub(calls_before);
    if calls == 0 {
        return None;
    }
    let histogram = now.histogram.since(&histogram_before);
    let mut outcomes = now.outcomes;
    for (o, before) in outcomes.iter_mut().zip(outcomes_before) {
        *o = o.saturating_sub(before);
    }
    let total_ms = now.total.saturating_sub(total_before) as f64 / 1e6;
    let quantile = |q| histogram.quantile(q) as f64 / 1e6;
    Some(RecentNode {
        node_id: id.to_owned(),
        call_count: calls,
        outcomes: OutcomeCounts::from_array(outcomes),
        total_duration_ms: total_ms,
        avg_duration_ms: total_ms / calls as f64,
        p50_duration_ms: quantile(0.50),
        p95_duration_ms: quantile(0.95),
        p99_duration_ms: quantile(0.99),
    })
}
