//! The OTLP sink: the run's trace as one OpenTelemetry trace, with a root span for the run.

use std::sync::{Arc, OnceLock};

use agent_profiler_mlflow::MlflowConfig;
use agent_profiler_otlp::{OtlpConfig, OtlpExporter, RootSpan};
use agent_profiler_runtime::Outcome;
use agent_profiler_runtime::cost::CostBreakdown;
use agent_profiler_runtime::now_unix_seconds;
use agent_profiler_runtime::trace::Trace;

use super::{RunSink, Warnings};
use crate::workflow::WorkflowRun;

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
                    (false, Some(mlflow)) => OtlpConfig::from_mlflow_config(mlflow),
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
/// the failure, the run id and status, the LLM totals of the trace, and the MLflow run.
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
    root
}
