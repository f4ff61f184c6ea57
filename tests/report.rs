//! The HTML report: its SVG charts checked against the data they draw (parsed as XML),
//! escaping of node ids, odd sizes (0, 1, 200 nodes, zero durations), the example
//! workflow's report, and a render in headless Chromium that must not be blank.

mod support {
    pub mod nested;
    pub mod scratch;
}

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler::executor::{Console, WorkflowConfig, WorkflowError, WorkflowExecutor};
use agent_profiler::llm::SimulatedClient;
use agent_profiler::report::{
    MAX_CHART_ROWS, ReportInput, cost_chart_svg, render_html, share_chart_svg, timeline_svg,
    write_html,
};
use agent_profiler::trace::Trace;
use agent_profiler::{BottleneckAnalyzer, ProfilerFutureExt, ProfilerScope, Summary, profile_node};
use roxmltree::{Document, Node};

const SVG_NS: &str = "http://www.w3.org/2000/svg";

/// An SVG document or the whole HTML page (written as well-formed XML, `<!DOCTYPE html>`
/// aside), parsed.
fn parse(text: &str) -> Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    Document::parse_with_options(text, options)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}):\n{text}"))
}

/// The elements named `tag` whose class list holds `class`.
fn elements<'a, 'i>(doc: &'a Document<'i>, tag: &str, class: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.has_tag_name((SVG_NS, tag)))
        .filter(|n| {
            n.attribute("class")
                .is_some_and(|c| c.split_whitespace().any(|c| c == class))
        })
        .collect()
}

fn num(node: Node<'_, '_>, attr: &str) -> f64 {
    node.attribute(attr)
        .unwrap_or_else(|| panic!("no {attr} on {node:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{attr} of {node:?}: {e}"))
}

/// The tooltip of an element (its `<title>` child).
fn title(node: Node<'_, '_>) -> Option<String> {
    node.children()
        .find(|c| c.has_tag_name((SVG_NS, "title")))
        .and_then(|t| t.text())
        .map(str::to_owned)
}

/// The plot's left edge and width, from the background tracks of the bars.
fn plot(doc: &Document<'_>) -> (f64, f64) {
    let track = elements(doc, "rect", "track")
        .into_iter()
        .next()
        .expect("a track");
    (num(track, "x"), num(track, "width"))
}

fn share(summary: &Summary, node_id: &str) -> f64 {
    let node = summary.node(node_id).unwrap();
    node.self_duration_ms * 100.0 / summary.total_time_ms
}

fn analyzer_with(nodes: &[(&str, f64)]) -> BottleneckAnalyzer {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(1024);
    for (id, ms) in nodes {
        analyzer.record_node(id, *ms).unwrap();
    }
    analyzer
}

/// One bar per node, widest first, widths proportional to the shares, the threshold line
/// where the threshold is, bottlenecks in their own colour.
fn check_share_chart(summary: &Summary) {
    let svg = share_chart_svg(summary);
    let doc = parse(&svg);
    let (x0, width) = plot(&doc);
    let bars = elements(&doc, "rect", "bar");
    assert_eq!(bars.len(), summary.nodes.len().min(MAX_CHART_ROWS));
    let mut seen = HashSet::new();
    let bottlenecks: HashSet<&str> = summary
        .bottlenecks
        .iter()
        .map(|b| b.node_id.as_str())
        .collect();
    let mut last_width = f64::INFINITY;
    let mut fills = (HashSet::new(), HashSet::new());
    for bar in &bars {
        let node = bar.attribute("data-node").unwrap();
        assert!(seen.insert(node.to_owned()), "two bars for {node}");
        assert_eq!(num(*bar, "x"), x0);
        let expected = share(summary, node) / 100.0 * width;
        let w = num(*bar, "width");
        assert!(
            (w - expected).abs() <= 0.5,
            "{node}: width {w}, share {}",
            share(summary, node)
        );
        assert!(w <= last_width + 0.5, "bars are widest first");
        last_width = w;
        let is_bottleneck = bottlenecks.contains(node);
        assert_eq!(
            bar.attribute("data-bottleneck"),
            Some(if is_bottleneck { "true" } else { "false" })
        );
        let fill = bar.attribute("fill").unwrap().to_owned();
        if is_bottleneck {
            fills.0.insert(fill);
        } else {
            fills.1.insert(fill);
        }
        let tip = title(*bar).expect("a tooltip");
        assert!(tip.starts_with(node) && tip.contains(" ms") && tip.contains('%'));
    }
    assert!(fills.0.is_disjoint(&fills.1), "bottlenecks stand out");
    assert!(fills.0.len() <= 1 && fills.1.len() <= 1);

    let lines = elements(&doc, "line", "threshold");
    assert_eq!(lines.len(), 1);
    let expected_x = x0 + summary.threshold_percent.clamp(0.0, 100.0) / 100.0 * width;
    assert!((num(lines[0], "x1") - expected_x).abs() <= 0.5);
    assert_eq!(num(lines[0], "x1"), num(lines[0], "x2"));
    let label = elements(&doc, "text", "threshold-label");
    assert_eq!(label.len(), 1);
    assert!(
        label[0]
            .text()
            .unwrap()
            .starts_with("bottleneck threshold ")
    );
}

#[test]
fn share_chart_draws_one_bar_per_node_proportional_to_its_share() {
    let analyzer = analyzer_with(&[("fetch", 50.0), ("think", 450.0), ("write", 120.5)]);
    let summary = analyzer.get_summary();
    check_share_chart(&summary);
    let svg = share_chart_svg(&summary);
    assert!(svg.contains("bottleneck threshold 50%"));
    assert!(svg.contains("72.5% · 450 ms"), "{svg}");

    // Another threshold moves the line; with nothing above it, no bar is strong.
    check_share_chart(&analyzer.get_summary_with_threshold(80.0));
    check_share_chart(&analyzer.get_summary_with_threshold(12.5));
    assert!(
        share_chart_svg(&analyzer.get_summary_with_threshold(12.5))
            .contains("bottleneck threshold 12.5%")
    );
}

#[test]
fn share_chart_uses_self_time_of_nested_nodes() {
    let analyzer = BottleneckAnalyzer::new();
    {
        let _scope = ProfilerScope::new(&analyzer);
        support::nested::outer();
    }
    let summary = analyzer.get_summary();
    assert_eq!(summary.nodes.len(), 2);
    check_share_chart(&summary);
}

#[test]
fn odd_sizes_render() {
    // No node at all.
    let empty = BottleneckAnalyzer::new().get_summary();
    for svg in [share_chart_svg(&empty), cost_chart_svg(&empty)] {
        let doc = parse(&svg);
        assert!(elements(&doc, "rect", "bar").is_empty());
    }
    assert!(share_chart_svg(&empty).contains("no nodes recorded"));
    assert!(cost_chart_svg(&empty).contains("no LLM calls"));
    assert!(timeline_svg(&Trace::default()).contains("no spans in the trace"));
    let html = render_html(&ReportInput::new("empty", &empty));
    assert!(html.contains("Nothing was recorded."));
    parse(&html);

    // One node: 100%, a bottleneck.
    let one = analyzer_with(&[("only", 3.0)]);
    let summary = one.get_summary();
    check_share_chart(&summary);
    assert!(share_chart_svg(&summary).contains(r#"data-bottleneck="true""#));

    // Zero durations: bars of no width, nothing is a bottleneck, nothing is NaN.
    let zero = analyzer_with(&[("a", 0.0), ("b", 0.0)]);
    let summary = zero.get_summary();
    let trace = zero.trace().unwrap();
    let html = render_html(&ReportInput::new("zero", &summary).with_trace(&trace));
    assert!(!html.contains("NaN") && !html.contains("inf"));
    let svg = share_chart_svg(&summary);
    let doc = parse(&svg);
    for bar in elements(&doc, "rect", "bar") {
        assert_eq!(num(bar, "width"), 0.0);
    }
    let svg = timeline_svg(&trace);
    let doc = parse(&svg);
    assert_eq!(elements(&doc, "rect", "span").len(), 2);

    // 200 nodes: the chart keeps its rows and says how many it left out.
    let names: Vec<String> = (0..200).map(|i| format!("step_{i:03}")).collect();
    let analyzer = BottleneckAnalyzer::new();
    for (i, name) in names.iter().enumerate() {
        analyzer.record_node(name, 1.0 + i as f64).unwrap();
    }
    let summary = analyzer.get_summary();
    check_share_chart(&summary);
    let svg = share_chart_svg(&summary);
    assert!(svg.contains(&format!("{} more nodes not shown", 200 - MAX_CHART_ROWS)));
    let html = render_html(&ReportInput::new("many", &summary));
    assert!(html.contains("step_000") && html.contains("step_199"));
    parse(&html);
}

#[test]
fn long_ids_are_cut_with_an_ellipsis_and_kept_whole_in_the_tooltip() {
    let long = format!("retrieve_{}", "very_long_segment_".repeat(8));
    let analyzer = analyzer_with(&[(long.as_str(), 20.0), ("b", 10.0)]);
    let doc_text = share_chart_svg(&analyzer.get_summary());
    let doc = parse(&doc_text);
    let label = elements(&doc, "text", "label")
        .into_iter()
        .find(|t| title(*t).as_deref() == Some(long.as_str()))
        .expect("the cut label carries the full id");
    let shown: String = label
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    assert!(shown.ends_with('…') && shown.len() < long.len());
    assert!(long.starts_with(shown.trim_end_matches('…')));
}

/// `value` with every string equal to a stand-in replaced by the id beside it.
fn rename(value: &mut serde_json::Value, renames: &[(&str, &str)]) {
    match value {
        serde_json::Value::String(s) => {
            if let Some((_, id)) = renames.iter().find(|(stand_in, _)| s == stand_in) {
                *s = (*id).to_owned();
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| rename(v, renames)),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(|v| rename(v, renames)),
        _ => {}
    }
}

#[test]
fn node_ids_are_escaped_everywhere() {
    let nasty = r#"<script>alert("x")</script> & 'co'"#;
    // The analyzer refuses such ids when they are recorded; a summary and a trace read from
    // elsewhere (JSON from a run store, or built by hand) may still hold them. Recorded
    // under stand-in ids, renamed in JSON.
    let analyzer = analyzer_with(&[("stand_in_nasty", 30.0), ("stand_in_amp", 10.0)]);
    let renames = [("stand_in_nasty", nasty), ("stand_in_amp", "a&b")];
    let mut summary = serde_json::to_value(analyzer.get_summary()).unwrap();
    rename(&mut summary, &renames);
    let summary: Summary = serde_json::from_value(summary).unwrap();
    let mut trace = serde_json::to_value(analyzer.trace().unwrap()).unwrap();
    rename(&mut trace, &renames);
    let trace: Trace = serde_json::from_value(trace).unwrap();
    let html = render_html(&ReportInput {
        run_id: Some("<run&id>"),
        workflow: Some("<wf>"),
        status: Some("<b>failed</b>"),
        ..ReportInput::new("<title> & co", &summary).with_trace(&trace)
    });
    assert!(!html.contains("<script"), "raw script tag in the report");
    assert!(!html.contains("<b>") && !html.contains("<wf>") && !html.contains("<run&"));
    assert!(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;co&#39;"));
    // The whole page is well-formed XML, and the ids read back as they were.
    let doc = parse(&html);
    let ids: HashSet<&str> = doc
        .descendants()
        .filter_map(|n| n.attribute("data-node"))
        .collect();
    assert!(ids.contains(nasty) && ids.contains("a&b"));
    for svg in [share_chart_svg(&summary), timeline_svg(&trace)] {
        let doc = parse(&svg);
        assert!(
            doc.descendants()
                .any(|n| n.attribute("data-node") == Some(nasty))
        );
    }
}

#[profile_node("tl_plan")]
fn plan() {
    std::thread::sleep(Duration::from_millis(4));
}

#[profile_node("tl_fetch")]
async fn fetch(ms: u64) -> usize {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    parse_page();
    tokio::time::sleep(Duration::from_millis(2)).await;
    ms as usize
}

#[profile_node("tl_parse")]
fn parse_page() {
    std::thread::sleep(Duration::from_millis(3));
}

#[profile_node("tl_flow")]
async fn flow() -> usize {
    plan();
    let (a, b) = tokio::join!(fetch(10), fetch(25));
    let c = tokio::spawn(fetch(5).in_current_profiler()).await.unwrap();
    a + b + c
}

/// On a multi-thread runtime, as a real workflow runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_draws_every_span_at_its_time() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(4096);
    flow().with_profiler(analyzer.clone()).await;
    let trace = analyzer.trace().unwrap();
    assert!(trace.spans.len() >= 8, "{} spans", trace.spans.len());
    assert!(!trace.polls.is_empty());

    let svg = timeline_svg(&trace);
    let doc = parse(&svg);
    let axis = elements(&doc, "line", "axis")[0];
    let (x0, x1) = (num(axis, "x1"), num(axis, "x2"));
    let (t0, t1) = trace.bounds().unwrap();
    let t0 = t0.min(trace.polls.iter().map(|p| p.start_unix_ns).min().unwrap());
    let t1 = t1.max(trace.polls.iter().map(|p| p.end_unix_ns).max().unwrap());
    let x_of = |t: u64| x0 + (t - t0) as f64 / (t1 - t0) as f64 * (x1 - x0);

    let spans = elements(&doc, "rect", "span");
    assert_eq!(spans.len(), trace.spans.len(), "one rect per span");
    let mut indices = HashSet::new();
    let mut span_rect = std::collections::HashMap::new();
    for rect in &spans {
        let i: usize = rect.attribute("data-span").unwrap().parse().unwrap();
        assert!(indices.insert(i));
        let span = &trace.spans[i];
        assert_eq!(rect.attribute("data-node"), Some(&*span.node_id));
        // At least 1 px wide, and inside the plot.
        let w = (x_of(span.end_unix_ns) - x_of(span.start_unix_ns)).max(1.0);
        let x = x_of(span.start_unix_ns).min(x1 - w);
        assert!((num(*rect, "x") - x).abs() <= 0.5);
        assert!((num(*rect, "width") - w).abs() <= 0.5);
        let tip = title(*rect).unwrap();
        assert!(tip.starts_with(&*span.node_id) && tip.contains(" ms") && tip.contains("ok"));
        if span.is_async {
            assert!(tip.contains("busy"));
        }
        span_rect.insert(span.span_id, *rect);
    }
    // Polls: one rect each, inside their span's bar.
    let polls = elements(&doc, "rect", "poll");
    assert_eq!(polls.len(), trace.polls.len());
    for rect in polls {
        let i: usize = rect.attribute("data-poll").unwrap().parse().unwrap();
        let poll = &trace.polls[i];
        let span = span_rect[&poll.span_id];
        let (px, pw) = (num(rect, "x"), num(rect, "width"));
        assert!(px + 0.5 >= num(span, "x"));
        assert!(
            px + pw <= num(span, "x") + num(span, "width").max(pw) + 0.5,
            "poll {px}+{pw} outside span {}+{}: {poll:?} {:?}",
            num(span, "x"),
            num(span, "width"),
            trace.spans.iter().find(|s| s.span_id == poll.span_id)
        );
        let (py, sy) = (num(rect, "y"), num(span, "y"));
        assert!(py > sy && py + num(rect, "height") < sy + num(span, "height"));
    }
    // Ticks carry units.
    for tick in elements(&doc, "text", "tick-label") {
        assert!(tick.text().unwrap().ends_with(" ms"));
    }
}

fn research_config() -> WorkflowConfig {
    WorkflowConfig::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/workflows/research.json"
    ))
    .unwrap()
}

/// A simulated LLM fast enough for tests (the analysis, asking for the longest answer,
/// stays the slowest node).
fn fast_client() -> Arc<SimulatedClient> {
    Arc::new(
        SimulatedClient::new()
            .base_latency(Duration::from_millis(2))
            .per_token_latency(Duration::from_micros(40)),
    )
}

/// The example workflow (examples/workflows/research.json) on a fast simulated LLM.
async fn research_run() -> agent_profiler::executor::WorkflowRun {
    let executor = WorkflowExecutor::new(fast_client()).console(Console::Silent);
    let inputs = serde_json::json!({ "topic": "report tests" });
    match executor.run_config(&research_config(), inputs).await {
        Ok(run) => run,
        Err(WorkflowError::Failed(run)) => panic!("run failed: {:?}", run.failure),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_workflow_report() {
    let run = research_run().await;
    let summary = &run.summary;
    assert_eq!(summary.nodes.len(), 5);
    check_share_chart(summary);

    // Cost: one bar per node with LLM calls (all five), proportional to the cost.
    let svg = cost_chart_svg(summary);
    let doc = parse(&svg);
    let (_, width) = plot(&doc);
    let bars = elements(&doc, "rect", "bar");
    assert_eq!(bars.len(), 5);
    let max = summary.nodes.iter().map(|n| n.cost_usd).fold(0.0, f64::max);
    assert!(max > 0.0);
    for bar in bars {
        let node = bar.attribute("data-node").unwrap();
        let cost = summary.node(node).unwrap().cost_usd;
        assert!(
            (num(bar, "width") - cost / max * width).abs() <= 0.5,
            "{node}"
        );
        assert_eq!(num(bar, "data-cost-usd"), cost);
    }
    assert!(svg.contains('$') && svg.contains("tokens"));

    let html = render_html(&run.report_input("Research"));
    parse(&html);
    assert!(html.contains(&format!("<code>{}</code>", run.record.id)));
    assert!(html.contains("completed") && html.contains("research"));
    // The executor's trace mode is on: the timeline draws every span of the run.
    let trace = run.trace.as_ref().expect("the executor keeps a trace");
    assert_eq!(trace.spans.len(), 5);
    assert!(!html.contains("trace mode was off"));
    assert_eq!(html.matches(r#"<rect class="span""#).count(), 5);
    // Nothing fetched: the only URL is the SVG namespace, no script, no link, no source.
    assert_eq!(html.matches("http").count(), html.matches(SVG_NS).count());
    for tag in ["<script", "<link", "<img", "<iframe", "src=", "url("] {
        assert!(!html.contains(tag), "{tag} in the report");
    }
}

// --- headless Chromium -----------------------------------------------------------------

/// Chromium: `$CHROMIUM_BIN`, else `chromium` or `chromium-browser` on the usual paths.
fn find_chromium() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("CHROMIUM_BIN").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(bin));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Screenshots `html` into `png` at 1200×1600; `Err` with Chromium's output on failure.
fn screenshot(chromium: &Path, html: &Path, png: &Path, dir: &Path) -> Result<(), String> {
    let profile = dir.join("profile");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,1600")
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("chromium.log")).unwrap(),
        ))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "chromium did not finish within 90 s: {}",
                std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() || !png.exists() {
        return Err(format!(
            "chromium {status}, screenshot {}: {}",
            if png.exists() { "written" } else { "missing" },
            std::fs::read_to_string(dir.join("chromium.log")).unwrap_or_default()
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_renders_the_report() {
    let Some(chromium) = find_chromium() else {
        let msg = "chromium not found (set CHROMIUM_BIN or install Debian's `chromium`; \
                   scripts/test installs it where it can)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipped: {msg}");
        return;
    };
    // The example workflow (trace mode on: all three charts are drawn).
    let run = research_run().await;
    assert!(run.summary.llm_calls == 5 && !run.summary.bottlenecks.is_empty());
    assert!(run.trace.is_some() && run.summary.critical_path.is_some());

    let dir = support::scratch::temp_dir("agent-profiler-report");
    let html = dir.join("report.html");
    let png_path = dir.join("report.png");
    write_html(&run.report_input("Report in Chromium"), &html).unwrap();
    let result = screenshot(&chromium, &html, &png_path, &dir);
    if let Err(e) = &result {
        let _ = std::fs::remove_dir_all(&dir);
        panic!("{e}");
    }

    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!((info.width, info.height), (1200, 1600));
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels: Vec<[u8; 3]> = buf[..info.buffer_size()]
        .chunks_exact(channels)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    let colours: HashSet<[u8; 3]> = pixels.iter().copied().collect();
    let not_white = pixels.iter().filter(|p| p.iter().any(|c| *c < 235)).count();
    let share = not_white as f64 / pixels.len() as f64;
    assert!(colours.len() >= 50, "only {} colours", colours.len());
    assert!(
        share > 0.03,
        "{:.1}% of the pixels are not white",
        share * 100.0
    );
    // The bottleneck's bar colour (#d1495b) is on the page.
    let strong = pixels.iter().filter(|p| **p == [0xd1, 0x49, 0x5b]).count();
    assert!(strong > 200, "{strong} pixels of the bottleneck colour");
    // The critical path's colour (#f08c00): the verdict's edge, the rings, the legend.
    let critical = pixels.iter().filter(|p| **p == [0xf0, 0x8c, 0x00]).count();
    assert!(
        critical > 200,
        "{critical} pixels of the critical path's colour"
    );
}

/// A node that waits on two concurrent LLM calls (one streamed) and then works on its own,
/// and a node without timed calls.
#[test]
fn share_bars_split_into_llm_and_own_time_as_measured() {
    use agent_profiler::{MultiProviderCostTracker, cost::Usage, profile_call};

    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let call = |stream: bool, ms: u64| {
        let tracker = tracker.clone();
        async move {
            let call = tracker.start_call("openai", "gpt-4o-mini");
            call.set_stream(stream);
            tokio::time::sleep(Duration::from_millis(ms / 2)).await;
            call.first_chunk();
            tokio::time::sleep(Duration::from_millis(ms / 2)).await;
            call.finish(Usage::new(100, 20)).unwrap();
        }
    };
    let node = profile_call("answer", async {
        // 30 ms of LLM time, not 50: the calls overlap.
        tokio::join!(call(true, 30), call(false, 20));
        std::thread::sleep(Duration::from_millis(15));
    });
    rt.block_on(node.with_profiler(analyzer.clone()));
    analyzer.record_node("tidy", 10.0).unwrap();
    let summary = analyzer.get_summary();
    let answer = summary.node("answer").unwrap();
    assert!(
        answer.llm_time_ms >= 30.0 && answer.llm_time_ms < 45.0,
        "{answer:?}"
    );
    assert!(answer.own_time_ms >= 15.0, "{answer:?}");

    let svg = share_chart_svg(&summary);
    let doc = parse(&svg);
    let bar = |class: &str| {
        let found = elements(&doc, "rect", class);
        assert_eq!(found.len(), 1, "one {class}, for `answer` only");
        found[0]
    };
    let (whole, llm, own) = (
        elements(&doc, "rect", "bar")
            .into_iter()
            .find(|b| b.attribute("data-node") == Some("answer"))
            .unwrap(),
        bar("bar-llm"),
        bar("bar-own"),
    );
    // The two parts tile the whole bar, in proportion to LLM and own time.
    let width = num(whole, "width");
    assert_eq!(num(llm, "x"), num(whole, "x"));
    assert!((num(llm, "x") + num(llm, "width") - num(own, "x")).abs() < 0.01);
    assert!((num(llm, "width") + num(own, "width") - width).abs() < 0.01);
    let expected = width * answer.llm_time_ms / answer.self_duration_ms;
    assert!((num(llm, "width") - expected).abs() <= 0.5, "{svg}");
    assert_ne!(llm.attribute("fill"), own.attribute("fill"));
    let llm_tip = title(llm).unwrap();
    assert!(llm_tip.starts_with("answer: LLM time "), "{llm_tip}");
    assert!(llm_tip.contains("2 LLM calls"), "{llm_tip}");
    assert!(llm_tip.contains("time to first token p50 "), "{llm_tip}");
    assert!(title(own).unwrap().starts_with("answer: own time "));
    assert_eq!(
        num(whole, "data-llm-ms"),
        answer.llm_time_ms,
        "the bar keeps the figures"
    );
    let page = render_html(&ReportInput::new("split", &summary));
    parse(&page);
    assert!(page.contains("own time: self time less LLM time"));
}

// --- the critical path -------------------------------------------------------------------

/// The page's HTML elements named `tag` (the page has no namespace of its own; the SVG's
/// elements are in theirs).
fn html_elements<'a, 'i>(doc: &'a Document<'i>, tag: &str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == tag)
        .filter(|n| n.tag_name().namespace() != Some(SVG_NS))
        .collect()
}

fn has_class(node: Node<'_, '_>, class: &str) -> bool {
    node.attribute("class")
        .is_some_and(|c| c.split_whitespace().any(|c| c == class))
}

/// All the text under `node`, a `<br/>` read as a line break.
fn text_of(node: Node<'_, '_>) -> String {
    node.descendants()
        .filter_map(|n| {
            if n.is_text() {
                n.text().map(str::to_owned)
            } else if n.is_element() && n.tag_name().name() == "br" {
                Some("\n".to_owned())
            } else {
                None
            }
        })
        .collect()
}

/// Three searches side by side with a longer think step: `search` takes most of the time (a
/// bottleneck by share) but `think` decides the wall time. `think` waits on an LLM call,
/// then works on its own.
fn concurrent_search_run() -> BottleneckAnalyzer {
    use agent_profiler::{MultiProviderCostTracker, cost::Usage, profile_call};

    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(1024);
    let tracker = MultiProviderCostTracker::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let search = || {
        profile_call("search", async {
            tokio::time::sleep(Duration::from_millis(30)).await;
        })
    };
    let think = profile_call("think", async {
        let call = tracker.start_call("openai", "gpt-4o-mini");
        tokio::time::sleep(Duration::from_millis(30)).await;
        call.finish(Usage::new(100, 20)).unwrap();
        tokio::time::sleep(Duration::from_millis(15)).await;
    });
    let flow = profile_call("flow", async {
        tokio::join!(search(), search(), search(), think);
    });
    rt.block_on(flow.with_profiler(analyzer.clone()));
    analyzer
}

#[test]
fn report_rings_the_critical_path_and_tables_its_what_if_figures() {
    let analyzer = concurrent_search_run();
    let summary = analyzer.get_summary();
    let trace = analyzer.trace().unwrap();
    let path = summary
        .critical_path
        .as_ref()
        .expect("trace mode gives a path");
    let on_path: HashSet<&str> = path.path.iter().map(|c| c.node_id.as_str()).collect();
    assert!(
        on_path.contains("think") && !on_path.contains("search"),
        "{path:?}"
    );
    assert_eq!(
        summary
            .bottlenecks
            .iter()
            .map(|b| b.node_id.as_str())
            .collect::<Vec<_>>(),
        ["search"],
        "{summary:?}"
    );
    let html = render_html(&ReportInput::new("critical", &summary).with_trace(&trace));
    let doc = parse(&html);

    // The timeline: exactly the path's spans are marked and ringed.
    let path_spans: HashSet<u64> = path.path.iter().map(|c| c.call.unwrap()).collect();
    let span_of = |rect: Node<'_, '_>| {
        let i: usize = rect.attribute("data-span").unwrap().parse().unwrap();
        trace.spans[i].span_id
    };
    let spans = elements(&doc, "rect", "span");
    assert_eq!(spans.len(), trace.spans.len());
    let marked: HashSet<u64> = spans
        .iter()
        .filter(|r| r.attribute("data-critical") == Some("true"))
        .map(|r| span_of(*r))
        .collect();
    assert_eq!(marked, path_spans);
    let rings: Vec<u64> = elements(&doc, "rect", "critical")
        .into_iter()
        .map(span_of)
        .collect();
    assert_eq!(rings.len(), path_spans.len());
    assert_eq!(rings.into_iter().collect::<HashSet<_>>(), path_spans);
    // Off the path, the tooltip gives the slack; on it, says so.
    for rect in &spans {
        let tip = title(*rect).unwrap();
        let id = span_of(*rect);
        match path.off_path.iter().find(|c| c.call == Some(id)) {
            Some(off) => {
                assert!(!path_spans.contains(&id));
                assert!(
                    tip.contains(&format!(
                        "off the critical path, slack {:.1} ms",
                        off.slack_ms
                    )),
                    "{tip}"
                );
            }
            None => assert!(tip.contains("on the critical path"), "{tip}"),
        }
    }
    assert_eq!(path.off_path.len(), 3, "the three searches");
    assert!(html.contains("critical path: the calls that decided the wall time"));

    // The what-if table: one row per node, in the summary's order, with its figures.
    let table = html_elements(&doc, "table")
        .into_iter()
        .find(|t| has_class(*t, "what-if"))
        .expect("a what-if table");
    let rows: Vec<Node<'_, '_>> = table
        .descendants()
        .filter(|n| n.has_tag_name("tr") && n.attribute("data-node").is_some())
        .collect();
    assert_eq!(rows.len(), path.what_if.len());
    let raw = |row: Node<'_, '_>, attr: &str| -> Option<f64> {
        let v = row.attribute(attr).unwrap();
        (!v.is_empty()).then(|| v.parse().unwrap())
    };
    for (row, what) in rows.iter().zip(&path.what_if) {
        assert_eq!(row.attribute("data-node"), Some(what.node_id.as_str()));
        assert_eq!(
            row.attribute("data-on-path"),
            Some(&*what.on_path.to_string())
        );
        assert_eq!(raw(*row, "data-duration-ms"), Some(what.duration_ms));
        assert_eq!(
            raw(*row, "data-faster-saves-ms"),
            Some(what.faster_saves_ms)
        );
        assert_eq!(
            raw(*row, "data-removed-saves-ms"),
            Some(what.removed_saves_ms)
        );
        assert_eq!(
            raw(*row, "data-llm-faster-saves-ms"),
            what.llm_faster_saves_ms
        );
        assert_eq!(
            raw(*row, "data-own-faster-saves-ms"),
            what.own_faster_saves_ms
        );
        let cells: Vec<String> = row
            .children()
            .filter(|c| c.has_tag_name("td"))
            .map(text_of)
            .collect();
        assert_eq!(cells.len(), 7);
        assert_eq!(cells[0], what.node_id);
        assert_eq!(cells[1], if what.on_path { "yes" } else { "no" });
        for (cell, value) in [
            (&cells[2], Some(what.duration_ms)),
            (&cells[3], Some(what.faster_saves_ms)),
            (&cells[4], Some(what.removed_saves_ms)),
            (&cells[5], what.llm_faster_saves_ms),
            (&cells[6], what.own_faster_saves_ms),
        ] {
            match value {
                Some(0.0) => assert_eq!(cell, "0 ms"),
                Some(v) => {
                    let shown: f64 = cell
                        .trim_end_matches(" ms")
                        .replace(',', "")
                        .parse()
                        .unwrap();
                    assert!((shown - v).abs() <= 0.05 * v.max(1.0), "{cell} for {v}");
                }
                None => assert_eq!(cell, "–"),
            }
        }
    }
    let think = path.what_if_for("think").unwrap();
    assert!(think.on_path && think.llm_faster_saves_ms.is_some());
    assert!(!path.what_if_for("search").unwrap().on_path);
    assert!(html.contains("<th>2× faster saves</th>") && html.contains("<th>model 2× saves</th>"));

    // The path as text, and the calls off it with their slack.
    let path_line = html_elements(&doc, "p")
        .into_iter()
        .find(|p| has_class(*p, "path"))
        .unwrap();
    assert_eq!(text_of(path_line), path.path_text().replace(" -> ", " → "));
    let off: Vec<(String, f64)> = html_elements(&doc, "table")
        .into_iter()
        .find(|t| has_class(*t, "off-path"))
        .unwrap()
        .descendants()
        .filter(|n| n.has_tag_name("tr") && n.attribute("data-node").is_some())
        .map(|r| {
            (
                r.attribute("data-node").unwrap().to_owned(),
                r.attribute("data-slack-ms").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, f64)> = path
        .off_path
        .iter()
        .map(|c| (c.node_id.clone(), c.slack_ms))
        .collect();
    assert_eq!(off, expected);

    // The verdict leads with the shared wording: the node whose speed-up saves the most,
    // and the bottleneck by share that is off the path.
    let verdict = path.verdict(&summary.bottlenecks);
    assert!(
        verdict.starts_with("speeding up think saves the most"),
        "{verdict}"
    );
    assert!(verdict.contains("search is a bottleneck"), "{verdict}");
    let shown = html_elements(&doc, "p")
        .into_iter()
        .find(|p| has_class(*p, "verdict") && has_class(*p, "critical"))
        .map(text_of)
        .expect("the critical path's verdict");
    assert_eq!(shown, verdict.replace("\n  ", " "));
    let header = html_elements(&doc, "header")[0];
    let first = header.children().find(|c| c.has_tag_name("p")).unwrap();
    assert!(has_class(first, "critical"), "the verdict comes first");
}

#[test]
fn report_without_a_critical_path_is_as_before() {
    // No trace mode: no path, no timeline.
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("fetch", 50.0).unwrap();
    analyzer.record_node("think", 450.0).unwrap();
    let summary = analyzer.get_summary();
    assert!(summary.critical_path.is_none());
    let html = render_html(&ReportInput::new("plain", &summary));
    parse(&html);
    let old_verdict =
        "<p class=\"verdict\">Bottleneck: <strong class=\"bottleneck\">think</strong>";
    assert!(html.contains(old_verdict), "{html}");
    for added in [
        "verdict critical",
        "critical-path",
        "Critical path",
        "what-if",
        "off-path",
        "data-critical",
        "class=\"ring\"",
    ] {
        assert!(!html.contains(added), "{added} in a report without a path");
    }

    // A trace without a path (a summary from elsewhere): the timeline as it was.
    let traced = concurrent_search_run();
    let mut summary = traced.get_summary();
    let trace = traced.trace().unwrap();
    let with_path = render_html(&ReportInput::new("t", &summary).with_trace(&trace));
    summary.critical_path = None;
    let html = render_html(&ReportInput::new("t", &summary).with_trace(&trace));
    let doc = parse(&html);
    assert!(elements(&doc, "rect", "critical").is_empty());
    for added in [
        "verdict critical",
        "critical-path",
        "data-critical",
        "critical path",
    ] {
        assert!(!html.contains(added), "{added} in a report without a path");
    }
    assert!(html.contains("<p class=\"verdict\">Bottleneck: "));
    // The same page, less what the path adds.
    assert!(with_path.len() > html.len());
    assert_eq!(
        elements(&doc, "rect", "span").len(),
        elements(&parse(&with_path), "rect", "span").len()
    );
}
