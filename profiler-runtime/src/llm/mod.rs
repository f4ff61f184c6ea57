//! Timed LLM and tool calls: how long each call took, when its first chunk came, how it
//! ended, and the split of a node's time into the wait on the model and its own code.
//!
//! A call is timed from [`MultiProviderCostTracker::start_call`] (just before the request is
//! sent) to [`LlmCall::finish`] (the last byte read), or to [`LlmCall::fail`]; an [`LlmCall`]
//! dropped before either counts as cancelled. The profiled node running where the call
//! started gets the call, however many threads the task moves across before it ends.
//!
//! ```
//! use agent_profiler_runtime::{LlmOutcome, MultiProviderCostTracker, Usage};
//!
//! let tracker = MultiProviderCostTracker::new();
//! let call = tracker.start_call("openai", "gpt-4o-mini");
//! call.set_stream(true);
//! call.first_chunk(); // the first content chunk arrived
//! let info = call.finish(Usage::new(1200, 300)).unwrap();
//! let timing = info.timing.as_ref().unwrap();
//! assert_eq!(timing.outcome, LlmOutcome::Ok);
//! assert!(timing.ttft_ns().unwrap() <= timing.duration_ns());
//!
//! // A call that failed before the provider said what it used: no tokens, no cost.
//! let call = tracker.start_call("openai", "gpt-4o-mini");
//! let failed = call.fail(LlmOutcome::Timeout, "no answer within 30 s", None);
//! assert!(!failed.has_usage);
//! assert_eq!(tracker.get_cost_summary().failed_calls, 1);
//! ```
//!
//! Per node the analyzer keeps (see [`NodeTimings`](crate::NodeTimings)): the LLM time, the
//! union of the node's call intervals (two concurrent 200 ms calls count 200 ms, not 400);
//! its own time, the node's self time less its LLM time; and the time to first token of its
//! streamed calls (p50, p95). In trace mode each call of one execution of a node is merged
//! with the other calls of that execution only; without trace mode the calls of concurrent
//! executions of the same node cannot be told apart, and their overlap counts once.
//!
//! [`MultiProviderCostTracker::start_call`]: crate::MultiProviderCostTracker::start_call

mod call;
mod split;

use serde::{Deserialize, Serialize};

pub(crate) use call::Origin;
pub use call::{LlmCall, ToolCall};
pub(crate) use split::NodeLlm;

/// How a timed LLM call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmOutcome {
    /// The answer came in full.
    Ok,
    /// The provider answered with an error, the answer could not be read, or a stream was
    /// cut off.
    Error,
    /// No answer (or no end of the stream) within the client's timeout.
    Timeout,
    /// The call was dropped before it ended (its task was cancelled).
    Cancelled,
}

impl LlmOutcome {
    /// The name used in exports: `ok`, `error`, `timeout`, `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            LlmOutcome::Ok => "ok",
            LlmOutcome::Error => "error",
            LlmOutcome::Timeout => "timeout",
            LlmOutcome::Cancelled => "cancelled",
        }
    }
}

/// When a timed LLM call ran and how it ended: the part of a
/// [`CostInfo`](crate::CostInfo) that [`LlmCall`] adds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmTiming {
    /// When the request was about to be sent, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// When the answer's last byte was read (or the call failed), ns since the Unix epoch.
    pub end_unix_ns: u64,
    /// When the first content chunk of a streamed answer arrived, ns since the Unix epoch.
    #[serde(default)]
    pub first_chunk_unix_ns: Option<u64>,
    /// Whether the answer was streamed.
    #[serde(default)]
    pub stream: bool,
    /// How the call ended.
    pub outcome: LlmOutcome,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

impl LlmTiming {
    /// Wall time of the call, ns.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }

    /// Time to first token: from the request to the first content chunk, ns (`None` for an
    /// answer that was not streamed, or a stream that never sent content).
    pub fn ttft_ns(&self) -> Option<u64> {
        self.first_chunk_unix_ns
            .map(|first| first.saturating_sub(self.start_unix_ns))
    }

    /// Output tokens per second while the answer streamed: `output_tokens` over the time
    /// from the first chunk to the end (the whole call when not streamed); `None` when that
    /// time is zero.
    pub fn output_tokens_per_second(&self, output_tokens: u64) -> Option<f64> {
        let from = self.first_chunk_unix_ns.unwrap_or(self.start_unix_ns);
        let ns = self.end_unix_ns.saturating_sub(from);
        (ns > 0).then(|| output_tokens as f64 * 1e9 / ns as f64)
    }
}
