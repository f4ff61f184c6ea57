//! From a [`Trace`] to OTLP messages: a root span for the workflow, a span per node call,
//! the LLM calls in the OpenTelemetry GenAI conventions. Pure functions, no I/O.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

use super::config::{LlmSpans, OtlpConfig};
use super::sampler::RunFacts;
use agent_profiler_runtime::cost::{CostBreakdown, CostInfo};
use agent_profiler_runtime::critical::{CriticalPath, PathMethod};
use agent_profiler_runtime::trace::{Span, Trace, random_u64, splitmix64};
use agent_profiler_runtime::{LlmOutcome, Outcome};
use serde_json::{Value, json};

/// The OTLP span message.
type OtlpSpan = opentelemetry_proto::tonic::trace::v1::Span;

/// Span flags: the W3C "sampled" bit, and "whether the parent is remote" is known (it is
/// not: every parent is in the same trace, made here).
const SPAN_FLAGS: u32 = 0x0000_0101;

/// The value of a span attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// Text.
    String(String),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
}

impl From<&str> for AttributeValue {
    fn from(v: &str) -> Self {
        AttributeValue::String(v.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(v: String) -> Self {
        AttributeValue::String(v)
    }
}

impl From<&String> for AttributeValue {
    fn from(v: &String) -> Self {
        AttributeValue::String(v.clone())
    }
}

impl From<bool> for AttributeValue {
    fn from(v: bool) -> Self {
        AttributeValue::Bool(v)
    }
}

impl From<i64> for AttributeValue {
    fn from(v: i64) -> Self {
        AttributeValue::Int(v)
    }
}

impl From<i32> for AttributeValue {
    fn from(v: i32) -> Self {
        AttributeValue::Int(i64::from(v))
    }
}

impl From<u32> for AttributeValue {
    fn from(v: u32) -> Self {
        AttributeValue::Int(i64::from(v))
    }
}

/// Values above `i64::MAX` (OTLP's integers are signed) become `i64::MAX`.
impl From<u64> for AttributeValue {
    fn from(v: u64) -> Self {
        AttributeValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

/// Values above `i64::MAX` become `i64::MAX`.
impl From<usize> for AttributeValue {
    fn from(v: usize) -> Self {
        AttributeValue::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<f64> for AttributeValue {
    fn from(v: f64) -> Self {
        AttributeValue::Double(v)
    }
}

impl AttributeValue {
    fn into_any(self) -> AnyValue {
        let value = match self {
            AttributeValue::String(s) => any_value::Value::StringValue(s),
            AttributeValue::Bool(b) => any_value::Value::BoolValue(b),
            AttributeValue::Int(i) => any_value::Value::IntValue(i),
            AttributeValue::Double(d) => any_value::Value::DoubleValue(d),
        };
        AnyValue { value: Some(value) }
    }
}

/// The workflow run's own span: the root of the exported trace, parent of every node call
/// that had no profiled parent (or whose parent's span was not kept).
///
/// ```
/// use agent_profiler_runtime::Outcome;
/// use agent_profiler_otlp::RootSpan;
///
/// let root = RootSpan::new("research-workflow")
///     .outcome(Outcome::Error)
///     .status_message("step `search` failed")
///     .attribute("agent_profiler.run_id", "run-42")
///     .attribute("agent_profiler.total_time_ms", 1234.5)
///     .mlflow_run("0123456789abcdef0123456789abcdef");
/// assert_eq!(root.name(), "research-workflow");
/// assert_eq!(root.mlflow_run_id(), Some("0123456789abcdef0123456789abcdef"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RootSpan {
    name: String,
    start_unix_ns: Option<u64>,
    end_unix_ns: Option<u64>,
    outcome: Outcome,
    message: Option<String>,
    attributes: Vec<(String, AttributeValue)>,
    mlflow_run_id: Option<String>,
    llm_totals: Option<CostBreakdown>,
    inputs: Option<Value>,
    outputs: Option<Value>,
    exchanges: HashMap<u64, LlmExchange>,
}

/// What one node call asked its model and what it answered, for the spans of its LLM calls
/// (see [`RootSpan::exchange`]). Either part may be missing: only what the user allowed to
/// be kept is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LlmExchange {
    /// The prompt sent (the user message).
    pub prompt: Option<String>,
    /// The model's answer.
    pub answer: Option<String>,
}

impl RootSpan {
    /// A root span called `name` (the workflow's name), status OK, spanning the trace's
    /// spans (earliest start to latest end; now when there are none).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            start_unix_ns: None,
            end_unix_ns: None,
            outcome: Outcome::Ok,
            message: None,
            attributes: Vec::new(),
            mlflow_run_id: None,
            llm_totals: None,
            inputs: None,
            outputs: None,
            exchanges: HashMap::new(),
        }
    }

    /// When the run started and ended, ns since the Unix epoch (an end before the start is
    /// taken as the start).
    pub fn start_end(mut self, start_unix_ns: u64, end_unix_ns: u64) -> Self {
        self.start_unix_ns = Some(start_unix_ns);
        self.end_unix_ns = Some(end_unix_ns.max(start_unix_ns));
        self
    }

    /// How the run ended: [`Outcome::Ok`] gives status OK, the others status ERROR (the
    /// trace's state in MLflow).
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// The status message of a failed run (default: the outcome's name).
    pub fn status_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Adds an attribute of the run (run id, totals, parameters...); a later value for the
    /// same key replaces the earlier one.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        let key = key.into();
        self.attributes.retain(|(k, _)| *k != key);
        self.attributes.push((key, value.into()));
        self
    }

    /// The run's critical path as attributes: `agent_profiler.critical_path` (`a -> b -> c`,
    /// cut like a long prompt), `agent_profiler.critical_path.method` (`structure` or
    /// `trace`), `agent_profiler.critical_path_ms` (its wall time), and, when some node's
    /// speed-up shortens the run, `agent_profiler.what_if.best_node` and
    /// `agent_profiler.what_if.best_saves_ms` (its saving at the path's speed-up).
    ///
    /// ```
    /// use agent_profiler_otlp::RootSpan;
    /// use agent_profiler_runtime::critical::{Flow, Piece};
    ///
    /// let flow = Flow::Seq(vec![
    ///     Flow::work(Piece::new("plan", 10_000_000)),
    ///     Flow::work(Piece::new("write", 30_000_000)),
    /// ]);
    /// let root = RootSpan::new("research").critical_path(&flow.critical_path(2.0));
    /// assert_eq!(root.name(), "research");
    /// ```
    pub fn critical_path(self, path: &CriticalPath) -> Self {
        let method = match path.method {
            PathMethod::Structure => "structure",
            PathMethod::Trace => "trace",
        };
        let mut root = self
            .attribute(
                "agent_profiler.critical_path",
                capped(&path.path_text()).into_owned(),
            )
            .attribute("agent_profiler.critical_path.method", method)
            .attribute("agent_profiler.critical_path_ms", path.wall_time_ms);
        if let Some(best) = path.best_speedup() {
            root = root
                .attribute("agent_profiler.what_if.best_node", best.node_id.clone())
                .attribute("agent_profiler.what_if.best_saves_ms", best.faster_saves_ms);
        }
        root
    }

    /// Links the trace to this MLflow run (sent as the `x-mlflow-run-id` header with the
    /// root span: MLflow then lists the trace under the run).
    pub fn mlflow_run(mut self, run_id: impl Into<String>) -> Self {
        self.mlflow_run_id = Some(run_id.into()).filter(|id| !id.is_empty());
        self
    }

    /// The run's LLM totals for the root span's `agent_profiler.llm.*` attributes (default:
    /// the sum over the kept spans; give the analyzer's totals when spans were dropped).
    pub fn llm_totals(mut self, totals: CostBreakdown) -> Self {
        self.llm_totals = Some(totals);
        self
    }

    /// The run's inputs, shown as the trace's request (MLflow's Input column and the root
    /// span's inputs). Only give what may leave the process.
    pub fn inputs(mut self, inputs: Value) -> Self {
        self.inputs = Some(inputs);
        self
    }

    /// The run's outputs, shown as the trace's response (MLflow's Output column).
    pub fn outputs(mut self, outputs: Value) -> Self {
        self.outputs = Some(outputs);
        self
    }

    /// What the node call of span `span_id` (a [`Span::span_id`] of the trace) asked and
    /// answered: the prompt goes on each of its LLM call spans and on its own span, the
    /// answer on its last LLM call span and on its own span.
    pub fn exchange(mut self, span_id: u64, exchange: LlmExchange) -> Self {
        if exchange.prompt.is_some() || exchange.answer.is_some() {
            self.exchanges.insert(span_id, exchange);
        }
        self
    }

    /// The span's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The MLflow run the trace is linked to, if any.
    pub fn mlflow_run_id(&self) -> Option<&str> {
        self.mlflow_run_id.as_deref()
    }

    /// What the sampler needs to know of the run of `trace`: its id, name, whether it
    /// failed (an outcome other than OK) and how long it took (the root's start and end, else
    /// the trace's bounds).
    pub(crate) fn run_facts<'a>(&'a self, trace: &Trace) -> RunFacts<'a> {
        let (start, end) = match (self.start_unix_ns, self.end_unix_ns) {
            (Some(start), Some(end)) => (start, end),
            _ => trace.bounds().unwrap_or((0, 0)),
        };
        RunFacts {
            trace_id: trace.trace_id_bytes(),
            name: &self.name,
            failed: self.outcome != Outcome::Ok,
            duration_ns: end.saturating_sub(start),
        }
    }
}

pub(crate) fn kv(key: &str, value: impl Into<AttributeValue>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value.into().into_any()),
        ..Default::default()
    }
}

fn kv_strings<'a>(key: &str, values: impl IntoIterator<Item = &'a str>) -> KeyValue {
    let values = values
        .into_iter()
        .map(|v| AttributeValue::from(v).into_any())
        .collect();
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values })),
        }),
        ..Default::default()
    }
}

/// `mlflow.llm.cost`: the map MLflow reads a span's cost from (USD). Only the total is
/// known.
fn mlflow_cost(total_usd: f64) -> KeyValue {
    KeyValue {
        key: "mlflow.llm.cost".to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::KvlistValue(KeyValueList {
                values: vec![kv("total_cost", total_usd)],
            })),
        }),
        ..Default::default()
    }
}

/// A span id derived from `seed` (the same for the same seed: converting a trace twice gives
/// the same ids) that is neither 0 nor in `used` (then added to it).
fn fresh_id(seed: u64, used: &mut HashSet<u64>) -> u64 {
    let mut state = seed;
    loop {
        let id = splitmix64(&mut state);
        if id != 0 && used.insert(id) {
            return id;
        }
    }
}

/// A random trace id, for a trace whose own id is not usable (not 32 hex digits, or 0).
fn random_trace_id() -> [u8; 16] {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    if id == [0; 16] { [1; 16] } else { id }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn status(outcome: Outcome, message: Option<&str>) -> Status {
    match outcome {
        Outcome::Ok => Status {
            code: StatusCode::Ok as i32,
            message: String::new(),
        },
        other => Status {
            code: StatusCode::Error as i32,
            message: message.unwrap_or(other.as_str()).to_owned(),
        },
    }
}

/// The `agent_profiler.llm.*` sums of a group of calls.
fn llm_summary(attributes: &mut Vec<KeyValue>, totals: &CostBreakdown) {
    if totals.calls == 0 {
        return;
    }
    attributes.push(kv("agent_profiler.llm.calls", totals.calls));
    attributes.push(kv("agent_profiler.llm.input_tokens", totals.input_tokens));
    attributes.push(kv("agent_profiler.llm.output_tokens", totals.output_tokens));
    attributes.push(kv("agent_profiler.llm.total_tokens", totals.total_tokens));
    for (key, value) in [
        (
            "agent_profiler.llm.cached_input_tokens",
            totals.cached_input_tokens,
        ),
        (
            "agent_profiler.llm.cache_creation_input_tokens",
            totals.cache_creation_input_tokens,
        ),
        (
            "agent_profiler.llm.reasoning_tokens",
            totals.reasoning_tokens,
        ),
        ("agent_profiler.llm.unpriced_calls", totals.unpriced_calls),
    ] {
        if value > 0 {
            attributes.push(kv(key, value));
        }
    }
    if totals.calls > totals.unpriced_calls {
        attributes.push(kv("agent_profiler.cost_usd", totals.cost_usd));
    }
}

fn totals_of(calls: &[CostInfo]) -> CostBreakdown {
    let mut totals = CostBreakdown::default();
    for call in calls {
        totals.add(call);
    }
    totals
}

/// The OpenTelemetry GenAI attributes of a group of LLM calls (summed), as MLflow's
/// translator reads them, plus the cost.
fn genai_attributes(attributes: &mut Vec<KeyValue>, calls: &[CostInfo]) {
    if calls.is_empty() {
        return;
    }
    let totals = totals_of(calls);
    let models: BTreeSet<&str> = calls.iter().map(|c| c.model.as_str()).collect();
    let providers: BTreeSet<&str> = calls.iter().map(|c| c.provider.as_str()).collect();
    if let [model] = models.iter().copied().collect::<Vec<_>>().as_slice() {
        attributes.push(kv("gen_ai.operation.name", "chat"));
        attributes.push(kv("gen_ai.request.model", *model));
    } else {
        attributes.push(kv_strings("agent_profiler.llm.models", models));
    }
    if let [provider] = providers.iter().copied().collect::<Vec<_>>().as_slice() {
        attributes.push(kv("gen_ai.provider.name", *provider));
    } else {
        attributes.push(kv_strings("agent_profiler.llm.providers", providers));
    }
    attributes.push(kv("gen_ai.usage.input_tokens", totals.input_tokens));
    attributes.push(kv("gen_ai.usage.output_tokens", totals.output_tokens));
    if totals.cached_input_tokens > 0 {
        attributes.push(kv(
            "gen_ai.usage.cache_read.input_tokens",
            totals.cached_input_tokens,
        ));
    }
    if totals.cache_creation_input_tokens > 0 {
        attributes.push(kv(
            "gen_ai.usage.cache_write.input_tokens",
            totals.cache_creation_input_tokens,
        ));
    }
    if totals.calls > totals.unpriced_calls {
        attributes.push(mlflow_cost(totals.cost_usd));
    }
}

/// Every span of the trace as OTLP spans: node calls (in the trace's order), each followed
/// by its LLM call spans in [`LlmSpans::PerCall`] mode, and the root last.
fn otlp_spans(trace: &Trace, root: &RootSpan, config: &OtlpConfig) -> Vec<OtlpSpan> {
    let mut trace_id = trace.trace_id_bytes();
    if trace_id == [0; 16] {
        trace_id = random_trace_id();
    }
    let kept: HashSet<u64> = trace.spans.iter().map(|s| s.span_id).collect();
    let mut used = kept.clone();
    let seed = u64::from_be_bytes(trace_id[..8].try_into().unwrap_or_default())
        ^ u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default()).rotate_left(29);
    let root_id = fresh_id(seed ^ 0x726f_6f74, &mut used);
    let per_call = config.llm_spans == LlmSpans::PerCall;

    let mut out = Vec::with_capacity(trace.spans.len() + 1);
    for span in &trace.spans {
        let parent = span
            .parent_span_id
            .filter(|p| kept.contains(p))
            .unwrap_or(root_id);
        let exchange = root.exchanges.get(&span.span_id);
        out.push(node_span(span, trace_id, parent, per_call, exchange));
        if per_call {
            let answered = answered_call(&span.llm_calls);
            for (index, call) in span.llm_calls.iter().enumerate() {
                let id = fresh_id(span.span_id ^ ((index as u64 + 1) << 48), &mut used);
                let mut chat = llm_span(call, span, trace_id, id);
                if let Some(exchange) = exchange {
                    let answer = exchange
                        .answer
                        .as_deref()
                        .filter(|_| answered == Some(index));
                    content_attributes(&mut chat.attributes, exchange.prompt.as_deref(), answer);
                }
                out.push(chat);
            }
        }
    }

    let (start, end) = match (root.start_unix_ns, root.end_unix_ns) {
        (Some(start), Some(end)) => (start, end.max(start)),
        _ => trace.bounds().unwrap_or_else(|| {
            let now = now_ns();
            (now, now)
        }),
    };
    let mut attributes: Vec<KeyValue> = root
        .attributes
        .iter()
        .map(|(k, v)| kv(k, v.clone()))
        .collect();
    let has = |attributes: &[KeyValue], key: &str| attributes.iter().any(|a| a.key == key);
    let mut automatic = vec![
        kv("agent_profiler.spans", trace.spans.len()),
        kv("agent_profiler.spans_dropped", trace.dropped),
        kv("agent_profiler.trace_capacity", trace.capacity),
        kv(
            "agent_profiler.unattached_llm_calls",
            trace.unattached_llm_calls,
        ),
    ];
    if root.outcome != Outcome::Ok {
        automatic.push(kv("error.type", root.outcome.as_str()));
    }
    automatic.push(span_type("AGENT"));
    if let Some(inputs) = &root.inputs {
        automatic.push(kv(MLFLOW_INPUTS, capped_json(inputs)));
    }
    if let Some(outputs) = &root.outputs {
        automatic.push(kv(MLFLOW_OUTPUTS, capped_json(outputs)));
    }
    let totals = root.llm_totals.clone().unwrap_or_else(|| {
        let mut totals = CostBreakdown::default();
        for span in &trace.spans {
            for call in &span.llm_calls {
                totals.add(call);
            }
        }
        totals
    });
    llm_summary(&mut automatic, &totals);
    for attribute in automatic {
        if !has(&attributes, &attribute.key) {
            attributes.push(attribute);
        }
    }
    out.push(OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: root_id.to_be_bytes().to_vec(),
        flags: SPAN_FLAGS,
        name: root.name.clone(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status: Some(status(root.outcome, root.message.as_deref())),
        ..Default::default()
    });
    out
}

fn node_span(
    span: &Span,
    trace_id: [u8; 16],
    parent: u64,
    per_call: bool,
    exchange: Option<&LlmExchange>,
) -> OtlpSpan {
    let mut attributes = vec![
        kv("agent_profiler.node_id", &*span.node_id),
        kv("agent_profiler.outcome", span.outcome.as_str()),
        kv("agent_profiler.thread", span.thread),
        kv("agent_profiler.is_async", span.is_async),
        kv("agent_profiler.busy_ns", span.busy_ns),
    ];
    if let Some(parent_node) = &span.parent_node_id {
        attributes.push(kv("agent_profiler.parent_node_id", &**parent_node));
    }
    if span.outcome != Outcome::Ok {
        attributes.push(kv("error.type", span.outcome.as_str()));
    }
    llm_summary(&mut attributes, &span.llm_totals());
    if !per_call {
        genai_attributes(&mut attributes, &span.llm_calls);
    }
    // Without spans of their own, the calls are the node: MLflow shows it as a chat.
    let kind = if !per_call && !span.llm_calls.is_empty() {
        "CHAT_MODEL"
    } else {
        "CHAIN"
    };
    attributes.push(span_type(kind));
    if let Some(exchange) = exchange {
        content_attributes(
            &mut attributes,
            exchange.prompt.as_deref(),
            exchange.answer.as_deref(),
        );
    }
    OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: span.span_id.to_be_bytes().to_vec(),
        parent_span_id: parent.to_be_bytes().to_vec(),
        flags: SPAN_FLAGS,
        name: span.node_id.to_string(),
        kind: SpanKind::Internal as i32,
        start_time_unix_nano: span.start_unix_ns,
        end_time_unix_nano: span.end_unix_ns.max(span.start_unix_ns),
        attributes,
        status: Some(status(span.outcome, None)),
        ..Default::default()
    }
}

/// One LLM call as a `chat {model}` client span under its node's span: from its start to
/// its end for a timed call, else at the moment it was tracked (kept within the node's
/// span), lasting nothing.
fn llm_span(call: &CostInfo, node: &Span, trace_id: [u8; 16], id: u64) -> OtlpSpan {
    let (start, end) = match &call.timing {
        Some(timing) => (
            timing.start_unix_ns,
            timing.end_unix_ns.max(timing.start_unix_ns),
        ),
        None => {
            let end = node.end_unix_ns.max(node.start_unix_ns);
            let at = if call.timestamp.is_finite() && call.timestamp > 0.0 {
                ((call.timestamp * 1e9) as u64).clamp(node.start_unix_ns, end)
            } else {
                end
            };
            (at, at)
        }
    };
    let mut attributes = vec![kv("agent_profiler.node_id", &*node.node_id)];
    if call.has_usage {
        genai_attributes(&mut attributes, std::slice::from_ref(call));
    } else {
        // No usage to report: zeros would read as a call that used no tokens.
        attributes.push(kv("gen_ai.operation.name", "chat"));
        attributes.push(kv("gen_ai.request.model", call.model.as_str()));
        attributes.push(kv("gen_ai.provider.name", call.provider.as_str()));
    }
    attributes.push(span_type("CHAT_MODEL"));
    if call.reasoning_tokens > 0 {
        attributes.push(kv(
            "agent_profiler.llm.reasoning_tokens",
            call.reasoning_tokens,
        ));
    }
    match call.cost_usd {
        Some(cost) => attributes.push(kv("agent_profiler.cost_usd", cost)),
        None => {
            if let Some(reason) = &call.unpriced_reason {
                attributes.push(kv("agent_profiler.llm.unpriced_reason", reason.as_str()));
            }
        }
    }
    if let Some(key) = &call.price_key {
        attributes.push(kv("agent_profiler.llm.price_key", key.as_str()));
    }
    let mut status = status(Outcome::Ok, None);
    if let Some(timing) = &call.timing {
        attributes.push(kv("gen_ai.request.stream", timing.stream));
        if let Some(ttft) = timing.ttft_ns() {
            attributes.push(kv("gen_ai.response.time_to_first_chunk", ttft as f64 / 1e9));
        }
        attributes.push(kv(
            "agent_profiler.llm.duration_ms",
            timing.duration_ns() as f64 / 1e6,
        ));
        attributes.push(kv("agent_profiler.llm.outcome", timing.outcome.as_str()));
        if call.has_usage && call.output_tokens > 0 {
            if let Some(rate) = timing.output_tokens_per_second(call.output_tokens) {
                attributes.push(kv("agent_profiler.llm.output_tokens_per_second", rate));
            }
        }
        if timing.outcome != LlmOutcome::Ok {
            attributes.push(kv("error.type", timing.outcome.as_str()));
            let message = timing.error.as_deref().unwrap_or(timing.outcome.as_str());
            attributes.push(kv("agent_profiler.llm.error", message));
            status = Status {
                code: StatusCode::Error as i32,
                message: message.to_owned(),
            };
        }
    }
    OtlpSpan {
        trace_id: trace_id.to_vec(),
        span_id: id.to_be_bytes().to_vec(),
        parent_span_id: node.span_id.to_be_bytes().to_vec(),
        flags: SPAN_FLAGS,
        name: format!("chat {}", call.model),
        kind: SpanKind::Client as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes,
        status: Some(status),
        ..Default::default()
    }
}

/// The call an answer belongs to: the last one that ended well (an untimed call is taken
/// to have).
fn answered_call(calls: &[CostInfo]) -> Option<usize> {
    calls.iter().rposition(|c| {
        c.timing
            .as_ref()
            .is_none_or(|t| t.outcome == LlmOutcome::Ok)
    })
}

/// The most characters of a prompt, an answer or the run's inputs or outputs sent on a
/// span: a receiver limits the size of a request (MLflow's default body limit is far larger,
/// collectors' are often a few MiB), and one long document in a prompt must not cost the
/// whole trace.
const MAX_CONTENT_CHARS: usize = 32 * 1024;

/// `text`, or its first [`MAX_CONTENT_CHARS`] characters followed by how much was left out.
fn capped(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(MAX_CONTENT_CHARS) {
        None => text.into(),
        Some((cut, _)) => {
            let left = text[cut..].chars().count();
            format!("{}… [{left} more characters not sent]", &text[..cut]).into()
        }
    }
}

/// `value` as JSON, or, when longer than [`MAX_CONTENT_CHARS`], a JSON string of its
/// beginning (cut JSON would not parse).
fn capped_json(value: &Value) -> String {
    let text = value.to_string();
    match capped(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => Value::from(cut).to_string(),
    }
}

/// `mlflow.spanInputs`: the span's inputs, JSON-encoded, as MLflow stores every attribute
/// (`SpanAttributeKey.INPUTS`); the root span's become the trace's request preview.
const MLFLOW_INPUTS: &str = "mlflow.spanInputs";
/// `mlflow.spanOutputs`: the span's outputs, JSON-encoded (`SpanAttributeKey.OUTPUTS`).
const MLFLOW_OUTPUTS: &str = "mlflow.spanOutputs";

/// `mlflow.spanType` (`SpanAttributeKey.SPAN_TYPE`): JSON-encoded like every MLflow
/// attribute, one of MLflow's `SpanType` names.
fn span_type(kind: &str) -> KeyValue {
    kv("mlflow.spanType", Value::from(kind).to_string())
}

/// The prompt and answer of a call, where MLflow reads a span's inputs and outputs (in the
/// OpenAI chat shape its chat view draws) and in the GenAI convention's opt-in message
/// attributes, for other OpenTelemetry receivers.
fn content_attributes(attributes: &mut Vec<KeyValue>, prompt: Option<&str>, answer: Option<&str>) {
    let (prompt, answer) = (prompt.map(capped), answer.map(capped));
    if let Some(prompt) = prompt.as_deref() {
        let input = json!({ "messages": [{ "role": "user", "content": prompt }] });
        attributes.push(kv(MLFLOW_INPUTS, input.to_string()));
        let messages = json!([{
            "role": "user",
            "parts": [{ "type": "text", "content": prompt }],
        }]);
        attributes.push(kv("gen_ai.input.messages", messages.to_string()));
    }
    if let Some(answer) = answer.as_deref() {
        let output = json!({
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": answer },
                "finish_reason": "stop",
            }],
        });
        attributes.push(kv(MLFLOW_OUTPUTS, output.to_string()));
        let messages = json!([{
            "role": "assistant",
            "parts": [{ "type": "text", "content": answer }],
            "finish_reason": "stop",
        }]);
        attributes.push(kv("gen_ai.output.messages", messages.to_string()));
    }
}

pub(crate) fn resource(config: &OtlpConfig) -> Resource {
    let mut attributes = vec![
        kv("service.name", config.service_name.as_str()),
        kv("telemetry.sdk.name", "agent-profiler"),
        kv("telemetry.sdk.language", "rust"),
        kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    for (key, value) in &config.resource_attributes {
        attributes.retain(|a| a.key != *key);
        attributes.push(kv(key, value.as_str()));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn request(resource: Resource, spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "agent-profiler".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The whole trace as one OTLP request: the resource (`service.name` and the configured
/// attributes), a span per node call, the LLM calls (see [`LlmSpans`]), and the root span
/// last.
///
/// Ids: the trace id is [`Trace::trace_id_bytes`] (a random one when that is zero); a node
/// span's id is `span_id.to_be_bytes()`, its parent the span of the node that called it, or
/// the root span when it had none or that span was not kept. The root span's id (and those
/// of LLM call spans) are derived from the trace id and collide with no node span, so
/// exporting the same trace again sends the same spans (receivers that upsert, such as
/// MLflow, keep one copy).
///
/// ```
/// use agent_profiler_runtime::BottleneckAnalyzer;
/// use agent_profiler_otlp::{OtlpConfig, RootSpan, to_request};
///
/// let analyzer = BottleneckAnalyzer::new();
/// analyzer.enable_trace(64);
/// analyzer.record_node("plan", 5.0).unwrap();
/// let trace = analyzer.trace().unwrap();
/// let config = OtlpConfig::new("http://127.0.0.1:4318/v1/traces").unwrap();
/// let request = to_request(&trace, &RootSpan::new("workflow"), &config);
/// let spans = &request.resource_spans[0].scope_spans[0].spans;
/// assert_eq!(spans.len(), 2);
/// assert_eq!(spans[0].name, "plan");
/// assert_eq!(spans[1].name, "workflow");
/// assert_eq!(spans[0].parent_span_id, spans[1].span_id);
/// ```
pub fn to_request(
    trace: &Trace,
    root: &RootSpan,
    config: &OtlpConfig,
) -> ExportTraceServiceRequest {
    request(resource(config), otlp_spans(trace, root, config))
}

/// [`to_request`] split into requests of at most
/// [`max_spans_per_request`](OtlpConfig::max_spans_per_request) spans each, the root span
/// in the last one (receivers assemble the trace by its id; MLflow marks it complete when
/// the root arrives).
pub fn to_requests(
    trace: &Trace,
    root: &RootSpan,
    config: &OtlpConfig,
) -> Vec<ExportTraceServiceRequest> {
    let resource = resource(config);
    let per_request = config.max_spans_per_request.max(1);
    let spans = otlp_spans(trace, root, config);
    let mut requests = Vec::with_capacity(spans.len().div_ceil(per_request));
    let mut batch = Vec::with_capacity(per_request.min(spans.len()));
    for span in spans {
        batch.push(span);
        if batch.len() == per_request {
            requests.push(request(resource.clone(), std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        requests.push(request(resource, batch));
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_content_is_cut_and_says_so() {
        let short = "a prompt";
        assert_eq!(capped(short), short);
        let long = "é".repeat(MAX_CONTENT_CHARS + 5);
        let cut = capped(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_CONTENT_CHARS)));
        assert!(
            cut.ends_with("… [5 more characters not sent]"),
            "{}",
            &cut[cut.len() - 40..]
        );
        let inputs = json!({ "doc": "x".repeat(MAX_CONTENT_CHARS) });
        let sent: Value = serde_json::from_str(&capped_json(&inputs)).unwrap();
        assert!(
            sent.as_str().unwrap().starts_with("{\"doc\":\"xxx"),
            "{sent}"
        );
        assert_eq!(
            capped_json(&json!({"topic": "rust"})),
            r#"{"topic":"rust"}"#
        );
    }
    use agent_profiler_runtime::trace::test_support::span;

    fn call(provider: &str, model: &str, input: u64, output: u64, cost: Option<f64>) -> CostInfo {
        CostInfo {
            provider: provider.to_owned(),
            model: model.to_owned(),
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output,
            cached_input_tokens: input / 10,
            cache_creation_input_tokens: 0,
            reasoning_tokens: 0,
            cost_usd: cost,
            unpriced_reason: cost.is_none().then(|| "no price".to_owned()),
            price_key: cost.map(|_| model.to_owned()),
            node_id: None,
            timestamp: 1_700_000_000.5,
            timing: None,
            has_usage: true,
        }
    }

    const T0: u64 = 1_700_000_000_000_000_000;

    /// outer(1) > [middle(2) > leaf(3)], fails(4) whose parent (99) was not kept.
    fn sample() -> Trace {
        let mut middle = span(2, Some(1), "middle", T0 + 10, T0 + 900_000_000);
        middle.parent_node_id = Some("outer".into());
        middle.llm_calls = vec![
            call("openai", "gpt-4o", 1000, 100, Some(0.0035)),
            call("openai", "gpt-4o", 500, 50, Some(0.001)),
        ];
        let mut leaf = span(3, Some(2), "leaf", T0 + 20, T0 + 30);
        leaf.is_async = true;
        leaf.thread = 7;
        leaf.llm_calls = vec![call("anthropic", "claude-sonnet-4-5", 10, 5, None)];
        let mut fails = span(4, Some(99), "fails", T0 + 5, T0 + 6);
        fails.outcome = Outcome::Panicked;
        fails.parent_node_id = Some("gone".into());
        Trace {
            trace_id: "0123456789abcdef0123456789abcdef".into(),
            spans: vec![
                leaf,
                middle,
                fails,
                span(1, None, "outer", T0, T0 + 1_000_000_000),
            ],
            polls: Vec::new(),
            capacity: 4,
            dropped: 2,
            unattached_llm_calls: 1,
        }
    }

    fn spans(request: &ExportTraceServiceRequest) -> &[OtlpSpan] {
        &request.resource_spans[0].scope_spans[0].spans
    }

    fn by_name<'a>(spans: &'a [OtlpSpan], name: &str) -> &'a OtlpSpan {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
    }

    fn attr<'a>(span: &'a OtlpSpan, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn int(span: &OtlpSpan, key: &str) -> Option<i64> {
        match attr(span, key) {
            Some(any_value::Value::IntValue(i)) => Some(*i),
            _ => None,
        }
    }

    fn string<'a>(span: &'a OtlpSpan, key: &str) -> Option<&'a str> {
        match attr(span, key) {
            Some(any_value::Value::StringValue(s)) => Some(s),
            _ => None,
        }
    }

    fn double(span: &OtlpSpan, key: &str) -> Option<f64> {
        match attr(span, key) {
            Some(any_value::Value::DoubleValue(d)) => Some(*d),
            _ => None,
        }
    }

    fn config() -> OtlpConfig {
        OtlpConfig::new("http://127.0.0.1:4318/v1/traces")
            .unwrap()
            .service_name("svc")
            .resource_attribute("deployment.environment", "test")
    }

    #[test]
    fn critical_path_on_the_root() {
        use agent_profiler_runtime::critical::{Flow, Piece};
        let flow = Flow::Seq(vec![
            Flow::work(Piece::new("plan", 10_000_000)),
            Flow::Par(vec![
                Flow::work(Piece::new("web", 5_000_000)),
                Flow::work(Piece::new("papers", 8_000_000)),
            ]),
        ]);
        let root = RootSpan::new("wf").critical_path(&flow.critical_path(2.0));
        let request = to_request(&sample(), &root, &config());
        let root_span = spans(&request).last().unwrap();
        let path = "agent_profiler.critical_path";
        assert_eq!(string(root_span, path), Some("plan -> papers"));
        let method = "agent_profiler.critical_path.method";
        assert_eq!(string(root_span, method), Some("structure"));
        assert_eq!(
            double(root_span, "agent_profiler.critical_path_ms"),
            Some(18.0)
        );
        let best = "agent_profiler.what_if.best_node";
        assert_eq!(string(root_span, best), Some("plan"));
        let saves = "agent_profiler.what_if.best_saves_ms";
        assert_eq!(double(root_span, saves), Some(5.0));
    }

    #[test]
    fn ids_nesting_and_root() {
        let trace = sample();
        let root = RootSpan::new("wf").attribute("agent_profiler.run_id", "r1");
        let request = to_request(&trace, &root, &config());
        let spans = spans(&request);
        // 4 nodes, 3 LLM calls, the root.
        assert_eq!(spans.len(), 8);
        let root_span = spans.last().unwrap();
        assert_eq!(root_span.name, "wf");
        assert!(root_span.parent_span_id.is_empty());
        assert_eq!(root_span.trace_id, trace.trace_id_bytes().to_vec());
        for s in spans {
            assert_eq!(s.trace_id, trace.trace_id_bytes().to_vec());
            assert_eq!(s.span_id.len(), 8);
            assert_eq!(s.flags, SPAN_FLAGS);
        }
        let outer = by_name(spans, "outer");
        assert_eq!(outer.span_id, 1u64.to_be_bytes());
        assert_eq!(
            outer.parent_span_id, root_span.span_id,
            "top level under the root"
        );
        assert_eq!(by_name(spans, "middle").parent_span_id, 1u64.to_be_bytes());
        assert_eq!(by_name(spans, "leaf").parent_span_id, 2u64.to_be_bytes());
        let fails = by_name(spans, "fails");
        assert_eq!(fails.parent_span_id, root_span.span_id, "parent not kept");
        assert_eq!(string(fails, "agent_profiler.parent_node_id"), Some("gone"));
        let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span_id.as_slice()).collect();
        assert_eq!(ids.len(), spans.len(), "span ids are unique");
        assert!(!ids.contains([0u8; 8].as_slice()));
        // The root spans the trace by default.
        assert_eq!(root_span.start_time_unix_nano, T0);
        assert_eq!(root_span.end_time_unix_nano, T0 + 1_000_000_000);
        // Same trace, same ids.
        let again = to_request(&trace, &root, &config());
        assert_eq!(again, request);
    }

    #[test]
    fn status_kind_and_node_attributes() {
        let trace = sample();
        let request = to_request(&trace, &RootSpan::new("wf"), &config());
        let spans = spans(&request);
        let fails = by_name(spans, "fails");
        let status = fails.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "panicked");
        assert_eq!(string(fails, "error.type"), Some("panicked"));
        let leaf = by_name(spans, "leaf");
        assert_eq!(leaf.status.as_ref().unwrap().code, StatusCode::Ok as i32);
        assert_eq!(leaf.kind, SpanKind::Internal as i32);
        assert_eq!(leaf.start_time_unix_nano, T0 + 20);
        assert_eq!(leaf.end_time_unix_nano, T0 + 30);
        assert_eq!(string(leaf, "agent_profiler.node_id"), Some("leaf"));
        assert_eq!(string(leaf, "agent_profiler.outcome"), Some("ok"));
        assert_eq!(int(leaf, "agent_profiler.thread"), Some(7));
        assert_eq!(int(leaf, "agent_profiler.busy_ns"), Some(10));
        assert!(matches!(
            attr(leaf, "agent_profiler.is_async"),
            Some(any_value::Value::BoolValue(true))
        ));
        assert_eq!(string(leaf, "error.type"), None);
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = resource.attributes.iter().map(|a| a.key.as_str()).collect();
        assert!(keys.contains(&"service.name") && keys.contains(&"deployment.environment"));
    }

    #[test]
    fn llm_calls_as_child_spans() {
        let trace = sample();
        let request = to_request(&trace, &RootSpan::new("wf"), &config());
        let spans = spans(&request);
        let middle = by_name(spans, "middle");
        let chats: Vec<&OtlpSpan> = spans.iter().filter(|s| s.name == "chat gpt-4o").collect();
        assert_eq!(chats.len(), 2);
        for chat in &chats {
            assert_eq!(chat.parent_span_id, middle.span_id);
            assert_eq!(chat.kind, SpanKind::Client as i32);
            assert_eq!(string(chat, "gen_ai.operation.name"), Some("chat"));
            assert_eq!(string(chat, "gen_ai.request.model"), Some("gpt-4o"));
            assert_eq!(string(chat, "gen_ai.provider.name"), Some("openai"));
            // When the call was tracked.
            assert_eq!(chat.start_time_unix_nano, T0 + 500_000_000);
            assert_eq!(chat.end_time_unix_nano, chat.start_time_unix_nano);
        }
        assert_eq!(int(chats[0], "gen_ai.usage.input_tokens"), Some(1000));
        assert_eq!(int(chats[0], "gen_ai.usage.output_tokens"), Some(100));
        assert_eq!(
            int(chats[0], "gen_ai.usage.cache_read.input_tokens"),
            Some(100)
        );
        assert_eq!(double(chats[0], "agent_profiler.cost_usd"), Some(0.0035));
        assert!(attr(chats[0], "mlflow.llm.cost").is_some());
        // The node carries the sums, not the GenAI attributes (usage on leaves only).
        assert_eq!(int(middle, "agent_profiler.llm.calls"), Some(2));
        assert_eq!(int(middle, "agent_profiler.llm.input_tokens"), Some(1500));
        assert_eq!(int(middle, "gen_ai.usage.input_tokens"), None);
        assert!((double(middle, "agent_profiler.cost_usd").unwrap() - 0.0045).abs() < 1e-12);
        // An unpriced call: tokens, no cost; tracked after its node ended, so kept within
        // the node's span.
        let claude = by_name(spans, "chat claude-sonnet-4-5");
        assert_eq!(claude.start_time_unix_nano, T0 + 30);
        assert_eq!(int(claude, "gen_ai.usage.input_tokens"), Some(10));
        assert_eq!(double(claude, "agent_profiler.cost_usd"), None);
        assert!(attr(claude, "mlflow.llm.cost").is_none());
        assert_eq!(
            string(claude, "agent_profiler.llm.unpriced_reason"),
            Some("no price")
        );
        // The root has the run's totals under agent_profiler.*, never gen_ai usage.
        let root = spans.last().unwrap();
        assert_eq!(int(root, "agent_profiler.llm.calls"), Some(3));
        assert_eq!(int(root, "agent_profiler.llm.input_tokens"), Some(1510));
        assert_eq!(int(root, "agent_profiler.llm.unpriced_calls"), Some(1));
        assert_eq!(int(root, "gen_ai.usage.input_tokens"), None);
        assert_eq!(int(root, "agent_profiler.spans"), Some(4));
        assert_eq!(int(root, "agent_profiler.spans_dropped"), Some(2));
        assert_eq!(int(root, "agent_profiler.unattached_llm_calls"), Some(1));
    }

    fn timed(mut call: CostInfo, start: u64, end: u64, outcome: LlmOutcome) -> CostInfo {
        call.timing = Some(agent_profiler_runtime::LlmTiming {
            start_unix_ns: start,
            end_unix_ns: end,
            first_chunk_unix_ns: Some(start + 50_000_000),
            stream: true,
            outcome,
            error: (outcome != LlmOutcome::Ok).then(|| "HTTP 503 from the provider".to_owned()),
        });
        call
    }

    fn boolean(span: &OtlpSpan, key: &str) -> Option<bool> {
        match attr(span, key) {
            Some(any_value::Value::BoolValue(b)) => Some(*b),
            _ => None,
        }
    }

    #[test]
    fn timed_calls_last_as_long_as_they_did() {
        let mut trace = sample();
        let mut failed = call("openai", "gpt-4o-mini", 0, 0, None);
        failed.has_usage = false;
        failed.unpriced_reason = None;
        // middle: T0+10 .. T0+0.9 s; a 300 ms streamed call, then a failed one.
        trace.spans[1].llm_calls = vec![
            timed(
                call("openai", "gpt-4o", 1000, 300, Some(0.01)),
                T0 + 100_000_000,
                T0 + 400_000_000,
                LlmOutcome::Ok,
            ),
            timed(
                failed,
                T0 + 400_000_000,
                T0 + 450_000_000,
                LlmOutcome::Error,
            ),
        ];
        let request = to_request(&trace, &RootSpan::new("wf"), &config());
        let spans = spans(&request);
        let ok = by_name(spans, "chat gpt-4o");
        assert_eq!(ok.start_time_unix_nano, T0 + 100_000_000);
        assert_eq!(ok.end_time_unix_nano, T0 + 400_000_000);
        assert_eq!(ok.status.as_ref().unwrap().code, StatusCode::Ok as i32);
        assert_eq!(boolean(ok, "gen_ai.request.stream"), Some(true));
        assert_eq!(
            double(ok, "gen_ai.response.time_to_first_chunk"),
            Some(0.05)
        );
        assert_eq!(string(ok, "agent_profiler.llm.outcome"), Some("ok"));
        assert_eq!(double(ok, "agent_profiler.llm.duration_ms"), Some(300.0));
        // 300 tokens over the 250 ms after the first chunk.
        let rate = double(ok, "agent_profiler.llm.output_tokens_per_second").unwrap();
        assert!((rate - 1200.0).abs() < 1e-9, "{rate}");
        assert_eq!(int(ok, "gen_ai.usage.output_tokens"), Some(300));
        assert_eq!(string(ok, "error.type"), None);

        let bad = by_name(spans, "chat gpt-4o-mini");
        assert_eq!(
            bad.end_time_unix_nano - bad.start_time_unix_nano,
            50_000_000
        );
        let status = bad.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "HTTP 503 from the provider");
        assert_eq!(string(bad, "error.type"), Some("error"));
        assert_eq!(
            string(bad, "agent_profiler.llm.error"),
            Some("HTTP 503 from the provider")
        );
        assert_eq!(string(bad, "agent_profiler.llm.outcome"), Some("error"));
        assert_eq!(
            int(bad, "gen_ai.usage.input_tokens"),
            None,
            "no usage known"
        );
        assert_eq!(
            double(bad, "agent_profiler.llm.output_tokens_per_second"),
            None
        );
        assert_eq!(string(bad, "gen_ai.request.model"), Some("gpt-4o-mini"));
        // An untimed call keeps its instant.
        let claude = by_name(spans, "chat claude-sonnet-4-5");
        assert_eq!(claude.start_time_unix_nano, claude.end_time_unix_nano);
        assert_eq!(boolean(claude, "gen_ai.request.stream"), None);
    }

    #[test]
    fn span_types() {
        let trace = sample();
        let request = to_request(&trace, &RootSpan::new("wf"), &config());
        let spans = spans(&request);
        assert_eq!(
            string(spans.last().unwrap(), "mlflow.spanType"),
            Some("\"AGENT\"")
        );
        assert_eq!(
            string(by_name(spans, "middle"), "mlflow.spanType"),
            Some("\"CHAIN\"")
        );
        assert_eq!(
            string(by_name(spans, "chat gpt-4o"), "mlflow.spanType"),
            Some("\"CHAT_MODEL\"")
        );
        let config = config().llm_spans(LlmSpans::OnNode);
        let request = to_request(&trace, &RootSpan::new("wf"), &config);
        let spans = super::tests::spans(&request);
        assert_eq!(
            string(by_name(spans, "middle"), "mlflow.spanType"),
            Some("\"CHAT_MODEL\"")
        );
        assert_eq!(
            string(by_name(spans, "outer"), "mlflow.spanType"),
            Some("\"CHAIN\"")
        );
    }

    #[test]
    fn prompts_and_answers_only_when_given() {
        let mut trace = sample();
        let mut failed = call("openai", "gpt-4o", 0, 0, None);
        failed.has_usage = false;
        trace.spans[1]
            .llm_calls
            .push(timed(failed, T0 + 1, T0 + 2, LlmOutcome::Timeout));
        let plain = to_request(&trace, &RootSpan::new("wf"), &config());
        let text = format!("{plain:?}");
        for key in [
            MLFLOW_INPUTS,
            MLFLOW_OUTPUTS,
            "gen_ai.input.messages",
            "gen_ai.output.messages",
        ] {
            assert!(!text.contains(key), "{key} without content");
        }

        let root = RootSpan::new("wf")
            .inputs(json!({"topic": "tides"}))
            .outputs(json!({"summary": "the moon"}))
            .exchange(
                2,
                LlmExchange {
                    prompt: Some("Explain tides".into()),
                    answer: Some("The moon pulls".into()),
                },
            )
            .exchange(3, LlmExchange::default());
        let request = to_request(&trace, &root, &config());
        let spans = spans(&request);
        let root_span = spans.last().unwrap();
        let inputs: Value =
            serde_json::from_str(string(root_span, MLFLOW_INPUTS).unwrap()).unwrap();
        assert_eq!(inputs, json!({"topic": "tides"}));
        let outputs: Value =
            serde_json::from_str(string(root_span, MLFLOW_OUTPUTS).unwrap()).unwrap();
        assert_eq!(outputs, json!({"summary": "the moon"}));

        let middle = by_name(spans, "middle");
        assert!(
            string(middle, MLFLOW_INPUTS)
                .unwrap()
                .contains("Explain tides")
        );
        let chats: Vec<&OtlpSpan> = spans.iter().filter(|s| s.name == "chat gpt-4o").collect();
        assert_eq!(chats.len(), 3);
        for chat in &chats {
            let input: Value = serde_json::from_str(string(chat, MLFLOW_INPUTS).unwrap()).unwrap();
            assert_eq!(input["messages"][0]["content"], "Explain tides");
            let messages: Value =
                serde_json::from_str(string(chat, "gen_ai.input.messages").unwrap()).unwrap();
            assert_eq!(messages[0]["parts"][0]["content"], "Explain tides");
        }
        // The answer goes to the last call that ended well, not to the timed-out one.
        let answered: Vec<usize> = (0..3)
            .filter(|&i| string(chats[i], MLFLOW_OUTPUTS).is_some())
            .collect();
        assert_eq!(answered, [1]);
        let output: Value =
            serde_json::from_str(string(chats[1], MLFLOW_OUTPUTS).unwrap()).unwrap();
        assert_eq!(output["choices"][0]["message"]["content"], "The moon pulls");
        let messages: Value =
            serde_json::from_str(string(chats[1], "gen_ai.output.messages").unwrap()).unwrap();
        assert_eq!(messages[0]["role"], "assistant");
        // An empty exchange adds nothing.
        assert_eq!(string(by_name(spans, "leaf"), MLFLOW_INPUTS), None);
    }

    #[test]
    fn llm_calls_on_node_spans() {
        let mut trace = sample();
        trace.spans[1]
            .llm_calls
            .push(call("anthropic", "claude-haiku-4-5", 1, 1, Some(0.5)));
        let config = config().llm_spans(LlmSpans::OnNode);
        let request = to_request(&trace, &RootSpan::new("wf"), &config);
        let spans = spans(&request);
        assert_eq!(spans.len(), 5, "no LLM call spans");
        let leaf = by_name(spans, "leaf");
        assert_eq!(string(leaf, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(
            string(leaf, "gen_ai.request.model"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(string(leaf, "gen_ai.provider.name"), Some("anthropic"));
        assert_eq!(int(leaf, "gen_ai.usage.input_tokens"), Some(10));
        // Two models, two providers: summed usage, lists instead of the single-valued keys.
        let middle = by_name(spans, "middle");
        assert_eq!(int(middle, "gen_ai.usage.input_tokens"), Some(1501));
        assert_eq!(int(middle, "gen_ai.usage.output_tokens"), Some(151));
        assert_eq!(string(middle, "gen_ai.request.model"), None);
        assert_eq!(string(middle, "gen_ai.operation.name"), None);
        assert_eq!(string(middle, "gen_ai.provider.name"), None);
        assert!(matches!(
            attr(middle, "agent_profiler.llm.models"),
            Some(any_value::Value::ArrayValue(a)) if a.values.len() == 2
        ));
        let Some(any_value::Value::KvlistValue(cost)) = attr(middle, "mlflow.llm.cost") else {
            panic!("no mlflow.llm.cost");
        };
        assert_eq!(cost.values[0].key, "total_cost");
    }

    #[test]
    fn root_span_from_the_caller() {
        let trace = sample();
        let root = RootSpan::new("wf")
            .start_end(T0 - 100, T0 + 2_000_000_000)
            .outcome(Outcome::Error)
            .status_message("step failed")
            .attribute("agent_profiler.spans", "mine")
            .attribute("k", 1.5)
            .attribute("k", 2u64)
            .llm_totals(CostBreakdown {
                calls: 9,
                ..CostBreakdown::default()
            });
        let request = to_request(&trace, &root, &config());
        let root_span = spans(&request).last().unwrap();
        assert_eq!(root_span.start_time_unix_nano, T0 - 100);
        assert_eq!(root_span.end_time_unix_nano, T0 + 2_000_000_000);
        let status = root_span.status.as_ref().unwrap();
        assert_eq!(
            (status.code, status.message.as_str()),
            (StatusCode::Error as i32, "step failed")
        );
        assert_eq!(string(root_span, "agent_profiler.spans"), Some("mine"));
        assert_eq!(int(root_span, "k"), Some(2));
        assert_eq!(int(root_span, "agent_profiler.llm.calls"), Some(9));
        assert_eq!(string(root_span, "error.type"), Some("error"));
    }

    #[test]
    fn empty_and_odd_traces() {
        let trace = Trace::default(); // no spans, trace id not hex
        let request = to_request(&trace, &RootSpan::new("wf"), &config());
        let spans = spans(&request);
        assert_eq!(spans.len(), 1);
        assert_ne!(
            spans[0].trace_id,
            vec![0; 16],
            "a random id replaces a bad one"
        );
        assert!(spans[0].end_time_unix_nano >= spans[0].start_time_unix_nano);
        assert!(spans[0].start_time_unix_nano > 0);
    }

    #[test]
    fn batches_keep_every_span_once_and_the_root_last() {
        let mut trace = sample();
        for i in 0..1000 {
            trace
                .spans
                .push(span(1000 + i, Some(1), "many", T0 + i, T0 + i + 1));
        }
        let total = to_request(&trace, &RootSpan::new("wf"), &config());
        let total = spans(&total).len();
        for per in [1, 7, 512, 5000] {
            let config = config().max_spans_per_request(per);
            let requests = to_requests(&trace, &RootSpan::new("wf"), &config);
            assert_eq!(requests.len(), total.div_ceil(per));
            let mut seen = HashSet::new();
            for request in &requests {
                let batch = spans(request);
                assert!(!batch.is_empty() && batch.len() <= per);
                assert!(request.resource_spans[0].resource.is_some());
                for s in batch {
                    assert!(seen.insert(s.span_id.clone()));
                }
            }
            assert_eq!(seen.len(), total);
            let last = requests.last().unwrap();
            assert_eq!(spans(last).last().unwrap().name, "wf");
        }
    }

    #[test]
    fn attribute_values_convert() {
        assert_eq!(
            AttributeValue::from(u64::MAX),
            AttributeValue::Int(i64::MAX)
        );
        assert_eq!(AttributeValue::from(3usize), AttributeValue::Int(3));
        assert_eq!(
            AttributeValue::from("x"),
            AttributeValue::String("x".into())
        );
        assert_eq!(AttributeValue::from(true), AttributeValue::Bool(true));
        assert_eq!(AttributeValue::from(-2i32), AttributeValue::Int(-2));
    }
}
