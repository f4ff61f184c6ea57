//! The run store sink: the run's record as it starts and as it ends, each node's state, and
//! the trace, queued for the store's writer thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use agent_profiler_runtime::cost::CostSink;

use super::{RunSink, RunStart, Warnings};
use agent_profiler_runtime::trace::Trace;

use crate::store::{ExecutionStateRecord, RunStore, WorkflowRunRecord};
use crate::workflow::WorkflowRun;

/// Saves the run in a [`RunStore`]: the record when the run starts (status `running`, with
/// this process as its owner, so a run whose process dies is listed, as `interrupted`),
/// each node's state as the node finishes (with the run's running totals and, in trace
/// mode, its trace so far), and the final record and trace when the run ends.
///
/// Nothing here touches the disk: every write is queued for the store's writer thread,
/// which writes them in batches (see [`RunStore::queue_state`]). At the end of the run
/// ([`settle`](RunSink::settle)) the run waits, without holding a thread, until its
/// writes are done; each write that failed is counted in one warning.
pub(crate) struct StoreSink {
    store: RunStore,
    run_id: OnceLock<String>,
}

impl StoreSink {
    pub fn new(store: RunStore) -> Self {
        Self {
            store,
            run_id: OnceLock::new(),
        }
    }
}

impl RunSink for StoreSink {
    fn run_started(&self, run: &RunStart<'_>, _warnings: &Warnings) -> Option<Arc<dyn CostSink>> {
        let _ = self.run_id.set(run.record.id.clone());
        let analyzer = run
            .analyzer
            .is_trace_enabled()
            .then(|| run.analyzer.clone());
        self.store.queue_start(run.record, analyzer);
        None
    }

    fn node_finished(&self, state: &ExecutionStateRecord, _warnings: &Warnings) {
        self.store.queue_state(state);
    }

    fn run_finished(&self, run: &mut WorkflowRun, _warnings: &Warnings) {
        self.store.queue_finish(&run.record, run.trace.as_ref());
    }

    fn run_abandoned(&self, record: &WorkflowRunRecord, trace: Option<&Trace>) {
        self.store.queue_finish(record, trace);
    }

    fn settle(&self) -> Option<Pin<Box<dyn Future<Output = Vec<String>> + Send>>> {
        let run_id = self.run_id.get()?.clone();
        let flushed = self.store.flush_run(&run_id);
        Some(Box::pin(async move {
            let failures = flushed.await;
            match failures.first {
                Some(first) if failures.count > 0 => vec![format!(
                    "run {run_id}: {} store writes failed (run, node states or trace not stored); first: {first}",
                    failures.count
                )],
                _ => Vec::new(),
            }
        }))
    }
}
