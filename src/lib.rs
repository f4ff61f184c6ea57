//! # agent-profiler
//!
//! Shows the author of an LLM-agent workflow (or any pipeline of "nodes") where the time
//! goes: per node calls, total / average / percentile time, self time under nesting, how
//! calls ended (ok, error, panicked, cancelled); per workflow the slowest node and the
//! bottlenecks.
//!
//! Put `#[profile_node("id")]` on node functions, sync or async, install a
//! [`BottleneckAnalyzer`] on the thread (or carry it with a future), run, read the summary:
//!
//! ```
//! use agent_profiler::{profile_node, BottleneckAnalyzer, ProfilerScope};
//!
//! #[profile_node("retrieve")]
//! fn retrieve(query: &str) -> Vec<String> {
//!     std::thread::sleep(std::time::Duration::from_millis(2));
//!     vec![format!("doc about {query}")]
//! }
//!
//! #[profile_node("summarize")]
//! fn summarize(docs: &[String]) -> Result<String, String> {
//!     std::thread::sleep(std::time::Duration::from_millis(8));
//!     docs.first().cloned().ok_or_else(|| "no documents".to_owned())
//! }
//!
//! let analyzer = BottleneckAnalyzer::new();
//! {
//!     let _scope = ProfilerScope::new(&analyzer);
//!     let docs = retrieve("profilers");
//!     summarize(&docs).unwrap();
//! }
//! let summary = analyzer.get_summary();
//! assert_eq!(summary.node_count, 2);
//! assert_eq!(summary.slowest_node.unwrap().node_id, "summarize");
//! println!("{}", serde_json::to_string_pretty(&summary.bottlenecks).unwrap());
//! ```
//!
//! Async nodes work the same way; tasks that run on other threads carry the analyzer with
//! [`ProfilerFutureExt::with_profiler`] or [`ProfilerFutureExt::in_current_profiler`].
//!
//! A profiled call costs a thread-local read and a branch when no analyzer is installed, and
//! two clock reads plus a few nanoseconds when one is: no lock, no allocation, no shared
//! counter. The `noop` feature compiles every `#[profile_node]` out; [`set_enabled`] turns
//! recording off at run time.
//!
//! Library authors who re-export the macro pass their own path to the runtime:
//! `#[my_lib::profile_node("id", crate = my_lib::profiler)]`.
//!
//! The default features build the macro and the core only (serde, serde_json). The outputs
//! are opt-in, one module each: `mlflow` (module `mlflow`), `otlp` (`trace::otlp`), `report`
//! (`report`, `trace::perfetto`, `trace::layout`), `executor` (`executor`, `llm`, `store`;
//! brings every output), `prometheus` (`prometheus`), and `full` for everything.
#![warn(missing_docs)]

pub use agent_profiler_macros::profile_node;
pub use agent_profiler_runtime::{
    BottleneckAnalyzer, DEFAULT_THRESHOLD_PERCENT, LlmCall, LlmOutcome, LlmTiming,
    MAX_DYNAMIC_NODE_IDS, MultiProviderCostTracker, NodeCostShare, NodeShare, NodeTimings,
    OTHER_DYNAMIC_NODES, Outcome, OutcomeCounts, ProfilerFutureExt, ProfilerScope, RecordError,
    Summary, ToolCall, WithProfiler, clear_profiler, current_node_id, extract_provider,
    get_profiler, is_enabled, profile_call, profile_fallible, set_enabled, set_profiler,
};

/// LLM cost: token usage read from provider responses, prices, and
/// [`MultiProviderCostTracker`], which adds each call's cost to the node that made it.
pub use agent_profiler_runtime::cost;

/// The critical path of a run, the slack of the calls off it, and what speeding up one
/// node would save ([`Summary::critical_path`], [`BottleneckAnalyzer::critical_path`]).
pub use agent_profiler_runtime::critical;

/// Trace mode's model ([`Trace`](trace::Trace), [`Span`](trace::Span)) and, by feature,
/// what reads it: the Perfetto writer and the lane layout (`report`), the OTLP exporter
/// (`otlp`).
pub mod trace {
    pub use agent_profiler_runtime::trace::{DEFAULT_TRACE_CAPACITY, PollSlice, Span, Trace};

    #[cfg(feature = "report")]
    pub use agent_profiler_report::{layout, perfetto};

    /// OTLP/HTTP export of traces to MLflow or any OpenTelemetry collector (feature `otlp`).
    #[cfg(feature = "otlp")]
    pub use agent_profiler_otlp as otlp;
}

/// The rules every node id follows, whichever way it enters (the macro, a workflow file,
/// [`BottleneckAnalyzer::record_node`], [`profile_call`]): non-empty, ASCII letters, digits
/// and `_ - . /`, at most [`MAX_NODE_ID_LEN`](node_id::MAX_NODE_ID_LEN) characters.
pub mod node_id {
    pub use agent_profiler_runtime::{
        MAX_NODE_ID_LEN, NodeIdError, check_node_id, is_node_id_char,
    };
}

/// Per-call records, for writing an exporter of one's own: turn them on with
/// [`BottleneckAnalyzer::enable_call_export`] and drain them with
/// [`BottleneckAnalyzer::drain_calls`] from another thread.
pub mod export {
    pub use agent_profiler_runtime::{CallRecord, DEFAULT_RING_CAPACITY};
}

/// Which clock the call path reads: the CPU's time-stamp counter where the kernel trusts it,
/// else `Instant`.
pub mod clock {
    pub use agent_profiler_runtime::{ClockSource, clock_source as source};
}

/// MLflow: per-call durations and LLM costs as metrics of an MLflow run, and the bottleneck
/// report (feature `mlflow`).
#[cfg(feature = "mlflow")]
pub use agent_profiler_mlflow as mlflow;

/// The analyzer's lifetime counters for scrapers ([`BottleneckAnalyzer::metrics`]: calls,
/// duration histograms at fixed bounds, LLM calls, tokens and cost per model) and timings
/// over a recent window ([`BottleneckAnalyzer::recent_timings`]).
pub use agent_profiler_runtime::metrics;

/// Prometheus: the analyzers' lifetime counters served in the OpenMetrics text format on a
/// small HTTP endpoint (`GET /metrics`) (feature `prometheus`).
#[cfg(feature = "prometheus")]
pub use agent_profiler_prometheus as prometheus;

/// The self-contained HTML report of a run (feature `report`).
#[cfg(feature = "report")]
pub use agent_profiler_report::html as report;

/// Node and workflow executors (feature `executor`).
#[cfg(feature = "executor")]
pub mod executor {
    pub use agent_profiler_executor::{
        ConfigError, Console, DEFAULT_MAX_TOKENS, MAX_CONFIG_BYTES, MAX_MAX_TOKENS, MAX_NAME_LEN,
        NodeConfig, NodeError, NodeErrorKind, NodeExecutor, NodeOutput, RunFailure, StepConfig,
        WorkflowConfig, WorkflowContext, WorkflowError, WorkflowExecutor, WorkflowRun,
        bottleneck_report, placeholders, render,
    };
}

/// The LLM clients of the executors: OpenAI-compatible, Anthropic, simulated (feature
/// `executor`).
#[cfg(feature = "executor")]
pub use agent_profiler_executor::llm;

/// The SQLite run store the workflow executor writes (feature `executor`).
#[cfg(feature = "executor")]
pub use agent_profiler_executor::store;

/// Figures across the stored runs of a workflow: per-node statistics, trends with the SLOW
/// rule, comparisons of two runs (feature `executor`).
#[cfg(feature = "executor")]
pub use agent_profiler_executor::history;

/// LLM and tool calls captured from `tracing` spans that carry OpenTelemetry GenAI
/// attributes (rig, genai, hand-written spans), timed and priced on the profiled node that
/// entered them (feature `tracing`).
#[cfg(feature = "tracing")]
pub use agent_profiler_tracing as tracing_capture;

/// The README's code blocks, compiled and run as doctests (they use every output).
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// What the code generated by `#[profile_node]` uses. Not a public API.
#[doc(hidden)]
pub use agent_profiler_runtime::__private;
