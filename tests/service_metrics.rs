//! A service's metrics: an executor that makes one analyzer per run adds each to the
//! lifetime totals, which Prometheus and OTLP exporters read; every run counts, also once
//! its analyzer is gone.

mod support {
    #[allow(dead_code)] // the recorded requests only
    pub mod http_stub;
}

use std::sync::Arc;
use std::time::Duration;

use agent_profiler::executor::{Console, WorkflowConfig, WorkflowExecutor};
use agent_profiler::llm::SimulatedClient;
use agent_profiler::metrics::LifetimeMetrics;
use agent_profiler::prometheus::{Format, PrometheusExporter};
use agent_profiler::trace::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use agent_profiler::trace::otlp::proto::metrics::v1::{metric, number_data_point};
use agent_profiler::trace::otlp::{OtlpConfig, OtlpMetricsExporter, instruments};
use prost::Message as _;
use serde_json::json;
use support::http_stub::{HttpStub, Reply};

const RUNS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_run_of_an_executor_counts_in_its_service_metrics() {
    let metrics = LifetimeMetrics::new();
    let client = SimulatedClient::new()
        .base_latency(Duration::ZERO)
        .per_token_latency(Duration::ZERO);
    let executor = WorkflowExecutor::new(Arc::new(client))
        .console(Console::Silent)
        .no_otlp()
        .metrics(metrics.clone());
    let config = WorkflowConfig::from_json_str(
        r#"{"name": "service", "steps": [
            {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan"},
            {"id": "write", "model": "gpt-4o", "prompt": "Write {plan}", "output_key": "text"}
        ]}"#,
    )
    .unwrap();
    for _ in 0..RUNS {
        let run = executor
            .run_config(&config, json!({"topic": "metrics"}))
            .await
            .unwrap();
        drop(run);
    }

    let prometheus = PrometheusExporter::with_metrics(metrics.clone());
    let text = prometheus.encode(Format::OpenMetrics);
    for node in ["plan", "write"] {
        let line =
            format!(r#"agent_profiler_node_calls_total{{node="{node}",outcome="ok"}} {RUNS}"#);
        assert!(text.contains(&line), "{line} in\n{text}");
    }
    let llm = format!(
        r#"agent_profiler_llm_calls_total{{node="write",provider="openai",model="gpt-4o"}} {RUNS}"#
    );
    assert!(text.contains(&llm), "{llm} in\n{text}");
    assert_eq!(metrics.live_analyzers(), 0, "finished runs are folded in");

    let receiver = HttpStub::start(|_| Reply::new(200, "application/x-protobuf", Vec::new()));
    let config = OtlpConfig::new(&format!("{}/v1/metrics", receiver.url()))
        .unwrap()
        .export_interval(Duration::from_secs(3600))
        .warnings(false);
    let otlp = OtlpMetricsExporter::for_metrics(config, &metrics).unwrap();
    assert!(otlp.flush(Duration::from_secs(60)));
    let body = receiver.requests().pop().expect("an export").body;
    let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    let calls = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == instruments::LLM_CALLS)
        .expect("LLM calls");
    let Some(metric::Data::Sum(sum)) = &calls.data else {
        panic!("{calls:?}");
    };
    let total: i64 = sum
        .data_points
        .iter()
        .map(|p| match p.value {
            Some(number_data_point::Value::AsInt(v)) => v,
            _ => 0,
        })
        .sum();
    assert_eq!(total, 2 * RUNS as i64);
}
