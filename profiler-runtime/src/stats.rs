//! Per-node counters: the atomic slot a thread writes on the call path, and the plain copy
//! that summaries merge and convert.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::clock::Conversion;
use crate::histogram::{AtomicHistogram, Histogram};
use crate::outcome::Outcome;

/// One finished call, in ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// Inclusive time less the time of profiled calls nested in it.
    pub(crate) self_time: u64,
    /// Time spent running (inside `poll` for async nodes; the whole call for sync ones).
    pub(crate) busy: u64,
    pub(crate) outcome: Outcome,
}

impl Call {
    pub(crate) fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
}

/// Counters of one node, in one unit (ticks before conversion, nanoseconds after).
/// Timestamps are in the same clock as the durations (ticks, or Unix nanoseconds).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Stats {
    pub(crate) calls: u64,
    pub(crate) total: u64,
    pub(crate) self_total: u64,
    pub(crate) busy: u64,
    pub(crate) min: u64,
    pub(crate) max: u64,
    pub(crate) last: u64,
    pub(crate) first_start: u64,
    pub(crate) last_end: u64,
    pub(crate) outcomes: [u64; 4],
    pub(crate) histogram: Histogram,
}

impl Stats {
    /// Adds one call.
    pub(crate) fn add(&mut self, call: &Call) {
        let duration = call.duration();
        if self.calls == 0 {
            self.min = duration;
            self.first_start = call.start;
        }
        self.calls += 1;
        self.total = self.total.saturating_add(duration);
        self.self_total = self.self_total.saturating_add(call.self_time);
        self.busy = self.busy.saturating_add(call.busy);
        self.min = self.min.min(duration);
        self.max = self.max.max(duration);
        if call.end >= self.last_end {
            self.last = duration;
            self.last_end = call.end;
        }
        self.outcomes[call.outcome.index()] += 1;
        self.histogram.record(duration);
    }

    /// Adds every call counted in `other` (same unit).
    pub(crate) fn merge(&mut self, other: &Stats) {
        if other.calls == 0 {
            return;
        }
        if self.calls == 0 {
            *self = other.clone();
            return;
        }
        self.calls += other.calls;
        self.total = self.total.saturating_add(other.total);
        self.self_total = self.self_total.saturating_add(other.self_total);
        self.busy = self.busy.saturating_add(other.busy);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.first_start = self.first_start.min(other.first_start);
        if other.last_end >= self.last_end {
            self.last = other.last;
            self.last_end = other.last_end;
        }
        for (mine, theirs) in self.outcomes.iter_mut().zip(other.outcomes) {
            *mine += theirs;
        }
        self.histogram.merge(&other.histogram);
    }

    /// The calls counted here and not in `baseline`, an older copy of the same counters
    /// taken at `reset` (same unit and clock): what the analysis shows after
    /// [`BottleneckAnalyzer::reset`](crate::BottleneckAnalyzer::reset). Sums, outcome
    /// counts and the histogram are exact differences. Extremes are exact when a call since
    /// the reset set them (a new minimum or maximum); otherwise they are the edges of the
    /// histogram buckets that hold the calls since the reset, kept within the all-time
    /// extremes (within about 6%). `last` is exact (the latest call is one since the reset);
    /// `first_start` is exact for a counter whose first call came after the reset, and is
    /// the reset itself otherwise. No call since the reset gives empty counters.
    pub(crate) fn since(&self, baseline: &Stats, reset: u64) -> Stats {
        let calls = self.calls.saturating_sub(baseline.calls);
        if calls == 0 {
            return Stats::default();
        }
        let histogram = self.histogram.since(&baseline.histogram);
        let (low, high) = histogram.value_range().unwrap_or((self.min, self.max));
        let min = if baseline.calls == 0 || self.min < baseline.min {
            self.min
        } else {
            low.clamp(self.min, self.max)
        };
        let max = if baseline.calls == 0 || self.max > baseline.max {
            self.max
        } else {
            high.clamp(min, self.max)
        };
        let mut outcomes = self.outcomes;
        for (now, before) in outcomes.iter_mut().zip(baseline.outcomes) {
            *now = now.saturating_sub(before);
        }
        Stats {
            calls,
            total: self.total.saturating_sub(baseline.total),
            self_total: self.self_total.saturating_sub(baseline.self_total),
            busy: self.busy.saturating_sub(baseline.busy),
            min,
            max,
            last: self.last,
            first_start: self.first_start.max(reset),
            last_end: self.last_end,
            outcomes,
            histogram,
        }
    }

    /// Ticks to nanoseconds, tick timestamps to Unix nanoseconds.
    pub(crate) fn converted(&self, conv: &Conversion) -> Stats {
        let ns = |ticks| conv.ticks_to_ns(ticks);
        Stats {
            calls: self.calls,
            total: ns(self.total),
            self_total: ns(self.self_total),
            busy: ns(self.busy),
            min: ns(self.min),
            max: ns(self.max),
            last: ns(self.last),
            first_start: conv.tick_to_unix_ns(self.first_start),
            last_end: conv.tick_to_unix_ns(self.last_end),
            outcomes: self.outcomes,
            histogram: self
                .histogram
                .scaled(conv.ticks_to_ns(1 << 20) as f64 / f64::from(1 << 20)),
        }
    }
}

/// The counters of one node on one thread. Only the owning thread writes them (plain loads
/// and stores, no read-modify-write); summaries read them from any thread. Aligned to two
/// cache lines so that slots of different threads never share one.
#[repr(align(128))]
pub(crate) struct Slot {
    calls: AtomicU64,
    total: AtomicU64,
    self_total: AtomicU64,
    /// Wall time not spent running (`duration - busy`): zero for sync calls, so they skip
    /// the store.
    waiting: AtomicU64,
    min: AtomicU64,
    max: AtomicU64,
    last: AtomicU64,
    /// Set when the slot is made, for its first call.
    first_start: AtomicU64,
    last_end: AtomicU64,
    /// Counts of the outcomes other than `Ok` (index 0 unused): `Ok` is what remains of
    /// `calls`, which saves the common case a store.
    outcomes: [AtomicU64; 4],
    histogram: AtomicHistogram,
}

#[inline(always)]
fn add_owned(cell: &AtomicU64, by: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl Slot {
    /// A slot for calls of which the first started at `first_start`.
    pub(crate) fn new(first_start: u64) -> Self {
        Self {
            calls: AtomicU64::new(0),
            total: AtomicU64::new(0),
            self_total: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
            min: AtomicU64::new(u64::MAX),
            max: AtomicU64::new(0),
            last: AtomicU64::new(0),
            first_start: AtomicU64::new(first_start),
            last_end: AtomicU64::new(0),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            histogram: AtomicHistogram::new(),
        }
    }

    /// Adds one call. Only the owning thread may call this.
    #[inline(always)]
    pub(crate) fn record_owned(&self, call: &Call) {
        let duration = call.duration();
        add_owned(&self.total, duration);
        add_owned(&self.self_total, call.self_time);
        let waiting = duration.saturating_sub(call.busy);
        if waiting != 0 {
            add_owned(&self.waiting, waiting);
        }
        if duration < self.min.load(Ordering::Relaxed) {
            self.min.store(duration, Ordering::Relaxed);
        }
        if duration > self.max.load(Ordering::Relaxed) {
            self.max.store(duration, Ordering::Relaxed);
        }
        self.last.store(duration, Ordering::Relaxed);
        self.last_end.store(call.end, Ordering::Relaxed);
        if call.outcome != Outcome::Ok {
            add_owned(&self.outcomes[call.outcome.index()], 1);
        }
        self.histogram.record_owned(duration);
        // Release, paired with the Acquire in `snapshot`: a reader that sees this call's
        // count sees its other counters too (free on x86; needed on weaker memory models).
        let calls = self.calls.load(Ordering::Relaxed);
        self.calls.store(calls + 1, Ordering::Release);
    }

    /// A copy of the counters as they are now (each counter is exact; a call being recorded
    /// at this moment may show in some counters and not yet in others).
    pub(crate) fn snapshot(&self) -> Stats {
        let calls = self.calls.load(Ordering::Acquire);
        let get = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let total = get(&self.total);
        let mut outcomes: [u64; 4] = std::array::from_fn(|i| get(&self.outcomes[i]));
        outcomes[Outcome::Ok.index()] = calls.saturating_sub(outcomes[1..].iter().sum());
        Stats {
            calls,
            total,
            self_total: get(&self.self_total),
            busy: total.saturating_sub(get(&self.waiting)),
            min: if calls == 0 { 0 } else { get(&self.min) },
            max: get(&self.max),
            last: get(&self.last),
            first_start: get(&self.first_start),
            last_end: get(&self.last_end),
            outcomes,
            histogram: self.histogram.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(start: u64, end: u64, outcome: Outcome) -> Call {
        Call {
            start,
            end,
            self_time: end - start,
            busy: end - start,
            outcome,
        }
    }

    #[test]
    fn slot_and_plain_stats_agree() {
        let slot = Slot::new(10);
        let mut plain = Stats::default();
        for c in [
            call(10, 20, Outcome::Ok),
            call(30, 35, Outcome::Error),
            call(40, 140, Outcome::Panicked),
        ] {
            slot.record_owned(&c);
            plain.add(&c);
        }
        let snap = slot.snapshot();
        assert_eq!(snap, plain);
        assert_eq!(snap.calls, 3);
        assert_eq!(snap.total, 115);
        assert_eq!((snap.min, snap.max, snap.last), (5, 100, 100));
        assert_eq!(snap.outcomes, [1, 1, 1, 0]);
        assert_eq!((snap.first_start, snap.last_end), (10, 140));
    }

    #[test]
    fn merge_keeps_the_latest_last_and_the_earliest_first() {
        let mut a = Stats::default();
        a.add(&call(100, 150, Outcome::Ok));
        let mut b = Stats::default();
        b.add(&call(10, 30, Outcome::Cancelled));
        b.add(&call(200, 207, Outcome::Ok));
        a.merge(&b);
        assert_eq!(a.calls, 3);
        assert_eq!(a.first_start, 10);
        assert_eq!((a.last, a.last_end), (7, 207));
        assert_eq!((a.min, a.max), (7, 50));
        assert_eq!(a.outcomes, [2, 0, 0, 1]);
        assert_eq!(a.histogram.count(), 3);
        let mut empty = Stats::default();
        empty.merge(&a);
        assert_eq!(empty, a);
    }

    #[test]
    fn since_a_baseline_keeps_only_the_later_calls() {
        let mut s = Stats::default();
        s.add(&call(10, 20, Outcome::Ok));
        s.add(&call(30, 1_030, Outcome::Error));
        let baseline = s.clone();
        assert_eq!(s.since(&baseline, 2_000), Stats::default());
        s.add(&call(2_100, 2_400, Outcome::Cancelled));
        let later = s.since(&baseline, 2_000);
        assert_eq!((later.calls, later.total, later.last), (1, 300, 300));
        assert_eq!(later.outcomes, [0, 0, 0, 1]);
        assert_eq!((later.first_start, later.last_end), (2_000, 2_400));
        // Neither extreme moved: both come from the bucket of the one call since (300).
        let (low, high) = later.histogram.value_range().unwrap();
        assert!(low <= 300 && 300 <= high, "{low}..{high}");
        assert_eq!((later.min, later.max), (low, high));
        // A new maximum is exact.
        s.add(&call(3_000, 5_000, Outcome::Ok));
        let later = s.since(&baseline, 2_000);
        assert_eq!((later.calls, later.max), (2, 2_000));
    }

    #[test]
    fn conversion_scales_durations_and_maps_timestamps() {
        let mut s = Stats::default();
        s.add(&call(1_000, 3_000, Outcome::Ok));
        let ns = s.converted(&Conversion::fixed(0.5, 1_000_000));
        assert_eq!(ns.total, 1_000);
        assert_eq!(ns.first_start, 1_000_500);
        assert_eq!(ns.last_end, 1_001_500);
        assert_eq!(ns.histogram.count(), 1);
    }
}
