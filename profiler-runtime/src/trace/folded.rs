//! The per-node statistics of the sync calls whose span holds them.
//!
//! In trace mode a sync call whose span fits in the buffer does not update its node's
//! counters on the call path: the span already holds everything they need (start, end, self
//! time, outcome), so the counters are built from the spans when somebody reads them. That
//! keeps the call path to the span's writes alone, as a span collector's is. The reader
//! folds each such span once, in whatever order threads published them, since every counter
//! is order-free (sums, extremes, the histogram, the latest end).

use std::collections::HashMap;

use crate::site::CallSite;
use crate::stats::{Call, Stats};

/// What the readers folded so far: which slots they have seen written, and the counters of
/// the calls those slots held.
#[derive(Debug, Default)]
pub(super) struct Folded {
    /// One bit per slot: set once the slot has been seen written (folded or not a call
    /// whose statistics it holds). A slot is written once, so it is never read again.
    seen: Vec<u64>,
    /// Every slot below this one is seen: where the next read starts.
    low: usize,
    /// The folded counters of each call site met, in ticks.
    sites: Vec<(&'static CallSite, Stats)>,
    /// Where each site's counters are in `sites`, by the site's address.
    index: HashMap<usize, usize>,
    /// The site folded last: spans of one site tend to come together, and this spares
    /// them the map.
    last: usize,
}

impl Folded {
    /// A state for a buffer of `capacity` slots, none seen.
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            seen: vec![0; capacity.div_ceil(64)],
            low: 0,
            sites: Vec::new(),
            index: HashMap::new(),
            last: 0,
        }
    }

    /// Visits each slot of `0..written` not seen yet; `read` tells whether the slot is
    /// written now (then it is marked seen) and, if it holds a call's statistics, which.
    /// Slots claimed but not written yet (a call being written, or the rest of a run a
    /// thread left) are visited again at the next read.
    pub(super) fn fold(
        &mut self,
        written: usize,
        mut read: impl FnMut(usize) -> Option<Option<(&'static CallSite, Call)>>,
    ) {
        let mut all_seen_so_far = true;
        let first_word = self.low / 64;
        let last_word = written.div_ceil(64).min(self.seen.len());
        for word_index in first_word..last_word {
            let word = self.seen[word_index];
            if word == u64::MAX {
                if all_seen_so_far {
                    self.low = (word_index + 1) * 64;
                }
                continue;
            }
            let mut marked = word;
            for bit in 0..64 {
                let index = word_index * 64 + bit;
                if index >= written {
                    break;
                }
                if marked & (1 << bit) == 0 {
                    match read(index) {
                        Some(call) => {
                            marked |= 1 << bit;
                            if let Some((site, call)) = call {
                                self.add(site, &call);
                            }
                        }
                        None => all_seen_so_far = false,
                    }
                }
                if all_seen_so_far {
                    self.low = index + 1;
                }
            }
            self.seen[word_index] = marked;
        }
    }

    fn add(&mut self, site: &'static CallSite, call: &Call) {
        let at = match self.sites.get(self.last) {
            Some((last, _)) if std::ptr::eq(*last, site) => self.last,
            _ => self.position(site),
        };
        self.last = at;
        let stats = &mut self.sites[at].1;
        // `Stats::add` takes the first call added for the first; spans come in any order, so
        // the earliest start is kept (counting on the call path, a thread's first call to
        // end gives it: with recursion, the inner call, which started later).
        let first_start = match stats.calls {
            0 => call.start,
            _ => stats.first_start.min(call.start),
        };
        stats.add(call);
        stats.first_start = first_start;
    }

    /// Where `site`'s counters are in `sites`, added empty if new.
    fn position(&mut self, site: &'static CallSite) -> usize {
        let next = self.sites.len();
        let at = *self
            .index
            .entry(std::ptr::from_ref(site) as usize)
            .or_insert(next);
        if at == next {
            self.sites.push((site, Stats::default()));
        }
        at
    }

    /// The first slot not seen yet: where the next read starts.
    #[cfg(test)]
    pub(super) fn first_unseen(&self) -> usize {
        self.low
    }

    /// The folded counters, per call site.
    pub(super) fn totals(&self) -> impl Iterator<Item = (&'static CallSite, &Stats)> {
        self.sites.iter().map(|(site, stats)| (*site, stats))
    }

    /// Bytes held, for the analyzer's memory accounting.
    pub(super) fn memory_bytes(&self) -> usize {
        self.seen.capacity() * std::mem::size_of::<u64>()
            + self.sites.capacity() * std::mem::size_of::<(&CallSite, Stats)>()
            + self.index.capacity() * std::mem::size_of::<(usize, usize)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Outcome;

    static SITE: CallSite = CallSite::new("folded", false);

    fn call(start: u64) -> Call {
        Call {
            start,
            end: start + 10,
            self_time: 4,
            busy: 10,
            outcome: Outcome::Ok,
        }
    }

    /// Slots come written in any order, some never: each written one is folded exactly
    /// once, whatever the reads in between.
    #[test]
    fn each_written_slot_is_folded_once() {
        let capacity = 200;
        let mut written = [false; 200];
        let mut folded = Folded::new(capacity);
        let mut reads = 0;
        let read_all = |folded: &mut Folded, written: &[bool; 200]| {
            folded.fold(capacity, |i| {
                written[i].then_some(Some((&SITE, call(i as u64))))
            });
        };
        // Written out of order, with slot 3 and 150 never written.
        for i in (0..capacity).rev().chain(0..capacity) {
            if i != 3 && i != 150 && !written[i] {
                written[i] = true;
                reads += 1;
                if reads % 17 == 0 {
                    read_all(&mut folded, &written);
                }
            }
        }
        read_all(&mut folded, &written);
        read_all(&mut folded, &written);
        let (_, stats) = folded.totals().next().unwrap();
        assert_eq!(stats.calls, capacity as u64 - 2);
        assert_eq!(stats.self_total, 4 * (capacity as u64 - 2));
        assert_eq!(stats.first_start, 0);
        assert_eq!(stats.last_end, 199 + 10);
        assert_eq!(folded.low, 3, "slot 3 is still unwritten");
    }

    #[test]
    fn the_start_moves_past_slots_all_seen() {
        let mut folded = Folded::new(300);
        folded.fold(130, |_| Some(None));
        assert_eq!(folded.low, 130);
        assert_eq!(folded.totals().count(), 0);
        folded.fold(300, |i| (i != 140).then_some(None));
        assert_eq!(folded.low, 140);
        folded.fold(300, |_| Some(None));
        assert_eq!(folded.low, 300);
    }
}
