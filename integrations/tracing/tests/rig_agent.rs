//! End to end with a real framework: a rig agent (rig-core and rig-agent 0.44, the last
//! releases that build with Rust 1.95) prompted inside a profiled node, against a loopback
//! OpenAI-compatible server that answers each request after a delay. The node ends with
//! rig's token counts, the LiteLLM price of them and the server's time, and a tool call,
//! with nothing but the layer installed: the test never calls the cost tracker's track
//! methods.

#[allow(dead_code)]
#[path = "../../../tests/support/http_stub.rs"]
mod http_stub;

use std::time::Duration;

use agent_profiler::cost::{PricingTable, Usage};
use agent_profiler::{
    BottleneckAnalyzer, MultiProviderCostTracker, ProfilerFutureExt, profile_node,
};
use agent_profiler_tracing::GenAiLayer;
use http_stub::{HttpStub, Reply, Request};
use rig_agent::prelude::*;
use rig_core::message::ToolName;
use rig_core::providers::openai::{OpenAIConfig, Route};
use rig_core::tool::{DynamicTool, ToolOutput};
use serde_json::{Value, json};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// How long the server takes over each answer.
const SERVER_DELAY: Duration = Duration::from_millis(150);
/// How long the tool runs.
const TOOL_DELAY: Duration = Duration::from_millis(40);
const MODEL: &str = "gpt-4o-mini";

/// The first turn asks for the tool: its usage, with a prompt cache read.
fn turn_with_tool_call() -> Value {
    json!({
        "prompt_tokens": 1200,
        "completion_tokens": 30,
        "total_tokens": 1230,
        "prompt_tokens_details": {"cached_tokens": 1024},
    })
}

/// The second turn answers, with reasoning.
fn final_turn() -> Value {
    json!({
        "prompt_tokens": 1300,
        "completion_tokens": 90,
        "total_tokens": 1390,
        "prompt_tokens_details": {"cached_tokens": 1152},
        "completion_tokens_details": {"reasoning_tokens": 64},
    })
}

/// An OpenAI Chat Completions server: asks for tool `add` until the conversation holds a
/// tool result, then answers.
fn answer(request: &Request) -> Reply {
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let has_tool_result = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["role"] == "tool");
    let (message, finish, usage) = if has_tool_result {
        let message = json!({"role": "assistant", "content": "2 + 3 = 5"});
        (message, "stop", final_turn())
    } else {
        let call = json!({
            "id": "call_1",
            "type": "function",
            "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"},
        });
        let message = json!({"role": "assistant", "content": null, "tool_calls": [call]});
        (message, "tool_calls", turn_with_tool_call())
    };
    let completion = json!({
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    });
    Reply::json(200, completion.to_string()).after(SERVER_DELAY)
}

fn add_tool() -> DynamicTool {
    let parameters = json!({
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    });
    DynamicTool::new(
        ToolName::new("add").unwrap(),
        "Adds two numbers",
        parameters,
        |args: Value| {
            Box::pin(async move {
                tokio::time::sleep(TOOL_DELAY).await;
                let sum = args["a"].as_f64().unwrap_or(0.0) + args["b"].as_f64().unwrap_or(0.0);
                Ok(ToolOutput::json(json!(sum)))
            })
        },
    )
}

#[profile_node("rig_agent")]
async fn ask(agent: &Agent) -> String {
    let response = agent.prompt("What is 2 + 3?").max_turns(3).await;
    response.expect("the agent's answer").output()
}

/// The embedded LiteLLM price of `usage` on the model.
fn list_price(usage: &Usage) -> f64 {
    let pricing = PricingTable::embedded();
    let found = pricing.lookup("openai", MODEL).expect("an embedded price");
    found.price.cost_usd(usage).unwrap()
}

#[test]
fn a_rig_agent_in_a_profiled_node_gets_its_tokens_cost_and_llm_time() {
    // Built with the whole workspace, reqwest carries the feature `rustls-no-provider` the
    // workspace's clients ask for: rig's client then needs a TLS provider installed, even to
    // speak plain HTTP. It is the provider the workspace's own clients use.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = HttpStub::start(answer);
    let model = OpenAIConfig::new("sk-loopback")
        .with_base_url(format!("{}/v1", server.url()))
        .with_route(Route::Chat)
        .client()
        .completion(MODEL);
    let agent = AgentBuilder::new(model)
        .preamble("Use the tools.")
        .dynamic_tool(add_tool())
        .build();

    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let subscriber = tracing_subscriber::registry().with(GenAiLayer::new(tracker.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let output = runtime.block_on(
        ask(&agent)
            .with_profiler(analyzer.clone())
            .with_subscriber(subscriber),
    );
    assert_eq!(output, "2 + 3 = 5");
    assert_eq!(server.request_count(), 2);

    let node = analyzer.get_node("rig_agent").expect("the node");
    let first = Usage::new(1200, 30).with_cached_input(1024);
    let second = Usage::new(1300, 90)
        .with_cached_input(1152)
        .with_reasoning(64);
    assert_eq!((node.llm_calls, node.llm_failed_calls), (2, 0));
    assert_eq!(node.input_tokens, 2500);
    assert_eq!(node.output_tokens, 120);
    assert_eq!(node.cached_input_tokens, 2176);
    assert_eq!(node.reasoning_tokens, 64);
    assert_eq!(node.unpriced_calls, 0);
    let expected = list_price(&first) + list_price(&second);
    assert!(
        (node.cost_usd - expected).abs() < 1e-12,
        "{} != {expected}",
        node.cost_usd
    );
    let server_ms = 2.0 * SERVER_DELAY.as_secs_f64() * 1000.0;
    assert!(node.llm_time_ms >= server_ms, "{} ms", node.llm_time_ms);
    assert!(node.llm_time_ms <= node.duration_ms);
    assert_eq!(node.tool_calls, 1);
    let tool_ms = TOOL_DELAY.as_secs_f64() * 1000.0;
    assert!(node.tool_time_ms >= tool_ms, "{} ms", node.tool_time_ms);

    let history = tracker.get_history();
    assert_eq!(history.len(), 2);
    for call in &history {
        assert_eq!(
            (call.provider.as_str(), call.model.as_str()),
            ("openai", MODEL)
        );
        assert_eq!(call.node_id.as_deref(), Some("rig_agent"));
        let timing = call.timing.as_ref().expect("a timed call");
        assert!(timing.duration_ns() >= SERVER_DELAY.as_nanos() as u64);
    }
}
