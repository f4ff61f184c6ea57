//! Trace mode: every call kept as a span with the right parent, thread, outcome, busy time,
//! polls and LLM calls, within the capacity the user set.

mod support {
    pub mod runtimes;
}

use std::collections::HashSet;
use std::time::Duration;

use agent_profiler::cost::Usage;
use agent_profiler::trace::{Span, Trace};
use agent_profiler::{
    BottleneckAnalyzer, MultiProviderCostTracker, Outcome, ProfilerFutureExt, ProfilerScope,
    profile_node,
};

fn span<'a>(trace: &'a Trace, node: &str) -> &'a Span {
    trace
        .spans
        .iter()
        .find(|s| s.node_id == node)
        .unwrap_or_else(|| panic!("no span of `{node}` in {trace:#?}"))
}

fn spans<'a>(trace: &'a Trace, node: &str) -> Vec<&'a Span> {
    trace.spans.iter().filter(|s| s.node_id == node).collect()
}

/// An analyzer in trace mode that keeps up to `capacity` spans and polls.
fn traced(capacity: usize) -> BottleneckAnalyzer {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(capacity);
    analyzer
}

#[profile_node("t_outer")]
fn outer() -> u32 {
    middle() + middle()
}

#[profile_node("t_middle")]
fn middle() -> u32 {
    std::thread::sleep(Duration::from_millis(2));
    leaf()
}

#[profile_node("t_leaf")]
fn leaf() -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    1
}

#[profile_node("t_fails")]
fn fails() -> Result<(), String> {
    Err("no".into())
}

#[profile_node("t_panics")]
fn panics() {
    panic!("planted");
}

#[test]
fn sync_spans_nest_as_the_calls_nested() {
    let analyzer = traced(100);
    let _scope = ProfilerScope::new(&analyzer);
    assert_eq!(outer(), 2);
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 5, "{trace:#?}");
    assert_eq!(trace.dropped, 0);
    let outer = span(&trace, "t_outer");
    assert_eq!(outer.parent_span_id, None);
    assert_eq!(outer.parent_node_id, None);
    let middles = spans(&trace, "t_middle");
    assert_eq!(middles.len(), 2);
    for middle in &middles {
        assert_eq!(middle.parent_span_id, Some(outer.span_id));
        assert_eq!(middle.parent_node_id.as_deref(), Some("t_outer"));
        assert!(middle.start_unix_ns >= outer.start_unix_ns);
        assert!(middle.end_unix_ns <= outer.end_unix_ns);
        assert!(middle.duration_ns() >= 3_000_000, "{middle:?}");
    }
    let leaves = spans(&trace, "t_leaf");
    let parents: HashSet<u64> = leaves.iter().filter_map(|l| l.parent_span_id).collect();
    let middle_ids: HashSet<u64> = middles.iter().map(|m| m.span_id).collect();
    assert_eq!(parents, middle_ids, "each leaf under its own middle");
    let ids: HashSet<u64> = trace.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), 5, "span ids are unique");
    assert!(
        trace
            .spans
            .iter()
            .all(|s| s.thread == outer.thread && !s.is_async)
    );
    assert!(trace.spans.iter().all(|s| s.busy_ns == s.duration_ns()));
    // Spans come in the order they ended: the outer one last.
    assert_eq!(trace.spans.last().unwrap().node_id, "t_outer");
}

#[test]
fn outcomes_are_kept_per_span() {
    let analyzer = traced(10);
    let _scope = ProfilerScope::new(&analyzer);
    let _ = fails();
    let _ = std::panic::catch_unwind(panics);
    leaf();
    let trace = analyzer.trace().unwrap();
    assert_eq!(span(&trace, "t_fails").outcome, Outcome::Error);
    assert_eq!(span(&trace, "t_panics").outcome, Outcome::Panicked);
    assert_eq!(span(&trace, "t_leaf").outcome, Outcome::Ok);
    // After the panic unwound through it, the running span was restored: the next call is
    // top-level again.
    assert_eq!(span(&trace, "t_leaf").parent_span_id, None);
}

#[test]
fn without_trace_mode_there_is_no_trace_and_off_keeps_what_was_kept() {
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    leaf();
    assert!(analyzer.trace().is_none());
    assert!(!analyzer.is_trace_enabled());
    analyzer.enable_trace(10);
    leaf();
    analyzer.disable_trace();
    leaf();
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 1);
    assert_eq!(analyzer.get_node("t_leaf").unwrap().call_count, 3);
}

#[test]
fn beyond_the_capacity_spans_are_counted_not_kept() {
    let analyzer = traced(64);
    let _scope = ProfilerScope::new(&analyzer);
    // Past the capacity, and read once: the counters of every node exist from then on.
    for _ in 0..100 {
        quick();
    }
    assert_eq!(analyzer.get_node("t_quick").unwrap().call_count, 100);
    let before = analyzer.memory_bytes();
    for _ in 100..1000 {
        quick();
    }
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 64);
    assert_eq!(trace.dropped, 1000 - 64);
    assert_eq!(trace.capacity, 64);
    assert_eq!(analyzer.get_node("t_quick").unwrap().call_count, 1000);
    assert_eq!(analyzer.memory_bytes(), before, "memory stays as it was");
}

#[profile_node("t_quick")]
fn quick() {}

#[profile_node("t_llm")]
fn calls_llm(tracker: &MultiProviderCostTracker) {
    tracker
        .track_usage("openai", "gpt-4o", Usage::new(1000, 100))
        .unwrap();
    inner_llm(tracker);
}

#[profile_node("t_inner_llm")]
fn inner_llm(tracker: &MultiProviderCostTracker) {
    tracker
        .track_usage("anthropic", "claude-sonnet-4-5", Usage::new(10, 5))
        .unwrap();
}

#[test]
fn llm_calls_attach_to_the_innermost_span() {
    let analyzer = traced(16);
    let tracker = MultiProviderCostTracker::new();
    let _scope = ProfilerScope::new(&analyzer);
    calls_llm(&tracker);
    calls_llm(&tracker);
    let trace = analyzer.trace().unwrap();
    for outer in spans(&trace, "t_llm") {
        assert_eq!(outer.llm_calls.len(), 1);
        assert_eq!(outer.llm_calls[0].model, "gpt-4o");
        let totals = outer.llm_totals();
        assert_eq!((totals.input_tokens, totals.output_tokens), (1000, 100));
        assert!((totals.cost_usd - 0.0035).abs() < 1e-12);
    }
    for inner in spans(&trace, "t_inner_llm") {
        assert_eq!(inner.llm_calls.len(), 1);
        assert_eq!(inner.llm_calls[0].provider, "anthropic");
    }
    assert_eq!(trace.unattached_llm_calls, 0);
}

#[profile_node("t_async_parent")]
async fn async_parent() {
    tokio::join!(async_child(5), async_child(10));
    leaf();
}

#[profile_node("t_async_child")]
async fn async_child(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    leaf();
}

#[tokio::test]
async fn concurrent_async_children_have_their_own_parents_and_polls() {
    let analyzer = traced(100);
    async_parent().with_profiler(analyzer.clone()).await;
    let trace = analyzer.trace().unwrap();
    let parent = span(&trace, "t_async_parent");
    assert!(parent.is_async);
    assert_eq!(parent.parent_span_id, None);
    let children = spans(&trace, "t_async_child");
    assert_eq!(children.len(), 2);
    for child in &children {
        assert!(child.is_async);
        assert_eq!(child.parent_span_id, Some(parent.span_id));
        assert!(child.duration_ns() >= 5_000_000);
        assert!(child.busy_ns < child.duration_ns(), "sleeping is not busy");
        // Each poll of the child is a slice within its wall time, and they add up to its
        // busy time.
        let polls: Vec<_> = trace
            .polls
            .iter()
            .filter(|p| p.span_id == child.span_id)
            .collect();
        assert!(polls.len() >= 2, "polled before and after the sleep");
        assert!(
            polls
                .iter()
                .all(|p| p.start_unix_ns >= child.start_unix_ns
                    && p.end_unix_ns <= child.end_unix_ns)
        );
        let polled: u64 = polls.iter().map(|p| p.end_unix_ns - p.start_unix_ns).sum();
        assert!(
            polled.abs_diff(child.busy_ns) <= 1_000,
            "{polled} vs {}",
            child.busy_ns
        );
    }
    // The sync leaf inside each child is the child's, not the other child's; the last
    // leaf is the parent's.
    let leaves = spans(&trace, "t_leaf");
    assert_eq!(leaves.len(), 3);
    let leaf_parents: HashSet<u64> = leaves.iter().filter_map(|l| l.parent_span_id).collect();
    let expected: HashSet<u64> = children
        .iter()
        .map(|c| c.span_id)
        .chain([parent.span_id])
        .collect();
    assert_eq!(leaf_parents, expected);
}

/// Two workers: spawned tasks may run on another thread than the one that spawned them. The
/// runtime is dropped before the checks: the spans of exited workers are kept.
#[test]
fn spawned_tasks_on_other_threads_keep_their_parents_and_threads() {
    let analyzer = traced(1000);
    let runtime = support::runtimes::two_workers();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| tokio::spawn(async_child(1 + i % 3).with_profiler(analyzer.clone())))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    drop(runtime);
    let trace = analyzer.trace().unwrap();
    let children = spans(&trace, "t_async_child");
    assert_eq!(children.len(), 8);
    let ids: HashSet<u64> = children.iter().map(|c| c.span_id).collect();
    assert_eq!(ids.len(), 8, "ids unique across threads");
    for child in &children {
        assert_eq!(child.parent_span_id, None);
        let leaf = trace
            .spans
            .iter()
            .find(|s| s.node_id == "t_leaf" && s.parent_span_id == Some(child.span_id))
            .expect("each child's leaf is under it, whichever worker ran it");
        assert!(leaf.start_unix_ns >= child.start_unix_ns);
    }
    assert!(trace.polls.iter().all(|p| p.thread != 0));
}

#[test]
fn manual_records_become_spans_under_the_running_node() {
    let analyzer = traced(10);
    let _scope = ProfilerScope::new(&analyzer);
    records_by_hand(&analyzer);
    let trace = analyzer.trace().unwrap();
    let outer = span(&trace, "t_by_hand");
    let manual = span(&trace, "external_step");
    assert_eq!(manual.parent_span_id, Some(outer.span_id));
    assert_eq!(manual.parent_node_id.as_deref(), Some("t_by_hand"));
    assert_eq!(manual.duration_ns(), 1_500_000);
    assert_ne!(manual.span_id, outer.span_id);
}

#[profile_node("t_by_hand")]
fn records_by_hand(analyzer: &BottleneckAnalyzer) {
    analyzer.record_node("external_step", 1.5).unwrap();
}

#[test]
fn a_trace_round_trips_through_json() {
    let analyzer = traced(10);
    let _scope = ProfilerScope::new(&analyzer);
    outer();
    let trace = analyzer.trace().unwrap();
    let json = serde_json::to_string(&trace).unwrap();
    let back: Trace = serde_json::from_str(&json).unwrap();
    assert_eq!(back, trace);
    assert_eq!(trace.children(None).count(), 1);
    let outer = span(&trace, "t_outer");
    assert_eq!(trace.children(Some(outer.span_id)).count(), 2);
}

#[profile_node("t_orchestrate")]
async fn orchestrate() {
    let analyzer = agent_profiler::get_profiler().expect("installed by with_profiler");
    let tasks: Vec<_> = (0..3)
        .map(|i| tokio::spawn(async_child(1 + i).with_profiler(analyzer.clone())))
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// The runtime is dropped before the checks, as above.
#[test]
fn tasks_spawned_by_a_node_are_its_children_on_any_worker() {
    let analyzer = traced(1000);
    let runtime = support::runtimes::two_workers();
    runtime
        .block_on(runtime.spawn(orchestrate().with_profiler(analyzer.clone())))
        .unwrap();
    drop(runtime);
    let trace = analyzer.trace().unwrap();
    let parent = span(&trace, "t_orchestrate");
    let children = spans(&trace, "t_async_child");
    assert_eq!(children.len(), 3);
    for child in children {
        assert_eq!(child.parent_span_id, Some(parent.span_id));
        assert!(child.start_unix_ns >= parent.start_unix_ns);
        assert!(child.end_unix_ns <= parent.end_unix_ns);
    }
    // The orchestrating node itself was spawned from outside any node: it has no parent.
    assert_eq!(parent.parent_span_id, None);
}

#[profile_node("t_async_panics")]
async fn async_panics() {
    tokio::task::yield_now().await;
    panic!("planted");
}

#[tokio::test]
async fn cancelled_and_panicking_async_calls_end_their_spans() {
    let analyzer = traced(100);
    async {
        // Times out while the child sleeps: dropped after its first poll.
        let cancelled = tokio::time::timeout(Duration::from_millis(5), async_child(500)).await;
        assert!(cancelled.is_err());
        let panicked = tokio::spawn(async_panics().in_current_profiler()).await;
        assert!(panicked.is_err());
    }
    .with_profiler(analyzer.clone())
    .await;
    let trace = analyzer.trace().unwrap();
    let child = span(&trace, "t_async_child");
    assert_eq!(child.outcome, Outcome::Cancelled);
    assert!(child.duration_ns() >= 5_000_000);
    assert_eq!(span(&trace, "t_async_panics").outcome, Outcome::Panicked);
    assert!(trace.polls.iter().any(|p| p.span_id == child.span_id));
}

/// Threads that never ran a profiled call (a plain worker pool calling `record_node`) still
/// give every span its own id.
#[test]
fn manual_records_from_plain_threads_have_distinct_ids() {
    let analyzer = traced(64);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let analyzer = analyzer.clone();
            std::thread::spawn(move || analyzer.record_node("by_hand", 1.0).unwrap())
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 4);
    let ids: HashSet<u64> = trace.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), 4, "span ids repeat: {:?}", trace.spans);
}

/// The counters of a node as the summary shows them, times in whole ns.
fn counters(analyzer: &BottleneckAnalyzer, node: &str) -> [u64; 9] {
    let n = analyzer.get_node(node).unwrap();
    let ns = |ms: f64| (ms * 1e6).round() as u64;
    [
        n.call_count,
        ns(n.total_duration_ms),
        ns(n.self_duration_ms),
        ns(n.busy_duration_ms),
        ns(n.min_duration_ms),
        ns(n.max_duration_ms),
        n.outcomes.ok,
        n.outcomes.error,
        n.outcomes.panicked,
    ]
}

/// The same counters computed from the node's spans.
fn counters_of_spans(trace: &Trace, node: &str) -> [u64; 9] {
    let spans = spans(trace, node);
    let durations: Vec<u64> = spans.iter().map(|s| s.duration_ns()).collect();
    let children = |parent: u64| -> u64 {
        trace
            .spans
            .iter()
            .filter(|c| c.parent_span_id == Some(parent))
            .map(|c| c.duration_ns())
            .sum()
    };
    let count = |outcome: Outcome| spans.iter().filter(|s| s.outcome == outcome).count() as u64;
    [
        spans.len() as u64,
        durations.iter().sum(),
        spans
            .iter()
            .map(|s| s.duration_ns() - children(s.span_id))
            .sum(),
        spans.iter().map(|s| s.busy_ns).sum(),
        durations.iter().copied().min().unwrap(),
        durations.iter().copied().max().unwrap(),
        count(Outcome::Ok),
        count(Outcome::Error),
        count(Outcome::Panicked),
    ]
}

/// In trace mode a sync call's span holds its counters, and the summary counts the call from
/// it: what the summary shows equals what the spans say, self time and outcomes included.
#[test]
fn the_summary_counts_sync_calls_from_their_spans() {
    let analyzer = traced(1024);
    let scope = ProfilerScope::new(&analyzer);
    outer();
    assert!(fails().is_err());
    let _ = std::panic::catch_unwind(panics);
    outer();
    drop(scope);
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.dropped, 0);
    for node in ["t_outer", "t_middle", "t_leaf", "t_fails", "t_panics"] {
        let (summary, from_spans) = (counters(&analyzer, node), counters_of_spans(&trace, node));
        // Counts exactly. Times within 3 ns per call: the summary converts summed ticks, the
        // spans each timestamp, and a self time from spans is a call less its children.
        for (i, (a, b)) in summary.iter().zip(from_spans).enumerate() {
            let slack = if [0, 6, 7, 8].contains(&i) {
                0
            } else {
                3 * summary[0]
            };
            assert!(
                a.abs_diff(b) <= slack,
                "{node}, counter {i}: {summary:?} vs {from_spans:?}"
            );
        }
    }
    let middle = analyzer.get_node("t_middle").unwrap();
    assert!(middle.self_duration_ms >= 4.0 * 0.99, "{middle:?}");
    assert!(middle.total_duration_ms >= 6.0, "{middle:?}");
    assert_eq!(analyzer.get_node("t_leaf").unwrap().call_count, 4);
}

/// Calls counted from their spans and calls counted directly (the buffer full, or trace mode
/// off) add up, on any thread, read while they are made: never lost, never counted twice,
/// never going backwards; and a reset starts the count afresh.
#[test]
fn calls_counted_from_spans_and_directly_add_up_across_threads_and_reads() {
    const THREADS: u64 = 4;
    const EACH: u64 = 5_000;
    let analyzer = traced(7_000);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let analyzer = analyzer.clone();
                s.spawn(move || {
                    let _scope = ProfilerScope::new(&analyzer);
                    for _ in 0..EACH {
                        quick();
                    }
                })
            })
            .collect();
        let mut last = 0;
        while !threads.iter().all(|t| t.is_finished()) {
            let now = analyzer.get_node("t_quick").map_or(0, |n| n.call_count);
            assert!(now >= last, "went back from {last} to {now}");
            let lifetime = analyzer.metrics().node("t_quick").map_or(0, |n| n.calls.ok);
            assert!(lifetime >= now);
            last = now;
        }
    });
    assert_eq!(
        analyzer.get_node("t_quick").unwrap().call_count,
        THREADS * EACH
    );
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len() as u64 + trace.dropped, THREADS * EACH);
    assert!(trace.spans.len() >= 6_000, "{} kept", trace.spans.len());

    analyzer.reset();
    analyzer.disable_trace();
    let _scope = ProfilerScope::new(&analyzer);
    for _ in 0..10 {
        quick();
    }
    assert_eq!(analyzer.get_node("t_quick").unwrap().call_count, 10);
    let lifetime = analyzer.metrics();
    assert_eq!(
        lifetime.node("t_quick").unwrap().calls.ok,
        THREADS * EACH + 10
    );
}

/// With calls exported one by one, trace mode counts through the shard, which exports them:
/// every call is both exported and kept as a span.
#[test]
fn exported_calls_in_trace_mode_are_exported_and_kept() {
    let analyzer = traced(64);
    analyzer.enable_call_export(1024);
    let _scope = ProfilerScope::new(&analyzer);
    for _ in 0..10 {
        quick();
    }
    let mut exported = Vec::new();
    assert_eq!(analyzer.drain_calls(&mut exported), 10);
    assert_eq!(analyzer.trace().unwrap().spans.len(), 10);
    assert_eq!(analyzer.get_node("t_quick").unwrap().call_count, 10);
}

/// A node during whose call the thread records into two other analyzers in turn, dropping
/// the first: registering the second's shard frees the first's, which changes the thread's
/// shard epoch while this call runs.
#[profile_node("t_switches")]
fn switches_analyzers() -> u32 {
    for _ in 0..2 {
        let other = traced(8);
        let _scope = ProfilerScope::new(&other);
        leaf();
    }
    1
}

#[test]
fn a_traced_call_outlives_a_shard_dropped_during_it() {
    let analyzer = traced(64);
    {
        let _scope = ProfilerScope::new(&analyzer);
        switches_analyzers();
        // The span stack stayed paired: a later top-level call has no parent.
        quick();
    }
    let trace = analyzer.trace().unwrap();
    let call = span(&trace, "t_switches");
    assert_eq!(call.parent_span_id, None);
    assert!(trace.spans.iter().all(|s| s.node_id != "t_leaf"));
    assert_eq!(span(&trace, "t_quick").parent_span_id, None);
    assert_eq!(analyzer.get_node("t_switches").unwrap().call_count, 1);
    assert_eq!(analyzer.get_node("t_quick").unwrap().call_count, 1);
}
