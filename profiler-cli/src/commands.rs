//! The commands: each reads a run source (the store, or an MLflow server), asks the run
//! history for its figures, and returns what to print on stdout. Presentation only: what is
//! computed from runs (per-node figures, comparisons, trends and the rule that flags a
//! node) is in `agent_profiler_executor::history`, and prints the same from either source.

use agent_profiler_executor::history::{
    self, Budget, BudgetKind, Budgets, Check, Figure, Gate, GateRule, NodeDelta, NodeFigures,
    RunComparison, RunSource, Side, SourceError, Trend, TrendRule, Verdict,
};
use agent_profiler_executor::store::{RunListing, RunStore, WorkflowRunRecord, WorkflowStatus};
use agent_profiler_report::html::{ReportInput, render_html};
use agent_profiler_report::perfetto::chrome_trace_json;
use serde_json::{Value, json};

use crate::text::{
    Align, Table, clip, clip_lines, delta_ms, delta_pct, delta_usd, ms, sparkline, usd, utc_iso,
};
use crate::{
    CheckArgs, CliError, CompareArgs, Done, Format, ReportArgs, RunsArgs, ShowArgs, TraceArgs,
    TrendArgs,
};

/// Where `runs`, `show`, `compare`, `trend` and `check` read runs: the store or MLflow.
pub type Source = dyn RunSource<Error = SourceError>;

/// Characters of a run id shown in listings (more when they do not tell runs apart).
const SHORT_ID: usize = 8;

/// Runs shown in a node's history line in `trend`.
const HISTORY_RUNS: usize = 10;

fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail.
    let mut out = serde_json::to_string_pretty(value).unwrap_or_default();
    out.push('\n');
    out
}

fn short(id: &str, len: usize) -> String {
    id.chars().take(len).collect()
}

/// `MM-DD HH:MM`, UTC: the start of a run in tables (the year is in the JSON).
fn started(secs: f64) -> String {
    crate::text::utc_minutes(secs)[5..].to_owned()
}

/// The cost of a run, `*` when it leaves out unpriced LLM calls.
fn run_cost(run: &WorkflowRunRecord) -> String {
    let unpriced = run.bottleneck_info.as_ref().map_or(0, |s| s.unpriced_calls);
    if unpriced > 0 {
        format!("{}*", usd(run.total_cost_usd))
    } else {
        usd(run.total_cost_usd)
    }
}

fn run_duration(run: &WorkflowRunRecord) -> String {
    run.duration_ms.map_or_else(|| "-".to_owned(), ms)
}

/// The columns of a run in the tables of `runs` and `compare`, after its id.
const RUN_COLUMNS: [(&str, Align, bool); 5] = [
    ("workflow", Align::Left, true),
    ("status", Align::Left, false),
    ("started UTC", Align::Left, false),
    ("duration", Align::Right, false),
    ("cost", Align::Right, false),
];

/// A run's id (its first `id_len` characters) and its [`RUN_COLUMNS`].
fn run_cells(run: &WorkflowRunRecord, id_len: usize) -> Vec<String> {
    vec![
        short(&run.id, id_len),
        run.workflow_name.clone(),
        run.status.to_string(),
        started(run.started_at),
        run_duration(run),
        run_cost(run),
    ]
}

/// "no runs of workflow `w` in PATH", then `sep`, then the workflows the store has.
fn no_runs_of(store: &Source, workflow: &str, what: &str, sep: &str) -> Result<String, CliError> {
    let names = store.workflow_names()?;
    let known = if names.is_empty() {
        "the store has no runs".to_owned()
    } else {
        let names: Vec<_> = names.iter().map(|n| crate::text::printable(n)).collect();
        format!("workflows: {}", names.join(", "))
    };
    Ok(format!(
        "no {what} of workflow `{}` in {}{sep}{known}",
        crate::text::printable(workflow),
        store.location()
    ))
}

/// A run of a listing as JSON; with `corrupt` when it is.
fn listing_json(run: &RunListing) -> Value {
    let mut value = json!({
        "id": run.id,
        "workflow": run.workflow_name,
        "status": run.status,
        "started_at": run.started_at,
        "started_at_utc": utc_iso(run.started_at),
        "completed_at": run.completed_at,
        "duration_ms": run.duration_ms,
        "total_cost_usd": run.total_cost_usd,
        "total_tokens": run.total_tokens,
        "llm_calls": run.has_summary.then_some(run.llm_calls),
        "unpriced_calls": run.has_summary.then_some(run.unpriced_calls),
        "slowest_node": run.slowest_node.as_ref().map(|s| &s.0),
        "slowest_node_ms": run.slowest_node.as_ref().map(|s| s.1),
        "error_message": run.error_message,
    });
    if let (Some(corrupt), Some(obj)) = (&run.corrupt, value.as_object_mut()) {
        obj.insert(
            "corrupt".into(),
            json!(format!("run {}: {corrupt}", run.id)),
        );
    }
    value
}

/// `runs`: recent runs, newest first. Only the columns a listing shows are read; a
/// corrupt row is listed as corrupt.
pub fn runs(store: &Source, args: &RunsArgs) -> Result<String, CliError> {
    let listing = store.list_runs(args.workflow.as_deref(), args.limit as usize)?;
    let runs = &listing.runs;
    if args.json {
        let list: Vec<Value> = runs.iter().map(listing_json).collect();
        let mut value = json!({ "store": store.location(), "runs": list });
        if !listing.skipped.is_empty() {
            value["skipped"] = json!(listing.skipped);
        }
        return Ok(pretty(&value));
    }
    if runs.is_empty() {
        let line = match &args.workflow {
            Some(w) => no_runs_of(store, w, "runs", "\n")?,
            None => format!("no runs in {}", store.location()),
        };
        let mut out = clip_lines(&line);
        for skipped in listing.skipped.iter().flat_map(|l| wrap(l, "  ")) {
            out.push_str(&skipped);
            out.push('\n');
        }
        return Ok(out);
    }
    let id_len = store.unique_prefix_len(SHORT_ID)?;
    let mut table = Table::new(
        &[
            &[("id", Align::Left, false)][..],
            &RUN_COLUMNS,
            &[("slowest node", Align::Left, true)],
        ]
        .concat(),
    );
    let mut unpriced = false;
    let mut corrupt = Vec::new();
    for run in runs {
        unpriced |= run.unpriced_calls > 0;
        let cost = if run.unpriced_calls > 0 {
            format!("{}*", usd(run.total_cost_usd))
        } else {
            usd(run.total_cost_usd)
        };
        let slowest = match (&run.corrupt, &run.slowest_node) {
            (Some(_), _) => "CORRUPT".to_owned(),
            (None, Some((node, _))) => node.clone(),
            (None, None) => "-".to_owned(),
        };
        if let Some(why) = &run.corrupt {
            corrupt.push(format!("run {}: {why}", run.id));
        }
        table.row(vec![
            short(&run.id, id_len),
            run.workflow_name.clone(),
            run.status.to_string(),
            started(run.started_at),
            run.duration_ms.map_or_else(|| "-".to_owned(), ms),
            cost,
            slowest,
        ]);
    }
    let mut out = table.render();
    if unpriced {
        out.push_str("* leaves out LLM calls of unknown price\n");
    }
    // What was left out names the MLflow runs to type: wrapped, not cut.
    for line in listing.skipped.iter().flat_map(|l| wrap(l, "  ")) {
        corrupt.push(line);
    }
    // One line each: a line break inside a name is escaped, never a row of its own.
    for line in &corrupt {
        out.push_str(&clip(line, crate::text::WIDTH));
        out.push('\n');
    }
    Ok(out)
}

/// `show`: the executor's report of one run.
pub fn show(store: &Source, args: &ShowArgs) -> Result<String, CliError> {
    let run = store.find_run(&args.run)?;
    if args.json {
        let nodes = history::node_figures(store, &run)?;
        let states = store.states(&run)?;
        let time_splits = store.time_splits(&run)?;
        let report = run.report();
        return Ok(pretty(&json!({
            "run": run,
            "nodes": nodes,
            "time_splits": time_splits,
            "states": states,
            "report": report,
        })));
    }
    if let Some(report) = run.report() {
        return Ok(crate::text::printable_report(&report, &run.workflow_name));
    }
    // No summary: the run has not finished, or its process ended early.
    let states = store.states(&run)?;
    let mut out = format!(
        "run {}\nof workflow `{}`: {}, no report stored\n\
         (the run has not finished, or its process ended early)\n",
        run.id,
        crate::text::printable(&run.workflow_name),
        run.status
    );
    if let Some(error) = &run.error_message {
        out.push_str(&format!("error: {error}\n"));
    }
    if states.is_empty() && !store.states_while_running() {
        out.push_str("its node states are logged to MLflow when the run ends\n");
    } else if states.is_empty() {
        out.push_str("no node finished\n");
    } else {
        out.push_str("\nnode states:\n");
        let mut table = Table::new(&[
            ("step", Align::Right, false),
            ("node", Align::Left, true),
            ("status", Align::Left, false),
            ("time", Align::Right, false),
            ("cost", Align::Right, false),
        ]);
        for s in &states {
            table.row(vec![
                s.step.to_string(),
                s.node_id.clone(),
                s.status.clone(),
                ms(s.execution_time_ms),
                usd(s.cost_usd),
            ]);
        }
        out.push_str(&table.render());
    }
    Ok(clip_lines(&out))
}

fn run_brief(run: &WorkflowRunRecord) -> Value {
    json!({
        "id": run.id,
        "workflow": run.workflow_name,
        "status": run.status,
        "started_at": run.started_at,
        "started_at_utc": utc_iso(run.started_at),
        "duration_ms": run.duration_ms,
        "total_cost_usd": run.total_cost_usd,
    })
}

/// `compare`: per-node deltas from run A to run B, regressions first.
pub fn compare(store: &Source, args: &CompareArgs) -> Result<String, CliError> {
    let a = store.find_run(&args.run_a)?;
    let b = store.find_run(&args.run_b)?;
    let comparison = history::compare(store, a, b)?;
    if args.json {
        return Ok(pretty(&compare_json(&comparison)));
    }
    let mut out = compare_runs_table(store, &comparison)?;
    if comparison.nodes.is_empty() {
        out.push_str("no node ran in either run\n");
        return Ok(clip_lines(&out));
    }
    out.push_str(&compare_nodes_table(&comparison.nodes));
    Ok(clip_lines(&out))
}

/// `only_in` of a node in `compare --json`.
fn side_json(side: Side) -> &'static str {
    match side {
        Side::A => "a",
        Side::B => "b",
    }
}

fn compare_json(c: &RunComparison) -> Value {
    let nodes: Vec<Value> = c
        .nodes
        .iter()
        .map(|r| {
            json!({
                "node_id": r.node_id,
                "only_in": r.only_in().map(side_json),
                "time_a_ms": r.a.as_ref().map(|n| n.total_duration_ms),
                "time_b_ms": r.b.as_ref().map(|n| n.total_duration_ms),
                "delta_ms": r.delta_ms(),
                "delta_percent": r.delta_percent(),
                "calls_a": r.a.as_ref().map(|n| n.call_count),
                "calls_b": r.b.as_ref().map(|n| n.call_count),
                "cost_a_usd": r.a.as_ref().map(|n| n.cost_usd),
                "cost_b_usd": r.b.as_ref().map(|n| n.cost_usd),
                "cost_delta_usd": r.delta_usd(),
            })
        })
        .collect();
    json!({
        "run_a": run_brief(&c.a),
        "run_b": run_brief(&c.b),
        "duration_delta_ms": c.duration_delta_ms(),
        "duration_delta_percent": c.duration_delta_percent(),
        "cost_delta_usd": c.cost_delta_usd(),
        "nodes": nodes,
    })
}

/// The two runs of `compare`, then the line of their totals' changes and a blank line.
fn compare_runs_table(store: &Source, c: &RunComparison) -> Result<String, CliError> {
    let id_len = store.unique_prefix_len(SHORT_ID)?;
    let mut runs = Table::new(
        &[
            &[("", Align::Left, false), ("run", Align::Left, false)][..],
            &RUN_COLUMNS,
        ]
        .concat(),
    );
    for (label, run) in [("A", &c.a), ("B", &c.b)] {
        let mut cells = vec![label.to_owned()];
        cells.extend(run_cells(run, id_len));
        runs.row(cells);
    }
    let mut out = runs.render();
    let mut totals = String::from("B - A: ");
    match c.duration_delta_ms() {
        Some(d) => {
            totals.push_str(&delta_ms(d));
            if let Some(p) = c.duration_delta_percent() {
                totals.push_str(&format!(" ({})", delta_pct(p)));
            }
        }
        None => totals.push_str("duration unknown"),
    }
    totals.push_str(&format!(", cost {}", delta_usd(c.cost_delta_usd())));
    if let Some(p) = c.cost_delta_percent() {
        totals.push_str(&format!(" ({})", delta_pct(p)));
    }
    out.push_str(&totals);
    out.push_str("\n\n");
    Ok(out)
}

/// The per-node table of `compare`.
fn compare_nodes_table(rows: &[NodeDelta]) -> String {
    let mut table = Table::new(&[
        ("node", Align::Left, true),
        ("time A", Align::Right, false),
        ("time B", Align::Right, false),
        ("delta", Align::Right, false),
        ("delta %", Align::Right, false),
        ("cost delta", Align::Right, false),
    ]);
    let time =
        |n: Option<&NodeFigures>| n.map_or_else(|| "-".to_owned(), |n| ms(n.total_duration_ms));
    for r in rows {
        let pct = match r.only_in() {
            Some(Side::A) => "only A".to_owned(),
            Some(Side::B) => "only B".to_owned(),
            None => r.delta_percent().map_or_else(|| "-".to_owned(), delta_pct),
        };
        table.row(vec![
            r.node_id.clone(),
            time(r.a.as_ref()),
            time(r.b.as_ref()),
            delta_ms(r.delta_ms()),
            pct,
            delta_usd(r.delta_usd()),
        ]);
    }
    table.render()
}

/// `trend`: each node's time over the last runs of a workflow, slow ones flagged; with
/// `--fail-on-slow`, a failed gate when one is.
pub fn trend(store: &Source, args: &TrendArgs) -> Result<Done, CliError> {
    let rule = TrendRule::new(args.threshold, args.min_delta_ms);
    let trend = history::trend(store, &args.workflow, args.limit as usize, rule)?;
    if trend.runs.is_empty() {
        let what = no_runs_of(store, &args.workflow, "finished runs", "; ")?;
        return Err(CliError::new(what));
    }
    let text = if args.json {
        pretty(&trend_json(&args.workflow, &trend))
    } else {
        clip_lines(&trend_text(&args.workflow, &trend))
    };
    Ok(Done {
        text,
        failed: args.fail_on_slow && !trend.flagged().is_empty(),
        warnings: Vec::new(),
    })
}

fn trend_json(workflow: &str, trend: &Trend) -> Value {
    let run_list: Vec<Value> = trend
        .runs
        .iter()
        .map(|r| {
            json!({
                "run_id": r.run_id,
                "status": r.status,
                "started_at": r.started_at,
                "started_at_utc": utc_iso(r.started_at),
                "duration_ms": r.duration_ms,
                "total_cost_usd": r.total_cost_usd,
            })
        })
        .collect();
    let nodes: Vec<Value> = trend
        .nodes
        .iter()
        .map(|t| {
            let series: Vec<Value> = t
                .series
                .iter()
                .zip(&trend.runs)
                .filter_map(|(n, r)| {
                    n.as_ref().map(|n| {
                        json!({
                            "run_id": r.run_id,
                            "total_duration_ms": n.total_duration_ms,
                            "call_count": n.call_count,
                            "cost_usd": n.cost_usd,
                        })
                    })
                })
                .collect();
            json!({
                "node_id": t.node_id,
                "runs": series.len(),
                "previous_runs": t.previous_runs,
                "median_previous_ms": t.median_previous_ms,
                "latest_ms": t.latest_ms,
                "ratio": t.ratio(),
                "change_percent": t.change_percent(),
                "latest_cost_usd": t.latest().map(|n| n.cost_usd),
                "flagged": t.flagged,
                "series": series,
            })
        })
        .collect();
    json!({
        "workflow": workflow,
        "rule": {
            "threshold": trend.rule.threshold,
            "min_delta_ms": trend.rule.min_delta_ms,
            "min_previous_runs": trend.rule.min_previous_runs,
        },
        "runs": run_list,
        "nodes": nodes,
        "flagged": trend.flagged(),
    })
}

fn trend_text(workflow: &str, trend: &Trend) -> String {
    let runs = &trend.runs;
    let (first, last) = (&runs[0], &runs[runs.len() - 1]);
    let mut out = format!(
        "`{}`: {} finished run{}, {} to {} UTC\n",
        crate::text::printable(workflow),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        started(first.started_at),
        started(last.started_at),
    );
    let mut table = Table::new(&[
        ("node", Align::Left, true),
        ("runs", Align::Right, false),
        ("prev median", Align::Right, false),
        ("latest", Align::Right, false),
        ("change", Align::Right, false),
        ("history", Align::Left, false),
        ("", Align::Left, false),
    ]);
    let shown = runs.len().min(HISTORY_RUNS);
    for t in &trend.nodes {
        let times: Vec<Option<f64>> = t.series[t.series.len() - shown..]
            .iter()
            .map(|n| n.as_ref().map(|n| n.total_duration_ms))
            .collect();
        table.row(vec![
            t.node_id.clone(),
            t.runs().to_string(),
            t.median_previous_ms.map_or_else(|| "-".to_owned(), ms),
            t.latest_ms.map_or_else(|| "-".to_owned(), ms),
            t.change_percent().map_or_else(|| "-".to_owned(), delta_pct),
            sparkline(&times),
            if t.flagged { "SLOW" } else { "" }.to_owned(),
        ]);
    }
    out.push_str(&table.render());
    let rule = &trend.rule;
    out.push_str(&format!(
        "SLOW: latest > {} x prev median and by > {} ms, >= {} previous runs\n",
        rule.threshold, rule.min_delta_ms, rule.min_previous_runs
    ));
    let flagged = trend.flagged();
    if flagged.is_empty() {
        out.push_str("no node flagged\n");
    } else {
        out.push_str(&format!("flagged: {}\n", flagged.join(", ")));
    }
    out
}

/// `check`: a run against the completed runs of its workflow before it, and its budgets;
/// a failed gate when it regressed, broke a budget or did not complete.
pub fn check(store: &Source, args: &CheckArgs) -> Result<Done, CliError> {
    if args.baseline < args.min_runs {
        return Err(CliError::new(format!(
            "--baseline {} is below --min-runs {}: no figure could ever be judged",
            args.baseline, args.min_runs
        )));
    }
    let run = match &args.run {
        Some(id) => store.find_run(id)?,
        None => match store.list_runs(None, 1)?.runs.first() {
            Some(newest) => store.find_run(&newest.id)?,
            None => return Err(CliError::new(format!("no runs in {}", store.location()))),
        },
    };
    let rule = GateRule {
        noise_factor: args.noise_factor,
        min_relative: args.min_change_pct / 100.0,
        min_ms: args.min_change_ms,
        min_usd: args.min_change_usd,
        min_runs: args.min_runs as usize,
    };
    let budgets = Budgets {
        max_duration_ms: args.max_duration_ms,
        max_cost_usd: args.max_cost_usd,
    };
    let gate = history::gate(store, &run, args.baseline as usize, rule, budgets)?;
    let view = GateView {
        gate: &gate,
        run: &run,
        id_len: store.unique_prefix_len(SHORT_ID)?,
        require_baseline: args.require_baseline,
        numbers: RuleNumbers {
            noise_factor: args.noise_factor,
            min_change_pct: args.min_change_pct,
        },
    };
    let text = match args.format {
        Format::Text => clip_lines(&view.text()),
        Format::Markdown => view.markdown(),
    };
    Ok(Done {
        text,
        failed: !gate.passed(args.require_baseline),
        warnings: Vec::new(),
    })
}

/// The rule's numbers as the user gave them (a percentage read back from a fraction can
/// come out as 7.000000000000001).
struct RuleNumbers {
    noise_factor: f64,
    min_change_pct: f64,
}

/// What `check` prints, in either format.
struct GateView<'a> {
    gate: &'a Gate,
    run: &'a WorkflowRunRecord,
    id_len: usize,
    require_baseline: bool,
    numbers: RuleNumbers,
}

/// A number as typed: `3`, `0.0001`, without trailing zeros.
fn plain(v: f64) -> String {
    let s = format!("{v:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A figure's value in its unit.
fn figure_value(figure: &Figure, v: f64) -> String {
    match figure {
        Figure::Cost => usd(v),
        _ => ms(v),
    }
}

fn figure_name(figure: &Figure) -> String {
    match figure {
        Figure::WallTime => "wall time".to_owned(),
        Figure::Cost => "cost".to_owned(),
        Figure::Node(id) => format!("node {id}"),
    }
}

fn verdict_word(check: &Check) -> &'static str {
    match check.verdict {
        Verdict::Pass => "ok",
        Verdict::Regressed => "REGRESSED",
        Verdict::NotJudged if check.baseline.is_none() => "new",
        Verdict::NotJudged => "few runs",
    }
}

fn budget_name(budget: &Budget) -> &'static str {
    match budget.kind {
        BudgetKind::Duration => "duration",
        BudgetKind::Cost => "cost",
    }
}

fn budget_value(budget: &Budget, v: f64) -> String {
    match budget.kind {
        BudgetKind::Duration => ms(v),
        BudgetKind::Cost => usd(v),
    }
}

impl GateView<'_> {
    /// The cells of a check: value, median, MAD, limit, change.
    fn cells(check: &Check) -> [String; 5] {
        let f = &check.figure;
        let dash = || "-".to_owned();
        [
            check.value.map_or_else(dash, |v| figure_value(f, v)),
            check
                .baseline
                .map_or_else(dash, |s| figure_value(f, s.median)),
            check.baseline.map_or_else(dash, |s| figure_value(f, s.mad)),
            check.limit.map_or_else(dash, |v| figure_value(f, v)),
            check
                .change_percent()
                .map_or_else(dash, crate::text::delta_pct),
        ]
    }

    /// The rule in one sentence.
    fn rule(&self) -> String {
        let rule = &self.gate.rule;
        format!(
            "regressed when value > median + max({} x 1.4826 x MAD, {}% of median, \
             {} ms or ${}), judged with at least {} baseline runs",
            plain(self.numbers.noise_factor),
            plain(self.numbers.min_change_pct),
            plain(rule.min_ms),
            plain(rule.min_usd),
            rule.min_runs
        )
    }

    /// The baseline in a few words: how many runs, and from when to when.
    fn baseline(&self) -> String {
        let gate = self.gate;
        let n = gate.baseline.len();
        let runs = match n {
            0 => "no completed run".to_owned(),
            1 => "1 completed run".to_owned(),
            n => format!("{n} completed runs"),
        };
        if gate.enough_history() {
            let (newest, oldest) = (&gate.baseline[0], &gate.baseline[n - 1]);
            format!(
                "{runs} before it, {} to {} UTC",
                started(oldest.started_at),
                started(newest.started_at)
            )
        } else {
            format!(
                "{runs} before it ({} needed): not enough history",
                gate.rule.min_runs
            )
        }
    }

    /// Why the gate failed, one reason a line; empty when it passed.
    fn failures(&self) -> Vec<String> {
        let gate = self.gate;
        let mut out = Vec::new();
        if !gate.run_completed() {
            out.push(format!(
                "the run {} (only a completed run passes)",
                gate.run.status
            ));
        }
        for c in gate.regressions() {
            let (Some(v), Some(limit), Some(s)) = (c.value, c.limit, c.baseline) else {
                continue;
            };
            let f = &c.figure;
            let mut line = format!(
                "{}: {}, limit {} (median {}",
                figure_name(f),
                figure_value(f, v),
                figure_value(f, limit),
                figure_value(f, s.median)
            );
            if let Some(p) = c.change_percent() {
                line.push_str(&format!(", {}", crate::text::delta_pct(p)));
            }
            line.push(')');
            out.push(line);
        }
        for b in gate.exceeded() {
            out.push(match b.value {
                Some(v) => format!(
                    "budget: {} {} over {}",
                    budget_name(b),
                    budget_value(b, v),
                    budget_value(b, b.max)
                ),
                None => format!("budget: the run has no {} to check", budget_name(b)),
            });
        }
        if self.require_baseline && !gate.enough_history() {
            out.push("not enough history (--require-baseline)".to_owned());
        }
        out
    }

    fn text(&self) -> String {
        let (gate, run) = (self.gate, self.run);
        let mut out = format!(
            "check: run {} of `{}`, {}, started {} UTC\nbaseline: {}\n",
            short(&run.id, self.id_len),
            crate::text::printable(&run.workflow_name),
            run.status,
            started(run.started_at),
            self.baseline()
        );
        if !gate.enough_history() {
            out.push_str("only the budgets are checked\n");
        }
        out.push('\n');
        let mut table = Table::new(&[
            ("figure", Align::Left, true),
            ("value", Align::Right, false),
            ("median", Align::Right, false),
            ("MAD", Align::Right, false),
            ("limit", Align::Right, false),
            ("change", Align::Right, false),
            ("verdict", Align::Left, false),
        ]);
        for c in &gate.checks {
            let mut cells = vec![figure_name(&c.figure)];
            cells.extend(Self::cells(c));
            cells.push(verdict_word(c).to_owned());
            table.row(cells);
        }
        out.push_str(&table.render());
        if !gate.budgets.is_empty() {
            out.push('\n');
            let mut budgets = Table::new(&[
                ("budget", Align::Left, false),
                ("value", Align::Right, false),
                ("max", Align::Right, false),
                ("verdict", Align::Left, false),
            ]);
            for b in &gate.budgets {
                budgets.row(vec![
                    budget_name(b).to_owned(),
                    b.value
                        .map_or_else(|| "-".to_owned(), |v| budget_value(b, v)),
                    budget_value(b, b.max),
                    if b.exceeded() { "EXCEEDED" } else { "ok" }.to_owned(),
                ]);
            }
            out.push_str(&budgets.render());
        }
        out.push('\n');
        for line in wrap(&format!("rule: {}", self.rule()), "      ") {
            out.push_str(&line);
            out.push('\n');
        }
        let failures = self.failures();
        if failures.is_empty() {
            out.push_str("PASS\n");
        } else {
            out.push_str("FAIL\n");
            for f in failures {
                out.push_str(&format!("  {f}\n"));
            }
        }
        out
    }

    fn markdown(&self) -> String {
        let (gate, run) = (self.gate, self.run);
        let failures = self.failures();
        let mut out = format!(
            "### agent-profiler check: {}\n\nRun `{}` of workflow {} ({}, started {} UTC) \
             against the baseline: {}{}.\n\n",
            if failures.is_empty() { "PASS" } else { "FAIL" },
            short(&run.id, self.id_len),
            md(&run.workflow_name),
            run.status,
            crate::text::utc_minutes(run.started_at),
            self.baseline(),
            if gate.enough_history() {
                ""
            } else {
                "; only the budgets are checked"
            }
        );
        out.push_str(
            "| figure | value | median | MAD | limit | change | verdict |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
        for c in &gate.checks {
            let [value, median, mad, limit, change] = Self::cells(c);
            let verdict = match c.verdict {
                Verdict::Regressed => "**REGRESSED**",
                _ => verdict_word(c),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {change} | {verdict} |\n",
                md(&figure_name(&c.figure)),
                md(&value),
                md(&median),
                md(&mad),
                md(&limit)
            ));
        }
        if !gate.budgets.is_empty() {
            out.push_str("\n| budget | value | max | verdict |\n|---|---:|---:|---|\n");
            for b in &gate.budgets {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    budget_name(b),
                    md(&b
                        .value
                        .map_or_else(|| "-".to_owned(), |v| budget_value(b, v))),
                    md(&budget_value(b, b.max)),
                    if b.exceeded() { "**EXCEEDED**" } else { "ok" }
                ));
            }
        }
        if !failures.is_empty() {
            out.push_str("\n**Failed:**\n\n");
            for f in &failures {
                out.push_str(&format!("- {}\n", md(f)));
            }
        }
        out.push_str(&format!("\nRule: {}.\n", md(&self.rule())));
        out
    }
}

/// `text` broken at spaces into lines of at most [`WIDTH`](crate::text::WIDTH)
/// characters, every line after the first starting with `indent`.
fn wrap(text: &str, indent: &str) -> Vec<String> {
    // Escaped before it is split: a name from another MLflow user can hold line breaks
    // and terminal escapes.
    let text = crate::text::printable(text);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > crate::text::WIDTH {
            let full = std::mem::replace(&mut line, indent.to_owned());
            lines.push(full.trim_end().to_owned());
        } else if len > 0 && line != indent {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// `text` safe in a Markdown table cell or sentence: control characters escaped, and the
/// characters Markdown would read as markup written with a backslash (`$` too: two of them
/// on a line can open and close math on GitHub).
fn md(text: &str) -> String {
    let mut out = String::new();
    for c in crate::text::printable(text).chars() {
        if "\\`*_[]<>|#~$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A run's short id (as `runs` shows it) and the title of a file made of the run
/// (`workflow run 1a2b3c4d`).
fn file_title(store: &RunStore, run: &WorkflowRunRecord) -> Result<(String, String), CliError> {
    let id = short(&run.id, store.unique_prefix_len(SHORT_ID)?);
    let title = format!("{} run {id}", run.workflow_name);
    Ok((id, title))
}

/// `report`: the HTML report of a run, with its timeline when it has a trace.
pub fn report(store: &RunStore, args: &ReportArgs) -> Result<String, CliError> {
    let run = store.find_run(&args.run)?;
    let Some(summary) = run.bottleneck_info.as_ref() else {
        return Err(CliError::new(format!(
            "run {} has no report to draw ({}: it has not finished, or its process \
             ended early)",
            run.id, run.status
        )));
    };
    let trace = store.load_trace(&run.id)?;
    let (id, title) = file_title(store, &run)?;
    let input = ReportInput {
        trace: trace.as_ref(),
        run_id: Some(&run.id),
        workflow: Some(&run.workflow_name),
        status: Some(run.status.as_str()),
        started_at: Some(run.started_at),
        duration_ms: run.duration_ms,
        ..ReportInput::new(&title, summary)
    };
    let page = render_html(&input);
    crate::output::write_file(
        &args.html,
        std::path::Path::new(store.path()),
        page.as_bytes(),
    )?;
    Ok(format!(
        "wrote {}
(HTML report of run {}, {})
",
        args.html.display(),
        id,
        if trace.is_some() {
            "with its timeline"
        } else {
            "no timeline: the run has no trace"
        }
    ))
}

/// `trace`: the Perfetto (Chrome Trace Event JSON) file of a run's trace.
pub fn trace(store: &RunStore, args: &TraceArgs) -> Result<String, CliError> {
    let run = store.find_run(&args.run)?;
    let Some(trace) = store.load_trace(&run.id)? else {
        let why = match run.status {
            WorkflowStatus::Running => "it is running and no node has finished yet",
            WorkflowStatus::Interrupted => "its process ended before a node finished",
            _ => "trace mode was off",
        };
        return Err(CliError::new(format!(
            "run {} has no trace ({why})",
            run.id
        )));
    };
    let (id, title) = file_title(store, &run)?;
    let mut json = chrome_trace_json(&trace, &title).to_string();
    json.push('\n');
    crate::output::write_file(
        &args.out,
        std::path::Path::new(store.path()),
        json.as_bytes(),
    )?;
    let mut out = format!(
        "wrote {}
(trace of run {}: {} spans",
        args.out.display(),
        id,
        trace.spans.len()
    );
    if trace.dropped > 0 {
        out.push_str(&format!(", {} more not kept", trace.dropped));
    }
    out.push_str("; open it at ui.perfetto.dev)\n");
    Ok(out)
}
