//! The buffer that keeps spans in trace mode, and the span ids of running calls.
//!
//! A call takes a span id at its start (from a per-thread counter: no shared write) and
//! claims a slot of the analyzer's buffer when it ends (one atomic add). The buffer keeps the
//! first `capacity` spans and poll slices; later ones are counted, never kept.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::{PollSlice, Span, Trace};
use crate::clock::Conversion;
use crate::context::HOT;
use crate::cost::CostInfo;
use crate::outcome::Outcome;
use crate::site::CallSite;

const KIND_SYNC: u8 = 1;
const KIND_ASYNC: u8 = 2;
const KIND_POLL: u8 = 3;

/// A span's identity while it runs: its id, its parent's, and the node running when it
/// started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanIds {
    pub(crate) id: u64,
    pub(crate) parent: u64,
    pub(crate) parent_site: Option<&'static CallSite>,
    pub(crate) thread: u64,
}

/// A finished span or poll in ticks, as the call path hands it over.
pub(crate) struct RawSpan {
    pub(crate) kind: u8,
    pub(crate) site: &'static CallSite,
    pub(crate) ids: SpanIds,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) busy: u64,
    pub(crate) outcome: Outcome,
}

struct Slot {
    ready: AtomicBool,
    kind: AtomicU8,
    outcome: AtomicU8,
    site: AtomicPtr<CallSite>,
    parent_site: AtomicPtr<CallSite>,
    id: AtomicU64,
    parent: AtomicU64,
    thread: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
    busy: AtomicU64,
}

/// The analyzer's trace buffer: slots claimed with one atomic add, written by the claiming
/// thread, published with a release store of `ready`.
pub(crate) struct TraceBuffer {
    trace_id: u128,
    slots: Box<[Slot]>,
    /// Slots claimed so far, including claims past the end (which count as dropped).
    claimed: AtomicUsize,
    /// Spans recorded by hand (`record_node`), already in Unix ns; they count against the
    /// same capacity.
    manual: Mutex<Vec<Span>>,
    /// LLM calls by span id, at most `capacity` of them.
    llm: Mutex<Vec<(u64, CostInfo)>>,
    llm_dropped: AtomicU64,
}

impl std::fmt::Debug for TraceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceBuffer")
            .field("capacity", &self.slots.len())
            .field("claimed", &self.claimed)
            .finish_non_exhaustive()
    }
}

impl TraceBuffer {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            trace_id: random_trace_id(seed),
            slots: (0..capacity)
                .map(|_| Slot {
                    ready: AtomicBool::new(false),
                    kind: AtomicU8::new(0),
                    outcome: AtomicU8::new(0),
                    site: AtomicPtr::new(std::ptr::null_mut()),
                    parent_site: AtomicPtr::new(std::ptr::null_mut()),
                    id: AtomicU64::new(0),
                    parent: AtomicU64::new(0),
                    thread: AtomicU64::new(0),
                    start: AtomicU64::new(0),
                    end: AtomicU64::new(0),
                    busy: AtomicU64::new(0),
                })
                .collect(),
            claimed: AtomicUsize::new(0),
            manual: Mutex::new(Vec::new()),
            llm: Mutex::new(Vec::new()),
            llm_dropped: AtomicU64::new(0),
        }
    }

    fn claim(&self) -> Option<&Slot> {
        self.slots.get(self.claimed.fetch_add(1, Ordering::Relaxed))
    }

    /// Keeps a finished span or poll, or counts it as dropped when the buffer is full.
    pub(crate) fn push(&self, raw: &RawSpan) {
        let Some(slot) = self.claim() else { return };
        slot.kind.store(raw.kind, Ordering::Relaxed);
        slot.outcome.store(raw.outcome as u8, Ordering::Relaxed);
        slot.site
            .store(std::ptr::from_ref(raw.site).cast_mut(), Ordering::Relaxed);
        slot.parent_site.store(
            raw.ids
                .parent_site
                .map_or(std::ptr::null_mut(), |s| std::ptr::from_ref(s).cast_mut()),
            Ordering::Relaxed,
        );
        slot.id.store(raw.ids.id, Ordering::Relaxed);
        slot.parent.store(raw.ids.parent, Ordering::Relaxed);
        slot.thread.store(raw.ids.thread, Ordering::Relaxed);
        slot.start.store(raw.start, Ordering::Relaxed);
        slot.end.store(raw.end, Ordering::Relaxed);
        slot.busy.store(raw.busy, Ordering::Relaxed);
        slot.ready.store(true, Ordering::Release);
    }

    /// Keeps a span recorded by hand (already in Unix ns).
    pub(crate) fn push_manual(&self, span: Span) {
        if self.claim().is_some() {
            self.manual
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(span);
        }
    }

    /// Attaches an LLM call to the span running now on this thread (if any).
    pub(crate) fn add_llm_call(&self, span_id: u64, info: &CostInfo) {
        let mut llm = self.llm.lock().unwrap_or_else(PoisonError::into_inner);
        if span_id == 0 || llm.len() >= self.slots.len() {
            self.llm_dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            llm.push((span_id, info.clone()));
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// What the buffer holds now. Spans still being written by another thread are left out.
    pub(crate) fn snapshot(&self) -> Trace {
        let conv = Conversion::current();
        let claimed = self.claimed.load(Ordering::Relaxed);
        let mut trace = Trace {
            trace_id: format!("{:032x}", self.trace_id),
            capacity: self.slots.len(),
            dropped: claimed.saturating_sub(self.slots.len()) as u64,
            ..Trace::default()
        };
        let mut ended = Vec::new();
        for slot in &self.slots[..claimed.min(self.slots.len())] {
            if !slot.ready.load(Ordering::Acquire) {
                continue;
            }
            let end = conv.tick_to_unix_ns(slot.end.load(Ordering::Relaxed));
            let start = conv.tick_to_unix_ns(slot.start.load(Ordering::Relaxed));
            let id = slot.id.load(Ordering::Relaxed);
            let thread = slot.thread.load(Ordering::Relaxed);
            let kind = slot.kind.load(Ordering::Relaxed);
            if kind == KIND_POLL {
                trace.polls.push(PollSlice {
                    span_id: id,
                    thread,
                    start_unix_ns: start,
                    end_unix_ns: end,
                });
                continue;
            }
            // SAFETY: `push` stores only `&'static CallSite`s (or null for the parent), and
            // the acquire load of `ready` makes those stores visible.
            let site: &'static CallSite = unsafe { &*slot.site.load(Ordering::Relaxed) };
            let parent_site = unsafe { slot.parent_site.load(Ordering::Relaxed).as_ref() };
            let parent = slot.parent.load(Ordering::Relaxed);
            ended.push(Span {
                span_id: id,
                parent_span_id: (parent != 0).then_some(parent),
                node_id: Cow::Borrowed(site.id()),
                parent_node_id: parent_site.map(|s| Cow::Borrowed(s.id())),
                start_unix_ns: start,
                end_unix_ns: end,
                // Converted on its own, busy time could round 1 ns past the wall time.
                busy_ns: if kind == KIND_SYNC {
                    end.saturating_sub(start)
                } else {
                    conv.ticks_to_ns(slot.busy.load(Ordering::Relaxed))
                        .min(end.saturating_sub(start))
                },
                thread,
                is_async: kind == KIND_ASYNC,
                outcome: Outcome::from_u8(slot.outcome.load(Ordering::Relaxed)),
                llm_calls: Vec::new(),
            });
        }
        ended.extend(
            self.manual
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned(),
        );
        ended.sort_by_key(|s| s.end_unix_ns);
        trace.polls.sort_by_key(|p| p.end_unix_ns);
        trace.unattached_llm_calls = self.llm_dropped.load(Ordering::Relaxed);
        let by_id: std::collections::HashMap<u64, usize> = ended
            .iter()
            .enumerate()
            .map(|(index, span)| (span.span_id, index))
            .collect();
        for (span_id, info) in self
            .llm
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            match by_id.get(span_id).map(|&index| &mut ended[index]) {
                Some(span) => span.llm_calls.push(info.clone()),
                None => trace.unattached_llm_calls += 1,
            }
        }
        trace.spans = ended;
        trace
    }
}

pub(crate) const SYNC: u8 = KIND_SYNC;
pub(crate) const ASYNC: u8 = KIND_ASYNC;
pub(crate) const POLL: u8 = KIND_POLL;

/// Takes a span id for a call starting now on this thread, with the running span as its
/// parent; the running span stays as it is (an async node becomes the running span only
/// inside its polls).
#[cold]
#[inline(never)]
pub(crate) fn new_span(parent_site: Option<&'static CallSite>) -> SpanIds {
    HOT.with(|h| {
        let thread = h.thread.get();
        let counter = h.next_span.get().wrapping_add(1);
        h.next_span.set(counter);
        // Thread ids start at 1, so an id is never 0 (0 means "no span").
        let id = (thread << 32) | u64::from(counter);
        SpanIds {
            id,
            parent: h.span.get(),
            parent_site,
            thread,
        }
    })
}

thread_local! {
    /// The parents of the sync calls with a span running on this thread, innermost last.
    /// Sync calls end in the reverse order they started (also when unwinding), so a stack
    /// pairs each end with its start.
    static SPAN_STACK: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Starts the span of a sync call: it becomes the running span until [`end_span`].
pub(crate) fn begin_nested_span() {
    let ids = new_span(None);
    let _ = SPAN_STACK.try_with(|stack| {
        if let Ok(mut stack) = stack.try_borrow_mut() {
            stack.push(ids.parent);
        }
    });
    HOT.with(|h| h.span.set(ids.id));
}

/// Ends the span [`begin_nested_span`] started last on this thread: returns its id and its
/// parent's, and makes the parent the running span again.
pub(crate) fn end_span() -> (u64, u64) {
    let parent = SPAN_STACK
        .try_with(|stack| stack.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .unwrap_or(0);
    (HOT.with(|h| h.span.replace(parent)), parent)
}

/// The span running on this thread (0 when none, or when trace mode is off).
pub(crate) fn current_span() -> u64 {
    HOT.with(|h| h.span.get())
}

/// A new span id for a call recorded by hand, with the running span as its parent.
pub(crate) fn manual_span_ids() -> (u64, u64, u64) {
    HOT.with(|h| {
        let counter = h.next_span.get().wrapping_add(1);
        h.next_span.set(counter);
        // Manual spans may come from threads that never met an analyzer: they get a thread
        // id now (with 0, every such thread would hand out the same ids). The top bit keeps
        // these ids apart from every profiled call's.
        let thread = crate::context::thread_id(h);
        let id = (1 << 63) | (thread << 32) | u64::from(counter);
        (id, h.span.get(), thread)
    })
}

/// A random 128-bit trace id: two draws of [`random_u64`]'s generator, also mixed with
/// `seed`.
fn random_trace_id(seed: u64) -> u128 {
    let mut state = entropy() ^ seed.rotate_left(17);
    let high = splitmix64(&mut state);
    let low = splitmix64(&mut state);
    (u128::from(high) << 64) | u128::from(low.max(1))
}

/// A value that differs at each call and from process to process: the clock, the address
/// space layout and a per-process counter.
fn entropy() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let address = std::ptr::from_ref(&local) as u64;
    now ^ address ^ COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A random 64-bit value, different at every call: the clock, the address space layout and a
/// per-process counter mixed by [`splitmix64`]. For ids (trace and span ids) and for the
/// jitter of retry waits; not cryptographic.
pub fn random_u64() -> u64 {
    let mut state = entropy();
    splitmix64(&mut state)
}

/// SplitMix64: advances `state` by a fixed odd constant and returns the next value of its
/// sequence, a 64-bit mix of it. From one seed, the same sequence of well-spread values
/// (ids derived from other ids); from [`random_u64`], random ones.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    static SITE: CallSite = CallSite::new("traced", false);

    fn raw(id: u64, start: u64) -> RawSpan {
        RawSpan {
            kind: KIND_SYNC,
            site: &SITE,
            ids: SpanIds {
                id,
                parent: 0,
                parent_site: None,
                thread: 1,
            },
            start,
            end: start + 5,
            busy: 5,
            outcome: Outcome::Ok,
        }
    }

    #[test]
    fn keeps_the_first_spans_and_counts_the_rest() {
        let buffer = TraceBuffer::new(3, 7);
        for i in 1..=5 {
            buffer.push(&raw(i, i * 10));
        }
        let trace = buffer.snapshot();
        assert_eq!(trace.spans.len(), 3);
        assert_eq!(trace.dropped, 2);
        assert_eq!(trace.capacity, 3);
        let ids: Vec<u64> = trace.spans.iter().map(|s| s.span_id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(trace.spans[0].node_id, "traced");
        assert_eq!(trace.trace_id.len(), 32);
        assert_ne!(trace.trace_id_bytes(), [0; 16]);
    }

    #[test]
    fn llm_calls_attach_to_their_span_or_are_counted() {
        let buffer = TraceBuffer::new(4, 1);
        buffer.push(&raw(9, 0));
        let info = crate::MultiProviderCostTracker::new()
            .track_usage("openai", "gpt-4o", crate::Usage::new(100, 10))
            .unwrap();
        buffer.add_llm_call(9, &info);
        buffer.add_llm_call(77, &info);
        buffer.add_llm_call(0, &info);
        let trace = buffer.snapshot();
        assert_eq!(trace.spans[0].llm_calls.len(), 1);
        assert_eq!(trace.spans[0].llm_totals().input_tokens, 100);
        assert_eq!(trace.unattached_llm_calls, 2);
    }

    #[test]
    fn trace_ids_differ() {
        assert_ne!(random_trace_id(1), random_trace_id(1));
    }
}
