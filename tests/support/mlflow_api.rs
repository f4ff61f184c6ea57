//! Talking to a real MLflow tracking server from the tests: a tracker configuration with
//! fast retries and an experiment of its own, a tracker attached to a new analyzer, a client
//! to read back with, metric histories in step order, and the trace routes of MLflow's REST API (`/api/3.0/mlflow/traces/...`),
//! which the client under test does not wrap.

use std::time::Duration;

use agent_profiler::BottleneckAnalyzer;
use agent_profiler::mlflow::{Metric, MlflowClient, MlflowConfig, MlflowTracker};
use serde_json::{Value, json};

use super::http_stub;
use super::scratch::unique;

/// How long a read-back request may take on a busy machine.
const WAIT: Duration = Duration::from_secs(120);

/// A configuration for `uri` with fast retries, a fresh experiment and no warnings; the run
/// is named after `test`.
pub fn config(uri: &str, test: &str) -> MlflowConfig {
    MlflowConfig::new(uri)
        .unwrap()
        .experiment_name(unique(test))
        .run_name(test)
        .backoff_factor(0.05)
        .backoff_jitter(0.05)
        .max_retries(10)
        .flush_interval(Duration::from_millis(50))
        .warnings(false)
}

/// A tracker started with `config`, exporting every call of a new analyzer.
pub fn attached(config: MlflowConfig) -> (BottleneckAnalyzer, MlflowTracker) {
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MlflowTracker::start(config).unwrap();
    tracker.attach(&analyzer);
    (analyzer, tracker)
}

/// A client for reading back.
pub fn client(uri: &str) -> MlflowClient {
    MlflowClient::new(&MlflowConfig::new(uri).unwrap()).unwrap()
}

/// A client, and a new experiment named after `test` that no other test uses.
pub fn new_experiment(uri: &str, test: &str) -> (MlflowClient, String) {
    let client = client(uri);
    let experiment = client.create_experiment(&unique(test)).unwrap();
    (client, experiment)
}

/// The values of metric `key` of a run, in step order.
pub fn history(client: &MlflowClient, run_id: &str, key: &str) -> Vec<Metric> {
    let mut values = client.get_metric_history(run_id, key).unwrap();
    values.sort_by_key(|m| m.step);
    values
}

/// A REST call that must answer 200 with JSON; the JSON.
fn rest(uri: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string);
    let answer = http_stub::call(
        &http_stub::authority(uri),
        method,
        path,
        body.as_deref(),
        WAIT,
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = answer.text();
    assert_eq!(answer.status, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// The traces of an experiment (`POST /api/3.0/mlflow/traces/search`), optionally filtered.
pub fn search_traces(uri: &str, experiment_id: &str, filter: Option<&str>) -> Vec<Value> {
    let mut body = json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT",
                       "mlflow_experiment": {"experiment_id": experiment_id}}],
        "max_results": 100,
    });
    if let Some(filter) = filter {
        body["filter"] = filter.into();
    }
    let answer = rest(uri, "POST", "/api/3.0/mlflow/traces/search", Some(&body));
    answer["traces"].as_array().cloned().unwrap_or_default()
}

/// The one trace linked to MLflow run `run_id` (an executor run's) in `experiment_id`: its
/// entry in the search (the trace info) and the trace with its spans. Blocks: call it off an
/// async runtime's threads.
pub fn trace_of_run(uri: &str, experiment_id: &str, run_id: &str) -> (Value, Value) {
    let filter = format!("attributes.run_id = '{run_id}'");
    let traces = search_traces(uri, experiment_id, Some(&filter));
    assert_eq!(
        traces.len(),
        1,
        "one trace, linked to run {run_id}: {traces:?}"
    );
    let trace = get_trace(uri, traces[0]["trace_id"].as_str().unwrap());
    (traces[0].clone(), trace)
}

/// A trace with its spans (`GET /api/3.0/mlflow/traces/get`).
pub fn get_trace(uri: &str, trace_id: &str) -> Value {
    rest(
        uri,
        "GET",
        &format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}"),
        None,
    )
}

/// What MLflow's official Python client makes of trace `trace_id`
/// (`mlflow.MlflowClient().get_trace`), as JSON: the trace's `request_preview`,
/// `response_preview`, `request`, `response`, `state`, and its `spans`, each with `name`,
/// `span_type`, `inputs`, `outputs`, `start_ns`, `end_ns`, `status` and `attributes`.
/// `None` (after printing why) when there is no Python with MLflow; in CI that fails.
pub fn python_get_trace(uri: &str, trace_id: &str) -> Option<Value> {
    const SCRIPT: &str = r#"
import json, sys
import mlflow
trace = mlflow.MlflowClient().get_trace(sys.argv[1])
spans = [{
    "name": s.name,
    "span_type": s.span_type,
    "inputs": s.inputs,
    "outputs": s.outputs,
    "start_ns": s.start_time_ns,
    "end_ns": s.end_time_ns,
    "status": str(s.status.status_code),
    "status_message": s.status.description,
    "attributes": s.attributes,
} for s in trace.data.spans]
print(json.dumps({
    "request_preview": trace.info.request_preview,
    "response_preview": trace.info.response_preview,
    "request": trace.data.request,
    "response": trace.data.response,
    "state": str(trace.info.state),
    "spans": spans,
}, default=str))
"#;
    let Some(python) = super::mlflow_server::venv_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Python with MLflow in CI"
        );
        eprintln!("skipped the official client's check: no Python with MLflow");
        return None;
    };
    let output = std::process::Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(trace_id)
        .env("MLFLOW_TRACKING_URI", uri)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    Some(serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}
