//! The run store: workflow runs ([`WorkflowRunRecord`], with their bottleneck report) and
//! per-node state snapshots ([`ExecutionStateRecord`]) in an embedded SQLite database.
//!
//! ```
//! use agent_profiler_runtime::store::{RunStore, WorkflowRunRecord};
//!
//! let store = RunStore::in_memory().unwrap();
//! let run = WorkflowRunRecord::started("research", serde_json::json!({}), serde_json::json!({"topic": "x"}));
//! store.save_run(&run).unwrap();
//! assert_eq!(store.recent_runs("research", 10).unwrap()[0].id, run.id);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::summary::Summary;

/// The environment variable that overrides [`RunStore::default_path`].
pub const STORE_PATH_ENV: &str = "AGENT_PROFILER_DB";

/// The database file used when [`STORE_PATH_ENV`] is not set, in the current directory.
pub const DEFAULT_STORE_FILE: &str = "agent-profiler-runs.sqlite3";

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
}

impl WorkflowStatus {
    /// The lowercase name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Panicked => "panicked",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => WorkflowStatus::Running,
            "completed" => WorkflowStatus::Completed,
            "panicked" => WorkflowStatus::Panicked,
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
    /// The analyzer's summary at the end of the run (the seed's `bottleneck_info`).
    pub bottleneck_info: Option<Summary>,
}

impl WorkflowRunRecord {
    /// A record of a run of `workflow_name` starting now, with a fresh id.
    pub fn started(workflow_name: &str, config_snapshot: Value, inputs: Value) -> Self {
        let now = now_seconds();
        Self {
            id: new_run_id(),
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
}

/// One node's state after it ran (the seed's `ExecutionStateRecord`): its output object
/// (with `_execution_time_ms` and `_cost_usd`), or its error.
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

/// One node's figures across several runs of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeAcrossRuns {
    /// The node.
    pub node_id: String,
    /// Runs in which the node ran.
    pub runs: u64,
    /// Calls over those runs.
    pub calls: u64,
    /// Total time over those runs, ms.
    pub total_duration_ms: f64,
    /// Average time per call, ms.
    pub avg_duration_ms: f64,
    /// The longest call's time in any run, ms.
    pub max_duration_ms: f64,
    /// Average share of its run's total time, percent.
    pub avg_percent_of_total: f64,
    /// Runs in which the node was a bottleneck.
    pub bottleneck_runs: u64,
    /// LLM cost over those runs, USD.
    pub cost_usd: f64,
    /// LLM tokens over those runs.
    pub total_tokens: u64,
}

/// A run store failure.
#[derive(Debug)]
pub enum StoreError {
    /// SQLite failed (open, schema, query).
    Sqlite {
        /// The database file (or `:memory:`).
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored JSON column could not be read back.
    Json {
        /// The column.
        column: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sqlite { path, source } => write!(f, "run store {path}: {source}"),
            StoreError::Json { column, source } => {
                write!(f, "run store: column `{column}` holds bad JSON: {source}")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Json { source, .. } => Some(source),
        }
    }
}

/// The SQLite run store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RunStore {
    conn: Arc<Mutex<Connection>>,
    path: String,
}

impl fmt::Debug for RunStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunStore")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
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
";

const RUN_COLUMNS: &str = "id, workflow_name, status, config_snapshot, inputs, outputs, \
    error_message, started_at, completed_at, duration_ms, total_tokens, total_cost_usd, \
    bottleneck_info";

impl RunStore {
    /// `$AGENT_PROFILER_DB`, or [`DEFAULT_STORE_FILE`] in the current directory.
    pub fn default_path() -> PathBuf {
        match std::env::var_os(STORE_PATH_ENV) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_STORE_FILE),
        }
    }

    /// Opens (creating it and its directory when missing) the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the file cannot be opened or the schema created.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // A failure here shows up as SQLite's "unable to open" just below.
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        Self::init(conn, shown)
    }

    /// Opens the database at [`default_path`](Self::default_path).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_default() -> Result<Self, StoreError> {
        Self::open(Self::default_path())
    }

    /// A database in memory, gone when the last clone is dropped.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: ":memory:".to_owned(),
            source,
        })?;
        Self::init(conn, ":memory:".to_owned())
    }

    fn init(conn: Connection, path: String) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|()| conn.execute_batch("PRAGMA foreign_keys = ON;"))
            .and_then(|()| conn.execute_batch(SCHEMA))
            .map_err(|source| StoreError::Sqlite {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file (or `:memory:`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn sql<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Inserts `run`, or updates the stored run with the same id (its node states stay).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails.
    pub fn save_run(&self, run: &WorkflowRunRecord) -> Result<(), StoreError> {
        let json = |v: &Value| v.to_string();
        let outputs = run.outputs.as_ref().map(json);
        let info = match &run.bottleneck_info {
            Some(s) => Some(serde_json::to_string(s).map_err(|source| StoreError::Json {
                column: "bottleneck_info",
                source,
            })?),
            None => None,
        };
        self.sql(|c| {
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
            )
            .map(drop)
        })
    }

    /// The run with id `id`, with its bottleneck info.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn get_run(&self, id: &str) -> Result<Option<WorkflowRunRecord>, StoreError> {
        let raw = self.sql(|c| {
            c.query_row(
                &format!("SELECT {RUN_COLUMNS} FROM workflow_runs WHERE id = ?1"),
                params![id],
                RawRun::from_row,
            )
            .optional()
        })?;
        raw.map(RawRun::into_record).transpose()
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
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let raws = self.sql(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM workflow_runs WHERE workflow_name = ?1 \
                 ORDER BY started_at DESC, rowid DESC LIMIT ?2"
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
        self.sql(|c| {
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
        })
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
                    Ok(ExecutionStateRecord {
                        run_id,
                        node_id,
                        step,
                        status,
                        state: parse_json("state", &state)?,
                        execution_time_ms: ms,
                        cost_usd: cost,
                        error_message: error,
                        created_at: at,
                    })
                },
            )
            .collect()
    }

    /// Per-node figures over the last `last_runs` runs of `workflow_name` that have a
    /// bottleneck report, slowest node (by total time) first.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn node_stats(
        &self,
        workflow_name: &str,
        last_runs: usize,
    ) -> Result<Vec<NodeAcrossRuns>, StoreError> {
        let mut by_node: BTreeMap<String, (NodeAcrossRuns, f64)> = BTreeMap::new();
        for run in self.recent_runs(workflow_name, last_runs)? {
            let Some(summary) = run.bottleneck_info else {
                continue;
            };
            for node in &summary.nodes {
                let (entry, share_sum) = by_node.entry(node.node_id.clone()).or_insert_with(|| {
                    (
                        NodeAcrossRuns {
                            node_id: node.node_id.clone(),
                            runs: 0,
                            calls: 0,
                            total_duration_ms: 0.0,
                            avg_duration_ms: 0.0,
                            max_duration_ms: 0.0,
                            avg_percent_of_total: 0.0,
                            bottleneck_runs: 0,
                            cost_usd: 0.0,
                            total_tokens: 0,
                        },
                        0.0,
                    )
                });
                entry.runs += 1;
                entry.calls += node.call_count;
                entry.total_duration_ms += node.total_duration_ms;
                entry.max_duration_ms = entry.max_duration_ms.max(node.max_duration_ms);
                entry.cost_usd += node.cost_usd;
                entry.total_tokens += node.total_tokens;
                if summary.total_time_ms > 0.0 {
                    *share_sum += node.self_duration_ms / summary.total_time_ms * 100.0;
                }
                if summary
                    .bottlenecks
                    .iter()
                    .any(|b| b.node_id == node.node_id)
                {
                    entry.bottleneck_runs += 1;
                }
            }
        }
        let mut out: Vec<NodeAcrossRuns> = by_node
            .into_values()
            .map(|(mut n, share_sum)| {
                if n.calls > 0 {
                    n.avg_duration_ms = n.total_duration_ms / n.calls as f64;
                }
                if n.runs > 0 {
                    n.avg_percent_of_total = share_sum / n.runs as f64;
                }
                n
            })
            .collect();
        out.sort_by(|a, b| b.total_duration_ms.total_cmp(&a.total_duration_ms));
        Ok(out)
    }
}

/// A row of `workflow_runs`, before its JSON columns are parsed.
struct RawRun {
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
}

impl RawRun {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
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
        })
    }

    fn into_record(self) -> Result<WorkflowRunRecord, StoreError> {
        Ok(WorkflowRunRecord {
            id: self.id,
            workflow_name: self.workflow_name,
            status: WorkflowStatus::parse(&self.status),
            config_snapshot: parse_json("config_snapshot", &self.config_snapshot)?,
            inputs: parse_json("inputs", &self.inputs)?,
            outputs: self
                .outputs
                .as_deref()
                .map(|s| parse_json("outputs", s))
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
                .map(|s| {
                    serde_json::from_str(s).map_err(|source| StoreError::Json {
                        column: "bottleneck_info",
                        source,
                    })
                })
                .transpose()?,
        })
    }
}

fn parse_json(column: &'static str, s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { column, source })
}

/// Seconds since the Unix epoch.
pub(crate) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A run id: time in microseconds, process id and a counter, hex.
fn new_run_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!(
        "run-{micros:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
