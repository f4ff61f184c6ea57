//! The run history: figures computed from the runs of a [`RunSource`] (the SQLite
//! [`RunStore`], or an MLflow server the executor logged to: [`MlflowSource`]), for one
//! run, across the last runs of a workflow, or between two runs.
//!
//! - per-node figures of a run ([`RunStore::node_figures`]) and of the last runs
//!   ([`RunStore::node_history`], [`RunStore::node_stats`]);
//! - trends ([`RunStore::trend`]): each node's newest time against the median of its earlier
//!   ones, flagged by a [`TrendRule`];
//! - comparisons ([`RunStore::compare`]): what changed, run and node, from one run to
//!   another;
//! - the regression gate ([`RunStore::gate`]): one run against the completed runs of its
//!   workflow before it, by a [`GateRule`] that allows for noise, and [`Budgets`].
//!
//! The store keeps records; everything here is computed from them, by the same functions
//! over either source ([`trend`], [`compare`], [`gate`], [`node_history`],
//! [`node_figures`]; the methods of the same names on [`RunStore`] are these over the
//! store). What the executor logs to MLflow for this is described in [`LoggedRun`] and
//! its module's table; an MLflow run is named by its store run id, or as
//! `mlflow:<MLflow run id>` ([`MlflowSource`]). The pure parts ([`node_trends`],
//! [`compare_nodes`], [`median`], [`change_percent`], [`Gate::new`]) work on figures from
//! anywhere.
//!
//! ```
//! use agent_profiler_executor::history::TrendRule;
//! use agent_profiler_executor::store::RunStore;
//!
//! let store = RunStore::in_memory().unwrap();
//! let trend = store.trend("research", 10, TrendRule::default()).unwrap();
//! assert!(trend.runs.is_empty() && trend.flagged().is_empty());
//! ```

mod compare;
mod figures;
mod gate;
mod mlflow_record;
mod mlflow_source;
mod source;
mod trend;

pub use compare::{NodeDelta, RunComparison, Side, change_percent, compare_nodes};
pub use figures::{NodeAcrossRuns, NodeFigures, RunNodeFigures, node_stats_of};
pub use gate::{
    Budget, BudgetKind, Budgets, Check, Figure, Gate, GateRule, MAD_TO_SIGMA, Spread, Verdict,
};
pub use mlflow_record::{
    LoggedRun, RUN_ARTIFACT, RUN_FORMAT, RUN_ID_TAG, STARTED_AT_METRIC, STARTED_AT_TAG, STATUS_TAG,
    WORKFLOW_TAG, end_tags, listing_of, start_tags,
};
pub use mlflow_source::{MAX_RUN_ARTIFACT_BYTES, MLFLOW_RUN_PREFIX, MlflowSource};
pub use source::{Listing, RunSource, SourceError, Uniform};
pub use trend::{MIN_PREVIOUS_RUNS, NodeTrend, Trend, TrendRule, median, node_trends};

use crate::store::{RunStore, StoreError, WorkflowRunRecord, WorkflowStatus};

/// Per-node figures of `run`: from its summary (`bottleneck_info`) when it has one, else
/// from its node state snapshots (a run still running, or whose process ended early).
/// Nodes come in the order of their first call.
///
/// # Errors
/// The source's, when it cannot read the run's states.
pub fn node_figures<S: RunSource + ?Sized>(
    source: &S,
    run: &WorkflowRunRecord,
) -> Result<Vec<NodeFigures>, S::Error> {
    match &run.bottleneck_info {
        Some(summary) => Ok(NodeFigures::from_summary(summary)),
        None => Ok(NodeFigures::from_states(&source.states(run)?)),
    }
}

/// The per-node figures of each of the last `last_runs` finished runs (completed, failed
/// or panicked: a run still running has partial figures) of `workflow`, newest first.
///
/// # Errors
/// The source's.
pub fn node_history<S: RunSource + ?Sized>(
    source: &S,
    workflow: &str,
    last_runs: usize,
) -> Result<Vec<RunNodeFigures>, S::Error> {
    source
        .finished_runs(workflow, last_runs)?
        .into_iter()
        .map(|run| run_node_figures(source, run))
        .collect()
}

/// Each node's time over the last `last_runs` finished runs of `workflow`, flagged by
/// `rule` ([`Trend`]; no runs: an empty trend).
///
/// # Errors
/// As [`node_history`].
pub fn trend<S: RunSource + ?Sized>(
    source: &S,
    workflow: &str,
    last_runs: usize,
    rule: TrendRule,
) -> Result<Trend, S::Error> {
    let mut runs = node_history(source, workflow, last_runs)?;
    runs.reverse();
    Ok(Trend::new(runs, rule))
}

/// `run` judged against the last `baseline_runs` completed runs of its workflow that
/// started before it, by `rule`, and against `budgets` ([`Gate`]).
///
/// # Errors
/// As [`node_history`].
pub fn gate<S: RunSource + ?Sized>(
    source: &S,
    run: &WorkflowRunRecord,
    baseline_runs: usize,
    rule: GateRule,
    budgets: Budgets,
) -> Result<Gate, S::Error> {
    let baseline = source
        .completed_runs_before(run, baseline_runs)?
        .into_iter()
        .map(|r| run_node_figures(source, r))
        .collect::<Result<Vec<_>, _>>()?;
    let checked = run_node_figures(source, run.clone())?;
    Ok(Gate::new(checked, baseline, rule, budgets))
}

/// What changed from run `a` (the baseline) to run `b`, run and node ([`RunComparison`]).
///
/// # Errors
/// As [`node_figures`].
pub fn compare<S: RunSource + ?Sized>(
    source: &S,
    a: WorkflowRunRecord,
    b: WorkflowRunRecord,
) -> Result<RunComparison, S::Error> {
    let nodes_a = node_figures(source, &a)?;
    let nodes_b = node_figures(source, &b)?;
    Ok(RunComparison::new(a, &nodes_a, b, &nodes_b))
}

/// The last `count` completed runs of `run`'s workflow before it, newest first, read
/// through [`RunSource::finished_runs`] ([`RunSource::completed_runs_before`]'s default).
pub(crate) fn completed_runs_before<S: RunSource + ?Sized>(
    source: &S,
    run: &WorkflowRunRecord,
    count: usize,
) -> Result<Vec<WorkflowRunRecord>, S::Error> {
    // The runs come newest first, so the run checked is usually among the first few:
    // read a little more than asked, and more only when runs after it fill the page.
    let mut limit = count.saturating_add(1).max(8);
    loop {
        let runs = source.finished_runs(&run.workflow_name, limit)?;
        let exhausted = runs.len() < limit;
        let before: Vec<WorkflowRunRecord> = match runs.iter().position(|r| r.id == run.id) {
            Some(i) => runs.into_iter().skip(i + 1).collect(),
            // Not finished, so not listed: the runs that started no later.
            None => runs
                .into_iter()
                .filter(|r| r.started_at <= run.started_at && r.id != run.id)
                .collect(),
        };
        let completed: Vec<WorkflowRunRecord> = before
            .into_iter()
            .filter(|r| r.status == WorkflowStatus::Completed)
            .take(count)
            .collect();
        if completed.len() == count || exhausted {
            return Ok(completed);
        }
        limit = limit.saturating_mul(4);
    }
}

fn run_node_figures<S: RunSource + ?Sized>(
    source: &S,
    run: WorkflowRunRecord,
) -> Result<RunNodeFigures, S::Error> {
    Ok(RunNodeFigures {
        nodes: node_figures(source, &run)?,
        run_id: run.id,
        status: run.status,
        started_at: run.started_at,
        duration_ms: run.duration_ms,
        total_cost_usd: run.total_cost_usd,
    })
}

impl RunStore {
    /// Per-node figures of `run` ([`node_figures`] over this store).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a state holds bad JSON.
    pub fn node_figures(&self, run: &WorkflowRunRecord) -> Result<Vec<NodeFigures>, StoreError> {
        node_figures(self, run)
    }

    /// The per-node figures of each of the last `last_runs` finished runs of
    /// `workflow_name`, newest first ([`node_history`] over this store).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON (naming the run).
    pub fn node_history(
        &self,
        workflow_name: &str,
        last_runs: usize,
    ) -> Result<Vec<RunNodeFigures>, StoreError> {
        node_history(self, workflow_name, last_runs)
    }

    /// Per-node figures over the last `last_runs` runs of `workflow_name` that have a
    /// bottleneck report, slowest node (by total time) first ([`node_stats_of`]).
    ///
    /// # Errors
    /// [`StoreError`] when SQLite fails or a column holds bad JSON.
    pub fn node_stats(
        &self,
        workflow_name: &str,
        last_runs: usize,
    ) -> Result<Vec<NodeAcrossRuns>, StoreError> {
        Ok(node_stats_of(&self.recent_runs(workflow_name, last_runs)?))
    }

    /// Each node's time over the last `last_runs` finished runs of `workflow_name`
    /// ([`trend`] over this store).
    ///
    /// # Errors
    /// As [`node_history`](Self::node_history).
    pub fn trend(
        &self,
        workflow_name: &str,
        last_runs: usize,
        rule: TrendRule,
    ) -> Result<Trend, StoreError> {
        trend(self, workflow_name, last_runs, rule)
    }

    /// `run` judged against the completed runs of its workflow before it ([`gate`] over
    /// this store).
    ///
    /// # Errors
    /// As [`node_history`](Self::node_history).
    pub fn gate(
        &self,
        run: &WorkflowRunRecord,
        baseline_runs: usize,
        rule: GateRule,
        budgets: Budgets,
    ) -> Result<Gate, StoreError> {
        gate(self, run, baseline_runs, rule, budgets)
    }

    /// What changed from run `a` to run `b` ([`compare`] over this store).
    ///
    /// # Errors
    /// As [`node_figures`](Self::node_figures).
    pub fn compare(
        &self,
        a: WorkflowRunRecord,
        b: WorkflowRunRecord,
    ) -> Result<RunComparison, StoreError> {
        compare(self, a, b)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::test_support::finished;
    use crate::store::{ExecutionStateRecord, WorkflowStatus};
    use serde_json::json;

    pub(crate) fn figures(id: &str, ms: f64) -> NodeFigures {
        NodeFigures {
            node_id: id.to_owned(),
            call_count: 1,
            total_duration_ms: ms,
            self_duration_ms: ms,
            avg_duration_ms: ms,
            cost_usd: 0.0,
            total_tokens: 0,
            llm_calls: 0,
            unpriced_calls: 0,
            failed_calls: 0,
        }
    }

    pub(crate) fn run(nodes: &[(&str, f64)]) -> RunNodeFigures {
        RunNodeFigures {
            run_id: "r".into(),
            status: WorkflowStatus::Completed,
            started_at: 0.0,
            duration_ms: None,
            total_cost_usd: 0.0,
            nodes: nodes.iter().map(|(id, ms)| figures(id, *ms)).collect(),
        }
    }

    #[test]
    fn node_figures_from_summary_or_states() {
        let store = RunStore::in_memory().unwrap();
        let run = finished("wf", "done", 1.0, &[("a", 10.0), ("b", 30.0), ("a", 20.0)]);
        store.save_run(&run).unwrap();
        let figures = store.node_figures(&run).unwrap();
        assert_eq!(figures.len(), 2);
        let a = figures.iter().find(|n| n.node_id == "a").unwrap();
        assert_eq!(a.call_count, 2);
        assert_eq!(a.total_duration_ms, 30.0);
        assert_eq!(a.avg_duration_ms, 15.0);

        let mut live = WorkflowRunRecord::started("wf", json!({}), json!({}));
        live.started_at = 2.0;
        store.save_run(&live).unwrap();
        for (step, (node, ms, status)) in [
            ("x", 5.0, "completed"),
            ("y", 7.0, "failed"),
            ("x", 1.0, "completed"),
        ]
        .into_iter()
        .enumerate()
        {
            store
                .save_state(&ExecutionStateRecord {
                    run_id: live.id.clone(),
                    node_id: node.into(),
                    step: step as u32,
                    status: status.into(),
                    state: json!({}),
                    execution_time_ms: ms,
                    cost_usd: 0.5,
                    error_message: None,
                    created_at: 0.0,
                })
                .unwrap();
        }
        let figures = store.node_figures(&live).unwrap();
        assert_eq!(figures.len(), 2);
        assert_eq!(
            (figures[0].node_id.as_str(), figures[0].call_count),
            ("x", 2)
        );
        assert_eq!(figures[0].total_duration_ms, 6.0);
        assert_eq!(figures[0].cost_usd, 1.0);
        assert_eq!(
            (figures[1].failed_calls, figures[1].self_duration_ms),
            (1, 7.0)
        );

        // The history leaves out the run still running.
        let history = store.node_history("wf", 10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].run_id, "done");
        assert_eq!(
            history[0].nodes,
            NodeFigures::from_summary(run.bottleneck_info.as_ref().unwrap())
        );
    }

    #[test]
    fn stats_trends_and_comparisons_from_the_store() {
        let store = RunStore::in_memory().unwrap();
        let times = [100.0, 102.0, 98.0, 250.0];
        for (i, ms) in times.iter().enumerate() {
            let run = finished(
                "wf",
                &format!("r{i}"),
                i as f64,
                &[("slow", *ms), ("x", 10.0)],
            );
            store.save_run(&run).unwrap();
        }
        let stats = store.node_stats("wf", 10).unwrap();
        assert_eq!(stats[0].node_id, "slow");
        assert_eq!(stats[0].runs, 4);
        assert_eq!(stats[0].bottleneck_runs, 4);
        assert_eq!(stats[0].total_duration_ms, times.iter().sum::<f64>());

        let trend = store.trend("wf", 10, TrendRule::default()).unwrap();
        let ids: Vec<&str> = trend.runs.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, ["r0", "r1", "r2", "r3"], "oldest first");
        assert_eq!(trend.flagged(), ["slow"]);
        assert_eq!(trend.nodes[0].median_previous_ms, Some(100.0));

        let a = store.find_run("r0").unwrap();
        let b = store.find_run("r3").unwrap();
        let cmp = store.compare(a, b).unwrap();
        assert_eq!(cmp.nodes[0].node_id, "slow");
        assert_eq!(cmp.nodes[0].delta_ms(), 150.0);
        assert_eq!(cmp.duration_delta_ms(), Some(150.0));
        assert_eq!(cmp.duration_delta_percent(), Some(150.0 / 110.0 * 100.0));
        assert_eq!(cmp.cost_delta_usd(), 0.0);
        assert_eq!(cmp.cost_delta_percent(), None);
    }

    #[test]
    fn the_gate_reads_the_completed_runs_before_the_run() {
        let store = RunStore::in_memory().unwrap();
        // 20 runs of `wf`, the 8th of them slow and one failed; other workflows between.
        for i in 0..20 {
            let ms = if i == 7 {
                300.0
            } else {
                100.0 + (i % 3) as f64
            };
            let mut run = finished("wf", &format!("r{i:02}"), i as f64, &[("n", ms)]);
            if i == 5 {
                run.status = WorkflowStatus::Failed;
            }
            store.save_run(&run).unwrap();
            store
                .save_run(&finished(
                    "other",
                    &format!("o{i:02}"),
                    i as f64,
                    &[("n", 1.0)],
                ))
                .unwrap();
        }
        let slow = store.find_run("r07").unwrap();
        let gate = store
            .gate(&slow, 5, GateRule::default(), Budgets::default())
            .unwrap();
        let ids: Vec<&str> = gate.baseline.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            ids,
            ["r06", "r04", "r03", "r02", "r01"],
            "before it, completed"
        );
        let regressed: Vec<&Figure> = gate.regressions().map(|c| &c.figure).collect();
        assert_eq!(regressed, [&Figure::WallTime, &Figure::Node("n".into())]);

        let newest = store.find_run("r19").unwrap();
        let gate = store
            .gate(&newest, 10, GateRule::default(), Budgets::default())
            .unwrap();
        assert_eq!(gate.baseline.len(), 10);
        assert_eq!(gate.baseline[0].run_id, "r18");
        assert!(gate.passed(true), "{:#?}", gate.checks);

        let first = store.find_run("r00").unwrap();
        let gate = store
            .gate(&first, 5, GateRule::default(), Budgets::default())
            .unwrap();
        assert!(gate.baseline.is_empty() && !gate.enough_history());
    }
}
