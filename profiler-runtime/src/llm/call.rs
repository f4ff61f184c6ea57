//! [`LlmCall`] and [`ToolCall`]: guards that time one call from its start to its end, and
//! the [`Origin`] they remember so that the call counts for the node that made it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use super::{LlmOutcome, LlmTiming};
use crate::analyzer::{BottleneckAnalyzer, Ticks};
use crate::clock::{self, Conversion};
use crate::context::{current_node_id, get_profiler};
use crate::cost::{CostError, CostInfo, MultiProviderCostTracker, Usage};
use crate::trace;

/// Where a call was made: the innermost profiled node running on the thread, the analyzer
/// installed for it, and its trace span (0 without trace mode). Taken when the call starts,
/// so that it still holds when the call ends on another thread, outside any poll.
#[derive(Clone, Debug, Default)]
pub(crate) struct Origin {
    pub(crate) node: Option<&'static str>,
    pub(crate) analyzer: Option<BottleneckAnalyzer>,
    pub(crate) span: u64,
}

impl Origin {
    /// The node running on this thread now (for an async node: while it is polled).
    pub(crate) fn here() -> Self {
        let node = current_node_id();
        Self {
            node,
            analyzer: node.and_then(|_| get_profiler()),
            span: trace::current_span(),
        }
    }

    /// The node and its analyzer, when both are known.
    pub(crate) fn target(&self) -> Option<(&'static str, &BottleneckAnalyzer)> {
        self.node.zip(self.analyzer.as_ref())
    }
}

/// One LLM call being timed: made by [`MultiProviderCostTracker::start_call`] just before
/// the request is sent, ended by [`finish`](Self::finish) (or
/// [`finish_response`](Self::finish_response)) when the answer's last byte is read, or by
/// [`fail`](Self::fail). Dropped before that, the call is recorded as cancelled (its task
/// was dropped mid-call).
///
/// The call counts for the profiled node that was running where it started, with that
/// node's analyzer, whichever thread ends it. It is `Send` and `'static`, so it can live in
/// a future or a `tracing` span's extensions. Starting and finishing one costs well under a
/// microsecond (`benches/interleaved.rs`, case `llm_call`).
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerFutureExt};
/// use agent_profiler_runtime::profile_call;
/// use serde_json::json;
///
/// let analyzer = BottleneckAnalyzer::new();
/// let tracker = MultiProviderCostTracker::new();
/// let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
/// // What `#[profile_node("answer")] async fn` does, with the id known at run time.
/// let node = profile_call("answer", async {
///     let call = tracker.start_call("openai", "gpt-4o-mini");
///     tokio::time::sleep(std::time::Duration::from_millis(5)).await; // the request
///     let body = json!({"usage": {"prompt_tokens": 100, "completion_tokens": 20}});
///     call.finish_response(&body).unwrap();
/// });
/// rt.block_on(node.with_profiler(analyzer.clone()));
/// let node = analyzer.get_node("answer").unwrap();
/// assert_eq!((node.llm_calls, node.input_tokens), (1, 100));
/// assert!(node.llm_time_ms >= 5.0);
/// assert!(node.own_time_ms < node.self_duration_ms);
/// ```
#[must_use = "a call dropped at once is recorded as cancelled; finish it with its answer"]
pub struct LlmCall {
    tracker: MultiProviderCostTracker,
    provider: String,
    model: String,
    origin: Origin,
    start: u64,
    /// Whether the node's analyzer counted the start (its end must then be counted too).
    counted: bool,
    /// Tick of the first content chunk; 0 until it comes.
    first_chunk: AtomicU64,
    stream: AtomicBool,
    done: bool,
}

impl std::fmt::Debug for LlmCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmCall")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("node", &self.origin.node)
            .field("stream", &self.stream.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MultiProviderCostTracker {
    /// Starts timing one call of `model` served by `provider` (empty: taken from the model
    /// name, as by [`track_call`](Self::track_call)). Call it just before sending the
    /// request, inside the profiled node that makes the call; end it with the answer. See
    /// [`LlmCall`].
    pub fn start_call(&self, provider: &str, model: &str) -> LlmCall {
        clock::init();
        let origin = Origin::here();
        let start = clock::now();
        let counted = origin
            .target()
            .is_some_and(|(node, analyzer)| analyzer.llm_started(node, origin.span, start));
        LlmCall {
            tracker: self.clone(),
            provider: provider.to_owned(),
            model: model.to_owned(),
            origin,
            start,
            counted,
            first_chunk: AtomicU64::new(0),
            stream: AtomicBool::new(false),
            done: false,
        }
    }
}

impl LlmCall {
    /// Names the model, when it is only known after the call started (from the answer, or
    /// from a span field recorded later).
    pub fn set_model(&mut self, model: &str) {
        model.clone_into(&mut self.model);
    }

    /// Names the provider, when it is only known after the call started.
    pub fn set_provider(&mut self, provider: &str) {
        provider.clone_into(&mut self.provider);
    }

    /// The model the call will be recorded under.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Marks the call as streamed (or not).
    pub fn set_stream(&self, stream: bool) {
        self.stream.store(stream, Ordering::Relaxed);
    }

    /// The first content chunk arrived now: the time to first token ends here. Only the
    /// first mark counts. Marks the call as streamed.
    pub fn first_chunk(&self) {
        self.mark_first_chunk(clock::now());
    }

    /// The first content chunk arrived at `at` (for a client that noted the instant itself).
    pub fn first_chunk_at(&self, at: Instant) {
        let now = clock::now();
        let ago = Conversion::current().ns_to_ticks(at.elapsed().as_nanos());
        self.mark_first_chunk(now.saturating_sub(ago).max(self.start));
    }

    fn mark_first_chunk(&self, tick: u64) {
        self.stream.store(true, Ordering::Relaxed);
        // Tick 0 would read as "no chunk": a call starting at tick 0 moves its mark by one.
        let _ =
            self.first_chunk
                .compare_exchange(0, tick.max(1), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Ends the call with the tokens it used: prices them, adds them to the node that made
    /// the call, and returns the record.
    ///
    /// # Errors
    /// [`CostError::Malformed`] when the parts of `usage` do not fit in their wholes; the
    /// call is still recorded, with its time, as a call without usage.
    pub fn finish(mut self, usage: Usage) -> Result<CostInfo, CostError> {
        ok_unless(self.end_with(LlmOutcome::Ok, None, Ok(usage)))
    }

    /// Ends the call with the provider's answer, from which the usage is read as
    /// [`MultiProviderCostTracker::track_call`] reads it.
    ///
    /// # Errors
    /// A [`CostError`] when the answer has no readable usage; the call is still recorded,
    /// with its time, as a call without usage.
    pub fn finish_response<R: Serialize + ?Sized>(
        mut self,
        response: &R,
    ) -> Result<CostInfo, CostError> {
        ok_unless(self.end_with(LlmOutcome::Ok, None, Usage::from_response(response)))
    }

    /// Ends a call that failed, with `outcome` and why; with `usage` when some was billed
    /// before the failure (a stream cut midway), whose tokens and cost count as usual. A
    /// call without usage counts in the failed calls, with its time.
    pub fn fail(
        mut self,
        outcome: LlmOutcome,
        reason: impl Into<String>,
        usage: Option<Usage>,
    ) -> CostInfo {
        let usage = usage.ok_or_else(|| CostError::MissingUsage {
            looked_for: "usage billed before the failure".to_owned(),
        });
        self.end_with(outcome, Some(reason.into()), usage).0
    }

    fn end_with(
        &mut self,
        outcome: LlmOutcome,
        error: Option<String>,
        usage: Result<Usage, CostError>,
    ) -> (CostInfo, Option<CostError>) {
        self.done = true;
        let end = clock::now();
        let conv = Conversion::current();
        let first_chunk = match self.first_chunk.load(Ordering::Relaxed) {
            0 => None,
            tick => Some(tick.min(end)),
        };
        let usage = usage.and_then(|u| u.check().map(|()| u));
        let error = error.or_else(|| usage.as_ref().err().map(ToString::to_string));
        let timing = LlmTiming {
            start_unix_ns: conv.tick_to_unix_ns(self.start),
            end_unix_ns: conv.tick_to_unix_ns(end),
            first_chunk_unix_ns: first_chunk.map(|t| conv.tick_to_unix_ns(t)),
            stream: self.stream.load(Ordering::Relaxed),
            outcome,
            error,
        };
        let (usage, why) = match usage {
            Ok(usage) => (Some(usage), None),
            Err(why) => (None, Some(why)),
        };
        let info = self.tracker.record_timed(
            &self.origin,
            &self.provider,
            &self.model,
            usage,
            timing,
            Ticks {
                start: self.start,
                end,
                counted: self.counted,
            },
        );
        (info, why)
    }
}

/// The record, or the reason it has no usage.
fn ok_unless((info, why): (CostInfo, Option<CostError>)) -> Result<CostInfo, CostError> {
    match why {
        None => Ok(info),
        Some(why) => Err(why),
    }
}

impl Drop for LlmCall {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.end_with(
                LlmOutcome::Cancelled,
                Some("the call was dropped before it ended".to_owned()),
                Err(CostError::MissingUsage {
                    looked_for: "an answer (the call was cancelled)".to_owned(),
                }),
            );
        }
    }
}

/// One tool call being timed (a search, a function the model asked for): its count and time
/// go to the profiled node running where it started, apart from the node's LLM time. Ended
/// by [`finish`](Self::finish) or by being dropped.
///
/// ```
/// use agent_profiler_runtime::ToolCall;
///
/// let call = ToolCall::start("web_search");
/// // ... run the tool ...
/// call.finish();
/// ```
#[must_use = "a tool call is timed until it is finished or dropped"]
#[derive(Debug)]
pub struct ToolCall {
    name: String,
    origin: Origin,
    start: u64,
    counted: bool,
}

impl ToolCall {
    /// Starts timing tool `name` for the node running now.
    pub fn start(name: &str) -> ToolCall {
        clock::init();
        let origin = Origin::here();
        let start = clock::now();
        let counted = origin
            .target()
            .is_some_and(|(node, analyzer)| analyzer.tool_started(node, origin.span, start));
        ToolCall {
            name: name.to_owned(),
            origin,
            start,
            counted,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ends the call now.
    pub fn finish(self) {}
}

impl Drop for ToolCall {
    fn drop(&mut self) {
        if let Some((node, analyzer)) = self.origin.target() {
            let ticks = Ticks {
                start: self.start,
                end: clock::now(),
                counted: self.counted,
            };
            analyzer.tool_ended(node, self.origin.span, ticks);
        }
    }
}
