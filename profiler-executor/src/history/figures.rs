//! What a run's nodes did, in one run ([`NodeFigures`]) and across runs
//! ([`NodeAcrossRuns`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use agent_profiler_runtime::Summary;

use crate::store::{ExecutionStateRecord, WorkflowRunRecord, WorkflowStatus};

/// One node's figures across several runs of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeAcrossRuns {
    /// The node.
    pub node_id: String,
    /// Runs in which the node ran.
    pub runs: u64,
    /// Calls over those runs.
    pub calls: u64,
    /// Total time over those runs, ms.
    pub total_duration_ms: f64,
    /// Average time per call, ms.
    pub avg_duration_ms: f64,
    /// The longest call's time in any run, ms.
    pub max_duration_ms: f64,
    /// Average share of its run's total time, percent.
    pub avg_percent_of_total: f64,
    /// Runs in which the node was a bottleneck.
    pub bottleneck_runs: u64,
    /// LLM cost over those runs, USD.
    pub cost_usd: f64,
    /// LLM tokens over those runs.
    pub total_tokens: u64,
}

/// One node's figures in one run: from the run's summary when it has one, else from its
/// node state snapshots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeFigures {
    /// The node.
    pub node_id: String,
    /// Calls of the node in the run.
    pub call_count: u64,
    /// Sum of the calls' durations (inclusive of nested profiled calls), ms.
    pub total_duration_ms: f64,
    /// Total less the time of profiled calls nested inside, ms (equal to the total when
    /// the figures come from state snapshots, which do not know about nesting).
    pub self_duration_ms: f64,
    /// `total_duration_ms / call_count`, ms.
    pub avg_duration_ms: f64,
    /// LLM cost, USD (priced calls only).
    pub cost_usd: f64,
    /// LLM input plus output tokens (0 when the figures come from state snapshots).
    pub total_tokens: u64,
    /// LLM calls the node made (0 when the figures come from state snapshots).
    pub llm_calls: u64,
    /// Those of them without a price: `cost_usd` leaves them out.
    pub unpriced_calls: u64,
    /// Calls that did not end `ok` (error, panicked, cancelled).
    pub failed_calls: u64,
}

impl NodeFigures {
    /// The figures of every node of a run's summary, in the summary's order.
    pub fn from_summary(summary: &Summary) -> Vec<Self> {
        summary
            .nodes
            .iter()
            .map(|n| NodeFigures {
                node_id: n.node_id.clone(),
                call_count: n.call_count,
                total_duration_ms: n.total_duration_ms,
                self_duration_ms: n.self_duration_ms,
                avg_duration_ms: n.avg_duration_ms,
                cost_usd: n.cost_usd,
                total_tokens: n.total_tokens,
                llm_calls: n.llm_calls,
                unpriced_calls: n.unpriced_calls,
                failed_calls: n.outcomes.failed(),
            })
            .collect()
    }

    /// The figures of the nodes of a run's state snapshots, in the order of their first
    /// snapshot: times and costs only (no tokens, no nesting).
    pub fn from_states(states: &[ExecutionStateRecord]) -> Vec<Self> {
        let mut out: Vec<NodeFigures> = Vec::new();
        for s in states {
            let i = match out.iter().position(|n| n.node_id == s.node_id) {
                Some(i) => i,
                None => {
                    out.push(NodeFigures {
                        node_id: s.node_id.clone(),
                        call_count: 0,
                        total_duration_ms: 0.0,
                        self_duration_ms: 0.0,
                        avg_duration_ms: 0.0,
                        cost_usd: 0.0,
                        total_tokens: 0,
                        llm_calls: 0,
                        unpriced_calls: 0,
                        failed_calls: 0,
                    });
                    out.len() - 1
                }
            };
            let n = &mut out[i];
            n.call_count += 1;
            n.total_duration_ms += s.execution_time_ms;
            n.self_duration_ms += s.execution_time_ms;
            n.cost_usd += s.cost_usd;
            if s.status != "completed" {
                n.failed_calls += 1;
            }
            n.avg_duration_ms = n.total_duration_ms / n.call_count as f64;
        }
        out
    }
}

/// One run and its per-node figures: a point of a node's history
/// ([`RunStore::node_history`](crate::store::RunStore::node_history)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunNodeFigures {
    /// The run.
    pub run_id: String,
    /// How the run ended.
    pub status: WorkflowStatus,
    /// Start, seconds since the Unix epoch.
    pub started_at: f64,
    /// Wall time of the run, ms.
    pub duration_ms: Option<f64>,
    /// LLM cost of the run, USD.
    pub total_cost_usd: f64,
    /// Every node that ran, in the order of its first call.
    pub nodes: Vec<NodeFigures>,
}

/// Per-node figures over `runs` (those with a bottleneck report; the others are left
/// out), slowest node (by total time) first.
pub fn node_stats_of(runs: &[WorkflowRunRecord]) -> Vec<NodeAcrossRuns> {
    let mut by_node: BTreeMap<String, (NodeAcrossRuns, f64)> = BTreeMap::new();
    for run in runs {
        let Some(summary) = &run.bottleneck_info else {
            continue;
        };
        for node in &summary.nodes {
            let (entry, share_sum) = by_node.entry(node.node_id.clone()).or_insert_with(|| {
                (
                    NodeAcrossRuns {
                        node_id: node.node_id.clone(),
                        runs: 0,
                        calls: 0,
                        total_duration_ms: 0.0,
                        avg_duration_ms: 0.0,
                        max_duration_ms: 0.0,
                        avg_percent_of_total: 0.0,
                        bottleneck_runs: 0,
                        cost_usd: 0.0,
                        total_tokens: 0,
                    },
                    0.0,
                )
            });
            entry.runs += 1;
            entry.calls += node.call_count;
            entry.total_duration_ms += node.total_duration_ms;
            entry.max_duration_ms = entry.max_duration_ms.max(node.max_duration_ms);
            entry.cost_usd += node.cost_usd;
            entry.total_tokens += node.total_tokens;
            if summary.total_time_ms > 0.0 {
                *share_sum += node.self_duration_ms / summary.total_time_ms * 100.0;
            }
            if summary
                .bottlenecks
                .iter()
                .any(|b| b.node_id == node.node_id)
            {
                entry.bottleneck_runs += 1;
            }
        }
    }
    let mut out: Vec<NodeAcrossRuns> = by_node
        .into_values()
        .map(|(mut n, share_sum)| {
            if n.calls > 0 {
                n.avg_duration_ms = n.total_duration_ms / n.calls as f64;
            }
            if n.runs > 0 {
                n.avg_percent_of_total = share_sum / n.runs as f64;
            }
            n
        })
        .collect();
    out.sort_by(|a, b| b.total_duration_ms.total_cmp(&a.total_duration_ms));
    out
}
