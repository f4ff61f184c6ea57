//! The OTLP sink: the run's trace as one OpenTelemetry trace, with a root span for the run.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use agent_profiler_mlflow::MlflowConfig;
use agent_profiler_otlp::{LlmExchange, OtlpConfig, OtlpExporter, RootSpan, Sampler};
use agent_profiler_runtime::Outcome;
use agent_profiler_runtime::cost::CostBreakdown;
use agent_profiler_runtime::now_unix_seconds;
use agent_profiler_runtime::trace::{Span, Trace};

use super::{RunSink, Warnings};
use crate::workflow::{NodeExchange, WorkflowRun};

/// The variables that name an OTLP endpoint: when one is set, traces go there rather than
/// to the MLflow server.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// An executor's OTLP exporter: chosen in code, off, or found on the first run that ends
/// (and shared by every clone of the executor from then on).
#[derive(Clone)]
pub(crate) enum OtlpChoice {
    Off,
    Given(OtlpExporter),
    Auto(Arc<OnceLock<Result<Option<OtlpExporter>, String>>>),
}

impl Default for OtlpChoice {
    fn default() -> Self {
        OtlpChoice::Auto(Arc::default())
    }
}

impl OtlpChoice {
    /// The exporter in use, once there is one.
    pub fn exporter(&self) -> Option<OtlpExporter> {
        match self {
            OtlpChoice::Off => None,
            OtlpChoice::Given(exporter) => Some(exporter.clone()),
            OtlpChoice::Auto(found) => found.get().and_then(|r| r.clone().ok().flatten()),
        }
    }

    /// The exporter for a run: the given one, or the one the environment names, else the
    /// one for `mlflow` (looked up once); `None` when traces go nowhere.
    fn resolve(&self, mlflow: Option<&MlflowConfig>) -> Result<Option<OtlpExporter>, String> {
        let found = match self {
            OtlpChoice::Off => return Ok(None),
            OtlpChoice::Given(exporter) => return Ok(Some(exporter.clone())),
            OtlpChoice::Auto(found) => found,
        };
        found
            .get_or_init(|| {
                let from_env = ENDPOINT_VARIABLES
                    .iter()
                    .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()));
                let config = match (from_env, mlflow) {
                    (true, _) => OtlpConfig::from_env(),
                    // The sampler variables hold whatever the target.
                    (false, Some(mlflow)) => OtlpConfig::from_mlflow_config(mlflow)
                        .and_then(|c| Ok(c.sampler(Sampler::from_env()?))),
                    (false, None) => return Ok(None),
                };
                config
                    .and_then(OtlpExporter::start)
                    .map(Some)
                    .map_err(|e| format!("traces not exported over OTLP: {e}"))
            })
            .clone()
    }
}

/// Hands each run's trace to the OTLP exporter, under a root span for the run (its status,
/// run id, LLM totals, and its MLflow run when there is one). Returns at once: sending
/// happens in the background, and losses are counted in the exporter's stats.
pub(crate) struct OtlpSink {
    choice: OtlpChoice,
    mlflow: Option<MlflowConfig>,
}

impl OtlpSink {
    pub fn new(choice: OtlpChoice, mlflow: Option<MlflowConfig>) -> Self {
        Self { choice, mlflow }
    }
}

impl RunSink for OtlpSink {
    fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings) {
        let Some(trace) = &run.trace else {
            return;
        };
        let exporter = match self.choice.resolve(self.mlflow.as_ref()) {
            Ok(Some(exporter)) => exporter,
            Ok(None) => return,
            Err(e) => return warnings.warn(e),
        };
        if !exporter.export(trace, root_span(run, trace)) {
            warnings.warn("trace not exported over OTLP: the exporter's queue is full".into());
        }
    }
}

/// The root span of a run: the workflow's name, the run's start and end (its duration is
/// the run's), OK or ERROR with
/// the failure, the run id and status, the LLM totals of the trace, the MLflow run, and the
/// critical path with the largest what-if saving.
fn root_span(run: &WorkflowRun, trace: &Trace) -> RootSpan {
    let record = &run.record;
    let seconds_to_ns = |s: f64| (s * 1e9).max(0.0) as u64;
    // The run's own time: it ended at `completed_at` after `duration_ms` of running. The
    // record's `started_at` comes before the sinks were told the run starts, and what they
    // did then (or do at the end) is no part of the run.
    let end = record.completed_at.unwrap_or_else(now_unix_seconds);
    let start = record.duration_ms.map_or(record.started_at, |ms| {
        (end - ms / 1e3).max(record.started_at)
    });
    let mut llm = CostBreakdown::default();
    for call in trace.spans.iter().flat_map(|s| &s.llm_calls) {
        llm.add(call);
    }
    let outcome = match run.failure {
        Some(_) => Outcome::Error,
        None => Outcome::Ok,
    };
    // Its spans stay inside it (their clock and the record's may differ by a little).
    let (mut start, mut end) = (seconds_to_ns(start), seconds_to_ns(end));
    if let Some((first, last)) = trace.bounds() {
        start = start.min(first);
        end = end.max(last);
    }
    let mut root = RootSpan::new(record.workflow_name.clone())
        .start_end(start, end)
        .outcome(outcome)
        .attribute("agent_profiler.run_id", record.id.clone())
        .attribute("agent_profiler.status", record.status.as_str())
        .llm_totals(llm);
    if let Some(failure) = &run.failure {
        root = root.status_message(failure.to_string());
    }
    if let Some(run_id) = &run.mlflow_run_id {
        root = root.mlflow_run(run_id);
    }
    if let Some(path) = &run.summary.critical_path {
        root = root.critical_path(path);
    }
    let content = &run.content;
    if let Some(inputs) = &content.inputs {
        root = root.inputs(inputs.clone());
    }
    if let Some(outputs) = &content.outputs {
        root = root.outputs(outputs.clone());
    }
    for (span_id, call) in exchange_spans(trace, &content.calls) {
        let exchange = LlmExchange {
            prompt: call.prompt.clone(),
            answer: call.answer.clone(),
        };
        root = root.exchange(span_id, exchange);
    }
    root
}

/// The span of each node call: the calls of one node, in the order they finished, are
/// that node's spans in the order they ended. A node whose spans do not match its calls one
/// for one (a profiled function under the same id, spans the trace dropped) is matched on
/// its spans with LLM calls, if those match, else left out: a prompt on the wrong span
/// would mislead.
fn exchange_spans<'a>(trace: &Trace, calls: &'a [NodeExchange]) -> Vec<(u64, &'a NodeExchange)> {
    let mut by_node: HashMap<&str, Vec<&NodeExchange>> = HashMap::new();
    for call in calls {
        by_node.entry(call.node_id.as_str()).or_default().push(call);
    }
    let mut pairs = Vec::new();
    for (node, calls) in by_node {
        if calls
            .iter()
            .all(|c| c.prompt.is_none() && c.answer.is_none())
        {
            continue;
        }
        let mut spans: Vec<&Span> = trace.spans.iter().filter(|s| s.node_id == node).collect();
        spans.sort_by_key(|s| (s.end_unix_ns, s.start_unix_ns));
        if spans.len() != calls.len() {
            spans.retain(|s| !s.llm_calls.is_empty());
            if spans.len() != calls.len() {
                continue;
            }
        }
        pairs.extend(spans.iter().map(|s| s.span_id).zip(calls));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::trace::test_support::span;

    fn call(node: &str, prompt: Option<&str>) -> NodeExchange {
        NodeExchange {
            node_id: node.to_owned(),
            prompt: prompt.map(str::to_owned),
            answer: None,
        }
    }

    #[test]
    fn calls_go_to_their_node_spans_in_order() {
        let trace = Trace {
            // In the order they ended; `a` ran twice.
            spans: vec![
                span(1, None, "a", 0, 10),
                span(3, None, "b", 5, 12),
                span(2, None, "a", 20, 30),
                span(4, None, "c", 0, 1),
                span(5, None, "c", 2, 3),
            ],
            ..Trace::default()
        };
        let calls = [
            call("a", Some("first")),
            call("b", None),
            call("a", Some("second")),
            call("c", Some("only one call for two spans")),
        ];
        let mut pairs: Vec<(u64, &str)> = exchange_spans(&trace, &calls)
            .into_iter()
            .map(|(id, c)| (id, c.prompt.as_deref().unwrap()))
            .collect();
        pairs.sort_unstable();
        // `b` has nothing to show, `c` cannot be matched.
        assert_eq!(pairs, [(1, "first"), (2, "second")]);
    }
}
