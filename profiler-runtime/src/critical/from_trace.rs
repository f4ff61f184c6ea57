//! [`Flow::from_trace`]: the structure of traced code inferred from its spans.

use std::collections::HashMap;

use super::{CriticalPath, Flow, PathMethod, Piece};
use crate::trace::{Span, Trace, covered};

/// Nesting deeper than this is not expanded (a deeply recursive node): the span counts as
/// one piece of work, which keeps the inference's recursion bounded.
pub(super) const MAX_DEPTH: usize = 256;

impl Flow {
    /// The flow of traced code, inferred from its spans by this rule:
    ///
    /// - a call (span) is its own work between its nested calls, in sequence with them: a
    ///   piece of the call's node from its start to its first nested call, the nested calls,
    ///   a piece up to the next one, and so on to its end;
    /// - nested calls whose times overlap (a `join!`, spawned tasks) form a parallel group,
    ///   each branch starting at its real offset from the group's start (a fixed wait):
    ///   a call's start is taken to depend on its parent's progress, not on its siblings';
    /// - the calls at the top level (no parent kept) are placed the same way, with the time
    ///   between them as waits;
    /// - a piece's LLM time is the part of it covered by the call's timed LLM calls.
    ///
    /// The inferred flow reproduces the trace's timing exactly (its wall time is the
    /// trace's); the what-if figures assume the rule holds. Its limits: a call that waited
    /// for a sibling to finish (a channel, a lock) is taken to have started on its own,
    /// so speeding the sibling up may show as saving less than it would; work done outside
    /// any profiled node (on no span) is a wait that no speed-up shortens.
    pub fn from_trace(trace: &Trace) -> Flow {
        let kept: HashMap<u64, &Span> = trace.spans.iter().map(|s| (s.span_id, s)).collect();
        let mut children: HashMap<Option<u64>, Vec<&Span>> = HashMap::new();
        for span in &trace.spans {
            let parent = span.parent_span_id.filter(|p| kept.contains_key(p));
            children.entry(parent).or_default().push(span);
        }
        for list in children.values_mut() {
            list.sort_by_key(|s| (s.start_unix_ns, s.end_unix_ns, s.span_id));
        }
        let mut builder = Builder {
            children,
            ends: HashMap::new(),
        };
        let top: Vec<&Span> = builder.children_of(None).to_vec();
        for span in &top {
            builder.end_of(span, 0);
        }
        let Some(first) = top.first() else {
            return Flow::Seq(Vec::new());
        };
        let mut parts = Vec::new();
        let mut cursor = first.start_unix_ns;
        for group in builder.groups(&top) {
            let start = group[0].start_unix_ns.max(cursor);
            if start > cursor {
                parts.push(Flow::Wait(start - cursor));
            }
            parts.push(builder.group(&group, start, 0));
            cursor = cursor.max(builder.group_end(&group));
        }
        Flow::Seq(parts)
    }
}

impl crate::BottleneckAnalyzer {
    /// The critical path of what trace mode kept ([`Flow::from_trace`]) with what-if
    /// figures for `speedup` times faster; `None` when trace mode is off or nothing was kept.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.enable_trace(1024);
    /// analyzer.record_node("plan", 12.0).unwrap();
    /// let path = analyzer.critical_path(2.0).unwrap();
    /// assert_eq!(path.path_text(), "plan");
    /// ```
    pub fn critical_path(&self, speedup: f64) -> Option<CriticalPath> {
        let trace = self.trace()?;
        if trace.spans.is_empty() {
            return None;
        }
        Some(Flow::from_trace(&trace).analyze(PathMethod::Trace, speedup))
    }
}

struct Builder<'a> {
    children: HashMap<Option<u64>, Vec<&'a Span>>,
    /// Each span's end, or its nested calls' latest end when one outlives it (a spawned
    /// task): where its part of the flow ends.
    ends: HashMap<u64, u64>,
}

impl<'a> Builder<'a> {
    fn children_of(&self, parent: Option<u64>) -> &[&'a Span] {
        self.children.get(&parent).map_or(&[], Vec::as_slice)
    }

    /// Works out (and keeps) where `span`'s part of the flow ends, nested calls included,
    /// down to [`MAX_DEPTH`].
    fn end_of(&mut self, span: &Span, depth: usize) -> u64 {
        if let Some(&end) = self.ends.get(&span.span_id) {
            return end;
        }
        let mut end = span.end_unix_ns;
        if depth < MAX_DEPTH {
            let nested: Vec<&Span> = self.children_of(Some(span.span_id)).to_vec();
            for child in nested {
                end = end.max(self.end_of(child, depth + 1));
            }
        }
        self.ends.insert(span.span_id, end);
        end
    }

    /// Where a span's part of the flow ends (see [`end_of`](Self::end_of)).
    fn end(&self, span: &Span) -> u64 {
        self.ends
            .get(&span.span_id)
            .copied()
            .unwrap_or(span.end_unix_ns)
    }

    /// Calls sorted by start, in groups whose times overlap (each call starts before the
    /// latest end of the calls before it in its group).
    fn groups(&self, spans: &[&'a Span]) -> Vec<Vec<&'a Span>> {
        let mut out: Vec<Vec<&Span>> = Vec::new();
        let mut end = 0;
        for &span in spans {
            match out.last_mut() {
                Some(group) if span.start_unix_ns < end => {
                    group.push(span);
                    end = end.max(self.end(span));
                }
                _ => {
                    out.push(vec![span]);
                    end = self.end(span);
                }
            }
        }
        out
    }

    fn group_end(&self, group: &[&Span]) -> u64 {
        group.iter().map(|s| self.end(s)).max().unwrap_or(0)
    }

    /// The flow of one call: its own pieces around its nested calls' groups.
    fn span(&self, span: &Span, depth: usize) -> Flow {
        let nested = if depth < MAX_DEPTH {
            self.children_of(Some(span.span_id))
        } else {
            &[]
        };
        let llm = span.llm_intervals();
        let own = |from: u64, to: u64| {
            let piece = Piece::new(span.node_id.clone(), to - from)
                .of_call(span.span_id, from)
                .llm(covered(&llm, from, to));
            Flow::Work(piece)
        };
        let mut parts = Vec::new();
        let mut cursor = span.start_unix_ns;
        for group in self.groups(nested) {
            let start = group[0].start_unix_ns.max(cursor);
            if start > cursor {
                parts.push(own(cursor, start));
            }
            parts.push(self.group(&group, start, depth + 1));
            cursor = cursor.max(self.group_end(&group));
        }
        if span.end_unix_ns > cursor || parts.is_empty() {
            let end = span.end_unix_ns.max(cursor);
            parts.push(own(cursor, end));
        }
        if parts.len() == 1 {
            parts.pop().unwrap_or(Flow::Seq(Vec::new()))
        } else {
            Flow::Seq(parts)
        }
    }

    /// A group of calls whose times overlap, starting at `start`: one call alone, or a
    /// parallel group of them, each after its offset.
    fn group(&self, group: &[&Span], start: u64, depth: usize) -> Flow {
        if let [only] = group {
            return self.span(only, depth);
        }
        Flow::Par(
            group
                .iter()
                .map(|s| {
                    let offset = s.start_unix_ns.saturating_sub(start);
                    let flow = self.span(s, depth);
                    if offset == 0 {
                        flow
                    } else {
                        Flow::Seq(vec![Flow::Wait(offset), flow])
                    }
                })
                .collect(),
        )
    }
}
