//! The Gantt-style timeline of a trace, drawn on [`layout`]'s lanes: one band per lane,
//! one row per nesting level, async calls as a light wall-time bar with their polls as
//! darker slices inside it.

use std::collections::{HashMap, HashSet};

use super::bars::{BOTTLENECK_FILL, CHART_WIDTH, OTHER_FILL};
use super::svg::{Svg, TEXT, counted, esc, fit, group, ms, num, ticks, tokens, usd};
use crate::layout::{ItemKind, layout};
use agent_profiler_runtime::DEFAULT_THRESHOLD_PERCENT;
use agent_profiler_runtime::Outcome;
use agent_profiler_runtime::critical::CriticalPath;
use agent_profiler_runtime::trace::{Span, Trace};

/// Spans drawn at most (the longest ones); the rest are counted under the timeline.
pub const MAX_TIMELINE_SPANS: usize = 2_000;
/// Lanes drawn at most (the first ones: parents' lanes come before their children's).
pub const MAX_TIMELINE_LANES: usize = 40;
/// Poll slices drawn at most (the longest ones among the drawn spans' polls).
pub const MAX_TIMELINE_POLLS: usize = 5_000;

/// As wide as the other charts, so that the page lines them up.
const WIDTH: f64 = CHART_WIDTH;
const PLOT_X: f64 = 180.0;
const PLOT_WIDTH: f64 = WIDTH - PLOT_X - 20.0;
const TOP: f64 = 8.0;
const ROW_H: f64 = 20.0;
const BAR_H: f64 = 16.0;
const LANE_PAD: f64 = 4.0;
const AXIS_H: f64 = 32.0;
const NOTE_H: f64 = 18.0;
const FONT: f64 = 11.0;
const LANE_FONT: f64 = 12.0;

const BOTTLENECK_POLL_FILL: &str = "#9e2236";
const OTHER_POLL_FILL: &str = "#4f6d8a";
/// The ring around a call on the critical path: apart from both fills and from the dark
/// outline of a failed call, which it leaves visible inside it.
pub(crate) const CRITICAL_STROKE: &str = "#f08c00";
/// How far the ring stands off its bar: the gap between two rows, so that it never covers
/// the bar itself.
const CRITICAL_OUTSET: f64 = (ROW_H - BAR_H) / 2.0 - 0.5;

/// The timeline of `trace` as an SVG document, highlighting the nodes whose share of the
/// trace's self time (a span's wall time less its children's) is above the default
/// threshold of 50%. [`render_html`](super::render_html) highlights the summary's
/// bottlenecks instead.
///
/// One `<rect class="span">` per span drawn (all of them up to [`MAX_TIMELINE_SPANS`]),
/// placed by [`layout`]: x from the span's start, width from its wall time (at least
/// 1 px, and then kept inside the plot), each with `data-node`, `data-span` (its index in [`Trace::spans`]) and a tooltip
/// (node, wall and busy time, outcome, thread, LLM tokens and cost). Async spans are
/// light, their polls (`<rect class="poll">`) dark slices inside them; failed calls get a
/// dark outline, cancelled ones a dashed one. Under the lanes, an axis in ms from the
/// trace's first start.
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_report::html::timeline_svg;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.enable_trace(64);
/// analyzer.record_node("plan", 12.0).unwrap();
/// let svg = timeline_svg(&analyzer.trace().unwrap());
/// assert_eq!(svg.matches(r#"<rect class="span""#).count(), 1);
/// ```
pub fn timeline_svg(trace: &Trace) -> String {
    let ids = trace_bottlenecks(trace, DEFAULT_THRESHOLD_PERCENT);
    let highlight: HashSet<&str> = ids.iter().map(String::as_str).collect();
    timeline_svg_highlighting(trace, &highlight, &PathMarks::default())
}

/// The spans a critical path marks on the timeline: its calls, and the slack of the calls
/// off it.
#[derive(Debug, Default)]
pub(crate) struct PathMarks {
    /// Span ids of the calls on the path.
    pub(crate) on_path: HashSet<u64>,
    /// Span id of each call off the path with its slack, ms.
    pub(crate) slack_ms: HashMap<u64, f64>,
}

impl PathMarks {
    /// The marks of `path` on `trace`. A path entry names its call's span when the
    /// structure knew it; one that does not marks every span of its node not known to be
    /// off the path, which is the best the trace can tell.
    pub(crate) fn new(path: &CriticalPath, trace: &Trace) -> Self {
        let mut on_path: HashSet<u64> = path.path.iter().filter_map(|c| c.call).collect();
        let slack_ms: HashMap<u64, f64> = path
            .off_path
            .iter()
            .filter_map(|c| Some((c.call?, c.slack_ms)))
            .collect();
        let unnamed: HashSet<&str> = path
            .path
            .iter()
            .filter(|c| c.call.is_none())
            .map(|c| c.node_id.as_str())
            .collect();
        if !unnamed.is_empty() {
            on_path.extend(
                trace
                    .spans
                    .iter()
                    .filter(|s| unnamed.contains(&*s.node_id) && !slack_ms.contains_key(&s.span_id))
                    .map(|s| s.span_id),
            );
        }
        Self { on_path, slack_ms }
    }
}

/// The nodes whose share of the trace's self time is above `threshold` percent.
fn trace_bottlenecks(trace: &Trace, threshold: f64) -> Vec<String> {
    let mut child_time: HashMap<u64, u64> = HashMap::new();
    for span in &trace.spans {
        if let Some(parent) = span.parent_span_id {
            *child_time.entry(parent).or_default() += span.duration_ns();
        }
    }
    let mut self_time: HashMap<&str, u64> = HashMap::new();
    for span in &trace.spans {
        let own = span
            .duration_ns()
            .saturating_sub(child_time.get(&span.span_id).copied().unwrap_or(0));
        *self_time.entry(&*span.node_id).or_default() += own;
    }
    let total: u64 = self_time.values().sum();
    if total == 0 {
        return Vec::new();
    }
    self_time
        .into_iter()
        .filter(|(_, t)| *t as f64 * 100.0 / total as f64 > threshold)
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// One drawn rectangle's place.
struct Placed {
    kind: ItemKind,
    row: usize,
    start: u64,
    end: u64,
}

/// The timeline with the nodes of `highlight` in the strong colour and the spans on the
/// critical path of `marks` ringed.
pub(crate) fn timeline_svg_highlighting(
    trace: &Trace,
    highlight: &HashSet<&str>,
    marks: &PathMarks,
) -> String {
    let label = "Timeline of the run";
    let layout = layout(trace);
    if trace.spans.is_empty() {
        return Svg::empty(
            WIDTH,
            "chart timeline-chart",
            label,
            "no spans in the trace",
        );
    }

    // Which spans and polls are drawn: the longest ones, when there are too many.
    let kept_spans: HashSet<usize> = longest(
        trace.spans.iter().map(Span::duration_ns).enumerate(),
        MAX_TIMELINE_SPANS,
    );
    let span_index: HashMap<u64, usize> = trace
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let poll_span = |p: usize| span_index.get(&trace.polls[p].span_id).copied();
    let kept_polls: HashSet<usize> = longest(
        trace.polls.iter().enumerate().filter_map(|(i, p)| {
            let span = poll_span(i)?;
            kept_spans
                .contains(&span)
                .then(|| (i, p.end_unix_ns.saturating_sub(p.start_unix_ns)))
        }),
        MAX_TIMELINE_POLLS,
    );
    let kept = |kind: ItemKind| match kind {
        ItemKind::Span(i) => kept_spans.contains(&i),
        ItemKind::Poll(i) => kept_polls.contains(&i),
        // Not placed by `layout`: the timeline shows LLM time in the node table instead.
        ItemKind::Llm { .. } => false,
    };

    // Rows within each lane: a span sits one row under the item containing it; a poll
    // sits on its span's row, inside the span's bar.
    let mut lanes: Vec<(&str, Vec<Placed>, usize)> = Vec::new();
    let mut spans_in_hidden_lanes = 0usize;
    for lane in &layout.lanes {
        let mut stack: Vec<(usize, usize)> = Vec::new(); // (depth, row)
        let mut placed = Vec::new();
        for item in &lane.items {
            while stack.last().is_some_and(|(d, _)| *d >= item.depth) {
                stack.pop();
            }
            let row = match (item.kind, stack.last()) {
                (_, None) => 0,
                (ItemKind::Poll(_), Some((_, parent_row))) => *parent_row,
                (ItemKind::Span(_) | ItemKind::Llm { .. }, Some((_, parent_row))) => parent_row + 1,
            };
            stack.push((item.depth, row));
            if kept(item.kind) {
                placed.push(Placed {
                    kind: item.kind,
                    row,
                    start: item.start_unix_ns,
                    end: item.end_unix_ns,
                });
            }
        }
        if !placed.iter().any(|p| matches!(p.kind, ItemKind::Span(_))) {
            continue;
        }
        if lanes.len() == MAX_TIMELINE_LANES {
            spans_in_hidden_lanes += placed
                .iter()
                .filter(|p| matches!(p.kind, ItemKind::Span(_)))
                .count();
            continue;
        }
        let rows = placed.iter().map(|p| p.row).max().unwrap_or(0) + 1;
        lanes.push((lane.name.as_str(), placed, rows));
    }

    let mut notes = Vec::new();
    let not_drawn = trace.spans.len() - kept_spans.len() + spans_in_hidden_lanes;
    if not_drawn > 0 {
        notes.push(format!(
            "{} of {} spans not drawn (the shortest, or beyond {} lanes)",
            group(not_drawn as u64),
            group(trace.spans.len() as u64),
            MAX_TIMELINE_LANES
        ));
    }
    if trace.dropped > 0 {
        notes.push(format!(
            "{} spans and polls did not fit in the trace buffer ({} kept at most)",
            group(trace.dropped),
            group(trace.capacity as u64)
        ));
    }

    let lanes_h: f64 = lanes
        .iter()
        .map(|(_, _, rows)| *rows as f64 * ROW_H + 2.0 * LANE_PAD)
        .sum();
    let height = TOP + lanes_h + AXIS_H + notes.len() as f64 * NOTE_H;
    let mut svg = Svg::new(WIDTH, height, "chart timeline-chart", label);

    let t0 = layout.start_unix_ns;
    let range_ns = layout.end_unix_ns.saturating_sub(t0).max(1) as f64;
    let x_of = |t: u64| PLOT_X + t.saturating_sub(t0) as f64 / range_ns * PLOT_WIDTH;
    // A slice's x and width: at least 1 px wide, and kept inside the plot.
    let bar = |start: u64, end: u64| {
        let w = (x_of(end) - x_of(start)).max(1.0);
        (x_of(start).min(PLOT_X + PLOT_WIDTH - w), w)
    };
    let range_ms = range_ns / 1e6;
    let axis: Vec<f64> = ticks(range_ms, 6);
    let bottom = TOP + lanes_h;

    // Lane bands, then grid lines over them, then the bars.
    let mut y = TOP;
    for (i, (name, _, rows)) in lanes.iter().enumerate() {
        let h = *rows as f64 * ROW_H + 2.0 * LANE_PAD;
        let fill = if i % 2 == 0 { "#f4f6f8" } else { "#ffffff" };
        svg.rect("lane", 0.0, y, WIDTH, h, fill, "", None);
        let (text, cut) = fit(name, PLOT_X - 16.0, LANE_FONT);
        svg.text(
            "lane-label",
            8.0,
            y + LANE_PAD + ROW_H / 2.0 + LANE_FONT * 0.35,
            "start",
            &format!(r#" fill="{TEXT}" font-size="{LANE_FONT}""#),
            &text,
            cut.then_some(*name),
        );
        y += h;
    }
    for t in &axis {
        let x = PLOT_X + t / range_ms * PLOT_WIDTH;
        svg.line(
            "grid",
            x,
            TOP,
            x,
            bottom,
            r##" stroke="#d5dbe1" stroke-width="1" stroke-dasharray="2 3""##,
        );
    }

    let mut y = TOP;
    for (_, placed, rows) in &lanes {
        for p in placed {
            let row_y = y + LANE_PAD + p.row as f64 * ROW_H + (ROW_H - BAR_H) / 2.0;
            let (x, w) = bar(p.start, p.end);
            match p.kind {
                ItemKind::Span(i) => {
                    let span = &trace.spans[i];
                    let strong = highlight.contains(&*span.node_id);
                    draw_span(&mut svg, span, i, strong, marks, x, row_y, w, t0);
                }
                ItemKind::Poll(i) => {
                    let poll = &trace.polls[i];
                    let (node, strong, x, w) = match poll_span(i) {
                        Some(s) => {
                            let span = &trace.spans[s];
                            let id = &*span.node_id;
                            // Inside the span's bar, also when widened to 1 px.
                            let (sx, sw) = bar(span.start_unix_ns, span.end_unix_ns);
                            let w = w.min(sw);
                            (id, highlight.contains(id), x.clamp(sx, sx + sw - w), w)
                        }
                        None => ("?", false, x, w),
                    };
                    let fill = if strong {
                        BOTTLENECK_POLL_FILL
                    } else {
                        OTHER_POLL_FILL
                    };
                    let title = format!(
                        "{node}: poll of {} on thread {}",
                        ms(poll.end_unix_ns.saturating_sub(poll.start_unix_ns) as f64 / 1e6),
                        poll.thread
                    );
                    svg.rect(
                        "poll",
                        x,
                        row_y + 3.0,
                        w,
                        BAR_H - 6.0,
                        fill,
                        &format!(r#" data-poll="{i}""#),
                        Some(&title),
                    );
                }
                ItemKind::Llm { .. } => {}
            }
        }
        // Rings after every bar and poll of the lane, so that no poll covers one.
        for p in placed {
            let ItemKind::Span(i) = p.kind else {
                continue;
            };
            if !marks.on_path.contains(&trace.spans[i].span_id) {
                continue;
            }
            let row_y = y + LANE_PAD + p.row as f64 * ROW_H + (ROW_H - BAR_H) / 2.0;
            let (x, w) = bar(p.start, p.end);
            svg.rect(
                "critical",
                x - CRITICAL_OUTSET,
                row_y - CRITICAL_OUTSET,
                w + 2.0 * CRITICAL_OUTSET,
                BAR_H + 2.0 * CRITICAL_OUTSET,
                "none",
                &format!(
                    r#" rx="3" stroke="{CRITICAL_STROKE}" stroke-width="2" data-span="{i}" pointer-events="none""#
                ),
                None,
            );
        }
        // Labels last, above every bar and poll of the lane. A label starts in its bar and
        // may run on past its end, up to the next bar on the same row (or the plot's end).
        let mut on_row: Vec<(usize, f64, f64, usize)> = placed
            .iter()
            .filter_map(|p| match p.kind {
                ItemKind::Span(i) => {
                    let (x, w) = bar(p.start, p.end);
                    Some((p.row, x, x + w, i))
                }
                ItemKind::Poll(_) | ItemKind::Llm { .. } => None,
            })
            .collect();
        on_row.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        for (k, &(row, x, _, i)) in on_row.iter().enumerate() {
            let limit = match on_row.get(k + 1) {
                Some(&(next_row, next_x, _, _)) if next_row == row => next_x,
                _ => PLOT_X + PLOT_WIDTH + 16.0,
            };
            let (text, _) = fit(&trace.spans[i].node_id, limit - x - 8.0, FONT);
            if text.chars().count() >= 3 {
                let row_y = y + LANE_PAD + row as f64 * ROW_H;
                svg.text(
                    "span-label",
                    x + 4.0,
                    row_y + ROW_H / 2.0 + FONT * 0.35,
                    "start",
                    &format!(
                        r##" fill="{TEXT}" font-size="{FONT}" stroke="#ffffff" stroke-width="3" stroke-opacity="0.8" paint-order="stroke" pointer-events="none""##
                    ),
                    &text,
                    None,
                );
            }
        }
        y += *rows as f64 * ROW_H + 2.0 * LANE_PAD;
    }

    // The axis, in ms from the first start; labels that would touch are left out.
    svg.x_axis(
        PLOT_X,
        PLOT_X + PLOT_WIDTH,
        bottom,
        axis.iter()
            .map(|t| (PLOT_X + t / range_ms * PLOT_WIDTH, tick_ms(*t))),
        FONT,
        8.0,
        WIDTH,
    );
    for (i, text) in notes.iter().enumerate() {
        let y = bottom + AXIS_H + 12.0 + i as f64 * NOTE_H;
        svg.note(PLOT_X, y, FONT, text);
    }
    svg.finish()
}

/// A span's bar with its tooltip.
#[allow(clippy::too_many_arguments)]
fn draw_span(
    svg: &mut Svg,
    span: &Span,
    index: usize,
    strong: bool,
    marks: &PathMarks,
    x: f64,
    y: f64,
    w: f64,
    t0: u64,
) {
    let fill = if strong { BOTTLENECK_FILL } else { OTHER_FILL };
    let wall_ms = span.duration_ns() as f64 / 1e6;
    let mut title = format!("{}: {}", span.node_id, ms(wall_ms));
    if span.is_async {
        title.push_str(&format!(
            " wall, {} busy (async)",
            ms(span.busy_ns as f64 / 1e6)
        ));
    }
    title.push_str(&format!(
        ", {}, from {} on thread {}",
        span.outcome.as_str(),
        ms(span.start_unix_ns.saturating_sub(t0) as f64 / 1e6),
        span.thread
    ));
    if !span.llm_calls.is_empty() {
        let totals = span.llm_totals();
        let calls = counted(totals.calls, "LLM call");
        let cost = if totals.unpriced_calls == totals.calls {
            "unpriced".to_owned()
        } else {
            usd(totals.cost_usd)
        };
        title.push_str(&format!(
            "; {calls}: {}, {cost}",
            tokens(totals.total_tokens)
        ));
    }
    let critical = marks.on_path.contains(&span.span_id);
    if critical {
        title.push_str(" — on the critical path");
    } else if let Some(slack) = marks.slack_ms.get(&span.span_id) {
        title.push_str(&format!(" — off the critical path, slack {}", ms(*slack)));
    }
    if strong {
        title.push_str(" — bottleneck");
    }
    let mut extra = format!(
        r#" rx="2" data-node="{}" data-span="{index}" data-outcome="{}""#,
        esc(&span.node_id),
        span.outcome.as_str()
    );
    if critical {
        extra.push_str(r#" data-critical="true""#);
    }
    if span.is_async {
        extra.push_str(r#" fill-opacity="0.35""#);
    }
    match span.outcome {
        Outcome::Ok => {}
        Outcome::Error | Outcome::Panicked => {
            extra.push_str(r##" stroke="#5c0011" stroke-width="1.5""##)
        }
        Outcome::Cancelled => {
            extra.push_str(r##" stroke="#3e4c59" stroke-width="1.2" stroke-dasharray="3 2""##)
        }
    }
    svg.rect("span", x, y, w, BAR_H, fill, &extra, Some(&title));
}

/// The indices of the `max` longest items (all of them when there are no more).
fn longest(items: impl Iterator<Item = (usize, u64)>, max: usize) -> HashSet<usize> {
    let mut all: Vec<(usize, u64)> = items.collect();
    if all.len() > max {
        all.sort_by_key(|&(i, d)| (std::cmp::Reverse(d), i));
        all.truncate(max);
    }
    all.into_iter().map(|(i, _)| i).collect()
}

/// A tick label: `0 ms`, `250 ms`, `1,500 ms`, `0.5 ms`.
fn tick_ms(t: f64) -> String {
    if t == 0.0 {
        "0 ms".to_owned()
    } else if t >= 1.0 && (t - t.round()).abs() < 1e-9 {
        format!("{} ms", group(t.round() as u64))
    } else {
        format!("{} ms", num(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::trace::test_support::span;

    #[test]
    fn empty_trace_says_so() {
        assert!(timeline_svg(&Trace::default()).contains("no spans in the trace"));
    }

    #[test]
    fn bottlenecks_from_the_trace_use_self_time() {
        let trace = Trace {
            spans: vec![
                span(2, Some(1), "inner", 0, 90),
                span(1, None, "outer", 0, 100),
            ],
            ..Trace::default()
        };
        assert_eq!(trace_bottlenecks(&trace, 50.0), vec!["inner".to_owned()]);
    }

    #[test]
    fn too_many_spans_are_capped_and_counted() {
        let spans: Vec<Span> = (0..MAX_TIMELINE_SPANS as u64 + 10)
            .map(|i| span(i + 1, None, "n", i * 10, i * 10 + 5 + i % 3))
            .collect();
        let svg = timeline_svg(&Trace {
            spans,
            ..Trace::default()
        });
        assert_eq!(
            svg.matches(r#"<rect class="span""#).count(),
            MAX_TIMELINE_SPANS
        );
        assert!(svg.contains("10 of 2,010 spans not drawn"));
    }

    #[test]
    fn labels_never_overlap() {
        let long = "a_very_long_node_identifier_for_a_short_call_that_needs_cutting";
        let mut spans = vec![
            span(1, None, "workflow", 0, 1_000),
            span(2, Some(1), long, 10, 400),
            span(3, Some(2), "inner", 20, 30),
            span(4, Some(1), "WWWWWWWWWWWWWWWWWWWWWWWW", 400, 1_000),
            span(5, Some(1), "concurrent", 350, 700),
            span(6, None, "<&>", 1_000, 1_000),
        ];
        spans.extend((0..50).map(|i| span(100 + i, Some(1), "tiny", i * 20, i * 20 + 3)));
        let trace = Trace {
            spans,
            dropped: 3,
            capacity: 56,
            ..Trace::default()
        };
        crate::html::bars::tests::assert_no_overlap(&timeline_svg(&trace), WIDTH);
    }

    #[test]
    fn zero_length_trace_draws() {
        let svg = timeline_svg(&Trace {
            spans: vec![span(1, None, "a", 5, 5)],
            ..Trace::default()
        });
        assert_eq!(svg.matches(r#"<rect class="span""#).count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn the_critical_path_is_ringed_and_the_rest_has_slack() {
        use agent_profiler_runtime::critical::Flow;

        let trace = Trace {
            spans: vec![
                span(1, None, "flow", 0, 100),
                span(2, Some(1), "short", 10, 30),
                span(3, Some(1), "long", 10, 90),
            ],
            ..Trace::default()
        };
        let path = Flow::from_trace(&trace).critical_path(2.0);
        let marks = PathMarks::new(&path, &trace);
        assert_eq!(marks.on_path, HashSet::from([1, 3]));
        assert_eq!(marks.slack_ms.keys().copied().collect::<Vec<_>>(), vec![2]);
        let svg = timeline_svg_highlighting(&trace, &HashSet::new(), &marks);
        assert_eq!(svg.matches(r#"<rect class="critical""#).count(), 2);
        assert_eq!(svg.matches(r#"data-critical="true""#).count(), 2);
        assert!(svg.contains("off the critical path, slack "));

        // Without span ids, a path entry marks its node's spans not known to be off it.
        let mut unnamed = path.clone();
        for call in &mut unnamed.path {
            call.call = None;
        }
        assert_eq!(
            PathMarks::new(&unnamed, &trace).on_path,
            HashSet::from([1, 3])
        );
    }

    #[test]
    fn tick_labels_carry_units() {
        assert_eq!(tick_ms(0.0), "0 ms");
        assert_eq!(tick_ms(1500.0), "1,500 ms");
        assert_eq!(tick_ms(0.5), "0.5 ms");
    }
}
