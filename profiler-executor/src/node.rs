//! `NodeExecutor`: runs one LLM node, profiled under its id, with its cost tracked.

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::config::{NodeConfig, render};
use crate::llm::{LlmClient, LlmError, LlmRequest, LlmResponse};
use agent_profiler_runtime::BottleneckAnalyzer;
use agent_profiler_runtime::LlmOutcome;
use agent_profiler_runtime::cost::{
    CostInfo, CostSink, MultiProviderCostTracker, Usage, extract_provider,
};
use agent_profiler_runtime::get_profiler;
use agent_profiler_runtime::profile_fallible;
use std::time::Instant;

/// Runs LLM nodes: each call is timed under the node's id (into the analyzer installed for
/// the calling task), its cost is tracked by [`cost_tracker`](Self::cost_tracker) and
/// attributed to the node, and handed to the cost sinks given
/// ([`with_cost_sinks`](Self::with_cost_sinks)): with MLflow, logged as `node_{id}_cost_usd`
/// (durations go out as `node_{id}_duration_ms` through the analyzer the MLflow tracker is
/// attached to).
///
/// Cheap to clone; clones share the client and the cost tracker.
#[derive(Clone)]
pub struct NodeExecutor {
    /// The cost tracker, which prices each call from its usage: `Some` unless turned off
    /// (set it to `None`); it tells the cost sinks of calls made inside `#[profile_node]`
    /// functions.
    pub cost_tracker: Option<MultiProviderCostTracker>,
    client: Arc<dyn LlmClient>,
    /// Told of every tracked call of a node.
    cost_sinks: Vec<Arc<dyn CostSink>>,
}

impl fmt::Debug for NodeExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeExecutor")
            .field("client", &self.client.describe())
            .field("cost_tracker", &self.cost_tracker)
            .finish_non_exhaustive()
    }
}

/// What a node produced.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeOutput {
    /// The node.
    pub node_id: String,
    /// The state field the answer goes to.
    pub output_key: String,
    /// The answer.
    pub text: String,
    /// The prompt sent (after filling the template).
    pub prompt: String,
    /// The node's output state: `{output_key: text, "_execution_time_ms": .., "_cost_usd":
    /// .., "_tokens": .., "_model": ..}` (`_cost_usd` is `null` when the call had no price).
    pub state: Value,
    /// Time of the node, ms.
    pub execution_time_ms: f64,
    /// LLM cost, USD (0 when unpriced: see `cost`).
    pub cost_usd: f64,
    /// The tracked call, when its usage was readable.
    pub cost: Option<CostInfo>,
    /// Whether the answer came from a simulated client.
    pub simulated: bool,
}

/// Why a node failed, with the time and cost it took all the same.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeError {
    /// The node.
    pub node_id: String,
    /// What went wrong.
    pub kind: NodeErrorKind,
    /// Time of the node until it failed, ms.
    pub execution_time_ms: f64,
    /// LLM cost of the failed call (a body with usage but no answer is billed), USD.
    pub cost_usd: f64,
}

/// What went wrong in a node.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeErrorKind {
    /// The prompt names a state field the state does not have.
    MissingField {
        /// The field.
        field: String,
    },
    /// The LLM call failed.
    Llm(LlmError),
    /// The node panicked.
    Panicked {
        /// The panic message.
        message: String,
    },
    /// A node written in code returned an error.
    Failed {
        /// The error.
        message: String,
    },
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}` ", self.node_id)?;
        match &self.kind {
            NodeErrorKind::MissingField { field } => write!(
                f,
                "needs state field `{field}`, which neither the inputs nor an earlier node \
                 provide"
            ),
            NodeErrorKind::Llm(e) => write!(f, "failed: LLM call: {e}"),
            NodeErrorKind::Panicked { message } => write!(f, "panicked: {message}"),
            NodeErrorKind::Failed { message } => write!(f, "failed: {message}"),
        }
    }
}

impl std::error::Error for NodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            NodeErrorKind::Llm(e) => Some(e),
            _ => None,
        }
    }
}

impl NodeExecutor {
    /// An executor over `client` with a cost tracker of the embedded prices.
    pub fn new(client: Arc<dyn LlmClient>) -> Self {
        Self::with_cost_sinks(client, Vec::new())
    }

    /// An executor whose node calls' costs also go to each of `sinks` (an MLflow tracker's
    /// [`cost_sink`](agent_profiler_mlflow::MlflowTracker::cost_sink) logs them as
    /// `node_{id}_cost_usd`).
    pub fn with_cost_sinks(client: Arc<dyn LlmClient>, sinks: Vec<Arc<dyn CostSink>>) -> Self {
        let mut tracker = MultiProviderCostTracker::builder();
        for sink in &sinks {
            tracker = tracker.sink(sink.clone());
        }
        Self {
            cost_tracker: Some(tracker.build()),
            client,
            cost_sinks: sinks,
        }
    }

    /// An executor whose cost tracker also logs `node_{id}_cost_usd` to `tracker` (while
    /// the tracker runs: it does not keep it alive).
    pub fn with_mlflow(
        client: Arc<dyn LlmClient>,
        tracker: &agent_profiler_mlflow::MlflowTracker,
    ) -> Self {
        Self::with_cost_sinks(client, vec![tracker.cost_sink()])
    }

    /// The LLM client.
    pub fn client(&self) -> &Arc<dyn LlmClient> {
        &self.client
    }

    /// Runs `node` over `state`: fills the prompt, calls the model under the node's id,
    /// tracks the cost.
    ///
    /// # Errors
    /// A [`NodeError`] (with the time and any cost spent) when a prompt field is missing or
    /// the LLM call fails. A panicking client unwinds through (the time is recorded).
    pub async fn execute_node(
        &self,
        node: &NodeConfig,
        state: &Map<String, Value>,
    ) -> Result<NodeOutput, NodeError> {
        // Timed as a node of its own (outcome, nesting, cost attribution), under the id from
        // the configuration.
        profile_fallible(&node.id, self.run_node(node, state, Instant::now())).await
    }

    async fn run_node(
        &self,
        node: &NodeConfig,
        state: &Map<String, Value>,
        started: Instant,
    ) -> Result<NodeOutput, NodeError> {
        let analyzer = get_profiler();
        let elapsed_ms = || started.elapsed().as_secs_f64() * 1e3;
        let fail = |kind, cost_usd| NodeError {
            node_id: node.id.clone(),
            kind,
            execution_time_ms: elapsed_ms(),
            cost_usd,
        };
        let filled = render(&node.prompt, state).and_then(|prompt| {
            let system = node
                .system
                .as_deref()
                .map(|s| render(s, state))
                .transpose()?;
            Ok((prompt, system))
        });
        let (prompt, system) = match filled {
            Ok(p) => p,
            Err(field) => return Err(fail(NodeErrorKind::MissingField { field }, 0.0)),
        };
        let request = LlmRequest {
            model: node.model.clone(),
            system,
            prompt,
            max_tokens: node.max_tokens,
            temperature: node.temperature,
            stream: node.stream,
        };
        match self.call(&node.id, &request, analyzer.as_ref()).await {
            (Ok(response), cost) => {
                let execution_time_ms = elapsed_ms();
                let cost_usd = cost.as_ref().and_then(|c| c.cost_usd).unwrap_or(0.0);
                let mut out = Map::new();
                out.insert(
                    node.output_key.clone(),
                    Value::String(response.text.clone()),
                );
                out.insert("_execution_time_ms".into(), json!(execution_time_ms));
                out.insert(
                    "_cost_usd".into(),
                    json!(cost.as_ref().and_then(|c| c.cost_usd)),
                );
                out.insert(
                    "_tokens".into(),
                    json!(cost.as_ref().map_or(0, |c| c.total_tokens)),
                );
                out.insert("_model".into(), json!(node.model));
                if response.simulated {
                    out.insert("_simulated".into(), json!(true));
                }
                Ok(NodeOutput {
                    node_id: node.id.clone(),
                    output_key: node.output_key.clone(),
                    text: response.text,
                    prompt: request.prompt,
                    state: Value::Object(out),
                    execution_time_ms,
                    cost_usd,
                    cost,
                    simulated: response.simulated,
                })
            }
            (Err(e), cost) => {
                let cost_usd = cost.as_ref().and_then(|c| c.cost_usd).unwrap_or(0.0);
                Err(fail(NodeErrorKind::Llm(e), cost_usd))
            }
        }
    }

    /// Calls the model for node `node_id` (for workflows written in code) and tracks the
    /// cost; the caller times the node (see [`profile_fallible`]).
    ///
    /// # Errors
    /// The client's error.
    pub async fn call_llm(
        &self,
        node_id: &str,
        request: &LlmRequest,
    ) -> (Result<LlmResponse, LlmError>, Option<CostInfo>) {
        let analyzer = get_profiler();
        self.call(node_id, request, analyzer.as_ref()).await
    }

    async fn call(
        &self,
        node_id: &str,
        request: &LlmRequest,
        analyzer: Option<&BottleneckAnalyzer>,
    ) -> (Result<LlmResponse, LlmError>, Option<CostInfo>) {
        // Started just before the request, so that the call's time is the wait on the
        // model: the node's own time (prompt filling, bookkeeping) is what remains.
        let timed = self
            .cost_tracker
            .as_ref()
            .map(|tracker| tracker.start_call(&extract_provider(&request.model), &request.model));
        let result = self.client.complete(request).await;
        let Some(call) = timed else {
            return (result, None);
        };
        let info = match &result {
            Ok(response) => {
                call.set_stream(response.stream);
                if let Some(at) = response.first_chunk {
                    call.first_chunk_at(at);
                }
                call.finish_response(&response.raw).ok()
            }
            Err(error) => {
                call.set_stream(request.stream);
                if let LlmError::StreamCut {
                    first_chunk: Some(at),
                    ..
                } = error
                {
                    call.first_chunk_at(*at);
                }
                let outcome = match error {
                    LlmError::Timeout { .. }
                    | LlmError::StreamCut {
                        timed_out: true, ..
                    } => LlmOutcome::Timeout,
                    _ => LlmOutcome::Error,
                };
                // A body that was not an answer, or a stream cut midway, may still have
                // been billed: its tokens count, and the node stays failed.
                let usage = error
                    .billed_usage()
                    .and_then(|usage| Usage::from_value(usage).ok());
                let billed = usage.is_some();
                let info = call.fail(outcome, error.to_string(), usage);
                billed.then_some(info)
            }
        };
        let info = info.map(|info| self.attribute(node_id, info, analyzer));
        (result, info)
    }

    /// Gives a tracked call to node `node_id` when the tracker found no profiled node
    /// running where the call started (a call made outside any node, through
    /// [`call_llm`](Self::call_llm)); inside one, the tracker already gave it to that node
    /// and its sinks.
    fn attribute(
        &self,
        node_id: &str,
        info: CostInfo,
        analyzer: Option<&BottleneckAnalyzer>,
    ) -> CostInfo {
        if info.node_id.is_none() {
            if let Some(analyzer) = analyzer {
                let _ = analyzer.record_cost(node_id, &info);
            }
            for sink in &self.cost_sinks {
                sink.node_call(node_id, &info);
            }
        }
        info
    }
}
