//! Timing of nodes whose id is only known at run time (read from a configuration file), which
//! `#[profile_node("id")]` cannot name. They record through the analyzer's public API
//! ([`BottleneckAnalyzer::record_node`]), so they pay a lock per call, not the macro's
//! lock-free path: fine for nodes that wait on an LLM for hundreds of milliseconds.
//!
//! Limits: a dynamic node records every call with the outcome `ok` (the analyzer has no
//! public way to record another outcome for a dynamic id), and its time counts as self time
//! (profiled macro nodes nested inside it are not subtracted).

use std::future::Future;
use std::time::Instant;

use crate::analyzer::BottleneckAnalyzer;
use crate::context::get_profiler;

/// Times one call of a dynamic node from [`start`](Self::start) until
/// [`finish`](Self::finish) or drop (so a call that fails, panics or is cancelled is timed
/// too), and records it into the analyzer that was installed when it started.
#[derive(Debug)]
#[must_use = "the call is timed until the timer is finished or dropped"]
pub struct DynamicTimer {
    node_id: String,
    analyzer: Option<BottleneckAnalyzer>,
    start: Instant,
    done: bool,
}

impl DynamicTimer {
    /// Starts timing `node_id` for the analyzer installed on this thread (or polled future),
    /// if any.
    pub fn start(node_id: &str) -> Self {
        Self::start_for(node_id, get_profiler())
    }

    /// Starts timing `node_id` for `analyzer` (`None`: time only, record nothing).
    pub fn start_for(node_id: &str, analyzer: Option<BottleneckAnalyzer>) -> Self {
        Self {
            node_id: node_id.to_owned(),
            analyzer,
            start: Instant::now(),
            done: false,
        }
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> f64 {
        self.start.elapsed().as_secs_f64() * 1e3
    }

    /// Ends the call, records it, and returns its duration in milliseconds.
    pub fn finish(mut self) -> f64 {
        self.record()
    }

    fn record(&mut self) -> f64 {
        let ms = self.elapsed_ms();
        if !self.done {
            self.done = true;
            if let Some(analyzer) = &self.analyzer {
                // An empty id is refused by the analyzer; the executors never pass one.
                let _ = analyzer.record_node(&self.node_id, ms);
            }
        }
        ms
    }
}

impl Drop for DynamicTimer {
    fn drop(&mut self) {
        self.record();
    }
}

/// Runs `future` as one call of the dynamic node `node_id`, recorded into the analyzer
/// installed when it is first polled; returns its output and its duration in milliseconds.
///
/// ```
/// use agent_profiler_runtime::{BottleneckAnalyzer, ProfilerFutureExt, profile_call};
///
/// let analyzer = BottleneckAnalyzer::new();
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let (value, ms) = rt.block_on(profile_call("node-from-config", async { 42 }).with_profiler(analyzer.clone()));
/// assert_eq!(value, 42);
/// assert!(ms >= 0.0);
/// assert_eq!(analyzer.get_node("node-from-config").unwrap().call_count, 1);
/// ```
pub async fn profile_call<F: Future>(node_id: &str, future: F) -> (F::Output, f64) {
    let timer = DynamicTimer::start(node_id);
    let output = future.await;
    let ms = timer.finish();
    (output, ms)
}
