//! The critical path as text: the lines the console report, the CLI and the HTML report's
//! verdict share, so that they say the same thing in the same words.

use super::{CriticalPath, WhatIf};
use crate::summary::NodeShare;

/// The widest node column of the tables: a row then fits 80 columns.
const NODE_WIDTH: usize = 18;

impl CriticalPath {
    /// The verdict: the node whose speed-up saves the most, and each bottleneck by share
    /// that is not on the critical path (speeding it up saves less than its share says).
    ///
    /// ```
    /// use agent_profiler_runtime::critical::{Flow, Piece};
    ///
    /// let flow = Flow::Par(vec![
    ///     Flow::work(Piece::new("fast", 10_000_000)),
    ///     Flow::work(Piece::new("slow", 30_000_000)),
    /// ]);
    /// let path = flow.critical_path(2.0);
    /// assert_eq!(
    ///     path.verdict(&[]),
    ///     "speeding up slow saves the most: 15.0 ms at 2x (20.0 ms if removed)"
    /// );
    /// ```
    pub fn verdict(&self, bottlenecks: &[NodeShare]) -> String {
        let k = speedup_text(self.speedup);
        let mut out = match self.best_speedup() {
            Some(best) => format!(
                "speeding up {} saves the most: {:.1} ms at {k}x ({:.1} ms if removed)",
                best.node_id, best.faster_saves_ms, best.removed_saves_ms
            ),
            None => "no single node's speed-up shortens the run".to_owned(),
        };
        for bottleneck in bottlenecks {
            let Some(what) = self.what_if_for(&bottleneck.node_id) else {
                continue;
            };
            if !what.on_path {
                out.push_str(&format!(
                    "\n{} is a bottleneck ({:.1}% of the time) but off the critical path:\n  \
                     {k}x faster it saves {:.1} ms",
                    bottleneck.node_id, bottleneck.percent_of_total, what.faster_saves_ms
                ));
            }
        }
        out
    }

    /// The path, the calls off it with their slack, the what-if table and the
    /// [`verdict`](Self::verdict), in lines of at most 80 columns.
    pub fn to_text(&self, bottlenecks: &[NodeShare]) -> String {
        let mut out = format!(
            "critical path ({:.1} ms, from the {}):\n",
            self.wall_time_ms,
            match self.method {
                super::PathMethod::Structure => "workflow's structure",
                super::PathMethod::Trace => "trace",
            },
        );
        for line in wrap_path(&self.path_text()) {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str(&format!(
            "  {:<NODE_WIDTH$} {:>10} {:>10} {:>7}\n",
            "on the path", "start ms", "ms", "wall%"
        ));
        for call in &self.path {
            out.push_str(&format!(
                "  {:<NODE_WIDTH$} {:>10.1} {:>10.1} {:>6.1}%\n",
                fit(&call.node_id),
                call.start_ms,
                call.duration_ms,
                call.percent_of_wall
            ));
        }
        if self.path_left_out > 0 {
            out.push_str(&format!("  ... and {} more calls\n", self.path_left_out));
        }
        if !self.off_path.is_empty() {
            out.push_str(&format!(
                "  {:<NODE_WIDTH$} {:>10} {:>10} {:>10}\n",
                "off the path", "start ms", "ms", "slack ms"
            ));
            for call in &self.off_path {
                out.push_str(&format!(
                    "  {:<NODE_WIDTH$} {:>10.1} {:>10.1} {:>10.1}\n",
                    fit(&call.node_id),
                    call.start_ms,
                    call.duration_ms,
                    call.slack_ms
                ));
            }
            if self.off_path_left_out > 0 {
                out.push_str(&format!(
                    "  ... and {} more calls\n",
                    self.off_path_left_out
                ));
            }
        }
        let k = speedup_text(self.speedup);
        out.push_str(&format!(
            "{:<21} {:>10} {:>10} {:>11} {:>10}\n",
            "what if (ms saved)",
            format!("{k}x faster"),
            "removed",
            format!("model {k}x"),
            format!("own {k}x")
        ));
        for what in &self.what_if {
            out.push_str(&what_if_row(what));
        }
        out.push_str("  (* on the critical path; model: its LLM wait alone, own: the rest)\n");
        out.push_str(&self.verdict(bottlenecks));
        out.push('\n');
        out
    }
}

fn what_if_row(what: &WhatIf) -> String {
    let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
    format!(
        "  {:<NODE_WIDTH$}{} {:>10.1} {:>10.1} {:>11} {:>10}\n",
        fit(&what.node_id),
        if what.on_path { '*' } else { ' ' },
        what.faster_saves_ms,
        what.removed_saves_ms,
        optional(what.llm_faster_saves_ms),
        optional(what.own_faster_saves_ms)
    )
}

/// `a -> b -> c` in lines of at most 78 characters, broken after an arrow.
fn wrap_path(path: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, name) in path.split(" -> ").enumerate() {
        let piece = if i == 0 {
            name.to_owned()
        } else {
            format!(" -> {name}")
        };
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.chars().count() + piece.chars().count() > 76 {
            line.push_str(" ->");
            lines.push(name.to_owned());
        } else {
            line.push_str(&piece);
        }
    }
    lines
}

/// `2` for 2.0, `1.5` for 1.5.
fn speedup_text(k: f64) -> String {
    if k.fract() == 0.0 {
        format!("{k:.0}")
    } else {
        format!("{k}")
    }
}

fn fit(text: &str) -> String {
    if text.chars().count() <= NODE_WIDTH {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(NODE_WIDTH - 1).collect();
    cut.push('…');
    cut
}
