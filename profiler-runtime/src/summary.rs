//! What an analyzer reports: per-node timings, shares of total time, the summary.
//! Field names are the JSON names (serde): a summary saved as JSON (the `MLflow` output's
//! artifact, for one) reads back into these types, so renaming a field is a format change.
//! The rules that fill them (slowest node, shares, bottlenecks) are on
//! [`BottleneckAnalyzer`](crate::BottleneckAnalyzer).

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// How many calls of a node ended each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    /// Returned a value that is not an `Err`.
    pub ok: u64,
    /// Returned a `Result::Err`.
    pub error: u64,
    /// Unwound with a panic.
    pub panicked: u64,
    /// Async call dropped before it finished.
    pub cancelled: u64,
}

impl OutcomeCounts {
    pub(crate) fn from_array(counts: [u64; 4]) -> Self {
        let [ok, error, panicked, cancelled] = counts;
        Self {
            ok,
            error,
            panicked,
            cancelled,
        }
    }

    /// The count of one outcome.
    pub fn get(&self, outcome: Outcome) -> u64 {
        match outcome {
            Outcome::Ok => self.ok,
            Outcome::Error => self.error,
            Outcome::Panicked => self.panicked,
            Outcome::Cancelled => self.cancelled,
        }
    }

    /// Calls that did not end `ok`.
    pub fn failed(&self) -> u64 {
        self.error + self.panicked + self.cancelled
    }
}

/// Everything recorded for one node. Memory per node is constant, whatever the number of
/// calls: percentiles come from a fixed-size histogram (about 6% resolution).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeTimings {
    /// The node id.
    pub node_id: String,
    /// Duration of the most recent call, ms.
    pub duration_ms: f64,
    /// When the most recent call ended, seconds since the Unix epoch.
    pub timestamp: f64,
    /// Number of calls.
    pub call_count: u64,
    /// Sum of call durations (inclusive of nested profiled calls), ms.
    pub total_duration_ms: f64,
    /// `total_duration_ms / call_count`.
    pub avg_duration_ms: f64,
    /// Total less the time of profiled calls nested inside this node's calls, ms.
    pub self_duration_ms: f64,
    /// Time spent running: inside `poll` for async nodes, the whole call for sync ones, ms.
    pub busy_duration_ms: f64,
    /// Shortest call, ms.
    pub min_duration_ms: f64,
    /// Longest call, ms.
    pub max_duration_ms: f64,
    /// Median call duration, ms.
    pub p50_duration_ms: f64,
    /// 95th percentile of call duration, ms.
    pub p95_duration_ms: f64,
    /// 99th percentile of call duration, ms.
    pub p99_duration_ms: f64,
    /// How the calls ended.
    pub outcomes: OutcomeCounts,
    /// When the first call started, seconds since the Unix epoch.
    pub first_timestamp: f64,
    /// Whether the node is an async function.
    pub is_async: bool,
    /// LLM calls tracked while the node was the innermost running node (see
    /// [`MultiProviderCostTracker::track_call`](crate::MultiProviderCostTracker::track_call)):
    /// calls made inside a nested profiled node count for that node, not for this one. The
    /// token and cost fields below cover the same calls.
    #[serde(default)]
    pub llm_calls: u64,
    /// Those of the LLM calls that had no price: their tokens count, their cost does not.
    #[serde(default)]
    pub unpriced_calls: u64,
    /// Sum of the priced LLM calls' cost, USD (a lower bound when `unpriced_calls > 0`).
    #[serde(default)]
    pub cost_usd: f64,
    /// LLM input tokens, cache reads and writes included.
    #[serde(default)]
    pub input_tokens: u64,
    /// LLM output tokens, reasoning included.
    #[serde(default)]
    pub output_tokens: u64,
    /// LLM input plus output tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// LLM input tokens read from a prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// LLM input tokens written to a prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// LLM output tokens spent on reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Timed LLM calls that failed before any usage was billed (not in `llm_calls`).
    #[serde(default)]
    pub llm_failed_calls: u64,
    /// Time spent waiting on LLM calls (timed with
    /// [`MultiProviderCostTracker::start_call`](crate::MultiProviderCostTracker::start_call)),
    /// ms: the union of the calls' intervals within each execution of the node, so that
    /// concurrent calls count once.
    #[serde(default)]
    pub llm_time_ms: f64,
    /// `self_duration_ms - llm_time_ms` (never below 0): the time the node spent in its own
    /// code, tools included, rather than waiting on a model.
    #[serde(default)]
    pub own_time_ms: f64,
    /// Streamed LLM calls that sent a first chunk: the calls the time-to-first-token figures
    /// cover.
    #[serde(default)]
    pub streamed_calls: u64,
    /// Median time to first token of the streamed calls, ms; `None` without any.
    #[serde(default)]
    pub ttft_p50_ms: Option<f64>,
    /// 95th percentile of the time to first token, ms; `None` without streamed calls.
    #[serde(default)]
    pub ttft_p95_ms: Option<f64>,
    /// Tool calls timed with [`ToolCall`](crate::ToolCall) (or captured from `execute_tool`
    /// spans).
    #[serde(default)]
    pub tool_calls: u64,
    /// Their time, ms (the union of their intervals, like `llm_time_ms`); part of
    /// `own_time_ms`.
    #[serde(default)]
    pub tool_time_ms: f64,
}

/// A node's share of the workflow's time: the form of bottlenecks and of the slowest node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeShare {
    /// The node id.
    pub node_id: String,
    /// Sum of call durations (inclusive), ms.
    pub total_duration_ms: f64,
    /// Average call duration, ms.
    pub avg_duration_ms: f64,
    /// Number of calls.
    pub call_count: u64,
    /// `self_duration_ms / total_time_ms * 100`: the node's share of all self (exclusive)
    /// time, not of its total (inclusive) time; 0 when `total_time_ms` is 0.
    pub percent_of_total: f64,
    /// The node's self time, ms.
    pub self_duration_ms: f64,
}

/// A node's share of the workflow's LLM cost: the form of the costliest node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeCostShare {
    /// The node id.
    pub node_id: String,
    /// Sum of the node's priced LLM calls' cost, USD.
    pub cost_usd: f64,
    /// `cost_usd / total_cost_usd * 100`.
    pub percent_of_cost: f64,
    /// LLM calls the node made.
    pub llm_calls: u64,
    /// Those of them without a price.
    pub unpriced_calls: u64,
    /// LLM input plus output tokens.
    pub total_tokens: u64,
}

/// The analysis of one workflow: its total time, the slowest node, the bottlenecks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Sum of every node's self time, ms, so that nested time counts once (with no nesting:
    /// the sum of totals). 0 when nothing was recorded.
    pub total_time_ms: f64,
    /// Number of distinct nodes recorded, zero-duration ones included.
    pub node_count: usize,
    /// The node with the highest total (inclusive) duration, not the highest average; `None`
    /// when no call was recorded.
    pub slowest_node: Option<NodeShare>,
    /// Nodes whose share (`percent_of_total`, of self time) is strictly above
    /// `threshold_percent`, largest first. Nodes with zero self time are never in it.
    pub bottlenecks: Vec<NodeShare>,
    /// The threshold the bottlenecks were chosen with, percent.
    pub threshold_percent: f64,
    /// Every node, in the order of their first call.
    pub nodes: Vec<NodeTimings>,
    /// Sum of every node's priced LLM cost, USD (a lower bound when `unpriced_calls > 0`).
    #[serde(default)]
    pub total_cost_usd: f64,
    /// Sum of every node's LLM input plus output tokens.
    #[serde(default)]
    pub total_tokens: u64,
    /// LLM calls attributed to nodes.
    #[serde(default)]
    pub llm_calls: u64,
    /// Those of them without a price (unknown model): counted here, not as $0.
    #[serde(default)]
    pub unpriced_calls: u64,
    /// The node with the highest LLM cost; `None` when no node has a priced cost.
    #[serde(default)]
    pub costliest_node: Option<NodeCostShare>,
    /// The critical path, slack and what-if figures: from the trace in trace mode
    /// ([`BottleneckAnalyzer::critical_path`](crate::BottleneckAnalyzer::critical_path)),
    /// from the workflow's structure for executor runs; `None` without either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical_path: Option<crate::critical::CriticalPath>,
}

impl Summary {
    /// The figures of node `node_id`, if it was recorded.
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.record_node("fetch", 30.0).unwrap();
    /// let summary = analyzer.get_summary();
    /// assert_eq!(summary.node("fetch").unwrap().call_count, 1);
    /// assert!(summary.node("think").is_none());
    /// ```
    pub fn node(&self, node_id: &str) -> Option<&NodeTimings> {
        self.nodes.iter().find(|n| n.node_id == node_id)
    }

    /// The summary as a plain-text table, one row per node, widest share first, that fits
    /// an 80-column terminal (node ids longer than 18 characters are cut with `…`). The cost
    /// column shows `-` for a node without LLM calls, and marks with `*` a cost that leaves
    /// out unpriced calls. When some LLM call was timed (see
    /// [`MultiProviderCostTracker::start_call`](crate::MultiProviderCostTracker::start_call)),
    /// a second table splits each such node's self time into LLM time (the union of its
    /// calls' intervals) and own time, with the time to first token (`-` without a
    /// streamed call).
    ///
    /// ```
    /// use agent_profiler_runtime::BottleneckAnalyzer;
    ///
    /// let analyzer = BottleneckAnalyzer::new();
    /// analyzer.record_node("fetch", 30.0).unwrap();
    /// analyzer.record_node("think", 90.0).unwrap();
    /// let table = analyzer.get_summary().to_table();
    /// assert!(table.contains("think"));
    /// assert!(table.contains("75.0%"));
    /// assert!(table.lines().all(|line| line.chars().count() <= 80));
    /// assert!(!table.contains("llm ms"), "no call was timed");
    ///
    /// // A node that waits 5 ms on a streamed model call.
    /// use agent_profiler_runtime::{MultiProviderCostTracker, ProfilerFutureExt, Usage};
    /// use agent_profiler_runtime::profile_call;
    /// use std::{thread::sleep, time::Duration};
    /// let tracker = MultiProviderCostTracker::new();
    /// let node = profile_call("answer", async {
    ///     let call = tracker.start_call("openai", "gpt-4o-mini");
    ///     call.set_stream(true);
    ///     sleep(Duration::from_millis(2));
    ///     call.first_chunk();
    ///     sleep(Duration::from_millis(3));
    ///     call.finish(Usage::new(100, 20)).unwrap();
    /// });
    /// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// rt.block_on(node.with_profiler(analyzer.clone()));
    /// let table = analyzer.get_summary().to_table();
    /// let row = table.lines().rev().find(|l| l.starts_with("answer")).unwrap();
    /// let cells: Vec<&str> = row.split_whitespace().collect();
    /// assert_eq!(cells[1], "1", "{table}"); // one LLM call
    /// assert!(cells[2].parse::<f64>().unwrap() >= 5.0, "{table}"); // LLM ms
    /// assert!(cells[5].parse::<f64>().unwrap() >= 2.0, "{table}"); // TTFT p50
    /// assert!(table.lines().all(|line| line.chars().count() <= 80));
    /// ```
    pub fn to_table(&self) -> String {
        let mut rows: Vec<&NodeTimings> = self.nodes.iter().collect();
        rows.sort_by(|a, b| b.self_duration_ms.total_cmp(&a.self_duration_ms));
        let width = rows
            .iter()
            .map(|n| n.node_id.chars().count())
            .max()
            .unwrap_or(4)
            .clamp(4, TABLE_NODE_WIDTH);
        let mut out = format!(
            "{:<width$} {:>5} {:>9} {:>9} {:>6} {:>7} {:>9} {}\n",
            "node", "calls", "total ms", "p95 ms", "self%", "tokens", "cost usd", "outcomes"
        );
        for node in rows {
            let share = percent(node.self_duration_ms, self.total_time_ms);
            let o = node.outcomes;
            out.push_str(&format!(
                "{:<width$} {:>5} {:>9.2} {:>9.2} {:>5.1}% {:>7} {:>9} {}/{}/{}/{}\n",
                fit(&node.node_id, width),
                node.call_count,
                node.total_duration_ms,
                node.p95_duration_ms,
                share,
                node.total_tokens,
                cost_cell(node.cost_usd, node.llm_calls, node.unpriced_calls),
                o.ok,
                o.error,
                o.panicked,
                o.cancelled
            ));
        }
        out.push_str("(outcomes: ok/err/panic/cancel)\n");
        out.push_str(&format!("total self time: {:.2} ms", self.total_time_ms));
        if let Some(slowest) = &self.slowest_node {
            out.push_str(&format!("; slowest node: {}", slowest.node_id));
        }
        out.push('\n');
        if self.llm_calls > 0 {
            out.push_str(&format!(
                "LLM cost: ${:.6} over {} calls, {} tokens",
                self.total_cost_usd, self.llm_calls, self.total_tokens
            ));
            if self.unpriced_calls > 0 {
                out.push_str(&format!(
                    " (* {} unpriced calls left out)",
                    self.unpriced_calls
                ));
            }
            out.push('\n');
            if let Some(costliest) = &self.costliest_node {
                out.push_str(&format!("costliest node: {}\n", costliest.node_id));
            }
        }
        // After every line of the first table's form, which scripts may read by position.
        self.push_time_split(&mut out, width);
        out
    }
}

impl Summary {
    /// The table of how each node's self time splits into waiting on LLM calls and its own
    /// code, with the time to first token of its streamed calls. Only when some call was
    /// timed: a call tracked from its body alone has no interval, and a split of 0 ms LLM
    /// time would say the node never waited on a model.
    fn push_time_split(&self, out: &mut String, width: usize) {
        let timed = |n: &&NodeTimings| n.llm_time_ms > 0.0 || n.llm_failed_calls > 0;
        let mut rows: Vec<&NodeTimings> = self.nodes.iter().filter(timed).collect();
        if rows.is_empty() {
            return;
        }
        rows.sort_by(|a, b| b.llm_time_ms.total_cmp(&a.llm_time_ms));
        out.push_str(&format!(
            "\n{:<width$} {:>9} {:>9} {:>9} {:>5} {:>8} {:>8}\n",
            "node", "llm calls", "llm ms", "own ms", "llm%", "ttft p50", "ttft p95"
        ));
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        for node in rows {
            out.push_str(&format!(
                "{:<width$} {:>9} {:>9.2} {:>9.2} {:>4.0}% {:>8} {:>8}\n",
                fit(&node.node_id, width),
                node.llm_calls + node.llm_failed_calls,
                node.llm_time_ms,
                node.own_time_ms,
                percent(node.llm_time_ms, node.self_duration_ms).min(100.0),
                ms(node.ttft_p50_ms),
                ms(node.ttft_p95_ms)
            ));
        }
        out.push_str("(llm: union of the node's call intervals; own = self - llm)\n");
    }
}

/// The widest node column of [`Summary::to_table`]: with it, a row fits 80 columns.
const TABLE_NODE_WIDTH: usize = 18;

/// `text` cut to `width` characters, with an ellipsis when cut.
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// A node's cost for the table: `-` without LLM calls, `?` when none was priced, `*` after
/// a cost that leaves out unpriced calls.
fn cost_cell(cost_usd: f64, llm_calls: u64, unpriced_calls: u64) -> String {
    if llm_calls == 0 {
        "-".to_owned()
    } else if unpriced_calls == llm_calls {
        "?".to_owned()
    } else if unpriced_calls > 0 {
        format!("{cost_usd:.6}*")
    } else {
        format!("{cost_usd:.6}")
    }
}

/// `part / whole * 100`, and 0 when `whole` is 0.
pub fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}
