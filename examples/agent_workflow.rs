//! The main example: runs `examples/workflows/research.json` (five nodes, one concurrent
//! group; `analyze` is the bottleneck), prints progress and the bottleneck report, stores
//! the run in the SQLite run store, and logs to MLflow when `MLFLOW_TRACKING_URI` is set.
//!
//! LLM: simulated by default (no network, no key). With `OPENAI_BASE_URL` / `OPENAI_API_KEY`
//! set it calls that OpenAI-compatible endpoint, with `ANTHROPIC_API_KEY` Anthropic
//! (set `AGENT_MODEL` to use one model for every node, e.g. a local Ollama model).
//! The run store: `$AGENT_PROFILER_DB`, or `agent-profiler-runs.sqlite3` here.
//!
//! MLflow: the official client's variables (`MLFLOW_TRACKING_URI`, `MLFLOW_EXPERIMENT_NAME`,
//! `MLFLOW_EXPERIMENT_ID`, `MLFLOW_TRACKING_TOKEN`, ...). The run goes to the experiment they
//! name, else to `agent-profiler-examples`; the example prints the run's URL in MLflow's UI.
//! Its metrics (`node_{id}_duration_ms`, `node_{id}_cost_usd`), the bottleneck report and
//! the run's trace (sent over OTLP, listed under the run) are there.
//!
//! ```sh
//! cargo run --example agent_workflow [-- path/to/workflow.json "topic"]
//! ```

use std::error::Error;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use agent_profiler::executor::{
    StepConfig, WorkflowConfig, WorkflowError, WorkflowExecutor, WorkflowRun,
};
use agent_profiler::llm::{LlmClient, SimulatedClient, client_from_env};
use agent_profiler::mlflow::{ConfigError, MlflowConfig};
use agent_profiler::store::RunStore;

/// The MLflow experiment of the example's runs when the environment names none.
pub const DEFAULT_EXPERIMENT: &str = "agent-profiler-examples";

/// How long the example waits, at the end, for the run's trace to reach its receiver.
const TRACE_DELIVERY_WAIT: Duration = Duration::from_secs(10);

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/research.json").to_owned()
    });
    let topic = args
        .next()
        .unwrap_or_else(|| "profiling LLM agent workflows".to_owned());
    let config = match WorkflowConfig::from_path(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let client: Arc<dyn LlmClient> = match client_from_env()? {
        Some(real) => real,
        None => Arc::new(SimulatedClient::new()),
    };
    let env = |name: &str| std::env::var(name).ok();
    run(config, &topic, client, &env, &mut std::io::stdout())?;
    Ok(())
}

/// The example: runs `config` over `{"topic": topic}` on `client`, with its settings read
/// through `env` (`AGENT_MODEL`, `AGENT_PROFILER_DB`, the `MLFLOW_*` variables), and prints
/// where the run went on `out`. Returns the run, failed or not.
pub fn run(
    mut config: WorkflowConfig,
    topic: &str,
    client: Arc<dyn LlmClient>,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
) -> Result<WorkflowRun, Box<dyn Error>> {
    if let Some(model) = env("AGENT_MODEL").filter(|m| !m.is_empty()) {
        use_one_model(&mut config, &model);
    }
    let store = RunStore::open(RunStore::default_path_from(|name| {
        env(name).map(Into::into)
    }))?;
    let mlflow = mlflow_config(env)?;
    let mut executor = WorkflowExecutor::new(client).store(store.clone());
    if let Some(mlflow) = &mlflow {
        executor = executor.mlflow(mlflow.clone());
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let inputs = serde_json::json!({ "topic": topic });
    let run = match runtime.block_on(executor.run_config(&config, inputs)) {
        Ok(run) => run,
        Err(WorkflowError::Failed(run)) => *run,
        Err(e) => return Err(e.into()),
    };

    writeln!(out, "\nstored run {} in {}", run.record.id, store.path())?;
    if let Some(report) = run.state.get("report").and_then(|v| v.as_str()) {
        writeln!(out, "report: {report}")?;
    }
    print_outputs(&executor, mlflow.as_ref(), &run, out)?;
    print_history(&store, &config.name, out)?;
    Ok(run)
}

/// Every node of `config` on `model`.
fn use_one_model(config: &mut WorkflowConfig, model: &str) {
    for step in &mut config.steps {
        match step {
            StepConfig::Node(n) => n.model = model.to_owned(),
            StepConfig::Parallel { parallel } => {
                parallel.iter_mut().for_each(|n| n.model = model.to_owned())
            }
        }
    }
}

/// The MLflow settings `env` gives (the official client's variables), or `None` without
/// `MLFLOW_TRACKING_URI`. The experiment is the one `MLFLOW_EXPERIMENT_ID` or
/// `MLFLOW_EXPERIMENT_NAME` names, else [`DEFAULT_EXPERIMENT`] (as the official client
/// falls back to its default experiment only when neither is set).
pub fn mlflow_config(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<MlflowConfig>, ConfigError> {
    if env("MLFLOW_TRACKING_URI").is_none_or(|uri| uri.is_empty()) {
        return Ok(None);
    }
    let config = MlflowConfig::from_vars(env)?;
    let named =
        config.target_experiment_id().is_some() || config.target_experiment_name().is_some();
    Ok(Some(if named {
        config
    } else {
        config.experiment_name(DEFAULT_EXPERIMENT)
    }))
}

/// Where the run went in MLflow (its URL in MLflow's UI, and its experiment), and where
/// its trace went over OTLP.
fn print_outputs(
    executor: &WorkflowExecutor,
    mlflow: Option<&MlflowConfig>,
    run: &WorkflowRun,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    if let Some(mlflow) = mlflow {
        match (&run.mlflow_run_url, &run.mlflow_experiment_id) {
            (Some(url), Some(id)) => {
                writeln!(out, "MLflow run: {url}")?;
                match mlflow.target_experiment_name() {
                    Some(name) => writeln!(out, "  in experiment `{name}` (id {id})")?,
                    None => writeln!(out, "  in experiment {id}")?,
                }
            }
            _ => writeln!(out, "MLflow: no run logged (see the warnings above)")?,
        }
    }
    if let Some(exporter) = executor.otlp_exporter() {
        exporter.flush(TRACE_DELIVERY_WAIT);
        let stats = exporter.stats();
        if stats.traces_sent == 0 || stats.anything_lost() {
            writeln!(out, "trace: not delivered ({stats})")?;
        } else {
            let to = exporter.config().endpoint();
            writeln!(out, "trace: {} spans sent to {to}", stats.spans_sent)?;
        }
    }
    Ok(())
}

/// Each node's figures over the last runs of the workflow in the store.
fn print_history(
    store: &RunStore,
    workflow: &str,
    out: &mut dyn Write,
) -> Result<(), Box<dyn Error>> {
    let history = store.node_stats(workflow, 10)?;
    let runs = store.recent_runs(workflow, 10)?.len();
    writeln!(out, "\nper node over the last {runs} runs of `{workflow}`:")?;
    for n in history {
        writeln!(
            out,
            "  {:<14} avg {:>8.1}ms  share {:>5.1}%  bottleneck in {}/{} runs  ${:.6}",
            n.node_id,
            n.avg_duration_ms,
            n.avg_percent_of_total,
            n.bottleneck_runs,
            n.runs,
            n.cost_usd
        )?;
    }
    Ok(())
}
