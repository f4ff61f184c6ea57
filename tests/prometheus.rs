//! A real Prometheus server (Debian's `prometheus` package) scrapes this process's
//! `/metrics` every second over loopback while `#[profile_node]` calls and LLM calls run;
//! the node histograms, call counts, tokens, cost and time to first token are then read
//! back through Prometheus' HTTP query API (`rate`, `histogram_quantile`) and compared with
//! the analyzer's own figures: counts exactly, quantiles within the bucket that holds them.
//!
//! The binary comes from `PROMETHEUS_BIN`, else `prometheus` on the PATH (`scripts/test`
//! installs the package when missing). Without it the test is skipped, except in CI
//! (`CI=true`), where it fails.

mod support {
    #[allow(dead_code)] // the client side only
    pub mod http_stub;
    #[allow(dead_code)] // temporary directories only
    pub mod scratch;
}

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent_profiler::cost::Usage;
use agent_profiler::metrics::HISTOGRAM_BOUNDS_SECONDS;
use agent_profiler::prometheus::PrometheusExporter;
use agent_profiler::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerScope, profile_node};
use serde_json::Value;
use support::{http_stub, scratch};

const STARTUP: Duration = Duration::from_secs(60);
const SCRAPED: Duration = Duration::from_secs(60);

/// The Prometheus binary, or `None` where it is missing outside CI.
fn prometheus_bin() -> Option<PathBuf> {
    let named = std::env::var_os("PROMETHEUS_BIN").map(PathBuf::from);
    let on_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("prometheus"))
                .find(|p| p.is_file())
        })
    };
    let found = named.filter(|p| p.is_file()).or_else(on_path);
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "CI=true and no Prometheus: set PROMETHEUS_BIN or install `prometheus`"
        );
        eprintln!("skipped: no Prometheus binary (PROMETHEUS_BIN or `prometheus` on the PATH)");
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server scraping `target` every second; killed when dropped.
struct Prometheus {
    child: Child,
    authority: String,
    dir: PathBuf,
}

impl Prometheus {
    fn start(bin: &PathBuf, target: &str) -> Prometheus {
        let dir = scratch::temp_dir("prometheus");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: agent\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let authority = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={authority}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let server = Prometheus {
            child,
            authority,
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            let ready = http_stub::call(&self.authority, "GET", "/-/ready", None, STARTUP);
            if ready.is_ok_and(|r| r.status == 200) {
                return;
            }
            assert!(started.elapsed() < STARTUP, "not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `query` evaluates to: each series' labels and value.
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let target = format!("/api/v1/query?query={}", percent_encode(query));
        let response = http_stub::call(&self.authority, "GET", &target, None, SCRAPED).unwrap();
        let body: Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(body["status"], "success", "{query}: {body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// The value of a query that gives one series.
    fn scalar(&self, query: &str) -> f64 {
        let result = self.query(query);
        assert_eq!(result.len(), 1, "{query}: {result:?}");
        result[0].1
    }

    /// Waits until `query` gives one series with value `expected` (the scrapes caught up).
    fn wait_for(&self, query: &str, expected: f64) {
        let started = Instant::now();
        loop {
            let result = self.query(query);
            if result.len() == 1 && result[0].1 == expected {
                return;
            }
            assert!(
                started.elapsed() < SCRAPED,
                "{query} is {result:?}, not {expected}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The bucket of the fixed bounds that holds `seconds`: (lower, upper).
fn bucket_of(seconds: f64) -> (f64, f64) {
    let upper = HISTOGRAM_BOUNDS_SECONDS
        .iter()
        .position(|&b| seconds < b)
        .expect("within the bounds");
    let lower = if upper == 0 {
        0.0
    } else {
        HISTOGRAM_BOUNDS_SECONDS[upper - 1]
    };
    (lower, HISTOGRAM_BOUNDS_SECONDS[upper])
}

/// Durations spread over several buckets, so that the quantile is not the only bucket.
#[profile_node("retrieve")]
fn retrieve(i: u32) {
    std::thread::sleep(Duration::from_micros(500 + 450 * u64::from(i % 10)));
}

#[profile_node("generate")]
fn generate(tracker: &MultiProviderCostTracker, i: u32) {
    let call = tracker.start_call("openai", "gpt-4o-mini");
    call.set_stream(true);
    // 2.4, 3.5 and 4.8 ms: each well inside one of the fixed buckets.
    std::thread::sleep(Duration::from_micros([2400, 3500, 4800][i as usize % 3]));
    call.first_chunk();
    std::thread::sleep(Duration::from_millis(1));
    call.finish(Usage::new(1200 + u64::from(i), 300)).unwrap();
}

#[test]
fn prometheus_scrapes_the_node_histograms_and_llm_cost_that_the_analyzer_reports() {
    let Some(bin) = prometheus_bin() else {
        return;
    };
    let analyzer = BottleneckAnalyzer::new();
    let exporter = PrometheusExporter::new();
    exporter.watch(&analyzer);
    let endpoint = exporter.serve("127.0.0.1:0").unwrap();
    let prometheus = Prometheus::start(&bin, &endpoint.local_addr().to_string());
    let tracker = MultiProviderCostTracker::new();
    let _scope = ProfilerScope::new(&analyzer);
    let calls = r#"agent_profiler_node_calls_total{node="retrieve",outcome="ok"}"#;

    // A first call of each node, so that their series exist before the measured calls and
    // `rate` over the window sees only those.
    retrieve(4);
    generate(&tracker, 0);
    prometheus.wait_for(calls, 1.0);
    analyzer.reset();
    let started = Instant::now();
    // The reset on Prometheus' clock: `@` picks the last sample before it, the first calls'.
    let reset_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for i in 0..300 {
        retrieve(i);
        if i % 10 == 0 {
            generate(&tracker, i / 10);
        }
    }
    let lifetime = analyzer.metrics();
    let retrieve_calls = lifetime.node("retrieve").unwrap().calls.ok as f64;
    assert_eq!(retrieve_calls, 301.0);
    prometheus.wait_for(calls, retrieve_calls);
    // One more scrape after the last value, so that the window ends on final figures.
    std::thread::sleep(Duration::from_millis(1500));
    let window = format!("{}s", started.elapsed().as_secs() + 30);

    // Counts: exact.
    let count = prometheus.scalar(r#"agent_profiler_node_duration_seconds_count{node="retrieve"}"#);
    assert_eq!(count, 301.0);
    let rate = prometheus.scalar(&format!(
        r#"rate(agent_profiler_node_calls_total{{node="retrieve",outcome="ok"}}[{window}])"#
    ));
    assert!(rate > 0.0, "{rate}");

    // The 95th percentile of the calls since the reset. The buckets' increase since then,
    // read exactly (the latest sample less the one at the reset), puts Prometheus'
    // interpolated quantile in the very bucket that holds the analyzer's own figure; over
    // `rate` (which extrapolates each series a little differently) within a bucket's width.
    let node = analyzer.get_node("retrieve").unwrap();
    assert_eq!(node.call_count, 300);
    let own = node.p95_duration_ms / 1e3;
    let (lower, upper) = bucket_of(own);
    let since = format!("@ {reset_at:.3}");
    let buckets = r#"agent_profiler_node_duration_seconds_bucket{node="retrieve"}"#;
    let p95 = prometheus.scalar(&format!(
        "histogram_quantile(0.95, {buckets} - {buckets} {since})"
    ));
    assert!(
        lower <= p95 && p95 <= upper,
        "Prometheus p95 {p95} s, the analyzer's {own} s in bucket [{lower}, {upper}]"
    );
    let p95_rate = prometheus.scalar(&format!(
        "histogram_quantile(0.95, rate({buckets}[{window}]))"
    ));
    assert!(
        (p95_rate - own).abs() <= upper - lower,
        "{p95_rate} vs {own}"
    );
    // All time, from the cumulative buckets themselves.
    let p50_all = prometheus.scalar(
        r#"histogram_quantile(0.5, agent_profiler_node_duration_seconds_bucket{node="retrieve"})"#,
    );
    assert!(p50_all > 0.0005 && p50_all < 0.01, "{p50_all}");

    // LLM calls, tokens and cost: the same as the analyzer's lifetime figures.
    let model = r#"node="generate",provider="openai",model="gpt-4o-mini""#;
    let figures = lifetime
        .node("generate")
        .unwrap()
        .model("openai", "gpt-4o-mini")
        .unwrap();
    assert_eq!(figures.calls, 31);
    let llm_calls = prometheus.scalar(&format!("agent_profiler_llm_calls_total{{{model}}}"));
    assert_eq!(llm_calls, 31.0);
    for (kind, expected) in figures.tokens.by_type() {
        let tokens = prometheus.scalar(&format!(
            r#"agent_profiler_llm_tokens_total{{{model},type="{kind}"}}"#
        ));
        assert_eq!(tokens, expected as f64, "{kind}");
    }
    let cost = prometheus.scalar(&format!("agent_profiler_llm_cost_usd_total{{{model}}}"));
    assert!(figures.cost_usd > 0.0);
    assert!(
        (cost - figures.cost_usd).abs() <= 1e-9 * figures.cost_usd,
        "{cost}"
    );
    let cost_rate = prometheus.scalar(&format!(
        "sum(rate(agent_profiler_llm_cost_usd_total[{window}]))"
    ));
    assert!(cost_rate > 0.0, "{cost_rate}");
    // Since the reset, the summary's cost is that of the 30 measured calls.
    let summary = analyzer.get_summary();
    assert_eq!(summary.llm_calls, 30);
    assert!(summary.total_cost_usd > 0.0 && summary.total_cost_usd < figures.cost_usd);

    // Time to first token since the reset: the median in the bucket of the analyzer's.
    let ttft_buckets = format!("agent_profiler_llm_time_to_first_token_seconds_bucket{{{model}}}");
    let ttft = prometheus.scalar(&format!(
        "histogram_quantile(0.5, {ttft_buckets} - {ttft_buckets} {since})"
    ));
    let own_ttft = analyzer.get_node("generate").unwrap().ttft_p50_ms.unwrap() / 1e3;
    let (lower, upper) = bucket_of(own_ttft);
    assert!(
        lower <= ttft && ttft <= upper,
        "TTFT p50 {ttft} s, the analyzer's {own_ttft} s in bucket [{lower}, {upper}]"
    );
    // The scrape itself: up, and every scrape answered.
    assert_eq!(prometheus.scalar(r#"up{job="agent"}"#), 1.0);
}
