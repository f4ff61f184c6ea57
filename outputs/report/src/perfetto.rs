//! A [`Trace`] as Chrome Trace Event JSON, the format that [Perfetto](https://ui.perfetto.dev)
//! and `chrome://tracing` open.
//!
//! Each lane of the trace's [`layout`](crate::layout::layout) becomes a thread track (`tid` = lane index + 1, named
//! by a `thread_name` metadata event), and each span or poll slice a complete event
//! (`"ph": "X"`) on it, so nested calls nest, concurrent calls sit on tracks of their own,
//! and the poll slices of an async call (`"poll"`) sit under its wall-time slice: busy time
//! within wall time. Times are microseconds from the earliest span or poll. Each node's
//! event carries its outcome, span ids, thread, wall, busy and idle time, and the tokens and
//! cost of its LLM calls in `args`; `otherData` holds the trace id and what did not fit in
//! the buffer. Each timed LLM call is a slice of its own (`"cat": "llm"`, named
//! `chat {model}`) from its start to its end, inside its node's slice for a sync node, on
//! the track under it for an async one (whose polls it overlaps), with its outcome, stream,
//! time to first chunk, tokens and cost in `args`.
//!
//! ```
//! use agent_profiler_runtime::BottleneckAnalyzer;
//! use agent_profiler_report::perfetto::chrome_trace_json;
//!
//! let analyzer = BottleneckAnalyzer::new();
//! analyzer.enable_trace(1024);
//! analyzer.record_node("plan", 12.0).unwrap();
//! let json = chrome_trace_json(&analyzer.trace().unwrap(), "my workflow");
//! let events = json["traceEvents"].as_array().unwrap();
//! let plan = events.iter().find(|e| e["ph"] == "X").unwrap();
//! assert_eq!(plan["name"], "plan");
//! assert_eq!(plan["dur"], 12_000.0); // microseconds
//! assert_eq!(plan["args"]["outcome"], "ok");
//! ```
//!
//! [`write_chrome_trace`] writes the same to a file; open it at <https://ui.perfetto.dev>
//! ("Open trace file") or in `chrome://tracing` ("Load").
//!
//! The file follows the JSON Object Format of the Trace Event Format, with two choices made
//! for Perfetto's importer: there is no `displayTimeUnit` key (its default, `"ms"`, is what
//! the file means; some Perfetto versions read the key as the unit of `ts`, which would
//! stretch the trace a thousandfold), and timestamps are written so that reading them back
//! into whole nanoseconds, by truncation or by rounding, gives exactly the recorded values
//! (nested slices stay nested to the nanosecond). Perfetto drops a complete event that
//! overlaps another on its track without nesting in it, and settles equal start times by
//! the order in the file: the layout makes every track nest properly, and each track's
//! events are written containers first (an async span before its first poll, which starts
//! at the same nanosecond).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::layout::{ItemKind, Layout, layout_with_llm_calls};
use agent_profiler_runtime::Trace;

/// The `pid` of every event: the file holds one process, the profiled program.
pub const PID: u64 = 1;

/// The Chrome Trace Event JSON object of `trace`, with `title` as the process name:
/// `{"traceEvents": [...], "otherData": {...}}`. See the [module docs](self).
pub fn chrome_trace_json(trace: &Trace, title: &str) -> Value {
    let layout = layout_with_llm_calls(trace);
    let mut events = Vec::with_capacity(1 + 2 * layout.lanes.len() + item_count(&layout));
    events.push(json!({
        "name": "process_name",
        "ph": "M",
        "pid": PID,
        "args": { "name": clean(title) },
    }));
    for (lane_index, lane) in layout.lanes.iter().enumerate() {
        let tid = lane_index + 1;
        events.push(json!({
            "name": "thread_name",
            "ph": "M",
            "pid": PID,
            "tid": tid,
            "args": { "name": clean(&lane.name) },
        }));
        events.push(json!({
            "name": "thread_sort_index",
            "ph": "M",
            "pid": PID,
            "tid": tid,
            "args": { "sort_index": lane_index },
        }));
    }
    let spans_by_id = first_index_by_id(trace);
    for (lane_index, lane) in layout.lanes.iter().enumerate() {
        // Containers before what they contain, which is also the order in which importers
        // that keep the file's order for equal timestamps nest them.
        for item in &lane.items {
            let (name, cat, args) = match item.kind {
                ItemKind::Span(i) => (clean(&trace.spans[i].node_id), "node", span_args(trace, i)),
                ItemKind::Poll(i) => ("poll".to_owned(), "poll", poll_args(trace, i, &spans_by_id)),
                ItemKind::Llm { span, call } => {
                    let info = &trace.spans[span].llm_calls[call];
                    let name = clean(&format!("chat {}", info.model));
                    (name, "llm", llm_args(trace, span, call))
                }
            };
            events.push(json!({
                "name": name,
                "cat": cat,
                "ph": "X",
                "ts": micros(item.start_unix_ns - layout.start_unix_ns),
                "dur": micros(item.duration_ns()),
                "pid": PID,
                "tid": lane_index + 1,
                "args": args,
            }));
        }
    }
    json!({
        "traceEvents": events,
        "otherData": {
            "title": clean(title),
            "trace_id": trace.trace_id,
            "start_unix_ns": layout.start_unix_ns.to_string(),
            "spans": trace.spans.len(),
            "polls": trace.polls.len(),
            "capacity": trace.capacity,
            "dropped": trace.dropped,
            "unattached_llm_calls": trace.unattached_llm_calls,
            "generator": concat!("agent-profiler ", env!("CARGO_PKG_VERSION")),
        },
    })
}

/// Writes [`chrome_trace_json`] of `trace` to `path`: to a temporary file in the same
/// directory first, renamed over `path` once complete, so that a reader never sees half a
/// file.
///
/// ```no_run
/// # fn main() -> std::io::Result<()> {
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_report::perfetto::write_chrome_trace;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.enable_trace(65_536);
/// // ... run the workflow with the analyzer installed ...
/// if let Some(trace) = analyzer.trace() {
///     write_chrome_trace(&trace, "research agent", "run.trace.json".as_ref())?;
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// What creating, writing or renaming the file returned; the temporary file is removed.
pub fn write_chrome_trace(trace: &Trace, title: &str, path: &Path) -> io::Result<()> {
    let json = chrome_trace_json(trace, title);
    let temp = temp_path(path);
    let result = (|| {
        let file = std::fs::File::create(&temp)?;
        let mut out = io::BufWriter::new(file);
        serde_json::to_writer(&mut out, &json)?;
        out.write_all(b"\n")?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// `dir/.name.<pid>.<n>.tmp` beside `path`.
fn temp_path(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "trace.json".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn item_count(layout: &Layout) -> usize {
    layout.lanes.iter().map(|l| l.items.len()).sum()
}

fn first_index_by_id(trace: &Trace) -> HashMap<u64, usize> {
    let mut map = HashMap::with_capacity(trace.spans.len());
    for (i, span) in trace.spans.iter().enumerate() {
        map.entry(span.span_id).or_insert(i);
    }
    map
}

/// A span id as 16 hex digits (as in OpenTelemetry): ids use all 64 bits, more than a JSON
/// number keeps exactly in most readers.
fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn span_args(trace: &Trace, i: usize) -> Value {
    let span = &trace.spans[i];
    let wall = span.duration_ns();
    let mut args = Map::new();
    args.insert("span_id".into(), hex_id(span.span_id).into());
    if let Some(parent) = span.parent_span_id {
        args.insert("parent_span_id".into(), hex_id(parent).into());
    }
    if let Some(parent) = &span.parent_node_id {
        args.insert("parent_node".into(), clean(parent).into());
    }
    args.insert("outcome".into(), span.outcome.as_str().into());
    args.insert("thread".into(), span.thread.into());
    args.insert("async".into(), span.is_async.into());
    args.insert("wall_ms".into(), ms(wall).into());
    args.insert("busy_ms".into(), ms(span.busy_ns).into());
    if span.is_async {
        args.insert(
            "idle_ms".into(),
            ms(wall.saturating_sub(span.busy_ns)).into(),
        );
    }
    if !span.llm_calls.is_empty() {
        let totals = span.llm_totals();
        args.insert("llm_calls".into(), totals.calls.into());
        args.insert("input_tokens".into(), totals.input_tokens.into());
        args.insert("output_tokens".into(), totals.output_tokens.into());
        args.insert("total_tokens".into(), totals.total_tokens.into());
        args.insert("cost_usd".into(), finite(totals.cost_usd));
        if totals.unpriced_calls > 0 {
            // The cost above is then a lower bound.
            args.insert("unpriced_llm_calls".into(), totals.unpriced_calls.into());
        }
        let mut models: Vec<String> = Vec::new();
        for call in &span.llm_calls {
            let model = clean(&format!("{}/{}", call.provider, call.model));
            if !models.contains(&model) {
                models.push(model);
            }
        }
        // A string, not an array: Perfetto's older JSON tokenizer refuses arrays there.
        args.insert("models".into(), models.join(", ").into());
    }
    Value::Object(args)
}

/// A timed LLM call: its node, model, outcome (and error), stream and time to first chunk,
/// tokens, output rate and cost.
fn llm_args(trace: &Trace, span: usize, call: usize) -> Value {
    let node = &trace.spans[span];
    let info = &node.llm_calls[call];
    let mut args = Map::new();
    args.insert("node".into(), clean(&node.node_id).into());
    args.insert("span_id".into(), hex_id(node.span_id).into());
    args.insert("provider".into(), clean(&info.provider).into());
    args.insert("model".into(), clean(&info.model).into());
    if let Some(timing) = &info.timing {
        args.insert("outcome".into(), timing.outcome.as_str().into());
        if let Some(error) = &timing.error {
            args.insert("error".into(), clean(error).into());
        }
        args.insert("wall_ms".into(), ms(timing.duration_ns()).into());
        args.insert("stream".into(), timing.stream.into());
        if let Some(ttft) = timing.ttft_ns() {
            args.insert("ttft_ms".into(), ms(ttft).into());
        }
        if info.has_usage {
            if let Some(rate) = timing.output_tokens_per_second(info.output_tokens) {
                args.insert("output_tokens_per_second".into(), finite(rate));
            }
        }
    }
    if info.has_usage {
        args.insert("input_tokens".into(), info.input_tokens.into());
        args.insert("output_tokens".into(), info.output_tokens.into());
        if let Some(cost) = info.cost_usd {
            args.insert("cost_usd".into(), finite(cost));
        }
    }
    Value::Object(args)
}

fn poll_args(trace: &Trace, i: usize, spans_by_id: &HashMap<u64, usize>) -> Value {
    let poll = &trace.polls[i];
    let mut args = Map::new();
    args.insert("span_id".into(), hex_id(poll.span_id).into());
    if let Some(&span) = spans_by_id.get(&poll.span_id) {
        args.insert("node".into(), clean(&trace.spans[span].node_id).into());
    }
    args.insert("thread".into(), poll.thread.into());
    args.insert(
        "busy_ms".into(),
        ms(poll.end_unix_ns.saturating_sub(poll.start_unix_ns)).into(),
    );
    Value::Object(args)
}

/// JSON has no NaN or infinity: those become `null`.
fn finite(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// Control characters replaced: serde_json writes them as `\u00XX`, an escape that older
/// Perfetto tokenizers reject (and with it the whole file).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `ns` nanoseconds as microseconds, written so that an importer that multiplies by 1000
/// and truncates (older Perfetto) or rounds (newer Perfetto) gets `ns` back exactly: the
/// plain quotient when it survives both, else the quotient of `ns + 0.25`.
fn micros(ns: u64) -> f64 {
    let exact = |us: f64| {
        let back = us * 1000.0;
        back.trunc() == ns as f64 && back.round() == ns as f64
    };
    let plain = ns as f64 / 1000.0;
    if exact(plain) {
        plain
    } else {
        (ns as f64 + 0.25) / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::Outcome;
    use agent_profiler_runtime::Usage;
    use agent_profiler_runtime::cost::MultiProviderCostTracker;
    use agent_profiler_runtime::trace::PollSlice;
    use agent_profiler_runtime::trace::test_support::span;

    const T0: u64 = 1_700_000_000_000_000_000;

    fn sample() -> Trace {
        let mut agent = span(1, None, "agent", T0, T0 + 90_000);
        agent.is_async = true;
        agent.busy_ns = 9_500;
        agent.llm_calls.push(
            MultiProviderCostTracker::new()
                .track_usage("openai", "gpt-4o", Usage::new(1000, 100))
                .unwrap(),
        );
        let mut tool = span(2, Some(1), "tool", T0 + 1_000, T0 + 2_500);
        tool.outcome = Outcome::Error;
        tool.parent_node_id = Some("agent".into());
        let poll = |start: u64, end: u64| PollSlice {
            span_id: 1,
            thread: 1,
            start_unix_ns: T0 + start,
            end_unix_ns: T0 + end,
        };
        Trace {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            spans: vec![tool, agent],
            polls: vec![poll(0, 4_000), poll(84_500, 90_000)],
            capacity: 16,
            dropped: 3,
            unattached_llm_calls: 0,
        }
    }

    #[test]
    fn timed_llm_calls_are_slices_inside_their_node() {
        let mut node = span(7, None, "answer", T0, T0 + 500_000_000);
        let mut info = MultiProviderCostTracker::new()
            .track_usage("openai", "gpt-4o", Usage::new(100, 200))
            .unwrap();
        info.timing = Some(agent_profiler_runtime::LlmTiming {
            start_unix_ns: T0 + 100_000_000,
            end_unix_ns: T0 + 350_000_000,
            first_chunk_unix_ns: Some(T0 + 150_000_000),
            stream: true,
            outcome: agent_profiler_runtime::LlmOutcome::Timeout,
            error: Some("no end of stream within 30 s".into()),
        });
        node.llm_calls.push(info);
        let trace = Trace {
            spans: vec![node],
            ..Trace::default()
        };
        let json = chrome_trace_json(&trace, "t");
        let events = x_events(&json);
        assert_eq!(events.len(), 2);
        let (node, call) = (events[0], events[1]);
        assert_eq!(
            (node["name"].as_str(), call["name"].as_str()),
            (Some("answer"), Some("chat gpt-4o"))
        );
        assert_eq!(call["cat"], "llm");
        assert_eq!(call["tid"], node["tid"], "on its node's track");
        assert_eq!(call["ts"], 100_000.0);
        assert_eq!(call["dur"], 250_000.0);
        let args = &call["args"];
        assert_eq!(args["node"], "answer");
        assert_eq!(args["outcome"], "timeout");
        assert_eq!(args["error"], "no end of stream within 30 s");
        assert_eq!(args["stream"], true);
        assert_eq!(args["ttft_ms"], 50.0);
        assert_eq!(args["output_tokens"], 200);
        assert_eq!(args["output_tokens_per_second"], 1000.0);
    }

    fn x_events(json: &Value) -> Vec<&Value> {
        json["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "X")
            .collect()
    }

    #[test]
    fn spans_and_polls_become_complete_events_on_lane_tracks() {
        let json = chrome_trace_json(&sample(), "test run");
        // Sorted: a build where serde_json keeps insertion order (a dependency's feature,
        // unified across the workspace) gives them in another order.
        let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["otherData", "traceEvents"]);
        let events = json["traceEvents"].as_array().unwrap();
        assert_eq!(events[0]["name"], "process_name");
        assert_eq!(events[0]["args"]["name"], "test run");
        let names: Vec<&Value> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(names[0]["tid"], 1);
        assert_eq!(names[0]["args"]["name"], "agent (thread 1)");
        assert!(
            events
                .iter()
                .any(|e| e["name"] == "thread_sort_index" && e["args"]["sort_index"] == 0)
        );

        let xs = x_events(&json);
        assert_eq!(xs.len(), 4);
        let agent = xs[0];
        assert_eq!(agent["name"], "agent");
        assert_eq!(agent["cat"], "node");
        assert_eq!(
            (agent["ts"].as_f64(), agent["dur"].as_f64()),
            (Some(0.0), Some(90.0))
        );
        assert_eq!(
            (agent["pid"].as_u64(), agent["tid"].as_u64()),
            (Some(1), Some(1))
        );
        let args = &agent["args"];
        assert_eq!(args["span_id"], "0000000000000001");
        assert!(args.get("parent_span_id").is_none());
        assert_eq!(args["outcome"], "ok");
        assert_eq!(args["async"], true);
        assert_eq!(args["wall_ms"], 0.09);
        assert_eq!(args["busy_ms"], 0.0095);
        assert_eq!(args["idle_ms"], 0.0805);
        assert_eq!(args["llm_calls"], 1);
        assert_eq!(args["input_tokens"], 1000);
        assert_eq!(args["total_tokens"], 1100);
        assert!((args["cost_usd"].as_f64().unwrap() - 0.0035).abs() < 1e-12);
        assert_eq!(args["models"], "openai/gpt-4o");

        let first_poll = xs[1];
        assert_eq!(
            (first_poll["name"].as_str(), first_poll["cat"].as_str()),
            (Some("poll"), Some("poll"))
        );
        assert_eq!(first_poll["args"]["node"], "agent");
        assert_eq!(first_poll["dur"], 4.0);
        let tool = xs[2];
        assert_eq!(tool["name"], "tool");
        assert_eq!(tool["ts"], 1.0);
        assert_eq!(tool["dur"], 1.5);
        assert_eq!(tool["args"]["parent_span_id"], "0000000000000001");
        assert_eq!(tool["args"]["parent_node"], "agent");
        assert_eq!(tool["args"]["outcome"], "error");
        assert!(tool["args"].get("idle_ms").is_none());
        assert!(tool["args"].get("llm_calls").is_none());
        assert_eq!(xs[3]["ts"], 84.5);

        let other = &json["otherData"];
        assert_eq!(other["trace_id"], "0123456789abcdef0123456789abcdef");
        assert_eq!(other["dropped"], 3);
        assert_eq!(other["capacity"], 16);
        assert_eq!(other["spans"], 2);
        assert_eq!(other["polls"], 2);
        assert_eq!(other["start_unix_ns"], T0.to_string());
    }

    #[test]
    fn an_empty_trace_is_a_valid_file() {
        let json = chrome_trace_json(&Trace::default(), "empty");
        assert_eq!(json["traceEvents"].as_array().unwrap().len(), 1);
        assert_eq!(json["otherData"]["spans"], 0);
    }

    #[test]
    fn control_characters_are_replaced() {
        let trace = Trace {
            spans: vec![span(1, None, "bad\u{1}id\ttab", 0, 10)],
            ..Trace::default()
        };
        let text = chrome_trace_json(&trace, "title\u{7}").to_string();
        assert!(!text.contains("\\u"), "{text}");
        assert!(!text.contains("\\t"), "{text}");
        assert!(text.contains("bad\u{fffd}id\u{fffd}tab"));
    }

    #[test]
    fn microseconds_read_back_as_the_same_nanoseconds() {
        let mut state = 7u64;
        let mut values: Vec<u64> = (0..20_000).collect();
        for _ in 0..200_000 {
            // Up to ~12 days of nanoseconds, and every last digit.
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            values.push((state >> 20) % 1_000_000_000_000_000);
        }
        for ns in values {
            let text = serde_json::to_string(&micros(ns)).unwrap();
            let back: f64 = text.parse().unwrap();
            let scaled = back * 1000.0;
            assert_eq!(scaled.trunc() as u64, ns, "{ns} written as {text}");
            assert_eq!(scaled.round() as u64, ns, "{ns} written as {text}");
        }
        assert_eq!(micros(1_500), 1.5);
        assert_eq!(micros(0), 0.0);
    }

    #[test]
    fn the_file_is_written_whole_and_replaced() {
        let dir = std::env::temp_dir().join(format!("perfetto-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("run.trace.json");
        std::fs::write(&path, "old").unwrap();
        write_chrome_trace(&sample(), "t", &path).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, chrome_trace_json(&sample(), "t"));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [std::ffi::OsString::from("run.trace.json")]);
        let missing = dir.join("no-such-dir").join("x.json");
        assert!(write_chrome_trace(&sample(), "t", &missing).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
