//! The tool over an MLflow server: the suite's server (or a skip), an experiment of the
//! test's own, and the tool reading it.

use std::path::Path;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use agent_profiler_executor::history::{RUN_ID_TAG, STATUS_TAG, WORKFLOW_TAG};
use agent_profiler_mlflow::{Metric, MlflowClient, RunInfo, RunTag, now_ms};

use super::output::cli;

/// The suite's MLflow server, or `None` (the test is skipped) outside `scripts/test`; in CI
/// a missing server fails the test.
pub fn tracking_uri(test: &str) -> Option<String> {
    match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: MLFLOW_TRACKING_URI is not set in CI; run the tests with scripts/test"
            );
            eprintln!("{test}: skipped: MLFLOW_TRACKING_URI is not set");
            None
        }
    }
}

/// An experiment name no other test uses.
pub fn unique_experiment(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("cli-{test}-{}-{nanos}", std::process::id())
}

/// The tool reading the experiment `experiment` at `uri` (the store given is not read).
pub fn from_mlflow(uri: &str, experiment: &str, args: &[&str]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--mlflow", uri, "--experiment", experiment]);
    cli(Path::new("/nonexistent/not-read.sqlite3"), &all)
}

/// A run of workflow `research` with store id `store_id` that ended `completed` but whose
/// record (the artifact) never came, as a crashed upload leaves it.
pub fn plant_run_without_record(
    client: &MlflowClient,
    experiment_id: &str,
    store_id: &str,
) -> RunInfo {
    let run = client
        .create_run(experiment_id, Some("research"), &[])
        .unwrap();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    client
        .log_batch(
            &run.run_id,
            &[Metric::new(
                "agent_profiler.started_at",
                started,
                now_ms(),
                0,
            )],
            &[],
            &[
                RunTag::new(RUN_ID_TAG, store_id),
                RunTag::new(WORKFLOW_TAG, "research"),
                RunTag::new("agent_profiler.started_at", started.to_string()),
                RunTag::new(STATUS_TAG, "completed"),
            ],
        )
        .unwrap();
    run
}
