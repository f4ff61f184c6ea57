//! Sampled traces: the executor's runs go through an OTLP exporter with a sampler, to a
//! loopback receiver that decodes every request as the OTLP protobuf it is. A ratio of 0.1
//! sends about one run in ten, every failed run is sent whatever the head decided, and a
//! run sampled out costs no request.

mod support {
    #[allow(dead_code)] // the recorded requests only
    pub mod http_stub;
}

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use agent_profiler::executor::{Console, WorkflowConfig, WorkflowError, WorkflowExecutor};
use agent_profiler::llm::{Completion, LlmClient, LlmError, LlmRequest, SimulatedClient};
use agent_profiler::trace::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use agent_profiler::trace::otlp::{OtlpConfig, OtlpExporter, Sampler};
use prost::Message as _;
use serde_json::json;
use support::http_stub::{HttpStub, Reply};

const RUNS: usize = 1000;
/// Every `FAIL_EVERY`-th run fails (its LLM call is refused).
const FAIL_EVERY: usize = 50;

/// The simulated model without delays; a prompt that names `fail` is refused, one that
/// names `slow` answers after [`SLOW`].
struct FailingOnRequest(SimulatedClient);

const SLOW: Duration = Duration::from_millis(50);

impl LlmClient for FailingOnRequest {
    fn complete<'a>(&'a self, request: &'a LlmRequest) -> Completion<'a> {
        if request.prompt.contains("slow") {
            return Box::pin(async move {
                tokio::time::sleep(SLOW).await;
                self.0.complete(request).await
            });
        }
        if request.prompt.contains("fail") {
            return Box::pin(async move {
                Err(LlmError::Http {
                    url: "simulated".into(),
                    status: 500,
                    body: "refused on request".into(),
                })
            });
        }
        self.0.complete(request)
    }

    fn describe(&self) -> String {
        "simulated, failing on request".into()
    }
}

fn client() -> Arc<dyn LlmClient> {
    let instant = SimulatedClient::new()
        .base_latency(Duration::ZERO)
        .per_token_latency(Duration::ZERO)
        .first_token_latency(Duration::ZERO);
    Arc::new(FailingOnRequest(instant))
}

fn workflow() -> WorkflowConfig {
    WorkflowConfig::from_json_str(
        r#"{"name": "sampled", "steps": [
            {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan"},
            {"id": "write", "model": "gpt-4o-mini", "prompt": "Write {plan}", "output_key": "text"}
        ]}"#,
    )
    .unwrap()
}

/// An OTLP receiver that accepts everything; the trace ids of the root spans it got.
fn receiver() -> HttpStub {
    HttpStub::start(|_| Reply::new(200, "application/x-protobuf", Vec::new()))
}

fn received_traces(receiver: &HttpStub) -> HashSet<Vec<u8>> {
    let mut ids = HashSet::new();
    for request in receiver.requests() {
        let decoded = ExportTraceServiceRequest::decode(request.body.as_slice())
            .expect("every request is an OTLP protobuf export request");
        let spans = decoded
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans);
        for span in spans.filter(|s| s.parent_span_id.is_empty()) {
            assert!(ids.insert(span.trace_id.clone()), "one root span per trace");
        }
    }
    ids
}

fn executor(receiver: &HttpStub, sampler: Sampler) -> (WorkflowExecutor, OtlpExporter) {
    let config = OtlpConfig::new(&format!("{}/v1/traces", receiver.url()))
        .unwrap()
        .warnings(false)
        .sampler(sampler);
    let exporter = OtlpExporter::start(config).unwrap();
    let executor = WorkflowExecutor::new(client())
        .console(Console::Silent)
        .otlp(exporter.clone());
    (executor, exporter)
}

/// Runs the workflow `runs` times, every `FAIL_EVERY`-th failing; the trace ids of the
/// failed runs and of the others.
async fn run_many(executor: &WorkflowExecutor, runs: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let config = workflow();
    let (mut failed, mut ok) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let topic = if i % FAIL_EVERY == 7 { "fail" } else { "ok" };
        let run = match executor.run_config(&config, json!({"topic": topic})).await {
            Ok(run) => run,
            Err(WorkflowError::Failed(run)) => *run,
            Err(e) => panic!("run {i}: {e}"),
        };
        let id = run.trace.as_ref().unwrap().trace_id_bytes().to_vec();
        match run.failure {
            Some(_) => failed.push(id),
            None => ok.push(id),
        }
    }
    (failed, ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenth_of_the_runs_and_every_failed_one() {
    let receiver = receiver();
    let sampler = Sampler::trace_id_ratio(0.1).unwrap();
    let (executor, exporter) = executor(&receiver, sampler);
    let (failed, ok) = run_many(&executor, RUNS).await;
    assert_eq!(failed.len(), RUNS / FAIL_EVERY);
    assert!(exporter.flush(Duration::from_secs(60)));
    let stats = exporter.stats();
    assert!(!stats.anything_lost(), "{stats}");

    let got = received_traces(&receiver);
    for id in &failed {
        assert!(got.contains(id), "a failed run is always sent");
    }
    let ok_sent = ok.iter().filter(|id| got.contains(*id)).count();
    eprintln!(
        "sent {ok_sent} of {} successful runs and all {} failed ones",
        ok.len(),
        failed.len()
    );
    assert!(
        (70..=130).contains(&ok_sent),
        "{ok_sent} of {} successful runs sent at a ratio of 0.1",
        ok.len()
    );
    assert_eq!(got.len(), ok_sent + failed.len(), "nothing else was sent");
    // Each kept trace is one request here; the rest cost none.
    assert_eq!(receiver.request_count(), got.len());
    assert_eq!(stats.traces_sent as usize, got.len(), "{stats}");
    assert_eq!(
        (stats.traces_sent + stats.traces_sampled_out) as usize,
        RUNS,
        "{stats}"
    );
    assert!(stats.traces_kept_failed as usize <= failed.len(), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_kept_when_the_head_keeps_nothing() {
    let receiver = receiver();
    let (executor, exporter) = executor(&receiver, Sampler::always_off());
    let (failed, ok) = run_many(&executor, 3 * FAIL_EVERY).await;
    assert!(exporter.flush(Duration::from_secs(60)));
    let got = received_traces(&receiver);
    assert_eq!(got, failed.iter().cloned().collect::<HashSet<_>>());
    let stats = exporter.stats();
    assert_eq!(stats.traces_kept_failed as usize, failed.len(), "{stats}");
    assert_eq!(stats.traces_sampled_out as usize, ok.len(), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sampler_every_run_is_sent() {
    let receiver = receiver();
    let (executor, exporter) = executor(&receiver, Sampler::from_vars(|_| None).unwrap());
    let (failed, ok) = run_many(&executor, 20).await;
    assert!(exporter.flush(Duration::from_secs(60)));
    assert_eq!(received_traces(&receiver).len(), failed.len() + ok.len());
    assert_eq!(exporter.stats().traces_sampled_out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_slower_than_recent_ones_is_kept() {
    let receiver = receiver();
    let sampler = Sampler::always_off()
        .keep_failed(false)
        .keep_slower_than(90.0)
        .unwrap();
    let (executor, exporter) = executor(&receiver, sampler);
    let config = workflow();
    for _ in 0..30 {
        executor
            .run_config(&config, json!({"topic": "quick"}))
            .await
            .unwrap();
    }
    let slow = executor
        .run_config(&config, json!({"topic": "slow"}))
        .await
        .unwrap();
    assert!(exporter.flush(Duration::from_secs(60)));
    let got = received_traces(&receiver);
    let slow_id = slow.trace.as_ref().unwrap().trace_id_bytes().to_vec();
    assert!(got.contains(&slow_id), "the slow run is sent");
    // Each quick run judged (the 21st on) is above the 90th percentile of the ones before
    // it one time in ten: a few may be sent too, never many.
    let stats = exporter.stats();
    assert!(
        (1..=6).contains(&stats.traces_kept_slow),
        "{} traces kept as slow: {stats}",
        stats.traces_kept_slow
    );
    assert_eq!(got.len() as u64, stats.traces_kept_slow, "{stats}");
    assert_eq!(
        stats.traces_sampled_out + stats.traces_kept_slow,
        31,
        "{stats}"
    );
}
