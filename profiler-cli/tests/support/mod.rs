//! The kit of the command-line tool's tests: the binary run against a store, and scratch
//! directories (the root package's `tests/support/scratch.rs`, shared as it is).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[allow(dead_code)] // a test file uses one of its directories
#[path = "../../../tests/support/scratch.rs"]
pub mod scratch;

#[allow(dead_code)] // the tests that plant runs by hand
pub mod runs;

#[allow(dead_code)] // the tests that read the tool's output as text
pub mod output;

#[allow(dead_code)] // the tests that read an MLflow server
pub mod mlflow;

pub const BIN: &str = env!("CARGO_BIN_EXE_agent-profiler");

/// Runs the tool with `--store db` (and no store variables from the environment); killed,
/// and the test failed, after `limit`: it must never hang. Returns its output and how long
/// it took.
pub fn run_tool(db: &Path, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let child = Command::new(BIN)
        .arg("--store")
        .arg(db)
        .args(args)
        .env_remove("AGENT_PROFILER_STORE")
        .env_remove("AGENT_PROFILER_DB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(limit) {
        Ok(out) => (out, started.elapsed()),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("the tool hung on {db:?} {args:?}");
        }
    }
}
