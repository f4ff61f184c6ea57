//! The critical path of executor runs: the main example's workflow
//! (`examples/workflows/research.json`, simulated LLM) gets the path from its declared
//! structure, with the slack and what-if figures the measured durations imply; a workflow
//! in code with a `join!` gets one inferred from its trace; the printed and stored report,
//! MLflow (tags, metrics) and the OTLP root span carry it. MLflow is the server of
//! `scripts/test` (`MLFLOW_TRACKING_URI`); without it that test says it is skipped, in CI
//! it fails.

mod support {
    #[allow(dead_code)] // requests only
    pub mod http_stub;
    #[allow(dead_code)] // the run's metrics and trace, no attached tracker
    pub mod mlflow_api;
    #[allow(dead_code)] // the tracking server's URI, no private or TLS server
    pub mod mlflow_server;
    pub mod scratch;
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agent_profiler::Summary;
use agent_profiler::executor::{Console, NodeError, WorkflowExecutor, WorkflowRun};
use agent_profiler::llm::SimulatedClient;
use agent_profiler::store::RunStore;
use agent_profiler::trace::Trace;
use serde_json::{Value, json};
use support::{mlflow_api, mlflow_server, scratch};

/// What every figure may differ by from the one computed here, ms (rounding to ns).
const EPSILON_MS: f64 = 1.0;

fn research_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/workflows/research.json")
}

/// The example's executor: the simulated client, the report captured, no OTLP unless given.
fn executor() -> (WorkflowExecutor, Arc<std::sync::Mutex<String>>) {
    let (console, printed) = Console::capture();
    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .console(console)
        .progress(false)
        .no_otlp();
    (executor, printed)
}

/// The duration of node `id`'s one span in `trace`, ms.
fn span_ms(trace: &Trace, id: &str) -> f64 {
    let spans: Vec<_> = trace.spans.iter().filter(|s| s.node_id == id).collect();
    assert_eq!(spans.len(), 1, "{id}: {spans:?}");
    spans[0].duration_ns() as f64 / 1e6
}

fn method(summary: &Summary) -> Value {
    serde_json::to_value(summary.critical_path.as_ref().unwrap().method).unwrap()
}

fn near(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= EPSILON_MS, "{what}: {a} vs {b}");
}

/// The assertions of the issue on a run of the main example.
fn check_research_path(run: &WorkflowRun) {
    let path = run.summary.critical_path.as_ref().expect("a critical path");
    assert_eq!(method(&run.summary), "structure");
    assert_eq!(
        path.path_text(),
        "plan -> search_papers -> analyze -> write_report"
    );
    let trace = run.trace.as_ref().expect("trace mode is on by default");
    let ids = ["plan", "search_papers", "analyze", "write_report"];
    for (call, id) in path.path.iter().zip(ids) {
        assert_eq!(call.node_id, id);
        near(call.duration_ms, span_ms(trace, id), id);
        assert!(call.call.is_some(), "{id}: its span is known");
    }
    let sum: f64 = ids.iter().map(|id| span_ms(trace, id)).sum();
    near(
        path.wall_time_ms,
        sum,
        "wall time: the path's calls end to end",
    );

    assert_eq!(path.off_path.len(), 1, "{:?}", path.off_path);
    let web = &path.off_path[0];
    assert_eq!(web.node_id, "search_web");
    let gap = span_ms(trace, "search_papers") - span_ms(trace, "search_web");
    assert!(web.slack_ms > 0.0, "{web:?}");
    near(web.slack_ms, gap, "search_web's slack");

    let analyze = path.what_if_for("analyze").unwrap();
    assert!(analyze.on_path);
    near(
        analyze.faster_saves_ms,
        span_ms(trace, "analyze") / 2.0,
        "analyze 2x faster",
    );
    let search_web = path.what_if_for("search_web").unwrap();
    assert!(!search_web.on_path);
    assert_eq!(search_web.faster_saves_ms, 0.0);
    // The simulated answer is nearly all LLM wait: a model twice as fast saves about as
    // much as the node twice as fast.
    let model = analyze
        .llm_faster_saves_ms
        .expect("analyze's LLM call is timed");
    near(model, analyze.faster_saves_ms, "analyze's model 2x faster");
    assert_eq!(path.best_speedup().unwrap().node_id, "analyze");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_example_path_comes_from_its_structure() {
    let dir = scratch::temp_dir("critical-path-example");
    let store = RunStore::open(dir.join("runs.sqlite3")).unwrap();
    let (executor, printed) = executor();
    let run = executor
        .store(store.clone())
        .run_workflow_from_config(research_json(), json!({"topic": "agents"}))
        .await
        .unwrap();
    check_research_path(&run);

    // The printed report: the original lines, then the path, then the run's last line.
    let printed = printed.lock().unwrap().clone();
    assert_eq!(printed, format!("\n{}", run.report));
    let table_end = printed
        .find("critical path (")
        .expect("the path is printed");
    assert!(printed[..table_end].starts_with("\nSlowest node: analyze"));
    assert!(printed[table_end..].contains("from the workflow's structure"));
    assert!(
        printed.contains("\n  plan -> search_papers -> analyze -> write_report\n"),
        "{printed}"
    );
    assert!(printed.contains("speeding up analyze saves the most"));
    let last = printed.lines().last().unwrap();
    assert!(
        last.starts_with("workflow `research` completed in"),
        "{last}"
    );
    // The path's lines fit 80 columns (the run's last line holds its id and may not).
    for line in printed[table_end..].lines().filter(|l| *l != last) {
        assert!(line.chars().count() <= 80, "{line}");
    }

    // Stored with the run: the summary keeps it, the report rebuilt from the record too.
    let stored = store.find_run(&run.record.id).unwrap();
    let summary = stored.bottleneck_info.as_ref().unwrap();
    assert_eq!(summary.critical_path, run.summary.critical_path);
    assert_eq!(stored.report().unwrap(), run.report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_trace_the_node_timings_give_the_structure_its_durations() {
    let (executor, _) = executor();
    let run = executor
        .trace(None)
        .run_workflow_from_config(research_json(), json!({"topic": "agents"}))
        .await
        .unwrap();
    assert!(run.trace.is_none());
    let path = run.summary.critical_path.as_ref().expect("a critical path");
    assert_eq!(method(&run.summary), "structure");
    assert_eq!(
        path.path_text(),
        "plan -> search_papers -> analyze -> write_report"
    );
    let total = |id: &str| run.summary.node(id).unwrap().total_duration_ms;
    let web = &path.off_path[0];
    near(
        web.slack_ms,
        total("search_papers") - total("search_web"),
        "slack",
    );
    assert!(path.path.iter().all(|c| c.call.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_workflow_with_a_join_gets_its_path_from_the_trace() {
    let client = SimulatedClient::new()
        .model_latency("slow", Duration::from_millis(120))
        .model_latency("fast", Duration::from_millis(30));
    let (console, printed) = Console::capture();
    let executor = WorkflowExecutor::new(Arc::new(client))
        .console(console)
        .progress(false)
        .no_otlp();
    let run = executor
        .run_fn("joined", json!({}), |ctx, mut state| async move {
            let (quick, slow) = tokio::join!(
                ctx.llm("quick_lookup", "fast", "look it up"),
                ctx.llm("deep_search", "slow", "search deeply"),
            );
            let notes = format!("{}\n{}", quick?, slow?);
            let answer = ctx.llm("answer", "fast", &notes).await?;
            state.insert("answer".into(), json!(answer));
            Ok::<_, NodeError>(state)
        })
        .await
        .unwrap();
    let path = run.summary.critical_path.as_ref().expect("a critical path");
    assert_eq!(method(&run.summary), "trace");
    assert_eq!(path.path_text(), "deep_search -> answer");
    let quick = &path.off_path[0];
    assert_eq!(quick.node_id, "quick_lookup");
    // The two calls of the join start together: the slack is about their difference.
    assert!(quick.slack_ms > 60.0, "{quick:?}");
    assert_eq!(
        path.what_if_for("quick_lookup").unwrap().faster_saves_ms,
        0.0
    );
    assert!(path.what_if_for("deep_search").unwrap().faster_saves_ms > 40.0);
    let printed = printed.lock().unwrap().clone();
    assert!(printed.contains("critical path ("), "{printed}");
    assert!(printed.contains("from the trace"), "{printed}");
    assert!(printed.contains("\n  deep_search -> answer\n"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_and_the_otlp_root_span_carry_the_path_and_the_top_savings() {
    let test = "critical_path_in_mlflow";
    let Some(uri) = mlflow_server::tracking_uri(test) else {
        return;
    };
    let (console, _) = Console::capture();
    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .console(console)
        .progress(false)
        .mlflow(mlflow_api::config(&uri, test));
    let run = executor
        .run_workflow_from_config(research_json(), json!({"topic": "agents"}))
        .await
        .unwrap();
    check_research_path(&run);
    let path = run.summary.critical_path.clone().unwrap();
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
    let (tags, metrics, root) = tokio::task::spawn_blocking(move || {
        let client = mlflow_api::client(&uri);
        let got = client.get_run(&mlflow_run).unwrap();
        let tags: Vec<(String, String)> = got
            .data
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        let metrics: Vec<(String, f64)> = got
            .data
            .metrics
            .iter()
            .map(|m| (m.key.clone(), m.value))
            .collect();
        let (_, trace) = mlflow_api::trace_of_run(&uri, &experiment, &mlflow_run);
        let spans = trace["trace"]["spans"].as_array().cloned().unwrap();
        let root = spans
            .into_iter()
            .find(|s| s["parent_span_id"].as_str().is_none_or(str::is_empty))
            .expect("a root span");
        (tags, metrics, root)
    })
    .await
    .unwrap();

    let tag = |key: &str| {
        tags.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("no tag {key}: {tags:?}"))
    };
    assert_eq!(
        tag("critical_path"),
        "plan -> search_papers -> analyze -> write_report"
    );
    assert_eq!(tag("critical_path.method"), "structure");
    assert_eq!(tag("what_if.best_node"), "analyze");
    let metric = |key: &str| {
        metrics
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no metric {key}: {metrics:?}"))
    };
    near(
        metric("critical_path_ms"),
        path.wall_time_ms,
        "critical_path_ms",
    );
    let analyze = path.what_if_for("analyze").unwrap().faster_saves_ms;
    near(metric("what_if_best_saves_ms"), analyze, "best saving");
    near(
        metric("what_if_analyze_saves_ms"),
        analyze,
        "analyze's saving",
    );
    assert_eq!(metric("what_if_search_web_saves_ms"), 0.0);
    let per_node = metrics.iter().filter(|(k, _)| k.starts_with("what_if_"));
    assert_eq!(per_node.count(), 1 + 5, "{metrics:?}");

    // The root span's attributes, as MLflow keeps them (JSON-encoded values).
    let attributes = &root["attributes"];
    let attribute = |key: &str| -> Value {
        let found = attributes
            .as_array()
            .and_then(|list| list.iter().find(|a| a["key"] == key))
            .map(|a| a["value"].clone())
            .or_else(|| attributes.get(key).cloned())
            .unwrap_or_else(|| panic!("no attribute {key}: {root}"));
        match found {
            Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
            Value::Object(o) => o.into_iter().next().map(|(_, v)| v).unwrap_or_default(),
            other => other,
        }
    };
    assert_eq!(
        attribute("agent_profiler.critical_path"),
        "plan -> search_papers -> analyze -> write_report"
    );
    assert_eq!(attribute("agent_profiler.what_if.best_node"), "analyze");
    let number = |v: Value| v.as_f64().or_else(|| v.as_str()?.parse().ok()).unwrap();
    near(
        number(attribute("agent_profiler.critical_path_ms")),
        path.wall_time_ms,
        "root span's critical_path_ms",
    );
    near(
        number(attribute("agent_profiler.what_if.best_saves_ms")),
        analyze,
        "root span's best saving",
    );
}
