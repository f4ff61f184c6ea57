//! The two bar charts: each node's share of self time (with the bottleneck threshold), and
//! each node's LLM cost.

use std::collections::HashSet;

use super::svg::{
    MUTED_TEXT, Svg, TEXT, counted, esc, fit, group, ms, pct, pct_short, text_width, ticks, tokens,
    usd,
};
use agent_profiler_runtime::{NodeTimings, Summary};

/// Width of every bar chart, px.
pub(crate) const CHART_WIDTH: f64 = 800.0;
/// Where the plot starts: node labels sit to its left.
pub(crate) const PLOT_X: f64 = 200.0;
/// Width of the plot: a share of 100% (or the highest cost) is a bar this long.
pub(crate) const PLOT_WIDTH: f64 = 430.0;
/// Rows drawn at most; the rest are counted under the chart.
pub const MAX_CHART_ROWS: usize = 30;

const LABEL_FONT: f64 = 12.0;
const VALUE_FONT: f64 = 11.0;
const ROW_H: f64 = 24.0;
const BAR_H: f64 = 16.0;
const TOP: f64 = 30.0;
const COST_TOP: f64 = 10.0;
const AXIS_H: f64 = 30.0;
const NOTE_H: f64 = 20.0;

/// Strong colour of a bottleneck's bars.
pub(crate) const BOTTLENECK_FILL: &str = "#d1495b";
/// Muted colour of other nodes' bars.
pub(crate) const OTHER_FILL: &str = "#9fb4c7";
/// Strong colour of the costliest node's cost bar.
pub(crate) const COSTLIEST_FILL: &str = "#1f7a5c";
/// Muted colour of other nodes' cost bars.
pub(crate) const COST_FILL: &str = "#a7cdbd";
const TRACK_FILL: &str = "#f1f3f5";
/// Colour of the LLM part of a bottleneck's share bar: darker than its own part, so the
/// wait on the model reads as the heavier half.
pub(crate) const BOTTLENECK_LLM_FILL: &str = "#8f2433";
/// Colour of the LLM part of other nodes' share bars.
pub(crate) const OTHER_LLM_FILL: &str = "#51708f";

/// How a share bar splits into LLM time and own time.
struct Split {
    /// The LLM part as a fraction of the bar, 0..=1.
    llm: f64,
    llm_fill: &'static str,
    llm_title: String,
    own_title: String,
}

/// One bar to draw.
struct Row<'a> {
    node: &'a NodeTimings,
    /// Bar length as a fraction of the plot width, 0..=1.
    fraction: f64,
    fill: &'static str,
    strong: bool,
    value: String,
    title: String,
    /// Extra attributes (already escaped) on the bar: `data-*` facts for tests and tools.
    data: String,
    /// Drawn over the bar when the node's LLM calls were timed.
    split: Option<Split>,
}

/// The ids of the summary's bottlenecks.
pub(crate) fn bottleneck_ids(summary: &Summary) -> HashSet<&str> {
    summary
        .bottlenecks
        .iter()
        .map(|b| b.node_id.as_str())
        .collect()
}

/// A node's share of the summary's self time, percent (0 when nothing took time).
pub(crate) fn share_of(summary: &Summary, node: &NodeTimings) -> f64 {
    agent_profiler_runtime::percent(node.self_duration_ms, summary.total_time_ms)
}

/// The nodes widest share first (ties in the order of their first call).
pub(crate) fn by_self_time(summary: &Summary) -> Vec<&NodeTimings> {
    let mut rows: Vec<&NodeTimings> = summary.nodes.iter().collect();
    rows.sort_by(|a, b| b.self_duration_ms.total_cmp(&a.self_duration_ms));
    rows
}

/// The x of a fraction of the plot.
fn x_of(fraction: f64) -> f64 {
    PLOT_X + fraction.clamp(0.0, 1.0) * PLOT_WIDTH
}

/// Draws rows of horizontal bars with labels, values and an axis. `axis` maps plot
/// fractions to tick labels. Returns the drawing and the y just under the last row
/// (for the threshold line).
fn draw_rows(svg: &mut Svg, rows: &[Row<'_>], axis: &[(f64, String)], top: f64) -> f64 {
    let bottom = top + rows.len() as f64 * ROW_H;
    // Grid lines behind the bars, at the ticks.
    for (fraction, _) in axis {
        let x = x_of(*fraction);
        svg.line(
            "grid",
            x,
            top - 4.0,
            x,
            bottom,
            r##" stroke="#dde3e9" stroke-width="1""##,
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + i as f64 * ROW_H;
        let bar_y = y + (ROW_H - BAR_H) / 2.0;
        let text_y = y + ROW_H / 2.0 + LABEL_FONT * 0.35;
        svg.rect(
            "track",
            PLOT_X,
            bar_y,
            PLOT_WIDTH,
            BAR_H,
            TRACK_FILL,
            r#" fill-opacity="0.6""#,
            None,
        );
        let width = row.fraction.clamp(0.0, 1.0) * PLOT_WIDTH;
        svg.rect(
            "bar",
            PLOT_X,
            bar_y,
            width,
            BAR_H,
            row.fill,
            &format!(r#" rx="2"{}"#, row.data),
            Some(&row.title),
        );
        if let Some(split) = &row.split {
            // Over the whole bar, which keeps its facts for tools: each part's own
            // tooltip is what a reader hovering that part asks about.
            let llm_w = width * split.llm.clamp(0.0, 1.0);
            svg.rect(
                "bar-llm",
                PLOT_X,
                bar_y,
                llm_w,
                BAR_H,
                split.llm_fill,
                r#" rx="2""#,
                Some(&split.llm_title),
            );
            svg.rect(
                "bar-own",
                PLOT_X + llm_w,
                bar_y,
                width - llm_w,
                BAR_H,
                row.fill,
                r#" rx="2""#,
                Some(&split.own_title),
            );
        }
        // The node's id, right-aligned against the plot, cut to the label column.
        let label_font = if row.strong {
            LABEL_FONT * 1.1
        } else {
            LABEL_FONT
        };
        let (label, cut) = fit(&row.node.node_id, PLOT_X - 20.0, label_font);
        let weight = if row.strong {
            r#" font-weight="700""#
        } else {
            ""
        };
        svg.text(
            "label",
            PLOT_X - 8.0,
            text_y,
            "end",
            &format!(r#" fill="{TEXT}"{weight}"#),
            &label,
            cut.then_some(row.node.node_id.as_str()),
        );
        // The value just after the bar; inside its end (in white) when it does not fit
        // after it but does inside; else cut to what is left of the chart's width.
        let value_font = VALUE_FONT * if row.strong { 1.1 } else { 1.0 };
        let value_w = text_width(&row.value, value_font);
        let outside = CHART_WIDTH - (PLOT_X + width + 6.0) - 4.0;
        let (x, anchor, room, colour) = if value_w > outside && value_w <= width - 12.0 {
            (PLOT_X + width - 6.0, "end", width - 12.0, "#ffffff")
        } else if row.strong {
            (PLOT_X + width + 6.0, "start", outside, row.fill)
        } else {
            (PLOT_X + width + 6.0, "start", outside, MUTED_TEXT)
        };
        let (value, cut) = fit(&row.value, room, value_font);
        svg.text(
            "value",
            x,
            text_y,
            anchor,
            &format!(r#" fill="{colour}" font-size="{VALUE_FONT}"{weight}"#),
            &value,
            cut.then_some(row.value.as_str()),
        );
    }
    // The axis: a baseline and tick labels that never overlap.
    svg.x_axis(
        PLOT_X,
        PLOT_X + PLOT_WIDTH,
        bottom,
        axis.iter()
            .map(|(fraction, label)| (x_of(*fraction), label.clone())),
        VALUE_FONT,
        6.0,
        CHART_WIDTH,
    );
    bottom
}

/// The height of a chart of `rows` rows, with `notes` lines under it.
fn chart_height(top: f64, rows: usize, notes: usize) -> f64 {
    top + rows as f64 * ROW_H + AXIS_H + notes as f64 * NOTE_H
}

/// A horizontal bar chart of each node's share of self time, widest first, as an SVG
/// document: one `<rect class="bar">` per node drawn (at most [`MAX_CHART_ROWS`], the rest
/// counted under the chart), `share / 100 × 430 px` long, bottlenecks in a strong colour
/// and the others muted; the bottleneck threshold as a dashed vertical line
/// (`class="threshold"`) labelled "bottleneck threshold 50%"; an axis in %. Each bar
/// carries `data-node`, `data-share` (percent), `data-bottleneck`, `data-llm-ms` and
/// `data-own-ms`, and a tooltip with the node's times. A node whose LLM calls were timed
/// has its bar split: a darker `<rect class="bar-llm">` for its LLM time (the union of its
/// calls' intervals, with the time to first token in its tooltip) and a
/// `<rect class="bar-own">` for its own time, in proportion to its self time.
///
/// ```
/// use agent_profiler_report::html::share_chart_svg;
/// use agent_profiler_runtime::BottleneckAnalyzer;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("fetch", 30.0).unwrap();
/// analyzer.record_node("think", 90.0).unwrap();
/// let svg = share_chart_svg(&analyzer.get_summary());
/// assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 2);
/// assert!(svg.contains("bottleneck threshold 50%"));
/// ```
pub fn share_chart_svg(summary: &Summary) -> String {
    let label = "Share of self time per node";
    if summary.nodes.is_empty() {
        return Svg::empty(CHART_WIDTH, "chart share-chart", label, "no nodes recorded");
    }
    let bottlenecks = bottleneck_ids(summary);
    let ordered = by_self_time(summary);
    let shown = &ordered[..ordered.len().min(MAX_CHART_ROWS)];
    let hidden = &ordered[shown.len()..];
    let rows: Vec<Row<'_>> = shown
        .iter()
        .map(|node| {
            let share = share_of(summary, node);
            let is_bottleneck = bottlenecks.contains(node.node_id.as_str());
            let calls = counted(node.call_count, "call");
            let mut title = format!(
                "{}: {} of self time ({} self, {} total, {}; p50 {}, p95 {})",
                node.node_id,
                pct(share),
                ms(node.self_duration_ms),
                ms(node.total_duration_ms),
                calls,
                ms(node.p50_duration_ms),
                ms(node.p95_duration_ms),
            );
            if is_bottleneck {
                title.push_str(" — bottleneck");
            }
            Row {
                node,
                fraction: share / 100.0,
                fill: if is_bottleneck {
                    BOTTLENECK_FILL
                } else {
                    OTHER_FILL
                },
                strong: is_bottleneck,
                value: match node.llm_time_ms > 0.0 {
                    true => format!(
                        "{} · {} · LLM {}",
                        pct(share),
                        ms(node.self_duration_ms),
                        ms(node.llm_time_ms)
                    ),
                    false => format!("{} · {}", pct(share), ms(node.self_duration_ms)),
                },
                title,
                data: format!(
                    r#" data-node="{}" data-share="{}" data-bottleneck="{}" data-llm-ms="{}" data-own-ms="{}""#,
                    esc(&node.node_id),
                    share,
                    is_bottleneck,
                    node.llm_time_ms,
                    node.own_time_ms
                ),
                split: split_of(node, is_bottleneck),
            }
        })
        .collect();
    let any_split = rows.iter().any(|r| r.split.is_some());
    let notes = usize::from(!hidden.is_empty()) + usize::from(any_split);
    let mut svg = Svg::new(
        CHART_WIDTH,
        chart_height(TOP, rows.len(), notes),
        "chart share-chart",
        label,
    );
    let axis: Vec<(f64, String)> = [0.0, 25.0, 50.0, 75.0, 100.0]
        .into_iter()
        .map(|p| (p / 100.0, pct_short(p)))
        .collect();
    let bottom = draw_rows(&mut svg, &rows, &axis, TOP);

    // The threshold: a dashed line across every row, labelled above the rows (where no
    // other text is), its label kept inside the chart.
    let threshold = summary.threshold_percent;
    let x = x_of(threshold / 100.0);
    svg.line(
        "threshold",
        x,
        TOP - 8.0,
        x,
        bottom + 2.0,
        &format!(
            r##" stroke="#1f2933" stroke-width="1.5" stroke-dasharray="5 4" data-threshold="{}""##,
            if threshold.is_finite() {
                threshold
            } else {
                0.0
            }
        ),
    );
    let text = format!("bottleneck threshold {}", pct_short(threshold));
    let w = text_width(&text, VALUE_FONT);
    let label_x = x.clamp(w / 2.0 + 4.0, CHART_WIDTH - w / 2.0 - 4.0);
    svg.text(
        "threshold-label",
        label_x,
        TOP - 12.0,
        "middle",
        &format!(r#" fill="{TEXT}" font-size="{VALUE_FONT}""#),
        &text,
        None,
    );
    let mut note_y = bottom + AXIS_H + 12.0;
    if any_split {
        svg.note(
            PLOT_X,
            note_y,
            VALUE_FONT,
            "dark part: LLM time (its calls' union) · light part: own time",
        );
        note_y += NOTE_H;
    }
    if !hidden.is_empty() {
        let rest: f64 = hidden.iter().map(|n| share_of(summary, n)).sum();
        svg.note(
            PLOT_X,
            note_y,
            VALUE_FONT,
            &format!(
                "{} more nodes not shown ({} of self time together)",
                group(hidden.len() as u64),
                pct(rest)
            ),
        );
    }
    svg.finish()
}

/// The split of `node`'s share bar, when some of its LLM calls were timed: the LLM part is
/// `llm_time_ms / self_duration_ms` of the bar (capped at all of it).
fn split_of(node: &NodeTimings, is_bottleneck: bool) -> Option<Split> {
    if node.llm_time_ms <= 0.0 && node.llm_failed_calls == 0 {
        return None;
    }
    let llm = if node.self_duration_ms > 0.0 {
        (node.llm_time_ms / node.self_duration_ms).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut llm_title = format!(
        "{}: LLM time {} ({} of self time, {})",
        node.node_id,
        ms(node.llm_time_ms),
        pct(llm * 100.0),
        counted(node.llm_calls + node.llm_failed_calls, "LLM call"),
    );
    if let (Some(p50), Some(p95)) = (node.ttft_p50_ms, node.ttft_p95_ms) {
        llm_title.push_str(&format!(
            "; time to first token p50 {}, p95 {} over {}",
            ms(p50),
            ms(p95),
            counted(node.streamed_calls, "streamed call")
        ));
    }
    let mut own_title = format!(
        "{}: own time {} ({} of self time)",
        node.node_id,
        ms(node.own_time_ms),
        pct(100.0 - llm * 100.0),
    );
    if node.tool_calls > 0 {
        own_title.push_str(&format!(
            ", {} in {} included",
            ms(node.tool_time_ms),
            counted(node.tool_calls, "tool call")
        ));
    }
    Some(Split {
        llm,
        llm_fill: if is_bottleneck {
            BOTTLENECK_LLM_FILL
        } else {
            OTHER_LLM_FILL
        },
        llm_title,
        own_title,
    })
}

/// A horizontal bar chart of each node's LLM cost, costliest first, as an SVG document:
/// one `<rect class="bar">` per node that made LLM calls (at most [`MAX_CHART_ROWS`]),
/// `cost / highest cost × 430 px` long, the costliest in a strong colour; the value shows
/// the cost in $, its share of the total and the tokens. Nodes without LLM calls are
/// counted under the chart; with no LLM calls at all the chart just says "no LLM calls".
/// Each bar carries `data-node`, `data-cost-usd` and `data-tokens`.
///
/// ```
/// use agent_profiler_report::html::cost_chart_svg;
/// use agent_profiler_runtime::BottleneckAnalyzer;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("fetch", 30.0).unwrap();
/// assert!(cost_chart_svg(&analyzer.get_summary()).contains("no LLM calls"));
/// ```
pub fn cost_chart_svg(summary: &Summary) -> String {
    let label = "LLM cost per node";
    let mut with_calls: Vec<&NodeTimings> = summary
        .nodes
        .iter()
        .filter(|n| n.llm_calls > 0 || n.cost_usd > 0.0)
        .collect();
    if with_calls.is_empty() {
        return Svg::empty(CHART_WIDTH, "chart cost-chart", label, "no LLM calls");
    }
    with_calls.sort_by(|a, b| {
        b.cost_usd
            .total_cmp(&a.cost_usd)
            .then(b.total_tokens.cmp(&a.total_tokens))
    });
    let without = summary.nodes.len() - with_calls.len();
    let shown = &with_calls[..with_calls.len().min(MAX_CHART_ROWS)];
    let hidden = &with_calls[shown.len()..];
    let max_cost = with_calls
        .iter()
        .map(|n| n.cost_usd)
        .filter(|c| c.is_finite())
        .fold(0.0, f64::max);
    let costliest = summary.costliest_node.as_ref().map(|c| c.node_id.as_str());
    let rows: Vec<Row<'_>> = shown
        .iter()
        .map(|node| {
            let strong = costliest == Some(node.node_id.as_str());
            let share = agent_profiler_runtime::percent(node.cost_usd, summary.total_cost_usd);
            let calls = counted(node.llm_calls, "LLM call");
            let cost = if node.unpriced_calls == node.llm_calls && node.llm_calls > 0 {
                "unpriced".to_owned()
            } else if node.unpriced_calls > 0 {
                format!(
                    "{} + {} unpriced",
                    usd(node.cost_usd),
                    group(node.unpriced_calls)
                )
            } else {
                format!("{} · {}", usd(node.cost_usd), pct(share))
            };
            let title = format!(
                "{}: {} ({} of the cost), {}, {} in, {} out",
                node.node_id,
                usd(node.cost_usd),
                pct(share),
                calls,
                tokens(node.input_tokens),
                tokens(node.output_tokens),
            );
            Row {
                node,
                fraction: if max_cost > 0.0 {
                    node.cost_usd / max_cost
                } else {
                    0.0
                },
                fill: if strong { COSTLIEST_FILL } else { COST_FILL },
                strong,
                value: format!("{cost} · {}", tokens(node.total_tokens)),
                title,
                data: format!(
                    r#" data-node="{}" data-cost-usd="{}" data-tokens="{}""#,
                    esc(&node.node_id),
                    node.cost_usd,
                    node.total_tokens
                ),
                split: None,
            }
        })
        .collect();
    let mut notes = Vec::new();
    if !hidden.is_empty() {
        let rest: f64 = hidden.iter().map(|n| n.cost_usd).sum();
        notes.push(format!(
            "{} more nodes with LLM calls not shown ({} together)",
            group(hidden.len() as u64),
            usd(rest)
        ));
    }
    if without > 0 {
        notes.push(if without == 1 {
            "1 node made no LLM calls".to_owned()
        } else {
            format!("{} nodes made no LLM calls", group(without as u64))
        });
    }
    let mut svg = Svg::new(
        CHART_WIDTH,
        chart_height(COST_TOP, rows.len(), notes.len()),
        "chart cost-chart",
        label,
    );
    let axis: Vec<(f64, String)> = ticks(max_cost, 4)
        .into_iter()
        .filter(|t| max_cost > 0.0 && *t <= max_cost * (1.0 + 1e-9))
        .map(|t| (t / max_cost, usd(t)))
        .collect();
    let axis = if axis.is_empty() {
        vec![(0.0, usd(0.0))]
    } else {
        axis
    };
    let bottom = draw_rows(&mut svg, &rows, &axis, COST_TOP);
    for (i, text) in notes.iter().enumerate() {
        let y = bottom + AXIS_H + 12.0 + i as f64 * NOTE_H;
        svg.note(PLOT_X, y, VALUE_FONT, text);
    }
    svg.finish()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use agent_profiler_runtime::BottleneckAnalyzer;

    fn summary(nodes: &[(&str, f64)]) -> Summary {
        let analyzer = BottleneckAnalyzer::new();
        for (id, ms) in nodes {
            analyzer.record_node(id, *ms).unwrap();
        }
        analyzer.get_summary()
    }

    #[test]
    fn no_nodes_says_so() {
        let svg = share_chart_svg(&summary(&[]));
        assert!(svg.contains("no nodes recorded"));
        assert!(!svg.contains(r#"class="bar""#));
    }

    #[test]
    fn many_nodes_are_capped_and_counted() {
        let names: Vec<String> = (0..200).map(|i| format!("node_{i:03}")).collect();
        let nodes: Vec<(&str, f64)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
        let svg = share_chart_svg(&summary(&nodes));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), MAX_CHART_ROWS);
        assert!(svg.contains("170 more nodes not shown (85.0% of self time together)"));
    }

    /// The boxes of every `<text>` of `svg` as (left, top, right, bottom), from the same
    /// width estimate the charts use.
    pub(crate) fn text_boxes(svg: &str) -> Vec<(f64, f64, f64, f64, String)> {
        let attr = |tag: &str, name: &str| -> Option<String> {
            let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
            let len = tag[start..].find('"')?;
            Some(tag[start..start + len].to_owned())
        };
        let mut boxes = Vec::new();
        for piece in svg.split("<text ").skip(1) {
            let (tag, rest) = piece.split_once('>').unwrap();
            let body = rest.split("</text>").next().unwrap();
            let body = match body.find("</title>") {
                Some(end) => &body[end + "</title>".len()..],
                None => body,
            };
            let content = body
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&");
            let x: f64 = attr(tag, "x").unwrap().parse().unwrap();
            let y: f64 = attr(tag, "y").unwrap().parse().unwrap();
            let mut size: f64 = attr(tag, "font-size").map_or(12.0, |s| s.parse().unwrap());
            if attr(tag, "font-weight").is_some() {
                size *= 1.1;
            }
            let w = text_width(&content, size);
            let left = match attr(tag, "text-anchor").as_deref() {
                Some("middle") => x - w / 2.0,
                Some("end") => x - w,
                _ => x,
            };
            boxes.push((left, y - size * 0.8, left + w, y + size * 0.2, content));
        }
        boxes
    }

    /// No two texts of `svg` overlap, and none leaves the chart.
    pub(crate) fn assert_no_overlap(svg: &str, width: f64) {
        let boxes = text_boxes(svg);
        for (i, a) in boxes.iter().enumerate() {
            assert!(a.0 >= -0.5 && a.2 <= width + 0.5, "{a:?} leaves the chart");
            for b in &boxes[i + 1..] {
                let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn labels_never_overlap() {
        const ESCAPED: &str = "renamed_to_markup";
        let long = "a_node_with_a_very_long_identifier_that_goes_on_and_on/forever".to_owned();
        let wide = "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW".to_owned();
        let names: Vec<String> = (0..200).map(|i| format!("node_{i:03}")).collect();
        let mut cases: Vec<Vec<(&str, f64)>> = vec![
            vec![("only", 5.0)],
            vec![(long.as_str(), 99.0), (wide.as_str(), 1.0), (ESCAPED, 0.5)],
            vec![("a", 0.0), ("b", 0.0)],
        ];
        cases.push(names.iter().map(|n| (n.as_str(), 1.0)).collect());
        for nodes in &cases {
            let analyzer = BottleneckAnalyzer::new();
            for (id, ms) in nodes {
                analyzer.record_node(id, *ms).unwrap();
            }
            for threshold in [0.0, 3.0, 50.0, 97.0, 100.0, 250.0] {
                let mut summary = analyzer.get_summary_with_threshold(threshold);
                // A label that needs escaping: node ids cannot hold `<&>` (the analyzer refuses
                // them), but a summary read back from JSON can.
                for node in &mut summary.nodes {
                    if node.node_id == ESCAPED {
                        node.node_id = "<&>".to_owned();
                    }
                }
                assert_no_overlap(&share_chart_svg(&summary), CHART_WIDTH);
                // Costs of very different sizes, some unpriced.
                for (i, node) in summary.nodes.iter_mut().enumerate() {
                    node.llm_calls = 1 + i as u64 % 3;
                    node.unpriced_calls = u64::from(i % 4 == 3);
                    node.cost_usd = 10f64.powi(-(i as i32 % 7)) * 1.234_567;
                    node.total_tokens = 1_234_567 * i as u64;
                }
                summary.total_cost_usd = summary.nodes.iter().map(|n| n.cost_usd).sum();
                assert_no_overlap(&cost_chart_svg(&summary), CHART_WIDTH);
            }
        }
    }

    #[test]
    fn a_node_with_timed_llm_calls_has_its_bar_split_into_llm_and_own_time() {
        let mut summary = summary(&[("analyze", 300.0), ("plan", 100.0)]);
        let analyze = &mut summary.nodes[0];
        analyze.llm_calls = 2;
        analyze.llm_time_ms = 240.0;
        analyze.own_time_ms = 60.0;
        analyze.streamed_calls = 1;
        analyze.ttft_p50_ms = Some(120.0);
        analyze.ttft_p95_ms = Some(120.0);
        let svg = share_chart_svg(&summary);
        // Only the node with timed calls is split; every node keeps its whole bar.
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 2);
        assert_eq!(svg.matches(r#"<rect class="bar-llm""#).count(), 1);
        assert_eq!(svg.matches(r#"<rect class="bar-own""#).count(), 1);
        // 75% of self time, 80% of it LLM: 0.75 × 0.8 × 430 px, then the rest.
        assert!(
            svg.contains(r#"<rect class="bar-llm" x="200" y="34" width="258" "#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"<rect class="bar-own" x="458" y="34" width="64.5" "#),
            "{svg}"
        );
        assert!(svg.contains(
            "analyze: LLM time 240 ms (80.0% of self time, 2 LLM calls); time to first token \
             p50 120 ms, p95 120 ms over 1 streamed call"
        ));
        assert!(svg.contains("analyze: own time 60.0 ms (20.0% of self time)"));
        assert!(svg.contains("75.0% · 300 ms · LLM 240 ms"));
        assert!(svg.contains("dark part: LLM time"));
        assert_no_overlap(&svg, CHART_WIDTH);
    }

    #[test]
    fn zero_durations_draw_empty_bars() {
        let svg = share_chart_svg(&summary(&[("a", 0.0), ("b", 0.0)]));
        assert_eq!(svg.matches(r#"width="0""#).count(), 2);
        assert!(svg.contains("0.0% · 0 ms"));
    }
}
