//! Async nodes and futures that carry an analyzer across threads.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::analyzer::BottleneckAnalyzer;
use crate::clock;
use crate::context::{self, HOT, Origin, PollInstall};
use crate::outcome::Outcome;
use crate::shard::{MODE_TRACE, Shard, Shared};
use crate::site::CallSite;
use crate::stats::Call;
use crate::trace::{self, RawSpan, SpanIds};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The future of an async profiled call: times it from first poll to completion (wall time)
/// and inside `poll` (busy time). Dropped after its first poll and before completion, the
/// call counts as cancelled; never polled, it records nothing.
///
/// Emitted by `#[profile_node]`; not meant to be built by hand.
#[doc(hidden)]
#[must_use = "futures do nothing unless polled"]
pub struct NodeFuture<F: Future, C> {
    inner: F,
    classify: Option<C>,
    site: &'static CallSite,
    run: Run,
}

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

/// Makes a span the running one for as long as it lives (one poll of a traced call), and
/// puts the previous one back, also when the poll panics.
struct SpanScope {
    saved: u64,
}

impl SpanScope {
    fn enter(span: u64) -> Self {
        Self {
            saved: HOT.with(|h| h.span.replace(span)),
        }
    }
}

impl Drop for SpanScope {
    fn drop(&mut self) {
        HOT.with(|h| h.span.set(self.saved));
    }
}

impl<F: Future, C: FnOnce(&F::Output) -> Outcome> NodeFuture<F, C> {
    /// Wraps the body of an async node; `classify` tells an error result from a success.
    #[inline]
    pub fn new(site: &'static CallSite, inner: F, classify: C) -> Self {
        Self {
            inner,
            classify: Some(classify),
            site,
            run: Run::NotStarted,
        }
    }
}

impl<F: Future, C: FnOnce(&F::Output) -> Outcome> Future for NodeFuture<F, C> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of the pinned struct (not here, not in Drop).
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above; this is the structural pin projection of `inner`.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let (poll_start, timed) = match begin_poll(&mut this.run) {
            Begin::Timed(start, timed) => (start, timed),
            Begin::Traced(start) => return this.poll_traced(cx, start),
            Begin::Untimed => return inner.poll(cx),
        };
        let scope = PollScope::enter(this.site, timed);
        let result = inner.poll(cx);
        let poll_end = clock::now();
        let timed = scope.leave();
        timed.busy = timed.busy.wrapping_add(poll_end.saturating_sub(poll_start));
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(output) => {
                // A `match`, not `Option::map_or`: each node would add a generic copy of that.
                let outcome = match this.classify.take() {
                    Some(classify) => classify(&output),
                    None => Outcome::Ok,
                };
                finish(&mut this.run, this.site, poll_end, outcome, true);
                Poll::Ready(output)
            }
        }
    }
}

/// How a poll goes on, as [`begin_poll`] found.
enum Begin<'a> {
    /// Timed without a span, from this start.
    Timed(u64, &'a mut Timed),
    /// Timed with a span (trace mode), from this start.
    Traced(u64),
    /// Not recorded: the inner future is polled as it is.
    Untimed,
}

/// The start of a poll, before the inner future's; on the first poll, whether (and how) the
/// call is recorded. Not generic, so that each node's `poll` holds only a call of it: in
/// release builds it is inlined all the same (the call path is unchanged); in debug builds,
/// where inlining is off, it is compiled once per codegen unit rather than once per node.
#[cfg_attr(debug_assertions, inline)]
#[cfg_attr(not(debug_assertions), inline(always))]
fn begin_poll(run: &mut Run) -> Begin<'_> {
    match run {
        Run::NotStarted => {
            let shard = context::active_shard();
            if shard.is_null() {
                *run = Run::Untimed;
                return Begin::Untimed;
            }
            let origin = Origin::here(shard);
            // SAFETY: `active_shard` only returns live shards of this thread.
            if unsafe { &*shard }.mode.load(Ordering::Relaxed) == MODE_TRACE {
                return Begin::Traced(start_traced(run, shard, origin));
            }
            let start = clock::now();
            *run = Run::Timed(Timed {
                origin,
                start,
                busy: 0,
                child: 0,
                panicked: false,
                traced: None,
            });
            let Run::Timed(timed) = run else {
                unreachable!("set above")
            };
            Begin::Timed(start, timed)
        }
        Run::Timed(Timed {
            traced: Some(_), ..
        }) => Begin::Traced(clock::now()),
        Run::Timed(timed) => Begin::Timed(clock::now(), timed),
        Run::Untimed | Run::Finished => Begin::Untimed,
    }
}

impl<F: Future, C: FnOnce(&F::Output) -> Outcome> NodeFuture<F, C> {
    /// A poll in trace mode, from `poll_start`. Only the inner poll and the classification
    /// are generic; the rest is [`poll_traced_around`], compiled once for every node.
    #[cold]
    #[inline(never)]
    fn poll_traced(&mut self, cx: &mut Context<'_>, poll_start: u64) -> Poll<F::Output> {
        // SAFETY: `inner` is never moved out of the pinned struct (`poll` got it pinned).
        let mut inner = unsafe { Pin::new_unchecked(&mut self.inner) };
        let classify = &mut self.classify;
        let mut output = None;
        poll_traced_around(&mut self.run, self.site, poll_start, &mut || match inner
            .as_mut()
            .poll(cx)
        {
            Poll::Pending => None,
            Poll::Ready(value) => {
                let outcome = match classify.take() {
                    Some(classify) => classify(&value),
                    None => Outcome::Ok,
                };
                output = Some(value);
                Some(outcome)
            }
        });
        match output {
            Some(value) => Poll::Ready(value),
            None => Poll::Pending,
        }
    }
}

/// The first poll in trace mode: a new span, child of the one running now; returns the
/// call's start. Not generic: one copy serves every node.
#[cold]
#[inline(never)]
fn start_traced(run: &mut Run, shard: *const Shard, origin: Origin) -> u64 {
    // SAFETY: `active_shard` only returns live shards of this thread.
    let shard = unsafe { &*shard };
    // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
    let parent_site = unsafe { HOT.with(|h| h.node.get()).as_ref() };
    let ids = trace::new_span(parent_site);
    let start = clock::now();
    *run = Run::Timed(Timed {
        origin,
        start,
        busy: 0,
        child: 0,
        panicked: false,
        traced: Some(TracedBox::new(Traced {
            ids,
            shared: shard.shared.clone(),
        })),
    });
    start
}

/// Everything of a poll in trace mode around the inner poll, which `poll_inner` runs (and
/// classifies: `Some(outcome)` when the future completed): the usual poll, with the call's
/// span running and the poll kept as a slice of the trace. Not generic, so that a node's
/// cold path costs its crate a small shim rather than a copy of this.
#[cold]
#[inline(never)]
fn poll_traced_around(
    run: &mut Run,
    site: &'static CallSite,
    poll_start: u64,
    poll_inner: &mut dyn FnMut() -> Option<Outcome>,
) {
    let Run::Timed(timed) = run else {
        unreachable!("called for timed runs only")
    };
    let Some(traced) = timed.traced else {
        unreachable!("called for traced runs only")
    };
    // SAFETY: the run is not finished, so its box is alive.
    let traced = unsafe { traced.get() };
    let span = SpanScope::enter(traced.ids.id);
    let scope = PollScope::enter(site, timed);
    let result = poll_inner();
    let poll_end = clock::now();
    let timed = scope.leave();
    drop(span);
    let busy = poll_end.saturating_sub(poll_start);
    timed.busy = timed.busy.wrapping_add(busy);
    traced.keep(trace::POLL, site, poll_start, poll_end, busy, Outcome::Ok);
    if let Some(outcome) = result {
        finish(run, site, poll_end, outcome, true);
    }
}

/// Records the call. `awaited`: it completed inside its caller's poll, which therefore
/// includes its whole time; a future dropped unfinished may be dropped anywhere, so its
/// time is nobody's child time. Not generic, inlined in release builds as [`begin_poll`].
#[cfg_attr(debug_assertions, inline)]
#[cfg_attr(not(debug_assertions), inline(always))]
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

/// The thread state of one poll of an async node: its child-time counter and the running
/// node are swapped in, and swapped back out on the way out, also when the poll panics.
struct PollScope<'a> {
    timed: Option<&'a mut Timed>,
    saved_child: u64,
    saved_node: *const CallSite,
}

impl<'a> PollScope<'a> {
    #[inline(always)]
    fn enter(site: &'static CallSite, timed: &'a mut Timed) -> Self {
        let (saved_child, saved_node) =
            HOT.with(|h| (h.child.replace(timed.child), h.node.replace(site)));
        Self {
            timed: Some(timed),
            saved_child,
            saved_node,
        }
    }

    #[inline(always)]
    fn leave(mut self) -> &'a mut Timed {
        let timed = self.timed.take().expect("entered with a timed run");
        timed.child = self.restore();
        timed
    }

    #[inline(always)]
    fn restore(&self) -> u64 {
        HOT.with(|h| {
            h.node.set(self.saved_node);
            h.child.replace(self.saved_child)
        })
    }
}

impl Drop for PollScope<'_> {
    fn drop(&mut self) {
        // Only reached without `leave`, that is while unwinding out of the inner poll.
        if let Some(timed) = self.timed.take() {
            timed.child = self.restore();
            timed.panicked = true;
        }
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
