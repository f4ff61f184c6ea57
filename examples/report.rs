//! The HTML report of a run of the main example's workflow
//! (`examples/workflows/research.json`: five LLM nodes, two of them concurrent), written as
//! one self-contained HTML file: inline SVG charts of self time per node with the
//! bottleneck threshold, LLM cost per node, and a timeline of the run (the executor keeps
//! a trace of every run).
//!
//! LLM: simulated by default (no network, no key); with `OPENAI_BASE_URL` /
//! `OPENAI_API_KEY` or `ANTHROPIC_API_KEY` set, that endpoint, as in `agent_workflow`.
//!
//! ```sh
//! cargo run --example report [-- path/to/report.html]
//! ```
//!
//! The README's picture is this report, screenshotted with headless Chromium.
//!
//! Exit code 0 when the run completed; 1 when it failed (its report is written all the
//! same) or on any error, printed as one line, `error: ...`.

use std::process::ExitCode;
use std::sync::Arc;

use agent_profiler::executor::{WorkflowConfig, WorkflowError, WorkflowExecutor};
use agent_profiler::llm::{LlmClient, SimulatedClient, client_from_env};
use agent_profiler::report::write_html;

fn main() -> ExitCode {
    match report() {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(failure)) => {
            eprintln!("error: the run failed: {failure}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {}", e.to_string().replace('\n', " "));
            ExitCode::from(1)
        }
    }
}

/// Runs the workflow and writes its report; returns why the run failed, if it did.
fn report() -> Result<Option<String>, Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "agent-profiler-report.html".to_owned());
    let config = WorkflowConfig::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/workflows/research.json"
    ))?;
    let client: Arc<dyn LlmClient> = match client_from_env()? {
        Some(real) => real,
        None => Arc::new(SimulatedClient::new()),
    };
    let executor = WorkflowExecutor::new(client);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let inputs = serde_json::json!({ "topic": "profiling LLM agent workflows" });
    let run = match runtime.block_on(executor.run_config(&config, inputs)) {
        Ok(run) => run,
        Err(WorkflowError::Failed(run)) => *run,
        Err(e) => return Err(e.into()),
    };

    let title = "Research workflow: where the time and the money go";
    write_html(&run.report_input(title), &out)?;
    println!("\nreport: {out}");
    Ok(run.failure.map(|f| f.to_string()))
}
