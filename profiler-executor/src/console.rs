//! The console report of a run and where console lines go.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use agent_profiler_runtime::Summary;

/// Where the executors' console lines (progress and the report) go.
#[derive(Clone, Debug, Default)]
pub enum Console {
    /// Standard output.
    #[default]
    Stdout,
    /// Kept in memory (tests, or to show elsewhere).
    Capture(Arc<Mutex<String>>),
    /// Nowhere.
    Silent,
}

impl Console {
    /// A capturing console and the buffer it writes to.
    pub fn capture() -> (Self, Arc<Mutex<String>>) {
        let buffer = Arc::new(Mutex::new(String::new()));
        (Console::Capture(buffer.clone()), buffer)
    }

    /// Writes `text` (which ends with a newline when it should).
    pub fn write(&self, text: &str) {
        match self {
            Console::Stdout => {
                use std::io::Write as _;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Console::Capture(buffer) => buffer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(text),
            Console::Silent => {}
        }
    }
}

/// The bottleneck report: three fixed line forms,
/// `Slowest node: {node_id} ({avg_duration_ms:.2}ms avg)`,
/// `Bottlenecks (>{threshold}% of total time):` and
/// `  - {node_id}: {percent_of_total:.1}% ({total_duration_ms:.0}ms total)`, then the
/// table of every node ([`Summary::to_table`]), which ends, when the nodes' LLM calls were
/// timed, with each node's split of its self time into LLM time and own time and its time
/// to first token. The three forms never change: scripts and log searches match them, and
/// `agent-profiler show` rebuilds the same text from a stored run.
///
/// The verdict is honest about failures: a slowest node or bottleneck whose every call
/// failed is marked (`  - fetch: 90.0% (450ms total), every call failed`: its time was
/// spent failing, maybe waiting for a timeout), and when no node completed a call (the
/// run failed before any node did work) there is no bottleneck verdict:
/// `  (none: no node completed a call)`, instead of a node that failed at once shown as
/// "100%".
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_executor::bottleneck_report;
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.record_node("fast", 50.0).unwrap();
/// analyzer.record_node("slow", 450.0).unwrap();
/// let report = bottleneck_report(&analyzer.get_summary());
/// assert!(report.starts_with("Slowest node: slow (450.00ms avg)\nBottlenecks (>50% of total time):\n  - slow: 90.0% (450ms total)\n"));
/// ```
pub fn bottleneck_report(summary: &Summary) -> String {
    let mut out = String::new();
    let failed = |id: &str| {
        summary
            .node(id)
            .is_some_and(|n| n.call_count > 0 && n.outcomes.ok == 0)
    };
    // Nodes ran, and none completed a call: no time was spent on work to compare.
    let no_work = !summary.nodes.is_empty() && summary.nodes.iter().all(|n| failed(&n.node_id));
    match &summary.slowest_node {
        Some(s) => {
            let _ = write!(
                out,
                "Slowest node: {} ({:.2}ms avg)",
                s.node_id, s.avg_duration_ms
            );
            if failed(&s.node_id) {
                out.push_str(", every call failed");
            }
            out.push('\n');
        }
        None => out.push_str("Slowest node: none (no node ran)\n"),
    }
    let _ = writeln!(
        out,
        "Bottlenecks (>{}% of total time):",
        summary.threshold_percent
    );
    if no_work {
        out.push_str("  (none: no node completed a call)\n");
    } else if summary.bottlenecks.is_empty() {
        out.push_str("  (none)\n");
    }
    for b in summary.bottlenecks.iter().filter(|_| !no_work) {
        let _ = write!(
            out,
            "  - {}: {:.1}% ({:.0}ms total)",
            b.node_id, b.percent_of_total, b.total_duration_ms
        );
        if failed(&b.node_id) {
            out.push_str(", every call failed");
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&summary.to_table());
    out
}
