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

/// A node that calls [`profiled`] `n` times: a run of `n + 1` spans in trace mode, each inner
/// one with a parent (the trace-snapshot cases).
#[profile_node("bench_run")]
#[inline(never)]
pub fn profiled_run(n: u64) -> u64 {
    let mut acc = 0_u64;
    for i in 0..n {
        acc ^= profiled(black_box(i));
    }
    acc
}

/// `calls` calls of [`fastraced`], under a fresh fastrace root span (with its local parent) every
/// `per_root` calls: a root's local span queue holds a bounded number of spans, and one that
/// collected more would drop the rest. Every span goes to the reporter set with
/// `fastrace::set_reporter`.
#[inline(never)]
pub fn fastrace_collected(calls: u64, per_root: u64) -> u64 {
    let mut acc = 0_u64;
    let mut left = calls;
    while left > 0 {
        let n = left.min(per_root);
        let root = fastrace::Span::root("bench", fastrace::collector::SpanContext::random());
        let parent = root.set_local_parent();
        for i in 0..n {
            acc ^= fastraced(black_box(i));
        }
        drop(parent);
        drop(root);
        left -= n;
    }
    acc
}

/// Puts glibc's allocator in the state of a process that has run for a while, for
/// fastrace's sake: a root's span list grows to about 100 KB per 1000 spans and is freed by
/// fastrace's collector thread. Below glibc's mmap threshold (128 KB at start) such blocks
/// come from the heap and are reused; above it each one is a fresh mapping whose pages fault
/// in as spans are added, which here about doubles fastrace's cost per span. Freeing one
/// large mapped block raises the threshold to its size (glibc's dynamic threshold, up to
/// 32 MB), as any large free does early in a real process, so fastrace is measured at its
/// best. Profiled calls allocate nothing, so this changes nothing for them.
pub fn settle_allocator() {
    let block: Vec<u8> = Vec::with_capacity(16 << 20);
    black_box(block.as_ptr());
    drop(block);
}

/// A fastrace reporter that discards every span it is handed.
pub struct Discard;

impl fastrace::collector::Reporter for Discard {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        black_box(spans);
    }
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

/// [`profiled_async`] again, for the callgrind case with no analyzer: its own function, so
/// that the case leaves the code of `profiled_async`'s callers as it was.
#[profile_node("bench_async_none")]
#[inline(never)]
pub async fn profiled_async_none(x: u64) -> u64 {
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
