//! The main example (`cargo run --example agent_workflow`) against a real MLflow server:
//! with `MLFLOW_EXPERIMENT_NAME` set, its run, the run's per-node metrics and its trace are
//! in that experiment, read back through MLflow's REST API, and the example prints the
//! run's URL.
//!
//! The example's own code runs here (its source is included as a module); only the LLM is
//! fixed to the simulated one, whatever keys the environment holds. The server is the one
//! `scripts/test` starts (`MLFLOW_TRACKING_URI`); without it the test is skipped, except in
//! CI, where it fails.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/agent_workflow.rs"]
mod agent_workflow;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_profiler::executor::WorkflowConfig;
use agent_profiler::llm::SimulatedClient;
use serde_json::{Value, json};

/// The nodes of `examples/workflows/research.json`.
const NODES: [&str; 5] = [
    "plan",
    "search_web",
    "search_papers",
    "analyze",
    "write_report",
];

/// How long MLflow may take to show what was sent (traces are written asynchronously).
const WAIT: Duration = Duration::from_secs(30);

fn tracking_uri() -> Option<String> {
    match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri.trim_end_matches('/').to_owned()),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "MLFLOW_TRACKING_URI is not set in CI; scripts/test starts an MLflow server"
            );
            eprintln!("skipped: MLFLOW_TRACKING_URI is not set (scripts/test starts a server)");
            None
        }
    }
}

/// One request to MLflow's REST API over plain HTTP/1.0; the JSON answer, which must come
/// with status 200.
fn api(uri: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let authority = uri.split("://").nth(1).unwrap_or(uri);
    let authority = authority.split('/').next().unwrap();
    let mut stream = TcpStream::connect(authority).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, text) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("");
    assert_eq!(status, "200", "{method} {path}: {head}\n{text}");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// `f()` once it is `Some`, trying for up to [`WAIT`].
fn eventually<T>(what: &str, f: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not there after {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn example_logs_its_run_to_the_named_experiment() {
    let Some(uri) = tracking_uri() else {
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let experiment_name = format!("acceptance-{}-{nanos}", std::process::id());
    let dir = std::env::temp_dir().join(&experiment_name);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("runs.sqlite3").display().to_string();
    let env = |name: &str| match name {
        "MLFLOW_TRACKING_URI" => Some(uri.clone()),
        "MLFLOW_EXPERIMENT_NAME" => Some(experiment_name.clone()),
        "AGENT_PROFILER_DB" => Some(db.clone()),
        _ => None,
    };

    let config = WorkflowConfig::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/workflows/research.json"
    ))
    .unwrap();
    let mut printed = Vec::new();
    let run = agent_workflow::run(
        config,
        "acceptance",
        Arc::new(SimulatedClient::new()),
        &env,
        &mut printed,
    )
    .unwrap();
    let printed = String::from_utf8(printed).unwrap();
    assert!(run.failure.is_none(), "{:?}", run.failure);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);

    // The experiment is the one named, not the example's own.
    let experiment = api(
        &uri,
        "GET",
        &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={experiment_name}"),
        None,
    );
    let experiment_id = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        run.mlflow_experiment_id.as_deref(),
        Some(experiment_id.as_str())
    );

    // Its one run is the example's, finished.
    let found = api(
        &uri,
        "POST",
        "/api/2.0/mlflow/runs/search",
        Some(&json!({ "experiment_ids": [experiment_id] })),
    );
    let runs = found["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{found}");
    let run_id = runs[0]["info"]["run_id"].as_str().unwrap();
    assert_eq!(run.mlflow_run_id.as_deref(), Some(run_id));
    assert_eq!(runs[0]["info"]["status"], "FINISHED", "{found}");

    // The example says where the run is.
    let url = format!("{uri}/#/experiments/{experiment_id}/runs/{run_id}");
    assert!(
        printed.contains(&format!("MLflow run: {url}\n")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "  in experiment `{experiment_name}` (id {experiment_id})\n"
        )),
        "{printed}"
    );
    assert!(printed.contains("trace: "), "{printed}");
    assert!(!printed.contains("not delivered"), "{printed}");

    // One duration per node call, the node's time.
    for node in NODES {
        let key = format!("node_{node}_duration_ms");
        let history = api(
            &uri,
            "GET",
            &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key={key}"),
            None,
        );
        let metrics = history["metrics"].as_array().cloned().unwrap_or_default();
        assert_eq!(metrics.len(), 1, "{key}: {history}");
        let logged = metrics[0]["value"].as_f64().unwrap();
        let timed = run
            .summary
            .nodes
            .iter()
            .find(|n| n.node_id == node)
            .unwrap()
            .total_duration_ms;
        assert!((logged - timed).abs() < 1e-6, "{key}: {logged} vs {timed}");
    }

    // The trace, in the same experiment and listed under the run, with a span per node.
    let search = json!({
        "locations": [{"type": "MLFLOW_EXPERIMENT",
                       "mlflow_experiment": {"experiment_id": experiment_id}}],
        "filter": format!("attributes.run_id = '{run_id}'"),
        "max_results": 10,
    });
    let traces = eventually("the run's trace", || {
        let found = api(&uri, "POST", "/api/3.0/mlflow/traces/search", Some(&search));
        let traces = found["traces"].as_array().cloned().unwrap_or_default();
        (!traces.is_empty()).then_some(traces)
    });
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace_id = traces[0]["trace_id"].as_str().unwrap();
    let trace = api(
        &uri,
        "GET",
        &format!("/api/3.0/mlflow/traces/get?trace_id={trace_id}"),
        None,
    );
    let names: Vec<&str> = trace["trace"]["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&"research"), "{names:?}");
    for node in NODES {
        assert_eq!(
            names.iter().filter(|n| **n == node).count(),
            1,
            "{node} in {names:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
