//! Planted run records: completed runs with chosen node times and costs, for stores the
//! tests fill by hand.

use agent_profiler_executor::store::{WorkflowRunRecord, WorkflowStatus};
use agent_profiler_runtime::BottleneckAnalyzer;
use serde_json::json;

/// A completed run of `workflow` with id `id`, started at `started_at` (Unix seconds): its
/// nodes as (id, total ms, cost USD), one call and one LLM call each; its wall time is their
/// sum plus `overhead_ms`.
pub fn completed(
    workflow: &str,
    id: &str,
    started_at: f64,
    nodes: &[(&str, f64, f64)],
    overhead_ms: f64,
) -> WorkflowRunRecord {
    let analyzer = BottleneckAnalyzer::new();
    for (node, ms, _) in nodes {
        analyzer.record_node(node, *ms).unwrap();
    }
    let mut summary = analyzer.get_summary();
    for (node, _, cost) in nodes {
        let n = summary
            .nodes
            .iter_mut()
            .find(|n| n.node_id == *node)
            .unwrap();
        n.cost_usd = *cost;
        n.llm_calls = 1;
    }
    summary.total_cost_usd = nodes.iter().map(|n| n.2).sum();
    summary.llm_calls = nodes.len() as u64;
    let mut run = WorkflowRunRecord::started(workflow, json!({}), json!({}));
    run.id = id.to_owned();
    run.status = WorkflowStatus::Completed;
    run.started_at = started_at;
    run.completed_at = Some(started_at + 1.0);
    run.duration_ms = Some(nodes.iter().map(|n| n.1).sum::<f64>() + overhead_ms);
    run.total_cost_usd = summary.total_cost_usd;
    run.bottleneck_info = Some(summary);
    run
}
