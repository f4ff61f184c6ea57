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

/// The tracker of the LLM-call cases: the embedded prices and the default history.
fn tracker() -> &'static agent_profiler::MultiProviderCostTracker {
    static TRACKER: std::sync::OnceLock<agent_profiler::MultiProviderCostTracker> =
        std::sync::OnceLock::new();
    TRACKER.get_or_init(agent_profiler::MultiProviderCostTracker::new)
}

/// A node that times one LLM call (start, first chunk, finish with its usage, priced).
#[profile_node("bench_llm_timed")]
#[inline(never)]
pub fn llm_call_timed(x: u64) -> u64 {
    let call = tracker().start_call("openai", "gpt-4o-mini");
    call.first_chunk();
    let info = call.finish(agent_profiler::cost::Usage::new(black_box(x) % 1000, 10));
    info.map_or(0, |i| i.total_tokens)
}

/// The same call tracked from its usage alone, untimed: what timing adds is the difference.
#[profile_node("bench_llm_untimed")]
#[inline(never)]
pub fn llm_call_untimed(x: u64) -> u64 {
    let info = tracker().track_usage(
        "openai",
        "gpt-4o-mini",
        agent_profiler::cost::Usage::new(black_box(x) % 1000, 10),
    );
    info.map_or(0, |i| i.total_tokens)
}
