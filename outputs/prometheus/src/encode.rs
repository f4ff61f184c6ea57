//! A snapshot as Prometheus metric families, encoded by `prometheus-client` at scrape time.

use std::fmt::Error;

use agent_profiler_runtime::Outcome;
use agent_profiler_runtime::metrics::{
    HISTOGRAM_BOUNDS_SECONDS, MetricsSnapshot, ModelMetrics, NodeMetrics, SecondsHistogram,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet, prometheus_text, text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::Format;

/// `snapshot` (and the number of analyzers read live) in `format`.
pub(crate) fn encode(snapshot: &MetricsSnapshot, live: usize, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SnapshotCollector {
        snapshot: snapshot.clone(),
        live,
    }));
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector only fails on what the encoder
    // refuses, which the names and labels below never are.
    let written = match format {
        Format::OpenMetrics => text::encode(&mut out, &registry),
        Format::Text => prometheus_text::encode(&mut out, &registry),
    };
    debug_assert!(written.is_ok(), "{written:?}");
    out
}

/// A metric family of the per-model figures: its name, its help, and the figure it shows.
type Family<T> = (&'static str, &'static str, fn(&ModelMetrics) -> T);
/// The same for a histogram.
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&ModelMetrics) -> &SecondsHistogram,
);

#[derive(Debug)]
struct SnapshotCollector {
    snapshot: MetricsSnapshot,
    live: usize,
}

const OUTCOMES: [Outcome; 4] = [
    Outcome::Ok,
    Outcome::Error,
    Outcome::Panicked,
    Outcome::Cancelled,
];

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let nodes = &self.snapshot.nodes;
        let mut family = encoder.encode_descriptor(
            "agent_profiler_node_calls",
            "Profiled calls of a node, by how they ended.",
            None,
            MetricType::Counter,
        )?;
        for node in nodes {
            for outcome in OUTCOMES {
                let labels = [
                    ("node", node.node_id.as_str()),
                    ("outcome", outcome.as_str()),
                ];
                counter(&mut family, &labels, node.calls.get(outcome))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agent_profiler_node_duration",
            "Wall time of a node's calls, nested profiled calls included.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for node in nodes {
            histogram(
                &mut family,
                &[("node", node.node_id.as_str())],
                &node.duration,
            )?;
        }
        let models = || nodes.iter().flat_map(|n| n.llm.iter().map(move |m| (n, m)));
        let counters: [Family<u64>; 3] = [
            (
                "agent_profiler_llm_calls",
                "LLM calls made in a node whose usage was read (priced or not).",
                |m| m.calls,
            ),
            (
                "agent_profiler_llm_failed_calls",
                "LLM calls that failed before the provider said what they used: no tokens, no cost.",
                |m| m.failed_calls,
            ),
            (
                "agent_profiler_llm_unpriced_calls",
                "LLM calls whose usage was read but that have no price: their cost is not in the cost counter.",
                |m| m.unpriced_calls,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (node, model) in models() {
                counter(&mut family, &model_labels(node, model), value(model))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agent_profiler_llm_tokens",
            "LLM tokens by type; input includes cached_input and cache_creation, output includes reasoning.",
            None,
            MetricType::Counter,
        )?;
        for (node, model) in models() {
            for (kind, count) in model.tokens.by_type() {
                let [a, b, c] = model_labels(node, model);
                counter(&mut family, &[a, b, c, ("type", kind)], count)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agent_profiler_llm_cost_usd",
            "Cost of the priced LLM calls, USD.",
            None,
            MetricType::Counter,
        )?;
        for (node, model) in models() {
            let labels = model_labels(node, model);
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, f64, f64>(&model.cost_usd, None)?;
        }
        let histograms: [HistogramFamily; 2] = [
            (
                "agent_profiler_llm_call_duration",
                "Wall time of timed LLM calls, from the request to the last byte or the failure.",
                |m| &m.duration,
            ),
            (
                "agent_profiler_llm_time_to_first_token",
                "Time from the request to the first content chunk of streamed LLM calls.",
                |m| &m.time_to_first_token,
            ),
        ];
        for (name, help, value) in histograms {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for (node, model) in models() {
                histogram(&mut family, &model_labels(node, model), value(model))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "agent_profiler_analyzers",
            "Analyzers read live at this scrape (the figures of finished ones stay in the counters).",
            None,
            MetricType::Gauge,
        )?;
        family.encode_gauge(&(self.live as u64))?;
        Ok(())
    }
}

fn model_labels<'a>(node: &'a NodeMetrics, model: &'a ModelMetrics) -> [(&'a str, &'a str); 3] {
    [
        ("node", node.node_id.as_str()),
        ("provider", model.provider.as_str()),
        ("model", model.model.as_str()),
    ]
}

fn counter(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    value: u64,
) -> Result<(), Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, u64, u64>(&value, None)
}

fn histogram(
    family: &mut MetricEncoder,
    labels: &impl EncodeLabelSet,
    h: &SecondsHistogram,
) -> Result<(), Error> {
    // The encoder takes each bucket's own count and adds them up itself.
    let mut buckets: Vec<(f64, u64)> = HISTOGRAM_BOUNDS_SECONDS
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(h.bucket_counts())
        .collect();
    buckets.truncate(HISTOGRAM_BOUNDS_SECONDS.len() + 1);
    family
        .encode_family(labels)?
        .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
}
