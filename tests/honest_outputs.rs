//! Outputs that neither delay the run nor give it away: an MLflow server that refuses
//! connections costs the process at most a moment after the workflow, a silent one the
//! exporters' deadlines; a password in an LLM provider's URL is used but shown nowhere
//! (console, store, MLflow); the OTLP root span lasts as long as the run; two node ids MLflow
//! would see as one keep two metric keys.
//!
//! The MLflow assertions read back from the real server of `scripts/test`
//! (`MLFLOW_TRACKING_URI`; without it those tests are skipped, in CI they fail).

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/agent_workflow.rs"]
mod agent_workflow;

mod support {
    #[allow(dead_code)] // a slow server only
    pub mod fault_proxy;
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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_profiler::executor::{
    Console, WorkflowConfig, WorkflowError, WorkflowExecutor, WorkflowRun,
};
use agent_profiler::llm::{OpenAiClient, SimulatedClient};
use agent_profiler::mlflow::MlflowClient;
use agent_profiler::store::RunStore;
use serde_json::{Value, json};
use support::fault_proxy::{Fault, FaultProxy};
use support::llm_provider::LlmProvider;
use support::{http_stub, mlflow_api, mlflow_server, scratch};

/// Longer than any deadline of the exporters: a server this slow is, to them, silent.
const SILENCE: Duration = Duration::from_secs(120);

/// How long MLflow may take to show a trace (they are written asynchronously).
const WAIT: Duration = Duration::from_secs(60);

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

/// The main example's `run` on the simulated LLM, with MLflow at `uri` and a run store of its
/// own: the run, what it printed, and how long after the workflow's end `run` returned, in
/// seconds (when it returns, the executor and its exporters are gone).
fn example_with_mlflow_at(uri: &str, topic: &str) -> (WorkflowRun, String, f64) {
    let dir = scratch::temp_dir(topic);
    let db = dir.join("runs.sqlite3").display().to_string();
    let env = |name: &str| match name {
        "MLFLOW_TRACKING_URI" => Some(uri.to_owned()),
        "AGENT_PROFILER_DB" => Some(db.clone()),
        _ => None,
    };
    let mut printed = Vec::new();
    let client = Arc::new(SimulatedClient::new());
    let run = agent_workflow::run(research(), topic, client, &env, &mut printed).unwrap();
    let after = now_unix_seconds() - run.record.completed_at.unwrap();
    let printed = String::from_utf8(printed).unwrap();
    println!("{printed}\nthe process could end {after:.3} s after the workflow");
    let _ = std::fs::remove_dir_all(dir);
    (run, printed, after)
}

/// The main example with MLflow refusing every connection (nothing listens on the port):
/// the workflow runs as usual, and everything after it (the MLflow and OTLP exporters giving
/// up, the report, the example's own shutdown of the trace exporter) takes well under 3 s.
#[test]
fn a_refusing_mlflow_server_costs_the_process_at_most_a_moment() {
    let uri = format!("http://127.0.0.1:{}", http_stub::closed_port());
    let (run, printed, after) = example_with_mlflow_at(&uri, "refused");
    assert!(after >= 0.0);
    assert!(
        after < 3.0,
        "{after:.3} s after the workflow's end (bound: 3 s)"
    );
    assert!(run.mlflow_run_id.is_none());
    // One warning tells the loss, and why.
    let mlflow: Vec<&String> = run
        .warnings
        .iter()
        .filter(|w| w.contains("MLflow"))
        .collect();
    assert_eq!(mlflow.len(), 1, "{:?}", run.warnings);
    assert!(mlflow[0].contains("refused"), "{}", mlflow[0]);
    assert!(printed.contains("MLflow: no run logged"), "{printed}");
    assert!(printed.contains("trace: not delivered"), "{printed}");
}

/// An MLflow server that accepts connections and never answers cannot be told from a slow
/// one, so each exporter gives it its shutdown deadline and not a moment more. The workflow
/// runs at its own pace (nothing waits for the server before or during the run), the report
/// is printed as the run ends, and the loss is told.
#[test]
fn a_silent_mlflow_server_costs_the_shutdown_deadlines_and_no_more() {
    let silent = http_stub::HttpStub::start(|_| {
        http_stub::Reply::new(200, "application/json", "{}").after(SILENCE)
    });
    let (run, _printed, after) = example_with_mlflow_at(&silent.url(), "silence");
    let workflow = run.record.duration_ms.unwrap() / 1e3;
    // The simulated research workflow takes about 1.2 s: the server's silence did not slow
    // it down.
    assert!(workflow < 5.0, "the workflow took {workflow:.3} s");
    // Everything after the workflow, one deadline after the other, and none of them the
    // server's 120 s: the wait for the MLflow run to exist (5 s), the MLflow exporter's
    // shutdown timeout (10 s by default), the trace exporter's (10 s), and the request in
    // flight when each began. About 29 s measured on an idle machine.
    assert!(after >= 0.0);
    assert!(after < 45.0, "{after:.3} s after the workflow");
    assert!(run.mlflow_run_id.is_none());
    assert!(
        run.warnings.iter().any(|w| w.contains("has not answered")),
        "the loss is told: {:?}",
        run.warnings
    );
}

/// Every file of `dir` (the store, its journal or WAL) and its text, for grepping.
fn files_in(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

/// Everything of an MLflow run as text: its params, tags and metric keys, and the content
/// of each of its artifacts.
fn mlflow_run_text(client: &MlflowClient, run_id: &str) -> String {
    let run = client.get_run(run_id).unwrap();
    let mut text = format!("{run:?}\n");
    let mut dirs = vec![None::<String>];
    while let Some(dir) = dirs.pop() {
        for file in client.list_artifacts(&run.info, dir.as_deref()).unwrap() {
            if file.is_dir {
                dirs.push(Some(file.path.clone()));
            } else {
                let bytes = client.download_artifact(&run.info, &file.path).unwrap();
                text.push_str(&format!(
                    "\n{}: {}",
                    file.path,
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
    text
}

/// A password in the LLM provider's base URL (`http://user:PASSWORD@host/v1`) is used (the
/// provider gets it, as basic authentication) and shown nowhere: not on the console
/// (progress, errors, warnings, the report), not in the run store (any table: the files are
/// searched), not in the MLflow run (params, tags, metrics, artifacts) nor in its trace,
/// also when the provider quotes the credentials back in an error.
#[test]
fn a_password_in_the_llm_url_is_used_but_never_shown() {
    let test = "a_password_in_the_llm_url_is_used_but_never_shown";
    let password = format!("Pw{}", scratch::unique("planted").replace('-', "x"));
    let provider = LlmProvider::start();
    let base = provider
        .base_url()
        .replace("http://", &format!("http://agent:{password}@"));
    let client = OpenAiClient::new(&base, None).unwrap();
    let dir = scratch::temp_dir(test);
    let store = RunStore::open(dir.join("runs.sqlite3")).unwrap();
    let (console, captured) = Console::capture();
    let mut executor = WorkflowExecutor::new(Arc::new(client))
        .store(store.clone())
        .console(console);
    let uri = mlflow_server::tracking_uri(test);
    if let Some(uri) = &uri {
        executor = executor.mlflow(mlflow_api::config(uri, test));
    }
    // The second node's provider answers 401 quoting the Authorization header back.
    let config = WorkflowConfig::from_json_str(
        r#"{"name": "secret-url", "steps": [
            {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}",
             "output_key": "plan", "max_tokens": 40},
            {"id": "check", "model": "echo-auth", "prompt": "Check {plan}",
             "output_key": "checked", "max_tokens": 40}
        ]}"#,
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ran = runtime.block_on(executor.run_config(&config, json!({"topic": "secrets"})));
    let run = match ran {
        Err(WorkflowError::Failed(run)) => *run,
        other => panic!("the workflow must fail at `check`: {other:?}"),
    };
    // Used: the provider got the credentials.
    let basic = provider.auth_headers();
    assert_eq!(basic.len(), 2, "{basic:?}");
    assert!(basic.iter().all(|h| h.starts_with("Basic ")), "{basic:?}");
    let error = run.record.error_message.clone().unwrap();
    assert!(error.contains("401"), "{error}");

    let mut places: Vec<(String, String)> = Vec::new();
    places.push(("console".into(), captured.lock().unwrap().clone()));
    places.push(("run".into(), format!("{run:?}")));
    places.push(("report".into(), run.report.clone()));
    places.push(("warnings".into(), run.warnings.join("\n")));
    places.extend(files_in(&dir));
    if let Some(uri) = &uri {
        let run_id = run.mlflow_run_id.clone().expect("an MLflow run");
        let experiment = run.mlflow_experiment_id.clone().unwrap();
        let mlflow = mlflow_api::client(uri);
        places.push(("MLflow run".into(), mlflow_run_text(&mlflow, &run_id)));
        let exporter = executor.otlp_exporter().expect("traces go to MLflow");
        assert!(exporter.flush(WAIT), "{}", exporter.stats());
        let deadline = Instant::now() + WAIT;
        let traces = loop {
            let traces = mlflow_api::search_traces(uri, &experiment, None);
            if !traces.is_empty() || Instant::now() > deadline {
                break traces;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(traces.len(), 1, "{traces:?}");
        let trace_id = traces[0]["trace_id"].as_str().unwrap();
        let trace: Value = mlflow_api::get_trace(uri, trace_id);
        assert!(
            trace.to_string().contains("401"),
            "the failure is in the trace"
        );
        places.push(("MLflow trace".into(), format!("{traces:?}\n{trace}")));
    }
    let mut forms = vec![password.clone()];
    forms.extend(
        basic
            .iter()
            .filter_map(|h| h.strip_prefix("Basic "))
            .map(str::to_owned),
    );
    for (place, text) in &places {
        assert!(
            !text.is_empty() || place.ends_with("warnings"),
            "{place} is empty"
        );
        for form in &forms {
            assert!(
                !text.contains(form.as_str()),
                "the password shows in {place}:\n{text}"
            );
        }
    }
    // What is shown instead.
    let console = &places[0].1;
    assert!(console.contains("http://***@127.0.0.1"), "{console}");
    println!(
        "searched {} places ({} store files) for the password",
        places.len(),
        places.len() - 4 - usize::from(uri.is_some()) * 2
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A JSON number, or a number in a string (how MLflow writes 64-bit integers).
fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The root span of a run's trace starts and ends with the run: a run that fails after
/// 40 ms has a root span of 40 ms in MLflow, not one that also holds the exporters' work
/// at the end of the run (or the sinks' at its start).
#[test]
fn the_root_span_lasts_as_long_as_the_run() {
    let test = "the_root_span_lasts_as_long_as_the_run";
    let Some(uri) = mlflow_server::tracking_uri(test) else {
        return;
    };
    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .console(Console::Silent)
        .mlflow(mlflow_api::config(&uri, test));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ran = runtime.block_on(executor.run_fn("fails-fast", json!({}), |_, _| async {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Err::<serde_json::Map<String, Value>, _>("gave up")
    }));
    let Err(WorkflowError::Failed(run)) = ran else {
        panic!("the run must fail: {ran:?}");
    };
    let run_ms = run.record.duration_ms.unwrap();
    assert!(run_ms >= 40.0, "{run_ms}");
    let exporter = executor.otlp_exporter().expect("traces go to MLflow");
    assert!(exporter.flush(WAIT), "{}", exporter.stats());
    let experiment = run.mlflow_experiment_id.clone().expect("an MLflow run");
    let deadline = Instant::now() + WAIT;
    let traces = loop {
        let traces = mlflow_api::search_traces(&uri, &experiment, None);
        if !traces.is_empty() || Instant::now() > deadline {
            break traces;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(traces.len(), 1, "{traces:?}");
    let trace = mlflow_api::get_trace(&uri, traces[0]["trace_id"].as_str().unwrap());
    let spans = trace["trace"]["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| s["parent_span_id"].as_str().is_none_or(str::is_empty))
        .unwrap();
    let root_ms =
        (number(&root["end_time_unix_nano"]) - number(&root["start_time_unix_nano"])) as f64 / 1e6;
    println!("run {run_ms:.1} ms, root span {root_ms:.1} ms");
    assert!(
        (root_ms - run_ms).abs() < 5.0,
        "the root span lasts {root_ms:.1} ms, the run {run_ms:.1} ms"
    );
}

/// Node ids `a/../b` and `a/__/b` both sanitise to the MLflow key `node_a/__/b_...`
/// (MLflow refuses `..` path segments): their metrics must not merge. The first keeps the
/// key, the second gets one of its own, and both series are complete on the real server.
#[test]
fn two_node_ids_that_sanitise_alike_keep_two_metric_keys() {
    let test = "two_node_ids_that_sanitise_alike_keep_two_metric_keys";
    let Some(uri) = mlflow_server::tracking_uri(test) else {
        return;
    };
    let warned: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let sink = {
        let warned = warned.clone();
        move |w: &str| warned.lock().unwrap().push(w.to_owned())
    };
    let (analyzer, tracker) = mlflow_api::attached(
        mlflow_api::config(&uri, test)
            .warnings(true)
            .on_warning(sink),
    );
    let run = tracker.wait_for_run(WAIT).expect("run created");
    for i in 0..3 {
        analyzer.record_node("a/../b", 1.0 + i as f64).unwrap();
        analyzer.record_node("a/__/b", 100.0 + i as f64).unwrap();
    }
    assert!(tracker.flush(WAIT), "{}", tracker.stats());
    let stats = tracker.finish(agent_profiler::mlflow::RunStatus::Finished);
    assert_eq!(stats.sent_metrics, 6, "{stats}");
    let client = mlflow_api::client(&uri);
    let data = client.get_run(&run.run_id).unwrap().data;
    let mut keys: Vec<&str> = data
        .metrics
        .iter()
        .map(|m| m.key.as_str())
        .filter(|k| k.starts_with("node_a/__/b"))
        .collect();
    keys.sort();
    println!("keys: {keys:?}");
    assert_eq!(keys.len(), 2, "two series: {keys:?}");
    for key in keys {
        let values: Vec<f64> = mlflow_api::history(&client, &run.run_id, key)
            .iter()
            .map(|m| m.value)
            .collect();
        assert_eq!(values.len(), 3, "{key}: {values:?}");
        let small = values.iter().all(|v| *v < 10.0);
        let large = values.iter().all(|v| *v >= 100.0);
        assert!(small || large, "{key} mixes two nodes: {values:?}");
    }
    let warned = warned.lock().unwrap();
    assert!(
        warned.iter().any(|w| w.contains("would share MLflow key")),
        "{warned:?}"
    );
}

#[agent_profiler::profile_node("slow_step")]
async fn slow_step() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

/// A slow but alive MLflow server (every answer 300 ms late) gets the configured shutdown
/// timeout and loses nothing; the report is printed as soon as the workflow ends, not after
/// the MLflow run is finished.
#[test]
fn a_slow_mlflow_server_gets_its_deadline_and_the_report_does_not_wait() {
    let test = "a_slow_mlflow_server_gets_its_deadline";
    let Some(uri) = mlflow_server::tracking_uri(test) else {
        return;
    };
    let proxy = FaultProxy::start(&uri, Fault::Delay(Duration::from_millis(300)));
    let (console, captured) = Console::capture();
    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .console(console)
        .no_otlp()
        .mlflow(mlflow_api::config(&proxy.uri(), test).shutdown_timeout(Duration::from_secs(20)));
    // When the report shows on the console.
    let printed_at = {
        let captured = captured.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if captured.lock().unwrap().contains("Slowest node") {
                    return Some(Instant::now());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let run = runtime
        .block_on(
            executor.run_fn("slow-mlflow", json!({}), |_, state| async move {
                slow_step().await;
                Ok::<_, String>(state)
            }),
        )
        .unwrap();
    let returned_at = Instant::now();
    let printed_at = printed_at.join().unwrap().expect("the report is printed");
    let ahead = returned_at.duration_since(printed_at);
    println!("the report came {ahead:?} before the run returned");
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    // Finishing takes a few slow requests (metrics, the report, the status): the report
    // does not wait for them.
    assert!(ahead >= Duration::from_millis(500), "{ahead:?}");
    let run_id = run.mlflow_run_id.expect("the run was created");
    let client = mlflow_api::client(&uri);
    let mlflow_run = client.get_run(&run_id).unwrap();
    assert_eq!(mlflow_run.info.status, "FINISHED");
    assert_eq!(
        mlflow_api::history(&client, &run_id, "node_slow_step_duration_ms").len(),
        1
    );
}
