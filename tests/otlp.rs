//! OTLP/HTTP export of traces: a real profiled workflow sent to the MLflow server of
//! `scripts/test` (`MLFLOW_TRACKING_URI`; without it the MLflow test says it is skipped, in
//! CI it fails) and read back through MLflow's trace API; and receivers that are dead, answer
//! garbage, or hang, which must cost the workflow nothing and be counted.

mod support {
    #[allow(dead_code)] // stub receivers, no forwarding
    pub mod http_stub;
    #[allow(dead_code)] // the provider's answers, not the requests it recorded
    pub mod llm_provider;
    #[allow(dead_code)] // no metric histories
    pub mod mlflow_api;
    #[allow(dead_code)] // the tracking server's URI, no private or TLS server
    pub mod mlflow_server;
    pub mod scratch;
}

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler::cost::Usage;
use agent_profiler::mlflow::MlflowClient;
use agent_profiler::trace::Trace;
use agent_profiler::trace::otlp::{LlmExchange, OtlpConfig, OtlpExporter, OtlpStats, RootSpan};
use agent_profiler::{
    BottleneckAnalyzer, LlmOutcome, MultiProviderCostTracker, Outcome, ProfilerScope, profile_node,
};
use serde_json::{Value, json};
use support::http_stub::{self, HttpStub, Reply};
use support::llm_provider::LlmProvider;
use support::mlflow_api::{self, get_trace, search_traces};
use support::{mlflow_server, scratch};

const WAIT: Duration = Duration::from_secs(120);

// ---- the workflow ---------------------------------------------------------------------------

#[profile_node("otlp_agent")]
fn agent(tracker: &MultiProviderCostTracker, rt: &tokio::runtime::Runtime) -> Result<u64, String> {
    plan(tracker);
    let fetched = rt.block_on(async { fetch(1).await + fetch(2).await });
    let _ = fails();
    Ok(fetched)
}

#[profile_node("otlp_plan")]
fn plan(tracker: &MultiProviderCostTracker) {
    llm_call(tracker, "openai", "gpt-4o", Usage::new(1000, 100));
    summarize(tracker);
}

#[profile_node("otlp_summarize")]
fn summarize(tracker: &MultiProviderCostTracker) {
    llm_call(
        tracker,
        "anthropic",
        "claude-sonnet-4-5",
        Usage::new(200, 50),
    );
}

/// 10 ms of work, then an LLM call's usage, tracked in the node that makes it.
fn llm_call(tracker: &MultiProviderCostTracker, provider: &str, model: &str, usage: Usage) {
    std::thread::sleep(Duration::from_millis(10));
    tracker.track_usage(provider, model, usage).unwrap();
}

#[profile_node("otlp_fetch")]
async fn fetch(i: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(15)).await;
    i
}

#[profile_node("otlp_fails")]
fn fails() -> Result<(), String> {
    Err("planted".into())
}

/// Runs the workflow in trace mode; its trace. The runtime is built by hand: the workflow's
/// sync root node blocks on it, so that async nodes run inside a sync one.
fn run_workflow() -> Trace {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(1024);
    let tracker = MultiProviderCostTracker::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    {
        let _scope = ProfilerScope::new(&analyzer);
        assert_eq!(agent(&tracker, &rt), Ok(3));
    }
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans.len(), 6, "{trace:#?}");
    trace
}

// ---- reading back ---------------------------------------------------------------------------

/// A number in MLflow's JSON: a number, or a string holding one (64-bit ints in proto JSON).
fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A span as MLflow returns it (OTLP span in proto JSON).
struct Got {
    name: String,
    id: String,
    parent: Option<String>,
    start: u64,
    end: u64,
    status: String,
    message: String,
    attributes: HashMap<String, Value>,
}

impl Got {
    fn duration(&self) -> Duration {
        Duration::from_nanos(self.end - self.start)
    }

    /// A string attribute; panics when it is missing or not a string.
    fn string(&self, key: &str) -> &str {
        self.attribute(key)["string_value"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: {key} is not a string attribute", self.name))
    }

    /// An integer attribute; panics when it is missing or not a JSON number.
    fn int(&self, key: &str) -> i64 {
        self.attribute(key)["int_value"]
            .as_i64()
            .unwrap_or_else(|| panic!("{}: {key} is not an integer attribute", self.name))
    }

    fn attribute(&self, key: &str) -> &Value {
        self.attributes
            .get(key)
            .unwrap_or_else(|| panic!("{}: no attribute {key} in {:?}", self.name, self.attributes))
    }
}

fn spans_of(trace: &Value) -> Vec<Got> {
    let spans = trace["trace"]["spans"].as_array().expect("spans");
    spans
        .iter()
        .map(|s| Got {
            name: s["name"].as_str().unwrap().to_owned(),
            id: s["span_id"].as_str().unwrap().to_owned(),
            parent: s["parent_span_id"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_owned),
            start: number(&s["start_time_unix_nano"]),
            end: number(&s["end_time_unix_nano"]),
            status: s["status"]["code"].as_str().unwrap_or("").to_owned(),
            message: s["status"]["message"].as_str().unwrap_or("").to_owned(),
            attributes: s["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["key"].as_str().unwrap().to_owned(), a["value"].clone()))
                .collect(),
        })
        .collect()
}

fn named<'a>(spans: &'a [Got], name: &str) -> Vec<&'a Got> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Got], name: &str) -> &'a Got {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "spans called {name}");
    found[0]
}

fn metadata(info: &Value, key: &str) -> Value {
    let text = info["trace_metadata"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no trace metadata {key} in {info}"));
    serde_json::from_str(text).unwrap()
}

/// The tracking server's URI, a client, and a new experiment named after `test`; `None` when
/// the test is skipped (no server).
fn experiment_on_the_server(test: &str) -> Option<(String, MlflowClient, String)> {
    let uri = mlflow_server::tracking_uri(test)?;
    let (client, experiment) = mlflow_api::new_experiment(&uri, test);
    Some((uri, client, experiment))
}

/// Exports `trace` under `root` through `config` and waits until all is sent or failed; the
/// statistics at shutdown. The export itself must return at once.
fn export_and_flush_under(config: OtlpConfig, trace: &Trace, root: RootSpan) -> OtlpStats {
    let exporter = OtlpExporter::start(config).unwrap();
    let started = Instant::now();
    assert!(exporter.export(trace, root));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "export waited {:?}",
        started.elapsed()
    );
    assert!(exporter.flush(WAIT), "not flushed: {}", exporter.stats());
    exporter.shutdown()
}

fn assert_nothing_lost(stats: &OtlpStats) {
    assert!(!stats.anything_lost(), "export lost something: {stats}");
    assert_eq!(stats.pending_spans, 0, "{stats}");
}

/// A real workflow's trace, exported to MLflow in several requests and read back through
/// MLflow's API: one trace, the right spans, nesting, durations, statuses, token usage and
/// cost, linked to the run.
#[test]
fn workflow_trace_reaches_mlflow() {
    let name = "workflow_trace_reaches_mlflow";
    let Some((uri, client, experiment)) = experiment_on_the_server(name) else {
        return;
    };
    let run = client.create_run(&experiment, Some(name), &[]).unwrap();
    let trace = run_workflow();
    let config = OtlpConfig::for_mlflow(&uri, &experiment)
        .unwrap()
        .service_name("otlp-tests")
        .resource_attribute("deployment.environment", "test")
        // 6 node spans + 2 LLM call spans + the root: 3 requests that MLflow must assemble.
        .max_spans_per_request(3)
        .warnings(false);
    let root = RootSpan::new("otlp-workflow")
        .mlflow_run(&run.run_id)
        .attribute("agent_profiler.run_id", run.run_id.as_str());
    let stats = export_and_flush_under(config, &trace, root);
    assert_nothing_lost(&stats);
    assert_eq!(
        (stats.traces_sent, stats.spans_sent, stats.requests_sent),
        (1, 9, 3),
        "{stats}"
    );

    // One trace in the experiment, complete, linked to the run.
    let traces = search_traces(&uri, &experiment, None);
    assert_eq!(traces.len(), 1, "{traces:#?}");
    let info = &traces[0];
    let trace_id = info["trace_id"].as_str().unwrap();
    assert_eq!(
        trace_id,
        format!("tr-{}", trace.trace_id),
        "MLflow's id is the OTLP trace id"
    );
    assert_eq!(info["state"], "OK", "{info}");
    assert_eq!(info["tags"]["service.name"], "otlp-tests", "{info}");
    assert_eq!(info["tags"]["deployment.environment"], "test", "{info}");
    let linked = search_traces(
        &uri,
        &experiment,
        Some(&format!("attributes.run_id = '{}'", run.run_id)),
    );
    assert_eq!(linked.len(), 1, "the trace is listed under the run");
    assert_eq!(linked[0]["trace_id"], trace_id);

    // Token usage and cost per trace, exact although the two LLM-calling nodes nest.
    let usage = metadata(info, "mlflow.trace.tokenUsage");
    assert_eq!(usage["input_tokens"], 1200, "{usage}");
    assert_eq!(usage["output_tokens"], 150, "{usage}");
    assert_eq!(usage["total_tokens"], 1350, "{usage}");
    let cost: f64 = trace
        .spans
        .iter()
        .flat_map(|s| &s.llm_calls)
        .filter_map(|c| c.cost_usd)
        .sum();
    assert!(cost > 0.0);
    let mlflow_cost = metadata(info, "mlflow.trace.cost")["total_cost"]
        .as_f64()
        .unwrap();
    assert!(
        (mlflow_cost - cost).abs() < 1e-12,
        "{mlflow_cost} vs {cost}"
    );

    // The spans: names, nesting, times, statuses.
    let spans = spans_of(&get_trace(&uri, trace_id));
    assert_eq!(
        spans.len(),
        9,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let root = one(&spans, "otlp-workflow");
    assert_eq!(root.parent, None);
    assert_eq!(root.status, "STATUS_CODE_OK");
    let agent = one(&spans, "otlp_agent");
    let plan = one(&spans, "otlp_plan");
    let summarize = one(&spans, "otlp_summarize");
    let fetches = named(&spans, "otlp_fetch");
    let fails = one(&spans, "otlp_fails");
    let gpt = one(&spans, "chat gpt-4o");
    let claude = one(&spans, "chat claude-sonnet-4-5");
    assert_eq!(fetches.len(), 2);
    let parent_of = |s: &Got| s.parent.clone().unwrap_or_default();
    assert_eq!(parent_of(agent), root.id);
    assert_eq!(parent_of(plan), agent.id);
    assert_eq!(parent_of(summarize), plan.id);
    assert_eq!(parent_of(fails), agent.id);
    for fetch in &fetches {
        assert_eq!(parent_of(fetch), agent.id);
    }
    assert_eq!(parent_of(gpt), plan.id);
    assert_eq!(parent_of(claude), summarize.id);

    // Times are the profiler's, to the nanosecond; lower bounds from the sleeps.
    for local in &trace.spans {
        let got = spans
            .iter()
            .find(|s| s.name == local.node_id && s.start == local.start_unix_ns)
            .unwrap_or_else(|| panic!("no span for {local:?}"));
        assert_eq!(got.end, local.end_unix_ns);
    }
    let ms = Duration::from_millis;
    assert!(summarize.duration() >= ms(10), "{:?}", summarize.duration());
    assert!(plan.duration() >= ms(20), "{:?}", plan.duration());
    for fetch in &fetches {
        assert!(fetch.duration() >= ms(15), "{:?}", fetch.duration());
    }
    assert!(agent.duration() >= ms(50), "{:?}", agent.duration());
    for child in [agent, plan, summarize, fails, gpt, claude]
        .into_iter()
        .chain(fetches)
    {
        assert!(
            child.start >= root.start && child.end <= root.end,
            "{}",
            child.name
        );
    }
    assert!(plan.start >= agent.start && plan.end <= agent.end);
    assert!(summarize.start >= plan.start && summarize.end <= plan.end);

    // Statuses: the failing node is an error, the others are OK.
    assert_eq!(
        (fails.status.as_str(), fails.message.as_str()),
        ("STATUS_CODE_ERROR", "error")
    );
    for ok in [agent, plan, summarize, gpt, claude] {
        assert_eq!(ok.status, "STATUS_CODE_OK", "{}", ok.name);
    }

    // LLM call spans are chat spans with their usage, as MLflow's GenAI translator reads.
    assert_eq!(gpt.string("mlflow.spanType"), "CHAT_MODEL");
    assert_eq!(gpt.string("mlflow.llm.model"), "gpt-4o");
    assert_eq!(gpt.int("gen_ai.usage.input_tokens"), 1000);
    assert_eq!(claude.string("mlflow.llm.provider"), "anthropic");
    assert_eq!(agent.string("agent_profiler.node_id"), "otlp_agent");
    assert_eq!(root.string("agent_profiler.run_id"), run.run_id.as_str());
}

/// A failed run: the trace's state is ERROR; LLM usage on the node spans instead of call
/// spans (one request).
#[test]
fn failed_run_and_usage_on_nodes() {
    use agent_profiler::trace::otlp::LlmSpans;
    let name = "failed_run_and_usage_on_nodes";
    let Some((uri, _, experiment)) = experiment_on_the_server(name) else {
        return;
    };
    let trace = run_workflow();
    let config = OtlpConfig::for_mlflow(&uri, &experiment)
        .unwrap()
        .llm_spans(LlmSpans::OnNode)
        .warnings(false);
    let (start, end) = trace.bounds().unwrap();
    let root = RootSpan::new("otlp-failed")
        .start_end(start - 1_000_000, end + 1_000_000)
        .outcome(Outcome::Panicked);
    let stats = export_and_flush_under(config, &trace, root);
    assert_nothing_lost(&stats);
    assert_eq!((stats.spans_sent, stats.requests_sent), (7, 1), "{stats}");
    let traces = search_traces(&uri, &experiment, None);
    assert_eq!(traces.len(), 1);
    assert_eq!(traces[0]["state"], "ERROR", "{}", traces[0]);
    let trace_id = traces[0]["trace_id"].as_str().unwrap();
    let spans = spans_of(&get_trace(&uri, trace_id));
    assert_eq!(spans.len(), 7);
    let root = one(&spans, "otlp-failed");
    assert_eq!(
        (root.status.as_str(), root.message.as_str()),
        ("STATUS_CODE_ERROR", "panicked")
    );
    assert_eq!((root.start, root.end), (start - 1_000_000, end + 1_000_000));
    let summarize = one(&spans, "otlp_summarize");
    assert_eq!(summarize.string("mlflow.spanType"), "CHAT_MODEL");
    assert_eq!(
        summarize.string("gen_ai.request.model"),
        "claude-sonnet-4-5"
    );
    assert_eq!(summarize.int("gen_ai.usage.output_tokens"), 50);
}

// ---- timed LLM calls, span types, prompts and answers -------------------------------------

#[profile_node("otlp_timed")]
fn timed_node(tracker: &MultiProviderCostTracker) {
    // A streamed call: 40 ms to the first chunk, 110 ms in all.
    let call = tracker.start_call("openai", "gpt-4o");
    std::thread::sleep(Duration::from_millis(40));
    call.first_chunk();
    std::thread::sleep(Duration::from_millis(70));
    call.finish(Usage::new(500, 140)).unwrap();
    // Then one the provider refused.
    let call = tracker.start_call("openai", "gpt-4o-mini");
    std::thread::sleep(Duration::from_millis(20));
    let _ = call.fail(LlmOutcome::Error, "HTTP 503: overloaded", None);
}

/// A trace of one node with a timed streamed call and a failed one.
fn timed_trace() -> Trace {
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(64);
    let tracker = MultiProviderCostTracker::new();
    {
        let _scope = ProfilerScope::new(&analyzer);
        timed_node(&tracker);
    }
    let trace = analyzer.trace().unwrap();
    assert_eq!(trace.spans[0].llm_calls.len(), 2, "{trace:#?}");
    trace
}

/// An attribute holding JSON, decoded: MLflow hands back the objects and arrays it decoded
/// as OTLP key-value lists and arrays, and the rest as strings of JSON (or plain text).
fn json_attribute(span: &Got, key: &str) -> Value {
    any_value(span.attribute(key))
}

/// An OTLP `AnyValue` in proto JSON as plain JSON; a string holding JSON decoded.
fn any_value(v: &Value) -> Value {
    if let Some(s) = v["string_value"].as_str() {
        return serde_json::from_str(s).unwrap_or_else(|_| Value::from(s));
    }
    if let Some(list) = v.get("kvlist_value") {
        let pairs = list["values"].as_array().into_iter().flatten();
        return pairs
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap().to_owned(),
                    any_value(&kv["value"]),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if let Some(array) = v.get("array_value") {
        let values = array["values"].as_array().into_iter().flatten();
        return values.map(any_value).collect::<Vec<_>>().into();
    }
    for key in ["bool_value", "double_value"] {
        if let Some(x) = v.get(key) {
            return x.clone();
        }
    }
    v.get("int_value").map_or(Value::Null, |i| number(i).into())
}

/// Each LLM call is a span lasting as long as the call did, with its stream, time to first
/// chunk and outcome (ERROR for the failed one); every span has a type MLflow knows; the
/// run's inputs and outputs and the call's prompt and answer are where MLflow's trace view
/// and its Python client read them. Read back through the REST API and the official client.
#[test]
fn timed_calls_types_and_content_reach_mlflow() {
    let name = "timed_calls_types_and_content_reach_mlflow";
    let Some((uri, _, experiment)) = experiment_on_the_server(name) else {
        return;
    };
    let trace = timed_trace();
    let node_span = trace.spans[0].span_id;
    let config = OtlpConfig::for_mlflow(&uri, &experiment)
        .unwrap()
        .warnings(false);
    let root = RootSpan::new("otlp-timed")
        .inputs(json!({"question": "Why is the sea salty?"}))
        .outputs(json!({"answer": "Rivers carry minerals."}))
        .exchange(
            node_span,
            LlmExchange {
                prompt: Some("Answer: Why is the sea salty?".into()),
                answer: Some("Rivers carry minerals.".into()),
            },
        );
    let stats = export_and_flush_under(config, &trace, root);
    assert_nothing_lost(&stats);

    let traces = search_traces(&uri, &experiment, None);
    assert_eq!(traces.len(), 1);
    let info = &traces[0];
    // The Input and Output columns of MLflow's trace list.
    let preview = |key: &str| -> Value {
        let text = info[key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key}: {info}"));
        serde_json::from_str(text).unwrap()
    };
    assert_eq!(
        preview("request_preview"),
        json!({"question": "Why is the sea salty?"})
    );
    assert_eq!(
        preview("response_preview"),
        json!({"answer": "Rivers carry minerals."})
    );
    let trace_id = info["trace_id"].as_str().unwrap();
    let spans = spans_of(&get_trace(&uri, trace_id));
    assert_eq!(spans.len(), 4);
    let root = one(&spans, "otlp-timed");
    let node = one(&spans, "otlp_timed");
    let chat = one(&spans, "chat gpt-4o");
    let failed = one(&spans, "chat gpt-4o-mini");
    assert_eq!(root.string("mlflow.spanType"), "AGENT");
    assert_eq!(node.string("mlflow.spanType"), "CHAIN");
    assert_eq!(chat.string("mlflow.spanType"), "CHAT_MODEL");
    assert_eq!(failed.string("mlflow.spanType"), "CHAT_MODEL");
    assert_eq!(chat.parent.as_deref(), Some(node.id.as_str()));

    // Real durations, within the node's.
    assert!(
        chat.duration() >= Duration::from_millis(100),
        "{:?}",
        chat.duration()
    );
    assert!(
        failed.duration() >= Duration::from_millis(20),
        "{:?}",
        failed.duration()
    );
    assert!(chat.start >= node.start && failed.end <= node.end);
    assert!(chat.end <= failed.start, "one after the other");
    let local = trace.spans[0].llm_calls[0].timing.clone().unwrap();
    assert_eq!(
        (chat.start, chat.end),
        (local.start_unix_ns, local.end_unix_ns)
    );
    assert_eq!(chat.attribute("gen_ai.request.stream")["bool_value"], true);
    let ttft = chat.attribute("gen_ai.response.time_to_first_chunk")["double_value"]
        .as_f64()
        .unwrap();
    assert!((0.04..0.11).contains(&ttft), "{ttft}");
    assert_eq!(chat.string("agent_profiler.llm.outcome"), "ok");
    assert_eq!(chat.int("gen_ai.usage.output_tokens"), 140);
    assert!(
        chat.attribute("agent_profiler.llm.output_tokens_per_second")["double_value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert_eq!(chat.status, "STATUS_CODE_OK");
    assert_eq!(
        (failed.status.as_str(), failed.message.as_str()),
        ("STATUS_CODE_ERROR", "HTTP 503: overloaded")
    );
    assert_eq!(failed.string("error.type"), "error");
    assert!(!failed.attributes.contains_key("gen_ai.usage.input_tokens"));

    // The prompt on both calls, the answer on the one that succeeded.
    assert_eq!(
        json_attribute(chat, "mlflow.spanInputs")["messages"][0]["content"],
        "Answer: Why is the sea salty?"
    );
    assert_eq!(
        json_attribute(chat, "mlflow.spanOutputs")["choices"][0]["message"]["content"],
        "Rivers carry minerals."
    );
    assert_eq!(
        json_attribute(chat, "gen_ai.input.messages")[0]["parts"][0]["content"],
        "Answer: Why is the sea salty?"
    );
    assert_eq!(
        json_attribute(chat, "gen_ai.output.messages")[0]["role"],
        "assistant"
    );
    assert!(failed.attributes.contains_key("mlflow.spanInputs"));
    assert!(!failed.attributes.contains_key("mlflow.spanOutputs"));

    // What MLflow's own client makes of it.
    let Some(got) = mlflow_api::python_get_trace(&uri, trace_id) else {
        return;
    };
    let request: Value = serde_json::from_str(got["request"].as_str().unwrap()).unwrap();
    assert_eq!(
        request,
        json!({"question": "Why is the sea salty?"}),
        "{got}"
    );
    assert_eq!(got["request_preview"], info["request_preview"]);
    assert_eq!(got["response_preview"], info["response_preview"]);
    let span = |name: &str| {
        got["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no span {name} in {got}"))
            .clone()
    };
    let root = span("otlp-timed");
    assert_eq!(root["span_type"], "AGENT");
    assert_eq!(root["inputs"], json!({"question": "Why is the sea salty?"}));
    assert_eq!(root["outputs"], json!({"answer": "Rivers carry minerals."}));
    assert_eq!(span("otlp_timed")["span_type"], "CHAIN");
    let chat = span("chat gpt-4o");
    assert_eq!(chat["span_type"], "CHAT_MODEL");
    assert!(
        number(&chat["end_ns"]) - number(&chat["start_ns"]) >= 100_000_000,
        "{chat}"
    );
    assert_eq!(
        chat["inputs"]["messages"][0]["content"],
        "Answer: Why is the sea salty?"
    );
    assert_eq!(
        chat["outputs"]["choices"][0]["message"]["content"],
        "Rivers carry minerals."
    );
    let failed = span("chat gpt-4o-mini");
    assert!(
        failed["status"].as_str().unwrap().contains("ERROR"),
        "{failed}"
    );
    assert_eq!(failed["status_message"], "HTTP 503: overloaded");
}

// ---- receivers that fail ----------------------------------------------------------------------

/// The OTLP traces endpoint of a stub receiver.
fn endpoint(receiver: &HttpStub) -> String {
    format!("{}/v1/traces", receiver.url())
}

/// The workflow's trace, for receivers other than MLflow: 6 node spans, 2 LLM call spans
/// and the root make [`SPANS`].
fn small_trace() -> Trace {
    let trace = run_workflow();
    assert_eq!(trace.spans.len(), 6);
    trace
}

fn quick(endpoint: &str) -> OtlpConfig {
    OtlpConfig::new(endpoint)
        .unwrap()
        .max_retries(2)
        .backoff(Duration::from_millis(10))
        .timeout(Duration::from_secs(30))
        .warnings(false)
}

/// Exports `trace` through `config` under a root span `wf` and waits; the statistics.
fn export_and_flush(config: OtlpConfig, trace: &Trace) -> OtlpStats {
    export_and_flush_under(config, trace, RootSpan::new("wf"))
}

const SPANS: u64 = 9;

#[test]
fn dead_endpoint_costs_nothing_and_is_counted() {
    let trace = small_trace();
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", http_stub::closed_port());
    let stats = export_and_flush(quick(&endpoint), &trace);
    assert_eq!((stats.traces_sent, stats.traces_failed), (0, 1), "{stats}");
    assert_eq!(
        (stats.spans_failed, stats.spans_sent),
        (SPANS, 0),
        "{stats}"
    );
    assert_eq!(
        (stats.requests_failed, stats.retried_requests),
        (1, 2),
        "{stats}"
    );
    assert_eq!(stats.spans_lost(), SPANS);
    let error = stats.last_error.unwrap();
    assert!(error.contains("no answer"), "{error}");
}

#[test]
fn server_errors_are_retried_then_counted() {
    let trace = small_trace();
    let receiver = HttpStub::replying([Reply::new(500, "text/plain", "boom")]);
    let stats = export_and_flush(quick(&endpoint(&receiver)), &trace);
    assert_eq!(receiver.request_count(), 3, "one attempt and two retries");
    assert_eq!(
        (stats.spans_failed, stats.requests_failed),
        (SPANS, 1),
        "{stats}"
    );
    assert_eq!(stats.retried_requests, 2);
    let error = stats.last_error.unwrap();
    assert!(
        error.contains("HTTP 500: boom") && error.contains("3 attempts"),
        "{error}"
    );
}

#[test]
fn garbage_answers_are_counted() {
    let trace = small_trace();
    // Not HTTP at all.
    let junk = HttpStub::replying([Reply::raw(b"garbage\r\n\r\n\x00\x01".to_vec())]);
    let stats = export_and_flush(quick(&endpoint(&junk)), &trace);
    assert_eq!(
        (stats.spans_failed, stats.traces_failed),
        (SPANS, 1),
        "{stats}"
    );
    // A web page answering 200 to everything: not an OTLP receiver, not retried.
    let page = HttpStub::replying([Reply::new(200, "text/html", "<html>MLflow</html>")]);
    let stats = export_and_flush(quick(&endpoint(&page)), &trace);
    assert_eq!(page.request_count(), 1);
    assert_eq!(
        (stats.spans_failed, stats.retried_requests),
        (SPANS, 0),
        "{stats}"
    );
    assert!(stats.last_error.unwrap().contains("text/html"));
    // Refused as a bad request: not retried.
    let refused = HttpStub::replying([Reply::json(400, r#"{"detail": "no"}"#)]);
    let stats = export_and_flush(quick(&endpoint(&refused)), &trace);
    assert_eq!(
        (refused.request_count(), stats.spans_failed),
        (1, SPANS),
        "{stats}"
    );
}

#[test]
fn partial_success_and_retry_after() {
    let trace = small_trace();
    // ExportTraceServiceResponse { partial_success { rejected_spans: 2, error_message } }.
    let mut partial = vec![0x0A, 11, 0x08, 2, 0x12, 7];
    partial.extend_from_slice(b"too old");
    let receiver = HttpStub::replying([
        Reply::new(503, "text/plain", "busy").header("Retry-After", "1"),
        Reply::new(200, "application/x-protobuf", partial),
    ]);
    let started = Instant::now();
    let stats = export_and_flush(quick(&endpoint(&receiver)), &trace);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1"
    );
    assert_eq!(receiver.request_count(), 2);
    assert_eq!(stats.retried_requests, 1);
    assert_eq!(
        (stats.spans_sent, stats.spans_rejected),
        (SPANS - 2, 2),
        "{stats}"
    );
    assert_eq!(
        (stats.requests_sent, stats.traces_failed),
        (1, 1),
        "{stats}"
    );
    assert!(stats.last_error.unwrap().contains("too old"));
}

#[test]
fn header_values_never_show() {
    let trace = small_trace();
    // A server that quotes the request's headers in its error.
    let receiver = HttpStub::start(|request| Reply::new(400, "text/plain", request.head()));
    let config = quick(&endpoint(&receiver)).header("authorization", "Bearer s3cr3t-t0ken");
    assert!(!format!("{config:?}").contains("s3cr3t"));
    let stats = export_and_flush(config, &trace);
    let error = stats.last_error.unwrap();
    assert!(error.contains("authorization"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
}

#[test]
fn full_queue_drops_whole_traces() {
    let trace = small_trace();
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", http_stub::closed_port());
    let exporter = OtlpExporter::start(quick(&endpoint).queue_capacity(5)).unwrap();
    assert!(
        !exporter.export(&trace, RootSpan::new("wf")),
        "9 spans do not fit in 5"
    );
    let stats = exporter.shutdown();
    assert_eq!(
        (stats.traces_dropped, stats.spans_dropped),
        (1, SPANS),
        "{stats}"
    );
    assert!(!exporter.export(&trace, RootSpan::new("wf")), "shut down");
    assert_eq!(exporter.stats().spans_dropped, 2 * SPANS);
}

/// An exporter to `receiver` with a shutdown deadline of 1 s, given `trace` twice: once
/// `receiver` has the first request, the second trace waits in the queue.
fn two_traces_first_in_flight(receiver: &HttpStub, trace: &Trace) -> OtlpExporter {
    let config = quick(&endpoint(receiver))
        .timeout(Duration::from_secs(60))
        .shutdown_timeout(Duration::from_secs(1));
    let exporter = OtlpExporter::start(config).unwrap();
    assert!(exporter.export(trace, RootSpan::new("wf")));
    assert!(exporter.export(trace, RootSpan::new("wf")));
    wait_for(|| receiver.request_count() == 1);
    exporter
}

/// A request in flight at shutdown is not interrupted, but the wait for it is bounded: the
/// thread is left to end by itself, and what it has not handled stays pending.
#[test]
fn shutdown_waits_a_bounded_time_for_a_hanging_receiver() {
    let trace = small_trace();
    let receiver = HttpStub::replying([Reply::hang_up().after(Duration::from_secs(60))]);
    let exporter = two_traces_first_in_flight(&receiver, &trace);
    let started = Instant::now();
    let stats = exporter.shutdown();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    assert!(
        took >= Duration::from_secs(1),
        "it waited for the deadline: {took:?}"
    );
    assert_eq!(
        (stats.spans_sent, stats.pending_spans),
        (0, 2 * SPANS),
        "{stats}"
    );
    drop(exporter); // returns at once: already shut down
}

/// What is queued when the shutdown deadline passes is counted as failed, not left pending.
#[test]
fn shutdown_fails_what_the_deadline_leaves() {
    let trace = small_trace();
    // The first request is answered (OK, empty protobuf body) after 2 s; the deadline is 1 s.
    let ok = Reply::new(200, "application/x-protobuf", Vec::new());
    let receiver = HttpStub::replying([ok.after(Duration::from_secs(2))]);
    let exporter = two_traces_first_in_flight(&receiver, &trace);
    let stats = exporter.shutdown();
    assert_eq!(
        receiver.request_count(),
        1,
        "nothing sent after the deadline"
    );
    assert_eq!(
        (stats.spans_sent, stats.spans_failed),
        (SPANS, SPANS),
        "{stats}"
    );
    assert_eq!((stats.traces_sent, stats.traces_failed), (1, 1), "{stats}");
    assert_eq!(stats.pending_spans, 0, "{stats}");
}

fn wait_for(done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WAIT, "timed out");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An MLflow configuration with an experiment name only (as `MLFLOW_EXPERIMENT_NAME`): the
/// exporter thread finds (here: creates) the experiment, and the trace goes there.
#[test]
fn mlflow_experiment_by_name() {
    let name = "mlflow_experiment_by_name";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let experiment_name = scratch::unique(name);
    let mlflow = agent_profiler::mlflow::MlflowConfig::new(&uri)
        .unwrap()
        .experiment_name(&experiment_name);
    let config = OtlpConfig::from_mlflow_config(&mlflow)
        .unwrap()
        .warnings(false);
    assert_eq!(config.experiment_id(), None);
    let stats = export_and_flush(config, &small_trace());
    assert_nothing_lost(&stats);
    assert_eq!(stats.spans_sent, SPANS);
    let client = mlflow_api::client(&uri);
    let experiment = client
        .get_experiment_by_name(&experiment_name)
        .unwrap()
        .expect("created by the exporter");
    let traces = search_traces(&uri, &experiment.experiment_id, None);
    assert_eq!(traces.len(), 1);
}

// ---- the executor ---------------------------------------------------------------------------

/// The executor sends each run's trace to the MLflow server it logs metrics to, into the
/// same experiment and linked to the MLflow run, without being told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_sends_each_run_to_mlflow_linked_to_its_run() {
    use agent_profiler::executor::{Console, WorkflowConfig, WorkflowExecutor};
    use agent_profiler::llm::OpenAiClient;

    let name = "executor_sends_each_run_to_mlflow";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let server = LlmProvider::start();
    let client = Arc::new(OpenAiClient::new(&server.base_url(), None).unwrap());
    let executor = WorkflowExecutor::new(client)
        .console(Console::Silent)
        .mlflow(mlflow_api::config(&uri, name));
    let config = WorkflowConfig::from_json_str(
        r#"{"name": "otlp-executor", "steps": [
            {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan"},
            {"parallel": [
                {"id": "web", "model": "gpt-4o-mini", "prompt": "Web {plan}", "output_key": "web"},
                {"id": "papers", "model": "gpt-4o", "prompt": "Papers {plan}", "output_key": "papers"}
            ]}
        ]}"#,
    )
    .unwrap();
    let run = executor
        .run_config(&config, json!({"topic": "otlp"}))
        .await
        .unwrap();
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    let exporter = executor
        .otlp_exporter()
        .expect("found from the MLflow config");
    assert!(exporter.flush(WAIT), "{:?}", exporter.stats());
    assert_nothing_lost(&exporter.stats());

    let (info, trace) = mlflow_trace_of(&uri, &run).await;
    let spans = spans_of(&trace);
    let root = one(&spans, "otlp-executor");
    assert_eq!(root.parent, None);
    for node in ["plan", "web", "papers"] {
        let span = one(&spans, node);
        assert_eq!(span.parent.as_deref(), Some(root.id.as_str()), "{node}");
        assert!(
            span.start >= root.start && span.end <= root.end,
            "{node} within the run"
        );
    }
    let kept = run.trace.as_ref().unwrap();
    let llm_calls: usize = kept.spans.iter().map(|s| s.llm_calls.len()).sum();
    assert_eq!(llm_calls, 3);
    let usage = metadata(&info, "mlflow.trace.tokenUsage");
    let tokens: u64 = kept.spans.iter().map(|s| s.llm_totals().total_tokens).sum();
    assert_eq!(number(&usage["total_tokens"]), tokens);
}

/// The trace MLflow holds for executor run `run`: its search entry and the trace itself.
async fn mlflow_trace_of(uri: &str, run: &agent_profiler::executor::WorkflowRun) -> (Value, Value) {
    let experiment = run.mlflow_experiment_id.clone().expect("an experiment");
    let mlflow_run = run.mlflow_run_id.clone().expect("an MLflow run");
    let uri = uri.to_owned();
    // The REST calls block: on a blocking thread, not the runtime's.
    tokio::task::spawn_blocking(move || mlflow_api::trace_of_run(&uri, &experiment, &mlflow_run))
        .await
        .unwrap()
}

/// Runs a one-node workflow whose prompt holds `marker` through an executor logging to
/// MLflow, with prompts and answers kept or not; the run and its trace as the REST API
/// returns it, as text and as spans.
async fn executor_run_with_content(
    uri: &str,
    test: &str,
    marker: &str,
    keep: bool,
) -> (agent_profiler::executor::WorkflowRun, String, Vec<Got>) {
    use agent_profiler::executor::{Console, WorkflowConfig, WorkflowExecutor};
    use agent_profiler::llm::OpenAiClient;

    let server = LlmProvider::start();
    let client = Arc::new(OpenAiClient::new(&server.base_url(), None).unwrap());
    let executor = WorkflowExecutor::new(client)
        .console(Console::Silent)
        .store_prompts(keep)
        .store_responses(keep)
        .mlflow(mlflow_api::config(uri, test));
    let config = WorkflowConfig::from_json_str(
        r#"{"name": "otlp-content", "steps": [
            {"id": "ask", "model": "gpt-4o-mini", "prompt": "Tell me about {topic}", "output_key": "answer"}
        ]}"#,
    )
    .unwrap();
    let run = executor
        .run_config(&config, json!({"topic": marker}))
        .await
        .unwrap();
    let exporter = executor
        .otlp_exporter()
        .expect("found from the MLflow config");
    assert!(exporter.flush(WAIT), "{:?}", exporter.stats());
    assert_nothing_lost(&exporter.stats());
    let (info, trace) = mlflow_trace_of(uri, &run).await;
    let text = format!("{info} {trace}");
    (run, text, spans_of(&trace))
}

/// With prompts and answers kept (`store_prompts`, `store_responses`), the root span holds
/// the run's inputs and what it wrote, the chat span the prompt and the answer; without,
/// not one character of the prompt or the answer is in the trace MLflow holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executor_sends_prompts_and_answers_only_when_allowed() {
    let name = "executor_sends_prompts_and_answers";
    let Some(uri) = mlflow_server::tracking_uri(name) else {
        return;
    };
    let marker = format!("marker-{}", scratch::unique("kept"));
    let (run, text, spans) = executor_run_with_content(&uri, name, &marker, true).await;
    let answer = run.state["answer"].as_str().unwrap().to_owned();
    assert!(!answer.is_empty());
    let root = one(&spans, "otlp-content");
    assert_eq!(
        json_attribute(root, "mlflow.spanInputs"),
        json!({"topic": marker})
    );
    assert_eq!(
        json_attribute(root, "mlflow.spanOutputs"),
        json!({"answer": answer}),
        "what the run wrote, not its inputs again"
    );
    let ask = one(&spans, "ask");
    assert_eq!(ask.string("mlflow.spanType"), "CHAIN");
    let chats: Vec<&Got> = spans
        .iter()
        .filter(|s| s.name.starts_with("chat "))
        .collect();
    assert_eq!(chats.len(), 1, "{text}");
    let chat = chats[0];
    assert_eq!(chat.parent.as_deref(), Some(ask.id.as_str()));
    assert_eq!(
        json_attribute(chat, "mlflow.spanInputs")["messages"][0]["content"],
        format!("Tell me about {marker}")
    );
    assert_eq!(
        json_attribute(chat, "gen_ai.output.messages")[0]["parts"][0]["content"],
        answer.as_str()
    );
    assert!(text.contains("request_preview"), "{text}");

    let marker = format!("marker-{}", scratch::unique("hidden"));
    let (run, text, spans) = executor_run_with_content(&uri, name, &marker, false).await;
    let answer = run.state["answer"].as_str().unwrap();
    assert!(
        !text.contains(&marker),
        "the prompt left the process: {text}"
    );
    assert!(
        !text.contains(answer),
        "the answer left the process: {text}"
    );
    for span in &spans {
        for key in [
            "mlflow.spanInputs",
            "mlflow.spanOutputs",
            "gen_ai.input.messages",
            "gen_ai.output.messages",
        ] {
            assert!(!span.attributes.contains_key(key), "{}: {key}", span.name);
        }
    }
    assert_eq!(
        one(&spans, "otlp-content").string("mlflow.spanType"),
        "AGENT"
    );
}
