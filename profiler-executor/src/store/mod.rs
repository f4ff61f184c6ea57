//! The run store: workflow runs ([`WorkflowRunRecord`], with their bottleneck report),
//! per-node state snapshots ([`ExecutionStateRecord`]) and trace-mode [`Trace`]s in an
//! embedded SQLite database. Persistence only: what is computed from several runs (per-node
//! figures, trends, comparisons) is in [`history`](crate::history).
//!
//! Writers (the executors) use [`RunStore::open`], which creates the file. Readers that must
//! not create an empty database when a path is mistyped (the command-line tool) use
//! [`RunStore::open_existing`], which opens read-only. Runs are found by id or by a unique
//! start of their id ([`RunStore::find_run`]); every JSON column read back that does not
//! parse is a [`StoreError::Json`] naming the run and the column, never a panic.
//!
//! - `records`: the records and how a run ended;
//! - `error`: [`StoreError`];
//! - `schema`: the tables, and rows read back into records;
//! - `queries`: what is saved and read.
//!
//! ```
//! use agent_profiler_executor::store::{RunStore, WorkflowRunRecord};
//!
//! let store = RunStore::in_memory().unwrap();
//! let run = WorkflowRunRecord::started("research", serde_json::json!({}), serde_json::json!({"topic": "x"}));
//! store.save_run(&run).unwrap();
//! assert_eq!(store.recent_runs("research", 10).unwrap()[0].id, run.id);
//! ```
//!
//! [`Trace`]: agent_profiler_runtime::trace::Trace

mod error;
mod queries;
mod records;
mod schema;
#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags, params};

pub use error::{AMBIGUOUS_IDS_SHOWN, StoreError};
pub use records::{ExecutionStateRecord, WorkflowRunRecord, WorkflowStatus};

/// The environment variable that overrides [`RunStore::default_path`].
pub const STORE_PATH_ENV: &str = "AGENT_PROFILER_DB";

/// The database file used when [`STORE_PATH_ENV`] is not set, in the current directory.
pub const DEFAULT_STORE_FILE: &str = "agent-profiler-runs.sqlite3";

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

impl RunStore {
    /// `$AGENT_PROFILER_DB`, or [`DEFAULT_STORE_FILE`] in the current directory.
    pub fn default_path() -> PathBuf {
        Self::default_path_from(|name| std::env::var_os(name))
    }

    /// [`default_path`](Self::default_path) with the environment read through `var`
    /// (settings kept elsewhere, or tests).
    pub fn default_path_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
        match var(STORE_PATH_ENV) {
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
            .and_then(|()| conn.execute_batch(schema::SCHEMA))
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
}

/// Records the tests of the store and of the history share.
#[cfg(test)]
pub(crate) mod test_support {
    use agent_profiler_runtime::BottleneckAnalyzer;
    use serde_json::json;

    use super::{WorkflowRunRecord, WorkflowStatus};

    /// A completed run of workflow `name` with id `id`, started at `started_at`, whose
    /// summary has one call of `ms` per `(node, ms)`; its duration is their sum.
    pub(crate) fn finished(
        name: &str,
        id: &str,
        started_at: f64,
        nodes: &[(&str, f64)],
    ) -> WorkflowRunRecord {
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
}
