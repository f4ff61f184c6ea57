//! The drop guard that times a sync profiled call.

use crate::clock;
use crate::context::{self, HOT};
use crate::outcome::Outcome;
use crate::shard::Shard;
use crate::site::CallSite;
use crate::stats::Call;
use crate::trace::{self, RawSpan, SpanIds};
use std::sync::atomic::Ordering;

/// Times one call of a sync profiled function from [`Guard::enter`] to its drop, which runs
/// on return, early `return`, `?` and unwinding alike.
///
/// Emitted by `#[profile_node]`; not meant to be built by hand.
#[doc(hidden)]
#[must_use]
pub struct Guard {
    /// Null when this call is not being recorded (then nothing else is read).
    shard: *const Shard,
    site: &'static CallSite,
    start: u64,
    saved_child: u64,
    saved_node: *const CallSite,
    epoch: u32,
    outcome: Outcome,
    /// Whether the drop must ask whether the thread is unwinding (see `enter_observed`).
    checks_unwinding: bool,
    /// This call's span in trace mode, 0 otherwise; then `saved_span` is the parent's.
    span: u64,
    saved_span: u64,
}

impl Guard {
    /// Starts timing a call of `site`, if an analyzer is installed on this thread. The call
    /// counts as `ok` unless [`observe`](Self::observe) says otherwise or the thread unwinds.
    #[inline(always)]
    pub fn enter(site: &'static CallSite) -> Guard {
        Self::start(site, Outcome::Ok, true)
    }

    /// Like [`enter`](Self::enter), for expansions that call [`observe`](Self::observe) on
    /// every way the call can return: a call never observed is one that panicked, so the drop
    /// need not ask whether the thread is unwinding (and a node called from a `Drop` during
    /// someone else's unwinding is not taken for a panicking one).
    #[inline(always)]
    pub fn enter_observed(site: &'static CallSite) -> Guard {
        Self::start(site, Outcome::Panicked, false)
    }

    #[inline(always)]
    fn start(site: &'static CallSite, outcome: Outcome, checks_unwinding: bool) -> Guard {
        let shard = context::active_shard();
        if shard.is_null() {
            return Guard {
                shard,
                site,
                start: 0,
                saved_child: 0,
                saved_node: std::ptr::null(),
                epoch: 0,
                outcome,
                checks_unwinding,
                span: 0,
                saved_span: 0,
            };
        }
        let (saved_child, saved_node, epoch) =
            HOT.with(|h| (h.child.replace(0), h.node.replace(site), h.epoch.get()));
        // SAFETY: `active_shard` only returns live shards of this thread.
        let (span, saved_span) = if unsafe { &*shard }.trace.load(Ordering::Relaxed) {
            // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
            let ids = trace::begin_span(unsafe { saved_node.as_ref() });
            (ids.id, ids.parent)
        } else {
            (0, 0)
        };
        Guard {
            shard,
            site,
            start: clock::now(),
            saved_child,
            saved_node,
            epoch,
            outcome,
            // A call that starts while the thread is already unwinding (from a `Drop`) did
            // not panic just because the thread still is unwinding when it returns.
            checks_unwinding: checks_unwinding && !std::thread::panicking(),
            span,
            saved_span,
        }
    }

    /// Sets the outcome of a call that returned (the macro passes what the probe found in the
    /// returned value). A panic overrides it.
    #[inline(always)]
    pub fn observe(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    #[inline(always)]
    fn finish(&self) {
        let end = clock::now();
        let duration = end.saturating_sub(self.start);
        let (child, epoch) = HOT.with(|h| {
            h.node.set(self.saved_node);
            let child = h.child.replace(self.saved_child.wrapping_add(duration));
            (child, h.epoch.get())
        });
        if self.span != 0 {
            HOT.with(|h| h.span.set(self.saved_span));
        }
        // The thread dropped a shard while this call ran: only that of an analyzer nobody
        // holds any more, whose counts nobody can read; but the pointer must be checked.
        if epoch != self.epoch && !context::shard_is_live(self.shard) {
            return;
        }
        let outcome = if self.checks_unwinding && std::thread::panicking() {
            Outcome::Panicked
        } else {
            self.outcome
        };
        let call = Call {
            start: self.start,
            end,
            self_time: duration.saturating_sub(child),
            busy: duration,
            outcome,
        };
        // SAFETY: the shard came from this thread's `HOT` and is still alive (checked above).
        unsafe { (*self.shard).record_owned(self.site, &call) };
        if self.span != 0 {
            self.keep_span(&call);
        }
    }

    #[cold]
    #[inline(never)]
    fn keep_span(&self, call: &Call) {
        // SAFETY: checked live by `finish`.
        let shard = unsafe { &*self.shard };
        if let Some(buffer) = shard.shared.trace_buffer.get() {
            buffer.push(&RawSpan {
                kind: trace::SYNC,
                site: self.site,
                ids: SpanIds {
                    id: self.span,
                    parent: self.saved_span,
                    // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
                    parent_site: unsafe { self.saved_node.as_ref() },
                    thread: HOT.with(|h| h.thread.get()),
                },
                start: call.start,
                end: call.end,
                busy: call.busy,
                outcome: call.outcome,
            });
        }
    }
}

impl Drop for Guard {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.shard.is_null() {
            self.finish();
        }
    }
}

/// Calls `f` once. The macro runs a function's body through this so that `return` and `?`
/// in the body hand their value to the guard; the `FnOnce` bound lets the body return
/// borrows of moved-in references, which an `FnMut` closure could not.
#[doc(hidden)]
#[inline(always)]
pub fn call_once<R>(f: impl FnOnce() -> R) -> R {
    f()
}
