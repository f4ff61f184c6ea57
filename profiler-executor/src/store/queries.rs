//! What the run store saves and reads: runs, node states, traces, and runs found by id or
//! by the start of an id.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use agent_profiler_runtime::trace::Trace;

use super::schema::{
    RUN_COLUMNS, RawRun, SPLIT_COLUMNS, owner_columns, parse_json, split_from_row,
};
use super::{
    AMBIGUOUS_IDS_SHOWN, ExecutionStateRecord, NodeTimeSplit, RunStore, StoreError,
    WorkflowRunRecord,
};

impl RunStore {
    /// Inserts `run`, or updates the stored run with the same id (its node states stay).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails.
    pub fn save_run(&self, run: &WorkflowRunRecord) -> Result<(), StoreError> {
        self.sql(|c| upsert_run(c, run))
    }

    /// The run with id `id`, with its bottleneck info.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn get_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>, StoreError> {
        let raw = self.sql(|c| {
            c.query_row(
                &format!(
                    "SELECT {RUN_COLUMNS}, {} WHERE id = ?1",
                    owner_columns(self.has_owners)
                ),
                params![id],
                RawRun::from_row,
            )
            .optional()
        })?;
        raw.map(RawRun::into_record).transpose()
    }

    /// How each node's self time in run `id` split into LLM time and own time, widest LLM
    /// time first (ties by node id). A run stored before the store kept splits, or a store
    /// without the table opened read-only, gives them from the run's summary, whose older
    /// form reads as zeros and `None`. Empty for a run without a summary (still running,
    /// interrupted) or an unknown id.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or the summary holds bad JSON.
    pub fn time_splits(&self, id: &str) -> Result<Vec<NodeTimeSplit>, StoreError> {
        let mut splits = if self.has_splits {
            self.sql(|c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {SPLIT_COLUMNS} FROM node_time_splits WHERE run_id = ?1"
                ))?;
                let rows = stmt.query_map(params![id], split_from_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?
        } else {
            Vec::new()
        };
        if splits.is_empty() {
            let summary = self.get_run(id)?.and_then(|run| run.bottleneck_info);
            splits = summary
                .iter()
                .flat_map(|s| &s.nodes)
                .map(NodeTimeSplit::from_timings)
                .collect();
        }
        splits.sort_by(|a, b| {
            b.llm_time_ms
                .total_cmp(&a.llm_time_ms)
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        Ok(splits)
    }

    /// The last `limit` runs of `workflow_name`, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn recent_runs(
        &self,
        workflow_name: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.runs_where("workflow_name = ?1", Some(workflow_name), limit)
    }

    /// The last `limit` finished runs (completed, failed or panicked: not those still running or
    /// interrupted
    /// running) of `workflow_name`, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON (naming the run).
    pub fn finished_runs(
        &self,
        workflow_name: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.runs_where(
            "workflow_name = ?1 AND status NOT IN ('running', 'interrupted')",
            Some(workflow_name),
            limit,
        )
    }

    /// [`finished_runs`](Self::finished_runs) without what figures across runs never
    /// read: the configuration snapshot, the inputs and the outputs (read as `null`).
    pub(crate) fn finished_runs_for_figures(
        &self,
        workflow_name: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.select_runs(
            LIGHT_RUN_COLUMNS,
            "workflow_name = ?1 AND status NOT IN ('running', 'interrupted')",
            Some(workflow_name),
            limit,
        )
    }

    /// The last `limit` runs that meet `condition` (SQL over the run's columns, naming
    /// `workflow_name` as `?1` when given), newest first.
    fn runs_where(
        &self,
        condition: &str,
        workflow_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        self.select_runs(RUN_COLUMNS, condition, workflow_name, limit)
    }

    /// [`runs_where`](Self::runs_where), reading `columns` (in the order of
    /// [`RUN_COLUMNS`]).
    fn select_runs(
        &self,
        columns: &str,
        condition: &str,
        workflow_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raws = self.sql(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {columns}, {} WHERE {condition} \
                 ORDER BY started_at DESC, workflow_runs.rowid DESC LIMIT ?2",
                owner_columns(self.has_owners)
            ))?;
            let rows = stmt.query_map(params![workflow_name, limit], RawRun::from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raws.into_iter().map(RawRun::into_record).collect()
    }

    /// Stores one node's state snapshot.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails (for example, an unknown run id).
    pub fn save_state(&self, state: &ExecutionStateRecord) -> Result<(), StoreError> {
        self.sql(|c| insert_state(c, state))
    }

    /// The node state snapshots of run `run_id`, in step order.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn states(&self, run_id: &str) -> Result<Vec<ExecutionStateRecord>, StoreError> {
        let rows = self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT run_id, node_id, step, status, state, execution_time_ms, cost_usd, \
                 error_message, created_at FROM execution_states WHERE run_id = ?1 \
                 ORDER BY step, id",
            )?;
            let rows = stmt.query_map(params![run_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, f64>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, f64>(8)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(
                |(run_id, node_id, step, status, state, ms, cost, error, at)| {
                    let state = parse_json(&run_id, "state", &state)?;
                    Ok(ExecutionStateRecord {
                        run_id,
                        node_id,
                        step,
                        status,
                        state,
                        execution_time_ms: ms,
                        cost_usd: cost,
                        error_message: error,
                        created_at: at,
                    })
                },
            )
            .collect()
    }

    /// The last `limit` runs of every workflow (or of `workflow_name` only), newest first.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON (naming the run).
    pub fn list_runs(
        &self,
        workflow_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<WorkflowRunRecord>, StoreError> {
        match workflow_name {
            Some(name) => self.recent_runs(name, limit),
            // No name: a condition every run meets.
            None => self.runs_where("?1 IS NULL", None, limit),
        }
    }

    /// The names of the workflows with stored runs, sorted.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails.
    pub fn workflow_names(&self) -> Result<Vec<String>, StoreError> {
        self.sql(|c| {
            let mut stmt =
                c.prepare("SELECT DISTINCT workflow_name FROM workflow_runs ORDER BY 1")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// The full id of the run whose id is `id_or_prefix`, or starts with it (users may
    /// type the first characters of an id, as with git commits). An exact id wins over
    /// longer ids that start with it.
    ///
    /// # Errors
    /// [`StoreError::RunNotFound`] when no id starts with it (or it is empty),
    /// [`StoreError::AmbiguousRunId`] when several do, [`StoreError::Sqlite`] when SQLite
    /// fails.
    pub fn resolve_run_id(&self, id_or_prefix: &str) -> Result<String, StoreError> {
        let not_found = || StoreError::RunNotFound {
            path: self.path.clone(),
            id: id_or_prefix.to_owned(),
        };
        if id_or_prefix.is_empty() {
            return Err(not_found());
        }
        let (count, examples) = self.sql(|c| {
            let exact: Option<String> = c
                .query_row(
                    "SELECT id FROM workflow_runs WHERE id = ?1",
                    params![id_or_prefix],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = exact {
                return Ok((1, vec![id]));
            }
            // `substr` rather than LIKE: no wildcard in an id needs escaping.
            let count: i64 = c.query_row(
                "SELECT COUNT(*) FROM workflow_runs WHERE substr(id, 1, length(?1)) = ?1",
                params![id_or_prefix],
                |r| r.get(0),
            )?;
            let mut stmt = c.prepare(
                "SELECT id FROM workflow_runs WHERE substr(id, 1, length(?1)) = ?1 \
                 ORDER BY started_at DESC, rowid DESC LIMIT ?2",
            )?;
            let shown = i64::try_from(AMBIGUOUS_IDS_SHOWN).unwrap_or(i64::MAX);
            let ids = stmt
                .query_map(params![id_or_prefix, shown], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok((usize::try_from(count).unwrap_or(usize::MAX), ids))
        })?;
        match count {
            0 => Err(not_found()),
            1 => examples.into_iter().next().ok_or_else(not_found),
            _ => Err(StoreError::AmbiguousRunId {
                prefix: id_or_prefix.to_owned(),
                count,
                examples,
            }),
        }
    }

    /// The run whose id is `id_or_prefix` or starts with it (see
    /// [`resolve_run_id`](Self::resolve_run_id)).
    ///
    /// # Errors
    /// As [`resolve_run_id`](Self::resolve_run_id), and [`StoreError::Json`] when one of
    /// the run's JSON columns does not parse.
    pub fn find_run(&self, id_or_prefix: &str) -> Result<WorkflowRunRecord, StoreError> {
        let id = self.resolve_run_id(id_or_prefix)?;
        self.get_run(&id)?.ok_or_else(|| StoreError::RunNotFound {
            path: self.path.clone(),
            id,
        })
    }

    /// The shortest length, at least `min`, at which the starts of the stored run ids are
    /// all different: what a listing can show of each id so that every shown id finds its
    /// run with [`find_run`](Self::find_run).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails.
    pub fn unique_prefix_len(&self, min: usize) -> Result<usize, StoreError> {
        self.sql(|c| {
            let mut stmt = c.prepare("SELECT id FROM workflow_runs ORDER BY id")?;
            let ids = stmt.query_map([], |row| row.get::<_, String>(0))?;
            super::listing::unique_prefix_len(ids, min)
        })
    }

    /// Stores the trace of run `run_id` (trace mode), replacing any trace stored for it.
    /// The run must be stored first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when SQLite fails (for example, an unknown run id, or a
    /// store opened read-only), [`StoreError::Json`] when the trace cannot be written as
    /// JSON.
    pub fn save_trace(&self, run_id: &str, trace: &Trace) -> Result<(), StoreError> {
        self.sql(|c| upsert_trace(c, run_id, trace))
    }

    /// The trace stored for run `run_id`; `None` when the run has none (trace mode was
    /// off, or the run is unknown).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when SQLite fails, [`StoreError::Json`] when the stored
    /// trace does not parse.
    pub fn load_trace(&self, run_id: &str) -> Result<Option<Trace>, StoreError> {
        if !self.has_traces {
            return Ok(None);
        }
        let json: Option<String> = self.sql(|c| {
            c.query_row(
                "SELECT trace_json FROM run_traces WHERE run_id = ?1",
                params![run_id],
                |r| r.get(0),
            )
            .optional()
        })?;
        json.map(|j| parse_json(run_id, "trace_json", &j))
            .transpose()
    }
}

/// [`RUN_COLUMNS`] with the configuration snapshot, the inputs and the outputs read as
/// `null`.
const LIGHT_RUN_COLUMNS: &str = "id, workflow_name, status, 'null', 'null', NULL, \
    error_message, started_at, completed_at, duration_ms, total_tokens, total_cost_usd, \
    bottleneck_info";

/// `value` as JSON for a column; a failure is SQLite's conversion error.
fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The `SET` list that makes the totals of run `?1` those of its stored node states: the
/// running totals of a run that has not ended, and the totals of an interrupted one.
pub(super) const TOTALS_FROM_STATES: &str = "\
    total_cost_usd = (SELECT COALESCE(SUM(cost_usd), 0) FROM execution_states \
        WHERE run_id = ?1), \
    total_tokens = (SELECT COALESCE(SUM(CASE WHEN json_valid(state) \
        THEN json_extract(state, '$._tokens') END), 0) FROM execution_states WHERE run_id = ?1)";

/// Inserts `run`, or updates the stored run with the same id.
pub(super) fn upsert_run(c: &Connection, run: &WorkflowRunRecord) -> rusqlite::Result<()> {
    let json = |v: &Value| v.to_string();
    let outputs = run.outputs.as_ref().map(json);
    let info = run.bottleneck_info.as_ref().map(to_json).transpose()?;
    c.execute(
        &format!(
            "INSERT INTO workflow_runs ({RUN_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (id) DO UPDATE SET workflow_name = ?2, status = ?3, \
             config_snapshot = ?4, inputs = ?5, outputs = ?6, error_message = ?7, \
             started_at = ?8, completed_at = ?9, duration_ms = ?10, \
             total_tokens = ?11, total_cost_usd = ?12, bottleneck_info = ?13"
        ),
        params![
            run.id,
            run.workflow_name,
            run.status.as_str(),
            json(&run.config_snapshot),
            json(&run.inputs),
            outputs,
            run.error_message,
            run.started_at,
            run.completed_at,
            run.duration_ms,
            i64::try_from(run.total_tokens).unwrap_or(i64::MAX),
            run.total_cost_usd,
            info,
        ],
    )?;
    match &run.bottleneck_info {
        Some(summary) => replace_splits(c, &run.id, &summary.nodes),
        None => Ok(()),
    }
}

/// Makes the stored time splits of run `run_id` those of `nodes`.
fn replace_splits(
    c: &Connection,
    run_id: &str,
    nodes: &[agent_profiler_runtime::NodeTimings],
) -> rusqlite::Result<()> {
    c.execute(
        "DELETE FROM node_time_splits WHERE run_id = ?1",
        params![run_id],
    )?;
    let mut insert = c.prepare_cached(&format!(
        "INSERT INTO node_time_splits (run_id, {SPLIT_COLUMNS}) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?;
    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    // A summary read back from JSON may hold anything; a NaN would reach SQLite as NULL and
    // lose the whole run's end to a NOT NULL column.
    let ms = |v: f64| if v.is_finite() { v } else { 0.0 };
    let opt = |v: Option<f64>| v.filter(|v| v.is_finite());
    for node in nodes {
        let s = NodeTimeSplit::from_timings(node);
        insert.execute(params![
            run_id,
            s.node_id,
            ms(s.self_duration_ms),
            count(s.llm_calls),
            count(s.llm_failed_calls),
            count(s.streamed_calls),
            ms(s.llm_time_ms),
            ms(s.own_time_ms),
            opt(s.ttft_p50_ms),
            opt(s.ttft_p95_ms),
            count(s.tool_calls),
            ms(s.tool_time_ms),
        ])?;
    }
    Ok(())
}

/// Inserts one node's state snapshot.
pub(super) fn insert_state(c: &Connection, state: &ExecutionStateRecord) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO execution_states (run_id, node_id, step, status, state, \
         execution_time_ms, cost_usd, error_message, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            state.run_id,
            state.node_id,
            state.step,
            state.status,
            state.state.to_string(),
            state.execution_time_ms,
            state.cost_usd,
            state.error_message,
            state.created_at,
        ],
    )
    .map(drop)
}

/// Stores the trace of run `run_id`, replacing any stored for it.
pub(super) fn upsert_trace(c: &Connection, run_id: &str, trace: &Trace) -> rusqlite::Result<()> {
    let json = to_json(trace)?;
    c.execute(
        "INSERT INTO run_traces (run_id, trace_json) VALUES (?1, ?2) \
         ON CONFLICT (run_id) DO UPDATE SET trace_json = ?2",
        params![run_id, json],
    )
    .map(drop)
}
