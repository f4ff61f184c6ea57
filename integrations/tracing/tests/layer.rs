//! The layer on hand-written spans with the standard GenAI names (and rig's and genai's
//! variants): which node gets a call, its tokens, price, time and outcome, tool calls, and
//! the spans that must not count.

use std::time::Duration;

use agent_profiler::cost::{PricingTable, Usage};
use agent_profiler::{
    BottleneckAnalyzer, MultiProviderCostTracker, NodeTimings, ProfilerFutureExt, ProfilerScope,
    profile_node,
};
use agent_profiler_tracing::GenAiLayer;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt;

const DELAY: Duration = Duration::from_millis(30);
const DELAY_MS: f64 = 30.0;

/// Runs `work` on this thread with a fresh analyzer and the layer installed; returns the
/// analyzer and the tracker.
fn profiled(work: impl FnOnce()) -> (BottleneckAnalyzer, MultiProviderCostTracker) {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let subscriber = tracing_subscriber::registry().with(GenAiLayer::new(tracker.clone()));
    {
        let _scope = ProfilerScope::new(&analyzer);
        tracing::subscriber::with_default(subscriber, work);
    }
    (analyzer, tracker)
}

fn node(analyzer: &BottleneckAnalyzer, id: &str) -> NodeTimings {
    analyzer
        .get_node(id)
        .unwrap_or_else(|| panic!("node {id} was not recorded"))
}

/// The embedded LiteLLM price of `usage` on `model`.
fn list_price(provider: &str, model: &str, usage: &Usage) -> f64 {
    let pricing = PricingTable::embedded();
    let found = pricing.lookup(provider, model).expect("an embedded price");
    found.price.cost_usd(usage).unwrap()
}

#[profile_node("hand_chat")]
fn hand_chat() {
    let span = tracing::info_span!(
        "chat gpt-4o-mini",
        "gen_ai.operation.name" = "chat",
        "gen_ai.provider.name" = "openai",
        "gen_ai.request.model" = "gpt-4o-mini",
        "gen_ai.response.model" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
        "gen_ai.usage.cache_read.input_tokens" = Empty,
    );
    let _entered = span.enter();
    std::thread::sleep(DELAY);
    span.record("gen_ai.response.model", "gpt-4o-mini");
    span.record("gen_ai.usage.input_tokens", 1200);
    span.record("gen_ai.usage.output_tokens", 300);
    span.record("gen_ai.usage.cache_read.input_tokens", 1000);
}

#[test]
fn a_chat_span_is_a_timed_priced_call_of_its_node() {
    let (analyzer, tracker) = profiled(hand_chat);
    let node = node(&analyzer, "hand_chat");
    let usage = Usage::new(1200, 300).with_cached_input(1000);
    assert_eq!(node.llm_calls, 1);
    assert_eq!(node.llm_failed_calls, 0);
    assert_eq!(
        (
            node.input_tokens,
            node.output_tokens,
            node.cached_input_tokens
        ),
        (1200, 300, 1000)
    );
    let expected = list_price("openai", "gpt-4o-mini", &usage);
    assert!(expected > 0.0);
    assert!(
        (node.cost_usd - expected).abs() < 1e-12,
        "{} != {expected}",
        node.cost_usd
    );
    assert!(node.llm_time_ms >= DELAY_MS, "{}", node.llm_time_ms);
    assert!(node.llm_time_ms <= node.duration_ms + 1e-9);
    let summary = tracker.get_cost_summary();
    assert_eq!((summary.calls, summary.failed_calls), (1, 0));
}

#[profile_node("outer_async")]
async fn outer_async(sent: std::sync::mpsc::Sender<tracing::Span>) {
    let span = tracing::info_span!(
        "chat",
        "gen_ai.operation.name" = "chat",
        "gen_ai.system" = "openai",
        "gen_ai.request.model" = "gpt-4o-mini",
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
        "gen_ai.usage.reasoning_tokens" = Empty,
    );
    tokio::time::sleep(DELAY).instrument(span.clone()).await;
    // Another thread reads the answer and closes the span after the node returned.
    sent.send(span).unwrap();
}

#[test]
fn a_span_entered_in_a_node_and_closed_on_another_thread_counts_for_the_node() {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let subscriber = tracing_subscriber::registry().with(GenAiLayer::new(tracker.clone()));
    let dispatch = tracing::Dispatch::new(subscriber);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    let task = tracing::instrument::WithSubscriber::with_subscriber(
        outer_async(send).with_profiler(analyzer.clone()),
        dispatch,
    );
    runtime.block_on(runtime.spawn(task)).unwrap();
    let closer = std::thread::spawn(move || {
        let span: tracing::Span = receive.recv().unwrap();
        span.record("gen_ai.usage.input_tokens", 50);
        span.record("gen_ai.usage.output_tokens", 40);
        span.record("gen_ai.usage.reasoning_tokens", 32);
        drop(span);
    });
    closer.join().unwrap();
    let node = node(&analyzer, "outer_async");
    assert_eq!(node.llm_calls, 1);
    assert_eq!(
        (node.input_tokens, node.output_tokens, node.reasoning_tokens),
        (50, 40, 32)
    );
    assert!(node.llm_time_ms >= DELAY_MS, "{}", node.llm_time_ms);
    let usage = Usage::new(50, 40).with_reasoning(32);
    let expected = list_price("openai", "gpt-4o-mini", &usage);
    assert!((tracker.get_cost_summary().total_cost_usd - expected).abs() < 1e-12);
}

#[profile_node("failing")]
fn failing() {
    let span = tracing::info_span!(
        "chat",
        "gen_ai.operation.name" = "chat",
        "gen_ai.provider.name" = "openai",
        "gen_ai.request.model" = "gpt-4o-mini",
        "otel.status_code" = Empty,
        "error.type" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
    );
    let _entered = span.enter();
    span.record("gen_ai.usage.input_tokens", 10);
    span.record("otel.status_code", "ERROR");
    span.record("error.type", "rate_limited");
}

#[test]
fn an_error_status_makes_a_failed_call_with_what_was_billed() {
    let (analyzer, tracker) = profiled(failing);
    let node = node(&analyzer, "failing");
    // Billed tokens make it a call with usage, not one of the calls that failed without.
    assert_eq!((node.llm_calls, node.llm_failed_calls), (1, 0));
    assert_eq!(node.input_tokens, 10);
    let history = tracker.get_history();
    let timing = history[0].timing.as_ref().unwrap();
    assert_eq!(timing.outcome, agent_profiler_runtime::LlmOutcome::Error);
    assert_eq!(timing.error.as_deref(), Some("rate_limited"));
}

#[profile_node("dropped")]
fn dropped() {
    // Entered, then closed without an answer: what a dropped request future leaves.
    let span = tracing::info_span!("chat", "gen_ai.operation.name" = "chat");
    span.in_scope(|| std::thread::sleep(Duration::from_millis(2)));
    // Created, never entered: no call.
    let _never = tracing::info_span!("chat", "gen_ai.operation.name" = "chat");
}

#[test]
fn closed_without_usage_is_cancelled_and_never_entered_is_nothing() {
    let (analyzer, tracker) = profiled(dropped);
    let node = node(&analyzer, "dropped");
    assert_eq!((node.llm_calls, node.llm_failed_calls), (0, 1));
    let history = tracker.get_history();
    assert_eq!(history.len(), 1);
    let timing = history[0].timing.as_ref().unwrap();
    assert_eq!(
        timing.outcome,
        agent_profiler_runtime::LlmOutcome::Cancelled
    );
}

#[profile_node("agent_turns")]
fn agent_turns() {
    // An agent span carries the sum of its calls: not a call itself.
    let agent = tracing::info_span!(
        "invoke_agent",
        "gen_ai.operation.name" = "invoke_agent",
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
    );
    let _agent = agent.enter();
    // A hand-written chat span around a framework's own request span: one call.
    let outer = tracing::info_span!(
        "chat",
        "gen_ai.operation.name" = "chat",
        "gen_ai.request.model" = "gpt-4o-mini",
    );
    outer.in_scope(|| {
        let inner = tracing::info_span!(
            "chat",
            "gen_ai.operation.name" = "chat",
            "gen_ai.provider.name" = "openai",
            "gen_ai.request.model" = "gpt-4o-mini",
            "gen_ai.usage.input_tokens" = Empty,
            "gen_ai.usage.output_tokens" = Empty,
        );
        inner.in_scope(|| std::thread::sleep(DELAY));
        inner.record("gen_ai.usage.input_tokens", 100);
        inner.record("gen_ai.usage.output_tokens", 20);
    });
    agent.record("gen_ai.usage.input_tokens", 100);
    agent.record("gen_ai.usage.output_tokens", 20);
}

#[test]
fn agent_spans_and_nested_request_spans_count_once() {
    let (analyzer, tracker) = profiled(agent_turns);
    let node = node(&analyzer, "agent_turns");
    assert_eq!(node.llm_calls, 1);
    assert_eq!((node.input_tokens, node.output_tokens), (100, 20));
    assert!(node.llm_time_ms >= DELAY_MS);
    let history = tracker.get_history();
    assert_eq!(history[0].provider, "openai");
}

#[profile_node("uses_tools")]
fn uses_tools() {
    for outcome in ["success", "error"] {
        let tool = tracing::info_span!(
            "execute_tool",
            "gen_ai.operation.name" = "execute_tool",
            "gen_ai.tool.name" = Empty,
            "gen_ai.tool.call.outcome" = Empty,
        );
        let _entered = tool.enter();
        // rig names the tool inside its span.
        tool.record("gen_ai.tool.name", "get_weather");
        std::thread::sleep(DELAY);
        tool.record("gen_ai.tool.call.outcome", outcome);
    }
}

#[test]
fn execute_tool_spans_are_tool_calls_of_the_node() {
    let (analyzer, tracker) = profiled(uses_tools);
    let node = node(&analyzer, "uses_tools");
    assert_eq!(node.tool_calls, 2);
    assert!(node.tool_time_ms >= 2.0 * DELAY_MS, "{}", node.tool_time_ms);
    assert_eq!(node.llm_calls, 0);
    assert_eq!(tracker.get_cost_summary().calls, 0);
}

#[profile_node("late_operation")]
fn late_operation() {
    let span = tracing::info_span!(
        "request",
        "gen_ai.operation.name" = Empty,
        "gen_ai.provider.name" = Empty,
        "gen_ai.request.model" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
    );
    let _entered = span.enter();
    span.record("gen_ai.operation.name", "chat");
    span.record("gen_ai.provider.name", "openai");
    span.record("gen_ai.request.model", "gpt-4o-mini");
    std::thread::sleep(DELAY);
    span.record("gen_ai.usage.input_tokens", 7);
    span.record("gen_ai.usage.output_tokens", 3);
}

#[test]
fn an_operation_recorded_inside_the_span_starts_the_call_there() {
    let (analyzer, _tracker) = profiled(late_operation);
    let node = node(&analyzer, "late_operation");
    assert_eq!(node.llm_calls, 1);
    assert_eq!((node.input_tokens, node.output_tokens), (7, 3));
    assert!(node.llm_time_ms >= DELAY_MS);
    assert!(node.cost_usd > 0.0);
}

#[profile_node("streams")]
fn streams() {
    // genai's names: the reasoning count of the conventions, the time to first chunk.
    let span = tracing::info_span!(
        "chat gpt-4o-mini",
        "gen_ai.operation.name" = "chat",
        "gen_ai.provider.name" = "openai",
        "gen_ai.request.model" = "gpt-4o-mini",
        "gen_ai.request.stream" = true,
        "gen_ai.response.time_to_first_chunk" = Empty,
        "gen_ai.usage.input_tokens" = Empty,
        "gen_ai.usage.output_tokens" = Empty,
        "gen_ai.usage.reasoning.output_tokens" = Empty,
    );
    let _entered = span.enter();
    std::thread::sleep(Duration::from_millis(5));
    span.record("gen_ai.response.time_to_first_chunk", 0.005);
    std::thread::sleep(DELAY);
    span.record("gen_ai.usage.input_tokens", 30);
    span.record("gen_ai.usage.output_tokens", 60);
    span.record("gen_ai.usage.reasoning.output_tokens", 16);
}

#[test]
fn a_streamed_span_has_its_first_chunk() {
    let (analyzer, _tracker) = profiled(streams);
    let node = node(&analyzer, "streams");
    assert_eq!(node.streamed_calls, 1);
    assert_eq!(node.reasoning_tokens, 16);
    let ttft = node.ttft_p50_ms.expect("a time to first token");
    assert!(ttft >= 5.0 && ttft < node.llm_time_ms, "{ttft}");
}

#[test]
fn spans_without_gen_ai_fields_and_outside_nodes_do_no_harm() {
    let (analyzer, tracker) = profiled(|| {
        let plain = tracing::info_span!("work", error = Empty, size = 3);
        plain.in_scope(|| plain.record("error", "boom"));
        // A GenAI call outside any node: counted by the tracker, on no node.
        let span = tracing::info_span!(
            "chat",
            "gen_ai.operation.name" = "chat",
            "gen_ai.request.model" = "gpt-4o-mini",
            "gen_ai.usage.input_tokens" = 5,
            "gen_ai.usage.output_tokens" = 5,
        );
        span.in_scope(|| {});
    });
    assert!(analyzer.get_node("work").is_none());
    let summary = tracker.get_cost_summary();
    assert_eq!((summary.calls, summary.total_tokens), (1, 10));
}
