//! agent-profiler: where the time and the money go in an LLM-agent workflow.
#![warn(missing_docs)]

pub use agent_profiler_macros::profile_node;
pub use agent_profiler_runtime::*;
