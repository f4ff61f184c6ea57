//! OTLP metrics: profiled nodes with timed LLM calls, their analyzer's lifetime counters
//! sent by `OtlpMetricsExporter` to a loopback receiver that decodes each request as the
//! OTLP protobuf it is, and the figures read back against the analyzer's own.

mod support {
    #[allow(dead_code)] // the recorded requests only
    pub mod http_stub;
}

use std::time::Duration;

use agent_profiler::cost::Usage;
use agent_profiler::trace::otlp::proto::collector::metrics::v1::ExportMetricsServiceRequest;
use agent_profiler::trace::otlp::proto::common::v1::{AnyValue, KeyValue, any_value};
use agent_profiler::trace::otlp::proto::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, metric, number_data_point,
};
use agent_profiler::trace::otlp::{OtlpConfig, OtlpMetricsExporter, instruments};
use agent_profiler::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerScope, profile_node};
use prost::Message as _;
use support::http_stub::{HttpStub, Reply};

const WAIT: Duration = Duration::from_secs(60);

#[profile_node("om_answer")]
fn answer(tracker: &MultiProviderCostTracker, streamed: bool) -> Result<(), String> {
    let call = tracker.start_call("openai", "gpt-4o-mini");
    std::thread::sleep(Duration::from_millis(5));
    if streamed {
        call.set_stream(true);
        call.first_chunk();
    }
    std::thread::sleep(Duration::from_millis(5));
    call.finish(Usage::new(300, 40))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[profile_node("om_check")]
fn check(i: u32) -> Result<u32, String> {
    if i % 3 == 0 { Err("no".into()) } else { Ok(i) }
}

fn receiver() -> HttpStub {
    HttpStub::start(|_| Reply::new(200, "application/x-protobuf", Vec::new()))
}

fn exporter(receiver: &HttpStub, analyzer: &BottleneckAnalyzer) -> OtlpMetricsExporter {
    let config = OtlpConfig::new(&format!("{}/v1/metrics", receiver.url()))
        .unwrap()
        .service_name("metrics-test")
        .export_interval(Duration::from_secs(3600))
        .warnings(false);
    OtlpMetricsExporter::for_analyzer(config, analyzer).unwrap()
}

fn last_request(receiver: &HttpStub) -> ExportMetricsServiceRequest {
    let request = receiver.requests().pop().expect("a request");
    assert_eq!(request.target, "/v1/metrics");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-protobuf")
    );
    ExportMetricsServiceRequest::decode(request.body.as_slice()).expect("an OTLP request")
}

fn metric<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
    request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref().and_then(|v: &AnyValue| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        }
    })
}

fn histograms<'a>(
    request: &'a ExportMetricsServiceRequest,
    name: &str,
) -> &'a [HistogramDataPoint] {
    match &metric(request, name).data {
        Some(metric::Data::Histogram(h)) => {
            assert_eq!(
                h.aggregation_temporality,
                AggregationTemporality::Cumulative as i32
            );
            &h.data_points
        }
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn sums<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a [NumberDataPoint] {
    match &metric(request, name).data {
        Some(metric::Data::Sum(s)) => {
            assert!(s.is_monotonic);
            &s.data_points
        }
        other => panic!("{name} is not a sum: {other:?}"),
    }
}

fn int(point: &NumberDataPoint) -> i64 {
    match point.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        other => panic!("not an integer: {other:?}"),
    }
}

fn node_point<'a>(points: &'a [HistogramDataPoint], node: &str) -> &'a HistogramDataPoint {
    points
        .iter()
        .find(|p| text(&p.attributes, "agent_profiler.node_id").as_deref() == Some(node))
        .unwrap_or_else(|| panic!("no point for {node}"))
}

#[test]
fn lifetime_counters_reach_the_receiver_as_the_analyzer_has_them() {
    let receiver = receiver();
    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let exporter = exporter(&receiver, &analyzer);
    {
        let _scope = ProfilerScope::new(&analyzer);
        for i in 0..4 {
            answer(&tracker, i % 2 == 0).unwrap();
        }
        for i in 0..9 {
            let _ = check(i);
        }
    }
    assert!(exporter.flush(WAIT));
    let stats = exporter.stats();
    assert_eq!(
        (stats.exports_sent, stats.exports_failed),
        (1, 0),
        "{stats}"
    );
    let request = last_request(&receiver);
    let resource = request.resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        text(&resource.attributes, "service.name").as_deref(),
        Some("metrics-test")
    );

    // Node durations: as many as calls, summing to the analyzer's total.
    let nodes = histograms(&request, instruments::NODE_DURATION);
    let timings = analyzer.get_node("om_answer").unwrap();
    let point = node_point(nodes, "om_answer");
    assert_eq!(point.count, 4);
    let sum = point.sum.unwrap();
    assert!(
        (sum - timings.total_duration_ms / 1e3).abs() < 1e-6,
        "{sum} s against {} ms",
        timings.total_duration_ms
    );
    assert!(sum >= 4.0 * 0.010, "four calls of at least 10 ms: {sum}");
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), point.count);

    // Calls by outcome: 3 of 9 checks failed.
    let calls = sums(&request, instruments::NODE_CALLS);
    let of = |node: &str, outcome: &str| {
        calls
            .iter()
            .find(|p| {
                text(&p.attributes, "agent_profiler.node_id").as_deref() == Some(node)
                    && text(&p.attributes, "agent_profiler.outcome").as_deref() == Some(outcome)
            })
            .map_or(0, int)
    };
    assert_eq!((of("om_check", "ok"), of("om_check", "error")), (6, 3));

    // The GenAI instruments: 4 timed calls, 2 streamed, tokens and cost as analyzed.
    let ops = histograms(&request, instruments::OPERATION_DURATION);
    assert_eq!(ops.len(), 1);
    let op = &ops[0];
    assert_eq!(
        text(&op.attributes, "gen_ai.request.model").as_deref(),
        Some("gpt-4o-mini")
    );
    assert_eq!(
        text(&op.attributes, "gen_ai.provider.name").as_deref(),
        Some("openai")
    );
    assert_eq!(
        text(&op.attributes, "gen_ai.operation.name").as_deref(),
        Some("chat")
    );
    assert_eq!(op.count, 4);
    assert!(op.sum.unwrap() >= 4.0 * 0.010);
    let first = &histograms(&request, instruments::TIME_TO_FIRST_CHUNK)[0];
    assert_eq!(first.count, 2);
    assert!(first.sum.unwrap() >= 2.0 * 0.005);
    let usage = histograms(&request, instruments::TOKEN_USAGE);
    let tokens_of = |kind: &str| {
        let point = usage
            .iter()
            .find(|p| text(&p.attributes, "gen_ai.token.type").as_deref() == Some(kind))
            .unwrap();
        (point.count, point.sum.unwrap())
    };
    assert_eq!(tokens_of("input"), (4, 1200.0));
    assert_eq!(tokens_of("output"), (4, 160.0));
    let cost = match sums(&request, instruments::LLM_COST)[0].value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        other => panic!("{other:?}"),
    };
    assert!(
        (cost - timings.cost_usd).abs() < 1e-12,
        "{cost} {}",
        timings.cost_usd
    );
    assert!(cost > 0.0);
}

#[test]
fn counters_stay_cumulative_from_one_export_to_the_next() {
    let receiver = receiver();
    let analyzer = BottleneckAnalyzer::new();
    let exporter = exporter(&receiver, &analyzer);
    let count = |request: &ExportMetricsServiceRequest| {
        let point = node_point(histograms(request, instruments::NODE_DURATION), "om_check");
        (
            point.count,
            point.start_time_unix_nano,
            point.time_unix_nano,
        )
    };
    {
        let _scope = ProfilerScope::new(&analyzer);
        for _ in 0..5 {
            check(1).unwrap();
        }
    }
    assert!(exporter.flush(WAIT));
    let (first, start, first_time) = count(&last_request(&receiver));
    {
        let _scope = ProfilerScope::new(&analyzer);
        for _ in 0..5 {
            check(1).unwrap();
        }
    }
    assert!(exporter.flush(WAIT));
    let (second, second_start, second_time) = count(&last_request(&receiver));
    assert_eq!((first, second), (5, 10));
    assert_eq!(start, second_start, "one cumulative series");
    assert!(second_time >= first_time && first_time >= start);
    // The last figures go out at shutdown.
    {
        let _scope = ProfilerScope::new(&analyzer);
        check(1).unwrap();
    }
    let stats = exporter.shutdown();
    assert_eq!(stats.exports_sent, 3, "{stats}");
    assert_eq!(count(&last_request(&receiver)).0, 11);
}

#[test]
fn a_failing_receiver_is_counted_and_costs_the_caller_nothing() {
    let receiver = HttpStub::start(|_| Reply::new(503, "text/plain", "overloaded"));
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("om_manual", 3.0).unwrap();
    let config = OtlpConfig::new(&format!("{}/v1/metrics", receiver.url()))
        .unwrap()
        .max_retries(1)
        .backoff(Duration::from_millis(10))
        .warnings(false);
    let exporter = OtlpMetricsExporter::for_analyzer(config, &analyzer).unwrap();
    assert!(exporter.flush(WAIT));
    let stats = exporter.stats();
    assert_eq!(
        (stats.exports_sent, stats.exports_failed),
        (0, 1),
        "{stats}"
    );
    assert_eq!(stats.retried_requests, 1);
    assert!(stats.last_error.unwrap().contains("503"));
}

#[test]
fn the_environment_names_the_metrics_endpoint() {
    let vars = [
        (
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "http://collector:4318/custom/metrics",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318"),
        ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "x-key=secret"),
    ];
    let get = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let config = OtlpConfig::metrics_from_vars(get).unwrap();
    assert_eq!(config.endpoint(), "http://collector:4318/custom/metrics");
    assert_eq!(config.header_names(), ["x-key"]);
    // Only MLflow: no metrics target (MLflow takes no OTLP metrics).
    let mlflow =
        |name: &str| (name == "MLFLOW_TRACKING_URI").then(|| "http://127.0.0.1:5000".into());
    let error = OtlpConfig::metrics_from_vars(mlflow)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
        "{error}"
    );
    let delta = |name: &str| match name {
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4318".to_owned()),
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE" => Some("delta".to_owned()),
        _ => None,
    };
    let error = OtlpConfig::metrics_from_vars(delta)
        .unwrap_err()
        .to_string();
    assert!(error.contains("cumulative"), "{error}");
}

#[test]
fn a_trace_configuration_is_refused_with_what_to_write() {
    let analyzer = BottleneckAnalyzer::new();
    for config in [
        OtlpConfig::new("http://127.0.0.1:4318/v1/traces").unwrap(),
        OtlpConfig::for_mlflow("http://127.0.0.1:5000", "1").unwrap(),
    ] {
        let error = OtlpMetricsExporter::for_analyzer(config, &analyzer)
            .unwrap_err()
            .to_string();
        assert!(error.contains("/v1/metrics"), "{error}");
    }
}
