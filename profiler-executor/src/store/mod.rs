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
//! Concurrency and crashes. The store is in SQLite's WAL mode while writers have it open
//! (readers never wait; a killed writer leaves no hot journal, so the read-only tool still
//! reads it), with a busy timeout and retries when another writer holds it. The executor
//! never writes on a run's threads: it queues the run's start, each node's state and the
//! run's end for the store's writer thread ([`RunStore::queue_state`] and the like), which
//! writes them in batches (a transaction about every 100 ms), and the run waits for them,
//! without holding a thread, after its measured time. So a crash keeps what finished: the
//! run (from its start), its node states with their cost, its running totals and its trace
//! so far. Each running run names its process (pid, host, start time); a run whose process
//! died shows as [`WorkflowStatus::Interrupted`] to every reader, and the next writer to
//! open the store marks it so. A directory, a FIFO or a device as the store is refused at
//! once ([`StoreError::NotAFile`]).
//!
//! - `records`: the records, how a run ended, and its nodes' time splits;
//! - `writer`: the writer thread and its batches;
//! - `owner`: the process that owns a running run, and whether it died;
//! - `listing`: runs as a listing shows them (few columns; corrupt rows listed as such);
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
pub(crate) mod listing;
mod owner;
mod queries;
mod records;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::trace::Trace;
use rusqlite::{Connection, OpenFlags, params};

pub use error::{AMBIGUOUS_IDS_SHOWN, StoreError};
pub use listing::RunListing;
pub use records::{ExecutionStateRecord, NodeTimeSplit, WorkflowRunRecord, WorkflowStatus};
pub use writer::Failures;

use queries::TOTALS_FROM_STATES;
use writer::{Op, Writer};

/// The environment variable that overrides [`RunStore::default_path`].
pub const STORE_PATH_ENV: &str = "AGENT_PROFILER_DB";

/// The database file used when [`STORE_PATH_ENV`] is not set, in the current directory.
pub const DEFAULT_STORE_FILE: &str = "agent-profiler-runs.sqlite3";

/// The connection of a store. A writer's store (file-backed) goes back to the rollback
/// journal when its last clone closes, if no other connection has it open: a store at rest
/// is one file, which a read-only reader opens without creating `-wal` and `-shm` files
/// beside it. While writers have it open, or after one was killed, it is in WAL mode.
pub(crate) struct Db {
    conn: Connection,
    rest_in_rollback: bool,
}

impl std::ops::Deref for Db {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if self.rest_in_rollback {
            // Fails at once (busy) when another connection has the store open: it stays
            // in WAL mode for them.
            let _ = self.conn.busy_timeout(Duration::ZERO);
            let _ = self
                .conn
                .query_row("PRAGMA journal_mode = DELETE", [], |r| {
                    r.get::<_, String>(0)
                });
        }
    }
}

/// The SQLite run store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RunStore {
    conn: Arc<Mutex<Db>>,
    path: String,
    /// Whether the `run_traces` table exists (a store written before traces were kept and
    /// opened read-only has none).
    has_traces: bool,
    /// Whether the `run_owners` table exists (likewise).
    has_owners: bool,
    /// Whether the `node_time_splits` table exists (likewise).
    has_splits: bool,
    /// The thread that writes what runs queue ([`queue_start`](Self::queue_start) and
    /// the like), started on first use.
    writer: Arc<Writer>,
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

    /// Opens (creating it and its directory when missing) the database at `path`, for
    /// writing: in WAL mode, and with the runs of processes that died marked
    /// [`interrupted`](WorkflowStatus::Interrupted).
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when the file cannot be opened or the schema created,
    /// [`StoreError::NotAFile`] for a directory, a FIFO or a device,
    /// [`StoreError::ReadOnly`] when the store can only be read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        check_file(path, &shown)?;
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
    /// is not a database), [`StoreError::NotAFile`] for a directory, a FIFO or a device.
    ///
    /// A store in WAL mode is read through its `-wal` and `-shm` files (created when a
    /// writer closed it cleanly and the directory allows); where they cannot be created (a
    /// read-only directory or disk, so no writer can be using it), it is read as immutable.
    /// Nothing is ever written: a run whose process died shows as interrupted without
    /// being marked.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(StoreError::Missing { path: shown });
        }
        check_file(path, &shown)?;
        let sqlite = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        let conn = match open_read_only(path, false) {
            // A store in WAL mode whose `-wal` and `-shm` files cannot be created here (a
            // read-only directory): no writer can be using it, so it is read as immutable.
            // Never when a journal or a WAL holds writes the file itself lacks.
            Err(e) if cannot_open_wal(&e) && !has_pending_writes(path) => {
                open_read_only(path, true)
            }
            Err(e) if is_hot_journal(&e) => {
                return Err(StoreError::HotJournal { path: shown });
            }
            other => other,
        }
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
        let has_owners = table("run_owners").map_err(sqlite)?;
        let has_splits = table("node_time_splits").map_err(sqlite)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(Db {
                conn,
                rest_in_rollback: false,
            })),
            path: shown,
            has_traces,
            has_owners,
            has_splits,
            writer: Arc::new(Writer::new()),
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
        let sqlite = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(sqlite)? {
            return Err(StoreError::ReadOnly { path });
        }
        // WAL: readers never wait for the writer, a commit does not sync (a process
        // crash loses nothing committed), and a killed writer leaves no hot journal that
        // a read-only reader would have to roll back.
        with_retries(|| {
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
                .map(drop)
        })
        .map_err(sqlite)?;
        with_retries(|| {
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        })
        .map_err(sqlite)?;
        with_retries(|| conn.execute_batch(schema::SCHEMA)).map_err(sqlite)?;
        let rest_in_rollback = path != ":memory:";
        let store = Self {
            conn: Arc::new(Mutex::new(Db {
                conn,
                rest_in_rollback,
            })),
            path,
            has_traces: true,
            has_owners: true,
            has_splits: true,
            writer: Arc::new(Writer::new()),
        };
        store.mark_interrupted()?;
        Ok(store)
    }

    /// Marks `interrupted` the runs still `running` whose process is known to have died
    /// (see [`WorkflowStatus::Interrupted`]); their totals are those of the node states
    /// kept. The number of runs marked.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] when SQLite fails.
    pub fn mark_interrupted(&self) -> Result<usize, StoreError> {
        self.sql(|c| {
            let mut stmt = c.prepare(
                "SELECT r.id, o.pid, o.host, o.process_start FROM workflow_runs r \
                 JOIN run_owners o ON o.run_id = r.id WHERE r.status = 'running'",
            )?;
            let dead = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, schema::owner_at(r, 1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter(|(_, owner)| owner.as_ref().is_some_and(owner::Owner::is_dead))
                .collect::<Vec<_>>();
            if dead.is_empty() {
                return Ok(0);
            }
            with_retries(|| {
                c.execute_batch("BEGIN IMMEDIATE")?;
                let marked = dead.iter().try_for_each(|(id, owner)| {
                    let why = owner.as_ref().map_or_else(String::new, |o| {
                        format!(
                            "interrupted: its process (pid {} on {}) ended before the run finished",
                            o.pid, o.host
                        )
                    });
                    c.execute(
                        &format!(
                            "UPDATE workflow_runs SET status = 'interrupted', \
                             error_message = COALESCE(error_message, ?2), {TOTALS_FROM_STATES} \
                             WHERE id = ?1 AND status = 'running'"
                        ),
                        params![id, why],
                    )
                    .map(drop)
                });
                // Rolled back whatever failed, the commit too (a busy one is retried from
                // `BEGIN`, which must not find this transaction still open).
                let done = marked.and_then(|()| c.execute_batch("COMMIT"));
                if done.is_err() {
                    let _ = c.execute_batch("ROLLBACK");
                }
                done
            })?;
            Ok(dead.len())
        })
    }

    /// Queues the start of a run (its record, status `running`, owned by this process) for
    /// the store's writer thread; with `analyzer` (trace mode), the run's trace so far is
    /// written as its nodes finish. Returns at once: nothing waits for the disk.
    pub fn queue_start(&self, record: &WorkflowRunRecord, analyzer: Option<BottleneckAnalyzer>) {
        self.writer.send(
            self,
            Op::Start {
                record: Box::new(record.clone()),
                analyzer,
            },
        );
    }

    /// Queues one node's state snapshot (written within about 100 ms, with others).
    pub fn queue_state(&self, state: &ExecutionStateRecord) {
        self.writer.send(self, Op::State(Box::new(state.clone())));
    }

    /// Queues the end of a run: its final record and its trace.
    pub fn queue_finish(&self, record: &WorkflowRunRecord, trace: Option<&Trace>) {
        self.writer.send(
            self,
            Op::Finish {
                record: Box::new(record.clone()),
                trace: trace.map(|t| Box::new(t.clone())),
            },
        );
    }

    /// Resolves once everything queued so far is written, with the writes of run
    /// `run_id` that failed since its last flush.
    pub fn flush_run(
        &self,
        run_id: &str,
    ) -> impl std::future::Future<Output = Failures> + Send + 'static {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.send(
            self,
            Op::Flush {
                run_id: run_id.to_owned(),
                reply,
            },
        );
        async move {
            answer.await.unwrap_or_else(|_| Failures {
                count: 1,
                first: Some("the store's writer ended".to_owned()),
            })
        }
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

/// How long a statement waits for another writer before SQLite gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `f`, retried a few times while the database stays busy beyond the busy timeout.
fn with_retries<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    let mut attempt = 0;
    loop {
        match f() {
            Err(e) if writer::is_busy(&e) && attempt < 4 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50 << attempt));
            }
            other => return other,
        }
    }
}

/// Refuses at once what cannot be a store: a directory, a FIFO (which would block the
/// open), a socket or a device.
fn check_file(path: &Path, shown: &str) -> Result<(), StoreError> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let cause = if meta.is_dir() {
        "it is a directory"
    } else if meta.is_file() {
        return Ok(());
    } else {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_fifo() {
            "it is a FIFO (named pipe), not a regular file"
        } else if kind.is_socket() {
            "it is a socket, not a regular file"
        } else if kind.is_block_device() || kind.is_char_device() {
            "it is a device, not a regular file"
        } else {
            "it is not a regular file"
        }
    };
    Err(StoreError::NotAFile {
        path: shown.to_owned(),
        cause,
    })
}

/// `path` opened read-only (with `immutable`: as a file nobody writes, without the WAL's
/// shared memory), and checked to be readable.
fn open_read_only(path: &Path, immutable: bool) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        let mut uri = String::from("file:");
        for b in path.as_os_str().as_encoded_bytes() {
            match b {
                b'?' | b'#' | b'%' => uri.push_str(&format!("%{b:02X}")),
                _ => uri.push(char::from(*b)),
            }
        }
        uri.push_str("?immutable=1");
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    } else {
        Connection::open_with_flags(path, flags)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(conn)
}

/// Whether `e` says a read-only connection could not set up the WAL's files.
fn cannot_open_wal(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    ) && !is_hot_journal(e)
}

/// Whether `e` says a read-only connection met a hot rollback journal (a writer of an
/// older version, in rollback mode, killed mid-write), which only a writer can roll back.
fn is_hot_journal(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK
                || f.extended_code == rusqlite::ffi::SQLITE_READONLY_RECOVERY
    )
}

/// Whether a `-journal` or a non-empty `-wal` file beside `path` holds writes that the
/// database file itself may lack.
fn has_pending_writes(path: &Path) -> bool {
    let beside = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(PathBuf::from(name)).map_or(0, |m| m.len())
    };
    beside("-journal") > 0 || beside("-wal") > 0
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
