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

struct Timed {
    /// The thread and analyzer current at the first poll: the call records into that
    /// analyzer wherever it finishes.
    origin: Origin,
    start: u64,
    busy: u64,
    child: u64,
    panicked: bool,
    /// The call's span, in trace mode.
    trace: Option<Traced>,
}

/// An async call's span: its ids, and the analyzer's shared state that holds the buffer
/// (an `Arc` only in trace mode, so that untraced calls take no reference count).
struct Traced {
    ids: SpanIds,
    shared: Arc<Shared>,
}

impl Traced {
    /// At the first poll, in trace mode: a new span, child of the one running now.
    #[cold]
    #[inline(never)]
    fn start(shard: *const Shard) -> Option<Self> {
        // SAFETY: `active_shard` only returns live shards of this thread.
        let shard = unsafe { &*shard };
        if shard.mode.load(Ordering::Relaxed) != MODE_TRACE {
            return None;
        }
        Some(Self {
            // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
            ids: trace::new_span(unsafe { HOT.with(|h| h.node.get()).as_ref() }),
            shared: shard.shared.clone(),
        })
    }

    #[cold]
    #[inline(never)]
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
        let mut ids = self.ids;
        if kind == trace::POLL {
            ids.thread = HOT.with(|h| h.thread.get());
        }
        buffer.push(&RawSpan {
            kind,
            site,
            ids,
            start,
            end,
            busy,
            outcome,
        });
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
        let poll_start = match this.run {
            Run::NotStarted => {
                let shard = context::active_shard();
                if shard.is_null() {
                    this.run = Run::Untimed;
                    return inner.poll(cx);
                }
                let origin = Origin::here(shard);
                let trace = Traced::start(shard);
                let start = clock::now();
                this.run = Run::Timed(Timed {
                    origin,
                    start,
                    busy: 0,
                    child: 0,
                    panicked: false,
                    trace,
                });
                start
            }
            Run::Timed(_) => clock::now(),
            Run::Untimed | Run::Finished => return inner.poll(cx),
        };
        let Run::Timed(timed) = &mut this.run else {
            unreachable!("set above")
        };
        let scope = PollScope::enter(this.site, timed);
        let result = inner.poll(cx);
        let poll_end = clock::now();
        let timed = scope.leave();
        timed.busy = timed.busy.wrapping_add(poll_end.saturating_sub(poll_start));
        if let Some(traced) = &timed.trace {
            let busy = poll_end.saturating_sub(poll_start);
            traced.keep(
                trace::POLL,
                this.site,
                poll_start,
                poll_end,
                busy,
                Outcome::Ok,
            );
        }
        match result {
            Poll::Pending => Poll::Pending,
            Poll::Ready(output) => {
                let outcome = this
                    .classify
                    .take()
                    .map_or(Outcome::Ok, |classify| classify(&output));
                this.finish(poll_end, outcome, true);
                Poll::Ready(output)
            }
        }
    }
}

impl<F: Future, C> NodeFuture<F, C> {
    /// Records the call. `awaited`: it completed inside its caller's poll, which therefore
    /// includes its whole time; a future dropped unfinished may be dropped anywhere, so its
    /// time is nobody's child time.
    fn finish(&mut self, end: u64, outcome: Outcome, awaited: bool) {
        let Run::Timed(timed) = std::mem::replace(&mut self.run, Run::Finished) else {
            return;
        };
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
        timed.origin.record(self.site, &call);
        if let Some(traced) = &timed.trace {
            traced.keep(trace::ASYNC, self.site, call.start, end, call.busy, outcome);
        }
    }
}

impl<F: Future, C> Drop for NodeFuture<F, C> {
    fn drop(&mut self) {
        if let Run::Timed(timed) = &self.run {
            // Only a panic out of this future's own poll makes it panicked; dropped during
            // someone else's unwinding, it was cancelled.
            let outcome = if timed.panicked {
                Outcome::Panicked
            } else {
                Outcome::Cancelled
            };
            self.finish(clock::now(), outcome, false);
        }
    }
}

/// The thread state of one poll of an async node: its child-time counter and the running
/// node are swapped in, and swapped back out on the way out, also when the poll panics.
struct PollScope<'a> {
    timed: Option<&'a mut Timed>,
    saved_child: u64,
    saved_node: *const CallSite,
    /// The running span before this poll, when the call has a span (trace mode).
    saved_span: Option<u64>,
}

impl<'a> PollScope<'a> {
    #[inline(always)]
    fn enter(site: &'static CallSite, timed: &'a mut Timed) -> Self {
        let (saved_child, saved_node) =
            HOT.with(|h| (h.child.replace(timed.child), h.node.replace(site)));
        let saved_span = timed
            .trace
            .as_ref()
            .map(|traced| HOT.with(|h| h.span.replace(traced.ids.id)));
        Self {
            timed: Some(timed),
            saved_child,
            saved_node,
            saved_span,
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
            if let Some(span) = self.saved_span {
                h.span.set(span);
            }
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
