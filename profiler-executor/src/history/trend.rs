//! Each node's time over the last runs of a workflow, and the rule that flags a node whose
//! newest time is out of line with its earlier ones.

use super::compare::change_percent;
use super::{NodeFigures, RunNodeFigures};

/// A node is flagged only with at least this many previous runs: a median of fewer is no
/// baseline.
pub const MIN_PREVIOUS_RUNS: usize = 3;

/// When a node's newest time counts as slow: all of
///
/// - `latest > threshold × median(previous)`,
/// - `latest − median(previous) > min_delta_ms`,
/// - the node ran in at least `min_previous_runs` of the previous runs.
///
/// The median ignores one odd run, where a mean would not. The default factor of 1.5 sits
/// above the usual run-to-run jitter of LLM calls (about 30%); the 1 ms floor keeps
/// sub-millisecond nodes from being flagged on noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrendRule {
    /// The factor of the previous median the newest time must exceed (default 1.5).
    pub threshold: f64,
    /// The ms by which the newest time must exceed the previous median (default 1).
    pub min_delta_ms: f64,
    /// Previous runs the node must have run in (default [`MIN_PREVIOUS_RUNS`]).
    pub min_previous_runs: usize,
}

impl Default for TrendRule {
    fn default() -> Self {
        Self {
            threshold: 1.5,
            min_delta_ms: 1.0,
            min_previous_runs: MIN_PREVIOUS_RUNS,
        }
    }
}

impl TrendRule {
    /// The rule with another factor and floor, and [`MIN_PREVIOUS_RUNS`].
    pub fn new(threshold: f64, min_delta_ms: f64) -> Self {
        Self {
            threshold,
            min_delta_ms,
            ..Self::default()
        }
    }

    /// Whether a node whose newest time is `latest` ms, after `previous_runs` runs of median
    /// `median_previous` ms, is slow.
    ///
    /// ```
    /// use agent_profiler_executor::history::TrendRule;
    ///
    /// let rule = TrendRule::default();
    /// assert!(rule.is_slow(151.0, 100.0, 3));
    /// assert!(!rule.is_slow(150.0, 100.0, 3)); // strictly above 1.5 x
    /// assert!(!rule.is_slow(151.0, 100.0, 2)); // too few previous runs
    /// ```
    pub fn is_slow(&self, latest: f64, median_previous: f64, previous_runs: usize) -> bool {
        previous_runs >= self.min_previous_runs
            && latest > self.threshold * median_previous
            && latest - median_previous > self.min_delta_ms
    }
}

/// The median of `values` (sorted in place); `None` when there are none.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

/// One node's figures over the runs of a [`Trend`].
#[derive(Clone, Debug, PartialEq)]
pub struct NodeTrend {
    /// The node.
    pub node_id: String,
    /// The node's figures in each run, oldest run first (`None`: it did not run).
    pub series: Vec<Option<NodeFigures>>,
    /// Median of the node's times in the runs before the newest, ms.
    pub median_previous_ms: Option<f64>,
    /// Runs before the newest in which the node ran.
    pub previous_runs: usize,
    /// The node's time in the newest run, ms.
    pub latest_ms: Option<f64>,
    /// Whether the rule flags the node.
    pub flagged: bool,
}

impl NodeTrend {
    /// The node's trend over `runs` (oldest first) under `rule`.
    fn of(node_id: &str, runs: &[RunNodeFigures], rule: &TrendRule) -> Self {
        let series: Vec<Option<NodeFigures>> = runs
            .iter()
            .map(|r| r.nodes.iter().find(|n| n.node_id == node_id).cloned())
            .collect();
        let (previous, latest) = series.split_at(series.len().saturating_sub(1));
        let latest_ms = latest
            .first()
            .and_then(Option::as_ref)
            .map(|n| n.total_duration_ms);
        let mut times: Vec<f64> = previous
            .iter()
            .flatten()
            .map(|n| n.total_duration_ms)
            .collect();
        let previous_runs = times.len();
        let median_previous_ms = median(&mut times);
        let flagged = match (latest_ms, median_previous_ms) {
            (Some(l), Some(m)) => rule.is_slow(l, m, previous_runs),
            _ => false,
        };
        Self {
            node_id: node_id.to_owned(),
            series,
            median_previous_ms,
            previous_runs,
            latest_ms,
            flagged,
        }
    }

    /// Runs in which the node ran.
    pub fn runs(&self) -> usize {
        self.series.iter().flatten().count()
    }

    /// The node's figures in the newest run, when it ran in it.
    pub fn latest(&self) -> Option<&NodeFigures> {
        self.series.last().and_then(Option::as_ref)
    }

    /// `latest / median of the previous runs`, when both exist and the median is not 0.
    pub fn ratio(&self) -> Option<f64> {
        let (latest, median) = self.latest_ms.zip(self.median_previous_ms)?;
        (median > 0.0).then(|| latest / median)
    }

    /// The change from the previous median to the newest time, percent.
    pub fn change_percent(&self) -> Option<f64> {
        let (latest, median) = self.latest_ms.zip(self.median_previous_ms)?;
        change_percent(median, latest)
    }
}

/// Every node's trend over the last runs of a workflow
/// ([`RunStore::trend`](crate::store::RunStore::trend)).
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    /// The rule the nodes were flagged by.
    pub rule: TrendRule,
    /// The runs, oldest first.
    pub runs: Vec<RunNodeFigures>,
    /// The nodes: flagged first, then by latest time, slowest first.
    pub nodes: Vec<NodeTrend>,
}

impl Trend {
    /// The trends of every node over `runs` (oldest first) under `rule`.
    pub fn new(runs: Vec<RunNodeFigures>, rule: TrendRule) -> Self {
        let nodes = node_trends(&runs, &rule);
        Self { rule, runs, nodes }
    }

    /// The ids of the flagged nodes, in the order of [`nodes`](Self::nodes).
    pub fn flagged(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .filter(|t| t.flagged)
            .map(|t| t.node_id.as_str())
            .collect()
    }
}

/// The trends of every node over `runs` (oldest first): flagged first, then by latest
/// time, slowest first, then by id.
pub fn node_trends(runs: &[RunNodeFigures], rule: &TrendRule) -> Vec<NodeTrend> {
    // Nodes of the newest run first, in their order, then the others.
    let mut ids: Vec<&str> = Vec::new();
    for run in runs.iter().rev() {
        for n in &run.nodes {
            if !ids.contains(&n.node_id.as_str()) {
                ids.push(&n.node_id);
            }
        }
    }
    let mut trends: Vec<NodeTrend> = ids
        .into_iter()
        .map(|id| NodeTrend::of(id, runs, rule))
        .collect();
    trends.sort_by(|x, y| {
        y.flagged
            .cmp(&x.flagged)
            .then_with(|| {
                y.latest_ms
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&x.latest_ms.unwrap_or(f64::NEG_INFINITY))
            })
            .then_with(|| x.node_id.cmp(&y.node_id))
    });
    trends
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::{figures, run};

    #[test]
    fn the_rule() {
        let rule = TrendRule::new(1.5, 1.0);
        assert!(rule.is_slow(151.0, 100.0, 3));
        assert!(!rule.is_slow(150.0, 100.0, 3), "strictly above");
        assert!(!rule.is_slow(151.0, 100.0, 2), "too few previous runs");
        assert!(!rule.is_slow(0.9, 0.1, 5), "below the ms floor");
        assert!(
            TrendRule::new(1.5, 0.5).is_slow(0.9, 0.0, 5),
            "a median of 0 flags above the floor"
        );
        assert_eq!(TrendRule::default(), rule);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn trends_flag_a_slow_latest_run() {
        let runs = vec![
            run(&[("a", 100.0), ("b", 10.0)]),
            run(&[("a", 300.0), ("b", 10.0)]), // one odd run: the median ignores it
            run(&[("a", 100.0), ("b", 11.0)]),
            run(&[("a", 102.0), ("b", 9.0), ("gone", 5.0)]),
            run(&[("a", 160.0), ("b", 10.5), ("new", 50.0)]),
        ];
        let trend = Trend::new(runs.clone(), TrendRule::new(1.5, 1.0));
        let names: Vec<&str> = trend.nodes.iter().map(|t| t.node_id.as_str()).collect();
        assert_eq!(names, ["a", "new", "b", "gone"]);
        assert_eq!(trend.flagged(), ["a"]);
        let a = &trend.nodes[0];
        assert_eq!(a.median_previous_ms, Some(101.0));
        assert_eq!(a.previous_runs, 4);
        assert_eq!(a.runs(), 5);
        assert_eq!(a.latest(), Some(&figures("a", 160.0)));
        assert_eq!(a.ratio(), Some(160.0 / 101.0));
        assert_eq!(trend.nodes[1].previous_runs, 0);
        assert_eq!(trend.nodes[1].change_percent(), None);
        assert_eq!(trend.nodes[3].latest_ms, None);
        assert!(
            node_trends(&runs, &TrendRule::new(1.6, 1.0))
                .iter()
                .all(|t| !t.flagged)
        );
    }
}
