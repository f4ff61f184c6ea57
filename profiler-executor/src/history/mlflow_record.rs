//! What the executor logs to MLflow so that the run history can be read back from there:
//! the tags a listing reads (one `runs/search`, no download), and one JSON artifact with the
//! run as the run store keeps it. The MLflow sink writes this; [`MlflowSource`] reads it.
//!
//! | where | key | value |
//! |---|---|---|
//! | tag, at the start | `agent_profiler.run_id` | the store's run id |
//! | tag, at the start | `agent_profiler.workflow` | the workflow's name |
//! | tag, at the start | `agent_profiler.started_at` | start, Unix seconds |
//! | metric, at the start | `agent_profiler.started_at` | the same (runs are ordered by it) |
//! | tag, at the end | `agent_profiler.status` | `completed`, `failed` or `panicked` |
//! | tag, at the end | `agent_profiler.completed_at`, `.duration_ms` | end (Unix seconds), wall time (ms) |
//! | tag, at the end | `agent_profiler.total_cost_usd`, `.total_tokens` | the run's LLM cost and tokens |
//! | tag, at the end | `agent_profiler.llm_calls`, `.unpriced_calls` | from the summary |
//! | tag, at the end | `agent_profiler.slowest_node`, `.slowest_node_ms` | from the summary |
//! | tag, at the end | `agent_profiler.error` | why the run failed (cut to 8000 characters) |
//! | artifact, at the end | `agent_profiler_run.json` | [`LoggedRun`]: the record, node states, time splits |
//!
//! Numbers in tags are written as Rust prints an `f64` (the shortest text that reads back
//! as the same number), so a listing read from tags shows what the store shows.
//!
//! [`MlflowSource`]: super::MlflowSource

use agent_profiler_mlflow::Run;
use serde::{Deserialize, Serialize};

use crate::store::{
    ExecutionStateRecord, NodeTimeSplit, RunListing, WorkflowRunRecord, WorkflowStatus,
};

/// The artifact holding a run's [`LoggedRun`].
pub const RUN_ARTIFACT: &str = "agent_profiler_run.json";

/// The version of [`LoggedRun`]'s layout written by this executor.
pub const RUN_FORMAT: u32 = 1;

/// The tag naming the store's run id: an MLflow run without it was not made by the
/// executor.
pub const RUN_ID_TAG: &str = "agent_profiler.run_id";
/// The tag naming the workflow.
pub const WORKFLOW_TAG: &str = "agent_profiler.workflow";
/// The tag of the run's start, Unix seconds.
pub const STARTED_AT_TAG: &str = "agent_profiler.started_at";
/// The metric of the run's start, Unix seconds: what MLflow orders runs by.
pub const STARTED_AT_METRIC: &str = "agent_profiler.started_at";
/// The tag of how the run ended, set when it ends.
pub const STATUS_TAG: &str = "agent_profiler.status";
const COMPLETED_AT_TAG: &str = "agent_profiler.completed_at";
const DURATION_TAG: &str = "agent_profiler.duration_ms";
const COST_TAG: &str = "agent_profiler.total_cost_usd";
const TOKENS_TAG: &str = "agent_profiler.total_tokens";
const LLM_CALLS_TAG: &str = "agent_profiler.llm_calls";
const UNPRICED_TAG: &str = "agent_profiler.unpriced_calls";
const SLOWEST_TAG: &str = "agent_profiler.slowest_node";
const SLOWEST_MS_TAG: &str = "agent_profiler.slowest_node_ms";
const ERROR_TAG: &str = "agent_profiler.error";

/// One run as the run store keeps it: the content of [`RUN_ARTIFACT`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoggedRun {
    /// The layout's version ([`RUN_FORMAT`]).
    pub format: u32,
    /// The record: workflow, status, start and end, totals, the summary with node timings,
    /// bottlenecks and critical path. Its inputs are `null` when the executor was not
    /// allowed to let prompts out of the process ([`inputs_withheld`](Self::inputs_withheld)).
    pub record: WorkflowRunRecord,
    /// Each node's state snapshot, as stored (without the input keys when the inputs are
    /// withheld).
    pub states: Vec<ExecutionStateRecord>,
    /// Each node's LLM and own time, as the store lists them.
    pub time_splits: Vec<NodeTimeSplit>,
    /// Whether the run's inputs were left out (they fill the prompts, and the executor was
    /// not allowed to let prompts out of the process): from the record, and from the node
    /// states' keys that held them.
    #[serde(default)]
    pub inputs_withheld: bool,
}

impl LoggedRun {
    /// The artifact of `record` with its node `states`; its time splits are those of its
    /// summary, in the store's order (widest LLM time first, ties by node id). With
    /// `withhold_inputs` (prompts may not leave the process, and the inputs fill them), the
    /// record's inputs are `null` and each state leaves out the keys that still hold the
    /// input's value.
    pub fn new(
        mut record: WorkflowRunRecord,
        mut states: Vec<ExecutionStateRecord>,
        withhold_inputs: bool,
    ) -> Self {
        let mut time_splits: Vec<NodeTimeSplit> = record
            .bottleneck_info
            .iter()
            .flat_map(|s| &s.nodes)
            .map(NodeTimeSplit::from_timings)
            .collect();
        time_splits.sort_by(|a, b| {
            b.llm_time_ms
                .total_cmp(&a.llm_time_ms)
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        if withhold_inputs {
            let inputs = std::mem::take(&mut record.inputs);
            if let Some(given) = inputs.as_object() {
                for state in &mut states {
                    if let Some(obj) = state.state.as_object_mut() {
                        obj.retain(|k, v| given.get(k) != Some(v));
                    }
                }
            }
        }
        Self {
            format: RUN_FORMAT,
            record,
            states,
            time_splits,
            inputs_withheld: withhold_inputs,
        }
    }
}

/// The tags set when a run starts: its store id, workflow and start.
pub fn start_tags(record: &WorkflowRunRecord) -> Vec<(&'static str, String)> {
    vec![
        (RUN_ID_TAG, record.id.clone()),
        (WORKFLOW_TAG, record.workflow_name.clone()),
        (STARTED_AT_TAG, record.started_at.to_string()),
    ]
}

/// The tags set when a run ends: what a listing shows of it.
pub fn end_tags(record: &WorkflowRunRecord) -> Vec<(&'static str, String)> {
    let mut tags = vec![
        (STATUS_TAG, record.status.as_str().to_owned()),
        (COST_TAG, record.total_cost_usd.to_string()),
        (TOKENS_TAG, record.total_tokens.to_string()),
    ];
    if let Some(at) = record.completed_at {
        tags.push((COMPLETED_AT_TAG, at.to_string()));
    }
    if let Some(ms) = record.duration_ms {
        tags.push((DURATION_TAG, ms.to_string()));
    }
    if let Some(summary) = &record.bottleneck_info {
        tags.push((LLM_CALLS_TAG, summary.llm_calls.to_string()));
        tags.push((UNPRICED_TAG, summary.unpriced_calls.to_string()));
        if let Some(slowest) = &summary.slowest_node {
            tags.push((SLOWEST_TAG, slowest.node_id.clone()));
            tags.push((SLOWEST_MS_TAG, slowest.total_duration_ms.to_string()));
        }
    }
    if let Some(error) = &record.error_message {
        tags.push((ERROR_TAG, error.clone()));
    }
    tags
}

/// The status a logged run shows: its status tag once it ended; before, `running` while
/// MLflow has it running, else `interrupted` (its process ended before the run did: the
/// MLflow run was ended without the executor's end).
fn status_of(run: &Run) -> (WorkflowStatus, bool) {
    match run.data.tag(STATUS_TAG) {
        Some("completed") => (WorkflowStatus::Completed, true),
        Some("failed") => (WorkflowStatus::Failed, true),
        Some("panicked") => (WorkflowStatus::Panicked, true),
        Some(_) => (WorkflowStatus::Failed, false),
        None if run.info.status == "RUNNING" => (WorkflowStatus::Running, true),
        None => (WorkflowStatus::Interrupted, true),
    }
}

/// The store's run id of an MLflow run the executor made; `None` for any other run.
pub fn store_run_id(run: &Run) -> Option<&str> {
    run.data.tag(RUN_ID_TAG).filter(|id| !id.is_empty())
}

/// Whether the run ended (its status tag is set): only then has it its artifact.
pub fn has_ended(run: &Run) -> bool {
    run.data.tag(STATUS_TAG).is_some()
}

/// A run of a listing from an MLflow run's tags, as [`RunStore::list_runs_brief`] lists
/// it from the store; `None` for a run the executor did not make (no
/// [`RUN_ID_TAG`]). A tag that does not read is named in [`RunListing::corrupt`].
///
/// [`RunStore::list_runs_brief`]: crate::store::RunStore::list_runs_brief
pub fn listing_of(run: &Run) -> Option<RunListing> {
    let id = store_run_id(run)?.to_owned();
    let tags = &run.data;
    let mut bad: Vec<&str> = Vec::new();
    let mut number = |key: &'static str| -> Option<f64> {
        let text = tags.tag(key)?;
        match text.parse::<f64>() {
            Ok(v) => Some(v),
            Err(_) => {
                bad.push(key);
                None
            }
        }
    };
    let started_at = number(STARTED_AT_TAG);
    let completed_at = number(COMPLETED_AT_TAG);
    let duration_ms = number(DURATION_TAG);
    let total_cost_usd = number(COST_TAG).unwrap_or(0.0);
    let slowest_ms = number(SLOWEST_MS_TAG);
    let mut count = |key: &'static str| -> Option<u64> {
        let text = tags.tag(key)?;
        match text.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                bad.push(key);
                None
            }
        }
    };
    let total_tokens = count(TOKENS_TAG).unwrap_or(0);
    let llm_calls = count(LLM_CALLS_TAG);
    let unpriced_calls = count(UNPRICED_TAG).unwrap_or(0);
    let workflow_name = tags.tag(WORKFLOW_TAG).map(str::to_owned);
    if workflow_name.is_none() {
        bad.push(WORKFLOW_TAG);
    }
    if started_at.is_none() && !bad.contains(&STARTED_AT_TAG) {
        bad.push(STARTED_AT_TAG);
    }
    let (status, known) = status_of(run);
    if !known {
        bad.push(STATUS_TAG);
    }
    // An ended run has its totals: without them its end was not (fully) logged.
    if has_ended(run) {
        for key in [COST_TAG, TOKENS_TAG] {
            if tags.tag(key).is_none() && !bad.contains(&key) {
                bad.push(key);
            }
        }
    }
    let corrupt = (!bad.is_empty()).then(|| {
        format!(
            "corrupt MLflow run (bad or missing tag `{}`)",
            bad.join("`, `")
        )
    });
    Some(RunListing {
        id,
        workflow_name: workflow_name.unwrap_or_default(),
        status,
        started_at: started_at.unwrap_or(0.0),
        completed_at,
        duration_ms,
        total_cost_usd,
        total_tokens,
        error_message: tags.tag(ERROR_TAG).map(str::to_owned),
        has_summary: llm_calls.is_some() && corrupt.is_none(),
        llm_calls: llm_calls.unwrap_or(0),
        unpriced_calls,
        slowest_node: tags
            .tag(SLOWEST_TAG)
            .map(|node| (node.to_owned(), slowest_ms.unwrap_or(0.0))),
        corrupt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::finished;
    use agent_profiler_mlflow::{RunData, RunInfo, RunTag};

    fn mlflow_run(tags: Vec<(&str, String)>, status: &str) -> Run {
        Run {
            info: RunInfo {
                run_id: "m1".into(),
                status: status.into(),
                ..RunInfo::default()
            },
            data: RunData {
                tags: tags.into_iter().map(|(k, v)| RunTag::new(k, v)).collect(),
                ..RunData::default()
            },
        }
    }

    #[test]
    fn a_listing_reads_back_from_the_tags_as_the_store_lists_it() {
        let mut record = finished("wf", "abc", 1_764_668_506.123_456_7, &[("a", 10.1)]);
        record.total_cost_usd = 0.1 + 0.2;
        record.error_message = Some("why".into());
        let mut tags = start_tags(&record);
        tags.extend(end_tags(&record));
        let listing = listing_of(&mlflow_run(tags, "FINISHED")).unwrap();
        assert_eq!(listing.corrupt, None);
        assert_eq!(listing.id, "abc");
        assert_eq!(listing.started_at, record.started_at, "exact");
        assert_eq!(listing.total_cost_usd, 0.1 + 0.2, "exact");
        assert_eq!(listing.duration_ms, record.duration_ms);
        assert_eq!(listing.slowest_node, Some(("a".to_owned(), 10.1)));
        assert_eq!(listing.status, WorkflowStatus::Completed);
        assert!(listing.has_summary);
        assert_eq!(listing.error_message.as_deref(), Some("why"));
    }

    #[test]
    fn running_interrupted_foreign_and_corrupt_runs() {
        let record = finished("wf", "abc", 1.0, &[("a", 1.0)]);
        let started = start_tags(&record);
        let running = listing_of(&mlflow_run(started.clone(), "RUNNING")).unwrap();
        assert_eq!(running.status, WorkflowStatus::Running);
        assert!(!running.has_summary);
        let ended = listing_of(&mlflow_run(started.clone(), "KILLED")).unwrap();
        assert_eq!(ended.status, WorkflowStatus::Interrupted);
        assert!(listing_of(&mlflow_run(vec![], "FINISHED")).is_none());
        let mut bad = started;
        bad[2].1 = "yesterday".into();
        let corrupt = listing_of(&mlflow_run(bad, "FINISHED")).unwrap();
        assert_eq!(
            corrupt.corrupt.as_deref(),
            Some("corrupt MLflow run (bad or missing tag `agent_profiler.started_at`)")
        );
    }
}
