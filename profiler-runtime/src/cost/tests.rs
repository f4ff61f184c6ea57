//! The tracker, and attribution driven the way `#[profile_node]`'s expansion drives the
//! runtime (the facade's `tests/cost.rs` covers the same through the macro).

use serde_json::json;

use super::*;
use crate::future::NodeFuture;
use crate::guard::Guard;
use crate::outcome::Outcome;
use crate::site::CallSite;
use crate::{BottleneckAnalyzer, ProfilerFutureExt, ProfilerScope};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12_f64.max(1e-9 * b.abs())
}

fn chat(prompt: u64, completion: u64) -> serde_json::Value {
    json!({"usage": {"prompt_tokens": prompt, "completion_tokens": completion}})
}

#[test]
fn priced_unpriced_and_failed_calls_are_counted_apart() {
    let tracker = MultiProviderCostTracker::new();
    let priced = tracker
        .track_call("openai", "gpt-4o", &chat(1000, 100))
        .unwrap();
    assert!(close(
        priced.cost_usd.unwrap(),
        1000.0 * 2.5e-6 + 100.0 * 1e-5
    ));
    assert_eq!(priced.price_key.as_deref(), Some("gpt-4o"));
    assert_eq!(priced.unpriced_reason, None);

    let unpriced = tracker
        .track_call("openai", "gpt-9-preview", &chat(10, 5))
        .unwrap();
    assert_eq!(unpriced.cost_usd, None);
    let reason = unpriced.unpriced_reason.as_deref().unwrap();
    assert!(reason.contains("gpt-9-preview"), "{reason}");

    let failed = tracker.track_call("openai", "gpt-4o", &json!({"usage": null}));
    assert!(matches!(failed, Err(CostError::MissingUsage { .. })));

    let s = tracker.get_cost_summary();
    assert_eq!(
        (s.calls, s.priced_calls, s.unpriced_calls, s.failed_calls),
        (2, 1, 1, 1)
    );
    assert!(close(s.total_cost_usd, priced.cost_usd.unwrap()));
    assert_eq!(s.total_tokens, 1115);
    assert_eq!(s.by_provider["openai"].calls, 2);
    assert_eq!(s.by_provider["openai"].failed_calls, 1);
    assert_eq!(s.by_model["gpt-9-preview"].unpriced_calls, 1);
    assert_eq!(s.by_model["gpt-4o"].failed_calls, 1);
}

#[test]
fn empty_provider_comes_from_the_model_name() {
    let tracker = MultiProviderCostTracker::new();
    let info = tracker
        .track_call(
            "",
            "claude-haiku-4-5",
            &json!({
                "type": "message", "usage": {"input_tokens": 100, "output_tokens": 10}
            }),
        )
        .unwrap();
    assert_eq!(info.provider, "anthropic");
    assert!(close(info.cost_usd.unwrap(), 100.0 * 1e-6 + 10.0 * 5e-6));
    let info = tracker
        .track_call(
            "Google",
            "gemini-2.0-flash",
            &json!({"usageMetadata": {"promptTokenCount": 10}}),
        )
        .unwrap();
    assert_eq!(info.provider, "gemini");
    assert!(info.cost_usd.is_some());
}

#[test]
fn track_usage_checks_the_counts() {
    let tracker = MultiProviderCostTracker::new();
    let bad = Usage::new(10, 10).with_cached_input(11);
    assert!(matches!(
        tracker.track_usage("openai", "gpt-4o", bad),
        Err(CostError::Malformed { .. })
    ));
    let info = tracker
        .track_usage("ollama", "llama3.2", Usage::new(500, 80))
        .unwrap();
    assert_eq!(info.cost_usd, Some(0.0));
    assert_eq!(info.price_key.as_deref(), Some("ollama/*"));
    assert_eq!(tracker.get_cost_summary().failed_calls, 1);
}

#[test]
fn history_is_bounded_and_totals_are_not() {
    let tracker = MultiProviderCostTracker::builder().history_limit(3).build();
    for i in 0..5 {
        tracker
            .track_call("openai", "gpt-4o-mini", &chat(100 + i, 10))
            .unwrap();
    }
    let history = tracker.get_history();
    assert_eq!(
        history.iter().map(|c| c.input_tokens).collect::<Vec<_>>(),
        [102, 103, 104]
    );
    let s = tracker.get_cost_summary();
    assert_eq!((s.calls, s.history_len, s.history_dropped), (5, 3, 2));
    tracker.clear_history();
    assert!(tracker.get_history().is_empty());
    let s = tracker.get_cost_summary();
    assert_eq!((s.calls, s.history_len, s.history_dropped), (5, 0, 0));
    tracker.reset();
    assert_eq!(tracker.get_cost_summary(), CostSummary::default());

    let none = MultiProviderCostTracker::builder().history_limit(0).build();
    none.track_call("openai", "gpt-4o", &chat(1, 1)).unwrap();
    assert!(none.get_history().is_empty());
    assert_eq!(none.get_cost_summary().calls, 1);
}

#[test]
fn clones_share_totals_across_threads() {
    let tracker = MultiProviderCostTracker::new();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let tracker = tracker.clone();
            s.spawn(move || {
                for _ in 0..250 {
                    tracker
                        .track_call("openai", "gpt-4o-mini", &chat(100, 50))
                        .unwrap();
                }
            });
        }
    });
    let s = tracker.get_cost_summary();
    assert_eq!((s.calls, s.total_tokens), (1000, 150_000));
    assert!(close(
        s.total_cost_usd,
        1000.0 * (100.0 * 1.5e-7 + 50.0 * 6e-7)
    ));
}

#[test]
fn summary_round_trips_through_json() {
    let tracker = MultiProviderCostTracker::new();
    tracker
        .track_call("openai", "gpt-4o", &chat(10, 1))
        .unwrap();
    let json = serde_json::to_value(tracker.get_cost_summary()).unwrap();
    for key in [
        "total_cost_usd",
        "total_tokens",
        "calls",
        "unpriced_calls",
        "failed_calls",
        "by_provider",
        "by_model",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let back: CostSummary = serde_json::from_value(json).unwrap();
    assert_eq!(back, tracker.get_cost_summary());
    let info = tracker.get_history().pop().unwrap();
    let back: CostInfo = serde_json::from_value(serde_json::to_value(&info).unwrap()).unwrap();
    assert_eq!(back, info);
}

static OUTER: CallSite = CallSite::new("cost_outer", false);
static INNER: CallSite = CallSite::new("cost_inner", false);
static ASYNC_NODE: CallSite = CallSite::new("cost_async", true);

/// A sync node, as the macro expands one.
fn sync_node<R>(site: &'static CallSite, body: impl FnOnce() -> R) -> R {
    let mut guard = Guard::enter(site);
    let ret = body();
    guard.observe(Outcome::Ok);
    ret
}

#[test]
fn calls_are_attributed_to_the_innermost_running_node() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let _scope = ProfilerScope::new(&analyzer);
    let outside = tracker.track_call("openai", "gpt-4o", &chat(1, 1)).unwrap();
    assert_eq!(outside.node_id, None);
    sync_node(&OUTER, || {
        let a = tracker
            .track_call("openai", "gpt-4o", &chat(1000, 0))
            .unwrap();
        assert_eq!(a.node_id.as_deref(), Some("cost_outer"));
        sync_node(&INNER, || {
            let b = tracker
                .track_call("openai", "gpt-4o", &chat(0, 100))
                .unwrap();
            assert_eq!(b.node_id.as_deref(), Some("cost_inner"));
        });
        tracker
            .track_call("openai", "unknown-model", &chat(5, 5))
            .unwrap();
    });
    let summary = analyzer.get_summary();
    let node = |id: &str| summary.nodes.iter().find(|n| n.node_id == id).unwrap();
    let (outer, inner) = (node("cost_outer"), node("cost_inner"));
    assert_eq!((outer.llm_calls, outer.unpriced_calls), (2, 1));
    assert_eq!(outer.input_tokens, 1005);
    assert!(close(outer.cost_usd, 1000.0 * 2.5e-6));
    assert_eq!((inner.llm_calls, inner.output_tokens), (1, 100));
    assert!(close(inner.cost_usd, 100.0 * 1e-5));
    assert_eq!(
        summary.llm_calls, 3,
        "the call outside any node is not attributed"
    );
    assert_eq!(summary.unpriced_calls, 1);
    assert_eq!(summary.total_tokens, 1110);
    assert!(close(summary.total_cost_usd, 0.0025 + 0.001));
    let costliest = summary.costliest_node.clone().unwrap();
    assert_eq!(costliest.node_id, "cost_outer");
    assert!(close(costliest.percent_of_cost, 0.0025 / 0.0035 * 100.0));
    let table = summary.to_table();
    assert!(table.contains("0.002500*"), "{table}");
    assert!(table.contains("costliest node: cost_outer"), "{table}");
    // The tracker saw all four calls.
    assert_eq!(tracker.get_cost_summary().calls, 4);
}

#[test]
fn no_analyzer_no_attribution() {
    let tracker = MultiProviderCostTracker::new();
    let info = sync_node(&OUTER, || {
        tracker.track_call("openai", "gpt-4o", &chat(1, 1)).unwrap()
    });
    // Without an analyzer nothing is profiled, so no node is running either.
    assert_eq!(info.node_id, None);
}

#[test]
fn disabled_analyzer_records_no_cost() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let info = tracker.track_call("openai", "gpt-4o", &chat(1, 1)).unwrap();
    analyzer.set_enabled(false);
    analyzer.record_cost("n", &info).unwrap();
    assert!(analyzer.get_timings().is_empty());
    analyzer.set_enabled(true);
    assert_eq!(
        analyzer.record_cost("", &info),
        Err(crate::RecordError::EmptyNodeId)
    );
    assert_eq!(
        analyzer.record_cost("tool:search", &info),
        Err(crate::RecordError::InvalidNodeId {
            node_id: "tool:search".into(),
            reason: crate::check_node_id("tool:search").unwrap_err(),
        })
    );
    analyzer.record_cost("n", &info).unwrap();
    let node = analyzer.get_node("n").unwrap();
    assert_eq!((node.call_count, node.llm_calls), (0, 1));
    // A node with cost only is reported, but it is never the slowest node.
    let summary = analyzer.get_summary();
    assert_eq!(summary.node_count, 1);
    assert!(summary.slowest_node.is_none());
    assert!(summary.bottlenecks.is_empty());
}

#[test]
fn async_node_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let tracker = tracker.clone();
            let body = async move {
                let mut ids = Vec::new();
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    let info = tracker
                        .track_call(
                            "anthropic",
                            "claude-sonnet-4-5",
                            &json!({
                                "type": "message",
                                "usage": {"input_tokens": 100, "output_tokens": 20}
                            }),
                        )
                        .unwrap();
                    ids.push(info.node_id);
                }
                ids
            };
            runtime.spawn(
                NodeFuture::new(&ASYNC_NODE, body, |_| Outcome::Ok).with_profiler(analyzer.clone()),
            )
        })
        .collect();
    for task in tasks {
        let ids = runtime.block_on(task).unwrap();
        assert!(
            ids.iter().all(|id| id.as_deref() == Some("cost_async")),
            "{ids:?}"
        );
    }
    let node = analyzer.get_node("cost_async").unwrap();
    assert_eq!((node.call_count, node.llm_calls), (8, 24));
    assert_eq!((node.input_tokens, node.output_tokens), (2400, 480));
    assert!(close(node.cost_usd, 24.0 * (100.0 * 3e-6 + 20.0 * 1.5e-5)));
}
