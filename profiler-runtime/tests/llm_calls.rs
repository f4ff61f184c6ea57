//! Timed LLM and tool calls: the node that gets them (across threads too), the union of
//! concurrent calls, time to first token, failures and cancellation, and their spans in
//! trace mode.

use std::time::{Duration, Instant};

use agent_profiler_runtime::{
    BottleneckAnalyzer, LlmOutcome, MultiProviderCostTracker, ProfilerFutureExt, ToolCall, Usage,
    profile_call,
};

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// One call of `ms` milliseconds made by the running node.
async fn llm_call(tracker: &MultiProviderCostTracker, ms: u64) {
    let call = tracker.start_call("openai", "gpt-4o-mini");
    tokio::time::sleep(Duration::from_millis(ms)).await;
    call.finish(Usage::new(1000, 100)).unwrap();
}

#[test]
fn two_concurrent_calls_count_their_union() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let node = profile_call("plan", async {
        tokio::join!(llm_call(&tracker, 200), llm_call(&tracker, 200));
    });
    multi_thread().block_on(node.with_profiler(analyzer.clone()));
    let plan = analyzer.get_node("plan").unwrap();
    assert_eq!(plan.llm_calls, 2);
    assert!(plan.llm_time_ms >= 200.0, "{plan:?}");
    assert!(plan.llm_time_ms < 400.0, "the sum, not the union: {plan:?}");
    assert!(
        plan.llm_time_ms <= plan.self_duration_ms + 0.001,
        "{plan:?}"
    );
    assert!(
        (plan.own_time_ms - (plan.self_duration_ms - plan.llm_time_ms)).abs() < 1e-9,
        "{plan:?}"
    );
}

#[test]
fn a_call_counts_for_the_node_that_started_it_whichever_thread_ends_it() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let node = profile_call("draft", async {
        let call = tracker.start_call("", "gpt-4o-mini");
        let before = std::thread::current().id();
        // Ends on a blocking-pool thread, where no node runs and no analyzer is installed.
        let ended_on = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(20));
            call.finish(Usage::new(10, 5)).unwrap();
            std::thread::current().id()
        })
        .await
        .unwrap();
        assert_ne!(before, ended_on);
    });
    multi_thread().block_on(node.with_profiler(analyzer.clone()));
    let draft = analyzer.get_node("draft").unwrap();
    assert_eq!((draft.llm_calls, draft.total_tokens), (1, 15));
    assert!(draft.llm_time_ms >= 20.0, "{draft:?}");
    let history = tracker.get_history();
    assert_eq!(history[0].node_id.as_deref(), Some("draft"));
    assert_eq!(history[0].provider, "openai");
}

#[test]
fn time_to_first_token_and_tokens_per_second() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let node = profile_call("stream", async {
        let call = tracker.start_call("anthropic", "claude-3-5-haiku-20241022");
        tokio::time::sleep(Duration::from_millis(30)).await;
        let first = Instant::now();
        tokio::time::sleep(Duration::from_millis(20)).await;
        call.first_chunk_at(first);
        call.first_chunk(); // later marks do not move the first one
        call.finish(Usage::new(100, 40)).unwrap()
    });
    let info = multi_thread().block_on(node.with_profiler(analyzer.clone()));
    let timing = info.timing.unwrap();
    assert!(timing.stream);
    let ttft = timing.ttft_ns().unwrap();
    assert!(ttft >= 30_000_000, "{ttft}");
    assert!(ttft < timing.duration_ns());
    assert!(timing.output_tokens_per_second(40).unwrap() > 0.0);
    let node = analyzer.get_node("stream").unwrap();
    assert_eq!(node.streamed_calls, 1);
    assert!(node.ttft_p50_ms.unwrap() >= 30.0, "{node:?}");
    assert!(node.ttft_p95_ms.unwrap() >= node.ttft_p50_ms.unwrap());
    assert!(node.llm_time_ms >= 50.0, "{node:?}");
}

#[test]
fn failures_and_cancellations_are_timed_calls_without_usage() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let node = profile_call("fragile", async {
        let cut = tracker.start_call("openai", "gpt-4o-mini");
        let info = cut.fail(
            LlmOutcome::Error,
            "stream cut off",
            Some(Usage::new(500, 20)),
        );
        assert!(info.has_usage && info.cost_usd.is_some());
        let timeout = tracker.start_call("openai", "gpt-4o-mini");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let info = timeout.fail(LlmOutcome::Timeout, "no answer", None);
        assert!(!info.has_usage);
        assert_eq!(info.timing.as_ref().unwrap().outcome, LlmOutcome::Timeout);
        let dropped = tracker.start_call("openai", "gpt-4o-mini");
        drop(dropped);
        let unreadable = tracker.start_call("openai", "gpt-4o-mini");
        assert!(unreadable.finish_response(r#"{"usage": null}"#).is_err());
    });
    multi_thread().block_on(node.with_profiler(analyzer.clone()));
    let summary = tracker.get_cost_summary();
    assert_eq!((summary.calls, summary.failed_calls), (1, 3));
    assert_eq!(summary.input_tokens, 500);
    let outcomes: Vec<LlmOutcome> = tracker
        .get_history()
        .iter()
        .map(|c| c.timing.as_ref().unwrap().outcome)
        .collect();
    use LlmOutcome::*;
    assert_eq!(outcomes, [Error, Timeout, Cancelled, Ok]);
    let fragile = analyzer.get_node("fragile").unwrap();
    assert_eq!((fragile.llm_calls, fragile.llm_failed_calls), (1, 3));
    assert!(fragile.llm_time_ms >= 5.0, "{fragile:?}");
}

#[test]
fn a_call_outside_any_node_is_tracked_but_belongs_to_no_node() {
    let analyzer = BottleneckAnalyzer::new();
    let _scope = agent_profiler_runtime::ProfilerScope::new(&analyzer);
    let tracker = MultiProviderCostTracker::new();
    let info = tracker
        .start_call("openai", "gpt-4o")
        .finish(Usage::new(1, 1))
        .unwrap();
    assert_eq!(info.node_id, None);
    assert!(analyzer.get_timings().is_empty());
    assert_eq!(tracker.get_cost_summary().calls, 1);
}

#[test]
fn tool_calls_count_apart_from_llm_time() {
    let analyzer = BottleneckAnalyzer::new();
    let node = profile_call("act", async {
        let search = ToolCall::start("web_search");
        assert_eq!(search.name(), "web_search");
        tokio::time::sleep(Duration::from_millis(10)).await;
        search.finish();
        drop(ToolCall::start("calculator"));
    });
    multi_thread().block_on(node.with_profiler(analyzer.clone()));
    let act = analyzer.get_node("act").unwrap();
    assert_eq!(act.tool_calls, 2);
    assert!(act.tool_time_ms >= 10.0, "{act:?}");
    assert_eq!(act.llm_time_ms, 0.0);
    assert_eq!(act.own_time_ms, act.self_duration_ms);
}

#[test]
fn in_trace_mode_each_execution_counts_its_own_calls_and_spans_have_real_times() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(64);
    let tracker = MultiProviderCostTracker::new();
    let execution = || profile_call("summarize", llm_call(&tracker, 100));
    // Two executions of one node at once: each waited 100 ms on its own call.
    let both = async { tokio::join!(execution(), execution()) };
    multi_thread().block_on(both.with_profiler(analyzer.clone()));
    let node = analyzer.get_node("summarize").unwrap();
    assert!(node.llm_time_ms >= 200.0, "{node:?}");
    assert!(node.own_time_ms < node.self_duration_ms, "{node:?}");
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 2);
    for span in &trace.spans {
        assert_eq!(span.llm_calls.len(), 1, "{span:?}");
        let timing = span.llm_calls[0].timing.as_ref().unwrap();
        assert!(timing.duration_ns() >= 100_000_000);
        assert!(
            timing.start_unix_ns >= span.start_unix_ns,
            "{timing:?} {span:?}"
        );
        assert!(
            timing.end_unix_ns <= span.end_unix_ns,
            "{timing:?} {span:?}"
        );
    }
}

#[test]
fn a_call_ending_while_the_analyzer_is_off_leaves_later_calls_counted() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let rt = multi_thread();
    // Started with the analyzer on, ended with it off: its start must not stay in flight.
    let node = profile_call("toggled", async {
        let call = tracker.start_call("openai", "gpt-4o-mini");
        analyzer.set_enabled(false);
        call.finish(Usage::new(1, 1)).unwrap();
        analyzer.set_enabled(true);
    });
    rt.block_on(node.with_profiler(analyzer.clone()));
    rt.block_on(profile_call("toggled", llm_call(&tracker, 30)).with_profiler(analyzer.clone()));
    let node = analyzer.get_node("toggled").unwrap();
    assert!(node.llm_time_ms >= 30.0, "{node:?}");
    assert_eq!(
        node.llm_calls, 1,
        "the call made while off is not counted: {node:?}"
    );
}

#[test]
fn a_call_still_in_flight_shows_its_wait_so_far_and_no_node_appears_before_it() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let rt = multi_thread();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let node = profile_call("waiting", async move {
        let call = tracker.start_call("openai", "gpt-4o-mini");
        started_tx.send(()).unwrap();
        finish_rx.await.unwrap();
        call.finish(Usage::new(1, 1)).unwrap();
    });
    let handle = rt.spawn(node.with_profiler(analyzer.clone()));
    started_rx.recv().unwrap();
    // In flight only: no figures yet, so no node.
    assert!(analyzer.get_node("waiting").is_none());
    std::thread::sleep(Duration::from_millis(20));
    finish_tx.send(()).unwrap();
    rt.block_on(handle).unwrap();
    assert!(analyzer.get_node("waiting").unwrap().llm_time_ms >= 20.0);
}
