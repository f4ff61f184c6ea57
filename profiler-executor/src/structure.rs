//! The critical path of a configured workflow from its declared structure: the steps in
//! order, each parallel group side by side, each node's measured call as a piece of work.

use agent_profiler_runtime::Summary;
use agent_profiler_runtime::critical::{CriticalPath, DEFAULT_SPEEDUP, Flow, Piece};
use agent_profiler_runtime::trace::{Span, Trace};

use crate::config::StepConfig;

/// The critical path of a run of `steps`, exact for that structure (unlike the inference
/// from the trace, which has to guess what depended on what); `None` when no node ran.
///
/// Each node's piece is its span in `trace` (duration, and the part of it its timed LLM
/// calls cover), else its timings in `summary` (trace mode off, or its span dropped). A
/// node that never ran (the run failed before it) has no piece.
pub(crate) fn structure_path(
    steps: &[StepConfig],
    trace: Option<&Trace>,
    summary: &Summary,
) -> Option<CriticalPath> {
    let flow = structure_flow(steps, trace, summary);
    if flow.pieces().is_empty() {
        return None;
    }
    Some(flow.critical_path(DEFAULT_SPEEDUP))
}

/// `steps` as a flow of the nodes' measured pieces.
pub(crate) fn structure_flow(
    steps: &[StepConfig],
    trace: Option<&Trace>,
    summary: &Summary,
) -> Flow {
    let node = |id: &str| -> Option<Flow> {
        let mut pieces = trace
            .map(|t| node_pieces(t, id))
            .unwrap_or_default()
            .into_iter()
            .map(Flow::Work)
            .collect::<Vec<_>>();
        if pieces.is_empty() {
            let timings = summary.node(id).filter(|n| n.call_count > 0)?;
            let ns = |ms: f64| (ms * 1e6).max(0.0).round() as u64;
            let piece = Piece::new(id, ns(timings.total_duration_ms)).llm(ns(timings.llm_time_ms));
            pieces.push(Flow::Work(piece));
        }
        Some(if pieces.len() == 1 {
            pieces.remove(0)
        } else {
            Flow::Seq(pieces)
        })
    };
    let parts = steps
        .iter()
        .filter_map(|step| match step {
            StepConfig::Node(n) => node(&n.id),
            StepConfig::Parallel { parallel } => {
                let branches: Vec<Flow> = parallel.iter().filter_map(|n| node(&n.id)).collect();
                (!branches.is_empty()).then_some(Flow::Par(branches))
            }
        })
        .collect();
    Flow::Seq(parts)
}

/// The pieces of node `id`'s calls in `trace`: its outermost spans (a profiled function of
/// the same id inside the node's call is part of that call's time already), in order.
fn node_pieces(trace: &Trace, id: &str) -> Vec<Piece> {
    let own: Vec<&Span> = trace.spans.iter().filter(|s| s.node_id == id).collect();
    let nested_in_own = |s: &Span| {
        s.parent_span_id
            .is_some_and(|p| own.iter().any(|o| o.span_id == p))
    };
    let mut outer: Vec<&Span> = own.iter().copied().filter(|s| !nested_in_own(s)).collect();
    outer.sort_by_key(|s| (s.start_unix_ns, s.span_id));
    outer
        .into_iter()
        .map(|s| {
            Piece::new(id, s.duration_ns())
                .of_call(s.span_id, s.start_unix_ns)
                .llm(s.llm_ns_within(s.start_unix_ns, s.end_unix_ns))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::BottleneckAnalyzer;
    use agent_profiler_runtime::critical::PathMethod;

    fn steps() -> Vec<StepConfig> {
        let json = serde_json::json!([
            {"id": "plan", "model": "m", "prompt": "p", "output_key": "a"},
            {"parallel": [
                {"id": "web", "model": "m", "prompt": "p", "output_key": "b"},
                {"id": "papers", "model": "m", "prompt": "p", "output_key": "c"}
            ]},
            {"id": "never", "model": "m", "prompt": "p", "output_key": "d"}
        ]);
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn timings_stand_in_for_a_missing_trace() {
        let analyzer = BottleneckAnalyzer::new();
        analyzer.record_node("plan", 10.0).unwrap();
        analyzer.record_node("web", 5.0).unwrap();
        analyzer.record_node("papers", 8.0).unwrap();
        let path = structure_path(&steps(), None, &analyzer.get_summary()).unwrap();
        assert_eq!(path.method, PathMethod::Structure);
        assert_eq!(path.path_text(), "plan -> papers");
        assert_eq!(path.wall_time_ms, 18.0);
        assert_eq!(path.off_path[0].node_id, "web");
        assert_eq!(path.off_path[0].slack_ms, 3.0);
        assert!(path.what_if_for("never").is_none());
    }

    #[test]
    fn nothing_ran_no_path() {
        let summary = BottleneckAnalyzer::new().get_summary();
        assert!(structure_path(&steps(), None, &summary).is_none());
    }
}
