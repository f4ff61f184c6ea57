//! The tables of the run store, and a run's row read back into its record.

use rusqlite::Row;

use super::owner::Owner;
use super::{NodeTimeSplit, StoreError, WorkflowRunRecord, WorkflowStatus};

/// The tables: runs, node state snapshots, traces, owners, and each finished run's split
/// of its nodes' time into LLM and own time. `IF NOT EXISTS` throughout, so opening a store
/// written by an older version adds what it lacks (a reader that may not write reads such
/// a store's splits from its summaries instead: see [`RunStore::time_splits`]).
///
/// [`RunStore::time_splits`]: super::RunStore::time_splits
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workflow_runs (
    id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    status TEXT NOT NULL,
    config_snapshot TEXT NOT NULL,
    inputs TEXT NOT NULL,
    outputs TEXT,
    error_message TEXT,
    started_at REAL NOT NULL,
    completed_at REAL,
    duration_ms REAL,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    total_cost_usd REAL NOT NULL DEFAULT 0,
    bottleneck_info TEXT
);
CREATE INDEX IF NOT EXISTS workflow_runs_by_name ON workflow_runs (workflow_name, started_at);
CREATE TABLE IF NOT EXISTS execution_states (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    execution_time_ms REAL NOT NULL,
    cost_usd REAL NOT NULL,
    error_message TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS execution_states_by_run ON execution_states (run_id, step);
CREATE TABLE IF NOT EXISTS run_traces (
    run_id TEXT PRIMARY KEY REFERENCES workflow_runs (id) ON DELETE CASCADE,
    trace_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS node_time_splits (
    run_id TEXT NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    node_id TEXT NOT NULL,
    self_duration_ms REAL NOT NULL DEFAULT 0,
    llm_calls INTEGER NOT NULL DEFAULT 0,
    llm_failed_calls INTEGER NOT NULL DEFAULT 0,
    streamed_calls INTEGER NOT NULL DEFAULT 0,
    llm_time_ms REAL NOT NULL DEFAULT 0,
    own_time_ms REAL NOT NULL DEFAULT 0,
    ttft_p50_ms REAL,
    ttft_p95_ms REAL,
    tool_calls INTEGER NOT NULL DEFAULT 0,
    tool_time_ms REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS run_owners (
    run_id TEXT PRIMARY KEY REFERENCES workflow_runs (id) ON DELETE CASCADE,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    process_start INTEGER
);
";

/// The columns of `workflow_runs`, in the order [`RawRun::from_row`] reads them.
pub(super) const RUN_COLUMNS: &str = "id, workflow_name, status, config_snapshot, inputs, outputs, \
    error_message, started_at, completed_at, duration_ms, total_tokens, total_cost_usd, \
    bottleneck_info";

/// The columns of `node_time_splits` after `run_id`, in the order [`split_from_row`] reads
/// them.
pub(super) const SPLIT_COLUMNS: &str = "node_id, self_duration_ms, llm_calls, \
    llm_failed_calls, streamed_calls, llm_time_ms, own_time_ms, ttft_p50_ms, ttft_p95_ms, \
    tool_calls, tool_time_ms";

/// A row of `node_time_splits` (its [`SPLIT_COLUMNS`]).
pub(super) fn split_from_row(r: &Row<'_>) -> rusqlite::Result<NodeTimeSplit> {
    let count =
        |i: usize| -> rusqlite::Result<u64> { Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0)) };
    Ok(NodeTimeSplit {
        node_id: r.get(0)?,
        self_duration_ms: r.get(1)?,
        llm_calls: count(2)?,
        llm_failed_calls: count(3)?,
        streamed_calls: count(4)?,
        llm_time_ms: r.get(5)?,
        own_time_ms: r.get(6)?,
        ttft_p50_ms: r.get(7)?,
        ttft_p95_ms: r.get(8)?,
        tool_calls: count(9)?,
        tool_time_ms: r.get(10)?,
    })
}

/// What follows [`RUN_COLUMNS`] in a select of runs: the owner of the run, from
/// `run_owners` (`NULL`s in a store without that table).
pub(super) fn owner_columns(has_owners: bool) -> &'static str {
    if has_owners {
        "o.pid, o.host, o.process_start FROM workflow_runs \
         LEFT JOIN run_owners o ON o.run_id = workflow_runs.id"
    } else {
        "NULL, NULL, NULL FROM workflow_runs"
    }
}

/// A row of `workflow_runs`, before its JSON columns are parsed.
pub(super) struct RawRun {
    id: String,
    workflow_name: String,
    status: String,
    config_snapshot: String,
    inputs: String,
    outputs: Option<String>,
    error_message: Option<String>,
    started_at: f64,
    completed_at: Option<f64>,
    duration_ms: Option<f64>,
    total_tokens: i64,
    total_cost_usd: f64,
    bottleneck_info: Option<String>,
    owner: Option<Owner>,
}

impl RawRun {
    pub(super) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            workflow_name: r.get(1)?,
            status: r.get(2)?,
            config_snapshot: r.get(3)?,
            inputs: r.get(4)?,
            outputs: r.get(5)?,
            error_message: r.get(6)?,
            started_at: r.get(7)?,
            completed_at: r.get(8)?,
            duration_ms: r.get(9)?,
            total_tokens: r.get(10)?,
            total_cost_usd: r.get(11)?,
            bottleneck_info: r.get(12)?,
            owner: owner_at(r, 13)?,
        })
    }

    pub(super) fn into_record(self) -> Result<WorkflowRunRecord, StoreError> {
        Ok(WorkflowRunRecord {
            workflow_name: self.workflow_name,
            status: shown_status(&self.status, self.owner.as_ref()),
            config_snapshot: parse_json(&self.id, "config_snapshot", &self.config_snapshot)?,
            inputs: parse_json(&self.id, "inputs", &self.inputs)?,
            outputs: self
                .outputs
                .as_deref()
                .map(|s| parse_json(&self.id, "outputs", s))
                .transpose()?,
            error_message: self.error_message,
            started_at: self.started_at,
            completed_at: self.completed_at,
            duration_ms: self.duration_ms,
            total_tokens: u64::try_from(self.total_tokens).unwrap_or(0),
            total_cost_usd: self.total_cost_usd,
            bottleneck_info: self
                .bottleneck_info
                .as_deref()
                .map(|s| parse_json(&self.id, "bottleneck_info", s))
                .transpose()?,
            id: self.id,
        })
    }
}

/// `s`, a JSON column of run `run_id`, parsed; bad JSON names the run and the column.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(
    run_id: &str,
    column: &'static str,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json {
        run_id: run_id.to_owned(),
        column,
        source,
    })
}

/// The owner in columns `i..i + 3` (pid, host, process start) of `r`, if any.
pub(super) fn owner_at(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<Owner>> {
    let pid: Option<i64> = r.get(i)?;
    let host: Option<String> = r.get(i + 1)?;
    let start: Option<i64> = r.get(i + 2)?;
    Ok(match (pid.and_then(|p| u32::try_from(p).ok()), host) {
        (Some(pid), Some(host)) => Some(Owner { pid, host, start }),
        _ => None,
    })
}

/// The status a run is shown with: `running` as stored, but `interrupted` when the
/// process that ran it is known to have died (a reader that may not write, such as the
/// command-line tool, shows it so before a writer marks it).
pub(super) fn shown_status(stored: &str, owner: Option<&Owner>) -> WorkflowStatus {
    match WorkflowStatus::parse(stored) {
        WorkflowStatus::Running if owner.is_some_and(Owner::is_dead) => WorkflowStatus::Interrupted,
        status => status,
    }
}
