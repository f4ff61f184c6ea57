//! The buffer that keeps spans in trace mode, and the span ids of running calls.
//!
//! A call takes a span id at its start (from a per-thread counter: no shared write) and a
//! slot of the analyzer's buffer when it ends. A thread takes slots in runs (up to
//! [`RUN_MAX`], fewer as the buffer fills) with one atomic add per run, and then writes each
//! slot it owns with plain stores published by one release store: the call path does no
//! atomic read-modify-write and takes no lock. The buffer keeps the first spans and poll
//! slices up to its capacity; later ones are counted, never kept.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use super::folded::Folded;
use super::{PollSlice, Span, Trace};
use crate::clock::Conversion;
use crate::context::HOT;
use crate::cost::CostInfo;
use crate::outcome::Outcome;
use crate::site::CallSite;
use crate::stats::{Call, Stats};

/// A slot claimed and left empty for good: the place of a span recorded by hand (kept
/// apart), or the rest of the run of a thread that exited. Marked written so that readers
/// never wait for it.
const KIND_NONE: u8 = 0;
const KIND_SYNC: u8 = 1;
const KIND_ASYNC: u8 = 2;
const KIND_POLL: u8 = 3;

/// Set in a slot's `meta` once the slot is written (with the kind in the low byte and the
/// outcome in the next): a slot whose `meta` is 0 was claimed and not written yet.
const WRITTEN: u32 = 1 << 16;
/// Set in a sync span's `meta` when the slot holds its call's statistics (its self time in
/// `busy`): the node's counters were not updated on the call path, and the readers fold the
/// span into them (see `folded`).
const HOLDS_STATS: u32 = 1 << 17;

/// Slots a thread takes at most with one atomic add.
const RUN_MAX: usize = 64;
/// A run is at most this fraction of the slots left, so that a thread holds few slots it may
/// never use (a thread that stops making calls leaves the rest of its run empty): at most
/// `capacity / RUN_SHARE` per thread, and the last runs are single slots.
const RUN_SHARE: usize = 1024;

/// A span's identity while it runs: its id, its parent's, and the node running when it
/// started.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanIds {
    pub(crate) id: u64,
    pub(crate) parent: u64,
    pub(crate) parent_site: Option<&'static CallSite>,
    /// The thread the span started on (for a poll: the thread that polled), which is also
    /// `id >> 32` for the span itself (see [`new_span`]).
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

impl RawSpan {
    /// The span of the sync call `call`.
    #[inline(always)]
    pub(crate) fn sync(site: &'static CallSite, ids: SpanIds, call: &Call) -> Self {
        Self {
            kind: KIND_SYNC,
            site,
            ids,
            start: call.start,
            end: call.end,
            busy: call.busy,
            outcome: call.outcome,
        }
    }
}

/// One span or poll slice: one cache line. The thread of a span is not stored, since it is
/// `id >> 32`; a poll slice keeps its polling thread in `parent` (a poll has no parent).
/// Sync spans leave `busy` unwritten (their busy time is their wall time), or hold their
/// self time there when the slot stands for the call's statistics ([`HOLDS_STATS`]).
#[repr(C, align(64))]
struct Slot {
    /// 0 until written; then [`WRITTEN`], the kind and the outcome, stored last with release
    /// ordering so that a reader that sees it with acquire sees every other field.
    meta: AtomicU32,
    site: AtomicPtr<CallSite>,
    parent_site: AtomicPtr<CallSite>,
    id: AtomicU64,
    parent: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
    busy: AtomicU64,
}

impl Slot {
    fn empty() -> Self {
        Self {
            meta: AtomicU32::new(0),
            site: AtomicPtr::new(std::ptr::null_mut()),
            parent_site: AtomicPtr::new(std::ptr::null_mut()),
            id: AtomicU64::new(0),
            parent: AtomicU64::new(0),
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            busy: AtomicU64::new(0),
        }
    }

    /// Marks this claimed slot as empty for good ([`KIND_NONE`]).
    fn void(&self) {
        self.meta
            .store(WRITTEN | u32::from(KIND_NONE), Ordering::Release);
    }

    /// Writes `raw` into this slot and publishes it; `self_time`: a sync call's, when the
    /// slot stands for the call's statistics. Only the thread that claimed the slot writes
    /// it, once; the relaxed stores are plain stores, and the release store of `meta`
    /// publishes them.
    #[inline(always)]
    fn write(&self, raw: &RawSpan, self_time: Option<u64>) {
        self.site
            .store(std::ptr::from_ref(raw.site).cast_mut(), Ordering::Relaxed);
        self.id.store(raw.ids.id, Ordering::Relaxed);
        self.start.store(raw.start, Ordering::Relaxed);
        self.end.store(raw.end, Ordering::Relaxed);
        if raw.kind == KIND_POLL {
            self.parent.store(raw.ids.thread, Ordering::Relaxed);
        } else {
            self.parent.store(raw.ids.parent, Ordering::Relaxed);
            self.parent_site.store(
                raw.ids
                    .parent_site
                    .map_or(std::ptr::null_mut(), |s| std::ptr::from_ref(s).cast_mut()),
                Ordering::Relaxed,
            );
        }
        let mut meta = WRITTEN | u32::from(raw.kind) | (u32::from(raw.outcome as u8) << 8);
        match self_time {
            Some(self_time) => {
                self.busy.store(self_time, Ordering::Relaxed);
                meta |= HOLDS_STATS;
            }
            None if raw.kind != KIND_SYNC => self.busy.store(raw.busy, Ordering::Relaxed),
            None => {}
        }
        self.meta.store(meta, Ordering::Release);
    }
}

/// How many slots ahead of the one being written a thread asks for its cache line: slots
/// are written in order and each is a line of its own, which the write would otherwise wait
/// for.
const PREFETCH_AHEAD: usize = 8;

/// Asks for the cache line at `at` (a hint: never faults, whatever the address).
#[inline(always)]
fn prefetch(at: *const Slot) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and never faults, whatever the address (`at` may be
    // past the end of the buffer, computed with `wrapping_add`).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// The run of slots one thread holds in one analyzer's buffer: `next..end`, not written yet.
/// Lives in that thread's shard and is touched only by that thread (see
/// [`TraceBuffer::push_owned`]).
#[derive(Debug, Default)]
pub(crate) struct SlotRun {
    next: Cell<usize>,
    end: Cell<usize>,
}

/// The analyzer's trace buffer: slots claimed in runs with one atomic add, each written by
/// the thread that claimed it, published with a release store of its `meta`.
pub(crate) struct TraceBuffer {
    trace_id: u128,
    slots: Box<[Slot]>,
    /// Slots handed out so far (singly or in runs); may pass the capacity, whose excess is
    /// no slot.
    claimed: AtomicUsize,
    /// Spans and polls that found no slot: counted, not kept.
    dropped: AtomicU64,
    /// Spans recorded by hand (`record_node`), already in Unix ns; they count against the
    /// same capacity.
    manual: Mutex<Vec<Span>>,
    /// LLM calls by span id, at most `capacity` of them.
    llm: Mutex<Vec<(u64, CostInfo)>>,
    llm_dropped: AtomicU64,
    /// The statistics of the calls whose slot holds them, folded by the readers.
    folded: Mutex<Folded>,
}

impl std::fmt::Debug for TraceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceBuffer")
            .field("capacity", &self.slots.len())
            .field("claimed", &self.claimed)
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl TraceBuffer {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        let capacity = capacity.max(1);
        Self {
            trace_id: random_trace_id(seed),
            // Written (with zeros) now, so that the call path never meets a fresh page.
            slots: (0..capacity).map(|_| Slot::empty()).collect(),
            claimed: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            manual: Mutex::new(Vec::new()),
            llm: Mutex::new(Vec::new()),
            llm_dropped: AtomicU64::new(0),
            folded: Mutex::new(Folded::new(capacity)),
        }
    }

    /// One slot, or `None` (counted as dropped) when the buffer is full.
    fn claim(&self) -> Option<&Slot> {
        // A full buffer stops handing out indices, so `claimed` cannot grow without bound.
        if self.claimed.load(Ordering::Relaxed) < self.slots.len()
            && let Some(slot) = self.slots.get(self.claimed.fetch_add(1, Ordering::Relaxed))
        {
            return Some(slot);
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keeps a finished span or poll, or counts it as dropped when the buffer is full: for a
    /// thread with no run of its own in this buffer (see [`push_owned`](Self::push_owned)).
    pub(crate) fn push(&self, raw: &RawSpan) {
        if let Some(slot) = self.claim() {
            slot.write(raw, None);
        }
    }

    /// Keeps a finished span or poll in the next slot of `run`, taking a new run when it is
    /// used up, or counts it as dropped when the buffer is full.
    ///
    /// `run` must be the run of the calling thread in this buffer (its shard's): two threads
    /// writing through one run could write one slot twice.
    #[inline]
    pub(crate) fn push_owned(&self, run: &SlotRun, raw: &RawSpan) {
        if let Some(slot) = self.next_owned(run) {
            slot.write(raw, None);
        }
    }

    /// Keeps a finished sync call's span in the next slot of `run` together with what its
    /// node's counters need (`self_time`), so that the readers count the call from the span
    /// (see `folded`); returns false when the buffer is full (the span counted as dropped),
    /// and then the caller must count the call itself. `run` as for
    /// [`push_owned`](Self::push_owned).
    #[inline]
    pub(crate) fn push_owned_counted(&self, run: &SlotRun, raw: &RawSpan, self_time: u64) -> bool {
        debug_assert_eq!(raw.kind, KIND_SYNC);
        match self.next_owned(run) {
            Some(slot) => {
                slot.write(raw, Some(self_time));
                true
            }
            None => false,
        }
    }

    /// The next slot of `run`, taking a new run when it is used up; `None` (counted as
    /// dropped) when the buffer is full.
    #[inline(always)]
    fn next_owned(&self, run: &SlotRun) -> Option<&Slot> {
        let next = run.next.get();
        let index = if next < run.end.get() {
            run.next.set(next + 1);
            next
        } else {
            self.take_run(run)?
        };
        let slot = self.slots.get(index)?;
        prefetch(self.slots.as_ptr().wrapping_add(index + PREFETCH_AHEAD));
        Some(slot)
    }

    /// Marks the slots `run` still holds as empty for good: for a thread that makes no more
    /// calls (it is exiting), so that readers stop looking at them. `run` as for
    /// [`push_owned`](Self::push_owned).
    pub(crate) fn close_run(&self, run: &SlotRun) {
        let end = run.end.get().min(self.slots.len());
        for slot in &self.slots[run.next.get().min(end)..end] {
            slot.void();
        }
        run.next.set(end);
    }

    /// Calls `each` with the counters, per call site, of every call whose slot holds its
    /// statistics: those published since the last read are folded in first. Calls still
    /// being written are counted at a later read.
    pub(crate) fn counted_calls(&self, mut each: impl FnMut(&'static CallSite, &Stats)) {
        let written = self.claimed.load(Ordering::Relaxed).min(self.slots.len());
        let mut folded = self.folded.lock().unwrap_or_else(PoisonError::into_inner);
        folded.fold(written, |index| {
            let slot = &self.slots[index];
            let meta = slot.meta.load(Ordering::Acquire);
            if meta == 0 {
                return None;
            }
            Some((meta & HOLDS_STATS != 0).then(|| call_of(slot, meta)))
        });
        for (site, stats) in folded.totals() {
            each(site, stats);
        }
    }

    /// Takes a new run of slots for `run` and returns its first slot (the run holds the
    /// rest), or counts a drop when the buffer is full.
    #[cold]
    #[inline(never)]
    fn take_run(&self, run: &SlotRun) -> Option<usize> {
        let capacity = self.slots.len();
        let claimed = self.claimed.load(Ordering::Relaxed);
        if claimed < capacity {
            let wanted = ((capacity - claimed) / RUN_SHARE).clamp(1, RUN_MAX);
            let first = self.claimed.fetch_add(wanted, Ordering::Relaxed);
            if first < capacity {
                run.next.set(first + 1);
                run.end.set((first + wanted).min(capacity));
                return Some(first);
            }
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Keeps a span recorded by hand (already in Unix ns).
    pub(crate) fn push_manual(&self, span: Span) {
        // The slot only counts the span against the capacity; it is marked empty, so that
        // readers skip it once and for all.
        if let Some(slot) = self.claim() {
            slot.void();
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
        std::mem::size_of::<Self>()
            + self.slots.len() * std::mem::size_of::<Slot>()
            + self
                .folded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .memory_bytes()
    }

    /// What the buffer holds now. Spans still being written by another thread are left out.
    pub(crate) fn snapshot(&self) -> Trace {
        let conv = Conversion::current();
        let written = self.claimed.load(Ordering::Relaxed).min(self.slots.len());
        let manual = self.manual.lock().unwrap_or_else(PoisonError::into_inner);
        let mut spans = Vec::with_capacity(written + manual.len());
        let mut polls = Vec::new();
        // Read in order, the spans need no second pass (over all of them, in memory) to
        // find so; spans recorded by hand are checked with one.
        let mut in_order = read_slots(&self.slots[..written], &conv, &mut spans, &mut polls);
        if !manual.is_empty() {
            spans.extend(manual.iter().cloned());
            in_order = spans.is_sorted_by_key(|s| s.end_unix_ns);
        }
        drop(manual);
        if !in_order {
            sort_by_end(&mut spans);
        }
        if !polls.is_sorted_by_key(|p: &PollSlice| p.end_unix_ns) {
            polls.sort_by_key(|p| p.end_unix_ns);
        }
        let mut trace = Trace {
            trace_id: format!("{:032x}", self.trace_id),
            spans,
            polls,
            capacity: self.slots.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
            unattached_llm_calls: self.llm_dropped.load(Ordering::Relaxed),
        };
        let llm = self.llm.lock().unwrap_or_else(PoisonError::into_inner);
        trace.unattached_llm_calls += attach_llm_calls(&mut trace.spans, &llm);
        trace
    }
}

/// Reads the written slots into `spans` (empty, with room for one span per slot) and
/// `polls`; returns whether the spans came in the order they ended. Where the CPU has SSE4.1
/// (nearly every x86-64 one), the same code is compiled to round the tick conversion with one
/// instruction instead of a call per timestamp.
fn read_slots(
    slots: &[Slot],
    conv: &Conversion,
    spans: &mut Vec<Span>,
    polls: &mut Vec<PollSlice>,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("sse4.1") {
        // SAFETY: the CPU has SSE4.1, checked just above.
        return unsafe { read_slots_sse41(slots, conv, spans, polls) };
    }
    read_slots_with(slots, conv, spans, polls)
}

/// [`read_slots_with`] compiled for SSE4.1.
///
/// # Safety
/// Only on a CPU with SSE4.1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn read_slots_sse41(
    slots: &[Slot],
    conv: &Conversion,
    spans: &mut Vec<Span>,
    polls: &mut Vec<PollSlice>,
) -> bool {
    read_slots_with(slots, conv, spans, polls)
}

#[inline(always)]
fn read_slots_with(
    slots: &[Slot],
    conv: &Conversion,
    spans: &mut Vec<Span>,
    polls: &mut Vec<PollSlice>,
) -> bool {
    let before = spans.len();
    // Each span is built in its place in the vector, not built and then copied there.
    let room = spans.spare_capacity_mut();
    let mut kept = 0;
    // In ticks: the conversion to ns keeps their order.
    let mut last_end = 0;
    let mut in_order = true;
    for slot in slots {
        let meta = slot.meta.load(Ordering::Acquire);
        // Not written yet (`meta` 0), or empty for good.
        if meta as u8 == KIND_NONE {
            continue;
        }
        if meta as u8 == KIND_POLL {
            polls.push(poll_of(slot, conv));
        } else if let Some(place) = room.get_mut(kept) {
            // Always some: the caller made room for one span per slot.
            let end = slot.end.load(Ordering::Relaxed);
            in_order &= end >= last_end;
            last_end = end;
            place.write(span_of(slot, meta, conv));
            kept += 1;
        }
    }
    // SAFETY: the `kept` places after the first `before` were written just above.
    unsafe { spans.set_len(before + kept) };
    in_order
}

/// The span a written slot holds (`meta`: its `meta`, loaded with acquire).
#[inline(always)]
fn span_of(slot: &Slot, meta: u32, conv: &Conversion) -> Span {
    let kind = meta as u8;
    let start = conv.tick_to_unix_ns(slot.start.load(Ordering::Relaxed));
    let end = conv.tick_to_unix_ns(slot.end.load(Ordering::Relaxed));
    let id = slot.id.load(Ordering::Relaxed);
    let parent = slot.parent.load(Ordering::Relaxed);
    // SAFETY: `Slot::write` stores only `&'static CallSite`s (or null for the parent), and
    // the acquire load of `meta` makes those stores visible.
    let site: &'static CallSite = unsafe { &*slot.site.load(Ordering::Relaxed) };
    // SAFETY: as above.
    let parent_site = unsafe { slot.parent_site.load(Ordering::Relaxed).as_ref() };
    Span {
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
        thread: id >> 32,
        is_async: kind == KIND_ASYNC,
        outcome: Outcome::from_u8((meta >> 8) as u8),
        llm_calls: Vec::new(),
    }
}

/// The call a slot that holds its statistics stands for, in ticks (`meta`: its `meta`,
/// loaded with acquire).
fn call_of(slot: &Slot, meta: u32) -> (&'static CallSite, Call) {
    let start = slot.start.load(Ordering::Relaxed);
    let end = slot.end.load(Ordering::Relaxed);
    // SAFETY: as in `span_of`.
    let site: &'static CallSite = unsafe { &*slot.site.load(Ordering::Relaxed) };
    let call = Call {
        start,
        end,
        self_time: slot.busy.load(Ordering::Relaxed),
        busy: end.saturating_sub(start),
        outcome: Outcome::from_u8((meta >> 8) as u8),
    };
    (site, call)
}

/// The poll slice a written slot of kind poll holds.
#[inline(always)]
fn poll_of(slot: &Slot, conv: &Conversion) -> PollSlice {
    PollSlice {
        span_id: slot.id.load(Ordering::Relaxed),
        thread: slot.parent.load(Ordering::Relaxed),
        start_unix_ns: conv.tick_to_unix_ns(slot.start.load(Ordering::Relaxed)),
        end_unix_ns: conv.tick_to_unix_ns(slot.end.load(Ordering::Relaxed)),
    }
}

/// Puts `spans` (not in order: the caller checked) in the order they ended, spans that
/// ended at the same time in the order they came: the keys are sorted and the spans moved
/// once each, never through the comparisons of a sort.
fn sort_by_end(spans: &mut [Span]) {
    let mut order: Vec<(u64, u32)> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.end_unix_ns, i as u32))
        .collect();
    order.sort_unstable();
    // `from[k]`: where the span that belongs at `k` is now. Each cycle of the permutation
    // is walked once with swaps; a visited position is marked by `from[k] = k`.
    let mut from: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
    for start in 0..from.len() {
        let mut at = start;
        loop {
            let source = from[at] as usize;
            from[at] = at as u32;
            if source == start || source == at {
                break;
            }
            spans.swap(at, source);
            at = source;
        }
    }
}

/// Attaches each LLM call to the span with its id, in the order the calls were added;
/// returns how many calls found no span.
fn attach_llm_calls(spans: &mut [Span], llm: &[(u64, CostInfo)]) -> u64 {
    if llm.is_empty() {
        return 0;
    }
    let mut order: Vec<usize> = (0..llm.len()).collect();
    // Stable: the calls of one span keep the order they were added in.
    order.sort_by_key(|&i| llm[i].0);
    let mut attached = vec![false; llm.len()];
    for span in spans {
        let first = order.partition_point(|&i| llm[i].0 < span.span_id);
        for &i in order[first..]
            .iter()
            .take_while(|&&i| llm[i].0 == span.span_id)
        {
            span.llm_calls.push(llm[i].1.clone());
            attached[i] = true;
        }
    }
    attached.iter().filter(|&&a| !a).count() as u64
}

pub(crate) const ASYNC: u8 = KIND_ASYNC;
pub(crate) const POLL: u8 = KIND_POLL;

/// Takes a span id for a call starting now on this thread, with the running span as its
/// parent; the running span stays as it is (an async node becomes the running span only
/// inside its polls).
#[cold]
#[inline(never)]
pub(crate) fn new_span(parent_site: Option<&'static CallSite>) -> SpanIds {
    HOT.with(|h| SpanIds {
        id: next_span_id(h),
        parent: h.span.get(),
        parent_site,
        thread: h.thread.get(),
    })
}

/// A new span id for a call of this thread: the thread's id above its counter, so that the
/// snapshot reads the thread back from the id. Thread ids start at 1, so an id is never 0
/// (0 means "no span").
#[inline(always)]
fn next_span_id(h: &crate::context::Hot) -> u64 {
    let counter = h.next_span.get().wrapping_add(1);
    h.next_span.set(counter);
    (h.thread.get() << 32) | u64::from(counter)
}

/// The parents of the sync calls with a span running on this thread, innermost last, as
/// an array that needs no lazy set-up (a `const` thread-local without destructor: reaching it
/// is one TLS-relative load), with the deeper ones in `OVERFLOW`. Sync calls end in the
/// reverse order they started (also when unwinding), so a stack pairs each end with its
/// start.
struct Parents {
    /// Sync spans running on this thread (their parents are at `0..depth`).
    depth: Cell<usize>,
    inline: [Cell<u64>; INLINE_PARENTS],
}

/// Nesting depth of sync spans kept without the heap.
const INLINE_PARENTS: usize = 32;

thread_local! {
    static PARENTS: Parents = const {
        Parents { depth: Cell::new(0), inline: [const { Cell::new(0) }; INLINE_PARENTS] }
    };
    /// The parents beyond the first `INLINE_PARENTS`, innermost last.
    static OVERFLOW: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Starts the span of a sync call: it becomes the running span until [`end_span`].
#[inline(always)]
pub(crate) fn begin_nested_span() {
    let parent = HOT.with(|h| h.span.replace(next_span_id(h)));
    PARENTS.with(|p| {
        let depth = p.depth.get();
        match p.inline.get(depth) {
            Some(cell) => cell.set(parent),
            None => push_overflow(parent),
        }
        p.depth.set(depth + 1);
    });
}

/// Ends the span [`begin_nested_span`] started last on this thread: returns its id and its
/// parent's, and makes the parent the running span again.
#[inline(always)]
pub(crate) fn end_span() -> (u64, u64) {
    let parent = PARENTS.with(|p| {
        let Some(depth) = p.depth.get().checked_sub(1) else {
            return 0;
        };
        p.depth.set(depth);
        match p.inline.get(depth) {
            Some(cell) => cell.get(),
            None => pop_overflow(),
        }
    });
    (HOT.with(|h| h.span.replace(parent)), parent)
}

#[cold]
#[inline(never)]
fn push_overflow(parent: u64) {
    let _ = OVERFLOW.try_with(|stack| {
        if let Ok(mut stack) = stack.try_borrow_mut() {
            stack.push(parent);
        }
    });
}

#[cold]
#[inline(never)]
fn pop_overflow() -> u64 {
    OVERFLOW
        .try_with(|stack| stack.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .ok()
        .flatten()
        .unwrap_or(0)
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

    /// Threads pushing through their own runs, as the call path does: with room for all
    /// (and for the runs threads leave unfinished), every span is kept once; with less,
    /// every span is kept or counted, never lost, and at most one run per thread of the
    /// buffer stays empty.
    #[test]
    fn runs_keep_every_span_or_count_it() {
        const THREADS: u64 = 4;
        const EACH: u64 = 5_000;
        let roomy = (THREADS * EACH) as usize + THREADS as usize * RUN_MAX;
        for capacity in [roomy, (THREADS * EACH) as usize, 777, 1] {
            let buffer = TraceBuffer::new(capacity, 3);
            std::thread::scope(|s| {
                for t in 1..=THREADS {
                    let buffer = &buffer;
                    s.spawn(move || {
                        let run = SlotRun::default();
                        for i in 1..=EACH {
                            let mut span = raw((t << 32) | i, i * 10);
                            span.ids.thread = t;
                            buffer.push_owned(&run, &span);
                        }
                    });
                }
            });
            let trace = buffer.snapshot();
            let kept = trace.spans.len() as u64;
            assert_eq!(kept + trace.dropped, THREADS * EACH, "capacity {capacity}");
            assert!(kept <= capacity as u64);
            let unfinished_runs = THREADS * (capacity / RUN_SHARE).clamp(1, RUN_MAX) as u64;
            assert!(
                kept + unfinished_runs >= (capacity as u64).min(THREADS * EACH),
                "capacity {capacity}: {kept} kept"
            );
            let ids: std::collections::HashSet<u64> =
                trace.spans.iter().map(|s| s.span_id).collect();
            assert_eq!(ids.len() as u64, kept, "no span kept twice");
            assert!(trace.spans.iter().all(|s| s.thread == s.span_id >> 32));
            if capacity == roomy {
                assert_eq!(trace.dropped, 0);
            }
            assert!(trace.spans.is_sorted_by_key(|s| s.end_unix_ns));
        }
    }

    #[test]
    fn spans_come_out_in_the_order_they_ended() {
        let buffer = TraceBuffer::new(64, 5);
        let ends = [50, 10, 40, 10, 30, 60, 20, 5];
        for (i, &end) in ends.iter().enumerate() {
            buffer.push(&raw(i as u64 + 1, end - 5));
        }
        let trace = buffer.snapshot();
        let got: Vec<u64> = trace.spans.iter().map(|s| s.span_id).collect();
        // By end; ties keep the order the spans were kept in.
        assert_eq!(got, [8, 2, 4, 7, 5, 3, 1, 6]);
        assert!(trace.spans.is_sorted_by_key(|s| s.end_unix_ns));
    }

    #[test]
    fn polls_between_spans_leave_their_order_alone() {
        let buffer = TraceBuffer::new(8, 4);
        let poll = |start| RawSpan {
            kind: KIND_POLL,
            ..raw(9, start)
        };
        // A poll that ended last, between spans in order, then one that ended first after
        // a span out of order.
        buffer.push(&raw(1, 10));
        buffer.push(&poll(90));
        buffer.push(&raw(2, 20));
        buffer.push(&raw(3, 5));
        buffer.push(&poll(0));
        let trace = buffer.snapshot();
        let got: Vec<u64> = trace.spans.iter().map(|s| s.span_id).collect();
        assert_eq!(got, [3, 1, 2]);
        assert_eq!(trace.polls.len(), 2);
    }

    #[test]
    fn spans_recorded_by_hand_take_their_place_among_the_kept_ones() {
        let buffer = TraceBuffer::new(8, 3);
        buffer.push(&raw(1, 10));
        buffer.push(&raw(2, 20));
        // The kept spans end in order, as read; one recorded by hand ended before both.
        let mut early = crate::trace::test_support::span(3, None, "by_hand", 0, 1);
        early.thread = 9;
        buffer.push_manual(early);
        let trace = buffer.snapshot();
        let got: Vec<u64> = trace.spans.iter().map(|s| s.span_id).collect();
        assert_eq!(got, [3, 1, 2]);
    }

    #[test]
    fn several_llm_calls_of_one_span_keep_their_order() {
        let buffer = TraceBuffer::new(8, 2);
        buffer.push(&raw(2, 0));
        buffer.push(&raw(1, 5));
        let tracker = crate::MultiProviderCostTracker::new();
        for (span, tokens) in [(1, 10), (2, 20), (1, 30), (3, 1)] {
            let info = tracker
                .track_usage("openai", "gpt-4o", crate::Usage::new(tokens, 1))
                .unwrap();
            buffer.add_llm_call(span, &info);
        }
        let trace = buffer.snapshot();
        let tokens = |id: u64| -> Vec<u64> {
            let span = trace.spans.iter().find(|s| s.span_id == id).unwrap();
            span.llm_calls.iter().map(|c| c.input_tokens).collect()
        };
        assert_eq!(tokens(1), [10, 30]);
        assert_eq!(tokens(2), [20]);
        assert_eq!(trace.unattached_llm_calls, 1);
    }

    /// Slots that will never hold a span (a span recorded by hand, the rest of an exiting
    /// thread's run) are marked so: readers see them once and never again.
    #[test]
    fn slots_left_empty_for_good_are_seen_once() {
        let buffer = TraceBuffer::new(300, 4);
        let run = SlotRun::default();
        let counted = |buffer: &TraceBuffer| {
            let mut calls = 0;
            buffer.counted_calls(|_, stats| calls += stats.calls);
            calls
        };
        buffer.push_owned_counted(&run, &raw(1, 0), 3);
        let manual = Span {
            node_id: Cow::Borrowed("by_hand"),
            ..buffer.snapshot().spans[0].clone()
        };
        buffer.push_manual(manual);
        buffer.push_owned_counted(&run, &raw(2, 10), 3);
        assert_eq!(counted(&buffer), 2);
        // The run's unused rest keeps readers at its first slot until the thread exits.
        let first_unseen = buffer.folded.lock().unwrap().first_unseen();
        assert_eq!(first_unseen, run.next.get());
        buffer.close_run(&run);
        assert_eq!(counted(&buffer), 2);
        let first_unseen = buffer.folded.lock().unwrap().first_unseen();
        assert_eq!(
            first_unseen,
            buffer.claimed.load(Ordering::Relaxed).min(300)
        );
        let trace = buffer.snapshot();
        assert_eq!(
            trace.spans.len(),
            3,
            "two spans and the one by hand: {trace:?}"
        );
    }

    #[test]
    fn trace_ids_differ() {
        assert_ne!(random_trace_id(1), random_trace_id(1));
    }
}
