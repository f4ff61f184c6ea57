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
//! Its metrics (`node_{id}_duration_ms`, `node_{id}_cost_usd`, `node_{id}_llm_ms`,
//! `node_{id}_ttft_ms`), the bottleneck report and the run's trace (sent over OTLP, listed
//! under the run) are there.
//!
//! Three nodes stream their answers (`"stream": true`), so the report's time split shows
//! their time to first token beside each node's LLM time and own time.
//!
//! ```sh
//! cargo run --example agent_workflow [-- path/to/workflow.json "topic"]
//! ```
//!
//! Exit codes: 0 when the run completed; 1 when it failed (after its report), or when the
//! LLM or MLflow settings are bad; 2 when the workflow file is invalid (nothing runs).
//! Errors are one line on stderr, `error: ...`. A run store that cannot be opened is one
//! warning, and the run goes on without it.

use std::error::Error;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use agent_profiler::executor::{
    StepConfig, WorkflowConfig, WorkflowError, WorkflowExecutor, WorkflowRun,
};
use agent_profiler::llm::{LlmClient, SimulatedClient, client_from_env};
use agent_profiler::mlflow::{ConfigError, MlflowConfig};
use agent_profiler::store::RunStore;

/// The MLflow experiment of the example's runs when the environment names none.
pub const DEFAULT_EXPERIMENT: &str = "agent-profiler-examples";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env = |name: &str| std::env::var(name).ok();
    let code = main_with(
        &args,
        None,
        &env,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}

/// The example's command line: `[workflow.json [topic]]`. Returns the exit code:
/// 0 when the run completed; 1 when it failed (after its report is printed) or when the
/// LLM client or the MLflow settings from the environment are bad; 2 when the workflow
/// file is invalid (nothing ran). Every error is one line on `err`, `error: ...`.
/// `client`: the LLM client, else the one the environment names, else the simulated one.
pub fn main_with(
    args: &[String],
    client: Option<Arc<dyn LlmClient>>,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let path = args.first().cloned().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/research.json").to_owned()
    });
    let topic = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "profiling LLM agent workflows".to_owned());
    let mut fail = |code: u8, message: &dyn std::fmt::Display| {
        let line = message.to_string().replace(['\n', '\r'], " ");
        let _ = writeln!(err, "error: {line}");
        code
    };
    let config = match WorkflowConfig::from_path(&path) {
        Ok(c) => c,
        Err(e) => return fail(2, &e),
    };
    let client: Arc<dyn LlmClient> = match client.map(Ok).or_else(|| client_from_env().transpose())
    {
        Some(Ok(client)) => client,
        Some(Err(e)) => return fail(1, &e),
        None => Arc::new(SimulatedClient::new()),
    };
    match run(config, &topic, client, env, out) {
        Ok(run) => match &run.failure {
            None => 0,
            Some(why) => fail(1, &format!("run {} failed: {why}", run.record.id)),
        },
        Err(e) => match e.downcast_ref::<WorkflowError>() {
            // Inputs the workflow does not provide for: nothing ran.
            Some(WorkflowError::Config(_)) => fail(2, &e),
            _ => fail(1, &e),
        },
    }
}

/// The example: runs `config` over `{"topic": topic}` on `client`, with its settings read
/// through `env` (`AGENT_MODEL`, `AGENT_PROFILER_DB`, the `MLFLOW_*` variables), and prints
/// where the run went on `out`. Returns the run, failed or not.
///
/// A run store that cannot be opened (a read-only directory, a directory, a file that is
/// not SQLite) does not stop the run: one warning on `out` names the store and the cause,
/// and the run goes on without it. "stored run ..." is printed only when the run is in
/// the store.
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
    let store_path = RunStore::default_path_from(|name| env(name).map(Into::into));
    let store = match RunStore::open(&store_path) {
        Ok(store) => Some(store),
        Err(e) => {
            writeln!(out, "warning: {e}; the run goes on without the run store")?;
            None
        }
    };
    let mlflow = mlflow_config(env)?;
    let mut executor = WorkflowExecutor::new(client);
    if let Some(store) = &store {
        executor = executor.store(store.clone());
    }
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

    // Read back: a store that opened may still refuse the write (a read-only file).
    let stored = store.as_ref().filter(
        |s| matches!(s.get_run(&run.record.id), Ok(Some(r)) if r.status == run.record.status),
    );
    match stored {
        Some(store) => writeln!(out, "\nstored run {} in {}", run.record.id, store.path())?,
        None => writeln!(
            out,
            "\nrun {} not stored (see the warning above)",
            run.record.id
        )?,
    }
    if let Some(report) = run.state.get("report").and_then(|v| v.as_str()) {
        writeln!(out, "report: {report}")?;
    }
    print_outputs(&executor, mlflow.as_ref(), &run, out)?;
    if let Some(store) = stored {
        print_history(store, &config.name, out)?;
    }
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
        // The last run of this process: deliver what is queued within the exporter's
        // shutdown timeout, once (a flush followed by the shutdown that dropping the executor
        // does would give a silent server that deadline twice).
        let stats = exporter.shutdown();
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
