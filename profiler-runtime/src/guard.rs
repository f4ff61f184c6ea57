//! The drop guard that times a sync profiled call.

use std::sync::atomic::Ordering;

use crate::clock;
use crate::context::{self, HOT};
use crate::outcome::Outcome;
use crate::shard::{MODE_OFF, MODE_ON, Shard};
use crate::site::CallSite;
use crate::stats::Call;
use crate::trace::{self, SpanIds};

/// Set in [`Guard`]'s `epoch` for a call with a span: the drop's epoch comparison then fails,
/// which sends traced calls off the usual path (to `finish_traced`) without a test of their
/// own on it.
const TRACED: u64 = 1 << 32;

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
    /// The thread's shard epoch at the start, with [`TRACED`] set for a call with a span.
    epoch: u64,
    outcome: Outcome,
    /// Whether the drop must ask whether the thread is unwinding (see `enter_observed`).
    checks_unwinding: bool,
}

// Release builds inline the whole path into each annotated function: it costs the fewest
// instructions there. Debug builds inline nothing but `inline(always)`, so there a plain
// `inline` makes each function call one copy of the path instead of holding its own. The
// switch is this crate's `debug_assertions`: a release profile that turns them on gets the
// called copy too (a few instructions more per call).
impl Guard {
    /// Starts timing a call of `site`, if an analyzer is installed on this thread. The call
    /// counts as `ok` unless [`observe`](Self::observe) says otherwise or the thread unwinds.
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn enter(site: &'static CallSite) -> Guard {
        Self::start(site, Outcome::Ok, true)
    }

    /// Like [`enter`](Self::enter), for expansions that call [`observe`](Self::observe) on
    /// every way the call can return: a call never observed is one that panicked, so the drop
    /// need not ask whether the thread is unwinding (and a node called from a `Drop` during
    /// someone else's unwinding is not taken for a panicking one).
    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    pub fn enter_observed(site: &'static CallSite) -> Guard {
        Self::start(site, Outcome::Panicked, false)
    }

    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn start(site: &'static CallSite, outcome: Outcome, checks_unwinding: bool) -> Guard {
        let shard = HOT.with(|h| h.shard.get());
        if shard.is_null() {
            return Guard::untimed(site, outcome, checks_unwinding);
        }
        // One load of the mode, one comparison on the usual path. SAFETY: a non-null
        // `HOT.shard` points at a shard that `CTX` keeps alive.
        let mode = unsafe { &*shard }.mode.load(Ordering::Relaxed);
        let traced = if mode == MODE_ON {
            0
        } else if mode == MODE_OFF {
            return Guard::untimed(site, outcome, checks_unwinding);
        } else {
            // The call's new span becomes the running one, and its parent waits on the
            // thread's span stack (the guard keeps no span fields, which keeps the usual
            // path's guard in registers). Inline: a call out of line costs more than this.
            trace::begin_nested_span();
            TRACED
        };
        Guard::timed(site, shard, outcome, checks_unwinding, traced)
    }

    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn untimed(site: &'static CallSite, outcome: Outcome, checks_unwinding: bool) -> Guard {
        Guard {
            shard: std::ptr::null(),
            site,
            start: 0,
            saved_child: 0,
            saved_node: std::ptr::null(),
            epoch: 0,
            outcome,
            checks_unwinding,
        }
    }

    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn timed(
        site: &'static CallSite,
        shard: *const Shard,
        outcome: Outcome,
        checks_unwinding: bool,
        traced: u64,
    ) -> Guard {
        let (saved_child, saved_node, epoch) =
            HOT.with(|h| (h.child.replace(0), h.node.replace(site), h.epoch.get()));
        Guard {
            shard,
            site,
            start: clock::now(),
            saved_child,
            saved_node,
            epoch: u64::from(epoch) | traced,
            outcome,
            // A call that starts while the thread is already unwinding (from a `Drop`)
            // did not panic just because the thread still is unwinding when it returns.
            checks_unwinding: checks_unwinding && !std::thread::panicking(),
        }
    }

    /// Sets the outcome of a call that returned (the macro passes what the probe found in the
    /// returned value). A panic overrides it.
    #[inline(always)]
    pub fn observe(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }

    #[cfg_attr(debug_assertions, inline)]
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn finish(&self) {
        let end = clock::now();
        let duration = end.saturating_sub(self.start);
        let (child, epoch) = HOT.with(|h| {
            h.node.set(self.saved_node);
            let child = h.child.replace(self.saved_child.wrapping_add(duration));
            (child, h.epoch.get())
        });
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
        if u64::from(epoch) != self.epoch {
            if self.epoch == u64::from(epoch) | TRACED {
                // SAFETY: the shard came from this thread's `HOT`, and no shard was dropped
                // since (the epochs are equal).
                return unsafe { finish_traced(self.shard, self.site, self.saved_node, &call) };
            }
            // Fields, not `self`: a reference to the guard would keep it in memory on every call.
            // `call` by reference: it is in memory already (the export path takes it so), and
            // a copy would reload its outcome byte as a word, which stalls store forwarding.
            return finish_unusual(
                self.shard,
                self.site,
                self.epoch & TRACED != 0,
                self.saved_node,
                &call,
            );
        }
        // SAFETY: the shard came from this thread's `HOT`, and no shard was dropped since.
        unsafe { (*self.shard).record_owned(self.site, &call) };
    }
}

/// The end of a call, with a span (`traced`) or not, during which the thread dropped a shard
/// (only that of an analyzer nobody holds any more, whose counts nobody can read; but the
/// pointer must be checked).
#[cold]
#[inline(never)]
fn finish_unusual(
    shard: *const Shard,
    site: &'static CallSite,
    traced: bool,
    saved_node: *const CallSite,
    call: &Call,
) {
    if !context::shard_is_live(shard) {
        if traced {
            // The span stack stays paired with the calls, recorded or not.
            trace::end_span();
        }
        return;
    }
    if traced {
        // SAFETY: a shard of this thread's `HOT`, still alive (checked above).
        unsafe { finish_traced(shard, site, saved_node, call) };
    } else {
        // SAFETY: as above; this thread owns it.
        unsafe { (*shard).record_owned(site, call) };
    }
}

/// The end of a call with a span: the usual end in trace mode. Inlined where the guard's
/// drop is (out of line, a call and its saved registers cost more than the rest of trace
/// mode's end); the other ways ([`finish_unusual`], a full buffer, calls exported one by
/// one) are calls.
///
/// # Safety
/// `shard` must be one of this thread's shards, alive (as for `Shard::record_owned`).
#[inline(always)]
unsafe fn finish_traced(
    shard: *const Shard,
    site: &'static CallSite,
    saved_node: *const CallSite,
    call: &Call,
) {
    let (span, saved_span) = trace::end_span();
    let ids = SpanIds {
        id: span,
        parent: saved_span,
        // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
        parent_site: unsafe { saved_node.as_ref() },
        // The slot reads it back from the id.
        thread: span >> 32,
    };
    // SAFETY: the caller's contract.
    unsafe { trace::end_sync_call(&*shard, site, ids, call) };
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
