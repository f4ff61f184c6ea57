//! MLflow export against a real tracking server: `scripts/test` starts one and sets
//! `MLFLOW_TRACKING_URI` (without it these tests say they are skipped; in CI they fail).
//! Everything logged is read back through the REST API (`metrics/get-history`, `runs/get`,
//! the artifact list) and compared value by value.

mod support {
    #[allow(dead_code)] // only the proxy that quotes the credentials back
    pub mod fault_proxy;
    #[allow(dead_code)] // only what the fault proxy builds on
    pub mod http_stub;
    #[allow(dead_code)] // no trace routes
    pub mod mlflow_api;
    #[allow(dead_code)] // the tracking server's URI, no private or TLS server
    pub mod mlflow_server;
    pub mod scratch;
}

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_profiler::cost::Usage;
use agent_profiler::mlflow::{
    ExportStats, KeyError, Metric, MlflowClient, MlflowConfig, MlflowError, MlflowTracker, Param,
    REPORT_ARTIFACT, RunStatus, RunTag, now_ms,
};
use agent_profiler::{
    MultiProviderCostTracker, ProfilerFutureExt, ProfilerScope, RecordError, Summary, profile_node,
};
use support::fault_proxy::{Fault, FaultProxy};
use support::mlflow_api::{self, history};
use support::{mlflow_server, scratch};

const WAIT: Duration = Duration::from_secs(120);

fn assert_nothing_lost(stats: &ExportStats) {
    assert!(!stats.anything_lost(), "export lost something: {stats}");
}

#[profile_node("plan")]
fn plan(i: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    i * 2
}

#[profile_node("retrieve/docs")]
async fn retrieve(i: u64) -> Result<u64, String> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    if i % 2 == 0 { Ok(i) } else { Err("odd".into()) }
}

/// A node profiled with `#[profile_node]` logs `node_{id}_duration_ms`, one value per call,
/// step = call index, timestamp = the call's end. The runtime for the async node is built
/// by hand: the test reads back through the blocking MLflow client, which must not run on a
/// runtime's thread.
#[test]
fn test_profile_node_logs_to_mlflow() {
    let name = "test_profile_node_logs_to_mlflow";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let (analyzer, tracker) = mlflow_api::attached(mlflow_api::config(&uri, name));
    let started = now_ms();
    {
        let _scope = ProfilerScope::new(&analyzer);
        for i in 0..5 {
            assert_eq!(plan(i), i * 2);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(
        async {
            for i in 0..4 {
                let _ = retrieve(i).await;
            }
        }
        .with_profiler(analyzer.clone()),
    );
    let ended = now_ms();
    assert!(tracker.flush(WAIT), "not flushed: {}", tracker.stats());
    let run = tracker.run_info().expect("run created");
    let client = mlflow_api::client(&uri);
    let summary = analyzer.get_summary();
    for (node, calls) in [("plan", 5), ("retrieve/docs", 4)] {
        let key = format!("node_{node}_duration_ms");
        let values = history(&client, &run.run_id, &key);
        let steps: Vec<i64> = values.iter().map(|m| m.step).collect();
        assert_eq!(steps, (0..calls).collect::<Vec<i64>>(), "{key}");
        let timing = summary.node(node).unwrap();
        // Per-call values and the analyzer's totals are converted from clock ticks
        // separately (and the tick rate may be refined in between): equal to about 1e-4.
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
        let total: f64 = values.iter().map(|m| m.value).sum();
        assert!(
            close(total, timing.total_duration_ms),
            "{key}: {total} vs {}",
            timing.total_duration_ms
        );
        let max = values.iter().map(|m| m.value).fold(0.0, f64::max);
        assert!(
            close(max, timing.max_duration_ms),
            "{key}: {max} vs {}",
            timing.max_duration_ms
        );
        for m in &values {
            assert!(m.value >= 1.0, "{key}: {m:?} (each call sleeps 1 ms)");
            assert!(
                (started - 1..=ended + 1).contains(&m.timestamp),
                "{key}: {m:?} outside [{started}, {ended}]"
            );
        }
    }
    let stats = tracker.finish(RunStatus::Finished);
    assert_eq!(stats.sent_metrics, 9, "{stats}");
    assert_nothing_lost(&stats);
    let info = client.get_run(&run.run_id).unwrap().info;
    assert_eq!(info.status, "FINISHED");
    assert!(info.end_time.unwrap() >= ended);
}

#[profile_node("think_llm")]
fn think(llm: &MultiProviderCostTracker, tokens: u64, model: &str) -> Option<f64> {
    llm.track_usage("openai", model, Usage::new(tokens, 100))
        .unwrap()
        .cost_usd
}

#[test]
fn every_metric_cost_param_tag_and_the_report_arrive_as_logged() {
    let name = "every_metric_cost_param_tag_and_the_report_arrive_as_logged";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let (analyzer, tracker) = mlflow_api::attached(
        mlflow_api::config(&uri, name)
            .run_tag("suite", "mlflow")
            .ring_capacity(10_000),
    );
    let llm = MultiProviderCostTracker::builder()
        .sink(tracker.cost_sink())
        .build();

    // 3 nodes x 1200 calls with known durations: several batches of 1000.
    let nodes = ["fetch", "rank", "act"];
    let duration = |i: usize, k: usize| (i * 3 + k) as f64 * 0.25 + 0.125;
    for i in 0..1200 {
        for (k, node) in nodes.iter().enumerate() {
            analyzer.record_node(node, duration(i, k)).unwrap();
        }
    }
    // Costs: priced calls inside a node are logged; unpriced ones and calls outside nodes
    // are not.
    let costs: Vec<f64> = {
        let _scope = ProfilerScope::new(&analyzer);
        let priced: Vec<f64> = (1..=3)
            .map(|i| think(&llm, 1000 * i, "gpt-4o").unwrap())
            .collect();
        assert_eq!(think(&llm, 10, "gpt-9-unknown"), None);
        priced
    };
    llm.track_usage("openai", "gpt-4o", Usage::new(5, 5))
        .unwrap();

    tracker.log_param("model", "gpt-4o").unwrap();
    tracker.log_param("long", "p".repeat(7000)).unwrap();
    tracker.set_tag("team", "search").unwrap();
    tracker.set_tag("long_tag", "t".repeat(9000)).unwrap();
    for (step, value) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.5]
        .into_iter()
        .enumerate()
    {
        tracker.log_metric("score", value, step as i64).unwrap();
    }
    assert!(matches!(
        tracker.log_metric("bad:key", 1.0, 0),
        Err(MlflowError::Key(KeyError::InvalidCharacter { .. }))
    ));

    let summary = analyzer.get_summary();
    tracker.log_bottleneck_report(&summary);
    assert!(tracker.flush(WAIT), "not flushed: {}", tracker.stats());
    let run_id = tracker.run_id().unwrap();
    let client = mlflow_api::client(&uri);

    for (k, node) in nodes.iter().enumerate() {
        let values = history(&client, &run_id, &format!("node_{node}_duration_ms"));
        assert_eq!(values.len(), 1200, "{node}");
        for (i, m) in values.iter().enumerate() {
            assert_eq!((m.step, m.value), (i as i64, duration(i, k)), "{node}");
        }
    }
    let values = history(&client, &run_id, "node_think_llm_cost_usd");
    let got: Vec<(i64, f64)> = values.iter().map(|m| (m.step, m.value)).collect();
    let want: Vec<(i64, f64)> = costs
        .iter()
        .enumerate()
        .map(|(i, c)| (i as i64, *c))
        .collect();
    assert_eq!(got, want);

    let score = history(&client, &run_id, "score");
    assert!(score[0].value.is_nan());
    // A SQL-backed server stores infinities as the largest finite doubles.
    assert_eq!(score[1].value, f64::MAX);
    assert_eq!(score[2].value, -f64::MAX);
    assert_eq!(score[3].value, 0.5);

    let run = client.get_run(&run_id).unwrap();
    let data = &run.data;
    assert_eq!(data.param("model"), Some("gpt-4o"));
    assert_eq!(data.param("long").unwrap().len(), 6000);
    assert_eq!(data.tag("team"), Some("search"));
    assert_eq!(data.tag("long_tag").unwrap().len(), 8000);
    assert_eq!(data.tag("suite"), Some("mlflow"));
    assert_eq!(data.tag("mlflow.runName"), Some(name));
    assert_eq!(data.tag("mlflow.source.type"), Some("LOCAL"));

    // The report: metrics, tags, and the whole summary as an artifact.
    assert_eq!(data.metric("total_time_ms"), Some(summary.total_time_ms));
    assert_eq!(data.metric("node_count"), Some(summary.node_count as f64));
    assert_eq!(
        data.metric("bottleneck_count"),
        Some(summary.bottlenecks.len() as f64)
    );
    assert_eq!(data.metric("total_cost_usd"), Some(summary.total_cost_usd));
    assert!(summary.total_cost_usd > 0.0);
    assert_eq!(
        data.tag("slowest_node"),
        Some(summary.slowest_node.as_ref().unwrap().node_id.as_str())
    );
    let ids: Vec<&str> = summary
        .bottlenecks
        .iter()
        .map(|b| b.node_id.as_str())
        .collect();
    assert_eq!(data.tag("bottlenecks"), Some(ids.join(",").as_str()));
    assert_eq!(data.tag("export_lost"), None);
    let files = client.list_artifacts(&run.info, None).unwrap();
    assert!(
        files.iter().any(|f| f.path == REPORT_ARTIFACT && !f.is_dir),
        "{files:?}"
    );
    let bytes = client
        .download_artifact(&run.info, REPORT_ARTIFACT)
        .unwrap();
    let expected = serde_json::to_vec_pretty(&serde_json::to_value(&summary).unwrap()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&bytes),
        String::from_utf8_lossy(&expected)
    );
    let parsed: Summary = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed.node_count, summary.node_count);

    let stats = tracker.finish(RunStatus::Finished);
    // Durations of 3 x 1200 calls and of the 4 `think_llm` calls, 3 costs, 4 scores.
    assert_eq!(stats.sent_metrics, 3600 + 4 + 3 + 4, "{stats}");
    assert_eq!((stats.sent_params, stats.sent_tags), (2, 2), "{stats}");
    assert_eq!(stats.reports_sent, 1, "{stats}");
    assert_nothing_lost(&stats);
    assert_eq!(stats.pending_metrics, 0);
}

#[test]
fn environment_settings_create_the_experiment_and_resume_the_run() {
    let name = "environment_settings_create_the_experiment_and_resume_the_run";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let experiment = scratch::unique("env-experiment");
    let from = |extra: &[(&str, &str)]| {
        let mut vars: HashMap<String, String> = [
            ("MLFLOW_TRACKING_URI", uri.as_str()),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.retain(|_, v| !v.is_empty());
        MlflowConfig::from_vars(|k| vars.get(k).cloned())
            .unwrap()
            .warnings(false)
            .shutdown_timeout(Duration::from_secs(30))
    };
    let client = mlflow_api::client(&uri);

    let first = MlflowTracker::start(from(&[("MLFLOW_EXPERIMENT_NAME", &experiment)])).unwrap();
    let run = first.wait_for_run(WAIT).expect("run created");
    let found = client.get_experiment_by_name(&experiment).unwrap().unwrap();
    assert_eq!(run.experiment_id, found.experiment_id);
    first.log_metric("phase", 1.0, 0).unwrap();
    assert_nothing_lost(&first.finish(RunStatus::Finished));
    assert_eq!(client.get_run(&run.run_id).unwrap().info.status, "FINISHED");

    // MLFLOW_RUN_ID: the same run, running again, then ended as asked.
    let second = MlflowTracker::start(from(&[
        ("MLFLOW_RUN_ID", &run.run_id),
        ("MLFLOW_EXPERIMENT_ID", &found.experiment_id),
    ]))
    .unwrap();
    assert_eq!(second.wait_for_run(WAIT).unwrap().run_id, run.run_id);
    assert_eq!(client.get_run(&run.run_id).unwrap().info.status, "RUNNING");
    second.log_metric("phase", 2.0, 1).unwrap();
    assert_nothing_lost(&second.finish(RunStatus::Killed));
    let info = client.get_run(&run.run_id).unwrap().info;
    assert_eq!(info.status, "KILLED");
    assert!(info.end_time.is_some());
    let phases: Vec<(i64, f64)> = history(&client, &run.run_id, "phase")
        .iter()
        .map(|m| (m.step, m.value))
        .collect();
    assert_eq!(phases, [(0, 1.0), (1, 2.0)]);

    // Both name and id, not matching: a clear error, nothing created.
    let mismatch = MlflowTracker::start(from(&[
        ("MLFLOW_EXPERIMENT_NAME", &experiment),
        ("MLFLOW_EXPERIMENT_ID", "987654321"),
    ]))
    .unwrap();
    assert!(mismatch.wait_for_run(Duration::from_secs(2)).is_none());
    let stats = mismatch.finish_within(RunStatus::Finished, Duration::from_secs(2));
    let error = stats.last_error.unwrap();
    assert!(error.contains("MLFLOW_EXPERIMENT_ID"), "{error}");
}

#[test]
fn node_ids_mlflow_would_reject_are_sanitised_or_refused_without_poisoning_their_batch() {
    let name = "node_ids_mlflow_would_reject_are_sanitised_or_refused";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    // One drain for everything below: a long flush interval, then flush.
    let config = mlflow_api::config(&uri, name).flush_interval(Duration::from_secs(3600));
    let (analyzer, tracker) = mlflow_api::attached(config);
    let run = tracker.wait_for_run(WAIT).unwrap();
    let too_long = "x".repeat(300);
    // The analyzer refuses ids outside the node-id rules; an id within them may still make
    // a key MLflow rejects (`//`, `..`), and `log_node_cost` takes any id.
    let outside_the_rules = ["tool:search?q=1", "ünïcode", too_long.as_str()];
    for id in outside_the_rules {
        assert!(
            matches!(
                analyzer.record_node(id, 1.0),
                Err(RecordError::InvalidNodeId { .. })
            ),
            "{id}"
        );
    }
    for i in 0..3 {
        for id in ["ok", "a//b/../c"] {
            analyzer.record_node(id, 1.0 + i as f64).unwrap();
        }
        for id in outside_the_rules {
            tracker.log_node_cost(id, 1.0 + i as f64);
        }
    }
    tracker.log_node_cost("bad:node", 0.25);
    assert!(tracker.flush(WAIT), "{}", tracker.stats());
    let client = mlflow_api::client(&uri);
    for key in [
        "node_ok_duration_ms",
        "node_tool_search_q_1_cost_usd",
        "node_a/_/b/__/c_duration_ms",
        "node__n_code_cost_usd",
    ] {
        let values: Vec<(i64, f64)> = history(&client, &run.run_id, key)
            .iter()
            .map(|m| (m.step, m.value))
            .collect();
        assert_eq!(values, [(0, 1.0), (1, 2.0), (2, 3.0)], "{key}");
    }
    let cost = history(&client, &run.run_id, "node_bad_node_cost_usd");
    assert_eq!((cost[0].step, cost[0].value), (0, 0.25));
    let stats = tracker.finish(RunStatus::Finished);
    assert_eq!(stats.sent_metrics, 13, "{stats}");
    assert_eq!(stats.sent_batches, 1, "one batch, never split: {stats}");
    assert_eq!(stats.rejected_metrics, 3, "{stats}");
    assert_eq!(stats.sanitized_keys, 4, "{stats}");
    assert_eq!(
        (stats.failed_metrics, stats.dropped_metrics),
        (0, 0),
        "{stats}"
    );
    let error = stats.last_error.unwrap();
    assert!(error.contains("250"), "{error}");

    // The direct client refuses a batch with a bad key before sending anything.
    let refused = client.log_batch(
        &run.run_id,
        &[
            Metric::new("direct_good", 1.0, now_ms(), 0),
            Metric::new("direct//bad", 1.0, now_ms(), 0),
        ],
        &[],
        &[],
    );
    assert!(matches!(
        refused,
        Err(MlflowError::Key(KeyError::NotNormalPath { .. }))
    ));
    assert!(history(&client, &run.run_id, "direct_good").is_empty());
}

#[test]
fn the_client_splits_large_batches_within_mlflow_limits() {
    let name = "the_client_splits_large_batches_within_mlflow_limits";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let client = mlflow_api::client(&uri);
    let experiment = client
        .get_or_create_experiment(&scratch::unique(name))
        .unwrap();
    let run = client
        .create_run(&experiment, Some(name), &[RunTag::new("kind", "direct")])
        .unwrap();
    let now = now_ms();
    let metrics: Vec<Metric> = (0..2500)
        .map(|i| Metric::new(format!("m{}", i % 5), i as f64, now + i, i / 5))
        .collect();
    let params: Vec<Param> = (0..250)
        .map(|i| Param::new(format!("p{i}"), format!("{i}:{}", "v".repeat(7000))))
        .collect();
    let tags: Vec<RunTag> = (0..250)
        .map(|i| RunTag::new(format!("t{i}"), format!("{i}:{}", "w".repeat(9000))))
        .collect();
    // 250 tags of 8000 characters alone are 2 MB: several requests by size.
    client
        .log_batch(&run.run_id, &metrics, &params, &tags)
        .unwrap();
    let data = client.get_run(&run.run_id).unwrap().data;
    assert_eq!(data.params.len(), 250);
    assert!(data.params.iter().all(|p| p.value.len() == 6000));
    assert_eq!(
        data.tags.iter().filter(|t| t.key.starts_with('t')).count(),
        250
    );
    assert!(
        data.tags
            .iter()
            .filter(|t| t.key.starts_with('t'))
            .all(|t| t.value.len() == 8000)
    );
    for k in 0..5 {
        let values = history(&client, &run.run_id, &format!("m{k}"));
        assert_eq!(values.len(), 500);
        for (step, m) in values.iter().enumerate() {
            assert_eq!((m.step, m.value), (step as i64, (step * 5 + k) as f64));
        }
    }
    client
        .update_run(&run.run_id, RunStatus::Finished, Some(now_ms()))
        .unwrap();
}

#[test]
fn secrets_never_appear_in_any_output() {
    let name = "secrets_never_appear_in_any_output";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    const TOKEN: &str = "sk-PLANTED-7f3b9c2e1d5a";
    const PASSWORD: &str = "pw-PLANTED-4a8e6f1c0b";
    let outputs: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = |text: String| outputs.lock().unwrap().push(text);
    let warnings: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = {
        let warnings = warnings.clone();
        move |w: &str| warnings.lock().unwrap().push(w.to_owned())
    };

    // 1. A bearer token from the environment, against the real server (which ignores it).
    let vars: HashMap<&str, String> = [
        ("MLFLOW_TRACKING_URI", uri.clone()),
        ("MLFLOW_TRACKING_TOKEN", TOKEN.to_owned()),
        ("MLFLOW_EXPERIMENT_NAME", scratch::unique(name)),
    ]
    .into_iter()
    .collect();
    let config = MlflowConfig::from_vars(|k| vars.get(k).cloned())
        .unwrap()
        .on_warning(sink.clone());
    record(format!("{config:?}"));
    let (analyzer, tracker) = mlflow_api::attached(config.clone());
    analyzer.record_node("step", 3.0).unwrap();
    tracker.log_param("p", "first").unwrap();
    tracker.log_param("p", "second").unwrap(); // refused by the server: an error to show
    tracker.log_bottleneck_report(&analyzer.get_summary());
    assert!(tracker.flush(WAIT));
    record(format!("{tracker:?}"));
    let stats = tracker.finish(RunStatus::Finished);
    record(format!("{stats} {stats:?}"));
    assert_eq!(stats.failed_params_and_tags, 1, "{stats}");
    let client = mlflow_api::client(&uri);
    let run = client.get_run(&tracker.run_id().unwrap()).unwrap();
    record(format!("{run:?}"));
    let report = client
        .download_artifact(&run.info, REPORT_ARTIFACT)
        .unwrap();
    record(String::from_utf8_lossy(&report).into_owned());
    let direct = MlflowClient::new(&config).unwrap();
    record(format!("{direct:?}"));

    // 2. A server that quotes the Authorization header back in its error body.
    for auth in ["bearer", "basic", "userinfo"] {
        let echo = FaultProxy::start(&uri, Fault::EchoAuth);
        let base = match auth {
            "userinfo" => MlflowConfig::new(&format!(
                "http://alice:{PASSWORD}@127.0.0.1:{}",
                echo.port()
            ))
            .unwrap(),
            _ => MlflowConfig::new(&echo.uri()).unwrap(),
        };
        let config = match auth {
            "bearer" => base.token(TOKEN),
            "basic" => base.basic_auth("alice", PASSWORD),
            _ => base,
        }
        .max_retries(0)
        .on_warning(sink.clone())
        .shutdown_timeout(Duration::from_secs(2));
        record(format!("{config:?} {}", config.tracking_uri()));
        let client = MlflowClient::new(&config).unwrap();
        let error = client.get_experiment("0").unwrap_err();
        record(format!("{error} {error:?}"));
        assert!(error.to_string().contains("***"), "{error}");
        let tracker = MlflowTracker::start(config).unwrap();
        assert!(tracker.wait_for_run(Duration::from_millis(500)).is_none());
        let stats = tracker.finish(RunStatus::Failed);
        record(format!("{stats:?} {tracker:?}"));
        assert!(stats.last_error.unwrap().contains("***"));
        // The secret did go out, in the Authorization header only.
        let seen = echo.auth_seen();
        assert!(!seen.is_empty(), "{auth}: no Authorization header sent");
        if auth == "bearer" {
            assert!(seen.iter().all(|h| h == &format!("Bearer {TOKEN}")));
        }
    }

    // 3. Errors of configuration never echo a password either.
    let bad = MlflowConfig::new(&format!("ftp://alice:{PASSWORD}@host")).unwrap_err();
    record(format!("{bad} {bad:?}"));

    let everything = [
        outputs.lock().unwrap().join("\n"),
        warnings.lock().unwrap().join("\n"),
    ]
    .join("\n");
    assert!(
        !warnings.lock().unwrap().is_empty(),
        "a warning was expected"
    );
    for secret in [TOKEN, PASSWORD] {
        assert!(
            !everything.contains(secret),
            "secret {secret} leaked in:\n{everything}"
        );
    }
    // Nor the basic-auth header form of the password.
    assert!(!everything.contains("YWxpY2U6cHctUExBTlRFRC00YThlNmYxYzBi"));
}

#[profile_node("bench")]
fn bench_node(i: u64) -> u64 {
    std::hint::black_box(i)
}

/// Delivered metrics per second through the exporter, next to the rate the server accepts
/// from sequential 1000-metric `log-batch` calls made directly.
#[test]
fn exporter_throughput_matches_sequential_log_batch() {
    let name = "exporter_throughput_matches_sequential_log_batch";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    const N: usize = 20_000;
    let client = mlflow_api::client(&uri);
    let experiment = client
        .get_or_create_experiment(&scratch::unique(name))
        .unwrap();

    let direct = |label: &str| -> f64 {
        let run = client.create_run(&experiment, Some(label), &[]).unwrap();
        let now = now_ms();
        let batches: Vec<Vec<Metric>> = (0..N / 1000)
            .map(|b| {
                (0..1000)
                    .map(|i| {
                        let step = (b * 1000 + i) as i64;
                        Metric::new(
                            "node_bench_duration_ms",
                            0.001 * step as f64,
                            now + step / 50,
                            step,
                        )
                    })
                    .collect()
            })
            .collect();
        let started = Instant::now();
        for batch in &batches {
            client.log_batch(&run.run_id, batch, &[], &[]).unwrap();
        }
        N as f64 / started.elapsed().as_secs_f64()
    };

    let exporter = || -> (f64, ExportStats) {
        let (analyzer, tracker) = mlflow_api::attached(
            mlflow_api::config(&uri, name)
                .ring_capacity(N)
                .flush_interval(Duration::from_millis(200)),
        );
        tracker.wait_for_run(WAIT).unwrap();
        let started = Instant::now();
        {
            let _scope = ProfilerScope::new(&analyzer);
            for i in 0..N as u64 {
                bench_node(i);
            }
        }
        assert!(tracker.flush(WAIT), "{}", tracker.stats());
        let rate = N as f64 / started.elapsed().as_secs_f64();
        let stats = tracker.finish(RunStatus::Finished);
        assert_eq!(stats.sent_metrics, N as u64, "{stats}");
        (rate, stats)
    };

    let direct_before = direct("direct-before");
    let (through_exporter, stats) = exporter();
    let direct_after = direct("direct-after");
    let direct_rate = (direct_before + direct_after) / 2.0;
    let ratio = through_exporter / direct_rate;
    println!(
        "MLflow throughput, {N} metrics: exporter {through_exporter:.0} metrics/s; sequential \
         1000-metric log-batch {direct_rate:.0} metrics/s ({direct_before:.0} before, \
         {direct_after:.0} after); exporter / direct = {ratio:.2} ({} batches)",
        stats.sent_batches
    );
    assert_nothing_lost(&stats);
    // The target is within 10% (0.9-1.0 measured alone); the bound is a generous lower one,
    // since the two rates are taken a few seconds apart and on a 2-core machine a build or
    // another test beside them moves one but not the other (0.68 was seen so).
    assert!(ratio > 0.5, "exporter at {ratio:.2} of the direct rate");
}

/// One node with two timed LLM calls: a streamed one that sent its first chunk after
/// `ttft`, and one dropped mid-call (cancelled: its time was spent, it has no first token).
#[profile_node("stream_llm")]
fn stream_llm(
    llm: &MultiProviderCostTracker,
    ttft: Duration,
) -> Vec<agent_profiler::cost::CostInfo> {
    let call = llm.start_call("openai", "gpt-4o-mini");
    call.set_stream(true);
    std::thread::sleep(ttft);
    call.first_chunk();
    std::thread::sleep(Duration::from_millis(5));
    let streamed = call.finish(Usage::new(400, 50)).unwrap();
    let dropped = llm.start_call("openai", "gpt-4o-mini");
    std::thread::sleep(Duration::from_millis(3));
    drop(dropped);
    vec![streamed]
}

#[test]
fn timed_llm_calls_arrive_as_per_call_llm_ms_and_ttft_ms() {
    let name = "timed_llm_calls_arrive_as_per_call_llm_ms_and_ttft_ms";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let (analyzer, tracker) = mlflow_api::attached(mlflow_api::config(&uri, name));
    let llm = MultiProviderCostTracker::builder()
        .sink(tracker.cost_sink())
        .build();
    let streamed: Vec<_> = {
        let _scope = ProfilerScope::new(&analyzer);
        [10, 20]
            .into_iter()
            .flat_map(|ms| stream_llm(&llm, Duration::from_millis(ms)))
            .collect()
    };
    assert!(tracker.flush(WAIT), "not flushed: {}", tracker.stats());
    let run_id = tracker.run_id().unwrap();
    let client = mlflow_api::client(&uri);

    // Every timed call's wall time, the cancelled ones too, in the order they ended.
    let llm_ms = history(&client, &run_id, "node_stream_llm_llm_ms");
    let steps: Vec<i64> = llm_ms.iter().map(|m| m.step).collect();
    assert_eq!(steps, [0, 1, 2, 3]);
    for (k, call) in streamed.iter().enumerate() {
        let timing = call.timing.as_ref().unwrap();
        assert_eq!(llm_ms[2 * k].value, timing.duration_ns() as f64 / 1e6);
        assert_eq!(
            llm_ms[2 * k].timestamp,
            (timing.end_unix_ns / 1_000_000) as i64
        );
    }
    for cancelled in [&llm_ms[1], &llm_ms[3]] {
        assert!(cancelled.value >= 3.0, "{cancelled:?}");
    }
    // Only the streamed calls have a time to first token.
    let ttft = history(&client, &run_id, "node_stream_llm_ttft_ms");
    let got: Vec<(i64, f64)> = ttft.iter().map(|m| (m.step, m.value)).collect();
    let want: Vec<(i64, f64)> = streamed
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ns = c.timing.as_ref().unwrap().ttft_ns().unwrap();
            (i as i64, ns as f64 / 1e6)
        })
        .collect();
    assert_eq!(got, want);
    assert!(got[0].1 >= 10.0 && got[1].1 >= 20.0, "{got:?}");
    // The priced calls' cost, as before.
    assert_eq!(
        history(&client, &run_id, "node_stream_llm_cost_usd").len(),
        2
    );

    let stats = tracker.finish(RunStatus::Finished);
    // 2 node durations, 4 LLM times, 2 TTFTs, 2 costs.
    assert_eq!(stats.sent_metrics, 2 + 4 + 2 + 2, "{stats}");
    assert_nothing_lost(&stats);
}
