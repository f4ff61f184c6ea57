//! The run store's writer: one thread per store that writes what runs queue (their start,
//! each node's state, their end and trace) in a few transactions, off the runs' threads.
//!
//! A batch is what is queued within [`BATCH_WINDOW`] of its first write (at most
//! [`BATCH_MAX`] writes; a run's start or a flush ends it at once), written in one
//! `BEGIN IMMEDIATE` transaction, retried when
//! another writer holds the database ([`BUSY_RETRIES`]). So a crash loses at most the last
//! window, and a run's node states never wait for the disk on the run's threads. A write
//! that fails is counted against its run and reported when the run flushes
//! ([`RunStore::flush_run`]).

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::trace::Trace;
use rusqlite::{Connection, ErrorCode, params};

use super::owner::Owner;
use super::queries::{TOTALS_FROM_STATES, insert_state, upsert_run, upsert_trace};
use super::{ExecutionStateRecord, RunStore, StoreError, WorkflowRunRecord};

/// How long a batch stays open after its first write.
pub(crate) const BATCH_WINDOW: Duration = Duration::from_millis(100);
/// The most writes in one batch.
pub(crate) const BATCH_MAX: usize = 512;
/// How many times a batch is retried when the database stays busy beyond the busy timeout.
pub(crate) const BUSY_RETRIES: u32 = 8;
/// How often, at most, the partial trace of a running run is written.
const TRACE_EVERY: Duration = Duration::from_millis(500);

/// A write queued for the writer thread.
pub(crate) enum Op {
    /// A run starts: its record and its owner (this process); its analyzer, whose trace
    /// so far is written as its nodes finish, when trace mode is on.
    Start {
        record: Box<WorkflowRunRecord>,
        analyzer: Option<BottleneckAnalyzer>,
    },
    /// A node finished.
    State(Box<ExecutionStateRecord>),
    /// A run ended: its final record and its trace.
    Finish {
        record: Box<WorkflowRunRecord>,
        trace: Option<Box<Trace>>,
    },
    /// Write everything queued before, then answer with the failures of run `run_id`.
    Flush {
        run_id: String,
        reply: tokio::sync::oneshot::Sender<Failures>,
    },
}

impl Op {
    fn run_id(&self) -> &str {
        match self {
            Op::Start { record, .. } | Op::Finish { record, .. } => &record.id,
            Op::State(state) => &state.run_id,
            Op::Flush { run_id, .. } => run_id,
        }
    }
}

/// The writes of one run that failed: how many, and the first error.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Failures {
    /// Writes lost.
    pub count: usize,
    /// The first error.
    pub first: Option<String>,
}

impl Failures {
    fn add(&mut self, e: &str) {
        self.count += 1;
        self.first.get_or_insert_with(|| e.to_owned());
    }
}

/// The writer thread of one store, started on first use; ended (after writing what is
/// queued) when the last clone of the store is dropped.
pub(crate) struct Writer {
    tx: Mutex<Option<Sender<Op>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub fn new() -> Self {
        Self {
            tx: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Queues `op`, starting the thread when needed. Never blocks on the disk.
    pub fn send(&self, store: &RunStore, op: Op) {
        let mut tx = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        if tx.is_none() {
            let (sender, receiver) = mpsc::channel();
            let conn = store.conn.clone();
            let path = store.path.clone();
            let spawned = std::thread::Builder::new()
                .name("agent-profiler-store".into())
                .spawn(move || run(&conn, &path, &receiver));
            match spawned {
                Ok(handle) => {
                    *tx = Some(sender);
                    *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
                }
                Err(e) => {
                    // No thread: the write is lost, and the flush says so.
                    if let Op::Flush { reply, .. } = op {
                        let _ = reply.send(Failures {
                            count: 1,
                            first: Some(format!("cannot start the store's writer: {e}")),
                        });
                    }
                    return;
                }
            }
        }
        if let Some(sender) = tx.as_ref() {
            let _ = sender.send(op);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(
            self.tx
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(handle) = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = handle.join();
        }
    }
}

/// A run in progress, as the writer knows it.
struct Active {
    analyzer: BottleneckAnalyzer,
    trace_saved: Option<Instant>,
}

fn run(conn: &Mutex<super::Db>, path: &str, rx: &Receiver<Op>) {
    let mut failures: HashMap<String, Failures> = HashMap::new();
    let mut active: HashMap<String, Active> = HashMap::new();
    let mut open = true;
    while open {
        let Ok(first) = rx.recv() else { break };
        let mut batch = vec![first];
        let deadline = Instant::now() + BATCH_WINDOW;
        // A flush is written at once, and so is a run's start: a run is listed from its
        // start on, whatever happens to its process.
        while batch.len() < BATCH_MAX
            && !matches!(batch.last(), Some(Op::Flush { .. } | Op::Start { .. }))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        write_batch(&conn, path, &mut batch, &mut failures, &mut active);
        drop(conn);
        for op in batch {
            if let Op::Flush { run_id, reply } = op {
                let _ = reply.send(failures.remove(&run_id).unwrap_or_default());
            }
        }
    }
}

/// Writes `batch` in one transaction (retried while the database is busy); a write that
/// fails otherwise is counted against its run, and the others are kept.
fn write_batch(
    conn: &Connection,
    path: &str,
    batch: &mut [Op],
    failures: &mut HashMap<String, Failures>,
    active: &mut HashMap<String, Active>,
) {
    for op in batch.iter_mut() {
        match op {
            Op::Start { record, analyzer } => {
                if let Some(analyzer) = analyzer.take() {
                    active.insert(
                        record.id.clone(),
                        Active {
                            analyzer,
                            trace_saved: None,
                        },
                    );
                }
            }
            Op::Finish { record, .. } => {
                active.remove(&record.id);
            }
            _ => {}
        }
    }
    if batch.iter().all(|op| matches!(op, Op::Flush { .. })) {
        return;
    }
    let mut attempt = 0;
    loop {
        let mut lost: Vec<(String, String)> = Vec::new();
        match try_batch(conn, batch, active, &mut lost) {
            Ok(()) => {
                for (run_id, e) in lost {
                    failures
                        .entry(run_id)
                        .or_default()
                        .add(&format!("run store {path}: {e}"));
                }
                return;
            }
            Err(e) if is_busy(&e) && attempt < BUSY_RETRIES => {
                let _ = conn.execute_batch("ROLLBACK");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 << attempt.min(5)));
            }
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                let message = StoreError::Sqlite {
                    path: path.to_owned(),
                    source: e,
                }
                .to_string();
                for op in batch.iter() {
                    if !matches!(op, Op::Flush { .. }) {
                        failures
                            .entry(op.run_id().to_owned())
                            .or_default()
                            .add(&message);
                    }
                }
                return;
            }
        }
    }
}

pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn try_batch(
    conn: &Connection,
    batch: &[Op],
    active: &mut HashMap<String, Active>,
    lost: &mut Vec<(String, String)>,
) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let mut progressed: Vec<&str> = Vec::new();
    for op in batch {
        let result = match op {
            Op::Start { record, .. } => upsert_run(conn, record).and_then(|()| {
                let owner = Owner::current();
                conn.execute(
                    "INSERT OR REPLACE INTO run_owners (run_id, pid, host, process_start) \
                     VALUES (?1, ?2, ?3, ?4)",
                    params![record.id, owner.pid, owner.host, owner.start],
                )
                .map(drop)
            }),
            Op::State(state) => {
                let r = insert_state(conn, state);
                if r.is_ok() && !progressed.contains(&state.run_id.as_str()) {
                    progressed.push(&state.run_id);
                }
                r
            }
            Op::Finish { record, trace } => upsert_run(conn, record).and_then(|()| match trace {
                Some(trace) => upsert_trace(conn, &record.id, trace),
                None => Ok(()),
            }),
            Op::Flush { .. } => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(e) if is_busy(&e) => return Err(e),
            Err(e) => lost.push((op.run_id().to_owned(), e.to_string().replace('\n', " "))),
        }
    }
    // Running totals and the trace so far of the runs whose nodes finished. A failure
    // here is the run's own: the other runs' writes in the batch are kept.
    for run_id in progressed {
        match progress(conn, run_id, active) {
            Ok(()) => {}
            Err(e) if is_busy(&e) => return Err(e),
            Err(e) => lost.push((run_id.to_owned(), e.to_string().replace('\n', " "))),
        }
    }
    conn.execute_batch("COMMIT")
}

/// Writes the running totals of run `run_id`, and its trace so far when it is due.
fn progress(
    conn: &Connection,
    run_id: &str,
    active: &mut HashMap<String, Active>,
) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "UPDATE workflow_runs SET {TOTALS_FROM_STATES} WHERE id = ?1 AND status = 'running'"
        ),
        params![run_id],
    )?;
    if let Some(run) = active.get_mut(run_id)
        && run.trace_saved.is_none_or(|t| t.elapsed() >= TRACE_EVERY)
        && let Some(trace) = run.analyzer.trace()
    {
        upsert_trace(conn, run_id, &trace)?;
        run.trace_saved = Some(Instant::now());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node_state(run_id: &str) -> ExecutionStateRecord {
        ExecutionStateRecord {
            run_id: run_id.to_owned(),
            node_id: "n".to_owned(),
            step: 0,
            status: "completed".to_owned(),
            state: json!({"_tokens": 3}),
            execution_time_ms: 1.0,
            cost_usd: 0.5,
            error_message: None,
            created_at: 0.0,
        }
    }

    #[tokio::test]
    async fn a_run_whose_totals_fail_loses_no_other_runs_writes() {
        let store = RunStore::in_memory().unwrap();
        let good = WorkflowRunRecord::started("w", json!({}), json!({}));
        let bad = WorkflowRunRecord::started("w", json!({}), json!({}));
        store.queue_start(&good, None);
        store.queue_start(&bad, None);
        assert_eq!(store.flush_run(&bad.id).await, Failures::default());
        // From now on, the running totals of `bad` cannot be written.
        store
            .sql(|c| {
                c.execute_batch(&format!(
                    "CREATE TEMP TRIGGER refuse BEFORE UPDATE ON workflow_runs \
                     WHEN NEW.id = '{}' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                    bad.id
                ))
            })
            .unwrap();
        // Queued at once, so written in one batch.
        store.queue_state(&node_state(&bad.id));
        store.queue_state(&node_state(&good.id));
        let bad_failures = store.flush_run(&bad.id).await;
        let good_failures = store.flush_run(&good.id).await;
        assert_eq!(good_failures, Failures::default());
        assert_eq!(store.states(&good.id).unwrap().len(), 1);
        assert_eq!(store.get_run(&good.id).unwrap().unwrap().total_tokens, 3);
        assert_eq!(bad_failures.count, 1, "{bad_failures:?}");
        assert!(bad_failures.first.unwrap().contains("refused"));
        // The node state itself was kept.
        assert_eq!(store.states(&bad.id).unwrap().len(), 1);
    }
}
