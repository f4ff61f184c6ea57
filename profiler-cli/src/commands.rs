//! The commands: each reads the store and returns what to print on stdout.

use agent_profiler_executor::store::{NodeFigures, RunNodeFigures, RunStore, WorkflowRunRecord};
use agent_profiler_report::html::{ReportInput, write_html};
use agent_profiler_report::perfetto::write_chrome_trace;
use serde_json::{Value, json};

use crate::text::{
    Align, Table, change_pct, clip_lines, delta_ms, delta_pct, delta_usd, ms, sparkline, usd,
    utc_iso,
};
use crate::{CliError, CompareArgs, ReportArgs, RunsArgs, ShowArgs, TraceArgs, TrendArgs};

/// Characters of a run id shown in listings (more when they do not tell runs apart).
const SHORT_ID: usize = 8;

/// Runs shown in a node's history line in `trend`.
const HISTORY_RUNS: usize = 10;

/// A node is flagged by `trend` only with at least this many previous runs.
pub const MIN_PREVIOUS_RUNS: usize = 3;

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

fn run_json(run: &WorkflowRunRecord) -> Value {
    let summary = run.bottleneck_info.as_ref();
    let slowest = summary.and_then(|s| s.slowest_node.as_ref());
    json!({
        "id": run.id,
        "workflow": run.workflow_name,
        "status": run.status,
        "started_at": run.started_at,
        "started_at_utc": utc_iso(run.started_at),
        "completed_at": run.completed_at,
        "duration_ms": run.duration_ms,
        "total_cost_usd": run.total_cost_usd,
        "total_tokens": run.total_tokens,
        "llm_calls": summary.map(|s| s.llm_calls),
        "unpriced_calls": summary.map(|s| s.unpriced_calls),
        "slowest_node": slowest.map(|s| &s.node_id),
        "slowest_node_ms": slowest.map(|s| s.total_duration_ms),
        "error_message": run.error_message,
    })
}

/// "no runs of workflow `w` in PATH", then `sep`, then the workflows the store has.
fn no_runs_of(store: &RunStore, workflow: &str, what: &str, sep: &str) -> Result<String, CliError> {
    let names = store.workflow_names()?;
    let known = if names.is_empty() {
        "the store has no runs".to_owned()
    } else {
        format!("workflows: {}", names.join(", "))
    };
    Ok(format!(
        "no {what} of workflow `{workflow}` in {}{sep}{known}",
        store.path()
    ))
}

/// `runs`: recent runs, newest first.
pub fn runs(store: &RunStore, args: &RunsArgs) -> Result<String, CliError> {
    let runs = store.list_runs(args.workflow.as_deref(), args.limit as usize)?;
    if args.json {
        let list: Vec<Value> = runs.iter().map(run_json).collect();
        return Ok(pretty(&json!({ "store": store.path(), "runs": list })));
    }
    if runs.is_empty() {
        let line = match &args.workflow {
            Some(w) => no_runs_of(store, w, "runs", "\n")?,
            None => format!("no runs in {}", store.path()),
        };
        return Ok(clip_lines(&line));
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
    for run in &runs {
        let summary = run.bottleneck_info.as_ref();
        unpriced |= summary.is_some_and(|s| s.unpriced_calls > 0);
        let mut cells = run_cells(run, id_len);
        cells.push(
            summary
                .and_then(|s| s.slowest_node.as_ref())
                .map_or_else(|| "-".to_owned(), |s| s.node_id.clone()),
        );
        table.row(cells);
    }
    let mut out = table.render();
    if unpriced {
        out.push_str("* leaves out LLM calls of unknown price\n");
    }
    Ok(out)
}

/// `show`: the executor's report of one run.
pub fn show(store: &RunStore, args: &ShowArgs) -> Result<String, CliError> {
    let run = store.find_run(&args.run)?;
    if args.json {
        let nodes = store.node_figures(&run)?;
        let states = store.states(&run.id)?;
        let report = run.report();
        return Ok(pretty(&json!({
            "run": run,
            "nodes": nodes,
            "states": states,
            "report": report,
        })));
    }
    if let Some(report) = run.report() {
        return Ok(report);
    }
    // No summary: the run has not finished, or its process ended early.
    let states = store.states(&run.id)?;
    let mut out = format!(
        "run {}\nof workflow `{}`: {}, no report stored\n\
         (the run has not finished, or its process ended early)\n",
        run.id, run.workflow_name, run.status
    );
    if let Some(error) = &run.error_message {
        out.push_str(&format!("error: {error}\n"));
    }
    if states.is_empty() {
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

/// One node of `compare`.
struct Delta<'a> {
    node_id: &'a str,
    a: Option<&'a NodeFigures>,
    b: Option<&'a NodeFigures>,
}

impl Delta<'_> {
    fn time(f: Option<&NodeFigures>) -> f64 {
        f.map_or(0.0, |n| n.total_duration_ms)
    }

    fn cost(f: Option<&NodeFigures>) -> f64 {
        f.map_or(0.0, |n| n.cost_usd)
    }

    /// Time B less time A, a missing side counting as 0.
    fn delta_ms(&self) -> f64 {
        Self::time(self.b) - Self::time(self.a)
    }

    fn delta_usd(&self) -> f64 {
        Self::cost(self.b) - Self::cost(self.a)
    }

    fn only_in(&self) -> Option<&'static str> {
        match (self.a, self.b) {
            (Some(_), None) => Some("a"),
            (None, Some(_)) => Some("b"),
            _ => None,
        }
    }

    fn pct(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) => change_pct(a.total_duration_ms, b.total_duration_ms),
            _ => None,
        }
    }
}

/// The rows of `compare`: every node of either run, the largest time increase first.
fn deltas<'a>(a: &'a [NodeFigures], b: &'a [NodeFigures]) -> Vec<Delta<'a>> {
    let mut ids: Vec<&str> = a.iter().map(|n| n.node_id.as_str()).collect();
    for n in b {
        if !ids.contains(&n.node_id.as_str()) {
            ids.push(&n.node_id);
        }
    }
    let mut rows: Vec<Delta<'a>> = ids
        .into_iter()
        .map(|id| Delta {
            node_id: id,
            a: a.iter().find(|n| n.node_id == id),
            b: b.iter().find(|n| n.node_id == id),
        })
        .collect();
    rows.sort_by(|x, y| {
        y.delta_ms()
            .total_cmp(&x.delta_ms())
            .then_with(|| x.node_id.cmp(y.node_id))
    });
    rows
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
pub fn compare(store: &RunStore, args: &CompareArgs) -> Result<String, CliError> {
    let a = store.find_run(&args.run_a)?;
    let b = store.find_run(&args.run_b)?;
    let nodes_a = store.node_figures(&a)?;
    let nodes_b = store.node_figures(&b)?;
    let rows = deltas(&nodes_a, &nodes_b);
    let run_delta = match (a.duration_ms, b.duration_ms) {
        (Some(x), Some(y)) => Some(y - x),
        _ => None,
    };
    let cost_delta = b.total_cost_usd - a.total_cost_usd;
    if args.json {
        let nodes: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "node_id": r.node_id,
                    "only_in": r.only_in(),
                    "time_a_ms": r.a.map(|n| n.total_duration_ms),
                    "time_b_ms": r.b.map(|n| n.total_duration_ms),
                    "delta_ms": r.delta_ms(),
                    "delta_percent": r.pct(),
                    "calls_a": r.a.map(|n| n.call_count),
                    "calls_b": r.b.map(|n| n.call_count),
                    "cost_a_usd": r.a.map(|n| n.cost_usd),
                    "cost_b_usd": r.b.map(|n| n.cost_usd),
                    "cost_delta_usd": r.delta_usd(),
                })
            })
            .collect();
        return Ok(pretty(&json!({
            "run_a": run_brief(&a),
            "run_b": run_brief(&b),
            "duration_delta_ms": run_delta,
            "duration_delta_percent": match (a.duration_ms, b.duration_ms) {
                (Some(x), Some(y)) => change_pct(x, y),
                _ => None,
            },
            "cost_delta_usd": cost_delta,
            "nodes": nodes,
        })));
    }

    let id_len = store.unique_prefix_len(SHORT_ID)?;
    let mut runs = Table::new(
        &[
            &[("", Align::Left, false), ("run", Align::Left, false)][..],
            &RUN_COLUMNS,
        ]
        .concat(),
    );
    for (label, run) in [("A", &a), ("B", &b)] {
        let mut cells = vec![label.to_owned()];
        cells.extend(run_cells(run, id_len));
        runs.row(cells);
    }
    let mut out = runs.render();
    let mut totals = String::from("B - A: ");
    match (run_delta, a.duration_ms.zip(b.duration_ms)) {
        (Some(d), Some((x, y))) => {
            totals.push_str(&delta_ms(d));
            if let Some(p) = change_pct(x, y) {
                totals.push_str(&format!(" ({})", delta_pct(p)));
            }
        }
        _ => totals.push_str("duration unknown"),
    }
    totals.push_str(&format!(", cost {}", delta_usd(cost_delta)));
    if let Some(p) = change_pct(a.total_cost_usd, b.total_cost_usd) {
        totals.push_str(&format!(" ({})", delta_pct(p)));
    }
    out.push_str(&totals);
    out.push_str("\n\n");

    if rows.is_empty() {
        out.push_str("no node ran in either run\n");
        return Ok(clip_lines(&out));
    }
    let mut table = Table::new(&[
        ("node", Align::Left, true),
        ("time A", Align::Right, false),
        ("time B", Align::Right, false),
        ("delta", Align::Right, false),
        ("delta %", Align::Right, false),
        ("cost delta", Align::Right, false),
    ]);
    for r in &rows {
        let pct = match r.only_in() {
            Some("a") => "only A".to_owned(),
            Some(_) => "only B".to_owned(),
            None => r.pct().map_or_else(|| "-".to_owned(), delta_pct),
        };
        table.row(vec![
            r.node_id.to_owned(),
            r.a.map_or_else(|| "-".to_owned(), |n| ms(n.total_duration_ms)),
            r.b.map_or_else(|| "-".to_owned(), |n| ms(n.total_duration_ms)),
            delta_ms(r.delta_ms()),
            pct,
            delta_usd(r.delta_usd()),
        ]);
    }
    out.push_str(&table.render());
    Ok(clip_lines(&out))
}

/// One node's figures over the runs of `trend`.
#[derive(Debug)]
pub struct NodeTrend<'a> {
    /// The node.
    pub node_id: &'a str,
    /// The node's figures in each run, oldest run first (`None`: it did not run).
    pub series: Vec<Option<&'a NodeFigures>>,
    /// Median of the node's times in the runs before the newest, ms.
    pub median_previous_ms: Option<f64>,
    /// Runs before the newest in which the node ran.
    pub previous_runs: usize,
    /// The node's time in the newest run, ms.
    pub latest_ms: Option<f64>,
    /// Whether the rule flags the node.
    pub flagged: bool,
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> Option<f64> {
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

/// The trend rule: `latest > threshold × median(previous)`, `latest − median >
/// min_delta_ms`, and at least [`MIN_PREVIOUS_RUNS`] previous runs.
pub fn is_slow(
    latest: f64,
    median_previous: f64,
    previous_runs: usize,
    threshold: f64,
    min_delta_ms: f64,
) -> bool {
    previous_runs >= MIN_PREVIOUS_RUNS
        && latest > threshold * median_previous
        && latest - median_previous > min_delta_ms
}

/// The trends of every node over `runs` (oldest first), flagged first, then by latest
/// time, slowest first.
pub fn node_trends<'a>(
    runs: &[&'a RunNodeFigures],
    threshold: f64,
    min_delta_ms: f64,
) -> Vec<NodeTrend<'a>> {
    let mut ids: Vec<&'a str> = Vec::new();
    // Nodes of the newest run first, in their order, then the others.
    for run in runs.iter().rev() {
        for n in &run.nodes {
            if !ids.contains(&n.node_id.as_str()) {
                ids.push(&n.node_id);
            }
        }
    }
    let mut trends: Vec<NodeTrend<'a>> = ids
        .into_iter()
        .map(|id| {
            let series: Vec<Option<&'a NodeFigures>> = runs
                .iter()
                .map(|r| r.nodes.iter().find(|n| n.node_id == id))
                .collect();
            let (previous, latest) = series.split_at(series.len().saturating_sub(1));
            let latest_ms = latest
                .first()
                .copied()
                .flatten()
                .map(|n| n.total_duration_ms);
            let mut prev: Vec<f64> = previous
                .iter()
                .flatten()
                .map(|n| n.total_duration_ms)
                .collect();
            let previous_runs = prev.len();
            let median_previous_ms = median(&mut prev);
            let flagged = match (latest_ms, median_previous_ms) {
                (Some(l), Some(m)) => is_slow(l, m, previous_runs, threshold, min_delta_ms),
                _ => false,
            };
            NodeTrend {
                node_id: id,
                series,
                median_previous_ms,
                previous_runs,
                latest_ms,
                flagged,
            }
        })
        .collect();
    trends.sort_by(|x, y| {
        y.flagged
            .cmp(&x.flagged)
            .then_with(|| {
                y.latest_ms
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&x.latest_ms.unwrap_or(f64::NEG_INFINITY))
            })
            .then_with(|| x.node_id.cmp(y.node_id))
    });
    trends
}

/// `trend`: each node's time over the last runs of a workflow, slow ones flagged.
pub fn trend(store: &RunStore, args: &TrendArgs) -> Result<String, CliError> {
    let history = store.node_history(&args.workflow, args.limit as usize)?;
    if history.is_empty() {
        let what = no_runs_of(store, &args.workflow, "finished runs", "; ")?;
        return Err(CliError(what));
    }
    let runs: Vec<&RunNodeFigures> = history.iter().rev().collect();
    let trends = node_trends(&runs, args.threshold, args.min_delta_ms);
    let flagged: Vec<&str> = trends
        .iter()
        .filter(|t| t.flagged)
        .map(|t| t.node_id)
        .collect();

    if args.json {
        let run_list: Vec<Value> = runs
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
        let nodes: Vec<Value> = trends
            .iter()
            .map(|t| {
                let series: Vec<Value> = t
                    .series
                    .iter()
                    .zip(&runs)
                    .filter_map(|(n, r)| {
                        n.map(|n| {
                            json!({
                                "run_id": r.run_id,
                                "total_duration_ms": n.total_duration_ms,
                                "call_count": n.call_count,
                                "cost_usd": n.cost_usd,
                            })
                        })
                    })
                    .collect();
                let latest = t.series.last().copied().flatten();
                json!({
                    "node_id": t.node_id,
                    "runs": series.len(),
                    "previous_runs": t.previous_runs,
                    "median_previous_ms": t.median_previous_ms,
                    "latest_ms": t.latest_ms,
                    "ratio": t.latest_ms.zip(t.median_previous_ms)
                        .and_then(|(l, m)| (m > 0.0).then(|| l / m)),
                    "change_percent": t.latest_ms.zip(t.median_previous_ms)
                        .and_then(|(l, m)| change_pct(m, l)),
                    "latest_cost_usd": latest.map(|n| n.cost_usd),
                    "flagged": t.flagged,
                    "series": series,
                })
            })
            .collect();
        return Ok(pretty(&json!({
            "workflow": args.workflow,
            "rule": {
                "threshold": args.threshold,
                "min_delta_ms": args.min_delta_ms,
                "min_previous_runs": MIN_PREVIOUS_RUNS,
            },
            "runs": run_list,
            "nodes": nodes,
            "flagged": flagged,
        })));
    }

    let (first, last) = (runs[0], runs[runs.len() - 1]);
    let mut out = format!(
        "`{}`: {} finished run{}, {} to {} UTC\n",
        args.workflow,
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
    for t in &trends {
        let times: Vec<Option<f64>> = t.series[t.series.len() - shown..]
            .iter()
            .map(|n| n.map(|n| n.total_duration_ms))
            .collect();
        table.row(vec![
            t.node_id.to_owned(),
            t.series.iter().flatten().count().to_string(),
            t.median_previous_ms.map_or_else(|| "-".to_owned(), ms),
            t.latest_ms.map_or_else(|| "-".to_owned(), ms),
            t.latest_ms
                .zip(t.median_previous_ms)
                .and_then(|(l, m)| change_pct(m, l))
                .map_or_else(|| "-".to_owned(), delta_pct),
            sparkline(&times),
            if t.flagged { "SLOW" } else { "" }.to_owned(),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&format!(
        "SLOW: latest > {} x prev median and by > {} ms, >= {MIN_PREVIOUS_RUNS} previous runs\n",
        args.threshold, args.min_delta_ms
    ));
    if flagged.is_empty() {
        out.push_str("no node flagged\n");
    } else {
        out.push_str(&format!("flagged: {}\n", flagged.join(", ")));
    }
    Ok(clip_lines(&out))
}

/// "cannot write PATH: why".
fn write_error(path: &std::path::Path, e: &std::io::Error) -> CliError {
    CliError(format!("cannot write {}: {e}", path.display()))
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
        return Err(CliError(format!(
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
    write_html(&input, &args.html).map_err(|e| write_error(&args.html, &e))?;
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
        return Err(CliError(format!(
            "run {} has no trace (trace mode was off)",
            run.id
        )));
    };
    let (id, title) = file_title(store, &run)?;
    write_chrome_trace(&trace, &title, &args.out).map_err(|e| write_error(&args.out, &e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_executor::store::WorkflowStatus;

    fn figures(id: &str, ms: f64) -> NodeFigures {
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

    fn run(nodes: &[(&str, f64)]) -> RunNodeFigures {
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
    fn the_rule() {
        assert!(is_slow(151.0, 100.0, 3, 1.5, 1.0));
        assert!(!is_slow(150.0, 100.0, 3, 1.5, 1.0), "strictly above");
        assert!(!is_slow(151.0, 100.0, 2, 1.5, 1.0), "too few previous runs");
        assert!(!is_slow(0.9, 0.1, 5, 1.5, 1.0), "below the ms floor");
        assert!(
            is_slow(0.9, 0.0, 5, 1.5, 0.5),
            "a median of 0 flags above the floor"
        );
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn trends_flag_a_slow_latest_run() {
        let history = [
            run(&[("a", 100.0), ("b", 10.0)]),
            run(&[("a", 300.0), ("b", 10.0)]), // one odd run: the median ignores it
            run(&[("a", 100.0), ("b", 11.0)]),
            run(&[("a", 102.0), ("b", 9.0), ("gone", 5.0)]),
            run(&[("a", 160.0), ("b", 10.5), ("new", 50.0)]),
        ];
        let runs: Vec<&RunNodeFigures> = history.iter().collect();
        let trends = node_trends(&runs, 1.5, 1.0);
        let names: Vec<&str> = trends.iter().map(|t| t.node_id).collect();
        assert_eq!(names, ["a", "new", "b", "gone"]);
        assert!(trends[0].flagged);
        assert_eq!(trends[0].median_previous_ms, Some(101.0));
        assert_eq!(trends[0].previous_runs, 4);
        assert!(trends[1..].iter().all(|t| !t.flagged));
        assert_eq!(trends[1].previous_runs, 0);
        assert_eq!(trends[3].latest_ms, None);
        assert!(node_trends(&runs, 1.6, 1.0).iter().all(|t| !t.flagged));
    }

    #[test]
    fn compare_orders_regressions_first() {
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
        let rows = deltas(&a, &b);
        let order: Vec<&str> = rows.iter().map(|r| r.node_id).collect();
        assert_eq!(order, ["x", "new", "gone", "y"]);
        assert_eq!(rows[1].only_in(), Some("b"));
        assert_eq!(rows[2].only_in(), Some("a"));
        assert_eq!(rows[0].pct(), Some(1000.0));
    }
}
