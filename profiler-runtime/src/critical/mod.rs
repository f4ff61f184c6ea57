//! The critical path of a run: the chain of calls that decided its wall time, the slack of
//! every call off it, and what the run would save if one node were faster.
//!
//! A bottleneck by share (the analyzer's) counts every node's time; in a run with
//! concurrent steps that misleads: of two searches run side by side, speeding up the
//! shorter saves nothing. Here the run is a [`Flow`], a series-parallel structure of timed
//! [`Piece`]s, and every figure comes from evaluating it:
//!
//! - the **wall time**: sequences add up, a parallel group lasts as long as its longest
//!   branch;
//! - the **critical path**: through a sequence every part's path, through a parallel group
//!   its longest branch's;
//! - a call's **slack**: how much longer it could have taken without making the run longer;
//! - **what-if**: the wall time with one node's pieces `k` times faster (and removed), by
//!   evaluating the flow again with the scaled durations; with the node's LLM wait alone
//!   `k` times shorter (a faster model), or its own work alone.
//!
//! For workflow-executor runs the flow is the workflow's real structure (ordered steps,
//! parallel groups) and the figures are exact for that structure. For any other traced code,
//! [`Flow::from_trace`] infers the flow from the spans, by a rule stated there; its what-if
//! figures are an estimate under that rule.

mod flow;
mod from_trace;
#[cfg(test)]
mod tests;
mod text;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use flow::Scale;
pub use flow::{Flow, Piece};

/// The speed-up the what-if figures use unless told otherwise: "twice as fast".
pub const DEFAULT_SPEEDUP: f64 = 2.0;

/// Where the structure of a run came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMethod {
    /// The workflow's declared structure (the executor's steps and parallel groups): exact.
    Structure,
    /// Inferred from the trace's spans ([`Flow::from_trace`]): an estimate.
    Trace,
}

/// The critical path of a run, the slack of the calls off it, and the what-if figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CriticalPath {
    /// Where the structure came from.
    pub method: PathMethod,
    /// The run's wall time as the structure gives it, ms (for the executor: the steps'
    /// time, without the executor's own bookkeeping between them).
    pub wall_time_ms: f64,
    /// The speed-up `k` of the what-if figures' "k times faster".
    pub speedup: f64,
    /// The calls on the critical path, in order.
    pub path: Vec<PathCall>,
    /// The calls off it, in the order they started, each with its slack.
    pub off_path: Vec<SlackCall>,
    /// Per node, what it would save to speed it up, largest saving first.
    pub what_if: Vec<WhatIf>,
    /// Calls on the path beyond the first [`MAX_LISTED`] (kept out of `path`; the
    /// figures count them).
    #[serde(default)]
    pub path_left_out: usize,
    /// Calls off the path beyond the [`MAX_LISTED`] with the least slack (kept out of
    /// `off_path`).
    #[serde(default)]
    pub off_path_left_out: usize,
    /// Nodes beyond the [`MAX_WHAT_IF`] given what-if figures (those off the path and
    /// shortest are left out).
    #[serde(default)]
    pub what_if_left_out: usize,
}

/// The most nodes given what-if figures: each figure evaluates the whole flow again.
pub const MAX_WHAT_IF: usize = 100;

/// The most calls listed in [`CriticalPath::path`] and in [`CriticalPath::off_path`]: a
/// summary of a long trace stays small (the what-if figures cover every call whatever the
/// lists keep).
pub const MAX_LISTED: usize = 200;

/// A call on the critical path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathCall {
    /// The node.
    pub node_id: String,
    /// Its call's trace span, when known.
    pub call: Option<u64>,
    /// When it started, ms from the run's start (as the structure places it).
    pub start_ms: f64,
    /// Its time on the path, ms: its own work, without the calls nested in it, which are
    /// path entries of their own.
    pub duration_ms: f64,
    /// `duration_ms` as a share of the wall time, percent.
    pub percent_of_wall: f64,
}

/// A call off the critical path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlackCall {
    /// The node.
    pub node_id: String,
    /// Its call's trace span, when known.
    pub call: Option<u64>,
    /// When it started, ms from the run's start (as the structure places it).
    pub start_ms: f64,
    /// Its time, ms (its own work, without nested calls).
    pub duration_ms: f64,
    /// How much longer it could have taken without making the run longer, ms.
    pub slack_ms: f64,
}

/// What speeding up one node would buy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WhatIf {
    /// The node.
    pub node_id: String,
    /// Whether some of its time is on the critical path.
    pub on_path: bool,
    /// The node's time in the structure, ms (all its calls' pieces).
    pub duration_ms: f64,
    /// What the run would save with the node `speedup` times faster, ms.
    pub faster_saves_ms: f64,
    /// What the run would save without the node at all, ms.
    pub removed_saves_ms: f64,
    /// What it would save with only the node's LLM wait `speedup` times shorter (a faster
    /// model), ms; `None` for a node without LLM time.
    pub llm_faster_saves_ms: Option<f64>,
    /// What it would save with only the node's own work `speedup` times faster, ms; `None`
    /// for a node without LLM time (then it is `faster_saves_ms`).
    pub own_faster_saves_ms: Option<f64>,
}

impl CriticalPath {
    /// The what-if entry of `node_id`.
    pub fn what_if_for(&self, node_id: &str) -> Option<&WhatIf> {
        self.what_if.iter().find(|w| w.node_id == node_id)
    }

    /// The node whose speed-up saves the most (`None` when no speed-up saves anything).
    pub fn best_speedup(&self) -> Option<&WhatIf> {
        self.what_if.first().filter(|w| w.faster_saves_ms > 0.0)
    }

    /// Whether some call of `node_id` is on the critical path.
    pub fn is_on_path(&self, node_id: &str) -> bool {
        self.path.iter().any(|c| c.node_id == node_id)
    }

    /// The path as `a -> b -> c`, consecutive calls of one node named once.
    pub fn path_text(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for call in &self.path {
            if names.last() != Some(&call.node_id.as_str()) {
                names.push(&call.node_id);
            }
        }
        names.join(" -> ")
    }
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// A call's key: its node and its span (pieces of one call are reported together).
type CallKey<'a> = (&'a str, Option<u64>);

impl Flow {
    /// The critical path, the slack of the calls off it and the what-if figures with
    /// `speedup` (`k`; at least 1: a smaller or non-finite value is taken as
    /// [`DEFAULT_SPEEDUP`]).
    pub fn critical_path(&self, speedup: f64) -> CriticalPath {
        self.analyze(PathMethod::Structure, speedup)
    }

    pub(crate) fn analyze(&self, method: PathMethod, speedup: f64) -> CriticalPath {
        let k = if speedup.is_finite() && speedup >= 1.0 {
            speedup
        } else {
            DEFAULT_SPEEDUP
        };
        let wall = self.wall_ns();
        let mut placed = Vec::new();
        self.place(0, wall, &mut placed);
        let mut on_path = Vec::new();
        self.path_pieces(&mut on_path);
        let path_set: HashSet<*const Piece> =
            on_path.iter().map(|p| std::ptr::from_ref(*p)).collect();
        let is_on_path = |piece: &Piece| path_set.contains(&std::ptr::from_ref(piece));

        let mut path = merge_path(&placed, &on_path, wall);
        let path_left_out = path.len().saturating_sub(MAX_LISTED);
        path.truncate(MAX_LISTED);
        let mut off_path = off_path_calls(&placed, &is_on_path);
        let off_path_left_out = off_path.len().saturating_sub(MAX_LISTED);
        if off_path_left_out > 0 {
            off_path.sort_by(|a, b| a.slack_ms.total_cmp(&b.slack_ms));
            off_path.truncate(MAX_LISTED);
            off_path.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        }
        let (what_if, what_if_left_out) = self.what_if(k, wall, &placed, &is_on_path);
        CriticalPath {
            method,
            wall_time_ms: ms(wall),
            speedup: k,
            path,
            off_path,
            what_if,
            path_left_out,
            off_path_left_out,
            what_if_left_out,
        }
    }

    /// Every piece with its earliest start (ns from the flow's start) and its slack.
    fn place<'a>(&'a self, start: u64, latest_end: u64, out: &mut Vec<Placed<'a>>) {
        let mut slacks = Vec::new();
        self.slacks(start, latest_end, &mut slacks);
        let mut starts = Vec::new();
        self.starts(start, &mut starts);
        out.extend(
            slacks
                .into_iter()
                .zip(starts)
                .map(|((piece, slack), at)| Placed {
                    piece,
                    start: at,
                    slack,
                }),
        );
    }

    /// Every piece's earliest start, in the order of [`pieces`](Self::pieces).
    fn starts(&self, start: u64, out: &mut Vec<u64>) -> u64 {
        match self {
            Flow::Work(piece) => {
                out.push(start);
                start.saturating_add(piece.duration_ns)
            }
            Flow::Wait(ns) => start.saturating_add(*ns),
            Flow::Seq(parts) => parts.iter().fold(start, |at, p| p.starts(at, out)),
            Flow::Par(parts) => parts
                .iter()
                .map(|p| p.starts(start, out))
                .max()
                .unwrap_or(start),
        }
    }

    fn what_if(
        &self,
        k: f64,
        wall: u64,
        placed: &[Placed<'_>],
        is_on_path: &dyn Fn(&Piece) -> bool,
    ) -> (Vec<WhatIf>, usize) {
        let mut nodes: Vec<(&str, u64, u64, bool)> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for p in placed {
            let on = is_on_path(p.piece);
            match index.get(p.piece.node_id.as_str()).map(|&i| &mut nodes[i]) {
                Some(n) => {
                    n.1 = n.1.saturating_add(p.piece.duration_ns);
                    n.2 = n.2.saturating_add(p.piece.llm_ns.min(p.piece.duration_ns));
                    n.3 |= on;
                }
                None => {
                    index.insert(&p.piece.node_id, nodes.len());
                    nodes.push((
                        &p.piece.node_id,
                        p.piece.duration_ns,
                        p.piece.llm_ns.min(p.piece.duration_ns),
                        on,
                    ));
                }
            }
        }
        // Each figure evaluates the whole flow again: the nodes most likely to matter (on the
        // path, then the longest) get them, so that a trace with thousands of distinct ids
        // stays quick to summarise.
        nodes.sort_by(|a, b| b.3.cmp(&a.3).then(b.1.cmp(&a.1)));
        let left_out = nodes.len().saturating_sub(MAX_WHAT_IF);
        nodes.truncate(MAX_WHAT_IF);
        let saves = |node_id: &str, llm: f64, own: f64| {
            ms(wall.saturating_sub(self.wall_with(Some(Scale { node_id, llm, own }))))
        };
        let mut out: Vec<WhatIf> = nodes
            .into_iter()
            .map(|(node_id, duration, llm, on_path)| WhatIf {
                node_id: node_id.to_owned(),
                on_path,
                duration_ms: ms(duration),
                faster_saves_ms: saves(node_id, k, k),
                removed_saves_ms: saves(node_id, f64::INFINITY, f64::INFINITY),
                llm_faster_saves_ms: (llm > 0).then(|| saves(node_id, k, 1.0)),
                own_faster_saves_ms: (llm > 0).then(|| saves(node_id, 1.0, k)),
            })
            .collect();
        out.sort_by(|a, b| {
            b.faster_saves_ms
                .total_cmp(&a.faster_saves_ms)
                .then(b.removed_saves_ms.total_cmp(&a.removed_saves_ms))
                .then_with(|| a.node_id.cmp(&b.node_id))
        });
        (out, left_out)
    }
}

/// A piece with its earliest start and its slack, ns.
struct Placed<'a> {
    piece: &'a Piece,
    start: u64,
    slack: u64,
}

/// The path's pieces in order, consecutive pieces of one call merged.
fn merge_path(placed: &[Placed<'_>], on_path: &[&Piece], wall: u64) -> Vec<PathCall> {
    let starts: HashMap<*const Piece, u64> = placed
        .iter()
        .map(|p| (std::ptr::from_ref(p.piece), p.start))
        .collect();
    let start_of = |piece: &Piece| starts.get(&std::ptr::from_ref(piece)).copied().unwrap_or(0);
    let mut path: Vec<PathCall> = Vec::new();
    for piece in on_path {
        if let Some(last) = path
            .last_mut()
            .filter(|c| c.node_id == piece.node_id && c.call == piece.call)
        {
            last.duration_ms += ms(piece.duration_ns);
            continue;
        }
        path.push(PathCall {
            node_id: piece.node_id.clone(),
            call: piece.call,
            start_ms: ms(start_of(piece)),
            duration_ms: ms(piece.duration_ns),
            percent_of_wall: 0.0,
        });
    }
    for call in &mut path {
        call.percent_of_wall = crate::summary::percent(call.duration_ms, ms(wall));
    }
    path
}

/// The calls none of whose pieces is on the path, with their smallest slack.
fn off_path_calls(placed: &[Placed<'_>], is_on_path: &dyn Fn(&Piece) -> bool) -> Vec<SlackCall> {
    let mut calls: Vec<(CallKey<'_>, u64, u64, u64, bool)> = Vec::new();
    let mut index: HashMap<CallKey<'_>, usize> = HashMap::new();
    for p in placed {
        let key = (p.piece.node_id.as_str(), p.piece.call);
        let on = is_on_path(p.piece);
        match index.get(&key) {
            Some(&i) => {
                let c = &mut calls[i];
                c.1 = c.1.min(p.start);
                c.2 = c.2.saturating_add(p.piece.duration_ns);
                c.3 = c.3.min(p.slack);
                c.4 |= on;
            }
            None => {
                index.insert(key, calls.len());
                calls.push((key, p.start, p.piece.duration_ns, p.slack, on));
            }
        }
    }
    let mut off: Vec<SlackCall> = calls
        .into_iter()
        .filter(|c| !c.4)
        .map(|((node_id, call), start, duration, slack, _)| SlackCall {
            node_id: node_id.to_owned(),
            call,
            start_ms: ms(start),
            duration_ms: ms(duration),
            slack_ms: ms(slack),
        })
        .collect();
    off.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    off
}
