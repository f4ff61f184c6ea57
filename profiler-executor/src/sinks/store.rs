//! The run store sink: the run's record as it starts and as it ends, each node's state, and
//! the trace.

use std::sync::Arc;

use agent_profiler_runtime::cost::CostSink;

use super::{RunSink, RunStart, Warnings};
use crate::store::{ExecutionStateRecord, RunStore};
use crate::workflow::WorkflowRun;

/// Saves the run in a [`RunStore`]: the record when the run starts (status `running`, so a
/// run whose process dies is still listed) and again when it ends, each node's state as
/// the node finishes, and the trace.
pub(crate) struct StoreSink {
    store: RunStore,
}

impl StoreSink {
    pub fn new(store: RunStore) -> Self {
        Self { store }
    }
}

impl RunSink for StoreSink {
    fn run_started(&self, run: &RunStart<'_>, warnings: &Warnings) -> Option<Arc<dyn CostSink>> {
        if let Err(e) = self.store.save_run(run.record) {
            warnings.warn(format!("run not stored: {e}"));
        }
        None
    }

    fn node_finished(&self, state: &ExecutionStateRecord, warnings: &Warnings) {
        if let Err(e) = self.store.save_state(state) {
            warnings.warn(format!("node state of `{}` not stored: {e}", state.node_id));
        }
    }

    fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings) {
        if let Err(e) = self.store.save_run(&run.record) {
            warnings.warn(format!("run not stored: {e}"));
        }
        if let Some(trace) = &run.trace
            && let Err(e) = self.store.save_trace(&run.record.id, trace)
        {
            warnings.warn(format!("trace not stored: {e}"));
        }
    }
}
