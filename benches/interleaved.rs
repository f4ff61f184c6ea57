//! The sync cases of `overhead.rs`, measured interleaved: every round times a batch of each
//! case in turn, so that the machine's drift (frequency, steal time on a VM) hits all cases
//! alike, and the per-case median over the rounds is compared. On a noisy 2-vCPU VM this
//! gives ratios that move by a few hundredths between runs, where separate criterion runs
//! move by tenths.
//!
//! Run: `cargo bench --bench interleaved` (about 30 s). Prints ns per call and the overhead
//! ratio to the floor (two `Instant::now()` reads), as `scripts/bench-ratios` does. Cases 6
//! and 7 are an LLM call made inside a node, tracked from its usage and timed with
//! `start_call` (priced, kept in the default history): their difference is what timing a
//! call costs, and case 7 less case 4 what a timed call costs in all. Case 5f is fastrace
//! collecting the same calls as spans (`#[fastrace::trace]`, fastrace's cheapest span, a
//! local span under a local parent, with a root every 1000 calls and a discarding reporter),
//! beside trace mode (case 5); case 5g adds `fastrace::flush()` to each batch, so that its
//! spans reach the reporter, which trace mode's recording and snapshot together compare
//! with. Every fourth round also times `analyzer.trace()` of a run of 200,000 spans (and
//! their root), printed as ns per span, and the drop of that copy apart; and, once, the first
//! read of that run's node counters, which in trace mode counts each sync call from its span.

use std::hint::black_box;
use std::time::Instant;

use agent_profiler::{BottleneckAnalyzer, clear_profiler, set_enabled, set_profiler};

mod cases;

use cases::{
    Discard, bare, fastrace_collected, floor, llm_call_timed, llm_call_untimed, profiled,
    profiled_run, rdtsc_pair, settle_allocator,
};

const CALLS_PER_BATCH: u64 = 20_000;
const ROUNDS: usize = 400;
/// Calls per fastrace root span (see `fastrace_collected`).
const FASTRACE_PER_ROOT: u64 = 1000;
/// Spans in the run whose trace the snapshot copies (its root comes on top).
const SNAPSHOT_SPANS: u64 = 200_000;
/// The snapshot is timed every this many rounds.
const SNAPSHOT_EVERY: usize = 4;

#[derive(Clone, Copy, PartialEq)]
enum Setup {
    NoAnalyzer,
    Analyzer,
    Disabled,
    /// An analyzer in trace mode, new each round so that its buffer holds every span.
    Traced,
    /// No analyzer; the batch runs under fastrace root spans (the case's `f` is not used).
    Fastrace,
    /// As `Fastrace`, then `fastrace::flush()` inside the timing: the spans collected and
    /// handed to the reporter, as trace mode's recording and snapshot together do.
    FastraceReported,
}

struct Case {
    name: &'static str,
    f: fn(u64) -> u64,
    setup: Setup,
    ns_per_call: Vec<f64>,
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        2
    };
    let analyzer = BottleneckAnalyzer::new();
    let mut cases: Vec<Case> = [
        ("1_bare", bare as fn(u64) -> u64, Setup::NoAnalyzer),
        ("2_floor", floor, Setup::NoAnalyzer),
        ("2r_ref_rdtsc_pair", rdtsc_pair, Setup::NoAnalyzer),
        ("3_profiled_no_analyzer", profiled, Setup::NoAnalyzer),
        ("3b_profiled_disabled", profiled, Setup::Disabled),
        ("4_profiled_analyzer", profiled, Setup::Analyzer),
        ("5_profiled_trace_mode", profiled, Setup::Traced),
        ("5f_fastrace_collected", bare, Setup::Fastrace),
        ("5g_fastrace_reported", bare, Setup::FastraceReported),
        ("6_llm_call_untimed", llm_call_untimed, Setup::Analyzer),
        ("7_llm_call_timed", llm_call_timed, Setup::Analyzer),
    ]
    .into_iter()
    .map(|(name, f, setup)| Case {
        name,
        f,
        setup,
        ns_per_call: Vec::with_capacity(rounds),
    })
    .collect();

    settle_allocator();
    fastrace::set_reporter(Discard, fastrace::collector::Config::default());
    let mut snapshot = Snapshot::new();
    let count = cases.len();
    for round in 0..rounds {
        // Rotate the starting case so that no case always runs right after another.
        for offset in 0..count {
            let case = &mut cases[(round + offset) % count];
            let traced = BottleneckAnalyzer::new();
            match case.setup {
                Setup::NoAnalyzer | Setup::Fastrace | Setup::FastraceReported => clear_profiler(),
                Setup::Analyzer | Setup::Disabled => set_profiler(&analyzer),
                Setup::Traced => {
                    traced.enable_trace(CALLS_PER_BATCH as usize);
                    set_profiler(&traced);
                }
            }
            set_enabled(case.setup != Setup::Disabled);
            let began = Instant::now();
            if case.setup == Setup::Fastrace {
                black_box(fastrace_collected(CALLS_PER_BATCH, FASTRACE_PER_ROOT));
            } else if case.setup == Setup::FastraceReported {
                black_box(fastrace_collected(CALLS_PER_BATCH, FASTRACE_PER_ROOT));
                fastrace::flush();
            } else {
                for i in 0..CALLS_PER_BATCH {
                    black_box((case.f)(black_box(i)));
                }
            }
            case.ns_per_call
                .push(began.elapsed().as_nanos() as f64 / CALLS_PER_BATCH as f64);
            if case.setup == Setup::Fastrace {
                // Outside the timing: so that case 5g's flush hands over its own spans only.
                fastrace::flush();
            }
        }
        if round % SNAPSHOT_EVERY == 0 {
            snapshot.time();
        }
    }
    set_enabled(true);
    clear_profiler();
    let traced = report(&mut cases, &analyzer);
    snapshot.report(traced);
    fastrace::flush();
}

/// The snapshot case: an analyzer holding a run of [`SNAPSHOT_SPANS`] spans, and the time of
/// each `trace()` of it and of each drop of the copy, ns per span.
struct Snapshot {
    analyzer: BottleneckAnalyzer,
    spans: usize,
    /// The first read of the run's node counters: each sync span folded into them once.
    count_ns_per_span: f64,
    ns_per_span: Vec<f64>,
    drop_ns_per_span: Vec<f64>,
}

impl Snapshot {
    fn new() -> Self {
        let analyzer = BottleneckAnalyzer::new();
        analyzer.enable_trace(SNAPSHOT_SPANS as usize + 1);
        set_profiler(&analyzer);
        black_box(profiled_run(SNAPSHOT_SPANS));
        clear_profiler();
        let began = Instant::now();
        let counted = black_box(analyzer.get_timings());
        let count_ns_per_span = began.elapsed().as_nanos() as f64 / (SNAPSHOT_SPANS + 1) as f64;
        assert_eq!(
            counted.iter().map(|n| n.call_count).sum::<u64>(),
            SNAPSHOT_SPANS + 1
        );
        let spans = analyzer.trace().map_or(0, |t| t.spans.len());
        assert_eq!(spans as u64, SNAPSHOT_SPANS + 1, "the run's spans all kept");
        Self {
            analyzer,
            spans,
            count_ns_per_span,
            ns_per_span: Vec::new(),
            drop_ns_per_span: Vec::new(),
        }
    }

    fn time(&mut self) {
        let began = Instant::now();
        let trace = black_box(self.analyzer.trace());
        let took = began.elapsed();
        let began = Instant::now();
        drop(trace);
        let dropped = began.elapsed();
        let per_span = |d: std::time::Duration| d.as_nanos() as f64 / self.spans as f64;
        self.ns_per_span.push(per_span(took));
        self.drop_ns_per_span.push(per_span(dropped));
    }

    /// Prints the snapshot's figures and, with `recording` (trace mode's ns per span), what
    /// a span costs recorded and copied out, to set beside case 5g.
    fn report(&mut self, recording: f64) {
        let snapshot = median(&mut self.ns_per_span);
        println!(
            "trace snapshot, {} spans, {} times: {snapshot:.1} ns per span (median), dropping the copy {:.1} ns per span",
            self.spans,
            self.ns_per_span.len(),
            median(&mut self.drop_ns_per_span),
        );
        println!(
            "node counters read first (each span counted), once: {:.1} ns per span",
            self.count_ns_per_span
        );
        println!(
            "trace mode recorded, counted and snapshot taken: {:.1} ns per span (case 5 + counting + snapshot; beside 5g)",
            recording + self.count_ns_per_span + snapshot
        );
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints the table; returns trace mode's overhead per call (case 5), ns.
fn report(cases: &mut [Case], analyzer: &BottleneckAnalyzer) -> f64 {
    let medians: Vec<(&str, f64)> = cases
        .iter_mut()
        .map(|c| (c.name, median(&mut c.ns_per_call)))
        .collect();
    let of = |name: &str| {
        medians
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |m| m.1)
    };
    let bare = of("1_bare");
    let floor = of("2_floor") - bare;
    println!(
        "interleaved, {} rounds x {CALLS_PER_BATCH} calls, clock source {}",
        cases[0].ns_per_call.len(),
        agent_profiler::clock::source().as_str()
    );
    println!(
        "{:<26} {:>9} {:>9} {:>7}",
        "case", "ns/call", "overhead", "ratio"
    );
    for (name, ns) in &medians {
        let overhead = ns - bare;
        println!(
            "{name:<26} {ns:>9.2} {overhead:>9.2} {:>7.3}",
            overhead / floor
        );
    }
    let traced = of("5_profiled_trace_mode") - bare;
    let fastrace = of("5f_fastrace_collected") - bare;
    println!(
        "trace mode / fastrace, per span: {:.3} ({traced:.2} ns vs {fastrace:.2} ns)",
        traced / fastrace
    );
    let calls = analyzer.get_node("bench_sync").map_or(0, |n| n.call_count);
    println!("calls recorded by the analyzer: {calls}");
    traced
}
