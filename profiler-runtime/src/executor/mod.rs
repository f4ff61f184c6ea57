//! The executors (the seed's Tasks 2 and 3): [`NodeExecutor`] runs one LLM node, profiled
//! under its id and cost-tracked; [`WorkflowExecutor`] runs a workflow (from a JSON file,
//! [`run_workflow_from_config`](WorkflowExecutor::run_workflow_from_config), or written in
//! code, [`run_fn`](WorkflowExecutor::run_fn)) with a fresh [`BottleneckAnalyzer`]
//! installed for the run and the tasks it spawns, prints the bottleneck report, logs it to
//! MLflow when configured, and stores a [`WorkflowRunRecord`] with its `bottleneck_info`.
//!
//! [`BottleneckAnalyzer`]: crate::BottleneckAnalyzer
//! [`WorkflowRunRecord`]: crate::store::WorkflowRunRecord

mod config;
mod node;
mod report;
mod workflow;

pub use config::{
    ConfigError, DEFAULT_MAX_TOKENS, NodeConfig, StepConfig, WorkflowConfig, placeholders, render,
};
pub use node::{NodeError, NodeErrorKind, NodeExecutor, NodeOutput};
pub use report::{Console, bottleneck_report};
pub use workflow::{RunFailure, WorkflowContext, WorkflowError, WorkflowExecutor, WorkflowRun};
