//! Lanes for drawing a [`Trace`]: every span and poll slice placed on a lane where items
//! nest properly, as timeline views (Perfetto, a Gantt chart) need them.
//!
//! Sync calls nest strictly on their thread, but async calls overlap each other (`join!`,
//! `join_all`, spawned tasks) and move between threads, so threads are not the right rows.
//! [`layout`] builds rows ("lanes") from the call tree instead:
//!
//! - a child goes on its parent's lane when it nests there, otherwise on a lane opened for
//!   the children of that parent (concurrent siblings get their own lanes; a lane whose
//!   items have all ended is reused by a later sibling);
//! - the poll slices of an async span go on the span's lane, under its wall-time slice, so
//!   that busy time shows within wall time; an async child that stays pending across its
//!   parent's polls overlaps them and so gets a lane of its own;
//! - top-level spans (and spans whose parent was not kept) go on lanes per thread.
//!
//! On every lane any two items are either disjoint (touching counts as disjoint) or one
//! contains the other, and [`Item::depth`] is the nesting level on the lane.
//!
//! ```
//! use agent_profiler_report::layout::{ItemKind, layout};
//! use agent_profiler_runtime::{Outcome, Span, Trace};
//!
//! let span = |id, parent, node: &str, start, end| Span {
//!     span_id: id,
//!     parent_span_id: parent,
//!     node_id: node.to_owned().into(),
//!     parent_node_id: None,
//!     start_unix_ns: start,
//!     end_unix_ns: end,
//!     busy_ns: end - start,
//!     thread: 1,
//!     is_async: false,
//!     outcome: Outcome::Ok,
//!     llm_calls: Vec::new(),
//! };
//! let trace = Trace {
//!     spans: vec![span(2, Some(1), "retrieve", 10, 40), span(1, None, "workflow", 0, 100)],
//!     ..Trace::default()
//! };
//! let layout = layout(&trace);
//! assert_eq!(layout.lanes.len(), 1);
//! let items = &layout.lanes[0].items;
//! assert!(matches!(items[0].kind, ItemKind::Span(1)) && items[0].depth == 0); // workflow
//! assert!(matches!(items[1].kind, ItemKind::Span(0)) && items[1].depth == 1); // retrieve
//! assert_eq!((layout.start_unix_ns, layout.end_unix_ns), (0, 100));
//! ```

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};

use agent_profiler_runtime::Trace;

/// Where each span and poll slice of a trace is drawn: lanes (rows), each holding items that
/// nest properly. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    /// The lanes, in the order they were opened (parents' lanes before their children's).
    pub lanes: Vec<Lane>,
    /// The earliest start among spans and polls, ns since the Unix epoch (0 if none).
    pub start_unix_ns: u64,
    /// The latest end among spans and polls, ns since the Unix epoch (0 if none).
    pub end_unix_ns: u64,
}

/// One row of a timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lane {
    /// What the lane holds: the nodes of its outermost items and their thread, e.g.
    /// `"workflow (thread 1)"` or `"plan, act, check +2 more (threads 2, 3)"` (a
    /// lane of top-level calls).
    pub name: String,
    /// The items, by start time, an item before the items it contains.
    pub items: Vec<Item>,
}

/// One slice on a lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Item {
    /// The span or poll slice drawn.
    pub kind: ItemKind,
    /// Its start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Its end, ns since the Unix epoch (never before its start).
    pub end_unix_ns: u64,
    /// How many items of the lane contain it (0: outermost).
    pub depth: usize,
}

impl Item {
    /// The item's length, ns.
    pub fn duration_ns(&self) -> u64 {
        self.end_unix_ns - self.start_unix_ns
    }
}

/// What an [`Item`] draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ItemKind {
    /// A call: an index into [`Trace::spans`]. For async calls, the wall time.
    Span(usize),
    /// A poll of an async call: an index into [`Trace::polls`].
    Poll(usize),
    /// A timed LLM call, from its start to its end (only in [`layout_with_llm_calls`]).
    Llm {
        /// The span that made the call: an index into [`Trace::spans`].
        span: usize,
        /// The call: an index into that span's [`llm_calls`](agent_profiler_runtime::Span::llm_calls).
        call: usize,
    },
}

/// Places every span and poll slice of `trace` on lanes. Deterministic; never panics,
/// whatever the input (zero-length spans, children that outlive their parents, parents
/// that were not kept, cycles of parent ids, equal timestamps). A span whose end is before
/// its start is drawn with zero length.
pub fn layout(trace: &Trace) -> Layout {
    Builder::new(trace, false).run()
}

/// [`layout`] with each timed LLM call ([`ItemKind::Llm`]) placed like a child of the span
/// that made it: on the span's lane, inside its slice, when it nests there (a sync node),
/// else on a lane of the span's children (an async node, whose polls the call overlaps).
/// Calls without timing (tracked from an answer alone) have no length and are left out.
pub fn layout_with_llm_calls(trace: &Trace) -> Layout {
    Builder::new(trace, true).run()
}

/// Places items; one per call of [`layout`].
struct Builder<'a> {
    trace: &'a Trace,
    lanes: Vec<LaneTree>,
    groups: Vec<Group>,
    /// The group of lanes opened for each span's children (and polls that did not fit).
    child_group: Vec<Option<usize>>,
    /// The group of lanes for top-level spans, per thread.
    root_groups: HashMap<u64, usize>,
    /// The lane of each span, once placed.
    span_lane: Vec<Option<usize>>,
    /// The first span with each id: the one children and polls attach to.
    by_id: HashMap<u64, usize>,
    /// Whether timed LLM calls are placed.
    llm_calls: bool,
}

/// Lanes opened for the children of one span (or the top-level spans of one thread), with
/// the latest end on each, to find a lane a later sibling fits on without a search.
#[derive(Default)]
struct Group {
    by_end: BTreeSet<(u64, usize)>,
}

/// One lane while it is built: its items as a forest (each node's children are disjoint
/// and sorted by start, and lie within it).
#[derive(Default)]
struct LaneTree {
    nodes: Vec<Node>,
    top: Vec<u32>,
    group: Option<usize>,
    max_end: u64,
}

struct Node {
    start: u64,
    end: u64,
    kind: ItemKind,
    children: Vec<u32>,
}

/// Where an interval goes in a lane's forest.
enum Fit {
    /// Into this list (`None`: the top level) at this position, adopting the siblings in
    /// `adopt` (which it contains).
    Insert {
        parent: Option<u32>,
        adopt: std::ops::Range<usize>,
    },
    /// Nowhere: it overlaps an item partially.
    Conflict,
}

impl LaneTree {
    fn list(&self, parent: Option<u32>) -> &Vec<u32> {
        match parent {
            None => &self.top,
            Some(n) => &self.nodes[n as usize].children,
        }
    }

    fn list_mut(&mut self, parent: Option<u32>) -> &mut Vec<u32> {
        match parent {
            None => &mut self.top,
            Some(n) => &mut self.nodes[n as usize].children,
        }
    }

    /// Where `[s, e]` would go: O(depth · log n).
    fn fit(&self, s: u64, e: u64) -> Fit {
        let mut parent = None;
        loop {
            let list = self.list(parent);
            let node = |i: usize| &self.nodes[list[i] as usize];
            // Siblings are disjoint and sorted, so both their starts and their ends are
            // sorted, and those that overlap `(s, e)` form a run `from..to`.
            let from = list.partition_point(|&n| self.nodes[n as usize].end <= s);
            let to = list.partition_point(|&n| self.nodes[n as usize].start < e);
            if from >= to {
                let at = list.partition_point(|&n| {
                    let n = &self.nodes[n as usize];
                    (n.start, n.end) <= (s, e)
                });
                return Fit::Insert {
                    parent,
                    adopt: at..at,
                };
            }
            if to - from == 1 && node(from).start <= s && e <= node(from).end {
                parent = Some(list[from]);
                continue;
            }
            if (from..to).all(|i| s <= node(i).start && node(i).end <= e) {
                return Fit::Insert {
                    parent,
                    adopt: from..to,
                };
            }
            return Fit::Conflict;
        }
    }

    /// Adds `[s, e]` if it nests with every item; returns whether it did.
    fn try_insert(&mut self, s: u64, e: u64, kind: ItemKind) -> bool {
        let Fit::Insert { parent, adopt } = self.fit(s, e) else {
            return false;
        };
        let id = self.nodes.len() as u32;
        let at = adopt.start;
        let children: Vec<u32> = self.list_mut(parent).splice(adopt, [id]).collect();
        debug_assert!(self.list(parent)[at] == id);
        self.nodes.push(Node {
            start: s,
            end: e,
            kind,
            children,
        });
        self.max_end = self.max_end.max(e);
        true
    }

    /// The items in preorder (by start, containers first), with their depths.
    fn items(&self) -> Vec<Item> {
        let mut items = Vec::with_capacity(self.nodes.len());
        let mut stack: Vec<(u32, usize)> = self.top.iter().rev().map(|&n| (n, 0)).collect();
        while let Some((n, depth)) = stack.pop() {
            let node = &self.nodes[n as usize];
            items.push(Item {
                kind: node.kind,
                start_unix_ns: node.start,
                end_unix_ns: node.end,
                depth,
            });
            stack.extend(node.children.iter().rev().map(|&c| (c, depth + 1)));
        }
        items
    }
}

impl<'a> Builder<'a> {
    fn new(trace: &'a Trace, llm_calls: bool) -> Self {
        Self {
            llm_calls,
            trace,
            lanes: Vec::new(),
            groups: Vec::new(),
            child_group: vec![None; trace.spans.len()],
            root_groups: HashMap::new(),
            span_lane: vec![None; trace.spans.len()],
            by_id: HashMap::new(),
        }
    }

    fn span_interval(&self, i: usize) -> (u64, u64) {
        let s = &self.trace.spans[i];
        (s.start_unix_ns, s.end_unix_ns.max(s.start_unix_ns))
    }

    fn poll_interval(&self, i: usize) -> (u64, u64) {
        let p = &self.trace.polls[i];
        (p.start_unix_ns, p.end_unix_ns.max(p.start_unix_ns))
    }

    fn run(mut self) -> Layout {
        let trace = self.trace;
        let spans = &trace.spans;
        let mut by_id: HashMap<u64, usize> = HashMap::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            by_id.entry(span.span_id).or_insert(i);
        }
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
        let mut roots = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match span.parent_span_id.and_then(|p| by_id.get(&p)) {
                Some(&p) if p != i => children[p].push(i),
                _ => roots.push(i),
            }
        }
        let mut polls: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
        let mut orphan_polls = Vec::new();
        for (i, poll) in trace.polls.iter().enumerate() {
            match by_id.get(&poll.span_id) {
                Some(&s) => polls[s].push(i),
                None => orphan_polls.push(i),
            }
        }
        let span_key = |&i: &usize| {
            let (s, e) = self.span_interval(i);
            (s, Reverse(e), i)
        };
        let poll_key = |&i: &usize| {
            let (s, e) = self.poll_interval(i);
            (s, Reverse(e), i)
        };
        roots.sort_by_key(span_key);
        for list in &mut children {
            list.sort_by_key(span_key);
        }
        for list in &mut polls {
            list.sort_by_key(poll_key);
        }
        orphan_polls.sort_by_key(poll_key);

        // Depth-first from the roots, then from any span left over (a cycle of parent ids).
        let mut visited = vec![false; spans.len()];
        let mut stack: Vec<usize> = Vec::new();
        let leftovers: Vec<usize> = (0..spans.len()).collect();
        for start in roots.iter().chain(&leftovers) {
            if visited[*start] {
                continue;
            }
            stack.push(*start);
            while let Some(i) = stack.pop() {
                if visited[i] {
                    continue;
                }
                visited[i] = true;
                let parent = spans[i]
                    .parent_span_id
                    .and_then(|p| by_id.get(&p).copied())
                    .filter(|&p| p != i && self.span_lane[p].is_some());
                self.place_span(i, parent);
                for &p in &polls[i] {
                    self.place_poll(p, Some(i));
                }
                self.place_llm_calls(i);
                stack.extend(children[i].iter().rev());
            }
        }
        for &p in &orphan_polls {
            self.place_poll(p, None);
        }
        self.by_id = by_id;
        self.finish()
    }

    /// Puts span `i` on its parent's lane if it fits there, else on a lane of its siblings.
    fn place_span(&mut self, i: usize, parent: Option<usize>) {
        let (s, e) = self.span_interval(i);
        let (preferred, group) = match parent {
            Some(p) => (self.span_lane[p], self.child_group_of(p)),
            None => (None, self.root_group_of(self.trace.spans[i].thread)),
        };
        let lane = self.place(s, e, ItemKind::Span(i), preferred, group);
        self.span_lane[i] = Some(lane);
    }

    /// Puts poll `i` on its span's lane if it fits there, else on a lane of the span's
    /// children; a poll whose span was not kept goes with the top-level spans of its thread.
    fn place_poll(&mut self, i: usize, span: Option<usize>) {
        let (s, e) = self.poll_interval(i);
        let (preferred, group) = match span {
            Some(span) => (self.span_lane[span], self.child_group_of(span)),
            None => (None, self.root_group_of(self.trace.polls[i].thread)),
        };
        self.place(s, e, ItemKind::Poll(i), preferred, group);
    }

    /// Puts the timed LLM calls of span `i` on its lane if they nest there, else on a lane
    /// of its children.
    fn place_llm_calls(&mut self, i: usize) {
        if !self.llm_calls {
            return;
        }
        for (call, (s, e)) in llm_intervals(self.trace, i) {
            let group = self.child_group_of(i);
            let kind = ItemKind::Llm { span: i, call };
            self.place(s, e, kind, self.span_lane[i], group);
        }
    }

    fn child_group_of(&mut self, span: usize) -> usize {
        if let Some(g) = self.child_group[span] {
            return g;
        }
        let g = self.new_group();
        self.child_group[span] = Some(g);
        g
    }

    fn root_group_of(&mut self, thread: u64) -> usize {
        if let Some(&g) = self.root_groups.get(&thread) {
            return g;
        }
        let g = self.new_group();
        self.root_groups.insert(thread, g);
        g
    }

    fn new_group(&mut self) -> usize {
        self.groups.push(Group::default());
        self.groups.len() - 1
    }

    /// Places `[s, e]` on `preferred` if it nests there, else on the lane of `group` whose
    /// items all ended by `s` (the one that ended first), else on a new lane of `group`.
    fn place(
        &mut self,
        s: u64,
        e: u64,
        kind: ItemKind,
        preferred: Option<usize>,
        group: usize,
    ) -> usize {
        if let Some(lane) = preferred {
            if self.insert(lane, s, e, kind) {
                return lane;
            }
        }
        if let Some(&(end, lane)) = self.groups[group].by_end.first() {
            if end <= s && self.insert(lane, s, e, kind) {
                return lane;
            }
        }
        let lane = self.lanes.len();
        self.lanes.push(LaneTree {
            group: Some(group),
            ..LaneTree::default()
        });
        self.groups[group].by_end.insert((0, lane));
        let inserted = self.insert(lane, s, e, kind);
        debug_assert!(inserted, "an empty lane takes anything");
        lane
    }

    /// Inserts into a lane, keeping its group's index of ends up to date.
    fn insert(&mut self, lane: usize, s: u64, e: u64, kind: ItemKind) -> bool {
        let tree = &mut self.lanes[lane];
        let before = tree.max_end;
        if !tree.try_insert(s, e, kind) {
            return false;
        }
        let after = tree.max_end;
        if after != before {
            if let Some(g) = tree.group {
                let set = &mut self.groups[g].by_end;
                set.remove(&(before, lane));
                set.insert((after, lane));
            }
        }
        true
    }

    fn finish(self) -> Layout {
        let trace = self.trace;
        let starts = trace.spans.iter().map(|s| s.start_unix_ns);
        let starts = starts.chain(trace.polls.iter().map(|p| p.start_unix_ns));
        let ends = trace
            .spans
            .iter()
            .map(|s| s.end_unix_ns.max(s.start_unix_ns));
        let ends = ends.chain(
            trace
                .polls
                .iter()
                .map(|p| p.end_unix_ns.max(p.start_unix_ns)),
        );
        let llm = (0..trace.spans.len())
            .filter(|_| self.llm_calls)
            .flat_map(|i| llm_intervals(trace, i).map(|(_, interval)| interval));
        let (starts, ends) = llm.fold((starts.min(), ends.max()), |(start, end), (s, e)| {
            (
                Some(start.map_or(s, |x| x.min(s))),
                Some(end.map_or(e, |x| x.max(e))),
            )
        });
        let lanes = self
            .lanes
            .iter()
            .map(|tree| {
                let items = tree.items();
                Lane {
                    name: lane_name(trace, &self.by_id, &items),
                    items,
                }
            })
            .collect();
        Layout {
            lanes,
            start_unix_ns: starts.unwrap_or(0),
            end_unix_ns: ends.unwrap_or(0),
        }
    }
}

/// The timed LLM calls of span `i`: each call's index and its interval.
fn llm_intervals(trace: &Trace, i: usize) -> impl Iterator<Item = (usize, (u64, u64))> + '_ {
    trace.spans[i]
        .llm_calls
        .iter()
        .enumerate()
        .filter_map(|(c, call)| {
            let t = call.timing.as_ref()?;
            Some((c, (t.start_unix_ns, t.end_unix_ns.max(t.start_unix_ns))))
        })
}

/// `"a, b, c +2 more (thread 1)"`: the distinct nodes of the outermost items, and their
/// threads. `by_id`: the first span with each id.
fn lane_name(trace: &Trace, by_id: &HashMap<u64, usize>, items: &[Item]) -> String {
    const SHOWN: usize = 3;
    let mut seen: HashSet<String> = HashSet::new();
    let mut shown: Vec<String> = Vec::new();
    let mut threads: BTreeSet<u64> = BTreeSet::new();
    for item in items.iter().filter(|item| item.depth == 0) {
        let (node, thread) = match item.kind {
            ItemKind::Span(i) => (trace.spans[i].node_id.to_string(), trace.spans[i].thread),
            ItemKind::Poll(i) => {
                let poll = &trace.polls[i];
                let node = by_id.get(&poll.span_id).map_or_else(
                    || "poll".to_owned(),
                    |&s| format!("{} poll", trace.spans[s].node_id),
                );
                (node, poll.thread)
            }
            ItemKind::Llm { span, .. } => (
                format!("{} LLM", trace.spans[span].node_id),
                trace.spans[span].thread,
            ),
        };
        if !seen.contains(&node) {
            if shown.len() < SHOWN {
                shown.push(node.clone());
            }
            seen.insert(node);
        }
        threads.insert(thread);
    }
    let mut name = shown.join(", ");
    if seen.len() > SHOWN {
        name.push_str(&format!(" +{} more", seen.len() - SHOWN));
    }
    let list = threads
        .iter()
        .take(SHOWN)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more = if threads.len() > SHOWN { ", …" } else { "" };
    match threads.len() {
        0 => name,
        1 => format!("{name} (thread {list})"),
        _ => format!("{name} (threads {list}{more})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_profiler_runtime::trace::test_support::span;
    use agent_profiler_runtime::trace::{PollSlice, Span};

    fn asyn(id: u64, parent: Option<u64>, node: &str, start: u64, end: u64) -> Span {
        Span {
            is_async: true,
            ..span(id, parent, node, start, end)
        }
    }

    fn poll(span_id: u64, start: u64, end: u64) -> PollSlice {
        PollSlice {
            span_id,
            thread: 1,
            start_unix_ns: start,
            end_unix_ns: end,
        }
    }

    /// A call of `span` timed from `start` to `end` (`None`: tracked from its answer).
    fn with_call(mut span: Span, timing: Option<(u64, u64)>) -> Span {
        let mut info = agent_profiler_runtime::MultiProviderCostTracker::new()
            .track_usage(
                "openai",
                "gpt-4o",
                agent_profiler_runtime::Usage::new(10, 5),
            )
            .unwrap();
        info.timing = timing.map(|(start, end)| agent_profiler_runtime::LlmTiming {
            start_unix_ns: start,
            end_unix_ns: end,
            first_chunk_unix_ns: None,
            stream: false,
            outcome: agent_profiler_runtime::LlmOutcome::Ok,
            error: None,
        });
        span.llm_calls.push(info);
        span
    }

    #[test]
    fn llm_calls_nest_in_their_node_or_go_under_it() {
        // A sync node with a timed call and an untimed one; an async node whose call
        // overlaps its polls; a call that outlives its node.
        let sync = with_call(
            with_call(span(1, None, "sync", 0, 100), Some((10, 60))),
            None,
        );
        let asyn = with_call(asyn(2, None, "async", 200, 400), Some((205, 390)));
        let late = with_call(span(3, None, "late", 500, 600), Some((550, 700)));
        let trace = Trace {
            spans: vec![sync, asyn, late],
            polls: vec![poll(2, 200, 210), poll(2, 380, 400)],
            ..Trace::default()
        };
        assert!(
            placement(&layout(&trace))
                .keys()
                .all(|k| !matches!(k, ItemKind::Llm { .. }))
        );
        let layout = layout_with_llm_calls(&trace);
        let placed = placement(&layout);
        assert_eq!(
            placed.len(),
            3 + 2 + 3,
            "three timed calls, the untimed one left out"
        );
        let sync_lane = placed[&ItemKind::Span(0)].0;
        assert_eq!(placed[&ItemKind::Llm { span: 0, call: 0 }], (sync_lane, 1));
        let async_lane = placed[&ItemKind::Span(1)].0;
        let (lane, _) = placed[&ItemKind::Llm { span: 1, call: 0 }];
        assert_ne!(lane, async_lane, "overlaps the polls");
        assert_eq!(
            placed[&ItemKind::Poll(0)].0,
            async_lane,
            "polls stay in their span"
        );
        let (lane, _) = placed[&ItemKind::Llm { span: 2, call: 0 }];
        assert_ne!(lane, placed[&ItemKind::Span(2)].0);
        assert_eq!(layout.end_unix_ns, 700);
        for lane in &layout.lanes {
            for (i, a) in lane.items.iter().enumerate() {
                for b in &lane.items[..i] {
                    assert!(!partial(a, b), "{a:?} and {b:?} overlap partially");
                }
            }
        }
    }

    /// Where each item went: lane and depth, by kind.
    fn placement(layout: &Layout) -> HashMap<ItemKind, (usize, usize)> {
        let mut map = HashMap::new();
        for (l, lane) in layout.lanes.iter().enumerate() {
            for item in &lane.items {
                assert!(
                    map.insert(item.kind, (l, item.depth)).is_none(),
                    "placed twice"
                );
            }
        }
        map
    }

    fn disjoint(a: &Item, b: &Item) -> bool {
        a.end_unix_ns <= b.start_unix_ns || b.end_unix_ns <= a.start_unix_ns
    }

    fn contains(a: &Item, b: &Item) -> bool {
        a.start_unix_ns <= b.start_unix_ns && b.end_unix_ns <= a.end_unix_ns
    }

    fn partial(a: &Item, b: &Item) -> bool {
        !disjoint(a, b) && !contains(a, b) && !contains(b, a)
    }

    /// Every invariant the layout promises, checked by brute force.
    fn check(trace: &Trace, layout: &Layout) {
        let placed = placement(layout);
        assert_eq!(placed.len(), trace.spans.len() + trace.polls.len());
        for lane in &layout.lanes {
            assert!(!lane.items.is_empty());
            assert!(!lane.name.is_empty());
            for (i, a) in lane.items.iter().enumerate() {
                assert!(a.start_unix_ns <= a.end_unix_ns);
                assert!(layout.start_unix_ns <= a.start_unix_ns);
                assert!(a.end_unix_ns <= layout.end_unix_ns);
                if i > 0 {
                    let prev = &lane.items[i - 1];
                    assert!(prev.start_unix_ns <= a.start_unix_ns, "sorted by start");
                }
                let mut has_container = a.depth == 0;
                for b in &lane.items[..i] {
                    assert!(!partial(a, b), "{a:?} and {b:?} overlap partially");
                    if !disjoint(a, b) {
                        // The earlier one (in preorder) contains the later one.
                        assert!(b.depth < a.depth && contains(b, a), "{b:?} / {a:?}");
                    }
                    if b.depth + 1 == a.depth && contains(b, a) {
                        has_container = true;
                    }
                }
                assert!(
                    has_container,
                    "{a:?} has depth {} and no container",
                    a.depth
                );
            }
        }
        // A child (a poll) is off its parent's (span's) lane only when it could not nest
        // there.
        let item = |kind: ItemKind| {
            let (lane, _) = placed[&kind];
            *layout.lanes[lane]
                .items
                .iter()
                .find(|i| i.kind == kind)
                .unwrap()
        };
        let lane_of = |id: u64| {
            trace
                .spans
                .iter()
                .position(|s| s.span_id == id)
                .map(|i| placed[&ItemKind::Span(i)].0)
        };
        let check_fit = |kind: ItemKind, owner: Option<usize>| {
            let Some(owner_lane) = owner else { return };
            let (lane, _) = placed[&kind];
            if lane != owner_lane {
                let it = item(kind);
                assert!(
                    layout.lanes[owner_lane]
                        .items
                        .iter()
                        .any(|other| partial(other, &it)),
                    "{kind:?} would have fit on lane {owner_lane}"
                );
            }
        };
        // Spans in a cycle of parent ids may be placed before their parent: skip them.
        let first = |id: u64| trace.spans.iter().position(|s| s.span_id == id);
        let rooted = |mut i: usize| {
            for _ in 0..=trace.spans.len() {
                match trace.spans[i].parent_span_id.and_then(first) {
                    Some(p) if p != i => i = p,
                    _ => return true,
                }
            }
            false
        };
        for (i, s) in trace.spans.iter().enumerate() {
            if rooted(i) {
                check_fit(ItemKind::Span(i), s.parent_span_id.and_then(lane_of));
            }
        }
        for (i, p) in trace.polls.iter().enumerate() {
            check_fit(ItemKind::Poll(i), lane_of(p.span_id));
        }
    }

    #[test]
    fn empty_trace() {
        let layout = layout(&Trace::default());
        assert_eq!(layout, Layout::default());
    }

    #[test]
    fn sync_calls_nest_on_one_lane() {
        // workflow > plan > {tool, tool}; then a second top-level call.
        let trace = Trace {
            spans: vec![
                span(3, Some(2), "tool", 20, 30),
                span(4, Some(2), "tool", 30, 45),
                span(2, Some(1), "plan", 10, 50),
                span(1, None, "workflow", 0, 100),
                span(5, None, "report", 120, 130),
            ],
            ..Trace::default()
        };
        let layout = layout(&trace);
        check(&trace, &layout);
        assert_eq!(layout.lanes.len(), 1);
        let depths: Vec<(ItemKind, usize)> = layout.lanes[0]
            .items
            .iter()
            .map(|i| (i.kind, i.depth))
            .collect();
        use ItemKind::Span as S;
        assert_eq!(
            depths,
            [(S(3), 0), (S(2), 1), (S(0), 2), (S(1), 2), (S(4), 0)]
        );
        assert_eq!(layout.lanes[0].name, "workflow, report (thread 1)");
        assert_eq!((layout.start_unix_ns, layout.end_unix_ns), (0, 130));
    }

    #[test]
    fn concurrent_async_siblings_get_their_own_lanes_with_their_polls() {
        // `agent` joins `a` and `b`; each is polled once at the start and once at its end,
        // inside `agent`'s polls. `c` comes after both and reuses a lane.
        let trace = Trace {
            spans: vec![
                asyn(2, Some(1), "a", 1, 50),
                asyn(3, Some(1), "b", 2, 60),
                asyn(4, Some(1), "c", 70, 80),
                asyn(1, None, "agent", 0, 90),
            ],
            polls: vec![
                poll(2, 1, 2),
                poll(3, 2, 3),
                poll(1, 0, 4),
                poll(2, 49, 50),
                poll(1, 48, 51),
                poll(3, 59, 60),
                poll(1, 58, 62),
                poll(4, 70, 75),
                poll(4, 78, 80),
                poll(1, 69, 71),
                poll(1, 77, 90),
            ],
            ..Trace::default()
        };
        let layout = layout(&trace);
        check(&trace, &layout);
        let placed = placement(&layout);
        let lane = |k| placed[&k].0;
        let depth = |k| placed[&k].1;
        use ItemKind::{Poll as P, Span as S};
        // The agent and its polls on lane 0; a and b apart; c where a was.
        assert_eq!(lane(S(3)), 0);
        for p in [2, 4, 6, 9, 10] {
            assert_eq!((lane(P(p)), depth(P(p))), (0, 1));
        }
        assert_ne!(lane(S(0)), 0);
        assert_ne!(lane(S(1)), 0);
        assert_ne!(lane(S(0)), lane(S(1)));
        assert_eq!(lane(S(2)), lane(S(0)));
        for (p, s) in [(0, 0), (3, 0), (1, 1), (5, 1), (7, 2), (8, 2)] {
            assert_eq!(lane(P(p)), lane(S(s)), "poll {p} with its span");
            assert_eq!(depth(P(p)), depth(S(s)) + 1);
        }
        assert_eq!(layout.lanes.len(), 3);
        assert_eq!(layout.lanes[0].name, "agent (thread 1)");
        assert_eq!(layout.lanes[lane(S(0))].name, "a, c (thread 1)");
    }

    #[test]
    fn sync_children_nest_inside_their_async_parents_polls() {
        let trace = Trace {
            spans: vec![
                span(2, Some(1), "parse", 12, 18),
                asyn(1, None, "fetch", 0, 30),
            ],
            polls: vec![poll(1, 0, 5), poll(1, 10, 20), poll(1, 28, 30)],
            ..Trace::default()
        };
        let layout = layout(&trace);
        check(&trace, &layout);
        assert_eq!(layout.lanes.len(), 1);
        let placed = placement(&layout);
        assert_eq!(placed[&ItemKind::Span(0)], (0, 2));
        assert_eq!(placed[&ItemKind::Poll(1)], (0, 1));
    }

    #[test]
    fn odd_input_is_placed_without_panics() {
        let mut cyclic_a = span(10, Some(11), "cycle-a", 200, 210);
        cyclic_a.thread = 2;
        let trace = Trace {
            spans: vec![
                // Zero length, at the edges of its parent and inside it.
                span(2, Some(1), "zero", 0, 0),
                span(3, Some(1), "zero", 100, 100),
                span(4, Some(1), "zero", 50, 50),
                // Outlives its parent (detached or cancelled late).
                span(5, Some(1), "detached", 90, 150),
                // Its parent was not kept.
                span(6, Some(99), "orphan", 10, 20),
                // Ends before it starts.
                span(7, None, "backwards", 40, 30),
                // Equal to its parent.
                span(8, Some(1), "same", 0, 100),
                span(1, None, "root", 0, 100),
                // Its own parent; a cycle; a duplicate id.
                span(9, Some(9), "self", 300, 310),
                cyclic_a,
                span(11, Some(10), "cycle-b", 205, 208),
                span(1, None, "duplicate", 0, 100),
            ],
            polls: vec![poll(77, 5, 6), poll(5, 90, 150), poll(5, 90, 95)],
            ..Trace::default()
        };
        let first = layout(&trace);
        check(&trace, &first);
        assert_eq!(first, layout(&trace), "deterministic");
        let placed = placement(&first);
        // The detached child could not nest in its parent.
        assert_ne!(placed[&ItemKind::Span(3)].0, placed[&ItemKind::Span(7)].0);
    }

    /// A small deterministic generator (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A trace that looks like a run: nested calls inside their parents (or their parents'
    /// polls), concurrent siblings, async spans with polls, and now and then something odd.
    fn plausible_trace(rng: &mut Rng) -> Trace {
        let mut trace = Trace::default();
        let mut next_id = 1;
        // (span id, start, end, depth)
        let mut open = vec![(0u64, 0u64, 1_000u64, 0usize)];
        while let Some((parent, start, end, depth)) = open.pop() {
            let children = if depth > 4 { 0 } else { rng.below(4) };
            for _ in 0..children {
                let len = end.saturating_sub(start);
                let a = start + rng.below(len + 1);
                let mut b = a + rng.below(end - a + 1);
                if rng.below(20) == 0 {
                    b += rng.below(100); // outlives its parent
                }
                let id = next_id;
                next_id += 1;
                let is_async = rng.below(2) == 0;
                let mut s = span(
                    id,
                    (parent != 0).then_some(parent),
                    ["a", "b", "c"][rng.below(3) as usize],
                    a,
                    b,
                );
                s.is_async = is_async;
                s.thread = 1 + rng.below(3);
                if rng.below(30) == 0 {
                    s.parent_span_id = Some(10_000 + rng.below(5)); // not kept
                }
                if is_async {
                    // Polls: disjoint slices from start to end.
                    let mut t = a;
                    while t < b {
                        let p_end = (t + 1 + rng.below(b - t)).min(b);
                        trace.polls.push(PollSlice {
                            span_id: id,
                            thread: 1 + rng.below(3),
                            start_unix_ns: t,
                            end_unix_ns: p_end,
                        });
                        t = p_end + rng.below(b - p_end + 1);
                    }
                }
                trace.spans.push(s);
                open.push((id, a, b, depth + 1));
            }
        }
        // Spans in the order they ended, like the buffer gives them.
        trace.spans.sort_by_key(|s| s.end_unix_ns);
        trace
    }

    /// A trace of anything: random intervals, random parents, random polls.
    fn random_trace(rng: &mut Rng) -> Trace {
        let n = rng.below(40);
        let mut trace = Trace::default();
        for i in 0..n {
            let start = rng.below(100);
            let end = start + rng.below(30);
            let parent = if rng.below(4) == 0 {
                None
            } else {
                Some(1 + rng.below(n + 2))
            };
            let mut s = span(i + 1, parent, "x", start, end);
            s.thread = rng.below(3);
            trace.spans.push(s);
        }
        for _ in 0..rng.below(30) {
            let start = rng.below(100);
            trace.polls.push(PollSlice {
                span_id: 1 + rng.below(n + 2),
                thread: rng.below(3),
                start_unix_ns: start,
                end_unix_ns: start + rng.below(20),
            });
        }
        trace
    }

    #[test]
    fn lanes_nest_properly_on_random_traces() {
        let mut rng = Rng(42);
        for round in 0..400 {
            let trace = if round % 2 == 0 {
                plausible_trace(&mut rng)
            } else {
                random_trace(&mut rng)
            };
            let layout = layout(&trace);
            check(&trace, &layout);
            assert_eq!(layout, super::layout(&trace), "deterministic");
        }
    }

    #[test]
    fn many_concurrent_siblings_stay_fast() {
        // 20 000 overlapping children of one parent, then 20 000 sequential ones.
        let mut spans = vec![span(1, None, "root", 0, 10_000_000)];
        for i in 0..20_000u64 {
            spans.push(span(2 + i, Some(1), "par", 10 + i, 1_000_000 + i));
        }
        for i in 0..20_000u64 {
            let start = 2_000_000 + i * 100;
            spans.push(span(100_000 + i, Some(1), "seq", start, start + 50));
        }
        // 20 000 polls whose span was not kept, one after the other.
        let polls = (0..20_000u64)
            .map(|i| PollSlice {
                span_id: 900_000_000,
                thread: 1,
                start_unix_ns: 20_000_000 + i * 10,
                end_unix_ns: 20_000_000 + i * 10 + 5,
            })
            .collect();
        let trace = Trace {
            spans,
            polls,
            ..Trace::default()
        };
        let started = std::time::Instant::now();
        let layout = layout(&trace);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // The first parallel child nests in the root; each other one needs a lane; the
        // sequential ones nest in the root; the polls follow the root on its lane.
        assert_eq!(layout.lanes.len(), 20_000);
        assert_eq!(layout.lanes[0].items.len(), 1 + 1 + 20_000 + 20_000);
        assert_eq!(layout.lanes[0].name, "root, poll (thread 1)");
    }
}
