//! The run store: workflow runs ([`WorkflowRunRecord`], with their bottleneck report),
//! per-node state snapshots ([`ExecutionStateRecord`]) and trace-mode [`Trace`]s in an
//! embedded SQLite database.
//!
//! Writers (the executors) use [`RunStore::open`], which creates the file. Readers that must
//! not create an empty database when a path is mistyped (the command-line tool) use
//! [`RunStore::open_existing`], which opens read-only. Runs are found by id or by a unique
//! start of their id ([`RunStore::find_run`]); every JSON column read back that does not
//! parse is a [`StoreError::Json`] naming the run and the column, never a panic.
//!
//! ```
//! use agent_profiler_executor::store::{RunStore, WorkflowRunRecord};
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

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use agent_profiler_runtime::Summary;
use agent_profiler_runtime::trace::Trace;

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

    /// The report the workflow executor printed at the end of this run, rebuilt from the
    /// record: [`bottleneck_report`](crate::console::bottleneck_report) of the stored
    /// summary, then the line `` workflow `{name}` {status} in {ms}ms (run {id}) ``, with
    /// `: {error}` when the run failed. `None` when the run has no summary (still running,
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

/// One node's figures in one run: from the run's summary when it has one, else from its
/// node state snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    /// The node.
    pub node_id: String,
    /// Calls of the node in the run.
    pub call_count: u64,
    /// Sum of the calls' durations (inclusive of nested profiled calls), ms.
    pub total_duration_ms: f64,
    /// Total less the time of profiled calls nested inside, ms (equal to the total when
    /// the figures come from state snapshots, which do not know about nesting).
    pub self_duration_ms: f64,
    /// `total_duration_ms / call_count`, ms.
    pub avg_duration_ms: f64,
    /// LLM cost, USD (priced calls only).
    pub cost_usd: f64,
    /// LLM input plus output tokens (0 when the figures come from state snapshots).
    pub total_tokens: u64,
    /// LLM calls the node made (0 when the figures come from state snapshots).
    pub llm_calls: u64,
    /// Those of them without a price: `cost_usd` leaves them out.
    pub unpriced_calls: u64,
    /// Calls that did not end `ok` (error, panicked, cancelled).
    pub failed_calls: u64,
}

impl NodeFigures {
    fn from_summary(summary: &Summary) -> Vec<Self> {
        summary
            .nodes
            .iter()
            .map(|n| NodeFigures {
                node_id: n.node_id.clone(),
                call_count: n.call_count,
                total_duration_ms: n.total_duration_ms,
                self_duration_ms: n.self_duration_ms,
                avg_duration_ms: n.avg_duration_ms,
                cost_usd: n.cost_usd,
                total_tokens: n.total_tokens,
                llm_calls: n.llm_calls,
                unpriced_calls: n.unpriced_calls,
                failed_calls: n.outcomes.failed(),
            })
            .collect()
    }

    fn from_states(states: &[ExecutionStateRecord]) -> Vec<Self> {
        let mut out: Vec<NodeFigures> = Vec::new();
        for s in states {
            let i = match out.iter().position(|n| n.node_id == s.node_id) {
                Some(i) => i,
                None => {
                    out.push(NodeFigures {
                        node_id: s.node_id.clone(),
                        call_count: 0,
                        total_duration_ms: 0.0,
                        self_duration_ms: 0.0,
                        avg_duration_ms: 0.0,
                        cost_usd: 0.0,
                        total_tokens: 0,
                        llm_calls: 0,
                        unpriced_calls: 0,
                        failed_calls: 0,
                    });
                    out.len() - 1
                }
            };
            let n = &mut out[i];
            n.call_count += 1;
            n.total_duration_ms += s.execution_time_ms;
            n.self_duration_ms += s.execution_time_ms;
            n.cost_usd += s.cost_usd;
            if s.status != "completed" {
                n.failed_calls += 1;
            }
            n.avg_duration_ms = n.total_duration_ms / n.call_count as f64;
        }
        out
    }
}

/// One run and its per-node figures: a point of a node's history
/// ([`RunStore::node_history`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunNodeFigures {
    /// The run.
    pub run_id: String,
    /// How the run ended.
    pub status: WorkflowStatus,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// Wall time of the run, ms.
    pub duration_ms: Option<f64>,
    /// LLM cost of the run, USD.
    pub total_cost_usd: f64,
    /// Every node that ran, in the order of its first call.
    pub nodes: Vec<NodeFigures>,
}

/// A run store failure. Every variant's message is one line.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed (open, schema, query).
    Sqlite {
        /// The database file (or `:memory:`).
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored JSON column could not be read back (or a value could not be written as
    /// JSON).
    Json {
        /// The run the column belongs to.
        run_id: String,
        /// The column.
        column: &'static str,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// [`RunStore::open_existing`]: there is no file at the path.
    Missing {
        /// The path given.
        path: String,
    },
    /// [`RunStore::open_existing`]: the file is an SQLite database without the run
    /// store's tables.
    NotARunStore {
        /// The database file.
        path: String,
    },
    /// No run has this id, or an id starting with it.
    RunNotFound {
        /// The database file.
        path: String,
        /// The id (or start of an id) asked for.
        id: String,
    },
    /// Several runs have an id starting with this prefix.
    AmbiguousRunId {
        /// The prefix asked for.
        prefix: String,
        /// How many runs match.
        count: usize,
        /// The ids of a few of them (at most [`AMBIGUOUS_IDS_SHOWN`]).
        examples: Vec<String>,
    },
}

/// How many of the matching ids a [`StoreError::AmbiguousRunId`] names.
pub const AMBIGUOUS_IDS_SHOWN: usize = 3;

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Sqlite { path, source } => {
                // SQLite's messages are one line; keep ours one line whatever they hold.
                let message = source.to_string().replace('\n', " ");
                write!(f, "run store {path}: {message}")
            }
            StoreError::Json {
                run_id,
                column,
                source,
            } => write!(
                f,
                "run {run_id}: column `{column}` holds bad JSON (corrupt record): {source}"
            ),
            StoreError::Missing { path } => {
                write!(f, "no run store at {path}: the file does not exist")
            }
            StoreError::NotARunStore { path } => {
                write!(
                    f,
                    "{path} is not a run store (it has no workflow_runs table)"
                )
            }
            StoreError::RunNotFound { path, id } => {
                write!(f, "no run with an id starting with `{id}` in {path}")
            }
            StoreError::AmbiguousRunId {
                prefix,
                count,
                examples,
            } => {
                write!(
                    f,
                    "run id `{prefix}` is ambiguous: {count} runs start with it ({}",
                    examples.join(", ")
                )?;
                if *count > examples.len() {
                    f.write_str(", ...")?;
                }
                f.write_str("); type more of the id")
            }
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Sqlite { source, .. } => Some(source),
            StoreError::Json { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The SQLite run store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RunStore {
    conn: Arc<Mutex<Connection>>,
    path: String,
    /// Whether the `run_traces` table exists (a store written before traces were kept and
    /// opened read-only has none).
    has_traces: bool,
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
CREATE TABLE IF NOT EXISTS run_traces (
    run_id TEXT PRIMARY KEY REFERENCES workflow_runs (id) ON DELETE CASCADE,
    trace_json TEXT NOT NULL
);
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

    /// Opens the existing database at `path` read-only: nothing is created, neither the
    /// file nor a table, so a mistyped path is an error rather than an empty store. For
    /// tools that only read runs.
    ///
    /// # Errors
    /// [`StoreError::Missing`] when there is no file at `path`,
    /// [`StoreError::NotARunStore`] for an SQLite database without the run store's tables,
    /// [`StoreError::Sqlite`] when SQLite cannot open or read it (for example, a file that
    /// is not a database).
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: shown });
        }
        let sqlite = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite)?;
        let table = |name: &str| {
            conn.query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                params![name],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        };
        let has_runs = table("workflow_runs").map_err(sqlite)?;
        let has_states = table("execution_states").map_err(sqlite)?;
        if !has_runs || !has_states {
            return Err(StoreError::NotARunStore { path: shown });
        }
        let has_traces = table("run_traces").map_err(sqlite)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: shown,
            has_traces,
        })
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
            has_traces: true,
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
                run_id: run.id.clone(),
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
            None => {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let raws = self.sql(|c| {
                    let mut stmt = c.prepare(&format!(
                        "SELECT {RUN_COLUMNS} FROM workflow_runs \
                         ORDER BY started_at DESC, rowid DESC LIMIT ?1"
                    ))?;
                    let rows = stmt.query_map(params![limit], RawRun::from_row)?;
                    rows.collect::<rusqlite::Result<Vec<_>>>()
                })?;
                raws.into_iter().map(RawRun::into_record).collect()
            }
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
        let ids = self.sql(|c| {
            let mut stmt = c.prepare("SELECT id FROM workflow_runs ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        // In sorted order, the longest common start of any two ids is that of two
        // neighbours.
        let mut len = min;
        for pair in ids.windows(2) {
            let common = pair[0]
                .chars()
                .zip(pair[1].chars())
                .take_while(|(a, b)| a == b)
                .count();
            len = len.max(common + 1);
        }
        Ok(len)
    }

    /// Per-node figures of `run`: from its summary (`bottleneck_info`) when it has one,
    /// else from its node state snapshots (a run still running, or whose process ended
    /// early). Nodes come in the order of their first call.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a state holds bad JSON.
    pub fn node_figures(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeFigures>, StoreError> {
        match &run.bottleneck_info {
            Some(summary) => Ok(NodeFigures::from_summary(summary)),
            None => Ok(NodeFigures::from_states(&self.states(&run.id)?)),
        }
    }

    /// The per-node figures of each of the last `last_runs` finished runs (completed,
    /// failed or panicked: a run still running has partial figures) of `workflow_name`,
    /// newest first.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON (naming the run).
    pub fn node_history(
        &self,
        workflow_name: &str,
        last_runs: usize,
    ) -> Result<Vec<RunNodeFigures>, StoreError> {
        let limit = i64::try_from(last_runs).unwrap_or(i64::MAX);
        let raws = self.sql(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {RUN_COLUMNS} FROM workflow_runs \
                 WHERE workflow_name = ?1 AND status != 'running' \
                 ORDER BY started_at DESC, rowid DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![workflow_name, limit], RawRun::from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raws.into_iter()
            .map(|raw| {
                let run = raw.into_record()?;
                Ok(RunNodeFigures {
                    nodes: self.node_figures(&run)?,
                    run_id: run.id,
                    status: run.status,
                    started_at: run.started_at,
                    duration_ms: run.duration_ms,
                    total_cost_usd: run.total_cost_usd,
                })
            })
            .collect()
    }

    /// Stores the trace of run `run_id` (trace mode), replacing any trace stored for it.
    /// The run must be stored first.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when SQLite fails (for example, an unknown run id, or a
    /// store opened read-only), [`StoreError::Json`] when the trace cannot be written as
    /// JSON.
    pub fn save_trace(&self, run_id: &str, trace: &Trace) -> Result<(), StoreError> {
        let json = serde_json::to_string(trace).map_err(|source| StoreError::Json {
            run_id: run_id.to_owned(),
            column: "trace_json",
            source,
        })?;
        self.sql(|c| {
            c.execute(
                "INSERT INTO run_traces (run_id, trace_json) VALUES (?1, ?2) \
                 ON CONFLICT (run_id) DO UPDATE SET trace_json = ?2",
                params![run_id, json],
            )
            .map(drop)
        })
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
            workflow_name: self.workflow_name,
            status: WorkflowStatus::parse(&self.status),
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

fn parse_json<T: serde::de::DeserializeOwned>(
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

/// Seconds since the Unix epoch.
pub(crate) fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A run id in the form of a random (version 4) UUID, `8-4-4-4-12` hex digits: its first
/// eight digits are random, so they tell runs apart and users can type just those.
///
/// The 122 random bits come from two hashers with keys std draws from the operating
/// system (`RandomState`), over the time in nanoseconds, the process id and a counter: no
/// two ids of one process are equal, and ids of different processes collide only by chance.
fn new_run_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (
        nanos,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
    );
    let hi = RandomState::new().hash_one(seed);
    let lo = RandomState::new().hash_one(seed);
    let bits = (u128::from(hi) << 64 | u128::from(lo)) & !(0xf000_u128 << 64) & !(0xc_u128 << 60);
    let bits = bits | (0x4000_u128 << 64) | (0x8_u128 << 60);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::BottleneckAnalyzer;
    use serde_json::json;

    fn temp_path(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "agent-profiler-store-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("runs.sqlite3")
    }

    fn finished(name: &str, id: &str, started_at: f64, nodes: &[(&str, f64)]) -> WorkflowRunRecord {
        let analyzer = BottleneckAnalyzer::new();
        for (node, ms) in nodes {
            analyzer.record_node(node, *ms).unwrap();
        }
        let mut run = WorkflowRunRecord::started(name, json!({}), json!({}));
        run.id = id.to_owned();
        run.started_at = started_at;
        run.status = WorkflowStatus::Completed;
        run.duration_ms = Some(nodes.iter().map(|(_, ms)| ms).sum());
        run.completed_at = Some(started_at + 1.0);
        run.bottleneck_info = Some(analyzer.get_summary());
        run
    }

    #[test]
    fn run_ids_are_uuid_like_and_distinct() {
        let ids: Vec<String> = (0..1000).map(|_| new_run_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 36, "{id}");
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(
                parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(parts[2].starts_with('4'), "{id}");
            assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{id}");
        }
        let firsts: std::collections::HashSet<&str> = ids.iter().map(|i| &i[..8]).collect();
        // 1000 random 32-bit starts: a repeat is possible but very rare (p ~ 1e-4).
        assert!(firsts.len() >= 999);
    }

    #[test]
    fn prefixes_find_runs_and_ambiguity_is_an_error() {
        let store = RunStore::in_memory().unwrap();
        for (id, at) in [
            ("abc11111", 1.0),
            ("abc12222", 2.0),
            ("abd00000", 3.0),
            ("ab", 4.0),
        ] {
            store
                .save_run(&finished("wf", id, at, &[("n", 1.0)]))
                .unwrap();
        }
        assert_eq!(store.find_run("abd").unwrap().id, "abd00000");
        assert_eq!(store.find_run("abc12").unwrap().id, "abc12222");
        // An exact id wins over the longer ids that start with it.
        assert_eq!(store.find_run("ab").unwrap().id, "ab");
        let err = store.find_run("abc1").unwrap_err();
        assert!(
            matches!(&err, StoreError::AmbiguousRunId { count: 2, examples, .. } if examples.len() == 2)
        );
        let msg = err.to_string();
        assert!(msg.contains("`abc1` is ambiguous: 2 runs"), "{msg}");
        assert!(msg.contains("abc12222, abc11111"), "{msg}");
        let err = store.find_run("zzz").unwrap_err();
        assert!(matches!(err, StoreError::RunNotFound { .. }));
        assert_eq!(
            err.to_string(),
            "no run with an id starting with `zzz` in :memory:"
        );
        assert!(matches!(
            store.find_run(""),
            Err(StoreError::RunNotFound { .. })
        ));
        // Wildcards are plain characters.
        assert!(matches!(
            store.find_run("a%"),
            Err(StoreError::RunNotFound { .. })
        ));
        assert!(matches!(
            store.find_run("a_c"),
            Err(StoreError::RunNotFound { .. })
        ));
        // "ab" vs "abc11111" share 2, "abc11111" vs "abc12222" share 4.
        assert_eq!(store.unique_prefix_len(1).unwrap(), 5);
        assert_eq!(store.unique_prefix_len(8).unwrap(), 8);
    }

    #[test]
    fn listing_filters_and_orders() {
        let store = RunStore::in_memory().unwrap();
        store
            .save_run(&finished("a", "r1", 1.0, &[("x", 1.0)]))
            .unwrap();
        store
            .save_run(&finished("b", "r2", 2.0, &[("y", 1.0)]))
            .unwrap();
        store
            .save_run(&finished("a", "r3", 3.0, &[("x", 2.0)]))
            .unwrap();
        let ids = |runs: Vec<WorkflowRunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_runs(None, 10).unwrap()), ["r3", "r2", "r1"]);
        assert_eq!(ids(store.list_runs(None, 2).unwrap()), ["r3", "r2"]);
        assert_eq!(ids(store.list_runs(Some("a"), 10).unwrap()), ["r3", "r1"]);
        assert_eq!(store.workflow_names().unwrap(), ["a", "b"]);
    }

    #[test]
    fn corrupt_columns_name_the_run_and_column() {
        let store = RunStore::in_memory().unwrap();
        store
            .save_run(&finished("wf", "good", 1.0, &[("n", 1.0)]))
            .unwrap();
        store
            .save_run(&finished("wf", "bad", 2.0, &[("n", 1.0)]))
            .unwrap();
        store
            .sql(|c| {
                c.execute(
                    "UPDATE workflow_runs SET bottleneck_info = '{oops' WHERE id = 'bad'",
                    [],
                )
            })
            .unwrap();
        let err = store.find_run("bad").unwrap_err();
        assert!(
            matches!(&err, StoreError::Json { run_id, column: "bottleneck_info", .. } if run_id == "bad")
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with("run bad: column `bottleneck_info` holds bad JSON"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(store.list_runs(None, 10).is_err());
        assert!(store.find_run("good").is_ok());
        // A summary of the wrong shape is as bad as broken JSON.
        store
            .sql(|c| c.execute("UPDATE workflow_runs SET bottleneck_info = '[1]', inputs = 'x' WHERE id = 'bad'", []))
            .unwrap();
        let err = store.get_run("bad").unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Json {
                    column: "inputs",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn open_existing_is_read_only_and_never_creates() {
        let path = temp_path("open-existing");
        let err = RunStore::open_existing(&path).unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }));
        assert!(
            err.to_string()
                .ends_with("runs.sqlite3: the file does not exist")
        );
        assert!(!path.exists());

        // Not a database at all.
        std::fs::write(
            &path,
            "hello, I am not SQLite, just some text that is long enough",
        )
        .unwrap();
        let err = RunStore::open_existing(&path).unwrap_err();
        assert!(matches!(err, StoreError::Sqlite { .. }), "{err}");
        // A database without the tables.
        std::fs::remove_file(&path).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE other (x INTEGER);")
            .unwrap();
        let err = RunStore::open_existing(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotARunStore { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();

        let writer = RunStore::open(&path).unwrap();
        let run = finished("wf", "run-1", 1.0, &[("n", 1.0)]);
        writer.save_run(&run).unwrap();
        let reader = RunStore::open_existing(&path).unwrap();
        assert_eq!(reader.find_run("run").unwrap(), run);
        assert!(matches!(
            reader.save_run(&run),
            Err(StoreError::Sqlite { .. })
        ));
    }

    #[test]
    fn old_store_without_trace_table_reads_no_trace() {
        let path = temp_path("no-trace-table");
        let writer = RunStore::open(&path).unwrap();
        writer
            .save_run(&finished("wf", "r", 1.0, &[("n", 1.0)]))
            .unwrap();
        writer
            .sql(|c| c.execute_batch("DROP TABLE run_traces;"))
            .unwrap();
        let reader = RunStore::open_existing(&path).unwrap();
        assert_eq!(reader.load_trace("r").unwrap(), None);
    }

    #[test]
    fn traces_round_trip() {
        let store = RunStore::in_memory().unwrap();
        let analyzer = BottleneckAnalyzer::new();
        analyzer.enable_trace(16);
        analyzer.record_node("plan", 12.0).unwrap();
        analyzer.record_node("act", 3.5).unwrap();
        let trace = analyzer.trace().unwrap();
        let run = finished("wf", "r", 1.0, &[("plan", 12.0), ("act", 3.5)]);
        assert!(
            matches!(
                store.save_trace("r", &trace),
                Err(StoreError::Sqlite { .. })
            ),
            "the run must exist"
        );
        store.save_run(&run).unwrap();
        assert_eq!(store.load_trace("r").unwrap(), None);
        store.save_trace("r", &trace).unwrap();
        assert_eq!(store.load_trace("r").unwrap().as_ref(), Some(&trace));
        let mut shorter = trace.clone();
        shorter.spans.truncate(1);
        store.save_trace("r", &shorter).unwrap();
        assert_eq!(store.load_trace("r").unwrap(), Some(shorter));
        store
            .sql(|c| c.execute("UPDATE run_traces SET trace_json = 'nope'", []))
            .unwrap();
        let err = store.load_trace("r").unwrap_err();
        assert!(
            matches!(&err, StoreError::Json { run_id, column: "trace_json", .. } if run_id == "r")
        );
    }

    #[test]
    fn node_figures_from_summary_or_states() {
        let store = RunStore::in_memory().unwrap();
        let run = finished("wf", "done", 1.0, &[("a", 10.0), ("b", 30.0), ("a", 20.0)]);
        store.save_run(&run).unwrap();
        let figures = store.node_figures(&run).unwrap();
        assert_eq!(figures.len(), 2);
        let a = figures.iter().find(|n| n.node_id == "a").unwrap();
        assert_eq!(a.call_count, 2);
        assert_eq!(a.total_duration_ms, 30.0);
        assert_eq!(a.avg_duration_ms, 15.0);

        let mut live = WorkflowRunRecord::started("wf", json!({}), json!({}));
        live.started_at = 2.0;
        store.save_run(&live).unwrap();
        for (step, (node, ms, status)) in [
            ("x", 5.0, "completed"),
            ("y", 7.0, "failed"),
            ("x", 1.0, "completed"),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .save_state(&ExecutionStateRecord {
                    run_id: live.id.clone(),
                    node_id: node.into(),
                    step: step as u32,
                    status: status.into(),
                    state: json!({}),
                    execution_time_ms: ms,
                    cost_usd: 0.5,
                    error_message: None,
                    created_at: 0.0,
                })
                .unwrap();
        }
        let figures = store.node_figures(&live).unwrap();
        assert_eq!(figures.len(), 2);
        assert_eq!(
            (figures[0].node_id.as_str(), figures[0].call_count),
            ("x", 2)
        );
        assert_eq!(figures[0].total_duration_ms, 6.0);
        assert_eq!(figures[0].cost_usd, 1.0);
        assert_eq!(
            (figures[1].failed_calls, figures[1].self_duration_ms),
            (1, 7.0)
        );

        // The history leaves out the run still running.
        let history = store.node_history("wf", 10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].run_id, "done");
        assert_eq!(history[0].nodes, figures_of(&run));
    }

    fn figures_of(run: &WorkflowRunRecord) -> Vec<NodeFigures> {
        NodeFigures::from_summary(run.bottleneck_info.as_ref().unwrap())
    }

    #[test]
    fn report_matches_the_executor_form() {
        let mut run = finished("wf", "r1", 1.0, &[("slow", 450.0), ("fast", 50.0)]);
        run.status = WorkflowStatus::Failed;
        run.duration_ms = Some(512.4);
        run.error_message = Some("node `slow` failed: boom".into());
        let report = run.report().unwrap();
        assert!(report.starts_with(
            "Slowest node: slow (450.00ms avg)\nBottlenecks (>50% of total time):\n  - slow: 90.0% (450ms total)\n\n"
        ));
        assert!(
            report
                .ends_with("\nworkflow `wf` failed in 512ms (run r1): node `slow` failed: boom\n")
        );
    }
}
