//! The executors end to end: a workflow from a JSON file against a loopback server that
//! speaks OpenAI Chat Completions (with usage), the run store, the report lines, the node
//! output fields, MLflow (when `scripts/test` started a server), failures, and secrets.

mod support {
    #[allow(dead_code)] // the provider stub uses most of it; this file only `closed_port`
    pub mod http_stub;
    pub mod llm_provider;
    #[allow(dead_code)] // the tracker configuration and the client, no trace routes
    pub mod mlflow_api;
    #[allow(dead_code)] // the tracking server's URI, no private or TLS server
    pub mod mlflow_server;
    pub mod scratch;
}

use std::path::PathBuf;
use std::sync::Arc;

use agent_profiler::executor::{
    Console, NodeErrorKind, WorkflowConfig, WorkflowError, WorkflowExecutor,
};
use agent_profiler::llm::{
    ApiKey, BoxFuture, LlmClient, LlmError, LlmRequest, LlmResponse, OpenAiClient,
};
use agent_profiler::store::{RunStore, WorkflowStatus};
use agent_profiler::{NodeTimings, Summary};
use serde_json::json;
use support::llm_provider::LlmProvider;
use support::{http_stub, mlflow_api, mlflow_server, scratch};

/// A recognisable key that must never show up anywhere but in the request header.
const PLANTED: &str = "sk-PLANTED-0123456789-do-not-leak";

fn write_config(dir: &std::path::Path, text: &str) -> PathBuf {
    let path = dir.join("workflow.json");
    std::fs::write(&path, text).unwrap();
    path
}

const RESEARCH: &str = r#"{
  "name": "loopback-research",
  "steps": [
    {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan", "max_tokens": 40},
    {"parallel": [
      {"id": "web", "model": "gpt-4o-mini", "prompt": "Web for {plan}", "output_key": "web", "max_tokens": 60},
      {"id": "papers", "model": "gpt-4o-mini", "prompt": "Papers for {plan}", "output_key": "papers", "max_tokens": 60}
    ]},
    {"id": "analyze", "model": "gpt-4o", "prompt": "Analyze {web} {papers}", "output_key": "analysis", "max_tokens": 1600}
  ]
}"#;

fn client(server: &LlmProvider) -> Arc<dyn LlmClient> {
    Arc::new(OpenAiClient::new(&server.base_url(), Some(ApiKey::new(PLANTED, "test"))).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_against_loopback_openai_server() {
    let test = "end_to_end_against_loopback_openai_server";
    let server = LlmProvider::start();
    let dir = scratch::temp_dir(test);
    let config = write_config(&dir, RESEARCH);
    let db = dir.join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let (console, captured) = Console::capture();
    let mut executor = WorkflowExecutor::new(client(&server))
        .store(store.clone())
        .console(console);
    let mlflow_uri = mlflow_server::tracking_uri(test);
    if let Some(uri) = &mlflow_uri {
        executor = executor.mlflow(mlflow_api::config(uri, test));
    }
    let run = executor
        .run_workflow_from_config(&config, json!({"topic": "rust"}))
        .await
        .unwrap();

    // The report: the slowest node and the bottlenecks first, in these exact words.
    let lines: Vec<&str> = run.report.lines().collect();
    let analyze = node(&run.summary, "analyze");
    assert_eq!(
        lines[0],
        format!(
            "Slowest node: analyze ({:.2}ms avg)",
            analyze.avg_duration_ms
        )
    );
    assert_eq!(lines[1], "Bottlenecks (>50% of total time):");
    let b = &run.summary.bottlenecks[0];
    assert_eq!(b.node_id, "analyze");
    assert_eq!(
        lines[2],
        format!(
            "  - analyze: {:.1}% ({:.0}ms total)",
            b.percent_of_total, b.total_duration_ms
        )
    );
    assert!(run.report.contains("ok/err/panic/cancel"));
    let console_text = captured.lock().unwrap().clone();
    assert!(console_text.contains(&run.report));
    assert!(console_text.contains("running analyze (gpt-4o)"));

    // Every node timed, with tokens and cost from the server's usage.
    assert_eq!(run.summary.node_count, 4);
    for node in &run.summary.nodes {
        assert_eq!(node.call_count, 1, "{}", node.node_id);
        assert_eq!(node.llm_calls, 1, "{}", node.node_id);
        assert!(node.cost_usd > 0.0, "{}", node.node_id);
        assert!(node.total_tokens > 0);
    }
    assert_eq!(run.record.status, WorkflowStatus::Completed);
    assert!(run.record.total_cost_usd > 0.0);
    assert_eq!(run.record.total_tokens, run.summary.total_tokens);
    assert_eq!(run.state["analysis"], "answer of gpt-4o (1600 max tokens)");

    // The node output fields and the stored snapshots.
    assert_eq!(run.states.len(), 4);
    for state in &run.states {
        let ms = state.state["_execution_time_ms"].as_f64().unwrap();
        let cost = state.state["_cost_usd"].as_f64().unwrap();
        assert!(ms > 0.0 && cost > 0.0, "{state:?}");
        assert_eq!(state.execution_time_ms, ms);
    }
    // Responses are not stored by default.
    let stored_states = store.states(&run.record.id).unwrap();
    assert_eq!(stored_states, run.states);
    let analysis_state = stored_states
        .iter()
        .find(|s| s.node_id == "analyze")
        .unwrap();
    assert!(
        analysis_state.state["analysis"]
            .as_str()
            .unwrap()
            .starts_with("[response not stored")
    );
    assert!(analysis_state.state.get("_prompt").is_none());

    // The record round-trips, bottleneck_info included.
    let stored = store.get_run(&run.record.id).unwrap().unwrap();
    assert_eq!(stored, run.record);
    assert_eq!(stored.bottleneck_info.as_ref(), Some(&run.summary));
    assert_eq!(store.recent_runs("loopback-research", 5).unwrap().len(), 1);
    let per_node = store.node_stats("loopback-research", 5).unwrap();
    assert_eq!(per_node[0].node_id, "analyze");
    assert_eq!(per_node[0].bottleneck_runs, 1);

    // The key went to the server and nowhere else.
    let auth_headers = server.auth_headers();
    assert_eq!(auth_headers.len(), 4, "one request per node");
    assert!(
        auth_headers
            .iter()
            .all(|h| h == &format!("Bearer {PLANTED}"))
    );
    assert!(!console_text.contains(PLANTED));
    assert!(!String::from_utf8_lossy(&std::fs::read(&db).unwrap()).contains(PLANTED));
    assert!(!format!("{:?}", run).contains(PLANTED));

    // MLflow: per-call durations and costs, the report, no key. Read back on a blocking
    // thread: the MLflow client blocks, which it must not do on the runtime's.
    if let Some(uri) = mlflow_uri {
        let run_id = run.mlflow_run_id.clone().expect("MLflow run");
        let summary = run.summary.clone();
        tokio::task::spawn_blocking(move || {
            let client = mlflow_api::client(&uri);
            for id in ["plan", "web", "papers", "analyze"] {
                let d = client
                    .get_metric_history(&run_id, &format!("node_{id}_duration_ms"))
                    .unwrap();
                assert_eq!(d.len(), 1, "{id}");
                let c = client
                    .get_metric_history(&run_id, &format!("node_{id}_cost_usd"))
                    .unwrap();
                assert_eq!(c.len(), 1, "{id}");
                let expected = node(&summary, id).cost_usd;
                assert!((c[0].value - expected).abs() < 1e-12);
            }
            let mlflow_run = client.get_run(&run_id).unwrap();
            assert_eq!(mlflow_run.info.status, "FINISHED");
            assert!(!format!("{mlflow_run:?}").contains(PLANTED));
        })
        .await
        .unwrap();
    }
}

async fn failing(model: &str, test: &str) -> (WorkflowError, RunStore, String) {
    let server = LlmProvider::start();
    let dir = scratch::temp_dir(test);
    let text = format!(
        r#"{{"name": "{test}", "steps": [
            {{"id": "first", "model": "gpt-4o-mini", "prompt": "Hi {{topic}}", "output_key": "a", "max_tokens": 20}},
            {{"id": "broken", "model": "{model}", "prompt": "Go {{a}}", "output_key": "b"}}
        ]}}"#
    );
    let config = write_config(&dir, &text);
    let store = RunStore::open(dir.join("runs.sqlite3")).unwrap();
    let (console, captured) = Console::capture();
    let executor = WorkflowExecutor::new(client(&server))
        .store(store.clone())
        .console(console);
    let err = executor
        .run_workflow_from_config(&config, json!({"topic": "x"}))
        .await
        .unwrap_err();
    let console_text = captured.lock().unwrap().clone();
    (err, store, console_text)
}

/// The timings of node `id` in a run's summary.
fn node<'a>(summary: &'a Summary, id: &str) -> &'a NodeTimings {
    summary
        .node(id)
        .unwrap_or_else(|| panic!("node `{id}` not in the summary"))
}

fn check_failed_run(err: &WorkflowError, store: &RunStore, console: &str) -> NodeErrorKind {
    let run = err.run().expect("the run is returned");
    assert_eq!(run.record.status, WorkflowStatus::Failed);
    // Timing recorded for the failing node too; the report still printed and stored.
    let broken = node(&run.summary, "broken");
    assert_eq!(broken.call_count, 1);
    assert_eq!(
        broken.outcomes.error, 1,
        "the failure is the node's outcome"
    );
    assert!(console.contains("Slowest node: "));
    assert!(console.contains("FAILED  broken"));
    let stored = store.get_run(&run.record.id).unwrap().unwrap();
    assert_eq!(stored.status, WorkflowStatus::Failed);
    assert_eq!(stored.bottleneck_info.as_ref(), Some(&run.summary));
    assert!(
        stored
            .error_message
            .as_deref()
            .unwrap()
            .contains("node `broken`")
    );
    let states = store.states(&run.record.id).unwrap();
    assert_eq!(states.len(), 2);
    assert_eq!(states[1].status, "failed");
    assert!(states[1].state["_execution_time_ms"].as_f64().unwrap() >= 0.0);
    for text in [console.to_owned(), err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(PLANTED));
    }
    match &run.failure {
        Some(agent_profiler::executor::RunFailure::Node(e)) => e.kind.clone(),
        other => panic!("not a node failure: {other:?}"),
    }
}

/// The body of the HTTP error with status `want` that the node failed with.
fn http_error_body(kind: NodeErrorKind, want: u16) -> String {
    match kind {
        NodeErrorKind::Llm(LlmError::Http { status, body, .. }) if status == want => body,
        other => panic!("not an HTTP {want} error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_errors_http_500() {
    let (err, store, console) = failing("fail-500", "node_that_errors_http_500").await;
    let body = http_error_body(check_failed_run(&err, &store, &console), 500);
    assert!(body.contains("overloaded"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_returns_garbage() {
    let (err, store, console) = failing("garbage", "endpoint_returns_garbage").await;
    match check_failed_run(&err, &store, &console) {
        NodeErrorKind::Llm(LlmError::BadBody { reason, .. }) => {
            assert!(reason.contains("not JSON"))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_without_text_still_costs() {
    let (err, store, console) = failing("no-choices", "answer_without_text_still_costs").await;
    check_failed_run(&err, &store, &console);
    let run = err.run().unwrap();
    let broken = node(&run.summary, "broken");
    assert_eq!(broken.llm_calls, 1);
    assert!(broken.total_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_echoed_by_the_server_is_redacted() {
    let (err, store, console) = failing("echo-auth", "key_echoed_by_the_server_is_redacted").await;
    let body = http_error_body(check_failed_run(&err, &store, &console), 401);
    assert!(body.contains("***"), "{body}");
    let run = err.run().unwrap();
    let stored = store.get_run(&run.record.id).unwrap().unwrap();
    assert!(!format!("{stored:?}").contains(PLANTED));
    assert!(!format!("{:?}", store.states(&run.record.id).unwrap()).contains(PLANTED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down() {
    let port = http_stub::closed_port();
    let client: Arc<dyn LlmClient> = Arc::new(
        OpenAiClient::new(
            &format!("http://127.0.0.1:{port}/v1"),
            Some(ApiKey::new(PLANTED, "test")),
        )
        .unwrap(),
    );
    let config = WorkflowConfig::from_json_str(
        r#"{"name": "down", "steps": [{"id": "only", "model": "gpt-4o", "prompt": "x", "output_key": "y"}]}"#,
    )
    .unwrap();
    let (console, captured) = Console::capture();
    let err = WorkflowExecutor::new(client)
        .console(console)
        .run_config(&config, json!({}))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("cannot reach http://127.0.0.1"),
        "{message}"
    );
    assert!(!message.contains(PLANTED));
    assert!(!captured.lock().unwrap().contains(PLANTED));
    let run = err.run().unwrap();
    assert_eq!(run.summary.nodes[0].call_count, 1);
}

struct Panicking;

impl LlmClient for Panicking {
    fn complete<'a>(&'a self, _: &'a LlmRequest) -> BoxFuture<'a, Result<LlmResponse, LlmError>> {
        Box::pin(async { panic!("client exploded") })
    }
    fn describe(&self) -> String {
        "panicking".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_node_in_a_group_and_alone() {
    let store = RunStore::in_memory().unwrap();
    for text in [
        r#"{"name": "p", "steps": [{"id": "boom", "model": "gpt-4o", "prompt": "x", "output_key": "y"}]}"#,
        r#"{"name": "p", "steps": [{"parallel": [{"id": "boom", "model": "gpt-4o", "prompt": "x", "output_key": "y"}]}]}"#,
    ] {
        let config = WorkflowConfig::from_json_str(text).unwrap();
        let (console, captured) = Console::capture();
        let executor = WorkflowExecutor::new(Arc::new(Panicking))
            .store(store.clone())
            .console(console);
        let err = executor.run_config(&config, json!({})).await.unwrap_err();
        let run = err.run().unwrap();
        assert_eq!(run.record.status, WorkflowStatus::Panicked);
        assert!(err.to_string().contains("client exploded"), "{err}");
        assert_eq!(run.summary.nodes[0].node_id, "boom");
        assert_eq!(run.summary.nodes[0].call_count, 1);
        assert_eq!(run.summary.nodes[0].outcomes.panicked, 1);
        assert!(captured.lock().unwrap().contains("Slowest node: boom"));
        let stored = store.get_run(&run.record.id).unwrap().unwrap();
        assert_eq!(stored.status, WorkflowStatus::Panicked);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_files_say_what_and_where() {
    let dir = scratch::temp_dir("invalid_config");
    let cases = [
        // (text, expected pieces of the message)
        (
            "{\n  \"name\": \"w\",\n  \"steps\": [\n    {\"id\": \"a\", \"prompt\": \"p\", \"output_key\": \"o\"}\n  ]\n}",
            vec!["line ", "field `steps[0]`", "missing field `model`"],
        ),
        (
            "{\"name\": \"w\", \"steps\": [{\"id\": \"a\", \"model\": \"m\", \"prompt\": \"p\", \"output_key\": \"o\", \"max_token\": 5}]}",
            vec!["line 1", "steps[0]", "max_token"],
        ),
        (
            "{\"name\": \"w\",\n \"steps\": [}",
            vec!["line 2", "column"],
        ),
        (
            "{\"name\": \"w\", \"steps\": [{\"parallel\": [{\"id\": \"a b\", \"model\": \"m\", \"prompt\": \"p\", \"output_key\": \"o\"}]}]}",
            vec!["steps[0].parallel[0].id", "`a b`"],
        ),
        (
            "{\"name\": \"w\", \"steps\": [{\"id\": \"a\", \"model\": \"m\", \"prompt\": \"p {x\", \"output_key\": \"o\"}]}",
            vec!["steps[0].prompt", "unclosed"],
        ),
    ];
    for (text, expected) in cases {
        let path = write_config(&dir, text);
        let err = WorkflowConfig::from_path(&path).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        for piece in expected {
            assert!(message.contains(piece), "`{piece}` not in: {message}");
        }
        let exec = WorkflowExecutor::new(Arc::new(Panicking)).console(Console::Silent);
        match exec.run_workflow_from_config(&path, json!({})).await {
            Err(WorkflowError::Config(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflow_written_in_code() {
    let server = LlmProvider::start();
    let (console, captured) = Console::capture();
    let executor = WorkflowExecutor::new(client(&server))
        .console(console)
        .threshold_percent(40.0);
    let run = executor
        .run_fn("code", json!({"q": "why"}), |ctx, mut state| async move {
            let q = state["q"].as_str().unwrap().to_owned();
            let a = ctx
                .llm("think", "gpt-4o-mini", &format!("Think {{about}} {q}"))
                .await?;
            state.insert("answer".into(), json!(a));
            Ok::<_, agent_profiler::executor::NodeError>(state)
        })
        .await
        .unwrap();
    assert_eq!(run.summary.nodes[0].node_id, "think");
    assert_eq!(run.states[0].node_id, "think");
    assert!(
        captured
            .lock()
            .unwrap()
            .contains("Bottlenecks (>40% of total time):")
    );
    let body = &server.bodies()[0];
    assert_eq!(body["messages"][0]["content"], "Think {about} why");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_keeps_its_trace_in_the_store_and_as_a_perfetto_file() {
    let server = LlmProvider::start();
    let dir = scratch::temp_dir("each_run_keeps_its_trace");
    let config = write_config(&dir, RESEARCH);
    let store = RunStore::open(dir.join("runs.sqlite3")).unwrap();
    let executor = WorkflowExecutor::new(client(&server))
        .console(Console::Silent)
        .store(store.clone())
        .perfetto_dir(dir.join("traces"));
    let run = executor
        .run_workflow_from_config(&config, json!({"topic": "tsc"}))
        .await
        .unwrap();
    let trace = run.trace.clone().expect("trace mode is on by default");
    assert_eq!(trace.dropped, 0);
    let ids: Vec<&str> = trace.spans.iter().map(|s| &*s.node_id).collect();
    for node in ["plan", "web", "papers", "analyze"] {
        let span = trace.spans.iter().find(|s| s.node_id == node).unwrap();
        assert_eq!(
            span.llm_calls.len(),
            1,
            "{node}'s LLM call is on its span: {ids:?}"
        );
        assert!(span.llm_totals().total_tokens > 0);
    }
    let span = |id: &str| trace.spans.iter().find(|s| s.node_id == id).unwrap();
    // The parallel group ran concurrently: the two spans overlap.
    let (web, papers) = (span("web"), span("papers"));
    assert!(web.start_unix_ns < papers.end_unix_ns && papers.start_unix_ns < web.end_unix_ns);
    assert!(span("plan").end_unix_ns <= web.start_unix_ns);
    assert_eq!(
        store.load_trace(&run.record.id).unwrap().as_ref(),
        Some(&trace)
    );

    let file = run.perfetto_file.clone().expect("written");
    assert_eq!(
        file,
        dir.join("traces")
            .join(format!("{}.perfetto.json", run.record.id))
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let names: Vec<&str> = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "node")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), trace.spans.len());
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);

    let untraced = WorkflowExecutor::new(client(&server))
        .console(Console::Silent)
        .trace(None);
    let run = untraced
        .run_workflow_from_config(&config, json!({"topic": "tsc"}))
        .await
        .unwrap();
    assert!(run.trace.is_none() && run.perfetto_file.is_none());
}

/// A streamed node (`draft`) and one that is not (`check`) on the simulated client: each
/// node's time split reaches the summary, the report, the run store and MLflow (one
/// `node_{id}_llm_ms` per call, `node_{id}_ttft_ms` for the streamed one only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_time_split_reaches_the_report_the_store_and_mlflow() {
    let test = "each_node_time_split_reaches_the_report_the_store_and_mlflow";
    let dir = scratch::temp_dir(test);
    let config = write_config(
        &dir,
        r#"{"name": "split", "steps": [
            {"id": "draft", "model": "gpt-4o-mini", "prompt": "draft {q}", "output_key": "d",
             "stream": true},
            {"id": "check", "model": "gpt-4o-mini", "prompt": "check {d}", "output_key": "c"}
        ]}"#,
    );
    let store = RunStore::open(dir.join("runs.sqlite3")).unwrap();
    let client = Arc::new(
        agent_profiler::llm::SimulatedClient::new()
            .base_latency(std::time::Duration::from_millis(25))
            .per_token_latency(std::time::Duration::ZERO)
            .first_token_latency(std::time::Duration::from_millis(10)),
    );
    let mut executor = WorkflowExecutor::new(client)
        .store(store.clone())
        .console(Console::Silent);
    let mlflow_uri = mlflow_server::tracking_uri(test);
    if let Some(uri) = &mlflow_uri {
        executor = executor.mlflow(mlflow_api::config(uri, test));
    }
    let run = executor
        .run_workflow_from_config(&config, json!({"q": "why"}))
        .await
        .unwrap();

    let draft = node(&run.summary, "draft");
    assert_eq!((draft.llm_calls, draft.streamed_calls), (1, 1));
    assert!(draft.llm_time_ms >= 25.0, "{draft:?}");
    assert!(draft.ttft_p50_ms.unwrap() >= 10.0, "{draft:?}");
    assert!(draft.own_time_ms >= 0.0 && draft.own_time_ms < draft.self_duration_ms);
    let check = node(&run.summary, "check");
    assert_eq!((check.streamed_calls, check.ttft_p50_ms), (0, None));
    assert!(check.llm_time_ms >= 25.0, "{check:?}");
    assert!(run.report.contains("llm calls"), "{}", run.report);

    let splits = store.time_splits(&run.record.id).unwrap();
    assert_eq!(splits.len(), 2);
    let stored = splits.iter().find(|s| s.node_id == "draft").unwrap();
    assert_eq!(stored.llm_time_ms, draft.llm_time_ms);
    assert_eq!(stored.ttft_p95_ms, draft.ttft_p95_ms);

    if let Some(uri) = mlflow_uri {
        let run_id = run.mlflow_run_id.clone().expect("MLflow run");
        tokio::task::spawn_blocking(move || {
            let client = mlflow_api::client(&uri);
            let history = |key: &str| client.get_metric_history(&run_id, key).unwrap();
            for id in ["draft", "check"] {
                let llm = history(&format!("node_{id}_llm_ms"));
                assert_eq!(llm.len(), 1, "{id}");
                assert!(llm[0].value >= 25.0, "{id}: {llm:?}");
            }
            let ttft = history("node_draft_ttft_ms");
            assert_eq!(ttft.len(), 1);
            assert!(ttft[0].value >= 10.0, "{ttft:?}");
            assert!(history("node_check_ttft_ms").is_empty());
        })
        .await
        .unwrap();
    }
}
