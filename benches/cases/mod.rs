//! The functions under test, shared by the bench targets: the same trivial body with
//! different instrumentation.
// Each bench target uses only some of them.
#![allow(dead_code)]

use std::hint::black_box;
use std::time::Instant;

use agent_profiler::profile_node;

#[inline(never)]
pub fn bare(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
pub fn floor(x: u64) -> u64 {
    let start = Instant::now();
    let r = black_box(x).wrapping_mul(3);
    let end = Instant::now();
    black_box((start, end));
    r
}

/// A reference, with no target of its own: the cheapest possible timing with the TSC, two
/// raw `rdtsc` reads, to tell what in case 4 is the clock and what is the bookkeeping.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
pub fn rdtsc_pair(x: u64) -> u64 {
    // SAFETY: `rdtsc` has no preconditions.
    let start = unsafe { core::arch::x86_64::_rdtsc() };
    let r = black_box(x).wrapping_mul(3);
    // SAFETY: as above.
    let end = unsafe { core::arch::x86_64::_rdtsc() };
    black_box((start, end));
    r
}

#[profile_node("bench_sync")]
#[inline(never)]
pub fn profiled(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[inline(never)]
pub async fn bare_async(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[profile_node("bench_async")]
#[inline(never)]
pub async fn profiled_async(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[tracing::instrument]
#[inline(never)]
pub fn traced_no_subscriber(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

// A separate function (callsite) from the one above, so that the two cases do not share
// tracing's cached callsite interest.
#[tracing::instrument]
#[inline(never)]
pub fn traced_registry(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

#[fastrace::trace]
#[inline(never)]
pub fn fastraced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}
