//! Async nodes and futures that carry an analyzer across threads.

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::analyzer::BottleneckAnalyzer;
use crate::clock;
use crate::context::{self, HOT, Origin, PollInstall};
use crate::outcome::Outcome;
use crate::shard::{MODE_OFF, MODE_ON, Shard, Shared};
use crate::site::CallSite;
use crate::stats::Call;
use crate::trace::{self, RawSpan, SpanIds};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The future of an async profiled call: times it from first poll to completion (wall time)
/// and inside `poll` (busy time). Dropped after its first poll and before completion, the
/// call counts as cancelled; never polled, it records nothing.
///
/// Only `poll` is generic, and it holds no more than the inner poll, the classification and
/// two calls, one before the inner poll and one after it, of functions compiled once for
/// every node (trace mode included): each profiled `async fn` adds little code to its crate.
///
/// Emitted by `#[profile_node]`; not meant to be built by hand.
#[doc(hidden)]
#[must_use = "futures do nothing unless polled"]
pub struct NodeFuture<F: Future, C> {
    inner: F,
    /// `Fn`, called by reference: no `Option` to take it out of, which would add generic code
    /// to every node.
    classify: C,
    site: &'static CallSite,
    run: Run,
}

/// `repr(u8)`: a tag of its own, so that telling the states apart is one comparison (as a
/// niche in `Timed`, it takes a few more instructions on every poll).
#[repr(u8)]
enum Run {
    NotStarted,
    /// No analyzer was installed at the first poll: the call is not recorded.
    Untimed,
    Timed(Timed),
    Finished,
}

#[derive(Clone, Copy)]
struct Timed {
    /// The thread and analyzer current at the first poll: the call records into that
    /// analyzer wherever it finishes.
    origin: Origin,
    start: u64,
    busy: u64,
    child: u64,
    /// The poll under way: when it started, and the thread's child-time counter and running
    /// node it swapped out (put back when it ends, also by unwinding).
    poll_start: u64,
    saved_child: u64,
    saved_node: Option<&'static CallSite>,
    /// The span running before the poll under way, in trace mode.
    saved_span: u64,
    panicked: bool,
    /// The call's span, in trace mode: out of line, so that an untraced call carries one
    /// null pointer for it and tests it once a poll.
    traced: Option<TracedBox>,
}

/// An async call's span in trace mode: its ids, and the analyzer's shared state that holds
/// the trace buffer.
struct Traced {
    ids: SpanIds,
    shared: Arc<Shared>,
}

impl Traced {
    /// Keeps a poll or the whole call in the trace buffer.
    fn keep(
        &self,
        kind: u8,
        site: &'static CallSite,
        start: u64,
        end: u64,
        busy: u64,
        outcome: Outcome,
    ) {
        let Some(buffer) = self.shared.trace_buffer.get() else {
            return;
        };
        let (thread, here) = HOT.with(|h| (h.thread.get(), h.shard.get()));
        let mut ids = self.ids;
        if kind == trace::POLL {
            ids.thread = thread;
        }
        let raw = RawSpan {
            kind,
            site,
            ids,
            start,
            end,
            busy,
            outcome,
        };
        // SAFETY: a non-null `HOT.shard` is a live shard of this thread.
        match unsafe { here.as_ref() } {
            // This thread's shard of the same analyzer: its run of slots is this thread's.
            Some(shard) if Arc::ptr_eq(&shard.shared, &self.shared) => {
                buffer.push_owned(&shard.trace_run, &raw);
            }
            _ => buffer.push(&raw),
        }
    }
}

/// An owned, boxed [`Traced`], as a plain pointer: `Timed` then keeps the trivial drop it
/// has without trace mode. `finish` frees it (`Drop` calls `finish`).
#[derive(Clone, Copy)]
struct TracedBox(std::ptr::NonNull<Traced>);

// SAFETY: it owns a `Traced`, which is `Send` and `Sync`.
unsafe impl Send for TracedBox {}
// SAFETY: as above.
unsafe impl Sync for TracedBox {}

impl TracedBox {
    fn new(traced: Traced) -> Self {
        Self(std::ptr::NonNull::from(Box::leak(Box::new(traced))))
    }

    /// # Safety
    /// Not after [`into_box`](Self::into_box).
    unsafe fn get(&self) -> &Traced {
        // SAFETY: made from a leaked box, not freed yet (per the contract).
        unsafe { self.0.as_ref() }
    }

    /// Takes the box back, to free it.
    ///
    /// # Safety
    /// Once, and never used again afterwards.
    unsafe fn into_box(self) -> Box<Traced> {
        // SAFETY: made from a leaked box, taken back once (per the contract).
        unsafe { Box::from_raw(self.0.as_ptr()) }
    }
}

impl<F: Future, C: Fn(&F::Output) -> Outcome> NodeFuture<F, C> {
    /// Wraps the body of an async node; `classify` tells an error result from a success.
    #[inline]
    pub fn new(site: &'static CallSite, inner: F, classify: C) -> Self {
        Self {
            inner,
            classify,
            site,
            run: Run::NotStarted,
        }
    }
}

impl<F: Future, C: Fn(&F::Output) -> Outcome> Future for NodeFuture<F, C> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of the pinned struct (not here, not in Drop).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above; this is the structural pin projection of `inner`.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        if records_nothing(&mut this.run) {
            return inner.poll(cx);
        }
        let Some(polling) = Polling::begin(&mut this.run, this.site) else {
            return inner.poll(cx);
        };
        match inner.poll(cx) {
            Poll::Pending => {
                polling.pending();
                Poll::Pending
            }
            Poll::Ready(output) => {
                polling.ready((this.classify)(&output));
                Poll::Ready(output)
            }
        }
    }
}

/// Whether this poll records nothing: the call is not recorded (no analyzer installed at its
/// first poll, or switched off then) or has finished. Then the node's poll costs a load and
/// a branch, without the call out of line. Not generic: one copy for all nodes (called in
/// debug builds, inlined where debug assertions are off, like the guard).
#[cfg_attr(debug_assertions, inline)]
#[cfg_attr(not(debug_assertions), inline(always))]
fn records_nothing(run: &mut Run) -> bool {
    match run {
        Run::Untimed | Run::Finished => true,
        Run::NotStarted if HOT.with(|h| h.shard.get()).is_null() => {
            *run = Run::Untimed;
            true
        }
        Run::NotStarted | Run::Timed(_) => false,
    }
}

/// One poll of a recorded call, under way: the call is the thread's running node, with its
/// own child-time counter (and span, in trace mode) swapped in. [`pending`](Self::pending)
/// or [`ready`](Self::ready) ends it; dropped without either, the inner poll unwound.
///
/// Not generic, and out of line: each node's `poll` holds three calls of these instead of
/// its own copy of the recording (a call of each costs a few instructions; a copy per node
/// costs the optimizer its time in every crate that annotates many `async fn`s).
struct Polling<'a> {
    run: &'a mut Run,
    site: &'static CallSite,
}

impl<'a> Polling<'a> {
    /// The start of a poll, before the inner future's; on the first poll, whether (and how)
    /// the call is recorded. `None`: not recorded, the inner future is polled as it is.
    #[inline(never)]
    fn begin(run: &'a mut Run, site: &'static CallSite) -> Option<Self> {
        match run {
            Run::NotStarted => start(run, site)?,
            Run::Timed(timed) => {
                timed.poll_start = clock::now();
                (timed.saved_child, timed.saved_node) = swap_in(site, timed.child);
                if let Some(traced) = timed.traced {
                    enter_span(timed, traced);
                }
            }
            Run::Untimed | Run::Finished => return None,
        }
        Some(Polling { run, site })
    }

    /// The end of a poll after which the inner future is still pending.
    #[inline(never)]
    fn pending(self) {
        let mut this = ManuallyDrop::new(self);
        this.leave(clock::now());
    }

    /// The end of the last poll: the inner future completed, with this outcome.
    #[inline(never)]
    fn ready(self, outcome: Outcome) {
        let mut this = ManuallyDrop::new(self);
        let end = clock::now();
        this.leave(end);
        let site = this.site;
        finish(this.run, site, end, outcome, true);
    }

    /// Puts the thread's state back and adds the poll's time, at `end`.
    #[inline(always)]
    fn leave(&mut self, end: u64) {
        let Run::Timed(timed) = &mut *self.run else {
            unreachable!("a poll under way is timed")
        };
        timed.child = restore(timed);
        let busy = end.saturating_sub(timed.poll_start);
        timed.busy = timed.busy.wrapping_add(busy);
        if let Some(traced) = timed.traced {
            leave_span(timed, traced, self.site, end, busy);
        }
    }
}

impl Drop for Polling<'_> {
    /// Only reached without `pending` or `ready`, that is while unwinding out of the inner
    /// poll: the thread's state is put back, and the call will count as panicked.
    fn drop(&mut self) {
        if let Run::Timed(timed) = &mut *self.run {
            timed.child = restore(timed);
            timed.panicked = true;
            if timed.traced.is_some() {
                HOT.with(|h| h.span.set(timed.saved_span));
            }
        }
    }
}

/// The first poll: whether the call is recorded (`None`: no analyzer installed here), and
/// if so its start, now, and the swap of the thread's state for the poll.
#[inline(always)]
fn start(run: &mut Run, site: &'static CallSite) -> Option<()> {
    let shard = HOT.with(|h| h.shard.get());
    if shard.is_null() {
        *run = Run::Untimed;
        return None;
    }
    // SAFETY: a non-null `HOT.shard` points at a shard that `CTX` keeps alive.
    let mode = unsafe { &*shard }.mode.load(Ordering::Relaxed);
    if mode != MODE_ON {
        return start_unusual(run, site, shard, mode);
    }
    *run = Run::Timed(started(shard, site, None));
    Some(())
}

/// The first poll with the shard switched off (not recorded) or in trace mode (recorded,
/// with a span, child of the one running now).
#[cold]
#[inline(never)]
fn start_unusual(
    run: &mut Run,
    site: &'static CallSite,
    shard: *const Shard,
    mode: u8,
) -> Option<()> {
    if mode == MODE_OFF {
        *run = Run::Untimed;
        return None;
    }
    // SAFETY: `HOT.shard` only holds live shards of this thread.
    let shared = unsafe { &*shard }.shared.clone();
    // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
    let parent_site = unsafe { HOT.with(|h| h.node.get()).as_ref() };
    let traced = TracedBox::new(Traced {
        ids: trace::new_span(parent_site),
        shared,
    });
    let mut timed = started(shard, site, Some(traced));
    enter_span(&mut timed, traced);
    *run = Run::Timed(timed);
    Some(())
}

/// A call starting now, recorded into `shard`, with its first poll's thread state swapped in.
#[inline(always)]
fn started(shard: *const Shard, site: &'static CallSite, traced: Option<TracedBox>) -> Timed {
    let start = clock::now();
    let origin = Origin::here(shard);
    let (saved_child, saved_node) = swap_in(site, 0);
    Timed {
        origin,
        start,
        busy: 0,
        child: 0,
        poll_start: start,
        saved_child,
        saved_node,
        saved_span: 0,
        panicked: false,
        traced,
    }
}

/// Makes `site` the thread's running node, with `child` as its child-time counter, for a
/// poll; returns the counter and node it replaced.
#[inline(always)]
fn swap_in(site: &'static CallSite, child: u64) -> (u64, Option<&'static CallSite>) {
    let (saved_child, saved_node) = HOT.with(|h| (h.child.replace(child), h.node.replace(site)));
    // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
    (saved_child, unsafe { saved_node.as_ref() })
}

/// Puts back the child-time counter and running node a poll swapped out; returns the
/// poll's own child time.
#[inline(always)]
fn restore(timed: &Timed) -> u64 {
    HOT.with(|h| {
        h.node.set(
            timed
                .saved_node
                .map_or(std::ptr::null(), std::ptr::from_ref),
        );
        h.child.replace(timed.saved_child)
    })
}

/// Trace mode: the call's span becomes the running one for the poll.
#[cold]
fn enter_span(timed: &mut Timed, traced: TracedBox) {
    // SAFETY: the run is not finished, so its box is alive.
    let id = unsafe { traced.get() }.ids.id;
    timed.saved_span = HOT.with(|h| h.span.replace(id));
}

/// Trace mode: the span running before the poll is put back, and the poll kept as a slice
/// of the trace.
#[cold]
#[inline(never)]
fn leave_span(timed: &Timed, traced: TracedBox, site: &'static CallSite, end: u64, busy: u64) {
    HOT.with(|h| h.span.set(timed.saved_span));
    // SAFETY: the run is not finished, so its box is alive.
    let traced = unsafe { traced.get() };
    traced.keep(trace::POLL, site, timed.poll_start, end, busy, Outcome::Ok);
}

/// Records the call. `awaited`: it completed inside its caller's poll, which therefore
/// includes its whole time; a future dropped unfinished may be dropped anywhere, so its
/// time is nobody's child time.
#[inline(always)]
fn finish(run: &mut Run, site: &'static CallSite, end: u64, outcome: Outcome, awaited: bool) {
    let Run::Timed(timed) = &*run else {
        return;
    };
    if timed.traced.is_some() {
        // Finished before the box is freed: a second `finish` can never free it again.
        let timed = *timed;
        *run = Run::Finished;
        return finish_traced(site, timed, end, outcome, awaited);
    }
    record(site, timed, end, outcome, awaited);
    *run = Run::Finished;
}

/// Records a finished async call into the analyzer it started with.
#[inline(always)]
fn record(
    site: &'static CallSite,
    timed: &Timed,
    end: u64,
    outcome: Outcome,
    awaited: bool,
) -> Call {
    let wall = end.saturating_sub(timed.start);
    if awaited {
        HOT.with(|h| h.child.set(h.child.get().wrapping_add(wall)));
    }
    let call = Call {
        start: timed.start,
        end,
        self_time: wall.saturating_sub(timed.child),
        busy: timed.busy,
        outcome,
    };
    timed.origin.record(site, &call);
    call
}

/// Records a finished call of trace mode, and keeps it as a span.
#[cold]
#[inline(never)]
fn finish_traced(site: &'static CallSite, timed: Timed, end: u64, outcome: Outcome, awaited: bool) {
    let call = record(site, &timed, end, outcome, awaited);
    let Some(traced) = timed.traced else {
        return;
    };
    // SAFETY: the caller marked the run finished: the box is freed here, once.
    let traced = unsafe { traced.into_box() };
    traced.keep(trace::ASYNC, site, call.start, end, call.busy, outcome);
}

impl<F: Future, C> Drop for NodeFuture<F, C> {
    #[inline]
    fn drop(&mut self) {
        if let Run::Timed(_) = &self.run {
            dropped(&mut self.run, self.site);
        }
    }
}

/// Records a call dropped after its first poll and before it finished. Not generic.
#[cold]
#[inline(never)]
fn dropped(run: &mut Run, site: &'static CallSite) {
    if let Run::Timed(timed) = &*run {
        let outcome = dropped_outcome(timed);
        finish(run, site, clock::now(), outcome, false);
    }
}

/// How a call dropped before it finished ended: only a panic out of its own poll makes it
/// panicked; dropped during someone else's unwinding, or simply dropped, it was cancelled.
fn dropped_outcome(timed: &Timed) -> Outcome {
    if timed.panicked {
        Outcome::Panicked
    } else {
        Outcome::Cancelled
    }
}

/// A future that runs every poll of its inner future with a given analyzer installed (or
/// with none), so that nodes inside it record into that analyzer on whatever thread the
/// executor polls it. Built by [`ProfilerFutureExt`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct WithProfiler<F> {
    inner: F,
    analyzer: Option<BottleneckAnalyzer>,
    /// The span running where the future was made (trace mode): nodes inside it are that
    /// span's children in the trace, on whatever thread they run (0: none).
    parent_span: u64,
}

impl<F: Future> Future for WithProfiler<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of the pinned struct.
        let this = unsafe { self.get_unchecked_mut() };
        let _installed = PollInstall::new(this.analyzer.as_ref(), this.parent_span);
        // SAFETY: structural pin projection of `inner`.
        unsafe { Pin::new_unchecked(&mut this.inner) }.poll(cx)
    }
}

/// Carries an analyzer with a future, for tasks that may run on any thread.
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerFutureExt};
///
/// # async fn work() {}
/// # async fn demo() {
/// let analyzer = BottleneckAnalyzer::new();
/// let task = tokio::spawn(work().with_profiler(analyzer.clone()));
/// task.await.unwrap();
/// # }
/// ```
pub trait ProfilerFutureExt: Future + Sized {
    /// Runs this future with `analyzer` installed during each of its polls. In trace mode,
    /// the nodes it runs are children of the node running here and now (a task spawned by a
    /// node is part of that node in the trace, whichever worker runs it).
    fn with_profiler(self, analyzer: BottleneckAnalyzer) -> WithProfiler<Self> {
        WithProfiler {
            inner: self,
            analyzer: Some(analyzer),
            parent_span: crate::trace::current_span(),
        }
    }

    /// Runs this future with the analyzer installed on the current thread now (or with none
    /// if none is), wherever it is polled later.
    fn in_current_profiler(self) -> WithProfiler<Self> {
        WithProfiler {
            inner: self,
            analyzer: context::get_profiler(),
            parent_span: crate::trace::current_span(),
        }
    }
}

impl<F: Future> ProfilerFutureExt for F {}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::task::Waker;

    use super::*;
    use crate::{ProfilerScope, current_node_id};

    static PARENT: CallSite = CallSite::new("f_parent", false);

    /// Pending on its first poll, then ready with `value` (or a panic, for `None`); reports
    /// the node running during each poll.
    struct Steps {
        polls: u32,
        value: Option<u8>,
        seen: Vec<Option<&'static str>>,
    }

    impl Future for Steps {
        type Output = u8;

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u8> {
            self.seen.push(current_node_id());
            self.polls += 1;
            if self.polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Long enough to tell the node's time from the rest of its parent's.
            std::thread::sleep(std::time::Duration::from_millis(2));
            match self.value {
                Some(value) => Poll::Ready(value),
                None => panic!("inner poll failed"),
            }
        }
    }

    fn steps(value: Option<u8>) -> Steps {
        Steps {
            polls: 0,
            value,
            seen: Vec::new(),
        }
    }

    fn poll<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn each_poll_runs_the_node_and_hands_the_thread_back() {
        static NODE: CallSite = CallSite::new("f_two_polls", true);
        let analyzer = BottleneckAnalyzer::new();
        let _scope = ProfilerScope::new(&analyzer);
        let parent = crate::guard::Guard::enter(&PARENT);
        let mut fut = std::pin::pin!(NodeFuture::new(&NODE, steps(Some(7)), |v: &u8| {
            assert_eq!(*v, 7);
            Outcome::Error
        }));
        assert!(poll(fut.as_mut()).is_pending());
        assert_eq!(current_node_id(), Some("f_parent"));
        assert_eq!(poll(fut.as_mut()), Poll::Ready(7));
        assert_eq!(current_node_id(), Some("f_parent"));
        assert_eq!(fut.inner.seen, [Some("f_two_polls"); 2]);
        drop(parent);
        let node = analyzer.get_node("f_two_polls").unwrap();
        assert_eq!((node.call_count, node.outcomes.error), (1, 1));
        assert!(node.is_async);
        assert!(node.duration_ms >= 2.0 && node.busy_duration_ms >= 2.0);
        // Completed inside the parent's call: its time is the parent's child time.
        let parent = analyzer.get_node("f_parent").unwrap();
        assert!(parent.duration_ms >= node.duration_ms);
        assert!(parent.self_duration_ms <= parent.duration_ms - node.duration_ms + 1e-3);
    }

    #[test]
    fn a_panic_out_of_a_poll_hands_the_thread_back_and_the_call_counts_as_panicked() {
        static NODE: CallSite = CallSite::new("f_panics", true);
        let analyzer = BottleneckAnalyzer::new();
        let _scope = ProfilerScope::new(&analyzer);
        let parent = crate::guard::Guard::enter(&PARENT);
        let mut fut = Box::pin(NodeFuture::new(&NODE, steps(None), |_: &u8| Outcome::Ok));
        assert!(poll(fut.as_mut()).is_pending());
        let unwound = catch_unwind(AssertUnwindSafe(|| poll(fut.as_mut())));
        assert!(unwound.is_err());
        assert_eq!(current_node_id(), Some("f_parent"));
        assert!(analyzer.get_node("f_panics").is_none(), "not finished yet");
        drop(fut);
        drop(parent);
        let node = analyzer.get_node("f_panics").unwrap();
        assert_eq!((node.call_count, node.outcomes.panicked), (1, 1));
        assert_eq!(analyzer.get_node("f_parent").unwrap().outcomes.ok, 1);
    }

    #[test]
    fn a_call_started_without_an_analyzer_is_never_recorded() {
        static NODE: CallSite = CallSite::new("f_untimed", true);
        let analyzer = BottleneckAnalyzer::new();
        let mut fut = std::pin::pin!(NodeFuture::new(&NODE, steps(Some(1)), |_: &u8| {
            Outcome::Ok
        }));
        assert!(poll(fut.as_mut()).is_pending());
        let _scope = ProfilerScope::new(&analyzer);
        assert_eq!(poll(fut.as_mut()), Poll::Ready(1));
        assert_eq!(fut.inner.seen, [None, None]);
        assert!(analyzer.get_node("f_untimed").is_none());
    }
}
