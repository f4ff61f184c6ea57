//! The LLM clients' streams against a loopback provider speaking the real APIs' server-sent
//! events: the text, the usage rebuilt so that the cost tracker reads it as it reads a
//! non-streamed answer, when the first text came, and streams that end early (cut off, an
//! error event, larger than the client reads, slower than the timeout).
//!
//! Through a node ([`NodeExecutor`]) each call is timed: a streamed node has its time to
//! first token, a cut stream leaves the node failed with the usage it was billed, a timeout
//! counts as a failed call.
//!
//! Times are checked from below (a delay the server keeps cannot be shortened by a loaded
//! machine); the bounds from above are generous.

mod support {
    #[allow(dead_code)] // the provider stub's request type only
    pub mod http_stub;
    #[allow(dead_code)] // the streaming provider, not the OpenAI stub
    pub mod llm_provider;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler::cost::{ResponseFormat, Usage};
use agent_profiler::executor::{NodeConfig, NodeError, NodeErrorKind, NodeExecutor, NodeOutput};
use agent_profiler::llm::{
    AnthropicClient, ApiKey, LlmClient, LlmError, LlmRequest, LlmResponse, OpenAiClient,
};
use agent_profiler::{
    BottleneckAnalyzer, MultiProviderCostTracker, NodeTimings, ProfilerFutureExt, extract_provider,
};
use serde_json::{Value, json};
use support::llm_provider::{
    ANTHROPIC_CACHE_CREATION_TOKENS, ANTHROPIC_CACHE_READ_TOKENS, ANTHROPIC_INPUT_TOKENS,
    OPENAI_PROMPT_TOKENS, StreamPlan, StreamingProvider, anthropic_usage, openai_usage,
};

/// A recognisable key that must never show up in an error.
const PLANTED: &str = "sk-PLANTED-streaming-0123456789";

/// Far above any loaded machine's delay on loopback.
const GENEROUS: Duration = Duration::from_secs(20);

/// Every input token of the provider's Anthropic answers, the cache included.
const ANTHROPIC_ALL_INPUT: u64 =
    ANTHROPIC_INPUT_TOKENS + ANTHROPIC_CACHE_READ_TOKENS + ANTHROPIC_CACHE_CREATION_TOKENS;

fn request(model: &str, stream: bool) -> LlmRequest {
    LlmRequest {
        model: model.to_owned(),
        system: Some("Be brief.".to_owned()),
        prompt: "Say hello.".to_owned(),
        max_tokens: 64,
        temperature: None,
        stream,
    }
}

fn openai(provider: &StreamingProvider) -> OpenAiClient {
    OpenAiClient::new(&provider.openai_url(), Some(ApiKey::new(PLANTED, "test"))).unwrap()
}

fn anthropic(provider: &StreamingProvider) -> AnthropicClient {
    AnthropicClient::new(&provider.anthropic_url(), ApiKey::new(PLANTED, "test")).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The answer to `request`, and when the call started.
fn complete(
    client: &dyn LlmClient,
    request: &LlmRequest,
) -> (Result<LlmResponse, LlmError>, Instant) {
    let started = Instant::now();
    let result = runtime().block_on(client.complete(request));
    (result, started)
}

/// The parts of a [`LlmError::StreamCut`]: reason, usage, first chunk, bytes of text.
fn stream_cut(error: LlmError) -> (String, Option<Value>, Option<Instant>, usize) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(PLANTED), "{shown}");
    match error {
        LlmError::StreamCut {
            reason,
            usage,
            first_chunk,
            text_len,
            ..
        } => (reason, usage.map(|u| *u), first_chunk, text_len),
        other => panic!("not a cut stream: {other}"),
    }
}

/// What the cost tracker makes of `body`, as the executor gives it a response.
fn tracked(model: &str, body: &Value) -> agent_profiler::cost::CostInfo {
    MultiProviderCostTracker::new()
        .track_call(&extract_provider(model), model, body)
        .unwrap()
}

#[test]
fn an_openai_stream_gives_the_text_the_final_usage_and_the_time_of_the_first_text() {
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(150),
        total: Duration::from_millis(300),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let (result, started) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let elapsed = started.elapsed();
    let response = result.unwrap();
    assert_eq!(response.text, plan.text());
    assert!(response.stream);
    assert_eq!(response.model, "gpt-4o-mini");
    // The role chunk came at once; the first text only after the delay.
    let first = response.first_chunk.expect("a first chunk") - started;
    assert!(first >= plan.first_chunk_after, "{first:?}");
    assert!(elapsed >= plan.total && elapsed < GENEROUS, "{elapsed:?}");
    assert!(first <= elapsed, "{first:?} after the end ({elapsed:?})");
    // The body has the non-streamed answer's shape, with the last chunk's usage.
    assert_eq!(
        response.raw["choices"][0]["message"]["content"],
        plan.text()
    );
    assert_eq!(response.raw["choices"][0]["finish_reason"], "stop");
    assert_eq!(response.raw["usage"], openai_usage(plan.deltas.len()));
    let cost = tracked("gpt-4o-mini", &response.raw);
    assert_eq!(cost.input_tokens, OPENAI_PROMPT_TOKENS);
    assert_eq!(cost.output_tokens, plan.deltas.len() as u64);
    assert!(cost.cost_usd.is_some_and(|c| c > 0.0), "{cost:?}");
    // What was asked for: a stream, with its usage.
    let body = &provider.bodies()[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(
        provider.requests()[0].header("accept"),
        Some("text/event-stream")
    );
}

#[test]
fn an_openai_answer_not_asked_as_a_stream_is_one_body() {
    let provider = StreamingProvider::start(StreamPlan::default());
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", false));
    let response = result.unwrap();
    assert_eq!((response.stream, response.first_chunk), (false, None));
    assert_eq!(response.text, StreamPlan::default().text());
    assert!(provider.bodies()[0].get("stream").is_none());
}

#[test]
fn an_openai_stream_cut_midway_is_an_error_with_the_usage_that_arrived() {
    // Cut after two deltas: the usage comes last, so none arrived.
    let plan = StreamPlan {
        cut_after: Some(2),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let (result, started) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let (reason, usage, first_chunk, text_len) = stream_cut(result.unwrap_err());
    assert_eq!(usage, None);
    assert_eq!(text_len, plan.deltas[..2].concat().len());
    assert!(first_chunk.is_some_and(|f| f >= started));
    assert!(reason.contains("connection"), "{reason}");

    // The HTTP body ends properly, the stream does not.
    let plan = StreamPlan {
        cut_after: Some(2),
        cut_cleanly: true,
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let (reason, _, _, text_len) = stream_cut(result.unwrap_err());
    assert_eq!(reason, "the connection closed before the end of the stream");
    assert_eq!(text_len, plan.deltas[..2].concat().len());

    // Cut after the usage chunk, before `data: [DONE]`: the call was billed, and says so.
    let plan = StreamPlan {
        cut_after: Some(plan.deltas.len()),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let error = result.unwrap_err();
    assert_eq!(error.billed_usage(), Some(&openai_usage(plan.deltas.len())));
    let (_, usage, _, text_len) = stream_cut(error);
    assert_eq!(text_len, plan.text().len());
    let usage = Usage::from_value(&usage.unwrap()).unwrap();
    assert_eq!(usage.input_tokens, OPENAI_PROMPT_TOKENS);
}

#[test]
fn an_openai_error_chunk_mid_stream_is_a_cut_stream_without_the_key() {
    let plan = StreamPlan {
        error_after: Some(1),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan);
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    // The server quotes the Authorization header in its message; the error shows `***`.
    let (reason, usage, _, text_len) = stream_cut(result.unwrap_err());
    assert!(reason.contains("server had an error"), "{reason}");
    assert!(reason.contains("***"), "{reason}");
    assert_eq!((usage, text_len), (None, "Hel".len()));
}

#[test]
fn an_anthropic_answer_in_one_body_is_priced_with_its_cache_tokens() {
    let plan = StreamPlan::default();
    let provider = StreamingProvider::start(plan.clone());
    let model = "claude-haiku-4-5-20251001";
    let (result, _) = complete(&anthropic(&provider), &request(model, false));
    let response = result.unwrap();
    assert_eq!(response.text, plan.text());
    assert_eq!((response.stream, response.first_chunk), (false, None));
    let cost = tracked(model, &response.raw);
    assert_eq!(cost.input_tokens, ANTHROPIC_ALL_INPUT);
    assert_eq!(cost.cached_input_tokens, ANTHROPIC_CACHE_READ_TOKENS);
    assert_eq!(
        cost.cache_creation_input_tokens,
        ANTHROPIC_CACHE_CREATION_TOKENS
    );
    assert!(cost.cost_usd.is_some_and(|c| c > 0.0), "{cost:?}");
    let sent = &provider.requests()[0];
    assert_eq!(sent.target, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(PLANTED));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
}

#[test]
fn an_anthropic_stream_merges_the_usage_of_message_start_and_message_delta() {
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(150),
        total: Duration::from_millis(300),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let model = "claude-haiku-4-5-20251001";
    let (result, started) = complete(&anthropic(&provider), &request(model, true));
    let elapsed = started.elapsed();
    let response = result.unwrap();
    assert_eq!(response.text, plan.text());
    assert!(response.stream);
    assert_eq!(response.model, model);
    // `message_start`, `content_block_start` and `ping` came at once; no text in them.
    let first = response.first_chunk.expect("a first chunk") - started;
    assert!(first >= plan.first_chunk_after, "{first:?}");
    assert!(elapsed >= plan.total && elapsed < GENEROUS, "{elapsed:?}");
    assert_eq!(provider.bodies()[0]["stream"], true);
    // The body of a non-streamed message: the input and cache counts of `message_start`,
    // the output count of `message_delta` (cumulative: it replaces the start's 1).
    assert_eq!(response.raw["type"], "message");
    assert_eq!(response.raw["content"][0]["text"], plan.text());
    assert_eq!(response.raw["stop_reason"], "end_turn");
    let mut usage = anthropic_usage(plan.deltas.len());
    usage["service_tier"] = json!("standard");
    assert_eq!(response.raw["usage"], usage);
    let (format, _) = Usage::detect(&response.raw).unwrap();
    assert_eq!(format, ResponseFormat::Anthropic);
    let cost = tracked(model, &response.raw);
    assert_eq!(cost.input_tokens, ANTHROPIC_ALL_INPUT);
    assert_eq!(cost.cached_input_tokens, ANTHROPIC_CACHE_READ_TOKENS);
    assert_eq!(
        cost.cache_creation_input_tokens,
        ANTHROPIC_CACHE_CREATION_TOKENS
    );
    assert_eq!(cost.output_tokens, plan.deltas.len() as u64);
}

#[test]
fn an_anthropic_error_event_mid_stream_keeps_the_input_usage() {
    let plan = StreamPlan {
        error_after: Some(2),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let model = "claude-haiku-4-5-20251001";
    let (result, _) = complete(&anthropic(&provider), &request(model, true));
    let (reason, usage, first_chunk, text_len) = stream_cut(result.unwrap_err());
    assert!(reason.contains("overloaded_error"), "{reason}");
    assert!(reason.contains("***"), "{reason}");
    assert!(first_chunk.is_some());
    assert_eq!(text_len, plan.deltas[..2].concat().len());
    // `message_start` said the input (and its one output token so far): billed.
    let usage = Usage::from_value(&usage.expect("the usage of message_start")).unwrap();
    assert_eq!(usage.input_tokens, ANTHROPIC_ALL_INPUT);
    assert_eq!(usage.cached_input_tokens, ANTHROPIC_CACHE_READ_TOKENS);
    assert_eq!(usage.output_tokens, 1);
}

#[test]
fn events_split_mid_line_in_every_chunk_read_as_a_whole() {
    // Pieces of 5 bytes: lines, `\r\n` and the two bytes of `ö` are split.
    let plan = StreamPlan {
        split: true,
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let response = result.unwrap();
    assert_eq!(response.text, plan.text());
    assert_eq!(response.raw["usage"], openai_usage(plan.deltas.len()));

    let model = "claude-haiku-4-5-20251001";
    let (result, _) = complete(&anthropic(&provider), &request(model, true));
    let response = result.unwrap();
    assert_eq!(response.text, plan.text());
    assert_eq!(
        tracked(model, &response.raw).input_tokens,
        ANTHROPIC_ALL_INPUT
    );
}

#[test]
fn a_stream_larger_than_the_client_reads_is_cut_with_bounded_memory() {
    // 17 deltas of 1 MiB: more text than the 16 MiB a client keeps.
    let plan = StreamPlan {
        deltas: vec!["x".repeat(1 << 20); 17],
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan);
    let (result, _) = complete(&openai(&provider), &request("gpt-4o-mini", true));
    let (reason, usage, first_chunk, text_len) = stream_cut(result.unwrap_err());
    assert!(reason.contains("16777216 bytes"), "{reason}");
    assert_eq!(usage, None);
    assert!(first_chunk.is_some());
    // Read up to the delta that went past the cap, and no further.
    assert_eq!(text_len, 17 << 20);
}

/// A stream whose first text comes after 50 ms and whose last after 5 s: longer than the
/// timeouts the tests give their clients.
fn five_second_stream() -> StreamPlan {
    StreamPlan {
        first_chunk_after: Duration::from_millis(50),
        total: Duration::from_secs(5),
        ..StreamPlan::default()
    }
}

#[test]
fn a_stream_slower_than_the_timeout_is_a_timeout() {
    let provider = StreamingProvider::start(five_second_stream());
    let client = openai(&provider)
        .with_timeout(Duration::from_millis(400))
        .unwrap();
    let (result, started) = complete(&client, &request("gpt-4o-mini", true));
    assert!(started.elapsed() < Duration::from_secs(4));
    match result.unwrap_err() {
        LlmError::Timeout { seconds, .. } => assert!((seconds - 0.4).abs() < 1e-9),
        other => panic!("not a timeout: {other}"),
    }
}

#[test]
fn an_anthropic_stream_timing_out_after_its_usage_keeps_it() {
    // message_start (with the input usage) goes at once; the text would take 5 s.
    let provider = StreamingProvider::start(five_second_stream());
    let client = anthropic(&provider)
        .with_timeout(Duration::from_millis(400))
        .unwrap();
    let model = "claude-haiku-4-5-20251001";
    let (result, _) = complete(&client, &request(model, true));
    match result.unwrap_err() {
        LlmError::StreamCut {
            timed_out: true,
            usage: Some(usage),
            first_chunk: Some(_),
            reason,
            ..
        } => {
            assert!(reason.contains("within 0.4s"), "{reason}");
            assert!(usage.get("input_tokens").is_some(), "{usage}");
        }
        other => panic!("not a timed-out stream with its usage: {other:?}"),
    }
}

/// A node `id` of `model` that asks for a stream when `stream`.
fn node(id: &str, model: &str, stream: bool) -> NodeConfig {
    NodeConfig {
        id: id.to_owned(),
        model: model.to_owned(),
        system: None,
        prompt: "Say hello.".to_owned(),
        output_key: "answer".to_owned(),
        max_tokens: 64,
        temperature: None,
        stream,
    }
}

/// Runs `node` once with `client` under a fresh analyzer: its result, its figures, and the
/// executor's tracker.
fn run_node(
    client: Arc<dyn LlmClient>,
    node: &NodeConfig,
) -> (
    Result<NodeOutput, NodeError>,
    NodeTimings,
    MultiProviderCostTracker,
) {
    let analyzer = BottleneckAnalyzer::new();
    let executor = NodeExecutor::new(client);
    let state = serde_json::Map::new();
    let result = runtime().block_on(
        executor
            .execute_node(node, &state)
            .with_profiler(analyzer.clone()),
    );
    let timings = analyzer.get_node(&node.id).expect("the node's figures");
    (result, timings, executor.cost_tracker.unwrap())
}

#[test]
fn a_streamed_node_has_its_time_to_first_token_and_its_llm_time() {
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(120),
        total: Duration::from_millis(240),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let client = Arc::new(openai(&provider));
    let (result, timings, tracker) = run_node(client, &node("greet", "gpt-4o-mini", true));
    let output = result.unwrap();
    assert_eq!(output.text, plan.text());
    assert_eq!((timings.llm_calls, timings.streamed_calls), (1, 1));
    let ttft = timings.ttft_p50_ms.expect("a time to first token");
    assert!(
        ttft >= 120.0 && ttft < GENEROUS.as_secs_f64() * 1e3,
        "{ttft}"
    );
    assert!(timings.llm_time_ms >= 240.0, "{timings:?}");
    assert!(
        timings.llm_time_ms <= timings.self_duration_ms + 1.0,
        "{timings:?}"
    );
    assert_eq!(timings.output_tokens, plan.deltas.len() as u64);
    assert_eq!(tracker.get_cost_summary().failed_calls, 0);

    // The same node not streamed: timed, without a time to first token.
    let client = Arc::new(openai(&provider));
    let (result, timings, _) = run_node(client, &node("greet", "gpt-4o-mini", false));
    result.unwrap();
    assert_eq!((timings.llm_calls, timings.streamed_calls), (1, 0));
    assert_eq!(timings.ttft_p50_ms, None);
    assert_eq!(provider.bodies()[1].get("stream"), None);
}

#[test]
fn a_node_whose_stream_is_cut_fails_with_the_usage_it_was_billed() {
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(30),
        error_after: Some(2),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan);
    let model = "claude-haiku-4-5-20251001";
    let client = Arc::new(anthropic(&provider));
    let (result, timings, tracker) = run_node(client, &node("greet", model, true));
    let error = result.unwrap_err();
    assert!(
        matches!(error.kind, NodeErrorKind::Llm(LlmError::StreamCut { .. })),
        "{error:?}"
    );
    assert!(error.cost_usd > 0.0, "{error:?}");
    assert_eq!(timings.outcomes.error, 1);
    // Billed: the call counts with its tokens, not among the calls without usage.
    assert_eq!((timings.llm_calls, timings.llm_failed_calls), (1, 0));
    assert_eq!(timings.input_tokens, ANTHROPIC_ALL_INPUT);
    assert_eq!(timings.streamed_calls, 1);
    assert!(
        timings.ttft_p50_ms.is_some_and(|t| t >= 30.0),
        "{timings:?}"
    );
    assert_eq!(tracker.get_cost_summary().failed_calls, 0);
}

#[test]
fn a_node_whose_stream_times_out_counts_a_failed_call() {
    let plan = StreamPlan {
        total: Duration::from_secs(5),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan);
    let client = openai(&provider)
        .with_timeout(Duration::from_millis(300))
        .unwrap();
    let (result, timings, tracker) =
        run_node(Arc::new(client), &node("greet", "gpt-4o-mini", true));
    let error = result.unwrap_err();
    assert!(
        matches!(error.kind, NodeErrorKind::Llm(LlmError::Timeout { .. })),
        "{error:?}"
    );
    assert_eq!((timings.llm_calls, timings.llm_failed_calls), (0, 1));
    assert!(timings.llm_time_ms >= 300.0, "{timings:?}");
    assert_eq!(tracker.get_cost_summary().failed_calls, 1);
}
