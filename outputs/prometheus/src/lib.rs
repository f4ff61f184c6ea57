//! Prometheus metrics of agent-profiler's analyzers: per node call counts by outcome and
//! duration histograms, per node and LLM model calls, tokens by type, cost, call durations
//! and time to first token, served in the OpenMetrics text format (or Prometheus' classic
//! one) on a small HTTP endpoint.
//!
//! Everything is read when Prometheus scrapes, from the counters the analyzer keeps anyway
//! ([`BottleneckAnalyzer::metrics`]): a profiled call costs what it costs without the
//! exporter, and never waits for a scrape. The encoding is the Prometheus project's own
//! client (`prometheus-client`), so node ids and model names are label values escaped by
//! it: no name can break the format.
//!
//! ```
//! use agent_profiler_prometheus::{Format, PrometheusExporter};
//! use agent_profiler_runtime::BottleneckAnalyzer;
//!
//! let analyzer = BottleneckAnalyzer::new();
//! let exporter = PrometheusExporter::new();
//! exporter.watch(&analyzer);
//! // Serve `GET /metrics` on a port of the system's choosing (use "0.0.0.0:9464" to be
//! // scraped from other machines); stopped when `server` is dropped.
//! let server = exporter.serve("127.0.0.1:0").unwrap();
//! println!("scrape http://{}/metrics", server.local_addr());
//!
//! analyzer.record_node("plan", 12.0).unwrap();
//! let text = exporter.encode(Format::OpenMetrics);
//! assert!(text.contains(r#"agent_profiler_node_calls_total{node="plan",outcome="ok"} 1"#));
//! assert!(text.ends_with("# EOF\n"));
//! ```
//!
//! # Metrics
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `agent_profiler_node_calls_total` | counter | `node`, `outcome` (`ok`, `error`, `panicked`, `cancelled`) |
//! | `agent_profiler_node_duration_seconds` | histogram | `node` |
//! | `agent_profiler_llm_calls_total` | counter | `node`, `provider`, `model` |
//! | `agent_profiler_llm_failed_calls_total` | counter | `node`, `provider`, `model` |
//! | `agent_profiler_llm_unpriced_calls_total` | counter | `node`, `provider`, `model` |
//! | `agent_profiler_llm_tokens_total` | counter | `node`, `provider`, `model`, `type` (`input`, `output`, `cached_input`, `cache_creation`, `reasoning`) |
//! | `agent_profiler_llm_cost_usd_total` | counter | `node`, `provider`, `model` |
//! | `agent_profiler_llm_call_duration_seconds` | histogram | `node`, `provider`, `model` |
//! | `agent_profiler_llm_time_to_first_token_seconds` | histogram | `node`, `provider`, `model` |
//! | `agent_profiler_analyzers` | gauge | (none): analyzers being read live |
//!
//! Histogram buckets are fixed, the same for every histogram and every process:
//! [`HISTOGRAM_BOUNDS_SECONDS`](agent_profiler_runtime::metrics::HISTOGRAM_BOUNDS_SECONDS),
//! two per power of two from 1.024 µs to 137 s, each an edge of the analyzer's own buckets
//! (so the counts are exact, or within one of the analyzer's fine buckets, about 6%, where
//! calls are timed in TSC ticks), so `rate` and `histogram_quantile` work across scrapes:
//!
//! ```text
//! histogram_quantile(0.95, sum by (le, node) (rate(agent_profiler_node_duration_seconds_bucket[5m])))
//! sum by (node) (rate(agent_profiler_llm_cost_usd_total[1h])) * 3600
//! ```
//!
//! # Several analyzers, and counters that never go backwards
//!
//! An exporter serves the sum of every analyzer it [watches](PrometheusExporter::watch): a
//! service that makes one analyzer per run watches each (or hands the exporter the
//! [`LifetimeMetrics`] its executor feeds, [`PrometheusExporter::with_metrics`]). Counters
//! only grow: an analyzer's [`reset`](BottleneckAnalyzer::reset) does not touch them, and
//! once the exporter holds the last handle of an analyzer (the run is over and its analyzer
//! dropped everywhere else), the exporter reads it one last time, keeps its figures in its
//! totals and lets it go. Per node, at most [`MAX_MODELS`] (provider, model) pairs get
//! series of their own, the first seen; the rest are counted under
//! `provider="_other", model="_other"`.
//!
//! [`BottleneckAnalyzer::metrics`]: agent_profiler_runtime::BottleneckAnalyzer::metrics
//! [`BottleneckAnalyzer`]: agent_profiler_runtime::BottleneckAnalyzer
#![warn(missing_docs)]

mod encode;
mod format;
mod server;

use std::net::ToSocketAddrs;

use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::metrics::{LifetimeMetrics, MetricsSnapshot};

pub use agent_profiler_runtime::metrics::MAX_MODELS;
pub use format::Format;
pub use server::{HEAD_DEADLINE, MetricsServer, REQUEST_DEADLINE};

/// The analyzers an endpoint serves, and the figures of those already gone. Cheap to clone
/// (clones share the same state).
#[derive(Clone, Debug, Default)]
pub struct PrometheusExporter {
    metrics: LifetimeMetrics,
}

impl PrometheusExporter {
    /// An exporter that watches no analyzer yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An exporter serving `metrics`: the analyzers watched there, by this exporter or by
    /// anything else that shares them (an executor, an OTLP metrics exporter).
    pub fn with_metrics(metrics: LifetimeMetrics) -> Self {
        Self { metrics }
    }

    /// The totals this exporter serves (clones share them).
    pub fn metrics(&self) -> &LifetimeMetrics {
        &self.metrics
    }

    /// Adds `analyzer` to what the exporter serves (once: watching the same analyzer again
    /// changes nothing). The exporter keeps a handle to it until that handle is the last
    /// one; then its final figures stay in the totals and the analyzer is freed.
    pub fn watch(&self, analyzer: &BottleneckAnalyzer) {
        self.metrics.watch(analyzer);
    }

    /// The sum of every analyzer's lifetime counters now, the analyzers gone included:
    /// what a scrape serves.
    pub fn snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Analyzers being read live (those the exporter does not hold alone).
    pub fn live_analyzers(&self) -> usize {
        self.metrics.live_analyzers()
    }

    /// The current figures in `format`: what `GET /metrics` answers.
    pub fn encode(&self, format: Format) -> String {
        let snapshot = self.metrics.snapshot();
        encode::encode(&snapshot, self.metrics.live_analyzers(), format)
    }

    /// Serves `GET /metrics` on `addr` from a thread of its own, until the returned server
    /// is dropped or [stopped](MetricsServer::stop).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission).
    pub fn serve(&self, addr: impl ToSocketAddrs) -> std::io::Result<MetricsServer> {
        MetricsServer::start(addr, self.clone(), REQUEST_DEADLINE)
    }

    /// [`serve`](Self::serve) with another limit on the time one connection may take (to
    /// send its request and read the answer) than [`REQUEST_DEADLINE`].
    ///
    /// # Errors
    /// As [`serve`](Self::serve).
    pub fn serve_with_deadline(
        &self,
        addr: impl ToSocketAddrs,
        deadline: std::time::Duration,
    ) -> std::io::Result<MetricsServer> {
        MetricsServer::start(addr, self.clone(), deadline)
    }
}
