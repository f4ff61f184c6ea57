//! The MLflow sink: one MLflow run per workflow run.

use std::sync::{Arc, OnceLock};

use agent_profiler_mlflow::{MlflowConfig, MlflowTracker, RunInfo, RunStatus};
use agent_profiler_runtime::cost::CostSink;

use super::{RunSink, RunStart, Warnings};
use crate::store::WorkflowStatus;
use crate::workflow::WorkflowRun;

/// Starts an MLflow run (named after the workflow) before the first node runs: every node
/// call goes out as `node_{id}_duration_ms` and each priced LLM call as
/// `node_{id}_cost_usd` while the run runs. At the end it logs the bottleneck report,
/// finishes the MLflow run with the run's status, and sets the run's MLflow id and URL.
pub(crate) struct MlflowSink {
    config: MlflowConfig,
    tracker: OnceLock<MlflowTracker>,
}

impl MlflowSink {
    pub fn new(config: MlflowConfig) -> Self {
        Self {
            config,
            tracker: OnceLock::new(),
        }
    }

    fn start(&self, run: &RunStart<'_>) -> Result<MlflowTracker, String> {
        let name = &run.record.workflow_name;
        let mut config = self.config.clone().run_name(name);
        if !config.has_warning_sink() {
            // The run's own warning says what was lost, once (`run_finished`): the exporter's
            // stderr lines would say it again.
            config = config.warnings(false);
        }
        let tracker = MlflowTracker::start(config).map_err(|e| e.to_string())?;
        tracker.attach(run.analyzer);
        let _ = tracker.log_param("workflow", name);
        let _ = tracker.log_param("llm_client", run.llm_client);
        let _ = tracker.set_tag("agent_profiler.run_id", &run.record.id);
        Ok(tracker)
    }
}

impl RunSink for MlflowSink {
    fn run_started(&self, run: &RunStart<'_>, warnings: &Warnings) -> Option<Arc<dyn CostSink>> {
        match self.start(run) {
            Ok(tracker) => Some(self.tracker.get_or_init(|| tracker).cost_sink()),
            Err(e) => {
                warnings.warn(format!("MLflow not used: {e}"));
                None
            }
        }
    }

    fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings) {
        let Some(tracker) = self.tracker.get() else {
            return;
        };
        // No separate wait for the run to exist: `finish` creates it if it can, within the
        // shutdown timeout, and a server that refuses connections is given up on at once.
        tracker.log_bottleneck_report(&run.summary);
        let stats = tracker.finish(if run.record.status == WorkflowStatus::Completed {
            RunStatus::Finished
        } else {
            RunStatus::Failed
        });
        if stats.anything_lost() {
            warnings.warn(format!("MLflow export incomplete: {stats}"));
        }
        if let Some(info) = tracker.run_info() {
            run.mlflow_run_url = Some(run_url(tracker.tracking_uri(), &info));
            run.mlflow_run_id = Some(info.run_id);
            run.mlflow_experiment_id = Some(info.experiment_id);
        }
    }
}

/// Where MLflow's UI shows the run.
fn run_url(tracking_uri: &str, info: &RunInfo) -> String {
    format!(
        "{}/#/experiments/{}/runs/{}",
        tracking_uri.trim_end_matches('/'),
        info.experiment_id,
        info.run_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let info = RunInfo {
            run_id: "abc".into(),
            experiment_id: "7".into(),
            ..RunInfo::default()
        };
        assert_eq!(
            run_url("http://127.0.0.1:5000/", &info),
            "http://127.0.0.1:5000/#/experiments/7/runs/abc"
        );
        assert_eq!(
            run_url("https://mlflow.example/prefix", &info),
            "https://mlflow.example/prefix/#/experiments/7/runs/abc"
        );
    }
}
