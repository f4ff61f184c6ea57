//! The regression gate: one run against the completed runs of its workflow before it, by a
//! rule that tells a regression from run-to-run noise, and hard budgets.

use super::trend::median;
use super::{NodeFigures, RunNodeFigures};
use crate::store::WorkflowStatus;

/// Scales a median absolute deviation to the standard deviation of normally distributed
/// values, so that the noise factor reads as "this many standard deviations".
pub const MAD_TO_SIGMA: f64 = 1.4826;

/// When a figure of a run counts as a regression against its baseline.
///
/// With `m` the median of the baseline's values and `MAD` their median absolute deviation
/// (`median(|v_i - m|)`), a value `v` regressed when
///
/// ```text
/// v > m + max(noise_factor × 1.4826 × MAD, min_relative × m, min_absolute)
/// ```
///
/// where `min_absolute` is [`min_ms`](Self::min_ms) for times and
/// [`min_usd`](Self::min_usd) for costs, and only when the baseline holds at least
/// [`min_runs`](Self::min_runs) values. Why each term:
///
/// - the median and the MAD ignore a few odd runs (one stuck LLM call), where a mean and a
///   standard deviation would be dragged by them; `1.4826 × MAD` estimates the standard
///   deviation, so the default factor of 3 is "three sigmas of this workflow's own noise";
/// - a series that hardly moves (a MAD of 0, common for costs, which repeat to the token)
///   would flag any change at all: the relative floor (10%) and the absolute floor (5 ms,
///   $0.0001) say what change is worth failing a build for;
/// - a median of fewer than 5 runs is no baseline.
///
/// Only increases count: a faster or cheaper run passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GateRule {
    /// How many (MAD-estimated) standard deviations above the median a value may lie
    /// (default 3).
    pub noise_factor: f64,
    /// The smallest change that counts, as a fraction of the median (default 0.10).
    pub min_relative: f64,
    /// The smallest change of a time that counts, ms (default 5).
    pub min_ms: f64,
    /// The smallest change of a cost that counts, USD (default 0.0001).
    pub min_usd: f64,
    /// Values the baseline must hold for a figure to be judged (default 5).
    pub min_runs: usize,
}

impl Default for GateRule {
    fn default() -> Self {
        Self {
            noise_factor: 3.0,
            min_relative: 0.10,
            min_ms: 5.0,
            min_usd: 0.0001,
            min_runs: 5,
        }
    }
}

impl GateRule {
    /// The highest value that still passes against `baseline`, given the floor
    /// `min_absolute` (in the value's unit); `None` when the baseline holds fewer than
    /// [`min_runs`](Self::min_runs) values.
    ///
    /// ```
    /// use agent_profiler_executor::history::GateRule;
    ///
    /// let rule = GateRule::default();
    /// // Median 100, MAD 2: 3 x 1.4826 x 2 = 8.9 < 10% of 100, so the limit is 110.
    /// let limit = rule.limit(&[98.0, 100.0, 102.0, 100.0, 104.0], rule.min_ms);
    /// assert_eq!(limit, Some(110.0));
    /// assert_eq!(rule.limit(&[100.0; 4], rule.min_ms), None); // too few runs
    /// ```
    pub fn limit(&self, baseline: &[f64], min_absolute: f64) -> Option<f64> {
        let spread = Spread::of(baseline)?;
        (spread.runs >= self.min_runs).then(|| self.limit_of(&spread, min_absolute))
    }

    fn limit_of(&self, spread: &Spread, min_absolute: f64) -> f64 {
        let margin = (self.noise_factor * MAD_TO_SIGMA * spread.mad)
            .max(self.min_relative * spread.median)
            .max(min_absolute);
        spread.median + margin
    }
}

/// The median and median absolute deviation of a baseline's values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The median of the absolute deviations from the median.
    pub mad: f64,
    /// How many values.
    pub runs: usize,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    ///
    /// ```
    /// use agent_profiler_executor::history::Spread;
    ///
    /// let s = Spread::of(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
    /// assert_eq!((s.median, s.mad, s.runs), (3.0, 1.0, 5));
    /// ```
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted = values.to_vec();
        let m = median(&mut sorted)?;
        let mut deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
        let mad = median(&mut deviations)?;
        Some(Self {
            median: m,
            mad,
            runs: values.len(),
        })
    }
}

/// What a [`Check`] measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Figure {
    /// The run's wall time, ms.
    WallTime,
    /// The run's LLM cost, USD.
    Cost,
    /// One node's total time in the run (all its calls), ms.
    Node(String),
}

/// How a figure fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Pass,
    /// Above the limit.
    Regressed,
    /// Not judged: the baseline holds too few values (a new node, or too little history),
    /// or the run has no value for it.
    NotJudged,
}

/// One figure of the run against its baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// What is measured.
    pub figure: Figure,
    /// The run's value (ms or USD).
    pub value: Option<f64>,
    /// The baseline's spread (over the baseline runs that have the figure).
    pub baseline: Option<Spread>,
    /// The highest value that passes, when the baseline is enough to judge.
    pub limit: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
}

impl Check {
    fn new(
        figure: Figure,
        value: Option<f64>,
        baseline: &[f64],
        limit_of: impl Fn(&[f64]) -> Option<f64>,
    ) -> Self {
        let limit = limit_of(baseline);
        let verdict = match (value, limit) {
            (Some(v), Some(l)) if v > l => Verdict::Regressed,
            (Some(_), Some(_)) => Verdict::Pass,
            _ => Verdict::NotJudged,
        };
        Self {
            figure,
            value,
            baseline: Spread::of(baseline),
            limit,
            verdict,
        }
    }

    /// The change from the baseline's median to the value, percent (`None` without both,
    /// or for a median of 0).
    pub fn change_percent(&self) -> Option<f64> {
        let (v, s) = self.value.zip(self.baseline)?;
        super::change_percent(s.median, v)
    }
}

/// A hard limit of a run, whatever its history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetKind {
    /// The run's wall time, ms.
    Duration,
    /// The run's LLM cost, USD.
    Cost,
}

/// A budget and how the run stands against it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Which figure.
    pub kind: BudgetKind,
    /// The most the run may take (ms) or spend (USD).
    pub max: f64,
    /// The run's value; `None` when it has none (a run without a recorded duration).
    pub value: Option<f64>,
}

impl Budget {
    /// Whether the run went over the budget. A run without the figure cannot show that it
    /// kept to the budget, so it counts as over.
    pub fn exceeded(&self) -> bool {
        self.value.is_none_or(|v| v > self.max)
    }
}

/// The budgets of a gate: hard limits, checked with or without history.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budgets {
    /// The most wall time a run may take, ms.
    pub max_duration_ms: Option<f64>,
    /// The most a run's LLM calls may cost, USD.
    pub max_cost_usd: Option<f64>,
}

/// A run against the completed runs of its workflow before it
/// ([`RunStore::gate`](crate::store::RunStore::gate)).
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    /// The rule the figures were judged by.
    pub rule: GateRule,
    /// The run checked.
    pub run: RunNodeFigures,
    /// The baseline: completed runs of the same workflow before the run, newest first.
    pub baseline: Vec<RunNodeFigures>,
    /// Wall time, cost, then every node of the run: regressed first, then by the run's
    /// value, highest first.
    pub checks: Vec<Check>,
    /// The budgets asked for.
    pub budgets: Vec<Budget>,
}

impl Gate {
    /// `run` judged against `baseline` (completed runs of its workflow before it; runs of
    /// any other status are left out) by `rule`, and against `budgets`.
    pub fn new(
        run: RunNodeFigures,
        baseline: Vec<RunNodeFigures>,
        rule: GateRule,
        budgets: Budgets,
    ) -> Self {
        let baseline: Vec<RunNodeFigures> = baseline
            .into_iter()
            .filter(|r| r.status == WorkflowStatus::Completed)
            .collect();
        let times = |l: &[f64]| rule.limit(l, rule.min_ms);
        let mut checks = vec![
            Check::new(
                Figure::WallTime,
                run.duration_ms,
                &baseline
                    .iter()
                    .filter_map(|r| r.duration_ms)
                    .collect::<Vec<_>>(),
                times,
            ),
            Check::new(
                Figure::Cost,
                Some(run.total_cost_usd),
                &baseline
                    .iter()
                    .map(|r| r.total_cost_usd)
                    .collect::<Vec<_>>(),
                |l| rule.limit(l, rule.min_usd),
            ),
        ];
        let mut nodes: Vec<Check> = run
            .nodes
            .iter()
            .map(|n| {
                let earlier: Vec<f64> = baseline
                    .iter()
                    .filter_map(|r| node_time(&r.nodes, &n.node_id))
                    .collect();
                Check::new(
                    Figure::Node(n.node_id.clone()),
                    Some(n.total_duration_ms),
                    &earlier,
                    times,
                )
            })
            .collect();
        nodes.sort_by(|a, b| {
            (b.verdict == Verdict::Regressed)
                .cmp(&(a.verdict == Verdict::Regressed))
                .then_with(|| {
                    b.value
                        .unwrap_or(f64::NEG_INFINITY)
                        .total_cmp(&a.value.unwrap_or(f64::NEG_INFINITY))
                })
        });
        checks.extend(nodes);
        let mut kept = Vec::new();
        if let Some(max) = budgets.max_duration_ms {
            kept.push(Budget {
                kind: BudgetKind::Duration,
                max,
                value: run.duration_ms,
            });
        }
        if let Some(max) = budgets.max_cost_usd {
            kept.push(Budget {
                kind: BudgetKind::Cost,
                max,
                value: Some(run.total_cost_usd),
            });
        }
        Self {
            rule,
            run,
            baseline,
            checks,
            budgets: kept,
        }
    }

    /// Whether the baseline has enough runs to judge the run
    /// ([`GateRule::min_runs`]).
    pub fn enough_history(&self) -> bool {
        self.baseline.len() >= self.rule.min_runs
    }

    /// The checks that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Regressed)
    }

    /// The budgets the run went over.
    pub fn exceeded(&self) -> impl Iterator<Item = &Budget> {
        self.budgets.iter().filter(|b| b.exceeded())
    }

    /// Whether the run completed: a run that failed, panicked, or has not finished fails
    /// the gate, whatever its figures.
    pub fn run_completed(&self) -> bool {
        self.run.status == WorkflowStatus::Completed
    }

    /// Whether the run passes: it completed, nothing regressed, no budget was exceeded,
    /// and, when `require_baseline`, the baseline was enough to judge it.
    pub fn passed(&self, require_baseline: bool) -> bool {
        self.run_completed()
            && self.regressions().next().is_none()
            && self.exceeded().next().is_none()
            && (self.enough_history() || !require_baseline)
    }
}

fn node_time(nodes: &[NodeFigures], id: &str) -> Option<f64> {
    nodes
        .iter()
        .find(|n| n.node_id == id)
        .map(|n| n.total_duration_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::tests::run;

    fn with_totals(mut r: RunNodeFigures, ms: f64, usd: f64) -> RunNodeFigures {
        r.duration_ms = Some(ms);
        r.total_cost_usd = usd;
        r
    }

    /// Five runs of noise (±3%) around a = 100 ms, b = 20 ms, wall 125 ms, cost $0.002.
    fn noisy_baseline() -> Vec<RunNodeFigures> {
        [1.0, 0.97, 1.03, 0.99, 1.02, 1.01]
            .iter()
            .map(|f| with_totals(run(&[("a", 100.0 * f), ("b", 20.0 * f)]), 125.0 * f, 0.002))
            .collect()
    }

    #[test]
    fn the_rule_on_hand_made_series() {
        let rule = GateRule::default();
        assert_eq!(
            rule,
            GateRule {
                noise_factor: 3.0,
                min_relative: 0.1,
                min_ms: 5.0,
                min_usd: 0.0001,
                min_runs: 5,
            }
        );
        // The relative floor: MAD 2 gives 8.9 ms of noise, 10% of 100 is 10.
        assert_eq!(
            rule.limit(&[98.0, 100.0, 102.0, 100.0, 104.0], 5.0),
            Some(110.0)
        );
        // The noise term: a wide series (MAD 10) allows 3 x 1.4826 x 10 = 44.5 ms.
        let wide = [90.0, 100.0, 110.0, 80.0, 120.0];
        let limit = rule.limit(&wide, 5.0).unwrap();
        assert!(
            (limit - (100.0 + 3.0 * MAD_TO_SIGMA * 10.0)).abs() < 1e-9,
            "{limit}"
        );
        // The absolute floor: a 2 ms node may move by 5 ms.
        assert_eq!(rule.limit(&[2.0; 5], 5.0), Some(7.0));
        // One odd run moves neither the median nor the MAD much.
        let odd = Spread::of(&[100.0, 101.0, 99.0, 100.0, 400.0]).unwrap();
        assert_eq!((odd.median, odd.mad), (100.0, 1.0));
        // Too few runs: no limit.
        assert_eq!(rule.limit(&[100.0; 4], 5.0), None);
        assert_eq!(rule.limit(&[], 5.0), None);
        assert_eq!(Spread::of(&[]), None);
        // A cost that never moved: $0.0001 or 10%, whichever is more.
        let cost = rule.limit(&[0.002; 5], rule.min_usd).unwrap();
        assert!((cost - 0.0022).abs() < 1e-12, "{cost}");
    }

    #[test]
    fn noise_passes() {
        let mut runs = noisy_baseline();
        let newest = runs.remove(0);
        let gate = Gate::new(newest, runs, GateRule::default(), Budgets::default());
        assert!(gate.enough_history());
        assert!(gate.passed(true), "{:#?}", gate.checks);
        assert!(gate.checks.iter().all(|c| c.verdict == Verdict::Pass));
        assert_eq!(gate.checks[0].figure, Figure::WallTime);
        assert_eq!(gate.checks[1].figure, Figure::Cost);
        assert_eq!(gate.checks[2].figure, Figure::Node("a".into()));
    }

    #[test]
    fn a_slow_node_and_a_costly_run_regress() {
        let mut baseline = noisy_baseline();
        baseline.remove(0);
        let slow = with_totals(
            run(&[("a", 100.0), ("b", 40.0), ("new", 9.0)]),
            145.0,
            0.0025,
        );
        let gate = Gate::new(slow, baseline, GateRule::default(), Budgets::default());
        assert!(!gate.passed(false));
        let regressed: Vec<&Figure> = gate.regressions().map(|c| &c.figure).collect();
        assert_eq!(
            regressed,
            [&Figure::WallTime, &Figure::Cost, &Figure::Node("b".into())]
        );
        // Regressed nodes come first; the new node has no baseline.
        assert_eq!(gate.checks[2].figure, Figure::Node("b".into()));
        let new = gate
            .checks
            .iter()
            .find(|c| c.figure == Figure::Node("new".into()))
            .unwrap();
        assert_eq!((new.verdict, new.baseline), (Verdict::NotJudged, None));
        let b = &gate.checks[2];
        assert_eq!(b.change_percent().map(f64::round), Some(98.0)); // median 20.2 ms
    }

    #[test]
    fn too_little_history_judges_nothing_but_budgets() {
        let mut runs = noisy_baseline();
        let newest = with_totals(run(&[("a", 500.0)]), 600.0, 0.01);
        runs.truncate(4);
        // A failed run is no baseline.
        runs.push(RunNodeFigures {
            status: WorkflowStatus::Failed,
            ..runs[0].clone()
        });
        let budgets = Budgets {
            max_duration_ms: Some(1000.0),
            max_cost_usd: Some(0.005),
        };
        let gate = Gate::new(newest, runs, GateRule::default(), budgets);
        assert_eq!(gate.baseline.len(), 4);
        assert!(!gate.enough_history());
        assert!(gate.checks.iter().all(|c| c.verdict == Verdict::NotJudged));
        let over: Vec<BudgetKind> = gate.exceeded().map(|b| b.kind).collect();
        assert_eq!(over, [BudgetKind::Cost]);
        assert!(!gate.passed(false));

        let within = Budgets {
            max_cost_usd: Some(0.01),
            ..budgets
        };
        let newest = gate.run.clone();
        let gate = Gate::new(newest, gate.baseline, GateRule::default(), within);
        assert!(gate.passed(false), "budgets kept, history too short");
        assert!(!gate.passed(true), "--require-baseline");
    }

    #[test]
    fn a_run_that_did_not_complete_fails() {
        let mut runs = noisy_baseline();
        let mut newest = runs.remove(0);
        newest.status = WorkflowStatus::Failed;
        let gate = Gate::new(newest, runs, GateRule::default(), Budgets::default());
        assert!(gate.regressions().next().is_none());
        assert!(!gate.run_completed() && !gate.passed(false));
        let no_duration = Budget {
            kind: BudgetKind::Duration,
            max: 10.0,
            value: None,
        };
        assert!(no_duration.exceeded());
    }
}
