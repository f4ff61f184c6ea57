//! The tool over an MLflow server: the suite's server (or a skip), an experiment of the
//! test's own, and the tool reading it.

use std::path::Path;
use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

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
