//! One thread's counters for one analyzer.
//!
//! The call path writes only to the shard of its own thread, so it needs no lock and no
//! atomic read-modify-write: a shard is "written only by its owner". Summaries read every
//! shard's slots through the `slots` list, which the owner touches only when it meets a call
//! site for the first time.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use crate::analyzer::Inner;
use crate::export::{CallRing, RawRecord};
use crate::site::CallSite;
use crate::stats::{Call, Slot, Stats};
use crate::trace::{SlotRun, TraceBuffer};

/// What every shard of one analyzer shares: the analyzer's on/off switch, kept apart from
/// the analyzer so that a shard can check it without owning the analyzer.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The analyzer's process-wide id.
    pub(crate) id: u64,
    pub(crate) enabled: AtomicBool,
    /// Whether calls are also kept one by one for exporters (see `export`).
    pub(crate) export: AtomicBool,
    /// Capacity of each thread's export ring, read when a ring is created.
    pub(crate) ring_capacity: AtomicUsize,
    /// Whether calls are kept as spans (trace mode, see `trace`).
    pub(crate) trace: AtomicBool,
    /// The spans, once trace mode has been turned on.
    pub(crate) trace_buffer: OnceLock<TraceBuffer>,
}

/// The shard records nothing (analyzer or process disabled).
pub(crate) const MODE_OFF: u8 = 0;
/// The shard records calls.
pub(crate) const MODE_ON: u8 = 1;
/// The shard records calls and keeps each as a span (trace mode).
pub(crate) const MODE_TRACE: u8 = 2;

pub(crate) struct Shard {
    /// This shard's copies of the flags, which the analyzer refreshes in every shard (under
    /// its registry lock): the call path reads them from the shard it already has in hand
    /// instead of following pointers to the analyzer and to the process-wide switch.
    /// `mode` is the analyzer's flags and the process-wide switch together: [`MODE_OFF`],
    /// [`MODE_ON`] or [`MODE_TRACE`], so that the call path tells "record as usual" from
    /// everything else with one load and one comparison.
    pub(crate) mode: AtomicU8,
    pub(crate) export: AtomicBool,
    pub(crate) shared: Arc<Shared>,
    /// Weak, because the analyzer owns its shards; used to find the analyzer from a thread.
    pub(crate) analyzer: Weak<Inner>,
    /// Site index to slot. Owner thread only (see `record_owned`).
    index: UnsafeCell<Vec<*const Slot>>,
    /// Length of `index`, readable from any thread for memory accounting.
    index_len: AtomicUsize,
    /// Every slot, for readers. The boxes never move, so `index` can point into them.
    slots: Mutex<Vec<(&'static CallSite, Box<Slot>)>>,
    /// Per-call records for exporters, created on the first call made with export on.
    ring: OnceLock<CallRing>,
    /// The slots of the analyzer's trace buffer this thread holds, not written yet. Owner
    /// thread only (see `TraceBuffer::push_owned`).
    pub(crate) trace_run: SlotRun,
}

// SAFETY: `index` and `trace_run` are only touched by the owning thread (`record_owned` is
// unsafe and states that contract, and `trace_run` is used only through a shard taken from
// the calling thread's `HOT`); everything else is atomics or behind the mutex.
unsafe impl Send for Shard {}
// SAFETY: as above.
unsafe impl Sync for Shard {}

impl Shard {
    pub(crate) fn new(shared: Arc<Shared>, analyzer: Weak<Inner>) -> Self {
        let shard = Self {
            mode: AtomicU8::new(MODE_OFF),
            export: AtomicBool::new(false),
            shared,
            analyzer,
            index: UnsafeCell::new(Vec::new()),
            index_len: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            ring: OnceLock::new(),
            trace_run: SlotRun::default(),
        };
        shard.copy_flags();
        shard
    }

    /// Copies the analyzer's flags and the process-wide switch into this shard.
    pub(crate) fn copy_flags(&self) {
        let enabled = self.shared.enabled.load(Ordering::Relaxed) && crate::context::is_enabled();
        let mode = match (enabled, self.shared.trace.load(Ordering::Relaxed)) {
            (false, _) => MODE_OFF,
            (true, false) => MODE_ON,
            (true, true) => MODE_TRACE,
        };
        self.mode.store(mode, Ordering::Relaxed);
        let export = self.shared.export.load(Ordering::Relaxed);
        self.export.store(export, Ordering::Relaxed);
    }

    /// Adds one call of `site`.
    ///
    /// # Safety
    /// Only the thread that owns this shard (the one whose context created it) may call this.
    #[inline(always)]
    pub(crate) unsafe fn record_owned(&self, site: &'static CallSite, call: &Call) {
        let index = site.index();
        // SAFETY: owner-only access to `index`, per this function's contract.
        let table = unsafe { &*self.index.get() };
        match table.get(index) {
            // SAFETY: non-null entries point into boxes kept in `slots` for the shard's life.
            Some(&slot) if !slot.is_null() => unsafe { (*slot).record_owned(call) },
            // SAFETY: forwarded contract.
            _ => unsafe { self.record_first(site, index, call) },
        }
        if self.export.load(Ordering::Relaxed) {
            self.export_owned(site, call);
        }
    }

    #[inline(never)]
    fn export_owned(&self, site: &'static CallSite, call: &Call) {
        self.ring
            .get_or_init(|| CallRing::new(self.shared.ring_capacity.load(Ordering::Relaxed)))
            .push_owned(site, call);
    }

    /// Moves this shard's exported calls into `out`. One drain at a time per analyzer.
    pub(crate) fn drain_calls(&self, out: &mut Vec<RawRecord>) {
        if let Some(ring) = self.ring.get() {
            ring.drain_into(out);
        }
    }

    /// Per-call records this shard could not keep because its ring was full.
    pub(crate) fn dropped_calls(&self) -> u64 {
        self.ring.get().map_or(0, CallRing::dropped)
    }

    #[cold]
    #[inline(never)]
    unsafe fn record_first(&self, site: &'static CallSite, index: usize, call: &Call) {
        let slot = Box::new(Slot::new(call.start));
        let ptr: *const Slot = &*slot;
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((site, slot));
        // SAFETY: owner-only access to `index`, per the caller's contract.
        let table = unsafe { &mut *self.index.get() };
        if table.len() <= index {
            table.resize(index + 1, std::ptr::null());
            self.index_len.store(table.capacity(), Ordering::Relaxed);
        }
        table[index] = ptr;
        // SAFETY: just boxed above and kept in `slots`.
        unsafe { (*ptr).record_owned(call) };
    }

    /// Each site's counters as they are now (in ticks).
    pub(crate) fn snapshot(&self) -> Vec<(&'static CallSite, Stats)> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(site, slot)| (*site, slot.snapshot()))
            .collect()
    }

    /// Bytes this shard holds, for the analyzer's memory accounting.
    pub(crate) fn memory_bytes(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::size_of::<Self>()
            + slots.capacity() * std::mem::size_of::<(&CallSite, Box<Slot>)>()
            + slots.len() * std::mem::size_of::<Slot>()
            // Sized by the largest site index met, which the number of profiled functions in
            // the program bounds.
            + self.index_len.load(Ordering::Relaxed) * std::mem::size_of::<*const Slot>()
            + self.ring.get().map_or(0, CallRing::memory_bytes)
    }
}
