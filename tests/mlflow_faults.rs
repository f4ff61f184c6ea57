//! MLflow export when things go wrong: the server down from the start, stopped mid-run,
//! answering 503 / 429 to a share of requests, slow, refusing one value of a batch. In each
//! case the workflow is unaffected, memory stays bounded, and every per-call metric is
//! either delivered or counted.
//!
//! Most need the server of `scripts/test` (`MLFLOW_TRACKING_URI`) or the `mlflow` program to
//! start a private one; without them they say they are skipped (in CI they fail).

mod support {
    #[allow(dead_code)] // no proxy that quotes the credentials back
    pub mod fault_proxy;
    #[allow(dead_code)] // what the fault proxy and the servers build on, and `closed_port`
    pub mod http_stub;
    #[allow(dead_code)] // no trace routes
    pub mod mlflow_api;
    pub mod mlflow_server;
    pub mod scratch;
}

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_profiler::cost::Usage;
use agent_profiler::mlflow::{ExportStats, MlflowConfig, MlflowTracker, RunStatus};
use agent_profiler::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerScope, profile_node};
use support::fault_proxy::{Fault, FaultProxy};
use support::mlflow_server::{PrivateServer, TlsServer, tracking_uri, venv_python};
use support::{http_stub, mlflow_api};

const WAIT: Duration = Duration::from_secs(120);

#[profile_node("work")]
fn work(i: u64) -> u64 {
    std::hint::black_box(i.wrapping_mul(31))
}

#[profile_node("llm")]
fn llm_call(llm: &MultiProviderCostTracker) {
    llm.track_usage("openai", "gpt-4o-mini", Usage::new(100, 10))
        .unwrap();
}

/// Every metric handed to the exporter is accounted for.
fn assert_accounted(stats: &ExportStats, produced: u64) {
    assert_eq!(
        stats.sent_metrics
            + stats.dropped_metrics
            + stats.failed_metrics
            + stats.rejected_metrics
            + stats.pending_metrics,
        produced,
        "not every metric is accounted for: {stats}"
    );
}

fn history_len(uri: &str, run_id: &str, key: &str) -> usize {
    mlflow_api::history(&mlflow_api::client(uri), run_id, key).len()
}

#[test]
fn server_down_from_the_start_costs_the_workflow_nothing() {
    let warnings: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = {
        let warnings = warnings.clone();
        move |w: &str| warnings.lock().unwrap().push(w.to_owned())
    };
    let uri = format!("http://127.0.0.1:{}", http_stub::closed_port());
    let started = Instant::now();
    let tracker = MlflowTracker::start(
        MlflowConfig::new(&uri)
            .unwrap()
            .experiment_name("never-created")
            .max_retries(3)
            .backoff_factor(0.05)
            .flush_interval(Duration::from_millis(20))
            .shutdown_timeout(Duration::from_secs(2))
            .on_warning(sink),
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "start blocked");
    let analyzer = BottleneckAnalyzer::new();
    tracker.attach(&analyzer);
    let llm = MultiProviderCostTracker::builder()
        .sink(tracker.cost_sink())
        .build();
    let calls = 2000u64;
    let workflow = Instant::now();
    {
        let _scope = ProfilerScope::new(&analyzer);
        for i in 0..calls {
            work(i);
        }
        llm_call(&llm);
    }
    let workflow = workflow.elapsed();
    assert!(
        workflow < Duration::from_millis(500),
        "workflow took {workflow:?}"
    );
    tracker.log_bottleneck_report(&analyzer.get_summary());
    assert!(!tracker.flush(Duration::from_millis(300)));
    assert!(tracker.run_id().is_none());

    let finishing = Instant::now();
    let stats = tracker.finish(RunStatus::Finished);
    assert!(
        finishing.elapsed() < Duration::from_secs(5),
        "finish took {:?}",
        finishing.elapsed()
    );
    println!("server down from the start: {stats}");
    assert_eq!(stats.sent_metrics, 0);
    // 2000 durations + 1 `llm` duration + 1 cost.
    assert_accounted(&stats, calls + 2);
    assert_eq!(stats.pending_metrics, 0);
    assert_eq!(stats.reports_failed, 1, "{stats}");
    let error = stats.last_error.clone().unwrap();
    assert!(
        error.contains("not delivered") || error.contains("no answer"),
        "{error}"
    );
    // The analyzer's totals are complete all the same.
    let summary = analyzer.get_summary();
    let node = summary.node("work").unwrap();
    assert_eq!(node.call_count, calls);
    // One warning at the first failure, one at the end with the losses.
    let warnings = warnings.lock().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[1].contains("losses"), "{warnings:?}");
    // Logging after the end is refused, not queued.
    assert!(tracker.log_metric("late", 1.0, 0).is_err());
}

#[test]
fn server_stopped_mid_run_and_restarted_loses_nothing_the_queue_held() {
    let name = "server_stopped_mid_run";
    let Some(mut server) = PrivateServer::start(name) else {
        return;
    };
    let uri = server.uri();
    let (analyzer, tracker) = mlflow_api::attached(
        mlflow_api::config(&uri, name)
            .backoff_factor(0.1)
            .request_timeout(Duration::from_secs(10)),
    );
    let run = tracker.wait_for_run(WAIT).expect("run created");
    let _scope = ProfilerScope::new(&analyzer);
    for i in 0..1500 {
        work(i);
    }
    assert!(tracker.flush(WAIT), "{}", tracker.stats());
    assert_eq!(tracker.stats().sent_metrics, 1500);

    server.stop();
    let during = Instant::now();
    for i in 0..1500 {
        work(i);
    }
    let during = during.elapsed();
    assert!(
        during < Duration::from_millis(500),
        "calls took {during:?} with the server down"
    );
    // The exporter notices and keeps the metrics.
    let noticed = Instant::now();
    while tracker.stats().last_error.is_none() && noticed.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let down = tracker.stats();
    println!("server stopped: {down}");
    assert!(down.last_error.is_some(), "{down}");
    assert_eq!(down.sent_metrics, 1500, "{down}");

    server.restart();
    assert!(
        tracker.flush(WAIT),
        "not delivered after restart: {}",
        tracker.stats()
    );
    let stats = tracker.finish(RunStatus::Finished);
    println!("server restarted: {stats}");
    assert_eq!(stats.sent_metrics, 3000, "{stats}");
    assert_eq!(stats.lost_metrics(), 0, "{stats}");
    assert!(stats.retried_requests > 0, "{stats}");
    assert_eq!(
        history_len(&uri, &run.run_id, "node_work_duration_ms"),
        3000
    );
    let info = mlflow_api::client(&uri).get_run(&run.run_id).unwrap().info;
    assert_eq!(info.status, "FINISHED");
}

#[test]
fn answers_503_and_429_to_a_share_of_requests_delay_but_lose_nothing() {
    let name = "answers_503_and_429";
    let Some(uri) = tracking_uri(name) else {
        return;
    };
    let proxy = FaultProxy::start(
        &uri,
        Fault::Mixed(vec![
            Fault::Every {
                every: 3,
                phase: 1,
                status: 503,
                retry_after: None,
            },
            Fault::Every {
                every: 5,
                phase: 2,
                status: 429,
                retry_after: Some(1),
            },
            Fault::Every {
                every: 7,
                phase: 3,
                status: 502,
                retry_after: None,
            },
        ]),
    );
    let (analyzer, tracker) =
        mlflow_api::attached(mlflow_api::config(&proxy.uri(), name).ring_capacity(10_000));
    let llm = MultiProviderCostTracker::builder()
        .sink(tracker.cost_sink())
        .build();
    {
        let _scope = ProfilerScope::new(&analyzer);
        for i in 0..5000 {
            work(i);
        }
        for _ in 0..20 {
            llm_call(&llm);
        }
    }
    tracker.log_param("faults", "503 429 502").unwrap();
    tracker.log_bottleneck_report(&analyzer.get_summary());
    assert!(tracker.flush(WAIT), "{}", tracker.stats());
    let run = tracker.run_info().unwrap();
    let stats = tracker.finish(RunStatus::Finished);
    println!(
        "503/429/502 proxy: {stats}; proxy saw {} requests, injected {} faults",
        proxy.requests(),
        proxy.faults()
    );
    assert_eq!(stats.sent_metrics, 5000 + 20 + 20, "{stats}");
    assert!(!stats.anything_lost(), "{stats}");
    assert_eq!(stats.reports_sent, 1);
    assert!(stats.retried_requests > 0, "{stats}");
    assert!(proxy.faults() > 0);
    assert_eq!(
        history_len(&uri, &run.run_id, "node_work_duration_ms"),
        5000
    );
    assert_eq!(history_len(&uri, &run.run_id, "node_llm_cost_usd"), 20);
    let data = mlflow_api::client(&uri).get_run(&run.run_id).unwrap().data;
    assert_eq!(data.param("faults"), Some("503 429 502"));
    assert_eq!(data.metric("node_count"), Some(2.0));
}

#[test]
fn slow_server_keeps_the_call_path_fast_and_memory_bounded() {
    let name = "slow_server";
    let Some(uri) = tracking_uri(name) else {
        return;
    };
    let proxy = FaultProxy::start(&uri, Fault::Delay(Duration::from_millis(300)));
    const RING: usize = 256;
    const QUEUE: usize = 2000;
    let tracker = MlflowTracker::start(
        mlflow_api::config(&proxy.uri(), name)
            .ring_capacity(RING)
            .queue_capacity(QUEUE)
            .flush_interval(Duration::from_millis(10))
            .shutdown_timeout(Duration::from_secs(20)),
    )
    .unwrap();
    let run = tracker.wait_for_run(WAIT).unwrap();

    // The same loop without export, for the call path's own cost on this machine.
    let baseline = {
        let plain = BottleneckAnalyzer::new();
        let _scope = ProfilerScope::new(&plain);
        let t = Instant::now();
        for i in 0..200_000 {
            work(i);
        }
        t.elapsed() / 200_000
    };

    let analyzer = BottleneckAnalyzer::new();
    tracker.attach(&analyzer);
    let threads = 2;
    let per_thread = 200_000u64;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let analyzer = analyzer.clone();
            std::thread::spawn(move || {
                let _scope = ProfilerScope::new(&analyzer);
                // Chunks of calls, timed, with pauses between them so that the exporter
                // drains a few times while the threads run.
                let mut busy = Duration::ZERO;
                for chunk in 0..per_thread / 1000 {
                    let t = Instant::now();
                    for i in 0..1000 {
                        work(chunk * 1000 + i);
                    }
                    busy += t.elapsed();
                    std::thread::sleep(Duration::from_millis(10));
                }
                busy
            })
        })
        .collect();
    let mut max_peak = 0usize;
    while handles.iter().any(|h| !h.is_finished()) {
        max_peak = max_peak.max(analyzer.memory_bytes());
        assert!(tracker.stats().pending_metrics <= (QUEUE + threads * RING) as u64);
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let produced = threads as u64 * per_thread;
    let wall = started.elapsed();
    let during = tracker.stats();
    // The report goes before the per-call metrics still queued, and says what was lost.
    tracker.log_bottleneck_report(&analyzer.get_summary());
    let stats = tracker.finish(RunStatus::Finished);
    let per_call = *elapsed.iter().max().unwrap() / per_thread as u32;
    println!(
        "slow server (300 ms per request): {produced} calls in {wall:?}; per call {per_call:?} \
         (without export {baseline:?}); analyzer memory peak {max_peak} bytes; while running: \
         {during}; at the end: {stats}"
    );
    // No call waited for the network (one request takes 300 ms).
    assert!(
        per_call < baseline * 5 + Duration::from_micros(5),
        "per call {per_call:?} vs {baseline:?} without export"
    );
    assert!(
        stats.dropped_metrics > 0,
        "the server could not keep up: {stats}"
    );
    assert_accounted(&stats, produced);
    assert_eq!(stats.pending_metrics, 0);
    assert!(max_peak < 1 << 20, "analyzer memory {max_peak}");
    assert_eq!(
        history_len(&uri, &run.run_id, "node_work_duration_ms") as u64,
        stats.sent_metrics
    );
    assert_eq!(stats.reports_sent, 1, "{stats}");
    let client = mlflow_api::client(&uri);
    let run = client.get_run(&run.run_id).unwrap();
    let lost = run.data.tag("export_lost").expect("export_lost tag");
    assert!(lost.contains("dropped"), "{lost}");
    assert_eq!(run.data.metric("node_count"), Some(1.0));
    let report: serde_json::Value = serde_json::from_slice(
        &client
            .download_artifact(&run.info, "bottleneck_report.json")
            .unwrap(),
    )
    .unwrap();
    assert!(
        report["export"]["dropped_metrics"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["nodes"][0]["call_count"].as_u64(), Some(produced));
}

#[test]
fn a_batch_the_server_refuses_is_split_so_one_bad_value_loses_only_itself() {
    let name = "a_batch_the_server_refuses_is_split";
    let Some(uri) = tracking_uri(name) else {
        return;
    };
    let proxy = FaultProxy::start(&uri, Fault::RejectBodyContaining("poison".to_owned()));
    let tracker = MlflowTracker::start(
        mlflow_api::config(&proxy.uri(), name).flush_interval(Duration::from_secs(3600)),
    )
    .unwrap();
    let run = tracker.wait_for_run(WAIT).unwrap();
    for step in 0..500 {
        tracker.log_metric("fine", step as f64, step).unwrap();
        if step == 321 {
            tracker.log_metric("poison", 1.0, 0).unwrap();
        }
    }
    assert!(tracker.flush(WAIT));
    let stats = tracker.finish(RunStatus::Finished);
    println!("refused value: {stats}");
    assert_eq!(stats.sent_metrics, 500, "{stats}");
    assert_eq!(
        (stats.failed_metrics, stats.failed_batches),
        (1, 1),
        "{stats}"
    );
    assert!(
        stats
            .last_error
            .unwrap()
            .contains("INVALID_PARAMETER_VALUE")
    );
    assert_eq!(history_len(&uri, &run.run_id, "fine"), 500);
}

#[test]
fn errors_other_than_transient_ones_are_reported_not_retried() {
    let Some(uri) = tracking_uri("errors_other_than_transient_ones") else {
        return;
    };
    let tracker = MlflowTracker::start(
        MlflowConfig::new(&uri)
            .unwrap()
            .run_id("0123456789abcdef0123456789abcdef")
            .warnings(false)
            .shutdown_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    assert!(tracker.wait_for_run(Duration::from_secs(2)).is_none());
    let stats = tracker.finish(RunStatus::Finished);
    let error = stats.last_error.clone().unwrap();
    assert!(error.contains("RESOURCE_DOES_NOT_EXIST"), "{error}");
    assert_eq!(stats.retried_requests, 0, "{stats}");
}

#[test]
fn tls_certificates_are_verified_unless_verification_is_turned_off() {
    let Some(python) = venv_python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Python virtualenv with `cryptography` in CI (scripts/test makes one)"
        );
        eprintln!("tls test: skipped: no .venv Python (scripts/test makes one)");
        return;
    };
    let server = TlsServer::start(&python);
    let config = MlflowConfig::new(&server.uri())
        .unwrap()
        .max_retries(0)
        .warnings(false);
    // Default: verified, and a self-signed certificate is refused.
    let client = agent_profiler::mlflow::MlflowClient::new(&config).unwrap();
    let error = client.get_experiment("0").unwrap_err();
    println!("self-signed certificate, verification on: {error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    assert!(
        matches!(error, agent_profiler::mlflow::MlflowError::Tls { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    // Trusted explicitly (MLFLOW_TRACKING_SERVER_CERT_PATH): accepted.
    let trusted = agent_profiler::mlflow::MlflowClient::new(
        &config.clone().server_cert_path(&server.cert_path),
    )
    .unwrap();
    assert_eq!(trusted.get_experiment("0").unwrap().name, "Default");
    // MLFLOW_TRACKING_INSECURE_TLS=true: accepted without verification.
    let vars = [
        ("MLFLOW_TRACKING_URI", server.uri()),
        ("MLFLOW_TRACKING_INSECURE_TLS", "true".to_owned()),
    ];
    let insecure =
        MlflowConfig::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let client = agent_profiler::mlflow::MlflowClient::new(&insecure).unwrap();
    assert_eq!(client.get_experiment("0").unwrap().experiment_id, "0");
}

#[test]
fn retry_after_is_honoured_on_429() {
    let name = "retry_after_is_honoured_on_429";
    let Some(uri) = tracking_uri(name) else {
        return;
    };
    for respect in [true, false] {
        // Only the first request is answered 429 with `Retry-After: 2`.
        let proxy = FaultProxy::start(
            &uri,
            Fault::Every {
                every: u64::MAX,
                phase: 0,
                status: 429,
                retry_after: Some(2),
            },
        );
        let client = agent_profiler::mlflow::MlflowClient::new(
            &MlflowConfig::new(&proxy.uri())
                .unwrap()
                .backoff_factor(0.0)
                .backoff_jitter(0.0)
                .respect_retry_after(respect),
        )
        .unwrap();
        let started = Instant::now();
        assert_eq!(client.get_experiment("0").unwrap().experiment_id, "0");
        let waited = started.elapsed();
        assert_eq!(client.retries(), 1);
        if respect {
            assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
        } else {
            assert!(waited < Duration::from_secs(2), "waited {waited:?}");
        }
    }
}

#[test]
fn handles_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<MlflowTracker>();
    send_sync::<MlflowConfig>();
    send_sync::<agent_profiler::mlflow::MlflowClient>();
    send_sync::<agent_profiler::mlflow::MlflowError>();
    send_sync::<ExportStats>();
}
