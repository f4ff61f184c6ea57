//! A [`MetricsSnapshot`] as one OTLP metrics request: cumulative histograms and sums, with
//! the OpenTelemetry GenAI instrument names where they exist.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};

use agent_profiler_runtime::metrics::{
    HISTOGRAM_BOUNDS_SECONDS, MetricsSnapshot, ModelMetrics, NodeMetrics, SecondsHistogram,
};

use crate::config::OtlpConfig;
use crate::convert::{kv, resource};

/// Each node call's wall time, seconds, by node.
pub const NODE_DURATION: &str = "agent_profiler.node.duration";
/// Node calls, by node and outcome (`ok`, `error`, `panicked`, `cancelled`).
pub const NODE_CALLS: &str = "agent_profiler.node.calls";
/// Each timed LLM call's wall time, seconds (GenAI semantic conventions).
pub const OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Each streamed LLM call's time to first chunk, seconds (GenAI semantic conventions).
pub const TIME_TO_FIRST_CHUNK: &str = "gen_ai.client.operation.time_to_first_chunk";
/// Input and output tokens per LLM call (GenAI semantic conventions).
pub const TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Tokens by every type the profiler counts (`input`, `output`, `cached_input`,
/// `cache_creation`, `reasoning`).
pub const LLM_TOKENS: &str = "agent_profiler.llm.tokens";
/// LLM calls whose usage was read.
pub const LLM_CALLS: &str = "agent_profiler.llm.calls";
/// LLM calls that failed before the provider said what they used.
pub const LLM_FAILED_CALLS: &str = "agent_profiler.llm.failed_calls";
/// Cost of the priced LLM calls, USD.
pub const LLM_COST: &str = "agent_profiler.llm.cost";

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// The times every data point carries: the start of the cumulative series and now, ns since
/// the Unix epoch.
#[derive(Clone, Copy)]
pub(crate) struct Times {
    pub(crate) start_ns: u64,
    pub(crate) now_ns: u64,
}

/// `snapshot` as one OTLP request; `None` when it holds nothing.
pub(crate) fn to_request(
    snapshot: &MetricsSnapshot,
    config: &OtlpConfig,
    times: Times,
) -> Option<ExportMetricsServiceRequest> {
    let mut metrics = Metrics::new(times);
    for node in &snapshot.nodes {
        metrics.node(node);
        for model in &node.llm {
            metrics.model(node, model);
        }
    }
    let metrics = metrics.finish();
    if metrics.is_empty() {
        return None;
    }
    Some(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(config)),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "agent-profiler".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// The data points of each instrument, gathered node by node.
struct Metrics {
    times: Times,
    node_duration: Vec<HistogramDataPoint>,
    node_calls: Vec<NumberDataPoint>,
    operation_duration: Vec<HistogramDataPoint>,
    time_to_first_chunk: Vec<HistogramDataPoint>,
    token_usage: Vec<HistogramDataPoint>,
    tokens: Vec<NumberDataPoint>,
    llm_calls: Vec<NumberDataPoint>,
    failed_calls: Vec<NumberDataPoint>,
    cost: Vec<NumberDataPoint>,
}

impl Metrics {
    fn new(times: Times) -> Self {
        Self {
            times,
            node_duration: Vec::new(),
            node_calls: Vec::new(),
            operation_duration: Vec::new(),
            time_to_first_chunk: Vec::new(),
            token_usage: Vec::new(),
            tokens: Vec::new(),
            llm_calls: Vec::new(),
            failed_calls: Vec::new(),
            cost: Vec::new(),
        }
    }

    fn node(&mut self, node: &NodeMetrics) {
        let id = || vec![kv("agent_profiler.node_id", node.node_id.as_str())];
        if node.duration.count > 0 {
            let point = self.histogram(id(), &node.duration);
            self.node_duration.push(point);
        }
        let c = &node.calls;
        let by_outcome = [
            ("ok", c.ok),
            ("error", c.error),
            ("panicked", c.panicked),
            ("cancelled", c.cancelled),
        ];
        for (outcome, calls) in by_outcome {
            if calls > 0 {
                let mut attributes = id();
                attributes.push(kv("agent_profiler.outcome", outcome));
                let point = self.int(attributes, calls);
                self.node_calls.push(point);
            }
        }
    }

    fn model(&mut self, node: &NodeMetrics, model: &ModelMetrics) {
        let attributes = || {
            vec![
                kv("gen_ai.operation.name", "chat"),
                kv("gen_ai.provider.name", model.provider.as_str()),
                kv("gen_ai.request.model", model.model.as_str()),
                kv("agent_profiler.node_id", node.node_id.as_str()),
            ]
        };
        if model.duration.count > 0 {
            let point = self.histogram(attributes(), &model.duration);
            self.operation_duration.push(point);
        }
        if model.time_to_first_token.count > 0 {
            let point = self.histogram(attributes(), &model.time_to_first_token);
            self.time_to_first_chunk.push(point);
        }
        if model.calls > 0 {
            // Per-call token counts are not kept, only their sums: a histogram of one
            // bucket (count and sum) is what can be said exactly.
            for (kind, tokens) in [
                ("input", model.tokens.input),
                ("output", model.tokens.output),
            ] {
                let mut with_type = attributes();
                with_type.push(kv("gen_ai.token.type", kind));
                let point = self.sum_only(with_type, model.calls, tokens as f64);
                self.token_usage.push(point);
            }
            let point = self.int(attributes(), model.calls);
            self.llm_calls.push(point);
            let point = self.double(attributes(), model.cost_usd);
            self.cost.push(point);
        }
        for (kind, tokens) in model.tokens.by_type() {
            if tokens > 0 {
                let mut with_type = attributes();
                with_type.push(kv("gen_ai.token.type", kind));
                let point = self.int(with_type, tokens);
                self.tokens.push(point);
            }
        }
        if model.failed_calls > 0 {
            let point = self.int(attributes(), model.failed_calls);
            self.failed_calls.push(point);
        }
    }

    fn histogram(&self, attributes: Vec<KeyValue>, h: &SecondsHistogram) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: self.times.start_ns,
            time_unix_nano: self.times.now_ns,
            count: h.count,
            sum: Some(h.sum_seconds),
            bucket_counts: h.bucket_counts(),
            explicit_bounds: HISTOGRAM_BOUNDS_SECONDS.to_vec(),
            ..Default::default()
        }
    }

    fn sum_only(&self, attributes: Vec<KeyValue>, count: u64, sum: f64) -> HistogramDataPoint {
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: self.times.start_ns,
            time_unix_nano: self.times.now_ns,
            count,
            sum: Some(sum),
            bucket_counts: vec![count],
            explicit_bounds: Vec::new(),
            ..Default::default()
        }
    }

    fn number(
        &self,
        attributes: Vec<KeyValue>,
        value: number_data_point::Value,
    ) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: self.times.start_ns,
            time_unix_nano: self.times.now_ns,
            value: Some(value),
            ..Default::default()
        }
    }

    fn int(&self, attributes: Vec<KeyValue>, value: u64) -> NumberDataPoint {
        let value = i64::try_from(value).unwrap_or(i64::MAX);
        self.number(attributes, number_data_point::Value::AsInt(value))
    }

    fn double(&self, attributes: Vec<KeyValue>, value: f64) -> NumberDataPoint {
        self.number(attributes, number_data_point::Value::AsDouble(value))
    }

    /// The instruments that have data points, each with its name, unit and description.
    fn finish(self) -> Vec<Metric> {
        let histogram = |name: &str, unit: &str, description: &str, points| {
            (!Vec::is_empty(&points)).then(|| Metric {
                name: name.to_owned(),
                description: description.to_owned(),
                unit: unit.to_owned(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: points,
                    aggregation_temporality: CUMULATIVE,
                })),
                ..Default::default()
            })
        };
        let sum = |name: &str, unit: &str, description: &str, points| {
            (!Vec::is_empty(&points)).then(|| Metric {
                name: name.to_owned(),
                description: description.to_owned(),
                unit: unit.to_owned(),
                data: Some(metric::Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                })),
                ..Default::default()
            })
        };
        [
            histogram(
                NODE_DURATION,
                "s",
                "Wall time of each node call.",
                self.node_duration,
            ),
            sum(
                NODE_CALLS,
                "{call}",
                "Node calls by outcome.",
                self.node_calls,
            ),
            histogram(
                OPERATION_DURATION,
                "s",
                "GenAI operation duration.",
                self.operation_duration,
            ),
            histogram(
                TIME_TO_FIRST_CHUNK,
                "s",
                "Time to receive the first chunk of a streamed answer.",
                self.time_to_first_chunk,
            ),
            histogram(
                TOKEN_USAGE,
                "{token}",
                "Number of input and output tokens used.",
                self.token_usage,
            ),
            sum(LLM_TOKENS, "{token}", "Tokens by type.", self.tokens),
            sum(
                LLM_CALLS,
                "{call}",
                "LLM calls whose usage was read.",
                self.llm_calls,
            ),
            sum(
                LLM_FAILED_CALLS,
                "{call}",
                "LLM calls that failed before their usage was known.",
                self.failed_calls,
            ),
            sum(
                LLM_COST,
                "{USD}",
                "Cost of the priced LLM calls.",
                self.cost,
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
