//! The MLflow sink: one MLflow run per workflow run.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use agent_profiler_mlflow::{ExportStats, MlflowConfig, MlflowTracker, RunInfo, RunStatus};
use agent_profiler_runtime::cost::CostSink;
use tokio::sync::oneshot;

use super::{RunSink, RunStart, Warnings};
use crate::history::{LoggedRun, RUN_ARTIFACT, STARTED_AT_METRIC, end_tags, start_tags};
use crate::store::WorkflowStatus;
use crate::workflow::WorkflowRun;

/// How long the end of a run waits for the MLflow run to exist when it is still being
/// created (the exporter's thread creates it as the run starts): a server that refuses
/// connections ends the wait at its first failure, a slow one at this bound.
const RUN_CREATION_WAIT: Duration = Duration::from_secs(5);

/// Starts an MLflow run (named after the workflow) before the first node runs: every node
/// call goes out as `node_{id}_duration_ms`, each priced LLM call as `node_{id}_cost_usd`,
/// each timed one as `node_{id}_llm_ms` and each streamed one as `node_{id}_ttft_ms` while
/// the run runs. At the end it sets the run's MLflow id and URL,
/// logs the bottleneck report and finishes the MLflow run with the run's status on a thread
/// of its own (within the configured shutdown timeout), which the run waits for only after
/// every sink had the run ([`RunSink::settle`]): the report is printed at once.
///
/// For the run history read from MLflow ([`MlflowSource`](crate::history::MlflowSource)),
/// it also logs what a listing shows as tags (the store's run id, workflow and start when
/// the run starts, with the start as a metric to order runs by; status, end, duration,
/// cost, tokens, slowest node and error when it ends) and the run as the store keeps it
/// (record, node states, time splits) as the artifact `agent_profiler_run.json`, uploaded
/// by the exporter's thread (its own client) before the MLflow run is ended: the upload,
/// what is still queued and the final status update share one deadline, the configured
/// shutdown timeout. The run's inputs go only when prompts may leave the process
/// ([`WorkflowExecutor::store_prompts`](crate::WorkflowExecutor::store_prompts)), as for
/// the trace: else the record's inputs are `null` and the node states leave out the input
/// keys.
pub(crate) struct MlflowSink {
    config: MlflowConfig,
    tracker: OnceLock<MlflowTracker>,
    finishing: Mutex<Option<oneshot::Receiver<Finished>>>,
}

/// What the finishing thread reports: the export's statistics, and the warning of a run
/// artifact that could not be serialised or queued.
type Finished = (ExportStats, Option<String>);

impl MlflowSink {
    pub fn new(config: MlflowConfig) -> Self {
        Self {
            config,
            tracker: OnceLock::new(),
            finishing: Mutex::new(None),
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
        for (key, value) in start_tags(run.record) {
            let _ = tracker.set_tag(key, value);
        }
        let _ = tracker.log_metric(STARTED_AT_METRIC, run.record.started_at, 0);
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
        match tracker.wait_for_run_attempt(RUN_CREATION_WAIT) {
            Some(info) => {
                run.mlflow_run_url = Some(run_url(tracker.tracking_uri(), &info));
                run.mlflow_run_id = Some(info.run_id);
                run.mlflow_experiment_id = Some(info.experiment_id);
            }
            // A server that refused or failed has said so through the exporter; one that
            // has not answered at all has said nothing yet.
            None if tracker.stats().last_error.is_none() => warnings.warn(format!(
                "MLflow run not created: {} has not answered within {} s; this run's metrics \
                 are sent only if it answers before the exporter's shutdown timeout",
                tracker.tracking_uri(),
                RUN_CREATION_WAIT.as_secs()
            )),
            None => {}
        }
        for (key, value) in end_tags(&run.record) {
            let _ = tracker.set_tag(key, value);
        }
        tracker.log_bottleneck_report(&run.summary);
        let status = if run.record.status == WorkflowStatus::Completed {
            RunStatus::Finished
        } else {
            RunStatus::Failed
        };
        // Serialised off the run's threads, on the finishing thread.
        let logged = LoggedRun::new(
            run.record.clone(),
            run.states.clone(),
            run.content.inputs.is_none(),
        );
        let (done, finished) = oneshot::channel();
        let finisher = tracker.clone();
        let spawned = std::thread::Builder::new()
            .name("agent-profiler-mlflow-finish".to_owned())
            .spawn(move || {
                let unqueued = queue_run(&finisher, &logged);
                // One deadline for the whole end: the exporter uploads the artifact with
                // what is queued, within the shutdown timeout `finish` waits for.
                let stats = finisher.finish(status);
                let _ = done.send((stats, unqueued));
            });
        match spawned {
            Ok(_) => {
                *self
                    .finishing
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(finished);
            }
            Err(_) => {
                if let Some(warning) = incomplete(&tracker.finish(status)) {
                    warnings.warn(warning);
                }
            }
        }
    }

    fn settle(&self) -> Option<Pin<Box<dyn Future<Output = Vec<String>> + Send>>> {
        let finished = self
            .finishing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        Some(Box::pin(async move {
            match finished.await {
                // One warning tells what MLflow lost, the run's record included.
                Ok((stats, unqueued)) => {
                    let lost = unqueued.or_else(|| artifact_lost(&stats));
                    match (incomplete(&stats), lost) {
                        (Some(warning), Some(lost)) => vec![format!("{warning}; {lost}")],
                        (warning, lost) => warning.into_iter().chain(lost).collect(),
                    }
                }
                Err(_) => vec!["MLflow export: the run could not be finished".to_owned()],
            }
        }))
    }
}

/// Queues the run's artifact for the exporter; the warning when it could not be.
fn queue_run(tracker: &MlflowTracker, logged: &LoggedRun) -> Option<String> {
    let queued = serde_json::to_vec(logged)
        .map_err(|e| e.to_string())
        .and_then(|bytes| {
            tracker
                .log_artifact(RUN_ARTIFACT, bytes, "application/json")
                .map_err(|e| e.to_string())
        });
    queued.err().map(|e| {
        format!(
            "MLflow: the run's {RUN_ARTIFACT} not uploaded ({e}); the run history read from \
             MLflow will list the run as corrupt"
        )
    })
}

/// What a failed upload of the run's artifact means for the history.
fn artifact_lost(stats: &ExportStats) -> Option<String> {
    (stats.artifacts_failed > 0).then(|| {
        format!(
            "MLflow: the run's {RUN_ARTIFACT} not uploaded; the run history read from MLflow \
             will list the run as corrupt"
        )
    })
}

/// The warning of an export that lost something.
fn incomplete(stats: &ExportStats) -> Option<String> {
    stats
        .anything_lost()
        .then(|| format!("MLflow export incomplete: {stats}"))
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
