//! Call-path overhead of `#[profile_node]`, side by side with `#[tracing::instrument]` and
//! `#[fastrace::trace]`: the figures behind the README's "Call-path overhead" table.
//!
//! Every case times calls of an `#[inline(never)]` function whose work is trivial
//! (`black_box(x).wrapping_mul(3)`), so what is measured is the instrumentation:
//!
//! | id | case |
//! |---|---|
//! | `1_bare` | the function, bare |
//! | `2_floor` | the floor: the same function with two `Instant::now()` reads around the work |
//! | `2r_ref_rdtsc_pair` | reference, no target of its own: two raw `rdtsc` reads (x86_64) |
//! | `3_profiled_no_analyzer` | `#[profile_node]`, no analyzer installed |
//! | `3b_profiled_disabled` | `#[profile_node]`, analyzer installed, `set_enabled(false)` |
//! | `4_profiled_analyzer` | `#[profile_node]`, analyzer installed on the bench thread |
//! | `5a_async_bare` | bare async fn awaited on a current-thread tokio runtime |
//! | `5b_async_profiled_analyzer` | the same async fn with `#[profile_node]`, analyzer installed |
//! | `6a_tracing_no_subscriber` | `#[tracing::instrument]`, no subscriber |
//! | `6b_tracing_registry` | `#[tracing::instrument]`, `tracing_subscriber::registry()` as the thread default |
//! | `4t_profiled_trace_mode` | `#[profile_node]`, analyzer in trace mode installed (every call kept as a span) |
//! | `7_fastrace_local_parent` | `#[fastrace::trace]` under a local parent span, discarding reporter set |
//! | `8a/8b_threads{1,2}_profiled` | N calls on 1 thread vs N calls on each of 2 threads at once |
//! | `8c/8d_threads{1,2}_bare` | the same for the bare fn: what the machine itself scales to |
//! | `9_trace_snapshot_200k` | `analyzer.trace()` of a run of 200,000 spans, per span |
//!
//! Batched cases (async: 1000 awaits per `block_on`; fastrace: 1000 calls per root span;
//! trace mode: a fresh analyzer every 100,000 calls; the snapshot: 200,001 spans) set
//! `Throughput::Elements`, which `scripts/bench-ratios` divides by, so every figure it prints
//! is per call. The two-thread cases are per call per thread (wall time of the batch / N).
//!
//! Run:
//!
//! ```text
//! cargo bench --bench overhead
//! scripts/bench-ratios            # overhead ratios to the floor, and the README's targets
//! ```
//!
//! Filter with criterion's usual argument, e.g. `cargo bench --bench overhead -- 4_`.

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_profiler::{BottleneckAnalyzer, clear_profiler, set_enabled, set_profiler};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};

/// Calls per `block_on` (async) and per root span (fastrace).
const BATCH: u64 = 1000;

/// Spans each trace-mode analyzer keeps: a fresh analyzer every this many calls, so that every
/// measured call is kept (a full buffer only counts the calls it drops).
const TRACE_BATCH: u64 = 100_000;

/// Spans in the run whose trace the snapshot case copies.
const SNAPSHOT_SPANS: u64 = 200_000;

mod cases;

use cases::*;

// ---- helpers -------------------------------------------------------------------------------

fn sync_case(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, f: fn(u64) -> u64) {
    group.throughput(Throughput::Elements(1));
    group.bench_function(id, |b| b.iter(|| f(black_box(7))));
}

/// `BATCH` awaits of `f` inside one `block_on` per iteration.
fn async_case<Fut: Future<Output = u64>>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    id: &str,
    f: fn(u64) -> Fut,
) {
    group.throughput(Throughput::Elements(BATCH));
    group.bench_function(id, |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut acc = 0_u64;
                for i in 0..BATCH {
                    acc ^= f(black_box(i)).await;
                }
                acc
            })
        })
    });
}

/// Wall time of `iters` calls of `f` on each of `threads` threads started together, each
/// with `analyzer` installed (if any).
fn threads_case(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    threads: usize,
    analyzer: Option<&BottleneckAnalyzer>,
    f: fn(u64) -> u64,
) {
    group.throughput(Throughput::Elements(1));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let analyzer = analyzer.cloned();
                    s.spawn(move || {
                        if let Some(a) = &analyzer {
                            set_profiler(a);
                        }
                        for _ in 0..iters {
                            f(black_box(7));
                        }
                        clear_profiler();
                    });
                }
            });
            start.elapsed()
        })
    });
}

/// `4t_profiled_trace_mode`: `#[profile_node]` with an analyzer in trace mode installed, a
/// fresh one (made outside the timing) every [`TRACE_BATCH`] calls.
fn trace_mode_case(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.throughput(Throughput::Elements(1));
    group.bench_function("4t_profiled_trace_mode", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(TRACE_BATCH);
                let analyzer = BottleneckAnalyzer::new();
                analyzer.enable_trace(TRACE_BATCH as usize);
                set_profiler(&analyzer);
                let start = Instant::now();
                for _ in 0..n {
                    profiled(black_box(7));
                }
                elapsed += start.elapsed();
                clear_profiler();
                left -= n;
            }
            elapsed
        })
    });
}

/// `9_trace_snapshot_200k`: `analyzer.trace()` of a run of [`SNAPSHOT_SPANS`] spans (and its
/// root), per span. The copy is dropped outside the timing (its drop is the caller's, later).
fn snapshot_case(c: &mut Criterion) {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(SNAPSHOT_SPANS as usize + 1);
    set_profiler(&analyzer);
    black_box(profiled_run(SNAPSHOT_SPANS));
    clear_profiler();
    settle_allocator();
    let mut group = c.benchmark_group("overhead");
    group.sample_size(20);
    group.throughput(Throughput::Elements(SNAPSHOT_SPANS + 1));
    group.bench_function("9_trace_snapshot_200k", |b| {
        b.iter_with_large_drop(|| analyzer.trace())
    });
    group.finish();
}

// ---- the run ------------------------------------------------------------------------------

fn overhead(c: &mut Criterion) {
    let analyzer = BottleneckAnalyzer::new();
    eprintln!(
        "agent-profiler clock source: {}",
        agent_profiler::clock::source().as_str()
    );
    let mut group = c.benchmark_group("overhead");

    // 1, 2, 3: no analyzer on this thread.
    clear_profiler();
    sync_case(&mut group, "1_bare", bare);
    sync_case(&mut group, "2_floor", floor);
    #[cfg(target_arch = "x86_64")]
    sync_case(&mut group, "2r_ref_rdtsc_pair", rdtsc_pair);
    sync_case(&mut group, "3_profiled_no_analyzer", profiled);

    // 3b, 4: analyzer installed on the bench thread.
    set_profiler(&analyzer);
    set_enabled(false);
    sync_case(&mut group, "3b_profiled_disabled", profiled);
    set_enabled(true);
    sync_case(&mut group, "4_profiled_analyzer", profiled);

    // 5: async, analyzer installed (block_on polls on this thread).
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("current-thread runtime");
    async_case(&mut group, &rt, "5a_async_bare", bare_async);
    async_case(
        &mut group,
        &rt,
        "5b_async_profiled_analyzer",
        profiled_async,
    );
    clear_profiler();

    // 6: tracing. No subscriber first: its callsite caches "never" before any dispatcher
    // exists; then the registry as this thread's default.
    sync_case(&mut group, "6a_tracing_no_subscriber", traced_no_subscriber);
    {
        let _default = tracing::subscriber::set_default(tracing_subscriber::registry());
        sync_case(&mut group, "6b_tracing_registry", traced_registry);
    }

    // 7: fastrace, a root span (and local parent) per BATCH calls: a span queue holds at
    // most 10240 spans, and a root that collected more would silently drop the rest.
    fastrace::set_reporter(Discard, fastrace::collector::Config::default());
    group.throughput(Throughput::Elements(1));
    group.bench_function("7_fastrace_local_parent", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            black_box(fastrace_collected(iters, BATCH));
            start.elapsed()
        })
    });

    // 4t: trace mode, beside fastrace: every call kept as a span.
    trace_mode_case(&mut group);

    // 8: two threads on one node vs one thread; the bare pair shows the machine's own limit.
    threads_case(
        &mut group,
        "8a_threads1_profiled",
        1,
        Some(&analyzer),
        profiled,
    );
    threads_case(
        &mut group,
        "8b_threads2_profiled",
        2,
        Some(&analyzer),
        profiled,
    );
    threads_case(&mut group, "8c_threads1_bare", 1, None, bare);
    threads_case(&mut group, "8d_threads2_bare", 2, None, bare);

    group.finish();
    fastrace::flush();
    snapshot_case(c);

    // The analyzer saw the calls (with a placeholder macro it would stay empty).
    let timings = analyzer.get_timings();
    if timings.is_empty() {
        eprintln!("analyzer after the run: no calls recorded (is #[profile_node] a no-op?)");
    }
    for t in timings {
        eprintln!(
            "analyzer after the run: {} calls={} avg={:.6} ms",
            t.node_id, t.call_count, t.avg_duration_ms
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = overhead
}
criterion_main!(benches);
