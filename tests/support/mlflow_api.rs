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

/// A trace with its spans (`GET /api/3.0/mlflow/traces/get`).
pub fn get_trace(uri: &str, trace_id: &str) -> Value {
    rest(
        uri,
        "GET",
        &format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}"),
        None,
    )
}
