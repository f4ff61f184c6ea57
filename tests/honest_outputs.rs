//! Outputs that neither delay the run nor give it away (issue 13): an MLflow server that
//! refuses connections costs the process at most a moment after the workflow; a password in
//! an LLM provider's URL is used but shown nowhere (console, store, MLflow); the OTLP root
//! span lasts as long as the run; two node ids MLflow would see as one keep two metric keys.
//!
//! The MLflow assertions read back from the real server of `scripts/test`
//! (`MLFLOW_TRACKING_URI`; without it those tests are skipped, in CI they fail).

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/agent_workflow.rs"]
mod agent_workflow;

mod support {
    #[allow(dead_code)] // closed ports and stubs only
    pub mod http_stub;
    #[allow(dead_code)] // the requests it saw
    pub mod llm_provider;
    #[allow(dead_code)] // traces and histories
    pub mod mlflow_api;
    #[allow(dead_code)] // the tracking server's URI only
    pub mod mlflow_server;
    pub mod scratch;
}

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_profiler::executor::WorkflowConfig;
use agent_profiler::llm::SimulatedClient;
use support::{http_stub, scratch};

fn now_unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn research() -> WorkflowConfig {
    WorkflowConfig::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/workflows/research.json"
    ))
    .unwrap()
}

/// The main example with MLflow refusing every connection (nothing listens on the port):
/// the workflow runs as usual, and everything after it (the MLflow and OTLP exporters giving
/// up, the report, the example's own flush of the trace, the exporters' shutdown when the
/// executor is dropped) takes well under the bound of 3 s.
#[test]
fn a_refusing_mlflow_server_costs_the_process_at_most_a_moment() {
    let uri = format!("http://127.0.0.1:{}", http_stub::closed_port());
    let dir = scratch::temp_dir("refusing-mlflow");
    let db = dir.join("runs.sqlite3").display().to_string();
    let env = |name: &str| match name {
        "MLFLOW_TRACKING_URI" => Some(uri.clone()),
        "AGENT_PROFILER_DB" => Some(db.clone()),
        _ => None,
    };
    let mut printed = Vec::new();
    let run = agent_workflow::run(
        research(),
        "refused",
        Arc::new(SimulatedClient::new()),
        &env,
        &mut printed,
    )
    .unwrap();
    // `run` has returned: the executor, its MLflow tracker and its OTLP exporter are gone.
    let after = now_unix_seconds() - run.record.completed_at.unwrap();
    let printed = String::from_utf8(printed).unwrap();
    println!("{printed}\nthe process could end {after:.3} s after the workflow");
    assert!(after >= 0.0);
    assert!(
        after < 3.0,
        "{after:.3} s after the workflow's end (bound: 3 s)"
    );
    assert!(run.mlflow_run_id.is_none());
    assert!(
        run.warnings.iter().any(|w| w.contains("MLflow")),
        "the loss is told: {:?}",
        run.warnings
    );
    assert!(printed.contains("MLflow: no run logged"), "{printed}");
    assert!(printed.contains("trace: not delivered"), "{printed}");
    let _ = std::fs::remove_dir_all(dir);
}
