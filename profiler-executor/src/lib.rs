//! agent-profiler's executors: [`NodeExecutor`] runs one LLM node, profiled under its id and
//! cost-tracked; [`WorkflowExecutor`] runs a workflow (from a JSON file,
//! [`run_workflow_from_config`](WorkflowExecutor::run_workflow_from_config), or written in
//! code, [`run_fn`](WorkflowExecutor::run_fn)) with a fresh [`BottleneckAnalyzer`]
//! installed for the run and the tasks it spawns, and hands the finished run to its outputs:
//! the printed bottleneck report, MLflow, the run store (a [`WorkflowRunRecord`] with its
//! `bottleneck_info`), a Perfetto file, OTLP.
//!
//! - [`llm`]: the LLM clients (OpenAI-compatible, Anthropic, simulated);
//! - [`store`]: the SQLite run store;
//! - [`history`]: figures computed from stored runs (per-node figures across runs, trends,
//!   comparisons).
//!
//! [`BottleneckAnalyzer`]: agent_profiler_runtime::BottleneckAnalyzer
//! [`WorkflowRunRecord`]: crate::store::WorkflowRunRecord
#![warn(missing_docs)]

mod config;
mod console;
pub mod history;
pub mod llm;
mod node;
mod sinks;
pub mod store;
mod structure;
mod workflow;

pub use config::{
    ConfigError, DEFAULT_MAX_TOKENS, MAX_CONFIG_BYTES, MAX_MAX_TOKENS, MAX_NAME_LEN, NodeConfig,
    StepConfig, WorkflowConfig, placeholders, render,
};
pub use console::{Console, bottleneck_report};
pub use node::{NodeError, NodeErrorKind, NodeExecutor, NodeOutput};
pub use workflow::{RunFailure, WorkflowContext, WorkflowError, WorkflowExecutor, WorkflowRun};
