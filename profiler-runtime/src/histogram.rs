//! A log-linear histogram of durations: constant memory, mergeable, about 6% resolution.
//!
//! Each power of two is split into 8 equal buckets, so a value is known to within one
//! eighth of its octave. 496 buckets cover the whole `u64` range, whatever the unit.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Number of buckets: 8 exact small values, then 8 per octave up to 2^64.
pub(crate) const BUCKETS: usize = ((64 - SUB_BITS + 1) as usize) * SUB as usize;

/// The bucket that holds `value`.
#[inline(always)]
pub(crate) fn bucket_of(value: u64) -> usize {
    if value < SUB {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = (value >> (exponent - SUB_BITS)) & (SUB - 1);
    ((exponent - SUB_BITS + 1) as u64 * SUB + mantissa) as usize
}

/// The smallest value that falls in bucket `bucket`.
fn bucket_low(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB {
        return bucket;
    }
    let exponent = bucket / SUB + u64::from(SUB_BITS) - 1;
    let mantissa = bucket % SUB;
    (SUB + mantissa) << (exponent - u64::from(SUB_BITS))
}

/// The largest value that falls in bucket `bucket`.
fn bucket_high(bucket: usize) -> u64 {
    if bucket + 1 >= BUCKETS {
        u64::MAX
    } else {
        bucket_low(bucket + 1) - 1
    }
}

/// The value that stands for a whole bucket: its midpoint.
fn bucket_value(bucket: usize) -> u64 {
    let (low, high) = (bucket_low(bucket), bucket_high(bucket));
    low + (high - low) / 2
}

/// A histogram of `u64` values (durations in some unit) with constant memory.
///
/// ```
/// use agent_profiler_runtime::Histogram;
///
/// let mut h = Histogram::new();
/// for v in 1..=100 {
///     h.record(v);
/// }
/// let p50 = h.quantile(0.5);
/// assert!((47..=53).contains(&p50), "{p50}");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
        }
    }

    /// Adds one value.
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    fn record_n(&mut self, value: u64, n: u64) {
        let slot = &mut self.counts[bucket_of(value)];
        *slot = slot.saturating_add(n);
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().fold(0, |a, &c| a.saturating_add(c))
    }

    /// Adds every value of `other` to this histogram.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    /// The value at quantile `q` (0.0 to 1.0, nearest rank), as the midpoint of its bucket;
    /// 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0_u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return bucket_value(bucket);
            }
        }
        bucket_value(BUCKETS - 1)
    }

    /// The same distribution with every value multiplied by `factor` (a change of unit).
    pub(crate) fn scaled(&self, factor: f64) -> Histogram {
        if factor == 1.0 {
            return self.clone();
        }
        let mut out = Histogram::new();
        for (bucket, &count) in self.counts.iter().enumerate() {
            if count != 0 {
                out.record_n((bucket_value(bucket) as f64 * factor).round() as u64, count);
            }
        }
        out
    }
}

/// Cold-side reads for scrapers, resets and windows: none of these is on the call path.
impl Histogram {
    /// For each bound (ascending, each the lower edge of a bucket, as the values of
    /// [`bucket_low`] are), how many values fell below it: the cumulative count at that
    /// bucket edge, exact.
    pub(crate) fn cumulative_below(&self, bounds: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds.len());
        let mut seen = 0_u64;
        let mut next = 0_usize;
        for &bound in bounds {
            let edge = bucket_of(bound);
            debug_assert_eq!(bucket_low(edge), bound, "{bound} is not a bucket edge");
            while next < edge.min(BUCKETS) {
                seen = seen.saturating_add(self.counts[next]);
                next += 1;
            }
            out.push(seen);
        }
        out
    }

    /// The values recorded here and not in `earlier`, an older copy of the same counts
    /// (bucket by bucket, never below zero).
    pub(crate) fn since(&self, earlier: &Histogram) -> Histogram {
        let mut out = self.clone();
        for (mine, before) in out.counts.iter_mut().zip(earlier.counts.iter()) {
            *mine = mine.saturating_sub(*before);
        }
        out
    }

    /// The smallest and the largest value the non-empty buckets can hold; `None` when empty.
    pub(crate) fn value_range(&self) -> Option<(u64, u64)> {
        let low = self.counts.iter().position(|&c| c != 0)?;
        let high = self.counts.iter().rposition(|&c| c != 0)?;
        Some((bucket_low(low), bucket_high(high)))
    }

    /// The non-empty buckets as (bucket, count): what a window keeps of a histogram.
    pub(crate) fn to_sparse(&self) -> Vec<(u16, u64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c != 0)
            .map(|(bucket, &c)| (bucket as u16, c))
            .collect()
    }

    /// The histogram of [`to_sparse`](Self::to_sparse)'s pairs.
    pub(crate) fn from_sparse(pairs: &[(u16, u64)]) -> Histogram {
        let mut out = Histogram::new();
        for &(bucket, count) in pairs {
            if let Some(slot) = out.counts.get_mut(usize::from(bucket)) {
                *slot = count;
            }
        }
        out
    }
}

/// The per-thread form of [`Histogram`]: written only by the thread that owns it, read by any.
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; BUCKETS],
}

impl AtomicHistogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds one value. Only the owning thread may call this: it is a load and a store, not an
    /// atomic read-modify-write, which is what keeps it cheap.
    #[inline(always)]
    pub(crate) fn record_owned(&self, value: u64) {
        let slot = &self.counts[bucket_of(value)];
        slot.store(
            slot.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// A copy of the counts as they are now.
    pub(crate) fn snapshot(&self) -> Histogram {
        let mut out = Histogram::new();
        for (dst, src) in out.counts.iter_mut().zip(self.counts.iter()) {
            *dst = src.load(Ordering::Relaxed);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for bucket in 0..BUCKETS - 1 {
            assert_eq!(
                bucket_high(bucket) + 1,
                bucket_low(bucket + 1),
                "bucket {bucket}"
            );
            assert_eq!(bucket_of(bucket_low(bucket)), bucket);
            assert_eq!(bucket_of(bucket_high(bucket)), bucket);
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_of(0), 0);
    }

    #[test]
    fn bucket_resolution_is_within_an_eighth() {
        for v in [9_u64, 100, 1_000, 123_456, 10_000_000_000, u64::MAX / 3] {
            let mid = bucket_value(bucket_of(v));
            let err = mid.abs_diff(v) as f64 / v as f64;
            assert!(err <= 0.0625, "{v} -> {mid} ({err})");
        }
    }

    #[test]
    fn quantiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        let p99 = h.quantile(0.99) as f64;
        assert!((p99 - 990_000.0).abs() / 990_000.0 < 0.07, "{p99}");
        assert!(
            (930..1070).contains(&h.quantile(0.0)),
            "{}",
            h.quantile(0.0)
        );
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn merge_adds_counts_and_scale_changes_unit() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        a.record(10);
        b.record(1_000);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        let scaled = a.scaled(1000.0);
        assert_eq!(scaled.count(), 2);
        let top = scaled.quantile(1.0);
        assert!((950_000..=1_070_000).contains(&top), "{top}");
    }

    #[test]
    fn cumulative_counts_at_bucket_edges_are_exact() {
        let mut h = Histogram::new();
        for v in [0_u64, 7, 1023, 1024, 1535, 1536, 5_000] {
            h.record(v);
        }
        assert_eq!(
            h.cumulative_below(&[8, 1024, 1536, 2048, 1 << 40]),
            [2, 3, 5, 6, 7]
        );
        let mut later = h.clone();
        later.record(1024);
        let since = later.since(&h);
        assert_eq!(since.count(), 1);
        assert_eq!(since.value_range(), Some((1024, 1151)));
        assert_eq!(Histogram::from_sparse(&later.to_sparse()), later);
        assert_eq!(Histogram::new().value_range(), None);
    }

    #[test]
    fn atomic_snapshot_matches_plain_records() {
        let atomic = AtomicHistogram::new();
        let mut plain = Histogram::new();
        for v in [0, 5, 77, 4096, 1 << 40] {
            atomic.record_owned(v);
            plain.record(v);
        }
        assert_eq!(atomic.snapshot(), plain);
    }
}
