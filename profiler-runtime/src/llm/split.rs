//! The per-node accounting of timed calls: the union of their intervals, and their time to
//! first token.

use std::collections::HashMap;

use crate::histogram::{BUCKETS, Histogram};

/// The bytes of a histogram's buckets.
const HISTOGRAM_BYTES: usize = BUCKETS * std::mem::size_of::<u64>();

/// The union of the intervals of a node's calls, kept without storing intervals: per
/// execution of the node (its trace span, or 0 without trace mode), the calls in flight,
/// when the first of them began and the latest end among those that ended. The union grows
/// by a stretch each time the count falls to zero, so two concurrent calls count once;
/// memory is one entry per execution with a call in flight.
#[derive(Clone, Debug, Default)]
pub(crate) struct Flight {
    /// The union of finished stretches, ticks.
    total_ticks: u64,
    /// Finished calls.
    calls: u64,
    /// Per execution with calls in flight.
    open: HashMap<u64, Open>,
}

/// The calls of one execution in flight.
#[derive(Clone, Copy, Debug)]
struct Open {
    calls: u32,
    since: u64,
    /// The latest end among its calls that ended: calls are handed over a little after they
    /// end, not always in the order they ended.
    latest_end: u64,
}

impl Flight {
    /// A call of execution `key` started at `tick`. Every start must be matched by an
    /// [`ended`](Self::ended) with `counted` true (the call's drop guarantees it).
    pub(crate) fn started(&mut self, key: u64, tick: u64) {
        let entry = self.open.entry(key).or_insert(Open {
            calls: 0,
            since: tick,
            latest_end: tick,
        });
        entry.since = entry.since.min(tick);
        entry.calls += 1;
    }

    /// A call of execution `key` that started at `start` ended at `end` (ticks); `counted`:
    /// whether its start was given to [`started`](Self::started).
    pub(crate) fn ended(&mut self, key: u64, start: u64, end: u64, counted: bool) {
        self.calls += 1;
        let entry = self.open.get_mut(&key).filter(|_| counted);
        let Some(entry) = entry else {
            // Its start was not seen (the analyzer was turned on while it ran): its own
            // interval is all that is known of it.
            self.total_ticks = self.total_ticks.saturating_add(end.saturating_sub(start));
            return;
        };
        entry.latest_end = entry.latest_end.max(end);
        entry.calls -= 1;
        if entry.calls == 0 {
            let stretch = entry.latest_end.saturating_sub(entry.since);
            self.total_ticks = self.total_ticks.saturating_add(stretch);
            self.open.remove(&key);
        }
    }

    /// A start that will never end as a call (the analyzer was turned off meanwhile): it
    /// only leaves the count.
    pub(crate) fn forget(&mut self, key: u64) {
        if let Some(entry) = self.open.get_mut(&key) {
            entry.calls -= 1;
            if entry.calls == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// The union so far at tick `now`: the finished stretches, and those still open up to
    /// `now` (a node with a call always in flight still shows its wait).
    pub(crate) fn total_ticks_at(&self, now: u64) -> u64 {
        let open: u64 = self
            .open
            .values()
            .map(|o| now.max(o.latest_end).saturating_sub(o.since))
            .sum();
        self.total_ticks.saturating_add(open)
    }

    /// Calls that ended.
    pub(crate) fn calls(&self) -> u64 {
        self.calls
    }

    /// Bytes held for calls in flight.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.open.capacity() * std::mem::size_of::<(u64, Open)>()
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

    /// Bytes held beyond the struct: calls in flight and the TTFT histogram.
    pub(crate) fn memory_bytes(&self) -> usize {
        let ttft = self
            .ttft
            .as_ref()
            .map_or(0, |_| std::mem::size_of::<TtftStats>() + HISTOGRAM_BYTES);
        self.flight.memory_bytes() + self.tools.memory_bytes() + ttft
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
        flight.ended(7, 110, 300, true);
        assert_eq!(flight.total_ticks_at(300), 200, "one call still in flight");
        flight.ended(7, 100, 310, true);
        assert_eq!((flight.total_ticks_at(0), flight.calls()), (210, 2));
        assert!(flight.open.is_empty());
    }

    #[test]
    fn calls_handed_over_out_of_order_keep_the_latest_end() {
        let mut flight = Flight::default();
        flight.started(0, 0);
        flight.started(0, 5);
        // The one that ended last is handed over first.
        flight.ended(0, 5, 120, true);
        flight.ended(0, 0, 100, true);
        assert_eq!(flight.total_ticks_at(0), 120);
    }

    #[test]
    fn calls_of_different_executions_add_up() {
        let mut flight = Flight::default();
        flight.started(1, 0);
        flight.started(2, 0);
        flight.ended(1, 0, 200, true);
        flight.ended(2, 0, 200, true);
        assert_eq!(flight.total_ticks_at(0), 400);
    }

    #[test]
    fn sequential_calls_gaps_and_starts_not_seen() {
        let mut flight = Flight::default();
        flight.started(0, 0);
        flight.ended(0, 0, 50, true);
        flight.started(0, 80);
        flight.ended(0, 80, 100, true);
        assert_eq!(flight.total_ticks_at(0), 70);
        // A call whose start was never seen counts its own interval, and leaves a call in
        // flight alone.
        flight.started(0, 300);
        flight.ended(0, 200, 230, false);
        assert_eq!(flight.open[&0].calls, 1);
        assert_eq!(flight.total_ticks_at(300), 100);
        // Still in flight at 350: 50 so far.
        assert_eq!(flight.total_ticks_at(350), 150);
        flight.forget(0);
        assert!(flight.open.is_empty());
        assert_eq!(flight.calls(), 3);
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
        assert!(llm.memory_bytes() > HISTOGRAM_BYTES);
    }
}
