//! Series-parallel structures with known paths, inference from traces, and a randomized
//! comparison with a brute-force evaluation of the same structures as event graphs.

use super::*;
use crate::summary::NodeShare;
use crate::trace::test_support::span;
use crate::trace::{Span, Trace};

const MS: u64 = 1_000_000;

fn work(node: &str, ms: u64) -> Flow {
    Flow::work(Piece::new(node, ms * MS))
}

fn ids(path: &CriticalPath) -> Vec<&str> {
    path.path.iter().map(|c| c.node_id.as_str()).collect()
}

/// The main example's shape: plan, two searches side by side, analyze, write_report.
fn research() -> Flow {
    Flow::Seq(vec![
        work("plan", 90),
        Flow::Par(vec![work("search_web", 106), work("search_papers", 122)]),
        Flow::work(Piece::new("analyze", 842 * MS).llm(815 * MS)),
        work("write_report", 163),
    ])
}

#[test]
fn the_longest_branch_of_a_parallel_group_is_on_the_path() {
    let path = research().critical_path(2.0);
    assert_eq!(path.wall_time_ms, 1217.0);
    assert_eq!(
        ids(&path),
        ["plan", "search_papers", "analyze", "write_report"]
    );
    assert_eq!(
        path.path_text(),
        "plan -> search_papers -> analyze -> write_report"
    );
    assert_eq!(path.path[1].start_ms, 90.0);
    assert_eq!(path.path[2].start_ms, 212.0);
    assert!((path.path[2].percent_of_wall - 842.0 / 1217.0 * 100.0).abs() < 1e-9);
    assert_eq!(path.off_path.len(), 1);
    let web = &path.off_path[0];
    assert_eq!((web.node_id.as_str(), web.slack_ms), ("search_web", 16.0));
    assert_eq!((web.start_ms, web.duration_ms), (90.0, 106.0));
}

#[test]
fn what_if_speeding_up_a_node_on_or_off_the_path() {
    let path = research().critical_path(2.0);
    let analyze = path.what_if_for("analyze").unwrap();
    assert_eq!(analyze.faster_saves_ms, 421.0);
    assert_eq!(analyze.removed_saves_ms, 842.0);
    assert_eq!(analyze.llm_faster_saves_ms, Some(407.5));
    assert_eq!(analyze.own_faster_saves_ms, Some(13.5));
    assert!(analyze.on_path);
    let web = path.what_if_for("search_web").unwrap();
    assert_eq!((web.faster_saves_ms, web.removed_saves_ms), (0.0, 0.0));
    assert!(!web.on_path);
    assert_eq!(web.llm_faster_saves_ms, None);
    // search_papers halved: 61 ms, but search_web (106 ms) then decides the group.
    let papers = path.what_if_for("search_papers").unwrap();
    assert_eq!(
        (papers.faster_saves_ms, papers.removed_saves_ms),
        (16.0, 16.0)
    );
    assert_eq!(path.best_speedup().unwrap().node_id, "analyze");
    let order: Vec<&str> = path.what_if.iter().map(|w| w.node_id.as_str()).collect();
    assert_eq!(
        order,
        [
            "analyze",
            "write_report",
            "plan",
            "search_papers",
            "search_web"
        ]
    );
}

#[test]
fn nested_groups_and_repeated_nodes() {
    // a; (b; (c | d)) | e; a again
    let flow = Flow::Seq(vec![
        work("a", 10),
        Flow::Par(vec![
            Flow::Seq(vec![
                work("b", 5),
                Flow::Par(vec![work("c", 20), work("d", 30)]),
            ]),
            work("e", 40),
        ]),
        work("a", 10),
    ]);
    let path = flow.critical_path(2.0);
    assert_eq!(path.wall_time_ms, 60.0);
    assert_eq!(ids(&path), ["a", "e", "a"]);
    let slack: Vec<(&str, f64)> = path
        .off_path
        .iter()
        .map(|c| (c.node_id.as_str(), c.slack_ms))
        .collect();
    assert_eq!(slack, [("b", 5.0), ("c", 15.0), ("d", 5.0)]);
    // Both calls of `a` are on the path: twice as fast saves 10 ms.
    assert_eq!(path.what_if_for("a").unwrap().faster_saves_ms, 10.0);
    // e halved to 20: b; d (35 ms) takes over.
    assert_eq!(path.what_if_for("e").unwrap().faster_saves_ms, 5.0);
}

#[test]
fn waits_do_not_shrink_and_empty_flows_are_zero() {
    let flow = Flow::Seq(vec![Flow::Wait(7 * MS), work("x", 10)]);
    let path = flow.critical_path(2.0);
    assert_eq!(path.wall_time_ms, 17.0);
    assert_eq!(path.path[0].start_ms, 7.0);
    assert_eq!(path.what_if_for("x").unwrap().removed_saves_ms, 10.0);
    let empty = Flow::Seq(Vec::new()).critical_path(2.0);
    assert_eq!(empty.wall_time_ms, 0.0);
    assert!(empty.path.is_empty() && empty.what_if.is_empty());
    assert_eq!(empty.best_speedup(), None);
    // A speed-up below 1 or not finite falls back to the default.
    assert_eq!(flow.critical_path(0.5).speedup, DEFAULT_SPEEDUP);
    assert_eq!(flow.critical_path(f64::NAN).speedup, DEFAULT_SPEEDUP);
    assert_eq!(flow.critical_path(4.0).speedup, 4.0);
}

fn at(id: u64, parent: Option<u64>, node: &str, start_ms: u64, end_ms: u64) -> Span {
    span(id, parent, node, start_ms * MS, end_ms * MS)
}

fn trace(spans: Vec<Span>) -> Trace {
    Trace {
        trace_id: "0".repeat(32),
        spans,
        ..Trace::default()
    }
}

#[test]
fn a_trace_with_a_join_infers_a_parallel_group_between_own_work() {
    // agent [0, 100]: own 0-10, then fetch_a [10, 40] | fetch_b [12, 70], own 70-100.
    let t = trace(vec![
        at(2, Some(1), "fetch_a", 10, 40),
        at(3, Some(1), "fetch_b", 12, 70),
        at(1, None, "agent", 0, 100),
    ]);
    let flow = Flow::from_trace(&t);
    assert_eq!(flow.wall_ns(), 100 * MS);
    let path = flow.analyze(PathMethod::Trace, 2.0);
    assert_eq!(ids(&path), ["agent", "fetch_b", "agent"]);
    assert_eq!(path.method, PathMethod::Trace);
    assert_eq!(path.path[0].call, Some(1));
    assert_eq!(path.path[1].start_ms, 12.0, "after its 2 ms offset");
    assert_eq!(path.off_path[0].node_id, "fetch_a");
    assert_eq!(path.off_path[0].slack_ms, 30.0);
    // fetch_b halved (29 ms, ends at 41): fetch_a no longer decides anything, 29 ms saved.
    assert_eq!(path.what_if_for("fetch_b").unwrap().faster_saves_ms, 29.0);
    assert_eq!(path.what_if_for("fetch_a").unwrap().faster_saves_ms, 0.0);
    // agent's own work, 40 ms in two pieces, halved.
    assert_eq!(path.what_if_for("agent").unwrap().faster_saves_ms, 20.0);
}

#[test]
fn top_level_calls_with_gaps_and_llm_time_from_the_calls() {
    use crate::cost::CostInfo;
    use crate::llm::{LlmOutcome, LlmTiming};
    let mut ask = at(1, None, "ask", 0, 50);
    let timing = LlmTiming {
        start_unix_ns: 5 * MS,
        end_unix_ns: 45 * MS,
        first_chunk_unix_ns: None,
        stream: false,
        outcome: LlmOutcome::Ok,
        error: None,
    };
    let mut call: CostInfo = serde_json::from_value(serde_json::json!({
        "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
        "total_tokens": 2, "cached_input_tokens": 0, "cache_creation_input_tokens": 0,
        "reasoning_tokens": 0, "cost_usd": null, "unpriced_reason": null, "node_id": "ask",
        "timestamp": 0.0
    }))
    .unwrap();
    call.timing = Some(timing);
    ask.llm_calls.push(call);
    let t = trace(vec![ask, at(2, None, "save", 60, 70)]);
    let path = Flow::from_trace(&t).analyze(PathMethod::Trace, 2.0);
    assert_eq!(path.wall_time_ms, 70.0);
    assert_eq!(ids(&path), ["ask", "save"]);
    let ask = path.what_if_for("ask").unwrap();
    assert_eq!(ask.llm_faster_saves_ms, Some(20.0));
    assert_eq!(ask.own_faster_saves_ms, Some(5.0));
    // The 10 ms between the two calls are no node's: nothing removes them.
    assert_eq!(path.what_if_for("save").unwrap().removed_saves_ms, 10.0);
}

#[test]
fn an_empty_trace_and_a_deep_recursion() {
    assert_eq!(Flow::from_trace(&Trace::default()).wall_ns(), 0);
    let depth = super::from_trace::MAX_DEPTH * 4;
    let spans: Vec<Span> = (1..=depth as u64)
        .map(|i| {
            let parent = (i > 1).then(|| i - 1);
            at(i, parent, "recurse", i, 10 * depth as u64 - i)
        })
        .collect();
    let flow = Flow::from_trace(&trace(spans));
    assert_eq!(flow.wall_ns(), (10 * depth as u64 - 2) * MS);
}

/// A tiny pseudo-random generator, so that failures repeat.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        crate::trace::splitmix64(&mut self.0) % n
    }
}

fn random_flow(rng: &mut Rng, depth: u32, nodes: &[&str]) -> Flow {
    let leaf = depth == 0 || rng.below(3) == 0;
    if leaf {
        if rng.below(8) == 0 {
            return Flow::Wait(rng.below(20) * MS);
        }
        let node = nodes[rng.below(nodes.len() as u64) as usize];
        let duration = (1 + rng.below(100)) * MS;
        let llm = rng.below(duration + 1);
        return Flow::work(Piece::new(node, duration).llm(llm));
    }
    let parts = (1..=1 + rng.below(3))
        .map(|_| random_flow(rng, depth - 1, nodes))
        .collect();
    if rng.below(2) == 0 {
        Flow::Seq(parts)
    } else {
        Flow::Par(parts)
    }
}

/// The same flow as an event graph: each piece and wait an edge, a sequence a chain, a
/// parallel group a fork and a join; evaluated by longest paths, forward and backward.
struct Graph {
    /// (from event, to event, duration, piece index if work)
    edges: Vec<(usize, usize, u64, Option<usize>)>,
    events: usize,
}

impl Graph {
    fn of(flow: &Flow, scale: &dyn Fn(&Piece) -> u64) -> Graph {
        let mut g = Graph {
            edges: Vec::new(),
            events: 1,
        };
        let mut pieces = 0;
        g.add(flow, 0, scale, &mut pieces);
        g
    }

    fn event(&mut self) -> usize {
        self.events += 1;
        self.events - 1
    }

    /// Adds `flow` starting at event `from`; returns its end event.
    fn add(
        &mut self,
        flow: &Flow,
        from: usize,
        scale: &dyn Fn(&Piece) -> u64,
        pieces: &mut usize,
    ) -> usize {
        match flow {
            Flow::Work(piece) => {
                let to = self.event();
                self.edges.push((from, to, scale(piece), Some(*pieces)));
                *pieces += 1;
                to
            }
            Flow::Wait(ns) => {
                let to = self.event();
                self.edges.push((from, to, *ns, None));
                to
            }
            Flow::Seq(parts) => parts
                .iter()
                .fold(from, |at, p| self.add(p, at, scale, pieces)),
            Flow::Par(parts) => {
                let join = self.event();
                for part in parts {
                    let end = self.add(part, from, scale, pieces);
                    self.edges.push((end, join, 0, None));
                }
                join
            }
        }
    }

    /// Longest distance from the start to every event (edges are added in an order where
    /// every edge's source was reached before: relax until nothing changes).
    fn forward(&self) -> Vec<u64> {
        let mut dist = vec![0u64; self.events];
        loop {
            let mut changed = false;
            for &(a, b, w, _) in &self.edges {
                if dist[a] + w > dist[b] {
                    dist[b] = dist[a] + w;
                    changed = true;
                }
            }
            if !changed {
                return dist;
            }
        }
    }

    /// Longest distance from every event to the end.
    fn backward(&self) -> Vec<u64> {
        let mut dist = vec![0u64; self.events];
        loop {
            let mut changed = false;
            for &(a, b, w, _) in &self.edges {
                if dist[b] + w > dist[a] {
                    dist[a] = dist[b] + w;
                    changed = true;
                }
            }
            if !changed {
                return dist;
            }
        }
    }

    fn wall(&self) -> u64 {
        self.forward().into_iter().max().unwrap_or(0)
    }
}

#[test]
fn what_if_and_slack_match_a_brute_force_evaluation_of_random_structures() {
    let nodes = ["a", "b", "c", "d", "e", "f"];
    let mut rng = Rng(0x5eed_cafe);
    for case in 0..400 {
        let flow = random_flow(&mut rng, 4, &nodes);
        let identity = |p: &Piece| p.duration_ns;
        let graph = Graph::of(&flow, &identity);
        let wall = graph.wall();
        assert_eq!(flow.wall_ns(), wall, "case {case}: {flow:?}");
        let path = flow.critical_path(3.0);

        for what in &path.what_if {
            let node = what.node_id.as_str();
            let check = |llm: f64, own: f64, got: f64, label: &str| {
                let scaled = |p: &Piece| {
                    if p.node_id != node {
                        return p.duration_ns;
                    }
                    let l = p.llm_ns.min(p.duration_ns);
                    let div = |ns: u64, by: f64| {
                        if by.is_infinite() {
                            0
                        } else {
                            (ns as f64 / by).round() as u64
                        }
                    };
                    div(l, llm) + div(p.duration_ns - l, own)
                };
                let expected = ms(wall - Graph::of(&flow, &scaled).wall());
                assert_eq!(got, expected, "case {case}, {node} {label}: {flow:?}");
            };
            check(3.0, 3.0, what.faster_saves_ms, "faster");
            check(
                f64::INFINITY,
                f64::INFINITY,
                what.removed_saves_ms,
                "removed",
            );
            if let Some(saves) = what.llm_faster_saves_ms {
                check(3.0, 1.0, saves, "llm faster");
            }
            if let Some(saves) = what.own_faster_saves_ms {
                check(1.0, 3.0, saves, "own faster");
            }
        }

        // Slack: the run's wall time less the longest path through the piece.
        let (fwd, bwd) = (graph.forward(), graph.backward());
        let mut slack_of_piece = vec![0u64; flow.pieces().len()];
        for &(a, b, w, piece) in &graph.edges {
            if let Some(i) = piece {
                slack_of_piece[i] = wall - (fwd[a] + w + bwd[b]);
            }
        }
        let pieces = flow.pieces();
        for off in &path.off_path {
            let expected = pieces
                .iter()
                .zip(&slack_of_piece)
                .filter(|(p, _)| p.node_id == off.node_id && p.call == off.call)
                .map(|(_, s)| *s)
                .min()
                .unwrap();
            assert_eq!(off.slack_ms, ms(expected), "case {case}: {flow:?}");
        }
        // Every piece on the path has no slack, and the path adds up to the wall time less
        // the waits on it.
        let on_path: f64 = path.path.iter().map(|c| c.duration_ms).sum();
        assert!(on_path <= ms(wall) + 1e-9, "case {case}");
    }
}

#[test]
fn the_text_fits_80_columns_and_names_the_best_speedup() {
    let path = research().critical_path(2.0);
    let web = NodeShare {
        node_id: "search_web".to_owned(),
        total_duration_ms: 106.0,
        avg_duration_ms: 106.0,
        call_count: 1,
        percent_of_total: 60.0,
        self_duration_ms: 106.0,
    };
    let text = path.to_text(std::slice::from_ref(&web));
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(
        text.starts_with(
            "critical path (1217.0 ms, from the workflow's structure):\n  \
             plan -> search_papers -> analyze -> write_report\n"
        ),
        "{text}"
    );
    let row = |words: &[&str]| {
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == words)
    };
    assert!(row(&["search_web", "90.0", "106.0", "16.0"]), "{text}");
    assert!(
        row(&["analyze", "*", "421.0", "842.0", "407.5", "13.5"]),
        "{text}"
    );
    assert!(row(&["search_web", "0.0", "0.0", "-", "-"]), "{text}");
    assert!(
        text.contains(
            "speeding up analyze saves the most: 421.0 ms at 2x (842.0 ms if removed)\n\
             search_web is a bottleneck (60.0% of the time) but off the critical path:\n  \
             2x faster it saves 0.0 ms\n"
        ),
        "{text}"
    );
}

#[test]
fn a_long_path_wraps_after_an_arrow() {
    let flow = Flow::Seq(
        (0..30)
            .map(|i| work(&format!("step_number_{i}"), 1))
            .collect(),
    );
    let text = flow.critical_path(2.0).to_text(&[]);
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(text.contains("step_number_0 -> step_number_1 ->"), "{text}");
    assert!(text.contains("-> step_number_29\n"), "{text}");
}

#[test]
fn a_nested_call_that_outlives_its_parent_keeps_the_trace_timing() {
    // a [0, 100] spawns c [50, 300], which outlives it; b [150, 200] runs at the top level.
    let t = trace(vec![
        at(1, None, "a", 0, 100),
        at(3, Some(1), "c", 50, 300),
        at(2, None, "b", 150, 200),
    ]);
    let flow = Flow::from_trace(&t);
    assert_eq!(flow.wall_ns(), 300 * MS, "{flow:?}");
    let path = flow.analyze(PathMethod::Trace, 2.0);
    assert_eq!(ids(&path), ["a", "c"]);
    let b = path.off_path.iter().find(|c| c.node_id == "b").unwrap();
    assert_eq!(b.slack_ms, 100.0);
    assert_eq!(path.what_if_for("b").unwrap().removed_saves_ms, 0.0);
}
