use std::time::{Duration, Instant};

use super::*;
use crate::histogram::bucket_of;
use crate::{BottleneckAnalyzer, CostInfo, LlmOutcome, LlmTiming, MultiProviderCostTracker, Usage};

fn priced(provider: &str, model: &str, input: u64, output: u64) -> CostInfo {
    MultiProviderCostTracker::new()
        .track_usage(provider, model, Usage::new(input, output))
        .unwrap()
}

fn timed(mut info: CostInfo, duration_ns: u64, ttft_ns: Option<u64>) -> CostInfo {
    let start = 1_000_000_000;
    info.timing = Some(LlmTiming {
        start_unix_ns: start,
        end_unix_ns: start + duration_ns,
        first_chunk_unix_ns: ttft_ns.map(|t| start + t),
        stream: ttft_ns.is_some(),
        outcome: LlmOutcome::Ok,
        error: None,
    });
    info
}

#[test]
fn bounds_are_edges_of_the_analyzers_buckets_two_per_octave() {
    assert_eq!(HISTOGRAM_BOUNDS_NS.len(), HISTOGRAM_BOUNDS_SECONDS.len());
    for pair in HISTOGRAM_BOUNDS_NS.windows(2) {
        assert!(pair[0] < pair[1]);
        // Each bound starts a bucket: the value below it is in another one.
        assert_ne!(bucket_of(pair[1]), bucket_of(pair[1] - 1));
    }
    assert_eq!(HISTOGRAM_BOUNDS_NS[0], 1024);
    assert_eq!(*HISTOGRAM_BOUNDS_NS.last().unwrap(), 1 << 37);
    for (ns, s) in HISTOGRAM_BOUNDS_NS.iter().zip(HISTOGRAM_BOUNDS_SECONDS) {
        assert_eq!(*ns as f64 / 1e9, *s);
    }
}

#[test]
fn a_snapshot_counts_calls_durations_tokens_and_cost_per_model() {
    let analyzer = BottleneckAnalyzer::new();
    for ms in [1.0, 2.0, 3.0, 500.0] {
        analyzer.record_node("plan", ms).unwrap();
    }
    analyzer
        .record_cost(
            "plan",
            &timed(
                priced("openai", "gpt-4o", 1000, 100),
                300_000_000,
                Some(80_000_000),
            ),
        )
        .unwrap();
    analyzer
        .record_cost("plan", &priced("anthropic", "claude-3-5-sonnet", 10, 5))
        .unwrap();
    // A node with LLM calls and no timed call of its own.
    analyzer
        .record_cost("tool", &priced("openai", "gpt-4o", 1, 1))
        .unwrap();
    let snapshot = analyzer.metrics();
    let ids: Vec<&str> = snapshot.nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["plan", "tool"]);
    let plan = snapshot.node("plan").unwrap();
    assert_eq!(plan.calls.ok, 4);
    let d = &plan.duration;
    assert_eq!(d.count, 4);
    assert!((d.sum_seconds - 0.506).abs() < 1e-9, "{}", d.sum_seconds);
    // Below 4.194304 ms (2^22 ns): the three short calls; everything below 1.024 µs: none.
    let at = |ns: u64| HISTOGRAM_BOUNDS_NS.iter().position(|&b| b == ns).unwrap();
    assert_eq!(d.cumulative[0], 0);
    assert_eq!(d.cumulative[at(1 << 22)], 3);
    assert_eq!(*d.cumulative.last().unwrap(), 4);
    assert_eq!(d.bucket_counts().iter().sum::<u64>(), 4);
    let models: Vec<(&str, &str)> = plan
        .llm
        .iter()
        .map(|m| (m.provider.as_str(), m.model.as_str()))
        .collect();
    assert_eq!(
        models,
        [("anthropic", "claude-3-5-sonnet"), ("openai", "gpt-4o")]
    );
    let gpt = plan.model("openai", "gpt-4o").unwrap();
    assert_eq!(
        (gpt.calls, gpt.tokens.input, gpt.tokens.output),
        (1, 1000, 100)
    );
    assert!(gpt.cost_usd > 0.0);
    assert_eq!(gpt.duration.count, 1);
    assert!((gpt.duration.sum_seconds - 0.3).abs() < 1e-9);
    assert_eq!(gpt.time_to_first_token.count, 1);
    assert!((gpt.time_to_first_token.sum_seconds - 0.08).abs() < 1e-9);
    let claude = plan.model("anthropic", "claude-3-5-sonnet").unwrap();
    assert_eq!(claude.time_to_first_token.count, 0);
    let totals = plan.llm_totals();
    assert_eq!((totals.calls, totals.tokens.input), (2, 1010));
    let tool = snapshot.node("tool").unwrap();
    assert_eq!((tool.calls.ok, tool.duration.count), (0, 0));
    assert_eq!(tool.llm[0].calls, 1);
    // The summary agrees.
    let node = analyzer.get_node("plan").unwrap();
    assert_eq!(node.llm_calls, totals.calls);
    assert_eq!(node.input_tokens, totals.tokens.input);
    assert!((node.cost_usd - totals.cost_usd).abs() < 1e-12);
}

#[test]
fn models_beyond_the_cap_are_counted_under_other() {
    let analyzer = BottleneckAnalyzer::new();
    for i in 0..MAX_MODELS_PER_NODE + 5 {
        let info = priced("openai", &format!("model-{i:02}"), 10, 1);
        analyzer.record_cost("chat", &info).unwrap();
    }
    let snapshot = analyzer.metrics();
    let chat = snapshot.node("chat").unwrap();
    assert_eq!(chat.llm.len(), MAX_MODELS_PER_NODE + 1);
    let other = chat.model(OTHER_MODEL, OTHER_MODEL).unwrap();
    assert_eq!((other.calls, other.unpriced_calls), (5, 5));
    assert_eq!(other.tokens.input, 50);
    assert_eq!(chat.llm_totals().calls, MAX_MODELS_PER_NODE as u64 + 5);
}

#[test]
fn reset_starts_the_analysis_afresh_and_leaves_the_lifetime_counters() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("plan", 100.0).unwrap();
    analyzer.record_node("plan", 1.0).unwrap();
    analyzer.record_node("act", 50.0).unwrap();
    analyzer
        .record_cost("plan", &priced("openai", "gpt-4o", 1000, 100))
        .unwrap();
    let before = analyzer.metrics();
    analyzer.reset();
    let empty = analyzer.get_summary();
    assert_eq!((empty.node_count, empty.total_time_ms), (0, 0.0));
    assert_eq!((empty.llm_calls, empty.total_cost_usd), (0, 0.0));
    assert!(empty.slowest_node.is_none());
    assert_eq!(analyzer.metrics(), before, "a reset changes no counter");

    analyzer.record_node("plan", 10.0).unwrap();
    analyzer
        .record_cost("plan", &priced("openai", "gpt-4o", 20, 2))
        .unwrap();
    let plan = analyzer.get_node("plan").unwrap();
    assert_eq!((plan.call_count, plan.total_duration_ms), (1, 10.0));
    assert_eq!(
        (plan.duration_ms, plan.llm_calls, plan.input_tokens),
        (10.0, 1, 20)
    );
    // Neither extreme moved: both are the edges of the bucket holding 10 ms.
    assert!(plan.min_duration_ms <= 10.0 && 10.0 <= plan.max_duration_ms);
    assert!(plan.max_duration_ms - plan.min_duration_ms < 10.0 / 8.0 + 1e-6);
    assert!((plan.p50_duration_ms - 10.0).abs() < 10.0 / 16.0);
    assert!(analyzer.get_node("act").is_none());
    let summary = analyzer.get_summary();
    assert_eq!((summary.node_count, summary.total_time_ms), (1, 10.0));

    let after = analyzer.metrics();
    let plan = after.node("plan").unwrap();
    assert_eq!(plan.calls.ok, 3);
    assert_eq!(plan.llm_totals().tokens.input, 1020);
    assert_eq!(after.node("act").unwrap().calls.ok, 1);
    // A new all-time maximum after the reset is exact.
    analyzer.record_node("plan", 300.0).unwrap();
    assert_eq!(analyzer.get_node("plan").unwrap().max_duration_ms, 300.0);
}

#[test]
fn snapshots_never_go_below_an_earlier_one() {
    let mut earlier = MetricsSnapshot::default();
    let node = earlier.node_entry("plan");
    node.calls.ok = 5;
    node.duration.count = 5;
    node.duration.cumulative[3] = 2;
    node.model_entry("openai", "gpt-4o").calls = 2;
    // A torn read: one `ok` still counted as its outcome's, not yet as a call.
    let mut later = MetricsSnapshot::default();
    let node = later.node_entry("plan");
    node.calls.ok = 4;
    node.calls.error = 1;
    node.duration.count = 6;
    later.at_least(&earlier);
    let plan = later.node("plan").unwrap();
    assert_eq!((plan.calls.ok, plan.calls.error), (5, 1));
    assert_eq!((plan.duration.count, plan.duration.cumulative[3]), (6, 2));
    assert_eq!(plan.model("openai", "gpt-4o").unwrap().calls, 2);
}

#[test]
fn recent_window_counts_only_the_calls_since_its_start() {
    let analyzer = BottleneckAnalyzer::new();
    let t0 = Instant::now();
    analyzer.record_node("plan", 1000.0).unwrap();
    // Samples at t0 + 0, 20, 40, ... s; ten fast calls after the first minute.
    let mut now = t0;
    for step in 1..=30 {
        now = t0 + Duration::from_secs(20 * step);
        if step > 3 {
            analyzer.record_node("plan", 2.0).unwrap();
        }
        analyzer.recent_timings_at(now, DEFAULT_RECENT_WINDOW);
    }
    let recent = analyzer.recent_timings_at(now, DEFAULT_RECENT_WINDOW);
    // The window starts at the sample 300 s back: the 15 calls of steps 16 to 30.
    assert_eq!(recent.window_seconds, 300.0);
    let plan = &recent.nodes[0];
    assert_eq!(plan.call_count, 15);
    assert!((plan.p99_duration_ms - 2.0).abs() < 2.0 / 16.0, "{plan:?}");
    assert!((plan.total_duration_ms - 30.0).abs() < 1e-6);
    // All time, the slow first call is still there.
    assert_eq!(analyzer.get_node("plan").unwrap().max_duration_ms, 1000.0);
    // A window longer than the ring reaches covers what the ring holds.
    let long = analyzer.recent_timings_at(now, Duration::from_secs(3600));
    let reach = 20.0 * (RECENT_SAMPLES as f64 - 1.0);
    assert_eq!(long.window_seconds, reach);
    // A window shorter than the time between samples starts at the sample before.
    let short = analyzer.recent_timings_at(now, Duration::from_secs(1));
    assert_eq!((short.window_seconds, short.nodes[0].call_count), (20.0, 1));
}

#[test]
fn recent_window_memory_is_bounded_over_many_samples() {
    let analyzer = BottleneckAnalyzer::new();
    let t0 = Instant::now();
    let mut sizes = Vec::new();
    for step in 1..=2_000_u64 {
        // Durations spread over many buckets, so each sample's histograms are wide.
        let ms = (step % 400) as f64 * 0.37 + 0.001;
        analyzer.record_node("plan", ms).unwrap();
        analyzer.record_node("act", ms * 3.0).unwrap();
        analyzer.recent_timings_at(t0 + Duration::from_secs(16 * step), DEFAULT_RECENT_WINDOW);
        if step % 250 == 0 {
            sizes.push(analyzer.memory_bytes());
        }
    }
    assert_eq!(analyzer.inner().recent().len(), RECENT_SAMPLES);
    // Once the ring is full and the histograms have seen every bucket they will, the size
    // stays put: the ring does not grow with the number of samples taken.
    let settled = sizes[2];
    for size in &sizes[2..] {
        assert!(size.abs_diff(settled) <= settled / 50, "{sizes:?}");
    }
    assert!(settled < 600_000, "{sizes:?}");
}
