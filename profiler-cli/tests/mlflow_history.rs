//! The run history read from a real MLflow server: two executors with two run stores (two
//! machines, as far as the history can tell) log runs of one workflow to one experiment;
//! the tool reading MLflow lists the runs of both, shows each as the store that holds it
//! shows it, compares a run of one store with a run of the other, and trends and checks
//! over both, byte for byte as the tool over one store holding all of them. Then what MLflow
//! may also hold: a run the executor did not make, a run whose artifact is missing, one run
//! id logged twice, and a server that is not there.
//!
//! Needs `MLFLOW_TRACKING_URI` (`scripts/test` starts a server; skipped without it, a
//! failure in CI). Every test uses an experiment of its own.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_profiler_executor::history::{RUN_ARTIFACT, RUN_ID_TAG, WORKFLOW_TAG};
use agent_profiler_executor::llm::SimulatedClient;
use agent_profiler_executor::store::RunStore;
use agent_profiler_executor::{Console, NodeError, WorkflowExecutor, WorkflowRun};
use agent_profiler_mlflow::{Metric, MlflowClient, MlflowConfig, RunTag, SearchRuns, now_ms};
use serde_json::{Value, json};

mod support;

use support::mlflow::{from_mlflow, plant_run_without_record, tracking_uri, unique_experiment};
use support::output::{cli, stderr, stdout};
use support::scratch;

/// Exit code 0 and nothing on stderr; stdout.
fn ok(out: Output) -> String {
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// An executor keeping its runs in `db` and logging them to `experiment`.
fn executor(
    db: &Path,
    uri: &str,
    experiment: &str,
    base_ms: u64,
    prompts: bool,
) -> WorkflowExecutor {
    let client = SimulatedClient::new()
        .base_latency(Duration::from_millis(base_ms))
        .per_token_latency(Duration::ZERO);
    let (console, _printed) = Console::capture();
    let mlflow = MlflowConfig::new(uri)
        .unwrap()
        .experiment_name(experiment)
        .warnings(false);
    WorkflowExecutor::new(Arc::new(client))
        .store(RunStore::open(db).unwrap())
        .console(console)
        .progress(false)
        .no_otlp()
        .store_prompts(prompts)
        .mlflow(mlflow)
}

/// One run of workflow `research`: a plan, then a draft.
fn research(
    runtime: &tokio::runtime::Runtime,
    executor: &WorkflowExecutor,
    n: usize,
) -> WorkflowRun {
    let run = runtime
        .block_on(executor.run_fn(
            "research",
            json!({"topic": format!("topic {n}")}),
            |ctx, mut state| async move {
                let plan = ctx.llm("plan", "gpt-4o-mini", "plan the research").await?;
                let draft = ctx.llm("draft", "gpt-4o-mini", &plan).await?;
                state.insert("draft".into(), json!(draft));
                Ok::<_, NodeError>(state)
            },
        ))
        .unwrap();
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    assert!(run.mlflow_run_id.is_some());
    run
}

/// A store holding every run of `stores`, as one machine would have had them.
fn merged(into: &Path, stores: &[&Path]) {
    let all = RunStore::open(into).unwrap();
    for db in stores {
        let store = RunStore::open_existing(db).unwrap();
        for run in store.list_runs(None, 1000).unwrap() {
            all.save_run(&run).unwrap();
            for state in store.states(&run.id).unwrap() {
                all.save_state(&state).unwrap();
            }
        }
    }
}

struct Fixture {
    uri: String,
    experiment: String,
    db_a: PathBuf,
    db_b: PathBuf,
    db_all: PathBuf,
    runs_a: Vec<WorkflowRun>,
    runs_b: Vec<WorkflowRun>,
}

/// Three runs on machine A (prompts allowed out), three on machine B (not), interleaved.
fn fixture(test: &str) -> Option<Fixture> {
    let uri = tracking_uri(test)?;
    let experiment = unique_experiment(test);
    let dir = scratch::temp_dir(&format!("agent-profiler-cli-{test}"));
    let (db_a, db_b, db_all) = (
        dir.join("a/runs.sqlite3"),
        dir.join("b/runs.sqlite3"),
        dir.join("all/runs.sqlite3"),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let a = executor(&db_a, &uri, &experiment, 2, true);
    let b = executor(&db_b, &uri, &experiment, 4, false);
    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
    for n in 0..3 {
        runs_a.push(research(&runtime, &a, 2 * n));
        runs_b.push(research(&runtime, &b, 2 * n + 1));
    }
    drop((a, b));
    merged(&db_all, &[&db_a, &db_b]);
    Some(Fixture {
        uri,
        experiment,
        db_a,
        db_b,
        db_all,
        runs_a,
        runs_b,
    })
}

#[test]
fn runs_of_two_stores_read_from_mlflow_as_from_one_store() {
    let Some(f) = fixture("mlflow-history") else {
        return;
    };
    let mlflow = |args: &[&str]| ok(from_mlflow(&f.uri, &f.experiment, args));
    let all = |args: &[&str]| ok(cli(&f.db_all, args));

    // The listing: every run of both stores, as one store holding them all lists them.
    let listed = mlflow(&["runs"]);
    assert_eq!(listed, all(&["runs"]));
    for run in f.runs_a.iter().chain(&f.runs_b) {
        assert!(listed.contains(&run.record.id[..8]), "{listed}");
    }
    assert_eq!(listed.lines().count(), 1 + 6, "{listed}");
    assert_eq!(
        mlflow(&["runs", "--workflow", "research", "-n", "4"]),
        all(&["runs", "--workflow", "research", "-n", "4"])
    );
    let json_mlflow: Value = serde_json::from_str(&mlflow(&["runs", "--json"])).unwrap();
    let json_all: Value = serde_json::from_str(&all(&["runs", "--json"])).unwrap();
    assert_eq!(
        json_mlflow["runs"], json_all["runs"],
        "every field of every run"
    );

    // Each run shown as the store that holds it shows it, by its id or its first 8
    // characters.
    for (db, runs) in [(&f.db_a, &f.runs_a), (&f.db_b, &f.runs_b)] {
        for run in runs {
            let id = &run.record.id;
            let shown = mlflow(&["show", &id[..8]]);
            assert_eq!(shown, ok(cli(db, &["show", id])));
            assert_eq!(shown, run.report);
        }
    }
    // Machine A let its prompts out: the whole JSON is the store's. Machine B did not: the
    // inputs (and the state keys that hold them) stayed home, the rest is the store's.
    let a0 = &f.runs_a[0].record.id;
    assert_eq!(
        mlflow(&["show", a0, "--json"]),
        ok(cli(&f.db_a, &["show", a0, "--json"]))
    );
    let b0 = &f.runs_b[0].record.id;
    let mut from_b: Value = serde_json::from_str(&mlflow(&["show", b0, "--json"])).unwrap();
    let store_b: Value = serde_json::from_str(&ok(cli(&f.db_b, &["show", b0, "--json"]))).unwrap();
    assert_eq!(from_b["run"]["inputs"], Value::Null);
    assert_eq!(store_b["run"]["inputs"], json!({"topic": "topic 1"}));
    for state in from_b["states"].as_array().unwrap() {
        assert!(state["state"].get("topic").is_none(), "{state}");
    }
    for key in ["nodes", "time_splits", "report"] {
        assert_eq!(from_b[key], store_b[key], "{key}");
    }
    from_b["run"]["inputs"] = store_b["run"]["inputs"].clone();
    assert_eq!(from_b["run"], store_b["run"]);

    // A run of store A against a run of store B, and within store A.
    let b2 = &f.runs_b[2].record.id;
    assert_eq!(mlflow(&["compare", a0, b2]), all(&["compare", a0, b2]));
    assert_eq!(
        mlflow(&["compare", a0, b2, "--json"]),
        all(&["compare", a0, b2, "--json"])
    );
    let a2 = &f.runs_a[2].record.id;
    assert_eq!(
        mlflow(&["compare", &a0[..8], &a2[..8]]),
        ok(cli(&f.db_a, &["compare", a0, a2]))
    );

    // Trends and the gate over the runs of both stores.
    for args in [
        &["trend", "research"][..],
        &["trend", "research", "--json"],
        &["trend", "research", "-n", "3"],
    ] {
        assert_eq!(mlflow(args), all(args), "{args:?}");
    }
    let trend = mlflow(&["trend", "research"]);
    assert!(trend.starts_with("`research`: 6 finished runs"), "{trend}");
    for args in [
        &["check"][..],
        &["check", "--min-runs", "2", "--baseline", "4"],
        &["check", b2, "--format", "markdown", "--min-runs", "3"],
        &["check", a2, "--max-duration-ms", "0.5"],
    ] {
        let (m, s) = (
            from_mlflow(&f.uri, &f.experiment, args),
            cli(&f.db_all, args),
        );
        assert_eq!(stdout(&m), stdout(&s), "{args:?}");
        assert_eq!(m.status.code(), s.status.code(), "{args:?}");
        assert_eq!(stderr(&m), "", "{args:?}");
    }
    let over_budget = from_mlflow(
        &f.uri,
        &f.experiment,
        &["check", a2, "--max-duration-ms", "0.5"],
    );
    assert_eq!(over_budget.status.code(), Some(1), "a budget broken");
    assert!(stdout(&over_budget).contains("EXCEEDED"));
}

/// The MLflow runs of `experiment` (newest first).
fn mlflow_runs(client: &MlflowClient, experiment_id: &str) -> Vec<agent_profiler_mlflow::Run> {
    client
        .search_runs(&SearchRuns::new([experiment_id]).max_results(100))
        .unwrap()
        .runs
}

#[test]
fn foreign_corrupt_and_doubled_runs_and_an_absent_server() {
    let Some(f) = fixture("mlflow-odd-runs") else {
        return;
    };
    let client = MlflowClient::new(&MlflowConfig::new(&f.uri).unwrap()).unwrap();
    let experiment_id = client
        .get_experiment_by_name(&f.experiment)
        .unwrap()
        .unwrap()
        .experiment_id;
    let originals = mlflow_runs(&client, &experiment_id);
    assert_eq!(originals.len(), 6);
    let trend_before = ok(from_mlflow(&f.uri, &f.experiment, &["trend", "research"]));

    // A run someone logged by hand: no agent_profiler tags.
    let foreign = client
        .create_run(&experiment_id, Some("by-hand"), &[])
        .unwrap();
    // A run that claims to be the executor's and ended, but whose artifact never came.
    let lost_id = "0badc0de-0000-4000-8000-000000000000";
    let lost = plant_run_without_record(&client, &experiment_id, lost_id);
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // A run still running somewhere: its start logged, its end not yet.
    let live = client
        .create_run(&experiment_id, Some("research"), &[])
        .unwrap();
    let live_id = "11ve0000-0000-4000-8000-000000000000";
    client
        .log_batch(
            &live.run_id,
            &[Metric::new(
                "agent_profiler.started_at",
                started + 1.0,
                now_ms(),
                0,
            )],
            &[],
            &[
                RunTag::new(RUN_ID_TAG, live_id),
                RunTag::new(WORKFLOW_TAG, "research"),
                RunTag::new("agent_profiler.started_at", (started + 1.0).to_string()),
            ],
        )
        .unwrap();
    // Run a0 logged a second time (a copied store): same store id, another MLflow run.
    let a0 = &f.runs_a[0];
    let original = originals
        .iter()
        .find(|r| r.data.tag(RUN_ID_TAG) == Some(a0.record.id.as_str()))
        .unwrap();
    let artifact = client
        .download_artifact(&original.info, RUN_ARTIFACT)
        .unwrap();
    let copy = client
        .create_run(&experiment_id, Some("research"), &[])
        .unwrap();
    client
        .log_batch(&copy.run_id, &[], &[], &original.data.tags)
        .unwrap();
    client
        .log_artifact(&copy, RUN_ARTIFACT, &artifact, "application/json")
        .unwrap();

    // The listing names what it left out and what is wrong; nothing fails.
    let listed = ok(from_mlflow(&f.uri, &f.experiment, &["runs", "-n", "50"]));
    assert!(
        listed.contains(&format!(
            "MLflow run {} (by-hand): not made by",
            foreign.run_id
        )),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("{}  research  completed", &lost_id[..8]))
            && listed.contains("CORRUPT")
            && listed.contains(&format!(
                "run {lost_id}: corrupt MLflow run (bad or missing"
            )),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("run {} is in MLflow more than once", a0.record.id)),
        "{listed}"
    );

    assert!(
        listed.contains(&format!("{}  research  running ", &live_id[..8])),
        "{listed}"
    );
    let shown = ok(from_mlflow(&f.uri, &f.experiment, &["show", &live_id[..8]]));
    assert_eq!(
        shown,
        format!(
            "run {live_id}\nof workflow `research`: running, no report stored\n\
             (the run has not finished, or its process ended early)\n\
             its node states are logged to MLflow when the run ends\n"
        )
    );

    // The run without its artifact: a clear error naming it, exit 1.
    let shown = from_mlflow(&f.uri, &f.experiment, &["show", &lost_id[..8]]);
    assert_eq!(shown.status.code(), Some(1), "{}", stderr(&shown));
    let err = stderr(&shown);
    assert!(
        err.starts_with(&format!("error: run {lost_id} (mlflow:{})", lost.run_id))
            && err.contains(&format!("has no {RUN_ARTIFACT}")),
        "{err}"
    );
    // ... and left out of the trend, with a warning: the trend of the others is as before.
    let trend = from_mlflow(&f.uri, &f.experiment, &["trend", "research"]);
    assert_eq!(trend.status.code(), Some(0));
    // ... and a0 logged twice is counted once.
    assert_eq!(stdout(&trend), trend_before);
    let warned = stderr(&trend);
    assert!(
        warned.starts_with(&format!("warning: run {lost_id} (mlflow:{})", lost.run_id))
            && warned.contains("skipped")
            && warned.contains(&format!("warning: run {} (mlflow:", a0.record.id))
            && warned.contains("counted once"),
        "{warned}"
    );

    // One store id, two MLflow runs: the id is ambiguous, each MLflow run has a name.
    let doubled = from_mlflow(&f.uri, &f.experiment, &["show", &a0.record.id]);
    assert_eq!(doubled.status.code(), Some(1));
    let err = stderr(&doubled);
    assert!(
        err.contains("is ambiguous: 2 runs")
            && err.contains(&format!("mlflow:{}", copy.run_id))
            && err.contains(&format!("mlflow:{}", original.info.run_id)),
        "{err}"
    );
    for mlflow_id in [&copy.run_id, &original.info.run_id] {
        let name = format!("mlflow:{mlflow_id}");
        assert_eq!(
            ok(from_mlflow(&f.uri, &f.experiment, &["show", &name])),
            ok(cli(&f.db_a, &["show", &a0.record.id]))
        );
    }
    let name = format!("mlflow:{}", foreign.run_id);
    let shown = from_mlflow(&f.uri, &f.experiment, &["show", &name]);
    assert!(
        stderr(&shown).contains("not made by agent-profiler's executor"),
        "{}",
        stderr(&shown)
    );

    // Nothing listens there: a clear error, exit 2, at once.
    let started = std::time::Instant::now();
    let absent = from_mlflow("http://127.0.0.1:9", &f.experiment, &["runs"]);
    assert_eq!(absent.status.code(), Some(2), "{}", stderr(&absent));
    assert!(
        stderr(&absent).starts_with("error: cannot reach the MLflow server at http://127.0.0.1:9"),
        "{}",
        stderr(&absent)
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // An experiment that does not exist.
    let missing = from_mlflow(&f.uri, "no-such-experiment-here", &["runs"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no MLflow experiment `no-such-experiment-here`"),
        "{}",
        stderr(&missing)
    );
    let _ = (&f.db_b, &f.runs_b);
}
