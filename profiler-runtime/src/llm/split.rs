//! The per-node accounting of timed calls: the union of their intervals, and their time to
//! first token.

use std::collections::HashMap;

use crate::histogram::Histogram;

/// The union of the intervals of a node's calls, kept without storing intervals: per
/// execution of the node (its trace span, or 0 without trace mode), the calls in flight and
/// when the first of them began. The union grows by a stretch each time the count falls to
/// zero, so two concurrent calls count once; memory is one entry per execution with a call
/// in flight.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flight {
    /// The union of finished stretches, ticks.
    total_ticks: u64,
    /// Finished calls.
    calls: u64,
    /// Per execution: (calls in flight, tick at which the first of them started).
    open: HashMap<u64, (u32, u64)>,
}

impl Flight {
    /// A call of execution `key` started at `tick`.
    pub(crate) fn started(&mut self, key: u64, tick: u64) {
        let entry = self.open.entry(key).or_insert((0, tick));
        if entry.0 == 0 {
            entry.1 = tick;
        }
        entry.0 += 1;
    }

    /// A call of execution `key` that started at `start` ended at `end` (ticks).
    pub(crate) fn ended(&mut self, key: u64, start: u64, end: u64) {
        self.calls += 1;
        match self.open.get_mut(&key) {
            Some(entry) if entry.0 > 1 => entry.0 -= 1,
            Some(entry) => {
                let since = entry.1.min(start);
                self.total_ticks = self.total_ticks.saturating_add(end.saturating_sub(since));
                self.open.remove(&key);
            }
            // Its start was not seen (the analyzer was turned on while it ran): its own
            // interval is all that is known of it.
            None => {
                self.total_ticks = self.total_ticks.saturating_add(end.saturating_sub(start));
            }
        }
    }

    /// The union of the finished stretches, ticks.
    pub(crate) fn total_ticks(&self) -> u64 {
        self.total_ticks
    }

    /// Calls that ended.
    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }
}

/// What a node's timed LLM calls add to its timings: their time, and the time to first
/// token of the streamed ones.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeLlm {
    pub(crate) flight: Flight,
    /// Streamed calls that sent a first chunk.
    pub(crate) streamed: u64,
    /// Their time to first token, ns; boxed and made on the first one, so that nodes without
    /// streamed calls carry no histogram.
    ttft: Option<Box<TtftStats>>,
    /// Tool calls (see [`ToolCall`](crate::ToolCall)).
    pub(crate) tools: Flight,
}

#[derive(Clone, Debug)]
struct TtftStats {
    histogram: Histogram,
    min: u64,
    max: u64,
}

impl NodeLlm {
    /// Adds one time to first token, ns.
    pub(crate) fn add_ttft(&mut self, ns: u64) {
        self.streamed += 1;
        let stats = self.ttft.get_or_insert_with(|| {
            Box::new(TtftStats {
                histogram: Histogram::new(),
                min: ns,
                max: ns,
            })
        });
        stats.histogram.record(ns);
        stats.min = stats.min.min(ns);
        stats.max = stats.max.max(ns);
    }

    /// The time to first token at quantile `q`, ns, within the seen extremes (a bucket's
    /// midpoint may lie outside them); `None` without streamed calls.
    pub(crate) fn ttft_quantile(&self, q: f64) -> Option<u64> {
        self.ttft
            .as_ref()
            .map(|s| s.histogram.quantile(q).clamp(s.min, s.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_calls_of_one_execution_count_once() {
        let mut flight = Flight::default();
        flight.started(7, 100);
        flight.started(7, 110);
        flight.ended(7, 110, 300);
        assert_eq!(flight.total_ticks(), 0, "one call still in flight");
        flight.ended(7, 100, 310);
        assert_eq!((flight.total_ticks(), flight.calls()), (210, 2));
        assert!(flight.open.is_empty());
    }

    #[test]
    fn calls_of_different_executions_add_up() {
        let mut flight = Flight::default();
        flight.started(1, 0);
        flight.started(2, 0);
        flight.ended(1, 0, 200);
        flight.ended(2, 0, 200);
        assert_eq!(flight.total_ticks(), 400);
    }

    #[test]
    fn sequential_calls_and_gaps() {
        let mut flight = Flight::default();
        flight.started(0, 0);
        flight.ended(0, 0, 50);
        flight.started(0, 80);
        flight.ended(0, 80, 100);
        assert_eq!(flight.total_ticks(), 70);
        // A call whose start was never seen counts its own interval.
        flight.ended(0, 200, 230);
        assert_eq!((flight.total_ticks(), flight.calls()), (100, 3));
    }

    #[test]
    fn ttft_quantiles_stay_within_what_was_seen() {
        let mut llm = NodeLlm::default();
        assert_eq!(llm.ttft_quantile(0.5), None);
        llm.add_ttft(305_000_000);
        assert_eq!(llm.ttft_quantile(0.5), Some(305_000_000));
        for ns in [100_000_000, 200_000_000, 400_000_000] {
            llm.add_ttft(ns);
        }
        let p95 = llm.ttft_quantile(0.95).unwrap();
        assert!((300_000_000..=400_000_000).contains(&p95), "{p95}");
        assert_eq!(llm.streamed, 4);
    }
}
