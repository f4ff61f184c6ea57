//! The main example: runs `examples/workflows/research.json` (five nodes, one concurrent
//! group; `analyze` is the bottleneck), prints progress and the bottleneck report, stores
//! the run in the SQLite run store, and logs to MLflow when `MLFLOW_TRACKING_URI` is set.
//!
//! LLM: simulated by default (no network, no key). With `OPENAI_BASE_URL` / `OPENAI_API_KEY`
//! set it calls that OpenAI-compatible endpoint, with `ANTHROPIC_API_KEY` Anthropic
//! (set `AGENT_MODEL` to use one model for every node, e.g. a local Ollama model).
//! The run store: `$AGENT_PROFILER_DB`, or `agent-profiler-runs.sqlite3` here.
//!
//! ```sh
//! cargo run --example agent_workflow [-- path/to/workflow.json "topic"]
//! ```

use std::sync::Arc;

use agent_profiler::executor::{StepConfig, WorkflowConfig, WorkflowError, WorkflowExecutor};
use agent_profiler::llm::{LlmClient, SimulatedClient, client_from_env};
use agent_profiler::store::RunStore;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/research.json").to_owned()
    });
    let topic = args
        .next()
        .unwrap_or_else(|| "profiling LLM agent workflows".to_owned());

    let mut config = match WorkflowConfig::from_path(&path) {
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
    if let Ok(model) = std::env::var("AGENT_MODEL") {
        for step in &mut config.steps {
            match step {
                StepConfig::Node(n) => n.model = model.clone(),
                StepConfig::Parallel { parallel } => {
                    parallel.iter_mut().for_each(|n| n.model = model.clone())
                }
            }
        }
    }
    let store = RunStore::open_default()?;
    let mut executor = WorkflowExecutor::new(client).store(store.clone());
    if std::env::var("MLFLOW_TRACKING_URI").is_ok_and(|u| !u.is_empty()) {
        let mlflow = agent_profiler::mlflow::MlflowConfig::from_env()?
            .experiment_name("agent-profiler-examples");
        executor = executor.mlflow(mlflow);
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

    println!("\nstored run {} in {}", run.record.id, store.path());
    if let Some(report) = run.state.get("report").and_then(|v| v.as_str()) {
        println!("report: {report}");
    }
    let history = store.node_stats(&config.name, 10)?;
    let runs = store.recent_runs(&config.name, 10)?.len();
    println!("\nper node over the last {runs} runs of `{}`:", config.name);
    for n in history {
        println!(
            "  {:<14} avg {:>8.1}ms  share {:>5.1}%  bottleneck in {}/{} runs  ${:.6}",
            n.node_id,
            n.avg_duration_ms,
            n.avg_percent_of_total,
            n.bottleneck_runs,
            n.runs,
            n.cost_usd
        );
    }
    Ok(())
}
