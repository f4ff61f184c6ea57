//! `WorkflowExecutor`: one analyzer per run, the bottleneck report, the run record.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use agent_profiler_mlflow::MlflowConfig;
use agent_profiler_otlp::OtlpExporter;
use agent_profiler_report::html::ReportInput;
use agent_profiler_runtime::metrics::LifetimeMetrics;
use agent_profiler_runtime::trace::{DEFAULT_TRACE_CAPACITY, Trace};
use agent_profiler_runtime::{
    BottleneckAnalyzer, DEFAULT_THRESHOLD_PERCENT, ProfilerFutureExt, Summary, now_unix_seconds,
};
use serde_json::{Map, Value, json};

use crate::config::{NodeConfig, StepConfig, WorkflowConfig};
use crate::console::Console;
use crate::llm::LlmClient;
use crate::node::{NodeError, NodeErrorKind, NodeExecutor, NodeOutput};
use crate::sinks::console::ConsoleSink;
use crate::sinks::mlflow::MlflowSink;
use crate::sinks::otlp::{OtlpChoice, OtlpSink};
use crate::sinks::perfetto::PerfettoSink;
use crate::sinks::store::StoreSink;
use crate::sinks::{RunSink, RunStart, Sinks, Warnings};
use crate::store::{ExecutionStateRecord, RunStore, WorkflowRunRecord, WorkflowStatus};
use crate::structure::structure_path;

/// Runs workflows. Each run gets a fresh [`BottleneckAnalyzer`], installed for the run's
/// future and every node task it spawns; at the end (success, error or panic) the finished
/// run goes to the executor's outputs: MLflow (when configured), the printed report, the
/// run store, a Perfetto file, OTLP.
#[derive(Clone)]
pub struct WorkflowExecutor {
    client: Arc<dyn LlmClient>,
    store: Option<RunStore>,
    threshold_percent: f64,
    console: Console,
    progress: bool,
    store_prompts: bool,
    store_responses: bool,
    mlflow: Option<MlflowConfig>,
    /// Trace mode's capacity for each run; `None`: trace mode off.
    trace_capacity: Option<usize>,
    /// Where to write each run's Perfetto file, if anywhere.
    perfetto_dir: Option<PathBuf>,
    /// Where each run's trace goes over OTLP.
    otlp: OtlpChoice,
    /// The totals every run's analyzer is added to, for metrics exporters.
    metrics: Option<LifetimeMetrics>,
}

impl fmt::Debug for WorkflowExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowExecutor")
            .field("client", &self.client.describe())
            .field("store", &self.store)
            .field("threshold_percent", &self.threshold_percent)
            .finish_non_exhaustive()
    }
}

/// A finished run (completed or failed): its record as stored, the node states, the
/// summary and the printed report.
#[derive(Clone, Debug)]
pub struct WorkflowRun {
    /// The record, as stored (responses left out unless asked for).
    pub record: WorkflowRunRecord,
    /// The node state snapshots, as stored.
    pub states: Vec<ExecutionStateRecord>,
    /// The final state with every answer (in memory only).
    pub state: Map<String, Value>,
    /// The analyzer's summary.
    pub summary: Summary,
    /// The report printed at the end.
    pub report: String,
    /// Why the run failed, if it did.
    pub failure: Option<RunFailure>,
    /// Problems with the run's outputs (run store, MLflow, OTLP, Perfetto file), which
    /// never fail a run.
    pub warnings: Vec<String>,
    /// The MLflow run the workflow run was logged to, when MLflow is configured.
    pub mlflow_run_id: Option<String>,
    /// The MLflow experiment of that run.
    pub mlflow_experiment_id: Option<String>,
    /// Where MLflow's UI shows that run:
    /// `{tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}`.
    pub mlflow_run_url: Option<String>,
    /// Every node call as a span, when trace mode is on (the default).
    pub trace: Option<Trace>,
    /// The Perfetto file written for the run, when asked for
    /// ([`WorkflowExecutor::perfetto_dir`]).
    pub perfetto_file: Option<PathBuf>,
    /// What of the run's prompts and answers the user allowed out of the process, for the
    /// trace export.
    pub(crate) content: RunContent,
}

/// The prompts and answers of a run that may leave the process: only those the executor was
/// allowed to keep ([`WorkflowExecutor::store_prompts`],
/// [`WorkflowExecutor::store_responses`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct RunContent {
    /// The run's inputs (allowed with the prompts: they fill the prompts).
    pub inputs: Option<Value>,
    /// What the run added to or changed in its state (allowed with the answers).
    pub outputs: Option<Value>,
    /// Every node call of the run's executor, in the order they finished.
    pub calls: Vec<NodeExchange>,
}

/// One node call: the node, and its prompt and answer when allowed and known (a failed
/// call has neither).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NodeExchange {
    pub node_id: String,
    pub prompt: Option<String>,
    pub answer: Option<String>,
}

impl WorkflowRun {
    /// The HTML report's input for this run: its summary, its trace (when trace mode was on,
    /// the default) and its record's facts.
    pub fn report_input<'a>(&'a self, title: &'a str) -> ReportInput<'a> {
        ReportInput {
            trace: self.trace.as_ref(),
            run_id: Some(&self.record.id),
            workflow: Some(&self.record.workflow_name),
            status: Some(self.record.status.as_str()),
            started_at: Some(self.record.started_at),
            duration_ms: self.record.duration_ms,
            ..ReportInput::new(title, &self.summary)
        }
    }
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq)]
pub enum RunFailure {
    /// A node failed or panicked.
    Node(NodeError),
    /// The workflow's own code returned an error.
    Workflow(String),
    /// The workflow's own code panicked.
    Panicked(String),
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunFailure::Node(e) => e.fmt(f),
            RunFailure::Workflow(m) => write!(f, "workflow failed: {m}"),
            RunFailure::Panicked(m) => write!(f, "workflow panicked: {m}"),
        }
    }
}

/// A workflow that could not run, or that failed (with its run).
#[derive(Debug)]
pub enum WorkflowError {
    /// The configuration is invalid: nothing ran.
    Config(super::config::ConfigError),
    /// The inputs are not a JSON object: nothing ran.
    Inputs(String),
    /// The workflow's name is too long or holds a control character (which would garble
    /// every line it is printed in): nothing ran.
    Name(String),
    /// The run failed; the run (record, report, summary) is here.
    Failed(Box<WorkflowRun>),
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkflowError::Config(e) => e.fmt(f),
            WorkflowError::Inputs(m) => write!(f, "invalid inputs: {m}"),
            WorkflowError::Name(m) => write!(f, "invalid workflow name: {m}"),
            WorkflowError::Failed(run) => match &run.failure {
                Some(why) => write!(f, "run {} failed: {why}", run.record.id),
                None => write!(f, "run {} failed", run.record.id),
            },
        }
    }
}

impl std::error::Error for WorkflowError {}

impl WorkflowError {
    /// The failed run, if the run started.
    pub fn run(&self) -> Option<&WorkflowRun> {
        match self {
            WorkflowError::Failed(run) => Some(run),
            _ => None,
        }
    }
}

/// What a workflow written in code gets: node execution that records state snapshots and
/// progress like the configured nodes.
#[derive(Clone)]
pub struct WorkflowContext {
    node: NodeExecutor,
    run: Arc<RunShared>,
}

impl fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkflowContext")
            .field("run_id", &self.run.run_id)
            .finish_non_exhaustive()
    }
}

/// What the tasks of one run share: progress lines, the node states, the run's outputs and
/// their warnings.
struct RunShared {
    run_id: String,
    started: Instant,
    console: Console,
    progress: bool,
    store_prompts: bool,
    store_responses: bool,
    states: Mutex<Vec<ExecutionStateRecord>>,
    /// Each node call's allowed prompt and answer, pushed with its state (same order).
    exchanges: Mutex<Vec<NodeExchange>>,
    sinks: Sinks,
    warnings: Warnings,
}

impl RunShared {
    fn progress(&self, text: &str) {
        if self.progress {
            let t = self.started.elapsed().as_secs_f64();
            self.console.write(&format!("[{t:>7.2}s] {text}\n"));
        }
    }

    /// Keeps the state snapshot of a node that finished and hands it to the outputs.
    fn keep_state(&self, node_id: &str, result: &Result<NodeOutput, NodeError>) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let step = u32::try_from(states.len()).unwrap_or(u32::MAX);
        let record = self.state_record(node_id, step, result);
        self.sinks.node_finished(&record, &self.warnings);
        states.push(record);
        let out = result.as_ref().ok();
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(NodeExchange {
                node_id: node_id.to_owned(),
                prompt: out.filter(|_| self.store_prompts).map(|o| o.prompt.clone()),
                answer: out.filter(|_| self.store_responses).map(|o| o.text.clone()),
            });
    }

    /// A node's state snapshot: its output state (the answer hidden and the prompt added
    /// as configured), or its error.
    fn state_record(
        &self,
        node_id: &str,
        step: u32,
        result: &Result<NodeOutput, NodeError>,
    ) -> ExecutionStateRecord {
        let (status, state, ms, cost, error) = match result {
            Ok(out) => {
                let mut state = out.state.clone();
                if let Some(obj) = state.as_object_mut() {
                    if !self.store_responses {
                        obj.insert(out.output_key.clone(), not_stored(&out.text));
                    }
                    if self.store_prompts {
                        obj.insert("_prompt".into(), json!(out.prompt));
                    }
                }
                (
                    "completed",
                    state,
                    out.execution_time_ms,
                    out.cost_usd,
                    None,
                )
            }
            Err(e) => (
                "failed",
                json!({
                    "_execution_time_ms": e.execution_time_ms,
                    "_cost_usd": e.cost_usd,
                    "_error": e.to_string(),
                }),
                e.execution_time_ms,
                e.cost_usd,
                Some(e.to_string()),
            ),
        };
        ExecutionStateRecord {
            run_id: self.run_id.clone(),
            node_id: node_id.to_owned(),
            step,
            status: status.to_owned(),
            state,
            execution_time_ms: ms,
            cost_usd: cost,
            error_message: error,
            created_at: now_unix_seconds(),
        }
    }

    /// The run's allowed content: `inputs` with the prompts, the part of `final_state` the
    /// run wrote with the answers.
    fn content(&self, inputs: &Value, final_state: Option<&Map<String, Value>>) -> RunContent {
        let outputs = final_state.filter(|_| self.store_responses).map(|state| {
            let given = inputs.as_object();
            let written: Map<String, Value> = state
                .iter()
                .filter(|(k, v)| given.and_then(|g| g.get(*k)) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            Value::Object(written)
        });
        RunContent {
            inputs: self.store_prompts.then(|| inputs.clone()),
            outputs,
            calls: self
                .exchanges
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    fn states(&self) -> Vec<ExecutionStateRecord> {
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

fn not_stored(text: &str) -> Value {
    json!(format!(
        "[response not stored: {} chars; enable store_responses to keep it]",
        text.chars().count()
    ))
}

impl WorkflowContext {
    /// The node executor of the run.
    pub fn node_executor(&self) -> &NodeExecutor {
        &self.node
    }

    /// Runs `node` over `state`, with progress lines and a state snapshot. A panic in the
    /// node becomes a [`NodeErrorKind::Panicked`] error.
    ///
    /// # Errors
    /// The node's [`NodeError`].
    pub async fn run_node(
        &self,
        node: &NodeConfig,
        state: &Map<String, Value>,
    ) -> Result<NodeOutput, NodeError> {
        self.run
            .progress(&format!("running {} ({})", node.id, node.model));
        let started = Instant::now();
        let result = match CatchUnwind(Box::pin(self.node.execute_node(node, state))).await {
            Ok(result) => result,
            Err(message) => Err(NodeError {
                node_id: node.id.clone(),
                kind: NodeErrorKind::Panicked { message },
                execution_time_ms: started.elapsed().as_secs_f64() * 1e3,
                cost_usd: 0.0,
            }),
        };
        match &result {
            Ok(out) => self.run.progress(&format!(
                "done    {} in {:.0}ms, {} tokens, ${:.6}{}",
                node.id,
                out.execution_time_ms,
                out.cost.as_ref().map_or(0, |c| c.total_tokens),
                out.cost_usd,
                if out.simulated { " (simulated)" } else { "" }
            )),
            Err(e) => self.run.progress(&format!(
                "FAILED  {} after {:.0}ms: {e}",
                node.id, e.execution_time_ms
            )),
        }
        self.run.keep_state(&node.id, &result);
        result
    }

    /// Runs one LLM call as node `node_id` (default `max_tokens`), like
    /// [`run_node`](Self::run_node); returns the answer.
    ///
    /// # Errors
    /// The node's [`NodeError`].
    pub async fn llm(&self, node_id: &str, model: &str, prompt: &str) -> Result<String, NodeError> {
        let node = NodeConfig {
            id: node_id.to_owned(),
            model: model.to_owned(),
            system: None,
            // The prompt is sent as given: braces are escaped for the template.
            prompt: prompt.replace('{', "{{").replace('}', "}}"),
            output_key: "output".to_owned(),
            max_tokens: super::config::DEFAULT_MAX_TOKENS,
            temperature: None,
            stream: false,
        };
        self.run_node(&node, &Map::new()).await.map(|o| o.text)
    }
}

/// Polls a future inside `catch_unwind`: a panic becomes `Err(message)`.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload.as_ref()))),
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

type Body = Pin<Box<dyn Future<Output = Result<Map<String, Value>, RunFailure>> + Send>>;

impl WorkflowExecutor {
    /// An executor over `client`: no run store, threshold 50%, report on stdout with
    /// progress lines, prompts and responses not stored.
    pub fn new(client: Arc<dyn LlmClient>) -> Self {
        Self {
            client,
            store: None,
            threshold_percent: DEFAULT_THRESHOLD_PERCENT,
            console: Console::Stdout,
            progress: true,
            store_prompts: false,
            store_responses: false,
            mlflow: None,
            trace_capacity: Some(DEFAULT_TRACE_CAPACITY),
            perfetto_dir: None,
            otlp: OtlpChoice::default(),
            metrics: None,
        }
    }

    /// Adds each run's analyzer to `metrics`, the lifetime totals a service's metrics
    /// exporters read (Prometheus' `PrometheusExporter::with_metrics`, OTLP's
    /// `OtlpMetricsExporter::for_metrics`): every run counts in them, also after it ended.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use agent_profiler_executor::WorkflowExecutor;
    /// use agent_profiler_executor::llm::SimulatedClient;
    /// use agent_profiler_runtime::metrics::LifetimeMetrics;
    ///
    /// let metrics = LifetimeMetrics::new();
    /// let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new())).metrics(metrics.clone());
    /// # let _ = executor;
    /// ```
    pub fn metrics(mut self, metrics: LifetimeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends each run's trace (a root span for the run, a span per node call, LLM calls
    /// with GenAI attributes) through `exporter`, in the background.
    ///
    /// Without this, traces go where the OpenTelemetry variables say
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, see
    /// [`OtlpConfig::from_env`](agent_profiler_otlp::OtlpConfig::from_env)), else to the
    /// MLflow server given to [`mlflow`](Self::mlflow), into the experiment of its runs and
    /// linked to the run; else nowhere.
    pub fn otlp(mut self, exporter: OtlpExporter) -> Self {
        self.otlp = OtlpChoice::Given(exporter);
        self
    }

    /// Sends no trace over OTLP (they are still kept with the run when trace mode is on).
    pub fn no_otlp(mut self) -> Self {
        self.otlp = OtlpChoice::Off;
        self
    }

    /// The OTLP exporter runs' traces go through, once one is in use.
    pub fn otlp_exporter(&self) -> Option<OtlpExporter> {
        self.otlp.exporter()
    }

    /// Trace mode for each run (on by default, with [`DEFAULT_TRACE_CAPACITY`] spans): every
    /// node call is kept as a span, stored with the run and exported with it. `None` turns it
    /// off. Node calls of a workflow take milliseconds to seconds, so the spans' cost (tens of
    /// nanoseconds a call) does not show.
    pub fn trace(mut self, capacity: Option<usize>) -> Self {
        self.trace_capacity = capacity;
        self
    }

    /// Writes each run's trace as a Perfetto file (Chrome Trace Event JSON) named
    /// `{run id}.perfetto.json` into `dir` (created if missing). Open it in Perfetto or
    /// `chrome://tracing`. Needs trace mode (on by default).
    pub fn perfetto_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.perfetto_dir = Some(dir.into());
        self
    }

    /// Stores every run in `store`.
    pub fn store(mut self, store: RunStore) -> Self {
        self.store = Some(store);
        self
    }

    /// The bottleneck threshold, percent of total time (default 50).
    pub fn threshold_percent(mut self, threshold: f64) -> Self {
        self.threshold_percent = threshold;
        self
    }

    /// Where progress lines and the report go.
    pub fn console(mut self, console: Console) -> Self {
        self.console = console;
        self
    }

    /// Whether to show a line as each node starts and ends (default on).
    pub fn progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Whether stored node states keep the prompt sent (default off: prompts may hold
    /// private data). On, the trace sent over OTLP carries them too: each prompt on its
    /// node's LLM call spans, the run's inputs on the root span (MLflow's Input column).
    pub fn store_prompts(mut self, on: bool) -> Self {
        self.store_prompts = on;
        self
    }

    /// Whether stored node states and outputs keep the model's answers (default off). On,
    /// the trace sent over OTLP carries them too: each answer on its node's LLM call span,
    /// what the run wrote to its state on the root span (MLflow's Output column).
    pub fn store_responses(mut self, on: bool) -> Self {
        self.store_responses = on;
        self
    }

    /// Logs every run to MLflow: one MLflow run per workflow run (run name: the workflow's).
    pub fn mlflow(mut self, config: MlflowConfig) -> Self {
        self.mlflow = Some(config);
        self
    }

    /// Reads the workflow in the JSON file `config` and runs it over `inputs` (a JSON
    /// object: the initial state).
    ///
    /// # Errors
    /// [`WorkflowError::Config`] for an invalid file (nothing runs),
    /// [`WorkflowError::Failed`] with the run when a node fails.
    pub async fn run_workflow_from_config(
        &self,
        config: impl AsRef<Path>,
        inputs: Value,
    ) -> Result<WorkflowRun, WorkflowError> {
        let config = WorkflowConfig::from_path(config).map_err(WorkflowError::Config)?;
        self.run_config(&config, inputs).await
    }

    /// Runs `config` over `inputs`.
    ///
    /// # Errors
    /// As [`run_workflow_from_config`](Self::run_workflow_from_config).
    pub async fn run_config(
        &self,
        config: &WorkflowConfig,
        inputs: Value,
    ) -> Result<WorkflowRun, WorkflowError> {
        config.check().map_err(WorkflowError::Config)?;
        if let Value::Object(given) = &inputs {
            config.check_inputs(given).map_err(WorkflowError::Config)?;
        }
        let config = config.clone();
        let mut snapshot = serde_json::to_value(&config).unwrap_or(Value::Null);
        let keys: Vec<String> = config.nodes().map(|n| n.output_key.clone()).collect();
        let steps = config.steps.clone();
        self.drive(
            &config.name.clone(),
            snapshot.take(),
            inputs,
            keys,
            Some(steps),
            move |ctx, state| Box::pin(run_steps(ctx, config, state)),
        )
        .await
    }

    /// Runs a workflow written in code: `body` gets a [`WorkflowContext`] and the inputs,
    /// and returns the final state. Its nodes (through the context) are profiled, costed
    /// and stored like configured ones; `#[profile_node]` functions it calls record into
    /// the run's analyzer too.
    ///
    /// # Errors
    /// [`WorkflowError::Name`] when `name` is longer than
    /// [`MAX_NAME_LEN`](crate::MAX_NAME_LEN) characters or holds a control character (the
    /// rule of configured workflows); [`WorkflowError::Inputs`] when `inputs` is not an
    /// object; [`WorkflowError::Failed`] when `body` returns an error or panics.
    pub async fn run_fn<F, Fut, E>(
        &self,
        name: &str,
        inputs: Value,
        body: F,
    ) -> Result<WorkflowRun, WorkflowError>
    where
        F: FnOnce(WorkflowContext, Map<String, Value>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Map<String, Value>, E>> + Send + 'static,
        E: fmt::Display + 'static,
    {
        crate::config::name_problem(name)
            .map_err(|problem| WorkflowError::Name(format!("the name {name:?} {problem}")))?;
        let snapshot = json!({ "name": name, "kind": "code" });
        self.drive(
            name,
            snapshot,
            inputs,
            Vec::new(),
            None,
            move |ctx, state| {
                Box::pin(async move {
                    body(ctx, state)
                        .await
                        .map_err(|e| RunFailure::Workflow(e.to_string()))
                })
            },
        )
        .await
    }

    /// Runs `body` as a run of workflow `name`: the run's outputs are told it starts, the
    /// body runs with the run's analyzer installed, and the finished run (completed, failed
    /// or panicked) is handed to every output. `steps`, the declared structure of a
    /// configured workflow, gives the run's critical path; without it the path is the one
    /// inferred from the trace.
    async fn drive(
        &self,
        name: &str,
        snapshot: Value,
        inputs: Value,
        response_keys: Vec<String>,
        steps: Option<Vec<StepConfig>>,
        body: impl FnOnce(WorkflowContext, Map<String, Value>) -> Body,
    ) -> Result<WorkflowRun, WorkflowError> {
        let Value::Object(state) = inputs.clone() else {
            return Err(WorkflowError::Inputs(format!(
                "the inputs must be a JSON object, not {inputs}"
            )));
        };
        let record = WorkflowRunRecord::started(name, self.config_snapshot(snapshot), inputs);
        let analyzer = self.analyzer();
        let shared = Arc::new(self.run_shared(&record));
        let ctx = self.start(&record, &analyzer, &shared);
        let mut abandoned = Abandoned {
            shared: shared.clone(),
            analyzer: analyzer.clone(),
            record: Some(record.clone()),
        };
        let started = Instant::now();
        let future = body(ctx, state).with_profiler(analyzer.clone());
        let outcome = CatchUnwind(Box::pin(future)).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1e3;
        abandoned.record = None;

        let mut run = self.finish(
            record,
            &analyzer,
            &shared,
            outcome,
            duration_ms,
            steps.as_deref(),
        );
        self.hide_responses(&mut run, &response_keys);
        shared.sinks.run_finished(&mut run, &shared.warnings);
        shared.sinks.settle(&shared.warnings).await;
        run.warnings = shared.warnings.to_vec();
        match run.failure {
            Some(_) => Err(WorkflowError::Failed(Box::new(run))),
            None => Ok(run),
        }
    }

    /// The run's configuration as stored: `snapshot` with the LLM client (described, never
    /// a key) and the bottleneck threshold.
    fn config_snapshot(&self, mut snapshot: Value) -> Value {
        if let Some(obj) = snapshot.as_object_mut() {
            obj.insert("llm_client".into(), json!(self.client.describe()));
            obj.insert("threshold_percent".into(), json!(self.threshold_percent));
        }
        snapshot
    }

    /// A fresh analyzer for a run, in trace mode unless it is off.
    fn analyzer(&self) -> BottleneckAnalyzer {
        let analyzer = BottleneckAnalyzer::new();
        if let Some(capacity) = self.trace_capacity {
            analyzer.enable_trace(capacity);
        }
        if let Some(metrics) = &self.metrics {
            metrics.watch(&analyzer);
        }
        analyzer
    }

    /// The outputs of a run, from the configuration, in the order their work depends on
    /// each other: the printed report first (it is printed the moment the run ends, whatever
    /// the outputs after it wait for), MLflow before OTLP (its run id goes into the trace,
    /// so it waits a few seconds at most for its run to exist), the run store, the Perfetto
    /// file, OTLP last.
    fn sinks(&self) -> Sinks {
        let mut sinks: Vec<Box<dyn RunSink>> =
            vec![Box::new(ConsoleSink::new(self.console.clone()))];
        if let Some(config) = &self.mlflow {
            sinks.push(Box::new(MlflowSink::new(config.clone())));
        }
        if let Some(store) = &self.store {
            sinks.push(Box::new(StoreSink::new(store.clone())));
        }
        if let Some(dir) = &self.perfetto_dir {
            sinks.push(Box::new(PerfettoSink::new(dir.clone())));
        }
        if !matches!(self.otlp, OtlpChoice::Off) {
            let sink = OtlpSink::new(self.otlp.clone(), self.mlflow.clone());
            sinks.push(Box::new(sink));
        }
        Sinks::new(sinks)
    }

    fn run_shared(&self, record: &WorkflowRunRecord) -> RunShared {
        RunShared {
            run_id: record.id.clone(),
            started: Instant::now(),
            console: self.console.clone(),
            progress: self.progress,
            store_prompts: self.store_prompts,
            store_responses: self.store_responses,
            states: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
            sinks: self.sinks(),
            warnings: Warnings::new(self.console.clone()),
        }
    }

    /// Tells the run's outputs it starts; the context its nodes run in (their LLM costs
    /// also going where the outputs asked).
    fn start(
        &self,
        record: &WorkflowRunRecord,
        analyzer: &BottleneckAnalyzer,
        shared: &Arc<RunShared>,
    ) -> WorkflowContext {
        let llm_client = self.client.describe();
        let start = RunStart {
            record,
            analyzer,
            llm_client: &llm_client,
        };
        let cost_sinks = shared.sinks.run_started(&start, &shared.warnings);
        shared.progress(&format!(
            "workflow `{}` started (run {}, LLM: {llm_client})",
            record.workflow_name, record.id
        ));
        WorkflowContext {
            node: NodeExecutor::with_cost_sinks(self.client.clone(), cost_sinks),
            run: shared.clone(),
        }
    }

    /// The finished run: its record completed from the outcome and the summary, its report,
    /// node states and trace. The summary's critical path comes from `steps` when given.
    fn finish(
        &self,
        mut record: WorkflowRunRecord,
        analyzer: &BottleneckAnalyzer,
        shared: &RunShared,
        outcome: Result<Result<Map<String, Value>, RunFailure>, String>,
        duration_ms: f64,
        steps: Option<&[StepConfig]>,
    ) -> WorkflowRun {
        let (status, final_state, failure) = settle(outcome);
        let mut summary = analyzer.get_summary_with_threshold(self.threshold_percent);
        let trace = analyzer.trace();
        if let Some(steps) = steps {
            summary.critical_path = structure_path(steps, trace.as_ref(), &summary);
        }
        record.status = status;
        record.outputs = final_state.clone().map(Value::Object);
        record.error_message = failure.as_ref().map(ToString::to_string);
        record.completed_at = Some(now_unix_seconds());
        record.duration_ms = Some(duration_ms);
        record.total_tokens = summary.total_tokens;
        record.total_cost_usd = summary.total_cost_usd;
        record.bottleneck_info = Some(summary.clone());
        if let Some(trace) = trace.as_ref().filter(|t| t.dropped > 0) {
            shared.warnings.warn(format!(
                "trace incomplete: {} spans did not fit in the trace capacity of {}",
                trace.dropped, trace.capacity
            ));
        }
        let content = shared.content(&record.inputs, final_state.as_ref());
        WorkflowRun {
            report: record.report().unwrap_or_default(),
            record,
            states: shared.states(),
            state: final_state.unwrap_or_default(),
            summary,
            failure,
            warnings: Vec::new(),
            mlflow_run_id: None,
            mlflow_experiment_id: None,
            mlflow_run_url: None,
            trace,
            perfetto_file: None,
            content,
        }
    }

    /// Replaces the answers in the record's outputs (the fields in `keys`) with a note of
    /// their length, unless responses are stored.
    fn hide_responses(&self, run: &mut WorkflowRun, keys: &[String]) {
        if self.store_responses {
            return;
        }
        let Some(Value::Object(outputs)) = run.record.outputs.as_mut() else {
            return;
        };
        for key in keys {
            if let Some(Value::String(text)) = outputs.get(key) {
                let hidden = not_stored(text);
                outputs.insert(key.clone(), hidden);
            }
        }
    }
}

/// A run whose future is dropped (cancelled: a timeout around it, a `select!`) before it
/// ends: its outputs hear that it was interrupted, with what finished (see
/// [`RunSink::run_abandoned`]), so that it is not left `running` while its process lives on.
struct Abandoned {
    shared: Arc<RunShared>,
    analyzer: BottleneckAnalyzer,
    /// The run's record as it started; `None` once the run ended.
    record: Option<WorkflowRunRecord>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        let states = self.shared.states();
        record.status = WorkflowStatus::Interrupted;
        record.error_message =
            Some("interrupted: the run was dropped (cancelled) before it finished".to_owned());
        record.completed_at = Some(now_unix_seconds());
        record.total_cost_usd = states.iter().map(|s| s.cost_usd).sum();
        record.total_tokens = states
            .iter()
            .filter_map(|s| s.state.get("_tokens").and_then(Value::as_u64))
            .sum();
        let trace = self.analyzer.trace();
        self.shared.sinks.run_abandoned(&record, trace.as_ref());
    }
}

/// How a run ended: its status, its final state when it completed, and why it failed.
fn settle(
    outcome: Result<Result<Map<String, Value>, RunFailure>, String>,
) -> (
    WorkflowStatus,
    Option<Map<String, Value>>,
    Option<RunFailure>,
) {
    match outcome {
        Ok(Ok(state)) => (WorkflowStatus::Completed, Some(state), None),
        Ok(Err(failure)) => {
            let status = match &failure {
                RunFailure::Node(NodeError {
                    kind: NodeErrorKind::Panicked { .. },
                    ..
                })
                | RunFailure::Panicked(_) => WorkflowStatus::Panicked,
                _ => WorkflowStatus::Failed,
            };
            (status, None, Some(failure))
        }
        Err(message) => (
            WorkflowStatus::Panicked,
            None,
            Some(RunFailure::Panicked(message)),
        ),
    }
}

async fn run_steps(
    ctx: WorkflowContext,
    config: WorkflowConfig,
    mut state: Map<String, Value>,
) -> Result<Map<String, Value>, RunFailure> {
    for step in &config.steps {
        match step {
            StepConfig::Node(node) => {
                let out = ctx.run_node(node, &state).await.map_err(RunFailure::Node)?;
                state.insert(out.output_key, Value::String(out.text));
            }
            StepConfig::Parallel { parallel } => {
                let before = Arc::new(state.clone());
                let handles: Vec<_> = parallel
                    .iter()
                    .map(|node| {
                        let ctx = ctx.clone();
                        let node = node.clone();
                        let before = before.clone();
                        // The spawned task records into the run's analyzer.
                        let task = async move { ctx.run_node(&node, &before).await };
                        tokio::spawn(task.in_current_profiler())
                    })
                    .collect();
                let mut first_error = None;
                for (i, handle) in handles.into_iter().enumerate() {
                    let result = match handle.await {
                        Ok(result) => result,
                        Err(join) => Err(NodeError {
                            node_id: parallel[i].id.clone(),
                            kind: NodeErrorKind::Panicked {
                                message: join.to_string(),
                            },
                            execution_time_ms: 0.0,
                            cost_usd: 0.0,
                        }),
                    };
                    match result {
                        Ok(out) => {
                            state.insert(out.output_key, Value::String(out.text));
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(RunFailure::Node(e));
                }
            }
        }
    }
    Ok(state)
}
