//! The run store under load: concurrent runs on one store lose nothing, and where the store
//! lives (disk or tmpfs) does not change the node times measured.
//! Real SQLite files: on disk (under the target directory) and on tmpfs (`/dev/shm`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_profiler_executor::llm::SimulatedClient;
use agent_profiler_executor::store::RunStore;
use agent_profiler_executor::{Console, WorkflowConfig, WorkflowExecutor, WorkflowRun};
use serde_json::json;

#[allow(dead_code)] // directories under a given base only
#[path = "../../tests/support/scratch.rs"]
mod scratch;

/// A workflow of one parallel group of `nodes` simulated nodes, 50 to 75 ms each
/// (50 ms plus 0.5 ms per generated token; `max_tokens` 2 to 61 give 1 to 48 tokens).
fn wide(nodes: usize) -> WorkflowConfig {
    let group: Vec<_> = (0..nodes)
        .map(|i| {
            json!({
                "id": format!("n{i:03}"),
                "model": "gpt-4o-mini",
                "prompt": "Look at {topic}",
                "output_key": format!("out{i:03}"),
                "max_tokens": 2 + (i % 60),
            })
        })
        .collect();
    let text = json!({"name": "wide", "steps": [{"parallel": group}]}).to_string();
    WorkflowConfig::from_json_str(&text).unwrap()
}

fn client() -> Arc<SimulatedClient> {
    Arc::new(
        SimulatedClient::new()
            .base_latency(Duration::from_millis(50))
            .per_token_latency(Duration::from_micros(500)),
    )
}

fn executor(store: RunStore) -> WorkflowExecutor {
    WorkflowExecutor::new(client())
        .console(Console::Silent)
        .progress(false)
        .no_otlp()
        .store(store)
}

/// Runs of `wide(200)` at once, one on each store by its own executor; each must end
/// without a warning.
async fn run_at_once(stores: Vec<RunStore>) -> Vec<WorkflowRun> {
    let config = wide(200);
    let tasks: Vec<_> = stores
        .into_iter()
        .map(|store| {
            let exec = executor(store);
            let config = config.clone();
            tokio::spawn(async move { exec.run_config(&config, json!({"topic": "t"})).await })
        })
        .collect();
    let mut runs = Vec::new();
    for task in tasks {
        let run = task.await.unwrap().unwrap();
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        runs.push(run);
    }
    runs
}

/// A fresh directory under `base` for this test.
fn fresh_dir(base: &Path, test: &str) -> PathBuf {
    scratch::dir_in(base, &format!("agent-profiler-{test}"))
}

/// A directory on disk (not tmpfs): the target directory's scratch space.
fn disk_dir(test: &str) -> PathBuf {
    fresh_dir(Path::new(env!("CARGO_TARGET_TMPDIR")), test)
}

/// A store in a fresh directory on disk for this test: the directory, the file, the store.
fn disk_store(test: &str) -> (PathBuf, PathBuf, RunStore) {
    let dir = disk_dir(test);
    let db = dir.join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    (dir, db, store)
}

fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// What `runs` runs of `wide(200)` leave in the store at `db`: each completed, with its
/// 200 node states and its trace.
fn assert_stored(db: &Path, runs: i64) {
    assert_eq!(count(db, "SELECT COUNT(*) FROM workflow_runs"), runs);
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) FROM workflow_runs WHERE status = 'completed'"
        ),
        runs
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) FROM execution_states"),
        runs * 200
    );
    assert_eq!(count(db, "SELECT COUNT(*) FROM run_traces"), runs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_wide_runs_twice_lose_nothing() {
    let dir = disk_dir("concurrent");
    let db = dir.join("runs.sqlite3");
    let shared = RunStore::open(&db).unwrap();
    // Round 1: one store shared by eight executors; round 2: each opens the file itself.
    for round in 0..2 {
        let stores = (0..8)
            .map(|_| {
                if round == 0 {
                    shared.clone()
                } else {
                    RunStore::open(&db).unwrap()
                }
            })
            .collect();
        for run in run_at_once(stores).await {
            assert_eq!(run.states.len(), 200);
            assert!(run.trace.is_some());
        }
    }
    drop(shared);
    assert_stored(&db, 16);
    // Every run's totals are those of its node states.
    assert_eq!(
        count(
            &db,
            "SELECT COUNT(*) FROM workflow_runs r WHERE abs(r.total_cost_usd - \
             (SELECT SUM(cost_usd) FROM execution_states s WHERE s.run_id = r.id)) > 1e-9"
        ),
        0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

const CHILD_ENV: &str = "AGENT_PROFILER_CONCURRENT_CHILD";

/// A child of [`eight_processes_twice_on_one_store_lose_nothing`]: two runs of 200 nodes
/// on the store `AGENT_PROFILER_CONCURRENT_CHILD` names, then it exits; non-zero when a run
/// had a warning. Nothing unless that variable is set.
#[test]
fn concurrent_child() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let exec = executor(RunStore::open(PathBuf::from(db)).unwrap());
    let config = wide(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for _ in 0..2 {
        let run = rt
            .block_on(exec.run_config(&config, json!({"topic": "t"})))
            .unwrap();
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
    }
}

/// Eight processes, each running two 200-node workflows, on one store at once.
#[test]
fn eight_processes_twice_on_one_store_lose_nothing() {
    let dir = disk_dir("processes");
    let db = dir.join("runs.sqlite3");
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "concurrent_child",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, &db)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_stored(&db, 16);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Another writer holds the store for 6 s (a backup, a long transaction, a slow disk):
/// more than SQLite's busy timeout. Nothing is lost, and the nodes' times do not show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_held_for_six_seconds_loses_nothing_and_delays_no_node() {
    let (dir, db, store) = disk_store("held");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let released = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(6));
        holder.execute_batch("COMMIT").unwrap();
    });
    for run in run_at_once(vec![store.clone(), store.clone()]).await {
        // Each node sleeps 50 to 75 ms; the held store must not add seconds.
        assert!(slowest(&run) >= 73.0);
        assert!(slowest(&run) < 1000.0, "{}", slowest(&run));
        assert!(run.record.duration_ms.unwrap() < 2000.0);
    }
    released.join().unwrap();
    drop(store);
    assert_stored(&db, 2);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run whose future is dropped (a timeout around it) is stored as interrupted, with the
/// cost of the nodes that finished and its trace so far, not left `running`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_is_interrupted_with_what_finished() {
    let (dir, _, store) = disk_store("cancelled");
    let exec = executor(store.clone());
    // 50-75 ms, then ten nodes at once (50-75 ms), then a node of about 700 ms.
    let text = json!({"name": "long", "steps": [
        {"id": "first", "model": "gpt-4o-mini", "prompt": "p {topic}", "output_key": "a", "max_tokens": 20},
        {"parallel": (0..10).map(|i| json!({"id": format!("g{i}"), "model": "gpt-4o-mini",
            "prompt": "q {a}", "output_key": format!("g{i}"), "max_tokens": 2 + i})).collect::<Vec<_>>()},
        {"id": "last", "model": "gpt-4o-mini", "prompt": "r {g0}", "output_key": "z", "max_tokens": 1600}
    ]})
    .to_string();
    let config = WorkflowConfig::from_json_str(&text).unwrap();
    let cancelled = tokio::time::timeout(
        Duration::from_millis(450),
        exec.run_config(&config, json!({"topic": "t"})),
    )
    .await;
    assert!(cancelled.is_err(), "the run ended within 450 ms");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let runs = store.list_runs(None, 10).unwrap();
        assert_eq!(runs.len(), 1);
        if runs[0].status != agent_profiler_executor::store::WorkflowStatus::Running {
            let run = &runs[0];
            assert_eq!(
                run.status,
                agent_profiler_executor::store::WorkflowStatus::Interrupted
            );
            let states = store.states(&run.id).unwrap();
            assert_eq!(states.len(), 11, "{states:?}");
            let cost: f64 = states.iter().map(|s| s.cost_usd).sum();
            assert!(cost > 0.0 && (run.total_cost_usd - cost).abs() < 1e-12);
            assert!(run.total_tokens > 0);
            assert!(run.error_message.as_deref().unwrap().contains("cancelled"));
            // The trace so far: the eleven nodes, and the one cancelled (as cancelled).
            let spans = store.load_trace(&run.id).unwrap().unwrap().spans.len();
            assert!((11..=12).contains(&spans), "{spans} spans");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The slowest node's time of a run.
fn slowest(run: &WorkflowRun) -> f64 {
    run.states
        .iter()
        .map(|s| s.execution_time_ms)
        .fold(0.0, f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_times_do_not_depend_on_where_the_store_lives() {
    let shm = Path::new("/dev/shm");
    let on_tmpfs = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "-T", "/dev/shm"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().next() == Some("tmpfs"));
    assert!(
        on_tmpfs,
        "/dev/shm is not a tmpfs here: the comparison needs one"
    );
    let disk = disk_dir("where-disk");
    let disk_type = std::process::Command::new("findmnt")
        .args(["-n", "-o", "FSTYPE", "-T"])
        .arg(&disk)
        .output()
        .unwrap();
    let disk_type = String::from_utf8_lossy(&disk_type.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(
        disk_type, "tmpfs",
        "{disk:?} is on tmpfs: no disk to compare"
    );
    let tmpfs = fresh_dir(shm, "where-tmpfs");
    let config = wide(200);
    let on_disk = executor(RunStore::open(disk.join("runs.sqlite3")).unwrap());
    let in_memory = executor(RunStore::open(tmpfs.join("runs.sqlite3")).unwrap());
    // Warm up both (the files, the runtime's threads), then alternate: the least slowest
    // node of each place over a few runs (the machine's noise only ever adds time).
    for exec in [&on_disk, &in_memory] {
        exec.run_config(&config, json!({"topic": "t"}))
            .await
            .unwrap();
    }
    let (mut best_disk, mut best_tmpfs) = (f64::MAX, f64::MAX);
    for _ in 0..4 {
        let run = on_disk
            .run_config(&config, json!({"topic": "t"}))
            .await
            .unwrap();
        assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        best_disk = best_disk.min(slowest(&run));
        let run = in_memory
            .run_config(&config, json!({"topic": "t"}))
            .await
            .unwrap();
        best_tmpfs = best_tmpfs.min(slowest(&run));
    }
    println!(
        "slowest node, least of 4 runs of 200 nodes: disk ({disk_type}) {best_disk:.1} ms, \
         tmpfs {best_tmpfs:.1} ms, ratio {:.3}",
        best_disk / best_tmpfs
    );
    // Every node sleeps at least 50 ms, the slowest 74 ms.
    assert!(best_tmpfs >= 73.0 && best_disk >= 73.0);
    assert!(
        best_disk <= 1.2 * best_tmpfs,
        "disk {best_disk:.1} ms vs tmpfs {best_tmpfs:.1} ms"
    );
    // Nothing lost on either.
    for dir in [&disk, &tmpfs] {
        assert_eq!(
            count(
                &dir.join("runs.sqlite3"),
                "SELECT COUNT(*) FROM execution_states"
            ),
            5 * 200
        );
    }
    let _ = std::fs::remove_dir_all(&disk);
    let _ = std::fs::remove_dir_all(&tmpfs);
}
