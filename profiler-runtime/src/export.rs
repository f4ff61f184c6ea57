//! Per-call records for exporters (MLflow metrics, traces): a bounded ring per thread that
//! the call path fills without locking, and that an exporter drains from another thread.
//!
//! Off by default: then the call path pays one load and a branch for it. On, each call
//! writes four words into its thread's ring; when a ring is full (the exporter is behind)
//! the call is still counted in the analyzer's totals, and only its per-call record is
//! dropped and counted as such.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU64, Ordering};

use crate::clock::Conversion;
use crate::outcome::Outcome;
use crate::shard::Shard;
use crate::site::CallSite;
use crate::stats::Call;

/// Per-call records each thread can hold before an exporter drains them.
pub const DEFAULT_RING_CAPACITY: usize = 4096;

/// One finished call of a node, as handed to exporters.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    /// The node id.
    pub node_id: String,
    /// The call's (wall) duration, ms.
    pub duration_ms: f64,
    /// When the call started, ms since the Unix epoch.
    pub start_unix_ms: f64,
    /// When the call ended, ms since the Unix epoch.
    pub end_unix_ms: f64,
    /// How the call ended.
    pub outcome: Outcome,
    /// 0 for the node's first exported call, then 1, 2, ... in the order the calls ended
    /// (within what each drain sees).
    pub call_index: u64,
}

/// A call kept in the ring: ticks, converted when drained.
#[derive(Clone, Copy)]
pub(crate) struct RawRecord {
    pub(crate) site: &'static CallSite,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) outcome: Outcome,
}

impl RawRecord {
    pub(crate) fn to_record(self, conv: &Conversion) -> CallRecord {
        CallRecord {
            node_id: self.site.id().to_owned(),
            duration_ms: conv.ticks_to_ns(self.end.saturating_sub(self.start)) as f64 / 1e6,
            start_unix_ms: conv.tick_to_unix_ns(self.start) as f64 / 1e6,
            end_unix_ms: conv.tick_to_unix_ns(self.end) as f64 / 1e6,
            outcome: self.outcome,
            call_index: 0,
        }
    }
}

struct Entry {
    site: AtomicPtr<CallSite>,
    start: AtomicU64,
    end: AtomicU64,
    outcome: AtomicU8,
}

/// A single-producer (the owning thread), single-consumer (the analyzer's drain, under its
/// lock) ring. The producer publishes with a release store of `head`; the consumer frees
/// space with a release store of `tail`.
pub(crate) struct CallRing {
    entries: Box<[Entry]>,
    head: AtomicU64,
    tail: AtomicU64,
    /// Written by the producer only.
    dropped: AtomicU64,
}

impl CallRing {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: (0..capacity)
                .map(|_| Entry {
                    site: AtomicPtr::new(std::ptr::null_mut()),
                    start: AtomicU64::new(0),
                    end: AtomicU64::new(0),
                    outcome: AtomicU8::new(0),
                })
                .collect(),
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    fn capacity(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Adds a call, or counts it as dropped when the ring is full. Owner thread only.
    #[inline]
    pub(crate) fn push_owned(&self, site: &'static CallSite, call: &Call) {
        let head = self.head.load(Ordering::Relaxed);
        if head - self.tail.load(Ordering::Acquire) >= self.capacity() {
            let dropped = self.dropped.load(Ordering::Relaxed);
            self.dropped.store(dropped + 1, Ordering::Relaxed);
            return;
        }
        let entry = &self.entries[(head % self.capacity()) as usize];
        entry
            .site
            .store(std::ptr::from_ref(site).cast_mut(), Ordering::Relaxed);
        entry.start.store(call.start, Ordering::Relaxed);
        entry.end.store(call.end, Ordering::Relaxed);
        entry.outcome.store(call.outcome as u8, Ordering::Relaxed);
        self.head.store(head + 1, Ordering::Release);
    }

    /// Moves every published call into `out`. One consumer at a time (the caller's lock).
    pub(crate) fn drain_into(&self, out: &mut Vec<RawRecord>) {
        let tail = self.tail.load(Ordering::Relaxed);
        let head = self.head.load(Ordering::Acquire);
        for position in tail..head {
            let entry = &self.entries[(position % self.capacity()) as usize];
            let site = entry.site.load(Ordering::Relaxed);
            // SAFETY: only `push_owned` writes `site`, always from a `&'static CallSite`, and
            // the acquire load of `head` makes that write visible here.
            let site: &'static CallSite = unsafe { &*site };
            out.push(RawRecord {
                site,
                start: entry.start.load(Ordering::Relaxed),
                end: entry.end.load(Ordering::Relaxed),
                outcome: Outcome::from_u8(entry.outcome.load(Ordering::Relaxed)),
            });
        }
        self.tail.store(head, Ordering::Release);
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.entries.len() * std::mem::size_of::<Entry>()
    }
}

/// The analyzer's side of export: records that outlived their ring (threads that exited,
/// calls recorded by hand) and each node's next call index. Behind the analyzer's lock, which
/// also makes it the single consumer of every ring.
#[derive(Default)]
pub(crate) struct ExportState {
    pending: VecDeque<CallRecord>,
    pending_dropped: u64,
    next_index: HashMap<String, u64>,
}

impl ExportState {
    /// Keeps a record until the next drain, within `capacity` records.
    pub(crate) fn keep(&mut self, record: CallRecord, capacity: usize) {
        if self.pending.len() >= capacity {
            self.pending_dropped += 1;
        } else {
            self.pending.push_back(record);
        }
    }

    /// Keeps what an exiting thread's ring still holds.
    pub(crate) fn keep_ring_of(&mut self, shard: &Shard, capacity: usize) {
        let mut raw = Vec::new();
        shard.drain_calls(&mut raw);
        self.pending_dropped += shard.dropped_calls();
        if raw.is_empty() {
            return;
        }
        let conv = Conversion::current();
        for record in raw {
            self.keep(record.to_record(&conv), capacity);
        }
    }

    /// Moves every waiting record into `out`, in the order the calls ended, numbered per node.
    pub(crate) fn drain(&mut self, shards: &[Arc<Shard>], out: &mut Vec<CallRecord>) -> usize {
        let mut raw = Vec::new();
        for shard in shards {
            shard.drain_calls(&mut raw);
        }
        let mut batch: Vec<CallRecord> = self.pending.drain(..).collect();
        if !raw.is_empty() {
            let conv = Conversion::current();
            batch.extend(raw.into_iter().map(|r| r.to_record(&conv)));
        }
        batch.sort_by(|a, b| a.end_unix_ms.total_cmp(&b.end_unix_ms));
        for record in &mut batch {
            let next = self.next_index.entry(record.node_id.clone()).or_insert(0);
            record.call_index = *next;
            *next += 1;
        }
        let drained = batch.len();
        out.extend(batch);
        drained
    }

    /// Records dropped outside the live rings (pending overflow, rings of exited threads).
    pub(crate) fn dropped(&self) -> u64 {
        self.pending_dropped
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.pending.capacity() * std::mem::size_of::<CallRecord>()
            + self.next_index.capacity() * std::mem::size_of::<(String, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SITE: CallSite = CallSite::new("ring", false);

    fn call(start: u64) -> Call {
        Call {
            start,
            end: start + 10,
            self_time: 10,
            busy: 10,
            outcome: Outcome::Error,
        }
    }

    #[test]
    fn a_full_ring_drops_and_counts_and_draining_frees_space() {
        let ring = CallRing::new(3);
        for i in 0..5 {
            ring.push_owned(&SITE, &call(i));
        }
        assert_eq!(ring.dropped(), 2);
        let mut out = Vec::new();
        ring.drain_into(&mut out);
        assert_eq!(out.iter().map(|r| r.start).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(out[0].outcome, Outcome::Error);
        assert_eq!(out[0].site.id(), "ring");
        ring.push_owned(&SITE, &call(7));
        out.clear();
        ring.drain_into(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].start, 7);
    }

    #[test]
    fn producer_and_consumer_on_two_threads_lose_nothing_they_do_not_count() {
        let ring = std::sync::Arc::new(CallRing::new(64));
        let producer = {
            let ring = ring.clone();
            std::thread::spawn(move || {
                for i in 0..100_000 {
                    ring.push_owned(&SITE, &call(i));
                }
            })
        };
        let mut seen = Vec::new();
        while !producer.is_finished() {
            ring.drain_into(&mut seen);
        }
        producer.join().unwrap();
        ring.drain_into(&mut seen);
        assert_eq!(seen.len() as u64 + ring.dropped(), 100_000);
        assert!(seen.windows(2).all(|w| w[0].start < w[1].start), "in order");
    }
}
