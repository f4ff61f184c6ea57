//! The Prometheus endpoint scraped over loopback while profiled calls run: every scrape's
//! counters are monotonic and the final counts are exact (8 threads of calls, threads that
//! exit, analyzers that are reset or dropped); the HTTP side (content negotiation, 404,
//! 405, a silent client that cannot hold the endpoint).

mod support {
    #[allow(dead_code)] // the client side only
    pub mod http_stub;
}

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent_profiler::cost::Usage;
use agent_profiler::prometheus::{Format, PrometheusExporter, REQUEST_DEADLINE};
use agent_profiler::{BottleneckAnalyzer, MultiProviderCostTracker, ProfilerScope, profile_node};
use support::http_stub;

const TIMEOUT: Duration = Duration::from_secs(30);

#[profile_node("work")]
fn work(i: u64) -> Result<u64, String> {
    // One call in seven fails, so two outcome series move.
    if i % 7 == 0 {
        Err(format!("item {i}"))
    } else {
        Ok(std::hint::black_box(i * 2))
    }
}

#[profile_node("think")]
fn think(tracker: &MultiProviderCostTracker) {
    let call = tracker.start_call("openai", "gpt-4o-mini");
    call.set_stream(true);
    call.first_chunk();
    call.finish(Usage::new(100, 10)).unwrap();
}

/// Every sample line of a text exposition, by series (name and labels as written).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value = value.parse().unwrap_or_else(|_| panic!("a value: {line}"));
            (series.to_owned(), value)
        })
        .collect()
}

fn scrape(addr: SocketAddr) -> String {
    let response = http_stub::call(&addr.to_string(), "GET", "/metrics", None, TIMEOUT)
        .expect("the endpoint answers");
    assert_eq!(response.status, 200);
    response.text()
}

/// A request with an `Accept` header, answered as (status line, headers, body).
fn get(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{accept}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

fn value(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[test]
fn scrapes_during_eight_threads_of_calls_are_monotonic_and_end_exact() {
    const THREADS: u64 = 8;
    const CALLS: u64 = 20_000;
    let analyzer = BottleneckAnalyzer::new();
    let exporter = PrometheusExporter::new();
    exporter.watch(&analyzer);
    let server = exporter.serve("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let done = Arc::new(AtomicBool::new(false));
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut last: BTreeMap<String, f64> = BTreeMap::new();
            let mut scrapes = 0;
            while !done.load(Ordering::SeqCst) || scrapes < 3 {
                let now = samples(&scrape(addr));
                for (series, previous) in &last {
                    if series.starts_with("agent_profiler_analyzers") {
                        continue;
                    }
                    let current = now.get(series).copied().unwrap_or(f64::NAN);
                    assert!(
                        current >= *previous,
                        "{series} went from {previous} to {current}"
                    );
                }
                last = now;
                scrapes += 1;
            }
            scrapes
        })
    };
    let tracker = MultiProviderCostTracker::new();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let analyzer = analyzer.clone();
            let tracker = tracker.clone();
            std::thread::spawn(move || {
                let _scope = ProfilerScope::new(&analyzer);
                for i in 0..CALLS {
                    let _ = work(t * CALLS + i);
                    if i % 1000 == 0 {
                        think(&tracker);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    done.store(true, Ordering::SeqCst);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes >= 3, "{scrapes} scrapes");

    // The threads have exited: their counters are in the retired totals, counted once.
    let end = samples(&scrape(addr));
    let total = THREADS * CALLS;
    let failed = (0..total).filter(|i| i % 7 == 0).count() as f64;
    let ok = value(
        &end,
        r#"agent_profiler_node_calls_total{node="work",outcome="ok"}"#,
    );
    let error = value(
        &end,
        r#"agent_profiler_node_calls_total{node="work",outcome="error"}"#,
    );
    assert_eq!((ok, error), (total as f64 - failed, failed));
    let count = value(
        &end,
        r#"agent_profiler_node_duration_seconds_count{node="work"}"#,
    );
    assert_eq!(count, total as f64);
    let inf = value(
        &end,
        r#"agent_profiler_node_duration_seconds_bucket{node="work",le="+Inf"}"#,
    );
    assert_eq!(inf, total as f64);
    let model = r#"node="think",provider="openai",model="gpt-4o-mini""#;
    let llm = format!("{{{model}}}");
    let llm_calls = (THREADS * CALLS / 1000) as f64;
    assert_eq!(
        value(&end, &format!("agent_profiler_llm_calls_total{llm}")),
        llm_calls
    );
    let input = format!(r#"agent_profiler_llm_tokens_total{{{model},type="input"}}"#);
    assert_eq!(value(&end, &input), llm_calls * 100.0);
    let ttft = format!("agent_profiler_llm_time_to_first_token_seconds_count{llm}");
    assert_eq!(value(&end, &ttft), llm_calls);
    // The analyzer's own figures agree.
    let node = analyzer.get_node("work").unwrap();
    assert_eq!(node.call_count, total);
    let summary = analyzer.get_summary();
    let cost = value(&end, &format!("agent_profiler_llm_cost_usd_total{llm}"));
    assert!(
        (cost - summary.total_cost_usd).abs() <= 1e-12 * cost.max(1.0),
        "{cost}"
    );
}

#[test]
fn reset_and_dropped_analyzers_never_move_a_counter_back() {
    let exporter = PrometheusExporter::new();
    let server = exporter.serve("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let counter = r#"agent_profiler_node_calls_total{node="step",outcome="ok"}"#;
    let mut seen = Vec::new();
    // A service that makes one analyzer per run, resets it midway, and drops it at the end.
    for run in 0..3 {
        let analyzer = BottleneckAnalyzer::new();
        exporter.watch(&analyzer);
        for _ in 0..10 {
            analyzer.record_node("step", 2.0).unwrap();
        }
        seen.push(value(&samples(&scrape(addr)), counter));
        analyzer.reset();
        let summary = analyzer.get_summary();
        assert_eq!(
            (summary.node_count, summary.total_time_ms),
            (0, 0.0),
            "run {run}"
        );
        seen.push(value(&samples(&scrape(addr)), counter));
        for _ in 0..5 {
            analyzer.record_node("step", 2.0).unwrap();
        }
        assert_eq!(analyzer.get_node("step").unwrap().call_count, 5);
        // Dropped without a scrape after its last calls: they still count.
    }
    let end = value(&samples(&scrape(addr)), counter);
    seen.push(end);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    assert_eq!(seen, [10.0, 10.0, 25.0, 25.0, 40.0, 40.0, 45.0]);
    assert_eq!(exporter.live_analyzers(), 0);
    let text = exporter.encode(Format::Text);
    assert!(text.contains("agent_profiler_analyzers 0"), "{text}");
}

#[test]
fn the_endpoint_negotiates_its_format_and_answers_only_metrics() {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("plan", 1.5).unwrap();
    // A model name that would break a hand-written exposition.
    let info = MultiProviderCostTracker::new()
        .track_usage("openai", "tuned\"model\nv2\\x", Usage::new(5, 1))
        .unwrap();
    analyzer.record_cost("plan", &info).unwrap();
    let exporter = PrometheusExporter::new();
    exporter.watch(&analyzer);
    let server = exporter.serve("127.0.0.1:0").unwrap();
    let addr = server.local_addr();

    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (head, body) = get(addr, "GET", "/metrics", Some(prometheus));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains(r#"model="tuned\"model\nv2\\x""#), "{body}");
    // Escaped by the encoder: the name's newline ends no line, and every line parses.
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("agent_profiler_"), "{line}");
    }
    assert_eq!(
        samples(&body).len(),
        body.lines().filter(|l| !l.starts_with('#')).count()
    );

    let (head, body) = get(addr, "GET", "/metrics", None);
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!body.contains("# EOF"));
    assert!(body.contains(r#"agent_profiler_node_calls_total{node="plan",outcome="ok"} 1"#));

    let (head, body) = get(addr, "HEAD", "/metrics", None);
    assert!(
        head.starts_with("HTTP/1.1 200") && body.is_empty(),
        "{head}"
    );
    let (head, _) = get(addr, "GET", "/", None);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = get(addr, "POST", "/metrics", None);
    assert!(
        head.starts_with("HTTP/1.1 405") && head.contains("Allow: GET, HEAD"),
        "{head}"
    );
    let (head, _) = get(addr, "GET", "/metrics?format=x", None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

#[test]
fn a_silent_client_holds_the_endpoint_only_until_its_deadline() {
    let exporter = PrometheusExporter::new();
    let deadline = Duration::from_millis(500);
    let server = exporter
        .serve_with_deadline("127.0.0.1:0", deadline)
        .unwrap();
    let addr = server.local_addr();
    // Connects, sends half a request line and nothing more.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent.write_all(b"GET /met").unwrap();
    let started = Instant::now();
    let text = scrape(addr);
    let waited = started.elapsed();
    assert!(text.contains("agent_profiler_analyzers 0"), "{text}");
    assert!(waited < deadline * 10, "served after {waited:?}");
    // The silent connection was closed by the endpoint.
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    drop(server);
    // Stopped: the port no longer answers.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn a_silent_client_holds_the_default_endpoint_less_than_a_scrape_timeout() {
    let exporter = PrometheusExporter::new();
    let server = exporter.serve("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    // Connects and says nothing: only the request head's deadline holds it, not the 10 s
    // a connection may take in all (Prometheus' default scrape timeout).
    let _silent = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    let text = scrape(addr);
    let waited = started.elapsed();
    assert!(text.contains("agent_profiler_analyzers 0"), "{text}");
    assert!(waited < REQUEST_DEADLINE, "served after {waited:?}");
}
