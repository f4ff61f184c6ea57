//! The split of a node's time into the wait on the model and its own code, end to end through
//! the workflow executor against loopback providers: a streamed node's time to first token
//! and LLM time (and its chat span's duration in a real MLflow server), two concurrent calls
//! counted as their union, and a stream cut midway recorded and stored.

mod support {
    #[allow(dead_code)]
    pub mod http_stub;
    #[allow(dead_code)]
    pub mod llm_provider;
    #[allow(dead_code)]
    pub mod mlflow_api;
    #[allow(dead_code)]
    pub mod mlflow_server;
    pub mod scratch;
}

use std::sync::Arc;
use std::time::Duration;

use agent_profiler::executor::{Console, WorkflowExecutor};
use agent_profiler::llm::{ApiKey, LlmClient, LlmRequest, OpenAiClient};
use agent_profiler::store::{RunStore, WorkflowStatus};
use agent_profiler::{NodeTimings, Summary, profile_node};
use serde_json::{Map, Value, json};
use support::llm_provider::{LlmProvider, OPENAI_PROMPT_TOKENS, StreamPlan, StreamingProvider};
use support::{mlflow_api, mlflow_server, scratch};

fn node<'a>(summary: &'a Summary, id: &str) -> &'a NodeTimings {
    summary
        .node(id)
        .unwrap_or_else(|| panic!("no node {id}: {summary:?}"))
}

fn openai(base_url: &str) -> Arc<dyn LlmClient> {
    Arc::new(OpenAiClient::new(base_url, Some(ApiKey::new("sk-test-split", "test"))).unwrap())
}

fn quiet(executor: WorkflowExecutor) -> WorkflowExecutor {
    executor.console(Console::Silent)
}

fn one_streamed_step(id: &str) -> Value {
    json!({
        "name": format!("split-{id}"),
        "steps": [{"id": id, "model": "gpt-4o-mini", "prompt": "Say hello to {who}",
                   "output_key": "greeting", "max_tokens": 20, "stream": true}]
    })
}

fn write_config(test: &str, config: &Value) -> std::path::PathBuf {
    let path = scratch::temp_dir(test).join("workflow.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A streamed answer whose first text comes after 300 ms and whose last after 500 ms: the
/// node's time to first token, LLM time and own time, and the chat span MLflow keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_node_splits_its_time_and_its_chat_span_lasts_as_long_in_mlflow() {
    let test = "a_streamed_node_splits_its_time";
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(300),
        total: Duration::from_millis(500),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan.clone());
    let mut executor = quiet(WorkflowExecutor::new(openai(&provider.openai_url())));
    let mlflow_uri = mlflow_server::tracking_uri(test);
    if let Some(uri) = &mlflow_uri {
        executor = executor.mlflow(mlflow_api::config(uri, test));
    }
    let run = executor
        .run_workflow_from_config(
            &write_config(test, &one_streamed_step("greet")),
            json!({"who": "Ada"}),
        )
        .await
        .unwrap();

    let greet = node(&run.summary, "greet");
    assert_eq!((greet.llm_calls, greet.streamed_calls), (1, 1), "{greet:?}");
    assert!(greet.ttft_p50_ms.unwrap() >= 300.0, "{greet:?}");
    assert!(greet.llm_time_ms >= 500.0, "{greet:?}");
    assert!(greet.own_time_ms < greet.self_duration_ms, "{greet:?}");
    assert!(greet.llm_time_ms <= greet.self_duration_ms, "{greet:?}");
    assert_eq!(greet.input_tokens, OPENAI_PROMPT_TOKENS);
    assert_eq!(run.state["greeting"], plan.text());

    let Some(uri) = mlflow_uri else { return };
    let exporter = executor
        .otlp_exporter()
        .expect("found from the MLflow config");
    assert!(
        exporter.flush(Duration::from_secs(30)),
        "{:?}",
        exporter.stats()
    );
    let experiment = run.mlflow_experiment_id.clone().expect("an experiment");
    let mlflow_run = run.mlflow_run_id.clone().expect("an MLflow run");
    // The REST calls block: on a blocking thread, not the runtime's.
    let (_, trace) = tokio::task::spawn_blocking(move || {
        mlflow_api::trace_of_run(&uri, &experiment, &mlflow_run)
    })
    .await
    .unwrap();
    let spans = trace["trace"]["spans"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let chat: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.starts_with("chat")))
        .collect();
    assert_eq!(chat.len(), 1, "{spans:?}");
    let nanos = |key: &str| -> u64 {
        let value = &chat[0][key];
        value
            .as_str()
            .and_then(|t| t.parse().ok())
            .or_else(|| value.as_u64())
            .unwrap_or_else(|| panic!("no {key}: {:?}", chat[0]))
    };
    let lasted = nanos("end_time_unix_nano") - nanos("start_time_unix_nano");
    assert!(lasted >= 500_000_000, "the chat span lasted {lasted} ns");
}

#[profile_node("fan_out")]
async fn fan_out(ctx: &agent_profiler::executor::WorkflowContext) -> Result<(), String> {
    let request = |prompt: &str| LlmRequest {
        model: "gpt-4o-mini".to_owned(),
        system: None,
        prompt: prompt.to_owned(),
        // The loopback provider answers after max_tokens / 4 ms: 200 ms.
        max_tokens: 800,
        temperature: None,
        stream: false,
    };
    let (a, b) = (request("first"), request("second"));
    let executor = ctx.node_executor();
    let ((first, _), (second, _)) = tokio::join!(
        executor.call_llm("fan_out", &a),
        executor.call_llm("fan_out", &b)
    );
    first.map_err(|e| e.to_string())?;
    second.map_err(|e| e.to_string())?;
    Ok(())
}

/// Two 200 ms calls at once inside one node: 2 calls, and an LLM time that is their union.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_calls_of_a_node_count_as_their_union() {
    let provider = LlmProvider::start();
    let executor = quiet(WorkflowExecutor::new(openai(&provider.base_url())));
    let run = executor
        .run_fn("split-fan-out", json!({}), |ctx, state| async move {
            fan_out(&ctx).await?;
            Ok::<Map<String, Value>, String>(state)
        })
        .await
        .unwrap();
    let fan = node(&run.summary, "fan_out");
    assert_eq!(fan.llm_calls, 2, "{fan:?}");
    assert!(fan.llm_time_ms >= 200.0, "{fan:?}");
    assert!(fan.llm_time_ms < 400.0, "the sum, not the union: {fan:?}");
    assert!(fan.own_time_ms <= fan.self_duration_ms, "{fan:?}");
}

/// A stream cut after two deltas: the node fails, the usage that arrived is recorded and
/// priced, and the run is in the store with its tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_midway_fails_the_node_keeps_its_usage_and_the_run_is_stored() {
    let test = "a_stream_cut_midway_is_stored";
    let plan = StreamPlan {
        first_chunk_after: Duration::from_millis(20),
        total: Duration::from_millis(60),
        // Past the last delta: the usage chunk is sent, then the connection closes
        // without `[DONE]`.
        cut_after: Some(4),
        ..StreamPlan::default()
    };
    let provider = StreamingProvider::start(plan);
    let db = scratch::temp_dir(test).join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let executor = quiet(WorkflowExecutor::new(openai(&provider.openai_url()))).store(store);
    let failed = executor
        .run_workflow_from_config(
            &write_config(test, &one_streamed_step("cut")),
            json!({"who": "Ada"}),
        )
        .await
        .expect_err("a cut stream fails the run");
    let run = failed.run().expect("the failed run").clone();
    assert_eq!(run.record.status, WorkflowStatus::Failed);
    let cut = node(&run.summary, "cut");
    assert_eq!(cut.outcomes.error, 1, "{cut:?}");
    assert_eq!(
        cut.llm_calls, 1,
        "billed, so not a call without usage: {cut:?}"
    );
    assert_eq!(cut.input_tokens, OPENAI_PROMPT_TOKENS, "{cut:?}");
    assert!(cut.cost_usd > 0.0, "{cut:?}");
    assert!(cut.ttft_p50_ms.is_some_and(|t| t >= 20.0), "{cut:?}");

    let reopened = RunStore::open(&db).unwrap();
    let stored = reopened.get_run(&run.record.id).unwrap().expect("stored");
    assert_eq!(stored.status, WorkflowStatus::Failed);
    assert_eq!(stored.total_tokens, run.summary.total_tokens);
    assert!(stored.total_tokens > 0);
    let summary = stored.bottleneck_info.expect("the summary is stored");
    assert_eq!(node(&summary, "cut").llm_calls, 1);
}
