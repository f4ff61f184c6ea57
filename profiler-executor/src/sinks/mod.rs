//! Where a workflow run goes: each output of the executor is a [`RunSink`], told when the
//! run starts, when each node finishes, and when the run ends.
//!
//! The executor builds its list of sinks for every run from its configuration
//! ([`WorkflowExecutor`](crate::WorkflowExecutor)'s `sinks`), in the order the outputs
//! depend on each other: MLflow first (the run's MLflow id goes into the trace sent over
//! OTLP), then the console report, the run store, the Perfetto file and OTLP.
//!
//! - [`mlflow`]: an MLflow run per workflow run, started before the first node (per-call
//!   metrics go out while the run runs) and finished with the run's status;
//! - [`console`]: the bottleneck report, printed;
//! - [`store`]: the run record, each node's state and the trace, in the run store;
//! - [`perfetto`]: the trace as a Perfetto file;
//! - [`otlp`]: the trace over OTLP.

pub(crate) mod console;
pub(crate) mod mlflow;
pub(crate) mod otlp;
pub(crate) mod perfetto;
pub(crate) mod store;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::cost::CostSink;
use agent_profiler_runtime::trace::Trace;

use crate::console::Console;
use crate::store::{ExecutionStateRecord, WorkflowRunRecord};
use crate::workflow::WorkflowRun;

/// An output of the workflow executor. Every hook but [`run_finished`](Self::run_finished)
/// does nothing unless implemented; none may fail the run: problems go to [`Warnings`].
pub(crate) trait RunSink: Send + Sync {
    /// The run starts: its record is created, no node has run yet. Returns where the LLM
    /// cost of every call the run's nodes make should go as well, if anywhere.
    fn run_started(&self, run: &RunStart<'_>, warnings: &Warnings) -> Option<Arc<dyn CostSink>> {
        let _ = (run, warnings);
        None
    }

    /// A node finished (or failed): its state snapshot, as kept with the run.
    fn node_finished(&self, state: &ExecutionStateRecord, warnings: &Warnings) {
        let _ = (state, warnings);
    }

    /// The run ended: `run` holds the final record, the summary, the report and the trace.
    /// A sink may fill in what it made of the run (the MLflow run, the Perfetto file).
    fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings);

    /// The run's future was dropped before the run ended: `record` says so (status
    /// `interrupted`, the totals of the nodes that finished), with the trace so far. Must
    /// not block: it runs wherever the future is dropped.
    fn run_abandoned(&self, record: &WorkflowRunRecord, trace: Option<&Trace>) {
        let _ = (record, trace);
    }

    /// After every sink's [`run_finished`](Self::run_finished): what the run should wait
    /// for (without holding a thread) before it returns, such as the store's writes; its
    /// warnings.
    fn settle(&self) -> Option<Pin<Box<dyn Future<Output = Vec<String>> + Send>>> {
        None
    }
}

/// What the sinks know of a run as it starts.
pub(crate) struct RunStart<'a> {
    /// The run's record (status `running`).
    pub record: &'a WorkflowRunRecord,
    /// The run's analyzer, installed for the run and every task it spawns.
    pub analyzer: &'a BottleneckAnalyzer,
    /// The LLM client, described (never a key).
    pub llm_client: &'a str,
}

/// A run's warnings: problems of its outputs, which never fail a run. Each is printed on
/// the console as it happens (`warning: ...`) and kept for
/// [`WorkflowRun::warnings`](crate::WorkflowRun::warnings).
pub(crate) struct Warnings {
    console: Console,
    kept: Mutex<Vec<String>>,
}

impl Warnings {
    /// No warning yet; they will be printed on `console`.
    pub fn new(console: Console) -> Self {
        Self {
            console,
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Prints and keeps `text`.
    pub fn warn(&self, text: String) {
        self.console.write(&format!("warning: {text}\n"));
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(text);
    }

    /// The warnings so far, in order.
    pub fn to_vec(&self) -> Vec<String> {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The sinks of one run, told of it in order.
pub(crate) struct Sinks(Vec<Box<dyn RunSink>>);

impl Sinks {
    /// These sinks, told in this order.
    pub fn new(sinks: Vec<Box<dyn RunSink>>) -> Self {
        Self(sinks)
    }

    /// Tells every sink the run starts; the cost sinks they return.
    pub fn run_started(&self, run: &RunStart<'_>, warnings: &Warnings) -> Vec<Arc<dyn CostSink>> {
        self.0
            .iter()
            .filter_map(|sink| sink.run_started(run, warnings))
            .collect()
    }

    /// Tells every sink a node finished.
    pub fn node_finished(&self, state: &ExecutionStateRecord, warnings: &Warnings) {
        for sink in &self.0 {
            sink.node_finished(state, warnings);
        }
    }

    /// Hands the finished run to every sink.
    pub fn run_finished(&self, run: &mut WorkflowRun, warnings: &Warnings) {
        for sink in &self.0 {
            sink.run_finished(run, warnings);
        }
    }

    /// Tells every sink the run was dropped before it ended.
    pub fn run_abandoned(&self, record: &WorkflowRunRecord, trace: Option<&Trace>) {
        for sink in &self.0 {
            sink.run_abandoned(record, trace);
        }
    }

    /// Waits for what the sinks still do for the run (see [`RunSink::settle`]).
    pub async fn settle(&self, warnings: &Warnings) {
        for sink in &self.0 {
            if let Some(settled) = sink.settle() {
                for warning in settled.await {
                    warnings.warn(warning);
                }
            }
        }
    }
}
