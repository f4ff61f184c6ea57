//! The records of the run store and how a run ended.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use agent_profiler_runtime::{Summary, now_unix_seconds};
use uuid::Uuid;

/// How a workflow run ended (or that it has not yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Started, not finished.
    Running,
    /// Every node succeeded.
    Completed,
    /// A node returned an error, or the workflow did.
    Failed,
    /// A node or the workflow panicked.
    Panicked,
    /// The process running it ended (killed, crashed) before the run finished: what
    /// finished before is kept (node states, their cost, the trace so far).
    Interrupted,
}

impl WorkflowStatus {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Panicked => "panicked",
            WorkflowStatus::Interrupted => "interrupted",
        }
    }

    /// The status stored as `s`; an unknown name reads as `Failed`.
    pub(super) fn parse(s: &str) -> Self {
        match s {
            "running" => WorkflowStatus::Running,
            "completed" => WorkflowStatus::Completed,
            "panicked" => WorkflowStatus::Panicked,
            "interrupted" => WorkflowStatus::Interrupted,
            _ => WorkflowStatus::Failed,
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One workflow run: what ran, on what, how it ended, and its bottleneck report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRunRecord {
    /// A unique id.
    pub id: String,
    /// The workflow's name.
    pub workflow_name: String,
    /// How the run ended.
    pub status: WorkflowStatus,
    /// The configuration the run used (API keys by source, never by value).
    pub config_snapshot: Value,
    /// The inputs.
    pub inputs: Value,
    /// The final state, when the run completed.
    pub outputs: Option<Value>,
    /// Why the run failed.
    pub error_message: Option<String>,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// End, seconds since the Unix epoch.
    pub completed_at: Option<f64>,
    /// Wall time of the run, ms.
    pub duration_ms: Option<f64>,
    /// LLM tokens of every node.
    pub total_tokens: u64,
    /// LLM cost of every node, USD.
    pub total_cost_usd: f64,
    /// The analyzer's summary at the end of the run: per-node figures, the slowest node and
    /// the bottlenecks (stored in the `bottleneck_info` column).
    pub bottleneck_info: Option<Summary>,
}

impl WorkflowRunRecord {
    /// A record of a run of `workflow_name` starting now, with a fresh id: a random
    /// (version 4) UUID, whose first eight hex digits are random too, so that users can
    /// name a run by typing just those.
    pub fn started(workflow_name: &str, config_snapshot: Value, inputs: Value) -> Self {
        let now = now_unix_seconds();
        Self {
            id: Uuid::new_v4().to_string(),
            workflow_name: workflow_name.to_owned(),
            status: WorkflowStatus::Running,
            config_snapshot,
            inputs,
            outputs: None,
            error_message: None,
            started_at: now,
            completed_at: None,
            duration_ms: None,
            total_tokens: 0,
            total_cost_usd: 0.0,
            bottleneck_info: None,
        }
    }

    /// The report the workflow executor printed at the end of this run, rebuilt from the
    /// record: [`bottleneck_report`](crate::console::bottleneck_report) of the stored
    /// summary, then, when the summary has one, the critical path after a blank line
    /// ([`CriticalPath::to_text`](agent_profiler_runtime::critical::CriticalPath::to_text):
    /// the path, the slack of the calls off it, the what-if table and the verdict), then the
    /// line `` workflow `{name}` {status} in {ms}ms (run {id}) ``, with `: {error}` when the
    /// run failed. `None` when the run has no summary (still running,
    /// or its process ended before the end of the run).
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    /// use agent_profiler_executor::store::{WorkflowRunRecord, WorkflowStatus};
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.record_node("slow", 450.0).unwrap();
    /// let mut run = WorkflowRunRecord::started("demo", serde_json::json!({}), serde_json::json!({}));
    /// assert_eq!(run.report(), None);
    /// run.status = WorkflowStatus::Completed;
    /// run.duration_ms = Some(451.2);
    /// run.bottleneck_info = Some(analyzer.get_summary());
    /// let report = run.report().unwrap();
    /// assert!(report.starts_with("Slowest node: slow (450.00ms avg)\n"));
    /// assert!(report.ends_with(&format!("workflow `demo` completed in 451ms (run {})\n", run.id)));
    /// ```
    pub fn report(&self) -> Option<String> {
        let summary = self.bottleneck_info.as_ref()?;
        let mut report = crate::console::bottleneck_report(summary);
        // The trailer stays the last line (scripts read the run's outcome there).
        if let Some(path) = &summary.critical_path {
            report.push('\n');
            report.push_str(&path.to_text(&summary.bottlenecks));
        }
        report.push_str(&format!(
            "workflow `{}` {} in {:.0}ms (run {}){}\n",
            self.workflow_name,
            self.status,
            self.duration_ms.unwrap_or(0.0),
            self.id,
            self.error_message
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        Some(report)
    }
}

/// One node's state after it ran: its output object (with `_execution_time_ms` and
/// `_cost_usd`), or its error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExecutionStateRecord {
    /// The run.
    pub run_id: String,
    /// The node.
    pub node_id: String,
    /// The position of the node in the run (0-based, in order of completion).
    pub step: u32,
    /// `completed` or `failed`.
    pub status: String,
    /// The node's output state (a JSON object).
    pub state: Value,
    /// The node's time, ms.
    pub execution_time_ms: f64,
    /// The node's LLM cost, USD.
    pub cost_usd: f64,
    /// Why the node failed.
    pub error_message: Option<String>,
    /// When the node finished, seconds since the Unix epoch.
    pub created_at: f64,
}

/// How one node's self time in a run splits into waiting on LLM calls and its own code: a
/// row of the store's `node_time_splits` table, written with the run's summary when the
/// run ends. The figures are those of the node's
/// [`NodeTimings`](agent_profiler_runtime::NodeTimings) of the same name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTimeSplit {
    /// The node.
    pub node_id: String,
    /// Its self time, ms.
    pub self_duration_ms: f64,
    /// LLM calls with usage.
    pub llm_calls: u64,
    /// Timed LLM calls that failed before any usage was billed.
    pub llm_failed_calls: u64,
    /// Streamed LLM calls that sent a first chunk.
    pub streamed_calls: u64,
    /// The union of its timed LLM calls' intervals, ms.
    pub llm_time_ms: f64,
    /// Self time less LLM time, ms.
    pub own_time_ms: f64,
    /// Median time to first token, ms; `None` without streamed calls.
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile of the time to first token, ms.
    pub ttft_p95_ms: Option<f64>,
    /// Timed tool calls.
    pub tool_calls: u64,
    /// Their time (part of the own time), ms.
    pub tool_time_ms: f64,
}

impl NodeTimeSplit {
    /// The split of a node's figures from a run's summary.
    pub fn from_timings(node: &agent_profiler_runtime::NodeTimings) -> Self {
        Self {
            node_id: node.node_id.clone(),
            self_duration_ms: node.self_duration_ms,
            llm_calls: node.llm_calls,
            llm_failed_calls: node.llm_failed_calls,
            streamed_calls: node.streamed_calls,
            llm_time_ms: node.llm_time_ms,
            own_time_ms: node.own_time_ms,
            ttft_p50_ms: node.ttft_p50_ms,
            ttft_p95_ms: node.ttft_p95_ms,
            tool_calls: node.tool_calls,
            tool_time_ms: node.tool_time_ms,
        }
    }
}
