//! Which analyzer the current thread records into, and the thread-local state of the call
//! path.
//!
//! Two thread-locals: `HOT`, read on every profiled call, holds only `Cell`s with constant
//! initialisers and no destructor, so reaching it is a single TLS-relative load; `CTX` owns
//! the thread's shards and the installed analyzer, and is touched only on cold paths
//! (installing an analyzer, a thread's first call into an analyzer, thread exit).

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::analyzer::{self, BottleneckAnalyzer, Inner};
use crate::shard::Shard;
use crate::site::CallSite;
use crate::stats::Call;

/// The process-wide switch (see [`set_enabled`]).
static ENABLED: AtomicBool = AtomicBool::new(true);
/// Source of thread ids (0 means "none yet").
static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

/// This thread's id (see [`Hot::thread`]), given now if it has none yet.
pub(crate) fn thread_id(h: &Hot) -> u64 {
    if h.thread.get() == 0 {
        h.thread.set(NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
    }
    h.thread.get()
}

pub(crate) struct Hot {
    /// The shard calls record into; null when no analyzer is installed. When non-null it
    /// points at a shard kept alive by `CTX.shards`.
    pub(crate) shard: Cell<*const Shard>,
    /// Inclusive time of profiled calls finished inside the running one (for self time).
    pub(crate) child: Cell<u64>,
    /// The profiled node running on this thread (null at top level).
    pub(crate) node: Cell<*const CallSite>,
    /// Bumped whenever `CTX` drops a shard: a frame that saved a shard pointer checks it
    /// before using the pointer again.
    pub(crate) epoch: Cell<u32>,
    /// This thread's id, given when it gets its first shard; 0 before. Unlike the address of
    /// a thread-local, never reused by a later thread.
    pub(crate) thread: Cell<u64>,
    /// The span running on this thread, in trace mode (0: none). See `trace`.
    pub(crate) span: Cell<u64>,
    /// The last span id counter handed out on this thread.
    pub(crate) next_span: Cell<u32>,
}

thread_local! {
    pub(crate) static HOT: Hot = const {
        Hot {
            shard: Cell::new(std::ptr::null()),
            child: Cell::new(0),
            node: Cell::new(std::ptr::null()),
            epoch: Cell::new(0),
            thread: Cell::new(0),
            span: Cell::new(0),
            next_span: Cell::new(0),
        }
    };
    static CTX: RefCell<Ctx> = const { RefCell::new(Ctx { current: None, shards: Vec::new() }) };
}

struct Ctx {
    /// The analyzer installed with `set_profiler`, held so that it lives while installed.
    current: Option<BottleneckAnalyzer>,
    /// This thread's shard of every live analyzer it has recorded into.
    shards: Vec<Arc<Shard>>,
}

impl Ctx {
    /// This thread's shard of `inner`, created (and registered) on first use.
    fn shard_for(&mut self, inner: &Arc<Inner>) -> *const Shard {
        let wanted = Arc::as_ptr(inner);
        if let Some(shard) = self.shards.iter().find(|s| s.analyzer.as_ptr() == wanted) {
            return Arc::as_ptr(shard);
        }
        self.prune_dead();
        HOT.with(thread_id);
        let shard = Inner::register_shard(inner);
        let ptr = Arc::as_ptr(&shard);
        self.shards.push(shard);
        ptr
    }

    /// Drops shards of analyzers nobody holds any more (nobody can read them either), so a
    /// thread that serves many short-lived analyzers does not accumulate their shards.
    fn prune_dead(&mut self) {
        let installed = HOT.with(|h| h.shard.get());
        let before = self.shards.len();
        self.shards
            .retain(|s| s.analyzer.strong_count() > 0 || Arc::as_ptr(s) == installed);
        if self.shards.len() != before {
            HOT.with(|h| h.epoch.set(h.epoch.get().wrapping_add(1)));
        }
    }
}

impl Drop for Ctx {
    /// Thread exit: nothing on this thread may use the shards any more, and their counts
    /// move into each analyzer's totals so that no recorded call is lost.
    fn drop(&mut self) {
        HOT.with(|h| {
            h.shard.set(std::ptr::null());
            h.epoch.set(h.epoch.get().wrapping_add(1));
        });
        for shard in self.shards.drain(..) {
            if let Some(inner) = shard.analyzer.upgrade() {
                inner.retire_shard(&shard);
            }
        }
    }
}

/// Whether `shard` is still one of this thread's shards (after an epoch change).
#[cold]
pub(crate) fn shard_is_live(shard: *const Shard) -> bool {
    shard_is_live_where(shard, |_| true)
}

/// Whether `shard` is still this thread's shard of the analyzer with id `analyzer`: a shard
/// freed since may have left its address to another analyzer's new shard.
#[cold]
fn shard_of_is_live(shard: *const Shard, analyzer: u64) -> bool {
    shard_is_live_where(shard, |s| s.shared.id == analyzer)
}

fn shard_is_live_where(shard: *const Shard, also: impl Fn(&Shard) -> bool) -> bool {
    CTX.try_with(|ctx| {
        ctx.try_borrow().is_ok_and(|ctx| {
            ctx.shards
                .iter()
                .any(|s| Arc::as_ptr(s) == shard && also(s))
        })
    })
    .unwrap_or(false)
}

/// Where a call started: the shard it would record into on its own thread, and enough to
/// find its analyzer from another thread. Holds no reference count, so starting an async node
/// costs no atomic read-modify-write.
#[derive(Clone, Copy)]
pub(crate) struct Origin {
    shard: *const Shard,
    thread: u64,
    epoch: u32,
    analyzer: u64,
}

// SAFETY: `shard` is only dereferenced on the thread it belongs to (`record` checks `thread`
// first); elsewhere only the plain ids are used.
unsafe impl Send for Origin {}
// SAFETY: as above.
unsafe impl Sync for Origin {}

impl Origin {
    /// The origin of a call starting now with `shard` (this thread's `HOT.shard`, not off).
    #[inline(always)]
    pub(crate) fn here(shard: *const Shard) -> Self {
        let (thread, epoch) = HOT.with(|h| (h.thread.get(), h.epoch.get()));
        Self {
            shard,
            thread,
            epoch,
            // SAFETY: a non-null `HOT.shard` is a live shard of this thread.
            analyzer: unsafe { &*shard }.shared.id,
        }
    }

    /// Records `call` into the current thread's shard of the analyzer the call started with.
    /// Calls of an analyzer that no longer exists are dropped: nobody can read them.
    #[inline(always)]
    pub(crate) fn record(&self, site: &'static CallSite, call: &Call) {
        let (thread, epoch) = HOT.with(|h| (h.thread.get(), h.epoch.get()));
        if thread == self.thread
            && (epoch == self.epoch || shard_of_is_live(self.shard, self.analyzer))
        {
            // SAFETY: same thread, and the shard is still one of its shards.
            unsafe { (*self.shard).record_owned(site, call) };
        } else if thread != self.thread {
            record_from_elsewhere(self.analyzer, site, call);
        }
    }
}

#[cold]
#[inline(never)]
fn record_from_elsewhere(analyzer: u64, site: &'static CallSite, call: &Call) {
    let _ = CTX.try_with(|ctx| {
        let Ok(mut ctx) = ctx.try_borrow_mut() else {
            return;
        };
        // This thread's own shard of the analyzer, when it has one: no global lock, which
        // matters on work-stealing runtimes where futures often finish elsewhere.
        let known = ctx
            .shards
            .iter()
            .find(|s| s.shared.id == analyzer && s.analyzer.strong_count() > 0)
            .map(Arc::as_ptr);
        let mine = match known {
            Some(shard) => shard,
            None => match analyzer::find_analyzer(analyzer) {
                Some(inner) => ctx.shard_for(&inner),
                None => return,
            },
        };
        // SAFETY: a shard of this thread, kept alive by `ctx`.
        unsafe { (*mine).record_owned(site, call) };
    });
}

/// Installs `analyzer` on the current thread: profiled calls that start on this thread from
/// now on record into it. Replaces any analyzer installed before.
///
/// ```
/// use agent_profiler_runtime::{get_profiler, set_profiler, clear_profiler, BottleneckAnalyzer};
///
/// let analyzer = BottleneckAnalyzer::new();
/// set_profiler(&analyzer);
/// assert!(get_profiler().is_some_and(|a| a.ptr_eq(&analyzer)));
/// clear_profiler();
/// assert!(get_profiler().is_none());
/// ```
pub fn set_profiler(analyzer: &BottleneckAnalyzer) {
    let _ = CTX.try_with(|ctx| {
        let mut ctx = ctx.borrow_mut();
        let shard = ctx.shard_for(analyzer.inner());
        HOT.with(|h| h.shard.set(shard));
        // Replacing may drop the previous analyzer; that touches no thread-local.
        ctx.current = Some(analyzer.clone());
    });
}

/// The analyzer profiled calls on this thread record into, if any.
pub fn get_profiler() -> Option<BottleneckAnalyzer> {
    let shard = HOT.with(|h| h.shard.get());
    if shard.is_null() {
        return None;
    }
    // SAFETY: a non-null `HOT.shard` points at a shard that `CTX` keeps alive.
    unsafe { (*shard).analyzer.upgrade() }.map(BottleneckAnalyzer::from_inner)
}

/// The id of the profiled node running on this thread right now (the innermost one), if
/// any. Async nodes count as running while they are being polled.
///
/// ```
/// use agent_profiler_runtime::current_node_id;
///
/// assert_eq!(current_node_id(), None);
/// ```
pub fn current_node_id() -> Option<&'static str> {
    let site = HOT.with(|h| h.node.get());
    // SAFETY: `HOT.node` only ever holds null or a `&'static CallSite`.
    unsafe { site.as_ref() }.map(CallSite::id)
}

/// Uninstalls the current thread's analyzer: profiled calls on this thread record nothing
/// until one is installed again.
pub fn clear_profiler() {
    HOT.with(|h| h.shard.set(std::ptr::null()));
    let _ = CTX.try_with(|ctx| {
        if let Ok(mut ctx) = ctx.try_borrow_mut() {
            // Dropped before pruning, so that its shard goes now if it was the last handle.
            drop(ctx.current.take());
            ctx.prune_dead();
        }
    });
}

/// Turns profiling on or off for the whole process. Off, a profiled call costs what it costs
/// with no analyzer installed (a load and a branch) and records nothing.
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
    analyzer::refresh_all_flags();
}

/// Whether profiling is on for the process (see [`set_enabled`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Installs an analyzer for as long as it lives, then puts back whatever was installed
/// before (another analyzer, or none).
///
/// ```
/// use agent_profiler_runtime::{get_profiler, BottleneckAnalyzer, ProfilerScope};
///
/// let outer = BottleneckAnalyzer::new();
/// let _outer = ProfilerScope::new(&outer);
/// {
///     let inner = BottleneckAnalyzer::new();
///     let _inner = ProfilerScope::new(&inner);
///     assert!(get_profiler().unwrap().ptr_eq(&inner));
/// }
/// assert!(get_profiler().unwrap().ptr_eq(&outer));
/// ```
#[must_use = "the analyzer is uninstalled when the scope is dropped"]
pub struct ProfilerScope {
    previous: Option<BottleneckAnalyzer>,
    /// The scope must end on the thread it began on.
    _not_send: PhantomData<*const ()>,
}

impl ProfilerScope {
    /// Installs `analyzer` on the current thread until the scope is dropped.
    pub fn new(analyzer: &BottleneckAnalyzer) -> Self {
        let previous = get_profiler();
        set_profiler(analyzer);
        Self {
            previous,
            _not_send: PhantomData,
        }
    }
}

impl Drop for ProfilerScope {
    fn drop(&mut self) {
        match self.previous.take() {
            Some(previous) => set_profiler(&previous),
            None => clear_profiler(),
        }
    }
}

impl std::fmt::Debug for ProfilerScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfilerScope").finish_non_exhaustive()
    }
}

/// Puts an analyzer (or none) and a running span (trace mode) in place for one poll of a
/// future and restores the previous ones afterwards, also when the poll panics.
pub(crate) struct PollInstall {
    previous: *const Shard,
    epoch: u32,
    previous_span: u64,
}

impl PollInstall {
    pub(crate) fn new(analyzer: Option<&BottleneckAnalyzer>, span: u64) -> Self {
        let (previous, epoch, previous_span) =
            HOT.with(|h| (h.shard.get(), h.epoch.get(), h.span.replace(span)));
        let shard = analyzer.map_or(std::ptr::null(), |a| {
            CTX.try_with(|ctx| {
                ctx.try_borrow_mut()
                    .map_or(std::ptr::null(), |mut ctx| ctx.shard_for(a.inner()))
            })
            .unwrap_or(std::ptr::null())
        });
        HOT.with(|h| h.shard.set(shard));
        Self {
            previous,
            epoch,
            previous_span,
        }
    }
}

impl Drop for PollInstall {
    fn drop(&mut self) {
        let mut previous = self.previous;
        let epoch_moved = HOT.with(|h| h.epoch.get() != self.epoch);
        if epoch_moved && !previous.is_null() && !shard_is_live(previous) {
            previous = std::ptr::null();
        }
        HOT.with(|h| {
            h.shard.set(previous);
            h.span.set(self.previous_span);
        });
    }
}
