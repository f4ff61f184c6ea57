//! [`Flow`]: a run as a series-parallel structure of timed pieces, and its evaluation:
//! wall time, the critical path, slack and what-if wall times.

use serde::{Deserialize, Serialize};

/// A run's structure with its measured durations: pieces of node work and fixed waits,
/// composed in sequence and in parallel. Each part starts when the part before it in its
/// sequence ends; a parallel group ends when its last branch ends.
///
/// The workflow executor builds one from its steps and parallel groups; [`Flow::from_trace`]
/// builds one from any trace (see there for the rule).
///
/// ```
/// use agent_profiler_runtime::critical::{Flow, Piece};
///
/// // plan, then search_web and search_papers side by side, then analyze.
/// let flow = Flow::Seq(vec![
///     Flow::work(Piece::new("plan", 90_000_000)),
///     Flow::Par(vec![
///         Flow::work(Piece::new("search_web", 106_000_000)),
///         Flow::work(Piece::new("search_papers", 122_000_000)),
///     ]),
///     Flow::work(Piece::new("analyze", 842_000_000)),
/// ]);
/// assert_eq!(flow.wall_ns(), 1_054_000_000);
/// let path = flow.critical_path(2.0);
/// let ids: Vec<&str> = path.path.iter().map(|c| c.node_id.as_str()).collect();
/// assert_eq!(ids, ["plan", "search_papers", "analyze"]);
/// assert_eq!(path.off_path[0].node_id, "search_web");
/// assert_eq!(path.off_path[0].slack_ms, 16.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// A stretch of one node's work.
    Work(Piece),
    /// Time that passes without being any node's work (a call's offset from the start of
    /// its group, time between top-level calls): it does not shrink when a node speeds up.
    Wait(u64),
    /// Parts run one after another.
    Seq(Vec<Flow>),
    /// Parts run at the same time.
    Par(Vec<Flow>),
}

/// A stretch of one node's work: the node, the call it belongs to, how long it took and how
/// much of that was spent waiting on LLM calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Piece {
    /// The node.
    pub node_id: String,
    /// The call this piece belongs to (its trace span), when known: the pieces of one call
    /// (its own work between its nested calls) are reported together.
    #[serde(default)]
    pub call: Option<u64>,
    /// When the piece started, ns since the Unix epoch (for display; 0 when unknown).
    #[serde(default)]
    pub start_unix_ns: u64,
    /// How long it took, ns.
    pub duration_ns: u64,
    /// How much of it was a wait on LLM calls, ns (at most `duration_ns`).
    #[serde(default)]
    pub llm_ns: u64,
}

impl Piece {
    /// A piece of `duration_ns` of node `node_id`'s work, none of it LLM time.
    pub fn new(node_id: impl Into<String>, duration_ns: u64) -> Self {
        Self {
            node_id: node_id.into(),
            call: None,
            start_unix_ns: 0,
            duration_ns,
            llm_ns: 0,
        }
    }

    /// The same piece with `llm_ns` of it spent waiting on LLM calls.
    pub fn llm(mut self, llm_ns: u64) -> Self {
        self.llm_ns = llm_ns.min(self.duration_ns);
        self
    }

    /// The same piece as part of call `call`, starting at `start_unix_ns`.
    pub fn of_call(mut self, call: u64, start_unix_ns: u64) -> Self {
        self.call = Some(call);
        self.start_unix_ns = start_unix_ns;
        self
    }
}

/// What a what-if changes: which node, and how its pieces' durations are scaled.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale<'a> {
    pub(crate) node_id: &'a str,
    /// Divides the LLM part of the node's pieces (infinity: removes it).
    pub(crate) llm: f64,
    /// Divides the rest of the node's pieces.
    pub(crate) own: f64,
}

impl Scale<'_> {
    fn apply(&self, piece: &Piece) -> u64 {
        if piece.node_id != self.node_id {
            return piece.duration_ns;
        }
        let llm = piece.llm_ns.min(piece.duration_ns);
        let own = piece.duration_ns - llm;
        divide(llm, self.llm).saturating_add(divide(own, self.own))
    }
}

fn divide(ns: u64, by: f64) -> u64 {
    if by.is_infinite() {
        0
    } else {
        (ns as f64 / by).round() as u64
    }
}

impl Flow {
    /// A flow of one piece of work.
    pub fn work(piece: Piece) -> Flow {
        Flow::Work(piece)
    }

    /// The wall time of the flow: sequences add up, parallel groups take their longest
    /// branch, ns.
    pub fn wall_ns(&self) -> u64 {
        self.wall_with(None)
    }

    /// The wall time with `scale` applied to one node's pieces.
    pub(crate) fn wall_with(&self, scale: Option<Scale<'_>>) -> u64 {
        match self {
            Flow::Work(piece) => scale.map_or(piece.duration_ns, |s| s.apply(piece)),
            Flow::Wait(ns) => *ns,
            Flow::Seq(parts) => parts
                .iter()
                .fold(0u64, |sum, p| sum.saturating_add(p.wall_with(scale))),
            Flow::Par(parts) => parts.iter().map(|p| p.wall_with(scale)).max().unwrap_or(0),
        }
    }

    /// Every piece of work, in the order of the structure.
    pub fn pieces(&self) -> Vec<&Piece> {
        let mut out = Vec::new();
        self.collect_pieces(&mut out);
        out
    }

    fn collect_pieces<'a>(&'a self, out: &mut Vec<&'a Piece>) {
        match self {
            Flow::Work(piece) => out.push(piece),
            Flow::Wait(_) => {}
            Flow::Seq(parts) | Flow::Par(parts) => {
                parts.iter().for_each(|p| p.collect_pieces(out));
            }
        }
    }

    /// The pieces on the critical path, in order: through a sequence, every part's path; through
    /// a parallel group, the path of its longest branch (the first of equals).
    pub(crate) fn path_pieces<'a>(&'a self, out: &mut Vec<&'a Piece>) {
        match self {
            Flow::Work(piece) => out.push(piece),
            Flow::Wait(_) => {}
            Flow::Seq(parts) => parts.iter().for_each(|p| p.path_pieces(out)),
            Flow::Par(parts) => {
                let mut longest: Option<(&Flow, u64)> = None;
                for part in parts {
                    let wall = part.wall_ns();
                    if longest.is_none_or(|(_, best)| wall > best) {
                        longest = Some((part, wall));
                    }
                }
                if let Some((part, _)) = longest {
                    part.path_pieces(out);
                }
            }
        }
    }

    /// Each piece's slack: how much longer it could take without making the flow longer,
    /// given that the flow must end by `latest_end` and starts at `start` (ns from the
    /// flow's start). Returns the flow's end.
    pub(crate) fn slacks<'a>(
        &'a self,
        start: u64,
        latest_end: u64,
        out: &mut Vec<(&'a Piece, u64)>,
    ) -> u64 {
        match self {
            Flow::Work(piece) => {
                let end = start.saturating_add(piece.duration_ns);
                out.push((piece, latest_end.saturating_sub(end)));
                end
            }
            Flow::Wait(ns) => start.saturating_add(*ns),
            Flow::Par(parts) => parts
                .iter()
                .map(|p| p.slacks(start, latest_end, out))
                .max()
                .unwrap_or(start),
            Flow::Seq(parts) => {
                // Each part must end by the latest start of the rest of the sequence.
                let walls: Vec<u64> = parts.iter().map(Flow::wall_ns).collect();
                let mut after = walls.iter().fold(0u64, |sum, w| sum.saturating_add(*w));
                let mut at = start;
                for (part, wall) in parts.iter().zip(&walls) {
                    after = after.saturating_sub(*wall);
                    at = part.slacks(at, latest_end.saturating_sub(after), out);
                }
                at
            }
        }
    }
}
