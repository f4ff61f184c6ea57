//! Two runs side by side: what changed, run and node, from run A (the baseline) to run B.

use super::NodeFigures;
use crate::store::WorkflowRunRecord;

/// `(b - a) / a × 100`, or `None` when `a` is 0 (no finite change).
///
/// ```
/// use agent_profiler_executor::history::change_percent;
///
/// assert_eq!(change_percent(100.0, 150.0), Some(50.0));
/// assert_eq!(change_percent(0.0, 5.0), None);
/// ```
pub fn change_percent(a: f64, b: f64) -> Option<f64> {
    (a != 0.0).then(|| (b - a) / a * 100.0)
}

/// One of the two runs of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The first run, the baseline.
    A,
    /// The second run.
    B,
}

/// One node of a comparison: its figures in each run, when it ran there.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeDelta {
    /// The node.
    pub node_id: String,
    /// Its figures in run A.
    pub a: Option<NodeFigures>,
    /// Its figures in run B.
    pub b: Option<NodeFigures>,
}

impl NodeDelta {
    fn time(f: Option<&NodeFigures>) -> f64 {
        f.map_or(0.0, |n| n.total_duration_ms)
    }

    fn cost(f: Option<&NodeFigures>) -> f64 {
        f.map_or(0.0, |n| n.cost_usd)
    }

    /// Total time in B less total time in A, ms; a run the node did not run in counts as
    /// 0 ms.
    pub fn delta_ms(&self) -> f64 {
        Self::time(self.b.as_ref()) - Self::time(self.a.as_ref())
    }

    /// LLM cost in B less LLM cost in A, USD (0 where the node did not run).
    pub fn delta_usd(&self) -> f64 {
        Self::cost(self.b.as_ref()) - Self::cost(self.a.as_ref())
    }

    /// The run the node ran in, when it ran in only one of them.
    pub fn only_in(&self) -> Option<Side> {
        match (&self.a, &self.b) {
            (Some(_), None) => Some(Side::A),
            (None, Some(_)) => Some(Side::B),
            _ => None,
        }
    }

    /// The change of total time from A to B, percent, when the node ran in both (and took
    /// time in A).
    pub fn delta_percent(&self) -> Option<f64> {
        match (&self.a, &self.b) {
            (Some(a), Some(b)) => change_percent(a.total_duration_ms, b.total_duration_ms),
            _ => None,
        }
    }
}

/// Every node of either run, the largest time increase (the worst regression) first, ties
/// by node id.
pub fn compare_nodes(a: &[NodeFigures], b: &[NodeFigures]) -> Vec<NodeDelta> {
    let mut ids: Vec<&str> = a.iter().map(|n| n.node_id.as_str()).collect();
    for n in b {
        if !ids.contains(&n.node_id.as_str()) {
            ids.push(&n.node_id);
        }
    }
    let mut rows: Vec<NodeDelta> = ids
        .into_iter()
        .map(|id| NodeDelta {
            node_id: id.to_owned(),
            a: a.iter().find(|n| n.node_id == id).cloned(),
            b: b.iter().find(|n| n.node_id == id).cloned(),
        })
        .collect();
    rows.sort_by(|x, y| {
        y.delta_ms()
            .total_cmp(&x.delta_ms())
            .then_with(|| x.node_id.cmp(&y.node_id))
    });
    rows
}

/// Two runs and what changed from A to B
/// ([`RunStore::compare`](crate::store::RunStore::compare)).
#[derive(Clone, Debug, PartialEq)]
pub struct RunComparison {
    /// Run A, the baseline.
    pub a: WorkflowRunRecord,
    /// Run B.
    pub b: WorkflowRunRecord,
    /// Every node of either run ([`compare_nodes`]).
    pub nodes: Vec<NodeDelta>,
}

impl RunComparison {
    /// The comparison of `a` and `b`, whose per-node figures are `nodes_a` and `nodes_b`.
    pub fn new(
        a: WorkflowRunRecord,
        nodes_a: &[NodeFigures],
        b: WorkflowRunRecord,
        nodes_b: &[NodeFigures],
    ) -> Self {
        Self {
            nodes: compare_nodes(nodes_a, nodes_b),
            a,
            b,
        }
    }

    /// Wall time of B less wall time of A, ms, when both are known.
    pub fn duration_delta_ms(&self) -> Option<f64> {
        let (a, b) = self.a.duration_ms.zip(self.b.duration_ms)?;
        Some(b - a)
    }

    /// The change of wall time from A to B, percent.
    pub fn duration_delta_percent(&self) -> Option<f64> {
        let (a, b) = self.a.duration_ms.zip(self.b.duration_ms)?;
        change_percent(a, b)
    }

    /// LLM cost of B less LLM cost of A, USD.
    pub fn cost_delta_usd(&self) -> f64 {
        self.b.total_cost_usd - self.a.total_cost_usd
    }

    /// The change of LLM cost from A to B, percent.
    pub fn cost_delta_percent(&self) -> Option<f64> {
        change_percent(self.a.total_cost_usd, self.b.total_cost_usd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::figures;

    #[test]
    fn regressions_first() {
        let a = [
            figures("x", 10.0),
            figures("y", 100.0),
            figures("gone", 30.0),
        ];
        let b = [
            figures("y", 50.0),
            figures("x", 110.0),
            figures("new", 20.0),
        ];
        let rows = compare_nodes(&a, &b);
        let order: Vec<&str> = rows.iter().map(|r| r.node_id.as_str()).collect();
        assert_eq!(order, ["x", "new", "gone", "y"]);
        assert_eq!(rows[1].only_in(), Some(Side::B));
        assert_eq!(rows[2].only_in(), Some(Side::A));
        assert_eq!(rows[2].delta_ms(), -30.0);
        assert_eq!(rows[0].delta_percent(), Some(1000.0));
        assert_eq!(rows[1].delta_percent(), None);
    }

    #[test]
    fn percentages() {
        assert_eq!(change_percent(0.0, 5.0), None);
        assert_eq!(change_percent(100.0, 150.0), Some(50.0));
        assert_eq!(change_percent(100.0, 50.0), Some(-50.0));
    }
}
