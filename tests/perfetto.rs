//! Trace mode end to end, and its Perfetto file: real profiled runs (sync nodes nested three
//! deep, async nodes joined on a current-thread runtime, tasks spawned on a two-worker
//! runtime) are written as Chrome Trace Event JSON, parsed back, and checked for spans,
//! nesting, tracks and poll slices. Timing checks are lower bounds (the sleeps) with
//! generous upper bounds: the machine may be busy.

mod support {
    pub mod runtimes;
    pub mod scratch;
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use agent_profiler::cost::Usage;
use agent_profiler::trace::perfetto::{chrome_trace_json, write_chrome_trace};
use agent_profiler::trace::{Span, Trace};
use agent_profiler::{
    BottleneckAnalyzer, LlmOutcome, MultiProviderCostTracker, ProfilerFutureExt, ProfilerScope,
    profile_node,
};
use serde_json::Value;

const MS: u64 = 1_000_000;
/// Anything slower than this is a hang, not a slow machine.
const AT_MOST: u64 = 20_000 * MS;
/// How far a length from two converted instants may be from the same ticks converted as
/// one length: each conversion rounds to the nanosecond (see
/// `trace_timestamps_keep_nanoseconds`).
const ROUNDING: u64 = 2;

#[profile_node("outer")]
fn outer() {
    std::thread::sleep(Duration::from_millis(2));
    middle();
}

#[profile_node("middle")]
fn middle() {
    std::thread::sleep(Duration::from_millis(1));
    inner();
    inner();
}

#[profile_node("inner")]
fn inner() {
    std::thread::sleep(Duration::from_millis(3));
}

#[profile_node("parse")]
fn parse() {
    std::thread::sleep(Duration::from_millis(1));
}

#[profile_node("fan_out")]
async fn fan_out() {
    tokio::join!(fetch_a(), fetch_b());
    parse();
}

#[profile_node("fetch_a")]
async fn fetch_a() {
    tokio::time::sleep(Duration::from_millis(20)).await;
    parse();
}

#[profile_node("fetch_b")]
async fn fetch_b() {
    tokio::time::sleep(Duration::from_millis(30)).await;
    MultiProviderCostTracker::new()
        .track_usage("openai", "gpt-4o", Usage::new(1000, 100))
        .unwrap();
}

#[profile_node("worker_task")]
async fn worker_task(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    parse();
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// The sync chain, the joined fetches on a current-thread runtime, then four tasks spawned
/// on two workers (two runtimes built by hand, one after the other, under one scope), in
/// trace mode with room for `capacity` spans and polls; the trace.
fn run_workflow(capacity: usize) -> Trace {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(capacity);
    let scope = ProfilerScope::new(&analyzer);
    outer();
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(fan_out());
    let workers = support::runtimes::two_workers();
    workers.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|i| tokio::spawn(worker_task(10 + i).with_profiler(analyzer.clone())))
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    drop(workers);
    drop(scope);
    analyzer.trace().unwrap()
}

/// One complete event, times in ns from the trace start.
#[derive(Clone, Debug)]
struct Event {
    name: String,
    cat: String,
    start: u64,
    end: u64,
    tid: u64,
    args: Value,
}

impl Event {
    fn contains(&self, other: &Event) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    fn disjoint(&self, other: &Event) -> bool {
        self.end <= other.start || other.end <= self.start
    }

    fn overlaps_partially(&self, other: &Event) -> bool {
        !self.disjoint(other) && !self.contains(other) && !other.contains(self)
    }

    fn dur(&self) -> u64 {
        self.end - self.start
    }
}

/// Microseconds as written in the file to nanoseconds, as Perfetto reads them.
fn ns(us: &Value) -> u64 {
    let us = us.as_f64().expect("a number");
    assert!(us >= 0.0);
    (us * 1000.0).round() as u64
}

struct Parsed {
    json: Value,
    events: Vec<Event>,
    /// Node events by span id (hex, as in the file).
    spans: HashMap<String, Event>,
    /// Poll events by span id.
    polls: HashMap<String, Vec<Event>>,
    /// Timed LLM call events, in the file's order.
    llm: Vec<Event>,
}

fn parse_file(path: &PathBuf) -> Parsed {
    let text = std::fs::read_to_string(path).unwrap();
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["traceEvents", "otherData"]));
    let mut events = Vec::new();
    for e in json["traceEvents"].as_array().unwrap() {
        assert_eq!(e["pid"], 1, "{e}");
        match e["ph"].as_str().unwrap() {
            "M" => assert!(
                ["process_name", "thread_name", "thread_sort_index"]
                    .contains(&e["name"].as_str().unwrap())
            ),
            "X" => {
                let start = ns(&e["ts"]);
                events.push(Event {
                    name: e["name"].as_str().unwrap().to_owned(),
                    cat: e["cat"].as_str().unwrap().to_owned(),
                    start,
                    end: start + ns(&e["dur"]),
                    tid: e["tid"].as_u64().unwrap(),
                    args: e["args"].clone(),
                });
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    let mut spans = HashMap::new();
    let mut polls: HashMap<String, Vec<Event>> = HashMap::new();
    let mut llm = Vec::new();
    for e in &events {
        let id = e.args["span_id"].as_str().unwrap().to_owned();
        match e.cat.as_str() {
            "node" => assert!(spans.insert(id, e.clone()).is_none(), "one event per span"),
            "poll" => {
                assert_eq!(e.name, "poll");
                polls.entry(id).or_default().push(e.clone());
            }
            "llm" => llm.push(e.clone()),
            other => panic!("unexpected category {other}"),
        }
    }
    Parsed {
        json,
        events,
        spans,
        polls,
        llm,
    }
}

fn hex(id: u64) -> String {
    format!("{id:016x}")
}

fn temp_file(name: &str) -> PathBuf {
    support::scratch::temp_dir("agent-profiler-perfetto").join(name)
}

fn spans_of<'a>(trace: &'a Trace, node: &str) -> Vec<&'a Span> {
    trace.spans.iter().filter(|s| s.node_id == node).collect()
}

fn one<'a>(trace: &'a Trace, node: &str) -> &'a Span {
    let spans = spans_of(trace, node);
    assert_eq!(spans.len(), 1, "{node}: {spans:?}");
    spans[0]
}

/// What trace mode itself must get right: parents, threads, polls, timestamps.
fn check_trace(trace: &Trace) {
    assert_eq!(trace.dropped, 0);
    assert_eq!(trace.unattached_llm_calls, 0);
    let ids: BTreeSet<u64> = trace.spans.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), trace.spans.len(), "span ids are unique");
    for s in &trace.spans {
        assert!(s.start_unix_ns <= s.end_unix_ns, "{s:?}");
        assert!(s.busy_ns <= s.duration_ns() + 1_000, "{s:?}");
        assert!(s.duration_ns() < AT_MOST, "{s:?}");
        assert_ne!(s.thread, 0, "{s:?}");
        if !s.is_async {
            // The same ticks, converted as a length and as two instants.
            assert!(
                s.busy_ns.abs_diff(s.duration_ns()) <= ROUNDING,
                "sync: busy is wall: {s:?}"
            );
        }
        assert_eq!(s.outcome, agent_profiler::Outcome::Ok);
    }
    let by_id: HashMap<u64, &Span> = trace.spans.iter().map(|s| (s.span_id, s)).collect();
    let parent_of = |s: &Span| s.parent_span_id.map(|p| by_id[&p]);

    // Sync, three deep.
    let outer = one(trace, "outer");
    let middle = one(trace, "middle");
    let inners = spans_of(trace, "inner");
    assert!(outer.parent_span_id.is_none() && outer.parent_node_id.is_none());
    assert_eq!(middle.parent_span_id, Some(outer.span_id));
    assert_eq!(middle.parent_node_id.as_deref(), Some("outer"));
    assert_eq!(inners.len(), 2);
    for inner in &inners {
        assert_eq!(inner.parent_span_id, Some(middle.span_id));
        assert_eq!(inner.parent_node_id.as_deref(), Some("middle"));
        assert!(inner.duration_ns() >= 3 * MS);
        assert_eq!(inner.thread, outer.thread);
    }
    assert!(inners[0].end_unix_ns <= inners[1].start_unix_ns);
    assert!(middle.duration_ns() >= 7 * MS);
    assert!(outer.duration_ns() >= 9 * MS);

    // Joined on a current-thread runtime.
    let fan_out = one(trace, "fan_out");
    let fetch_a = one(trace, "fetch_a");
    let fetch_b = one(trace, "fetch_b");
    assert!(fan_out.is_async && fetch_a.is_async && fetch_b.is_async);
    assert!(fan_out.parent_span_id.is_none());
    for fetch in [fetch_a, fetch_b] {
        assert_eq!(fetch.parent_span_id, Some(fan_out.span_id));
        assert_eq!(fetch.parent_node_id.as_deref(), Some("fan_out"));
        assert_eq!(fetch.thread, fan_out.thread);
    }
    assert!(fetch_a.duration_ns() >= 20 * MS + MS);
    assert!(fetch_b.duration_ns() >= 30 * MS);
    assert!(fan_out.duration_ns() >= 31 * MS);
    assert!(
        fetch_a.start_unix_ns < fetch_b.end_unix_ns && fetch_b.start_unix_ns < fetch_a.end_unix_ns
    );
    let parses: Vec<&Span> = spans_of(trace, "parse");
    assert_eq!(parses.len(), 2 + 4);
    let parse_parents: BTreeMap<&str, usize> = parses.iter().fold(BTreeMap::new(), |mut m, p| {
        *m.entry(parent_of(p).map_or("-", |s| &*s.node_id))
            .or_default() += 1;
        m
    });
    assert_eq!(
        parse_parents,
        BTreeMap::from([("fan_out", 1), ("fetch_a", 1), ("worker_task", 4)])
    );
    assert_eq!(fetch_b.llm_calls.len(), 1);
    assert_eq!(fetch_b.llm_totals().total_tokens, 1100);

    // Spawned on two workers: the running span at a task's first poll is none, so its
    // span is a root.
    let tasks = spans_of(trace, "worker_task");
    assert_eq!(tasks.len(), 4);
    for task in &tasks {
        assert!(task.parent_span_id.is_none());
        assert!(task.duration_ns() >= 2 * 10 * MS + MS);
    }

    // Polls: each async span's polls are disjoint, inside it, start at its start and end
    // at its end, and add up to its busy time.
    let mut polls: HashMap<u64, Vec<&agent_profiler::trace::PollSlice>> = HashMap::new();
    for p in &trace.polls {
        assert!(p.start_unix_ns <= p.end_unix_ns);
        assert_ne!(p.thread, 0);
        polls.entry(p.span_id).or_default().push(p);
    }
    for s in trace.spans.iter().filter(|s| s.is_async) {
        let mut mine = polls.remove(&s.span_id).unwrap_or_default();
        mine.sort_by_key(|p| p.start_unix_ns);
        assert!(
            mine.len() >= 2,
            "{}: a sleep makes it pending: {mine:?}",
            s.node_id
        );
        assert_eq!(mine[0].start_unix_ns, s.start_unix_ns, "{}", s.node_id);
        assert_eq!(
            mine.last().unwrap().end_unix_ns,
            s.end_unix_ns,
            "{}",
            s.node_id
        );
        for pair in mine.windows(2) {
            assert!(pair[0].end_unix_ns <= pair[1].start_unix_ns);
        }
        let summed: u64 = mine.iter().map(|p| p.end_unix_ns - p.start_unix_ns).sum();
        assert!(
            summed.abs_diff(s.busy_ns) <= ROUNDING * mine.len() as u64,
            "{}: polls {summed} ns, busy {} ns",
            s.node_id,
            s.busy_ns
        );
        assert!(s.busy_ns < s.duration_ns(), "{}: it slept", s.node_id);
        if s.is_async && s.node_id != "fetch_b" {
            assert!(s.busy_ns >= MS, "{}: it parsed", s.node_id);
        }
    }
    assert!(polls.is_empty(), "polls without a span: {polls:?}");

    // On the current thread, each poll of a fetch lies within a poll of fan_out.
    let fan_polls: Vec<_> = trace
        .polls
        .iter()
        .filter(|p| p.span_id == fan_out.span_id)
        .collect();
    for p in trace
        .polls
        .iter()
        .filter(|p| p.span_id == fetch_a.span_id || p.span_id == fetch_b.span_id)
    {
        assert!(
            fan_polls
                .iter()
                .any(|f| f.start_unix_ns <= p.start_unix_ns && p.end_unix_ns <= f.end_unix_ns),
            "{p:?} within a poll of fan_out"
        );
    }
}

/// What the file must show: every span and poll once, proper nesting per track, children
/// with their parents unless they could not nest there, polls under their spans, metadata.
fn check_file(trace: &Trace, parsed: &Parsed) {
    let Parsed {
        json,
        events,
        spans,
        polls,
        ..
    } = parsed;
    assert_eq!(events.len(), trace.spans.len() + trace.polls.len());
    assert_eq!(spans.len(), trace.spans.len());
    assert_eq!(
        polls.values().map(Vec::len).sum::<usize>(),
        trace.polls.len()
    );
    let t0 = trace
        .spans
        .iter()
        .map(|s| s.start_unix_ns)
        .chain(trace.polls.iter().map(|p| p.start_unix_ns))
        .min()
        .unwrap();
    assert_eq!(json["otherData"]["start_unix_ns"], t0.to_string());
    assert_eq!(json["otherData"]["trace_id"], trace.trace_id);
    assert_eq!(json["otherData"]["dropped"], 0);
    assert_eq!(json["otherData"]["capacity"], trace.capacity);

    // Each span's event: its node, its exact times, its args.
    for s in &trace.spans {
        let e = &spans[&hex(s.span_id)];
        assert_eq!(e.name, s.node_id);
        assert_eq!(e.start, s.start_unix_ns - t0, "{}", s.node_id);
        assert_eq!(e.end, s.end_unix_ns - t0, "{}", s.node_id);
        assert_eq!(e.args["outcome"], "ok");
        assert_eq!(e.args["thread"], s.thread);
        assert_eq!(e.args["async"], s.is_async);
        let wall_ms = e.args["wall_ms"].as_f64().unwrap();
        let busy_ms = e.args["busy_ms"].as_f64().unwrap();
        assert!((wall_ms * 1e6 - e.dur() as f64).abs() < 1.0);
        assert!((busy_ms * 1e6 - s.busy_ns as f64).abs() < 1.0);
        match s.parent_span_id {
            Some(p) => assert_eq!(e.args["parent_span_id"], hex(p)),
            None => assert!(e.args.get("parent_span_id").is_none()),
        }
        if s.is_async {
            let idle_ms = e.args["idle_ms"].as_f64().unwrap();
            assert!((idle_ms + busy_ms - wall_ms).abs() < 1e-6);
        } else {
            assert!(e.args.get("idle_ms").is_none());
        }
        if s.llm_calls.is_empty() {
            assert!(e.args.get("total_tokens").is_none());
        } else {
            assert_eq!(e.args["total_tokens"], 1100);
            assert_eq!(e.args["input_tokens"], 1000);
            assert_eq!(e.args["output_tokens"], 100);
            assert!(e.args["cost_usd"].as_f64().unwrap() > 0.0);
        }
    }

    // Every track nests properly.
    let mut by_tid: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for e in events {
        by_tid.entry(e.tid).or_default().push(e);
    }
    for (tid, track) in &by_tid {
        for (i, a) in track.iter().enumerate() {
            for b in &track[..i] {
                assert!(!a.overlaps_partially(b), "tid {tid}: {a:?} / {b:?}");
            }
        }
    }

    // A child lies within its parent; on the parent's track, or on another one only when
    // something there (a sibling, a poll of the parent) overlaps it partially.
    for s in &trace.spans {
        let Some(parent) = s.parent_span_id else {
            continue;
        };
        let (child, parent) = (&spans[&hex(s.span_id)], &spans[&hex(parent)]);
        assert!(parent.contains(child), "{child:?} within {parent:?}");
        if child.tid != parent.tid {
            assert!(
                by_tid[&parent.tid]
                    .iter()
                    .any(|e| e.overlaps_partially(child)),
                "{} could have nested on its parent's track",
                child.name
            );
        }
    }
    // Sync calls nest on their caller's track.
    for node in ["middle", "inner"] {
        for s in spans_of(trace, node) {
            let parent = &spans[&hex(s.parent_span_id.unwrap())];
            assert_eq!(spans[&hex(s.span_id)].tid, parent.tid, "{node}");
        }
    }
    // Concurrent siblings on tracks of their own.
    let tid_of = |node: &str| spans[&hex(one(trace, node).span_id)].tid;
    assert_ne!(tid_of("fetch_a"), tid_of("fetch_b"));
    let task_tids: Vec<(u64, &Event)> = spans_of(trace, "worker_task")
        .iter()
        .map(|s| (spans[&hex(s.span_id)].tid, &spans[&hex(s.span_id)]))
        .collect();
    for (i, (tid_a, a)) in task_tids.iter().enumerate() {
        for (tid_b, b) in &task_tids[..i] {
            if !a.disjoint(b) {
                assert_ne!(tid_a, tid_b, "overlapping tasks share a track");
            }
        }
    }

    // Polls under their span, on its track, adding up to its busy time.
    for s in trace.spans.iter().filter(|s| s.is_async) {
        let span = &spans[&hex(s.span_id)];
        let mine = &polls[&hex(s.span_id)];
        let mut summed = 0;
        for p in mine {
            assert_eq!(p.tid, span.tid, "{}: poll on its span's track", s.node_id);
            assert!(span.contains(p), "{}: poll within its span", s.node_id);
            assert_eq!(p.args["node"], &*s.node_id);
            summed += p.dur();
        }
        let busy = (span.args["busy_ms"].as_f64().unwrap() * 1e6).round() as u64;
        assert!(
            summed.abs_diff(busy) <= ROUNDING * mine.len() as u64,
            "{}: polls {summed} ns, busy {busy} ns",
            s.node_id
        );
        assert!(span.dur() > summed, "{}: idle while asleep", s.node_id);
    }

    // Metadata: a name (and a sort index) for every track used, and the process name.
    let meta = |name: &str| -> BTreeMap<u64, Value> {
        json["traceEvents"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == name)
            .map(|e| (e["tid"].as_u64().unwrap_or(0), e["args"].clone()))
            .collect()
    };
    let thread_names = meta("thread_name");
    let used: BTreeSet<u64> = by_tid.keys().copied().collect();
    assert_eq!(thread_names.keys().copied().collect::<BTreeSet<_>>(), used);
    assert_eq!(used.iter().copied().min(), Some(1));
    assert_eq!(
        used.iter().copied().max(),
        Some(used.len() as u64),
        "tids 1..=lanes"
    );
    for args in thread_names.values() {
        assert!(!args["name"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        meta("thread_sort_index")
            .keys()
            .copied()
            .collect::<BTreeSet<_>>(),
        used
    );
    let process = meta("process_name");
    assert_eq!(process.len(), 1);
    assert_eq!(process.values().next().unwrap()["name"], "perfetto test");
    let fan_out_track = &thread_names[&tid_of("fan_out")]["name"];
    assert!(
        fan_out_track.as_str().unwrap().contains("fan_out"),
        "{fan_out_track}"
    );
}

#[test]
fn perfetto_file_shows_spans_nesting_tracks_and_polls() {
    let trace = run_workflow(4096);
    check_trace(&trace);
    let path = temp_file("run.trace.json");
    write_chrome_trace(&trace, "perfetto test", &path).unwrap();
    let parsed = parse_file(&path);
    check_file(&trace, &parsed);
    eprintln!(
        "{} spans, {} polls on {} tracks: {}",
        trace.spans.len(),
        trace.polls.len(),
        parsed.events.iter().map(|e| e.tid).max().unwrap(),
        path.display()
    );
    if std::env::var_os("KEEP_PERFETTO_FILE").is_none() {
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}

#[test]
fn a_tiny_buffer_still_gives_a_valid_file_that_counts_what_it_dropped() {
    let trace = run_workflow(5);
    assert_eq!(trace.capacity, 5);
    assert_eq!(trace.spans.len() + trace.polls.len(), 5);
    assert!(trace.dropped > 0);
    let path = temp_file("tiny.trace.json");
    write_chrome_trace(&trace, "tiny", &path).unwrap();
    let parsed = parse_file(&path);
    assert_eq!(parsed.json["otherData"]["dropped"], trace.dropped);
    assert_eq!(parsed.json["otherData"]["capacity"], 5);
    assert_eq!(parsed.events.len(), 5);
    assert_eq!(parsed.json, chrome_trace_json(&trace, "tiny"));
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    // Whatever was kept (polls whose span was dropped included) nests properly per track.
    for a in &parsed.events {
        for b in &parsed.events {
            assert!(a.tid != b.tid || !a.overlaps_partially(b), "{a:?} / {b:?}");
        }
    }
}

#[profile_node("tiny")]
fn tiny() -> u64 {
    std::hint::black_box(1)
}

/// Trace mode's timestamps keep the clock's resolution. They once were rounded to 256 ns,
/// when the Unix anchor (~1.8e18 ns) and the offset were added in `f64`, whose spacing
/// there is 256 ns: a call of 50 ns showed as 0 or 256 ns.
#[test]
fn trace_timestamps_keep_nanoseconds() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(1000);
    {
        let _scope = ProfilerScope::new(&analyzer);
        for _ in 0..1000 {
            tiny();
        }
    }
    let trace = analyzer.trace().unwrap();
    let on_256 = |ns: u64| ns % 256 == 0;
    let rounded = trace
        .spans
        .iter()
        .filter(|s| on_256(s.start_unix_ns) && on_256(s.end_unix_ns))
        .count();
    // With nanosecond resolution about 1000 / 65536 spans would.
    assert!(
        rounded < 10,
        "{rounded} of 1000 spans start and end on a multiple of 256 ns"
    );
}

#[profile_node("llm_sync")]
fn llm_sync(tracker: &MultiProviderCostTracker) {
    std::thread::sleep(Duration::from_millis(5));
    let call = tracker.start_call("openai", "gpt-4o");
    std::thread::sleep(Duration::from_millis(100));
    call.finish(Usage::new(300, 60)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
}

#[profile_node("llm_async")]
async fn llm_async(tracker: MultiProviderCostTracker) {
    let call = tracker.start_call("anthropic", "claude-sonnet-4-5");
    tokio::time::sleep(Duration::from_millis(30)).await;
    call.first_chunk();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let _ = call.fail(LlmOutcome::Timeout, "no end of stream", None);
}

/// A timed LLM call is a slice lasting as long as the call did: inside its sync node's
/// slice on the node's track; for an async node, whose polls it overlaps, within the node's
/// time on a track of its own. Calls tracked from an answer alone make no slice.
#[test]
fn timed_llm_calls_are_slices_within_their_node() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(256);
    let tracker = MultiProviderCostTracker::new();
    {
        let _scope = ProfilerScope::new(&analyzer);
        llm_sync(&tracker);
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(llm_async(tracker.clone()).with_profiler(analyzer.clone()));
        // Untimed: no slice.
        tracker
            .track_usage("openai", "gpt-4o", Usage::new(1, 1))
            .unwrap();
    }
    let trace = analyzer.trace().unwrap();
    let path = temp_file("llm.trace.json");
    write_chrome_trace(&trace, "llm calls", &path).unwrap();
    let parsed = parse_file(&path);
    assert_eq!(parsed.llm.len(), 2, "{:?}", parsed.llm);

    let sync = &parsed.spans[&hex(one(&trace, "llm_sync").span_id)];
    let call = parsed.llm.iter().find(|e| e.name == "chat gpt-4o").unwrap();
    assert!(call.dur() >= 100 * MS && call.dur() < AT_MOST, "{call:?}");
    assert!(
        sync.contains(call) && call.dur() < sync.dur(),
        "{sync:?} {call:?}"
    );
    assert_eq!(call.tid, sync.tid, "on its node's track");
    assert_eq!(call.args["node"], "llm_sync");
    assert_eq!(call.args["outcome"], "ok");
    assert_eq!(call.args["output_tokens"], 60);
    let timing = one(&trace, "llm_sync").llm_calls[0].timing.clone().unwrap();
    let t0: u64 = parsed.json["otherData"]["start_unix_ns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(call.start, timing.start_unix_ns - t0);
    assert_eq!(call.end, timing.end_unix_ns - t0);

    let node = &parsed.spans[&hex(one(&trace, "llm_async").span_id)];
    let call = parsed
        .llm
        .iter()
        .find(|e| e.name == "chat claude-sonnet-4-5")
        .unwrap();
    assert!(call.dur() >= 60 * MS, "{call:?}");
    assert!(node.contains(call), "{node:?} {call:?}");
    assert_eq!(call.args["outcome"], "timeout");
    assert_eq!(call.args["error"], "no end of stream");
    assert_eq!(call.args["stream"], true);
    assert!(call.args["ttft_ms"].as_f64().unwrap() >= 30.0);
    // Every track still nests.
    for a in &parsed.events {
        for b in &parsed.events {
            assert!(a.tid != b.tid || !a.overlaps_partially(b), "{a:?} {b:?}");
        }
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
