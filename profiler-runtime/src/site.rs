//! The static record the macro emits for each profiled function.

use std::sync::atomic::{AtomicU32, Ordering};

/// One `#[profile_node]` call site: its node id and a process-wide index, given on first
/// use, that lets each thread find its counters for the site with one array lookup.
///
/// The macro emits one `static` of this type per profiled function; users do not build it.
#[derive(Debug)]
pub struct CallSite {
    id: &'static str,
    is_async: bool,
    index: AtomicU32,
}

/// Index source for call sites. Starts at 1 so that 0 can mean "not assigned yet".
static NEXT_INDEX: AtomicU32 = AtomicU32::new(1);

impl CallSite {
    /// A call site for node `id`; `is_async` when the node's time runs in a future.
    pub const fn new(id: &'static str, is_async: bool) -> Self {
        Self {
            id,
            is_async,
            index: AtomicU32::new(0),
        }
    }

    /// The node id given to `#[profile_node]`.
    pub fn id(&self) -> &'static str {
        self.id
    }

    /// Whether the node is async (its time is measured from first poll to completion).
    pub fn is_async(&self) -> bool {
        self.is_async
    }

    /// The site's index, assigned on first use. Never 0.
    #[inline(always)]
    pub(crate) fn index(&self) -> usize {
        let index = self.index.load(Ordering::Relaxed);
        if index != 0 {
            return index as usize;
        }
        self.assign_index()
    }

    #[cold]
    #[inline(never)]
    fn assign_index(&self) -> usize {
        let fresh = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        match self
            .index
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh as usize,
            // Another thread won the race; its index is the site's.
            Err(existing) => existing as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallSite;

    #[test]
    fn index_is_assigned_once_and_is_never_zero() {
        static A: CallSite = CallSite::new("a", false);
        static B: CallSite = CallSite::new("b", true);
        let a = A.index();
        assert_ne!(a, 0);
        assert_eq!(A.index(), a);
        assert_ne!(B.index(), a);
        assert_eq!(A.id(), "a");
        assert!(B.is_async());
    }
}
