//! The tool on a large store and on paths that are no store: 5,000 runs listed quickly (the
//! time is printed; a debug build lists them in about 0.16 s), and a FIFO or a directory
//! given as the store refused at once with one line naming the path and the cause.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agent_profiler_executor::store::RunStore;
use agent_profiler_runtime::BottleneckAnalyzer;
use serde_json::{Value, json};

mod support;

use support::run_tool;

fn scratch(test: &str) -> PathBuf {
    support::scratch::temp_dir(&format!("agent-profiler-scale-{test}"))
}

/// Runs the tool with `--store db`; killed (and the test failed) after 10 s.
fn cli(db: &Path, args: &[&str]) -> (Output, Duration) {
    run_tool(db, args, Duration::from_secs(10))
}

/// A store of `n` finished runs of two workflows, each with a 30-node summary, a config
/// snapshot of a few kB and a trace, written with raw SQL in one transaction.
fn big_store(dir: &Path, n: usize) -> PathBuf {
    let db = dir.join("runs.sqlite3");
    drop(RunStore::open(&db).unwrap());
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(64);
    for i in 0..30 {
        analyzer
            .record_node(&format!("node_{i:02}"), 10.0 + f64::from(i))
            .unwrap();
    }
    let summary = serde_json::to_string(&analyzer.get_summary()).unwrap();
    let trace = serde_json::to_string(&analyzer.trace().unwrap()).unwrap();
    let steps: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("node_{i:02}"), "model": "gpt-4o", "prompt": "p ".repeat(50), "output_key": format!("k{i}")}))
        .collect();
    let config = json!({"name": "big", "steps": steps}).to_string();
    let mut conn = rusqlite::Connection::open(&db).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..n {
        let id = format!("{i:08x}-0000-4000-8000-{i:012x}");
        let name = if i % 2 == 0 { "big" } else { "other" };
        tx.execute(
            "INSERT INTO workflow_runs (id, workflow_name, status, config_snapshot, inputs, \
             outputs, started_at, completed_at, duration_ms, total_tokens, total_cost_usd, \
             bottleneck_info) VALUES (?1, ?2, 'completed', ?3, '{}', '{}', ?4, ?5, 465.0, \
             1000, 0.01, ?6)",
            rusqlite::params![
                id,
                name,
                config,
                1.7e9 + i as f64,
                1.7e9 + i as f64 + 0.5,
                summary
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO run_traces (run_id, trace_json) VALUES (?1, ?2)",
            rusqlite::params![id, trace],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    db
}

#[test]
fn five_thousand_runs_are_listed_quickly() {
    let dir = scratch("5000");
    let db = big_store(&dir, 5000);
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let (out, took) = cli(&db, &["runs", "-n", "5000"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5001);
        best = best.min(took);
    }
    let (out, json_took) = cli(&db, &["runs", "-n", "5000", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["runs"].as_array().unwrap().len(), 5000);
    assert_eq!(listed["runs"][0]["slowest_node"], "node_29");
    let (out, trend_took) = cli(&db, &["trend", "big", "-n", "5000"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "runs -n 5000: {:.3} s (best of 5); --json {:.3} s; trend -n 5000: {:.3} s",
        best.as_secs_f64(),
        json_took.as_secs_f64(),
        trend_took.as_secs_f64()
    );
    // Measured 0.16-0.19 s here, under the 0.3 s aimed for (the line above prints it); the
    // bound is looser because a whole process is timed on a shared 2-core machine, and still
    // well under the 1.1-1.4 s of a listing that reads whole records.
    assert!(
        best < Duration::from_millis(800),
        "runs -n 5000 took {best:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fifos_and_directories_are_refused_at_once() {
    let dir = scratch("notafile");
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, cause) in [(&fifo, "FIFO"), (&dir, "directory")] {
        let (out, took) = cli(path, &["runs"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(
            err.contains(path.to_str().unwrap()) && err.contains(cause),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "{took:?}");
        // A writer refuses them too, and leaves them as they were.
        let e = RunStore::open(path).unwrap_err().to_string();
        assert!(e.contains(cause), "{e}");
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo_like());
    let _ = std::fs::remove_dir_all(&dir);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}
