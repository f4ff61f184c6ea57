//! A self-contained HTML report of a run: one file with inline SVG and inline CSS, nothing
//! fetched from anywhere, no script.
//!
//! It shows, from a [`Summary`] (and a [`Trace`] when trace mode was on):
//!
//! - a header with the run's facts (id, workflow, status, start, duration), the total self
//!   time, LLM cost and tokens, the bottlenecks and the slowest node, led by the critical
//!   path's verdict ([`CriticalPath::verdict`]) when the summary has one;
//! - each node's share of self time as bars, bottlenecks in a strong colour, with the
//!   bottleneck threshold drawn as a dashed line, and each bar split into the node's LLM
//!   time and its own time when its LLM calls were timed ([`share_chart_svg`]);
//! - each node's LLM cost as bars ([`cost_chart_svg`]);
//! - a Gantt-style timeline of the spans, one band per thread ([`timeline_svg`]), the calls
//!   on the critical path ringed when the summary has one;
//! - the critical path: the path as text, what speeding each node up would save (the
//!   what-if table) and the calls off the path with their slack;
//! - a table of every node, with its LLM time, own time and time to first token.
//!
//! Every piece of text is escaped (node ids are user input), every number carries its
//! unit, long labels are cut with `…` (the full text in a tooltip), and the charts cap
//! their rows (saying how many are not shown), so that a run of 200 nodes still reads well.
//!
//! ```
//! use agent_profiler_runtime::BottleneckAnalyzer;
//! use agent_profiler_report::html::{ReportInput, render_html};
//!
//! let analyzer = BottleneckAnalyzer::new();
//! analyzer.record_node("retrieve", 120.0).unwrap();
//! analyzer.record_node("summarize", 480.0).unwrap();
//! let summary = analyzer.get_summary();
//! let html = render_html(&ReportInput::new("Nightly run", &summary));
//! assert!(html.starts_with("<!DOCTYPE html>"));
//! assert!(html.contains("summarize"));
//! ```

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use agent_profiler_runtime::Summary;
use agent_profiler_runtime::critical::{CriticalPath, PathMethod};
use agent_profiler_runtime::trace::Trace;

mod bars;
mod svg;
mod timeline;

pub use bars::{MAX_CHART_ROWS, cost_chart_svg, share_chart_svg};
pub use timeline::{MAX_TIMELINE_SPANS, timeline_svg};

use bars::{
    BOTTLENECK_FILL, BOTTLENECK_LLM_FILL, COST_FILL, COSTLIEST_FILL, OTHER_FILL, OTHER_LLM_FILL,
    bottleneck_ids, by_self_time, share_of,
};
use svg::{counted, esc, group, ms, pct, pct_short, tokens, usd};
use timeline::{CRITICAL_STROKE, PathMarks};

/// Rows of the node table at most; the rest are counted under it.
pub const MAX_TABLE_ROWS: usize = 500;

/// What a report is made of: a title, the summary, the trace when trace mode was on, and
/// what is known of the run. Build it with [`ReportInput::new`] and set the optional
/// fields:
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_report::html::ReportInput;
///
/// let analyzer = BottleneckAnalyzer::new();
/// let summary = analyzer.get_summary();
/// let input = ReportInput {
///     workflow: Some("research"),
///     status: Some("completed"),
///     duration_ms: Some(1520.0),
///     ..ReportInput::new("Research run", &summary)
/// };
/// assert_eq!(input.title, "Research run");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ReportInput<'a> {
    /// The page's title and heading.
    pub title: &'a str,
    /// The analysis to draw.
    pub summary: &'a Summary,
    /// The spans of the run, when trace mode was on: drawn as a timeline.
    pub trace: Option<&'a Trace>,
    /// The run's id.
    pub run_id: Option<&'a str>,
    /// The workflow's name.
    pub workflow: Option<&'a str>,
    /// How the run ended (`completed`, `failed`, ...).
    pub status: Option<&'a str>,
    /// When the run started, seconds since the Unix epoch.
    pub started_at: Option<f64>,
    /// Wall time of the run, ms.
    pub duration_ms: Option<f64>,
}

impl<'a> ReportInput<'a> {
    /// A report of `summary` under `title`, without trace or run facts.
    pub fn new(title: &'a str, summary: &'a Summary) -> Self {
        Self {
            title,
            summary,
            trace: None,
            run_id: None,
            workflow: None,
            status: None,
            started_at: None,
            duration_ms: None,
        }
    }

    /// The same input with `trace` drawn as a timeline.
    pub fn with_trace(mut self, trace: &'a Trace) -> Self {
        self.trace = Some(trace);
        self
    }
}

/// Writes [`render_html`]'s page to `path`.
///
/// # Errors
/// The file system's.
pub fn write_html(input: &ReportInput<'_>, path: impl AsRef<Path>) -> io::Result<()> {
    std::fs::write(path, render_html(input))
}

/// The report as one HTML page: inline CSS and SVG, no script, nothing fetched.
pub fn render_html(input: &ReportInput<'_>) -> String {
    let summary = input.summary;
    let mut out = String::with_capacity(32 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n\
         <meta name=\"generator\" content=\"agent-profiler\"/>\n\
         <title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<main>\n",
        esc(input.title),
        CSS
    );
    header(&mut out, input);

    out.push_str("<section class=\"share\">\n<h2>Self time per node</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"legend\"><span class=\"swatch\" style=\"background:{BOTTLENECK_FILL}\"></span>bottleneck \
         (above {}) <span class=\"swatch\" style=\"background:{OTHER_FILL}\"></span>other node \
         <span class=\"dash\"></span>threshold. Shares are of self time: a nested node's time \
         is not counted twice.</p>",
        pct_short(summary.threshold_percent)
    );
    if summary
        .nodes
        .iter()
        .any(|n| n.llm_time_ms > 0.0 || n.llm_failed_calls > 0)
    {
        let _ = writeln!(
            out,
            "<p class=\"legend split\"><span class=\"swatch\" style=\"background:{BOTTLENECK_LLM_FILL}\">\
             </span><span class=\"swatch\" style=\"background:{OTHER_LLM_FILL}\"></span>LLM time: \
             the union of the node's LLM calls, so concurrent calls count once \
             <span class=\"swatch\" style=\"background:{BOTTLENECK_FILL}\"></span>\
             <span class=\"swatch\" style=\"background:{OTHER_FILL}\"></span>own time: self time \
             less LLM time.</p>"
        );
    }
    out.push_str(&share_chart_svg(summary));
    out.push_str("\n</section>\n");

    out.push_str("<section class=\"cost\">\n<h2>LLM cost per node</h2>\n");
    if summary.llm_calls > 0 {
        let _ = writeln!(
            out,
            "<p class=\"legend\"><span class=\"swatch\" style=\"background:{COSTLIEST_FILL}\">\
             </span>costliest node <span class=\"swatch\" style=\"background:{COST_FILL}\"></span>\
             other node. Bars are scaled to the costliest node; an LLM call's cost counts for \
             the node that made it.</p>"
        );
    }
    out.push_str(&cost_chart_svg(summary));
    out.push_str("\n</section>\n");

    out.push_str("<section class=\"timeline\">\n<h2>Timeline</h2>\n");
    match input.trace {
        Some(trace) => {
            out.push_str(
                "<p class=\"legend\">Time runs left to right from the first call. A nested \
                 call sits under its caller; concurrent calls get bands of their own. Async \
                 calls: the light bar is the wall time, the dark slices are the polls (time \
                 running). Hover a bar for its figures.</p>\n",
            );
            let marks = summary
                .critical_path
                .as_ref()
                .map(|path| PathMarks::new(path, trace))
                .unwrap_or_default();
            if !marks.on_path.is_empty() {
                let _ = writeln!(
                    out,
                    "<p class=\"legend\"><span class=\"ring\" style=\"border-color:{CRITICAL_STROKE}\">\
                     </span>critical path: the calls that decided the wall time. Hover a call \
                     off it for its slack.</p>"
                );
            }
            out.push_str(&timeline::timeline_svg_highlighting(
                trace,
                &bottleneck_ids(summary),
                &marks,
            ));
        }
        None => out.push_str(
            "<p class=\"empty\">No timeline: trace mode was off for this run (turn it on \
             with <code>analyzer.enable_trace(capacity)</code>).</p>",
        ),
    }
    out.push_str("\n</section>\n");

    if let Some(path) = &summary.critical_path {
        critical_path(&mut out, path);
    }
    table(&mut out, summary);
    out.push_str(
        "<footer>Made by agent-profiler. Times are wall-clock ms; self time leaves out \
         nested profiled calls.</footer>\n</main>\n</body>\n</html>\n",
    );
    out
}

/// The heading, the run's facts and the verdict.
fn header(out: &mut String, input: &ReportInput<'_>) {
    let summary = input.summary;
    let _ = writeln!(out, "<header>\n<h1>{}</h1>", esc(input.title));
    let mut facts: Vec<(&str, String)> = Vec::new();
    if let Some(workflow) = input.workflow {
        facts.push(("workflow", esc(workflow)));
    }
    if let Some(run_id) = input.run_id {
        facts.push(("run", format!("<code>{}</code>", esc(run_id))));
    }
    if let Some(status) = input.status {
        let class = match status {
            "completed" => "ok",
            "running" => "running",
            _ => "bad",
        };
        facts.push((
            "status",
            format!("<span class=\"status {class}\">{}</span>", esc(status)),
        ));
    }
    if let Some(started) = input.started_at {
        facts.push(("started", esc(&utc(started))));
    }
    if let Some(duration) = input.duration_ms {
        facts.push(("duration", esc(&ms(duration))));
    }
    facts.push(("self time", esc(&ms(summary.total_time_ms))));
    facts.push(("nodes", group(summary.node_count as u64)));
    if summary.llm_calls > 0 {
        let mut cost = usd(summary.total_cost_usd);
        if summary.unpriced_calls > 0 {
            cost.push_str(&format!(
                " + {} unpriced calls",
                group(summary.unpriced_calls)
            ));
        }
        facts.push(("LLM cost", esc(&cost)));
        facts.push(("tokens", esc(&group(summary.total_tokens))));
        facts.push(("LLM calls", group(summary.llm_calls)));
    } else {
        facts.push(("LLM cost", "no LLM calls".to_owned()));
    }
    out.push_str("<dl class=\"facts\">");
    for (name, value) in facts {
        let _ = write!(out, "<div><dt>{name}</dt><dd>{value}</dd></div>");
    }
    out.push_str("</dl>\n");

    // The verdict: what to look at first. What a speed-up would buy leads when it is known:
    // a bottleneck by share may be off the critical path and save nothing.
    if let Some(path) = &summary.critical_path {
        out.push_str("<p class=\"verdict critical\">");
        out.push_str(&verdict_html(&path.verdict(&summary.bottlenecks)));
        out.push_str("</p>\n");
    }
    out.push_str("<p class=\"verdict\">");
    let threshold = pct_short(summary.threshold_percent);
    match summary.bottlenecks.as_slice() {
        [] if summary.nodes.is_empty() => out.push_str("Nothing was recorded."),
        [] => {
            let _ = write!(
                out,
                "No bottleneck: no node takes more than {threshold} of the self time."
            );
        }
        list => {
            out.push_str(if list.len() == 1 {
                "Bottleneck: "
            } else {
                "Bottlenecks: "
            });
            for (i, b) in list.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(
                    out,
                    "<strong class=\"bottleneck\">{}</strong> ({} of self time, {})",
                    esc(&b.node_id),
                    esc(&pct(b.percent_of_total)),
                    esc(&ms(b.self_duration_ms))
                );
            }
            let _ = write!(out, ", above the {threshold} threshold.");
        }
    }
    if let Some(slowest) = &summary.slowest_node {
        let calls = counted(slowest.call_count, "call");
        let _ = write!(
            out,
            " Slowest node: <strong>{}</strong> ({} total over {}, {} on average).",
            esc(&slowest.node_id),
            esc(&ms(slowest.total_duration_ms)),
            calls,
            esc(&ms(slowest.avg_duration_ms))
        );
    }
    if let Some(costliest) = &summary.costliest_node {
        let _ = write!(
            out,
            " Costliest node: <strong>{}</strong> ({}, {} of the cost).",
            esc(&costliest.node_id),
            esc(&usd(costliest.cost_usd)),
            esc(&pct(costliest.percent_of_cost))
        );
    }
    out.push_str("</p>\n</header>\n");
}

/// The shared verdict's text as HTML: each statement on a line of its own, the indented
/// lines that continue one joined to it.
fn verdict_html(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        match lines.last_mut() {
            Some(last) if line.starts_with(' ') => {
                last.push(' ');
                last.push_str(line.trim_start());
            }
            _ => lines.push(line.to_owned()),
        }
    }
    lines
        .iter()
        .map(|l| esc(l))
        .collect::<Vec<_>>()
        .join("<br/>")
}

/// `2` for 2.0, `1.5` for 1.5: the speed-up as the shared verdict writes it.
fn speedup(k: f64) -> String {
    if k.fract() == 0.0 {
        format!("{k:.0}")
    } else {
        format!("{k}")
    }
}

/// The critical path as text, the what-if table and the calls off the path with their slack.
fn critical_path(out: &mut String, path: &CriticalPath) {
    let k = speedup(path.speedup);
    let source = match path.method {
        PathMethod::Structure => "from the workflow's structure: exact for it",
        PathMethod::Trace => "worked out from the trace by a rule: an estimate",
    };
    let _ = writeln!(
        out,
        "<section class=\"critical-path\">\n<h2>Critical path</h2>\n\
         <p class=\"legend\">The chain of calls that decided the wall time ({}, {source}). \
         Speeding up a call off it saves nothing until its slack is used up.</p>",
        esc(&ms(path.wall_time_ms))
    );
    // Consecutive calls of one node are one step of the path, as in the console.
    let mut steps: Vec<&str> = Vec::new();
    for call in &path.path {
        if steps.last() != Some(&call.node_id.as_str()) {
            steps.push(&call.node_id);
        }
    }
    if steps.is_empty() {
        out.push_str("<p class=\"empty\">No call on the path.</p>\n");
    } else {
        out.push_str("<p class=\"path\">");
        for (i, step) in steps.iter().enumerate() {
            if i > 0 {
                out.push_str(" <span class=\"arrow\">→</span> ");
            }
            let _ = write!(out, "<code>{}</code>", esc(step));
        }
        if path.path_left_out > 0 {
            let _ = write!(
                out,
                " … and {} more calls",
                group(path.path_left_out as u64)
            );
        }
        out.push_str("</p>\n");
    }

    let _ = writeln!(
        out,
        "<h3>What if a node were faster</h3>\n\
         <p class=\"legend\">Time the run would save, largest first. Model {k}×: the node's \
         LLM wait alone {k} times shorter (a faster model); own {k}×: the rest of its time \
         alone; – for a node without LLM time.</p>\n\
         <div class=\"wide\"><table class=\"what-if\">\n<thead><tr><th class=\"name\">node</th>\
         <th>on path</th><th>time</th><th>{k}× faster saves</th><th>removed saves</th>\
         <th>model {k}× saves</th><th>own {k}× saves</th></tr></thead>\n<tbody>"
    );
    let optional = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), ms);
    let raw = |v: Option<f64>| v.map_or_else(String::new, |v| v.to_string());
    for what in &path.what_if {
        let _ = writeln!(
            out,
            "<tr{} data-node=\"{}\" data-on-path=\"{}\" data-duration-ms=\"{}\" \
             data-faster-saves-ms=\"{}\" data-removed-saves-ms=\"{}\" \
             data-llm-faster-saves-ms=\"{}\" data-own-faster-saves-ms=\"{}\">\
             <td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            if what.on_path {
                " class=\"on-path\""
            } else {
                ""
            },
            esc(&what.node_id),
            what.on_path,
            what.duration_ms,
            what.faster_saves_ms,
            what.removed_saves_ms,
            raw(what.llm_faster_saves_ms),
            raw(what.own_faster_saves_ms),
            esc(&what.node_id),
            if what.on_path { "yes" } else { "no" },
            esc(&ms(what.duration_ms)),
            esc(&ms(what.faster_saves_ms)),
            esc(&ms(what.removed_saves_ms)),
            esc(&optional(what.llm_faster_saves_ms)),
            esc(&optional(what.own_faster_saves_ms)),
        );
    }
    out.push_str("</tbody>\n</table></div>\n");

    out.push_str("<h3>Calls off the path</h3>\n");
    if path.off_path.is_empty() {
        out.push_str("<p class=\"empty\">Every call is on the path.</p>\n");
    } else {
        out.push_str(
            "<p class=\"legend\">In the order they started; slack: how much longer a call \
             could have taken without making the run longer.</p>\n\
             <div class=\"wide\"><table class=\"off-path\">\n<thead><tr><th class=\"name\">node</th>\
             <th>start</th><th>time</th><th>slack</th></tr></thead>\n<tbody>\n",
        );
        for call in &path.off_path {
            let _ = writeln!(
                out,
                "<tr data-node=\"{}\" data-slack-ms=\"{}\"><td class=\"name\">{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&call.node_id),
                call.slack_ms,
                esc(&call.node_id),
                esc(&ms(call.start_ms)),
                esc(&ms(call.duration_ms)),
                esc(&ms(call.slack_ms)),
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
        if path.off_path_left_out > 0 {
            let _ = writeln!(
                out,
                "<p class=\"note\">{} more calls off the path not shown (those with the most \
                 slack).</p>",
                group(path.off_path_left_out as u64)
            );
        }
    }
    out.push_str("</section>\n");
}

/// The table of nodes, widest share first.
fn table(out: &mut String, summary: &Summary) {
    out.push_str("<section class=\"nodes\">\n<h2>Nodes</h2>\n");
    if summary.nodes.is_empty() {
        out.push_str("<p class=\"empty\">No nodes recorded.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"wide\"><table>\n<thead><tr><th class=\"name\">node</th><th>calls</th><th>self share</th>\
         <th>self</th><th>total</th><th>p50</th><th>p95</th>\
         <th>ok / err / panic / cancel</th><th>tokens</th><th>cost</th>\
         <th>LLM / own time</th><th>TTFT p50 / p95</th></tr></thead>\n<tbody>\n",
    );
    let bottlenecks = bottleneck_ids(summary);
    let ordered = by_self_time(summary);
    for node in ordered.iter().take(MAX_TABLE_ROWS) {
        let is_bottleneck = bottlenecks.contains(node.node_id.as_str());
        let o = node.outcomes;
        let cost = if node.llm_calls == 0 {
            "no LLM calls".to_owned()
        } else if node.unpriced_calls == node.llm_calls {
            "unpriced".to_owned()
        } else if node.unpriced_calls > 0 {
            format!("{} + {} unpriced", usd(node.cost_usd), node.unpriced_calls)
        } else {
            usd(node.cost_usd)
        };
        let toks = if node.llm_calls == 0 {
            "–".to_owned()
        } else {
            tokens(node.total_tokens)
        };
        // Only timed calls have an interval: a node whose calls were tracked from their
        // bodies alone has no split to show, rather than an LLM time of 0.
        let timed = node.llm_time_ms > 0.0 || node.llm_failed_calls > 0;
        let split = if timed {
            format!("{} / {}", ms(node.llm_time_ms), ms(node.own_time_ms))
        } else {
            "–".to_owned()
        };
        let ttft = match (node.ttft_p50_ms, node.ttft_p95_ms) {
            (Some(p50), Some(p95)) => format!("{} / {}", ms(p50), ms(p95)),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "<tr{}><td class=\"name\">{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{} / {} / {} / {}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            if is_bottleneck {
                " class=\"bottleneck\""
            } else {
                ""
            },
            esc(&node.node_id),
            if is_bottleneck {
                " <span class=\"tag\">bottleneck</span>"
            } else {
                ""
            },
            group(node.call_count),
            esc(&pct(share_of(summary, node))),
            esc(&ms(node.self_duration_ms)),
            esc(&ms(node.total_duration_ms)),
            esc(&ms(node.p50_duration_ms)),
            esc(&ms(node.p95_duration_ms)),
            o.ok,
            o.error,
            o.panicked,
            o.cancelled,
            esc(&toks),
            esc(&cost),
            esc(&split),
            esc(&ttft),
        );
    }
    // Scrolls sideways on a narrow page rather than squeezing the node ids.
    out.push_str("</tbody>\n</table></div>\n");
    if ordered.len() > MAX_TABLE_ROWS {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} more nodes not shown.</p>",
            group((ordered.len() - MAX_TABLE_ROWS) as u64)
        );
    }
    out.push_str("</section>\n");
}

/// Seconds since the Unix epoch as `2025-01-31 14:05:09 UTC`; `unknown` when negative or
/// not a number.
fn utc(unix_s: f64) -> String {
    if !unix_s.is_finite() || unix_s < 0.0 {
        return "unknown".to_owned();
    }
    let t = crate::date::UtcDateTime::from_unix_seconds(unix_s.floor() as i64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

const CSS: &str = r#"
:root { color-scheme: light; }
body { margin: 0; background: #f7f8fa; color: #1f2933;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 840px; margin: 0 auto; padding: 20px 20px 32px; }
h1 { font-size: 22px; margin: 0 0 10px; }
h2 { font-size: 16px; margin: 0 0 6px; }
header, section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px;
  padding: 14px 16px; margin: 0 0 14px; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 0 0 10px; }
.facts div { min-width: 0; }
.facts dt { font-size: 11px; text-transform: uppercase; letter-spacing: .04em; color: #616e7c; }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.status { padding: 0 6px; border-radius: 3px; }
.status.ok { background: #e3f7ea; color: #1e6b3a; }
.status.bad { background: #fde8ea; color: #a61b2b; }
.status.running { background: #eef2f6; }
.verdict { margin: 0; padding: 8px 10px; background: #fff5f5; border-left: 4px solid #d1495b;
  overflow-wrap: anywhere; }
.verdict strong.bottleneck { color: #b3233a; }
.verdict.critical { margin: 0 0 8px; background: #fff8eb; border-left-color: #f08c00;
  font-weight: 600; }
h3 { font-size: 13px; margin: 12px 0 4px; }
.path { margin: 0 0 6px; overflow-wrap: anywhere; }
.path .arrow { color: #f08c00; font-weight: 700; }
.ring { display: inline-block; width: 12px; height: 8px; border: 2px solid;
  border-radius: 3px; margin: 0 4px 0 0; vertical-align: -1px; }
tr.on-path td.name { box-shadow: inset 3px 0 #f08c00; font-weight: 700; }
.legend, .note, .empty { color: #52606d; font-size: 12px; margin: 0 0 6px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin: 0 4px 0 8px; vertical-align: -1px; }
.swatch:first-child { margin-left: 0; }
.dash { display: inline-block; width: 16px; border-top: 2px dashed #1f2933;
  margin: 0 4px 0 8px; vertical-align: 3px; }
svg { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 12px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 6px; border-bottom: 1px solid #eef0f2; text-align: right; white-space: nowrap; }
th { color: #52606d; font-weight: 600; }
th.name, td.name { text-align: left; white-space: normal; overflow-wrap: anywhere;
  min-width: 9em; }
.wide { overflow-x: auto; }
tr.bottleneck td { background: #fff5f5; }
tr.bottleneck td.name { box-shadow: inset 3px 0 #d1495b; font-weight: 700; }
.tag { font-size: 10px; font-weight: 600; color: #fff; background: #d1495b;
  border-radius: 3px; padding: 0 4px; }
code { font-size: 12px; }
footer { color: #7b8794; font-size: 11px; text-align: center; }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599.5), "2024-12-31 23:59:59 UTC");
        assert_eq!(utc(f64::NAN), "unknown");
    }
}
