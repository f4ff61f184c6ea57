//! The run history read from MLflow at its edges: a run name another MLflow user chose
//! (line breaks, terminal escapes) printed as one escaped line; the end of a run against
//! a server that stalls the run's artifact, held to the shutdown timeout; a check of an
//! old run reading each run's artifact once, byte for byte as over the store.
//!
//! Needs `MLFLOW_TRACKING_URI` (`scripts/test` starts a server; skipped without it, a
//! failure in CI). Every test uses an experiment of its own; a loopback proxy in front of
//! the server stalls or counts requests.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler_executor::history::{RUN_ARTIFACT, STATUS_TAG};
use agent_profiler_executor::llm::SimulatedClient;
use agent_profiler_executor::store::RunStore;
use agent_profiler_executor::{Console, NodeError, WorkflowExecutor, WorkflowRun};
use agent_profiler_mlflow::{MlflowClient, MlflowConfig};
use serde_json::json;

mod support;

#[allow(dead_code)] // the proxy's side only
#[path = "../../tests/support/http_stub.rs"]
mod http_stub;

use http_stub::{HttpStub, Reply};
use support::mlflow::{from_mlflow, plant_run_without_record, tracking_uri, unique_experiment};
use support::output::{cli, stderr, stdout};
use support::scratch;

/// A proxy passing every request to `uri`, but answering those `stall` picks only after
/// `delay` (with a 500).
fn proxy(uri: &str, stall: fn(&http_stub::Request) -> bool, delay: Duration) -> HttpStub {
    let upstream = http_stub::authority(uri);
    HttpStub::start(move |request| {
        if stall(request) {
            Reply::json(500, r#"{"error_code": "INTERNAL_ERROR"}"#).after(delay)
        } else {
            Reply::forward(&upstream, request)
        }
    })
}

/// An executor keeping its runs in `db` and logging them through `mlflow`.
fn executor(db: &Path, mlflow: MlflowConfig) -> WorkflowExecutor {
    let client = SimulatedClient::new()
        .base_latency(Duration::from_millis(1))
        .per_token_latency(Duration::ZERO);
    let (console, _printed) = Console::capture();
    WorkflowExecutor::new(Arc::new(client))
        .store(RunStore::open(db).unwrap())
        .console(console)
        .progress(false)
        .no_otlp()
        .mlflow(mlflow)
}

/// One run of workflow `research`.
fn research(runtime: &tokio::runtime::Runtime, executor: &WorkflowExecutor) -> WorkflowRun {
    runtime
        .block_on(
            executor.run_fn("research", json!({}), |ctx, mut state| async move {
                let plan = ctx.llm("plan", "gpt-4o-mini", "plan the research").await?;
                state.insert("plan".into(), json!(plan));
                Ok::<_, NodeError>(state)
            }),
        )
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_foreign_run_name_is_one_escaped_line() {
    let test = "hostile-names";
    let Some(uri) = tracking_uri(test) else {
        return;
    };
    let experiment = unique_experiment(test);
    let client = MlflowClient::new(&MlflowConfig::new(&uri).unwrap()).unwrap();
    let experiment_id = client.create_experiment(&experiment).unwrap();
    // Another user's run, named to forge a listing row and turn the terminal red.
    let name = "evil\n0badc0de  research  completed\x1b[31m";
    let foreign = client.create_run(&experiment_id, Some(name), &[]).unwrap();
    let assert_safe = |out: &str| {
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(out.ends_with('\n'), "{out:?}");
        // Escaped, then wrapped at spaces (a line of at most 80 characters).
        assert!(out.contains("(evil\\n0badc0de"), "{out:?}");
        assert!(out.contains("completed\\u{1b}[31m)"), "{out:?}");
        assert!(!out.lines().any(|l| l.ends_with(' ')), "{out:?}");
        assert!(
            !out.lines().any(|l| l.starts_with("0badc0de")),
            "a forged row: {out:?}"
        );
        assert!(out.lines().all(|l| l.chars().count() <= 80), "{out:?}");
    };

    // No run of the executor: the empty listing and the line of the foreign run.
    let listed = from_mlflow(&uri, &experiment, &["runs"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert_safe(&out);
    assert!(out.starts_with("no runs in MLflow experiment"), "{out:?}");
    assert!(out.contains(&foreign.run_id), "{out:?}");

    // With a row (a run whose artifact never came): the table, then the same line.
    plant_run_without_record(
        &client,
        &experiment_id,
        "5ca1ab1e-0000-4000-8000-000000000000",
    );
    let listed = from_mlflow(&uri, &experiment, &["runs"]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    let out = stdout(&listed);
    assert_safe(&out);
    assert!(out.starts_with("id "), "{out:?}");
    assert!(out.contains("CORRUPT"), "{out:?}");
}

#[test]
fn a_stalled_artifact_upload_ends_the_run_within_the_shutdown_timeout() {
    let test = "stalled-artifact";
    let Some(uri) = tracking_uri(test) else {
        return;
    };
    let experiment = unique_experiment(test);
    // The run's artifact is answered 15 s late; everything else goes through.
    let stalled = proxy(
        &uri,
        |r| r.method == "PUT" && r.target.contains(RUN_ARTIFACT),
        Duration::from_secs(15),
    );
    let dir = scratch::temp_dir(&format!("agent-profiler-cli-{test}"));
    let shutdown = Duration::from_secs(2);
    let mlflow = MlflowConfig::new(&stalled.url())
        .unwrap()
        .experiment_name(&experiment)
        .request_timeout(Duration::from_secs(30))
        .shutdown_timeout(shutdown)
        .warnings(false);
    let executor = executor(&dir.join("runs.sqlite3"), mlflow);
    let runtime = runtime();
    // The experiment and the run are made on the first run's start: not timed.
    let first = research(&runtime, &executor);
    assert!(first.mlflow_run_id.is_some(), "{:?}", first.warnings);

    let started = Instant::now();
    let run = research(&runtime, &executor);
    let took = started.elapsed();
    eprintln!("{test}: run with a stalled artifact took {took:?}");
    assert!(run.mlflow_run_id.is_some(), "{:?}", run.warnings);
    // It waited for the upload (retrying), and gave up by the one deadline: the shutdown
    // timeout, not that plus the request timeout or 10 s.
    assert!(took >= Duration::from_millis(1000), "{took:?}");
    assert!(took < shutdown + Duration::from_secs(4), "{took:?}");
    assert!(
        run.warnings
            .iter()
            .any(|w| w.contains(&format!("{RUN_ARTIFACT} not uploaded"))),
        "{:?}",
        run.warnings
    );
    // The rest of the run's end still reached MLflow: its status.
    let client = MlflowClient::new(&MlflowConfig::new(&uri).unwrap()).unwrap();
    let logged = client.get_run(run.mlflow_run_id.as_ref().unwrap()).unwrap();
    assert_eq!(logged.info.status, "FINISHED");
    assert_eq!(logged.data.tag(STATUS_TAG), Some("completed"));
}

#[test]
fn a_check_of_an_old_run_reads_each_artifact_once() {
    let test = "check-old-run";
    let Some(uri) = tracking_uri(test) else {
        return;
    };
    let experiment = unique_experiment(test);
    let dir = scratch::temp_dir(&format!("agent-profiler-cli-{test}"));
    let db = dir.join("runs.sqlite3");
    let mlflow = MlflowConfig::new(&uri)
        .unwrap()
        .experiment_name(&experiment)
        .warnings(false);
    let executor = executor(&db, mlflow);
    let runtime = runtime();
    let runs: Vec<WorkflowRun> = (0..14).map(|_| research(&runtime, &executor)).collect();
    drop(executor);
    for run in &runs {
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    }
    // The third oldest run: 11 runs after it, 2 before.
    let checked = &runs[2].record.id;

    let counted = proxy(&uri, |_| false, Duration::ZERO);
    let args = ["check", checked.as_str(), "--baseline", "5"];
    let over_mlflow = from_mlflow(&counted.url(), &experiment, &args);
    let over_store = cli(&db, &args);
    assert_eq!(
        over_mlflow.status.code(),
        over_store.status.code(),
        "{}",
        stderr(&over_mlflow)
    );
    assert_eq!(stdout(&over_mlflow), stdout(&over_store));
    assert!(stderr(&over_mlflow).is_empty(), "{}", stderr(&over_mlflow));

    let requests = counted.requests();
    let downloads: Vec<&str> = requests
        .iter()
        .filter(|r| r.method == "GET" && r.target.contains(RUN_ARTIFACT))
        .map(|r| r.target.as_str())
        .collect();
    let searches = requests
        .iter()
        .filter(|r| r.target.contains("runs/search"))
        .count();
    eprintln!(
        "{test}: {} artifact downloads, {searches} searches, {} requests",
        downloads.len(),
        requests.len()
    );
    // The run and the two before it, each once; the 11 after it not at all.
    let mut unique = downloads.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), downloads.len(), "{downloads:?}");
    assert_eq!(downloads.len(), 3, "{downloads:?}");
    assert!(searches <= 3, "{searches}");
}
