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
#![warn(missing_docs)]

pub use agent_profiler_macros::profile_node;
pub use agent_profiler_runtime::*;
