//! Trace mode: every call kept as a span (node, start, end, thread, parent, outcome, LLM
//! usage) in a buffer of fixed size, for timelines and for export to tracing backends.
//!
//! Off by default, and then the call path pays one load and a branch for it. Turned on with
//! [`BottleneckAnalyzer::enable_trace`](crate::BottleneckAnalyzer::enable_trace), the
//! analyzer keeps the first `capacity` spans (and polls of async nodes); what comes later is
//! counted in [`Trace::dropped`], never kept, so memory stays at what the user chose.
//! [`BottleneckAnalyzer::trace`](crate::BottleneckAnalyzer::trace) returns what was kept.
//!
//! ```
//! use agent_profiler_runtime::BottleneckAnalyzer;
//!
//! let analyzer = BottleneckAnalyzer::new();
//! analyzer.enable_trace(1024);
//! analyzer.record_node("plan", 12.0).unwrap();
//! let trace = analyzer.trace().unwrap();
//! assert_eq!(trace.spans.len(), 1);
//! assert_eq!(trace.spans[0].node_id, "plan");
//! assert_eq!(trace.spans[0].duration_ns(), 12_000_000);
//! ```

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::cost::{CostBreakdown, CostInfo};
use crate::outcome::Outcome;

mod buffer;
mod folded;

use std::sync::atomic::Ordering;

use crate::shard::Shard;
use crate::site::CallSite;
use crate::stats::Call;

pub(crate) use buffer::{
    ASYNC, POLL, RawSpan, SlotRun, SpanIds, TraceBuffer, begin_nested_span, current_span, end_span,
    manual_span_ids, new_span,
};
pub use buffer::{random_u64, splitmix64};

/// Records the end of a sync call with a span (`ids`): while the span fits in the buffer,
/// the span alone, its slot holding what the node's counters need (the readers count the
/// call from it); otherwise the counters as for any call (and the span is counted as
/// dropped). Calls exported one by one take the usual way through the shard, which hands
/// them to the exporters.
///
/// # Safety
/// `shard` must be the calling thread's (as for `Shard::record_owned`).
#[inline(always)]
pub(crate) unsafe fn end_sync_call(
    shard: &Shard,
    site: &'static CallSite,
    ids: SpanIds,
    call: &Call,
) {
    match shard.shared.trace_buffer.get() {
        // This thread's shard, so its run of slots is this thread's.
        Some(buffer) if !shard.export.load(Ordering::Relaxed) => {
            let raw = RawSpan::sync(site, ids, call);
            if !buffer.push_owned_counted(&shard.trace_run, &raw, call.self_time) {
                // SAFETY: the caller's contract.
                unsafe { record_directly(shard, site, call) };
            }
        }
        // SAFETY: the caller's contract.
        buffer => unsafe { end_exported_call(shard, buffer, site, ids, call) },
    }
}

/// The end of a sync call in trace mode whose span the buffer has no room for: the node's
/// counters as for any call. Out of line: once the buffer is full, a call pays for it.
///
/// # Safety
/// As for [`end_sync_call`].
#[cold]
#[inline(never)]
unsafe fn record_directly(shard: &Shard, site: &'static CallSite, call: &Call) {
    // SAFETY: the caller's contract.
    unsafe { shard.record_owned(site, call) };
}

/// The end of a sync call with a span exported one by one (or before the buffer exists):
/// the usual way through the shard, which hands the call to the exporters, and the span
/// into the buffer beside it.
///
/// # Safety
/// As for [`end_sync_call`].
#[cold]
#[inline(never)]
unsafe fn end_exported_call(
    shard: &Shard,
    buffer: Option<&TraceBuffer>,
    site: &'static CallSite,
    ids: SpanIds,
    call: &Call,
) {
    // SAFETY: the caller's contract.
    unsafe { shard.record_owned(site, call) };
    if let Some(buffer) = buffer {
        buffer.push_owned(&shard.trace_run, &RawSpan::sync(site, ids, call));
    }
}

/// Spans (and poll slices) an analyzer keeps in trace mode unless told otherwise.
pub const DEFAULT_TRACE_CAPACITY: usize = 65_536;

/// One call of a node, as kept in trace mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Unique within the trace, never 0.
    pub span_id: u64,
    /// The span of the node that was running when this call started, if any.
    pub parent_span_id: Option<u64>,
    /// The node id. Borrowed from the profiled function's call site (a `&'static str`), so
    /// that taking a snapshot copies no string per span; owned for spans recorded by hand
    /// and for spans read back from JSON.
    pub node_id: Cow<'static, str>,
    /// The node that was running when this call started, if any (known even when its span
    /// did not fit in the buffer). Borrowed or owned as [`node_id`](Self::node_id).
    pub parent_node_id: Option<Cow<'static, str>>,
    /// When the call started, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// When the call ended, ns since the Unix epoch.
    pub end_unix_ns: u64,
    /// Time spent running: inside `poll` for async nodes, the whole call for sync ones.
    pub busy_ns: u64,
    /// The profiler's id of the thread the call started on (not the OS thread id).
    pub thread: u64,
    /// Whether the node is an `async fn`.
    pub is_async: bool,
    /// How the call ended.
    pub outcome: Outcome,
    /// The LLM calls tracked while this call was the innermost running node.
    pub llm_calls: Vec<CostInfo>,
}

impl Span {
    /// Wall time of the call, ns.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns.saturating_sub(self.start_unix_ns)
    }

    /// The intervals of this call's timed LLM calls, sorted and merged where they overlap,
    /// ns since the Unix epoch (calls tracked from a body alone have none).
    pub fn llm_intervals(&self) -> Vec<(u64, u64)> {
        let mut intervals: Vec<(u64, u64)> = self
            .llm_calls
            .iter()
            .filter_map(|c| c.timing.as_ref())
            .map(|t| (t.start_unix_ns, t.end_unix_ns.max(t.start_unix_ns)))
            .collect();
        intervals.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (start, end) in intervals {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// How much of `[from, to)` (ns since the Unix epoch) this call spent waiting on its
    /// timed LLM calls, overlapping calls counted once.
    pub fn llm_ns_within(&self, from: u64, to: u64) -> u64 {
        covered(&self.llm_intervals(), from, to)
    }

    /// The totals of [`llm_calls`](Self::llm_calls).
    pub fn llm_totals(&self) -> CostBreakdown {
        let mut totals = CostBreakdown::default();
        for call in &self.llm_calls {
            totals.add(call);
        }
        totals
    }
}

/// How much of `[from, to)` the sorted, merged `intervals` cover, ns.
pub(crate) fn covered(intervals: &[(u64, u64)], from: u64, to: u64) -> u64 {
    intervals
        .iter()
        .map(|&(start, end)| end.min(to).saturating_sub(start.max(from)))
        .sum()
}

/// One poll of an async node: a stretch of its wall time during which it was running.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PollSlice {
    /// The span of the async call that was polled.
    pub span_id: u64,
    /// The thread that polled it.
    pub thread: u64,
    /// When the poll started, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// When the poll returned, ns since the Unix epoch.
    pub end_unix_ns: u64,
}

/// What trace mode kept of a run: its spans in the order they ended, the polls of its async
/// nodes, and what did not fit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// The trace's id (random, drawn when trace mode was turned on), as 32 hex digits.
    pub trace_id: String,
    /// The spans kept, in the order they ended.
    pub spans: Vec<Span>,
    /// The polls of async spans kept, in the order they ended.
    pub polls: Vec<PollSlice>,
    /// The buffer's size: spans and polls kept at most.
    pub capacity: usize,
    /// Spans and polls that came after the buffer was full, counted and not kept. Threads
    /// take the buffer's slots in small runs, so with several threads a few slots may stay
    /// empty when it fills: the rest of the run of a thread that made no call since (at most
    /// 64 slots per thread and `capacity / 1024`; none when one thread records).
    pub dropped: u64,
    /// LLM calls that could not be attached (their span was not kept, or the list was full).
    pub unattached_llm_calls: u64,
}

impl Trace {
    /// The trace id as 16 bytes (OpenTelemetry's form); all zeros if `trace_id` is not hex.
    pub fn trace_id_bytes(&self) -> [u8; 16] {
        u128::from_str_radix(&self.trace_id, 16).map_or([0; 16], u128::to_be_bytes)
    }

    /// The spans whose parent is `parent` (`None`: the top-level spans, and those whose
    /// parent span was not kept).
    pub fn children(&self, parent: Option<u64>) -> impl Iterator<Item = &Span> {
        let kept = |id: u64| self.spans.iter().any(|s| s.span_id == id);
        self.spans
            .iter()
            .filter(move |s| match (parent, s.parent_span_id) {
                (None, None) => true,
                (None, Some(p)) => !kept(p),
                (Some(wanted), Some(p)) => wanted == p,
                (Some(_), None) => false,
            })
    }

    /// The earliest start and latest end among the spans, ns since the Unix epoch.
    pub fn bounds(&self) -> Option<(u64, u64)> {
        let start = self.spans.iter().map(|s| s.start_unix_ns).min()?;
        let end = self.spans.iter().map(|s| s.end_unix_ns).max()?;
        Some((start, end))
    }
}

/// What the unit tests of the trace readers (the lane layout, the Perfetto writer, the OTLP
/// conversion, the report's timeline, in the output crates) build their traces with. Not a
/// public API.
#[doc(hidden)]
pub mod test_support {
    use std::borrow::Cow;

    use super::Span;
    use crate::outcome::Outcome;

    /// A sync call of `node` on thread 1 that ended ok, busy for all its wall time, with no
    /// LLM calls.
    pub fn span(id: u64, parent: Option<u64>, node: &str, start: u64, end: u64) -> Span {
        Span {
            span_id: id,
            parent_span_id: parent,
            node_id: Cow::Owned(node.to_owned()),
            parent_node_id: None,
            start_unix_ns: start,
            end_unix_ns: end,
            busy_ns: end.saturating_sub(start),
            thread: 1,
            is_async: false,
            outcome: Outcome::Ok,
            llm_calls: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::span;
    use crate::cost::CostInfo;
    use crate::llm::{LlmOutcome, LlmTiming};

    fn timed(start: u64, end: u64) -> CostInfo {
        let mut call: CostInfo = serde_json::from_value(serde_json::json!({
            "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
            "total_tokens": 2, "cached_input_tokens": 0, "cache_creation_input_tokens": 0,
            "reasoning_tokens": 0, "cost_usd": null, "unpriced_reason": null,
            "node_id": null, "timestamp": 0.0
        }))
        .unwrap();
        call.timing = Some(LlmTiming {
            start_unix_ns: start,
            end_unix_ns: end,
            first_chunk_unix_ns: None,
            stream: false,
            outcome: LlmOutcome::Ok,
            error: None,
        });
        call
    }

    #[test]
    fn llm_time_is_the_union_of_the_timed_calls_within_a_stretch() {
        let mut s = span(1, None, "ask", 1_000, 2_000);
        for (start, end) in [(1_500, 2_500), (900, 1_200), (1_100, 1_300)] {
            s.llm_calls.push(timed(start, end));
        }
        assert_eq!(s.llm_intervals(), [(900, 1_300), (1_500, 2_500)]);
        assert_eq!(s.llm_ns_within(1_000, 2_000), 300 + 500);
        assert_eq!(s.llm_ns_within(1_300, 1_500), 0);
        let untimed = span(2, None, "ask", 1_000, 2_000);
        assert_eq!(untimed.llm_ns_within(1_000, 2_000), 0);
    }
}
