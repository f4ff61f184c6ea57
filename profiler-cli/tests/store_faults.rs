//! The run store's fault suite: real processes killed with SIGKILL at random
//! points while they run workflows on one store, a full disk and a read-only disk (small
//! tmpfs mounts; CI runs as root), each asserting what is kept and what is counted.
//!
//! - after 30 random SIGKILLs, `PRAGMA integrity_check` is ok, the command-line tool reads
//!   the store read-only (no hot journal to roll back: the store is in WAL mode), shows
//!   every killed run as `interrupted` (never `running`, with the cost of the nodes that
//!   finished and the trace so far), and once a later writer opens the store no killed run
//!   is stored as `running`;
//! - a full disk: the workflows complete, the lost writes are one warning with their count,
//!   what was stored before is intact;
//! - a read-only disk: a writer's open is one line naming the path; the tool still reads
//!   the store, also one left by a killed writer.
//!
//! The child processes are this test binary again, running [`fault_child`] (which does
//! nothing unless `AGENT_PROFILER_FAULT_CHILD` names a store).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler_executor::llm::SimulatedClient;
use agent_profiler_executor::store::RunStore;
use agent_profiler_executor::{Console, WorkflowConfig, WorkflowExecutor};
use serde_json::{Value, json};

mod support;

use support::run_tool;

const CHILD_ENV: &str = "AGENT_PROFILER_FAULT_CHILD";

/// A plan node, a parallel group of `width` nodes, an analysis node; 20 to 170 ms each
/// (a run takes about 350 ms).
fn workflow(width: usize, prompt_len: usize) -> WorkflowConfig {
    let padding = "x".repeat(prompt_len);
    let group: Vec<_> = (0..width)
        .map(|i| {
            json!({"id": format!("n{i:03}"), "model": "gpt-4o-mini",
                   "prompt": format!("Look at {{plan}} {padding}"),
                   "output_key": format!("o{i:03}"), "max_tokens": 2 + (i % 60)})
        })
        .collect();
    let text = json!({"name": "faulty", "steps": [
        {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan", "max_tokens": 20},
        {"parallel": group},
        {"id": "analyze", "model": "gpt-4o", "prompt": "Analyze {o000}", "output_key": "analysis", "max_tokens": 40}
    ]})
    .to_string();
    WorkflowConfig::from_json_str(&text).unwrap()
}

fn executor(store: RunStore) -> WorkflowExecutor {
    let client = SimulatedClient::new()
        .base_latency(Duration::from_millis(20))
        .per_token_latency(Duration::from_millis(3));
    WorkflowExecutor::new(Arc::new(client))
        .console(Console::Silent)
        .progress(false)
        .no_otlp()
        .store_prompts(true)
        .store(store)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The child: runs workflows on the store named by `AGENT_PROFILER_FAULT_CHILD` until it
/// is killed. Nothing unless that variable is set.
#[test]
fn fault_child() {
    let Some(db) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = RunStore::open(PathBuf::from(db)).unwrap();
    let exec = executor(store);
    let config = workflow(20, 10);
    runtime().block_on(async {
        loop {
            let run = exec
                .run_config(&config, json!({"topic": "t"}))
                .await
                .unwrap();
            assert!(run.warnings.is_empty(), "{:?}", run.warnings);
        }
    });
}

fn spawn_child(db: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["fault_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// A small pseudo-random generator (xorshift), started from the clock; its starting value is
/// printed, so that a failing sequence of kills can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("random seed {seed}");
        Self(seed)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Runs the tool with `--store db` (killed after 20 s: it must never hang).
fn cli(db: &Path, args: &[&str]) -> Output {
    run_tool(db, args, Duration::from_secs(20)).0
}

fn ok_json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn query<T: rusqlite::types::FromSql>(db: &Path, sql: &str) -> T {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn scratch(test: &str) -> PathBuf {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    support::scratch::dir_in(parent, &format!("agent-profiler-faults-{test}"))
}

#[test]
fn thirty_random_sigkills_leave_a_sound_store_and_no_run_running() {
    let dir = scratch("sigkill");
    let db = dir.join("runs.sqlite3");
    let mut rng = Rng::new();
    let started = Instant::now();
    for kill in 0..30 {
        let mut child = spawn_child(&db);
        // From before the store is open to several runs in.
        std::thread::sleep(Duration::from_millis(20 + rng.below(500)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Now and then, the tool reads the store the killed writer left.
        if kill % 10 == 9 && db.exists() {
            ok_json(&cli(&db, &["runs", "--json", "-n", "1000"]));
        }
    }
    println!("30 kills in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(query::<String>(&db, "PRAGMA integrity_check"), "ok");
    let runs: i64 = query(&db, "SELECT COUNT(*) FROM workflow_runs");
    let stored_running: i64 = query(
        &db,
        "SELECT COUNT(*) FROM workflow_runs WHERE status = 'running'",
    );
    assert!(runs > 0, "no run was started");
    // Every writer that opened the store marked the runs of those killed before it; only
    // the last child's run may still be stored as running.
    assert!(
        stored_running <= 1,
        "{stored_running} runs stored as running"
    );

    // The read-only tool: no killed run shows as running; their costs are those of the
    // nodes that finished.
    let before = std::fs::read(&db).unwrap();
    let listed = ok_json(&cli(&db, &["runs", "--json", "-n", "5000"]));
    let listed = listed["runs"].as_array().unwrap();
    assert_eq!(listed.len() as i64, runs);
    assert!(
        listed.iter().all(|r| r["status"] != "running"),
        "{listed:?}"
    );
    let interrupted: Vec<&Value> = listed
        .iter()
        .filter(|r| r["status"] == "interrupted")
        .collect();
    let mut statuses: Vec<String> = listed.iter().map(|r| r["status"].to_string()).collect();
    statuses.sort();
    statuses.dedup();
    println!(
        "{runs} runs, {} interrupted; statuses {statuses:?}",
        interrupted.len()
    );
    assert!(!interrupted.is_empty());
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the tool wrote the store"
    );
    let mut with_states = 0;
    for run in &interrupted {
        let id = run["id"].as_str().unwrap();
        let (states, cost): (i64, f64) = {
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0) FROM execution_states WHERE run_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        if states == 0 {
            continue;
        }
        with_states += 1;
        let shown = run["total_cost_usd"].as_f64().unwrap();
        assert!(shown > 0.0 && (shown - cost).abs() < 1e-9, "{run}: {cost}");
        // The trace so far was kept with the node states.
        if with_states <= 3 {
            let out = dir.join(format!("{id}.json"));
            let traced = cli(&db, &["trace", id, "--out", out.to_str().unwrap()]);
            assert_eq!(
                traced.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&traced.stderr)
            );
            // Compared with a completed run: the cost of the nodes that finished, not -100%.
            if let Some(done) = listed.iter().find(|r| r["status"] == "completed") {
                let compared = cli(&db, &["compare", done["id"].as_str().unwrap(), id]);
                assert_eq!(compared.status.code(), Some(0));
                assert!(!String::from_utf8_lossy(&compared.stdout).contains("-100"));
            }
            let show = cli(&db, &["show", id]);
            assert_eq!(show.status.code(), Some(0));
            assert!(String::from_utf8_lossy(&show.stdout).contains("interrupted"));
        }
    }
    assert!(with_states > 0, "no killed run had finished a node");

    // A later writer marks them: none is stored as running any more.
    let store = RunStore::open(&db).unwrap();
    drop(store);
    let stored_running: i64 = query(
        &db,
        "SELECT COUNT(*) FROM workflow_runs WHERE status = 'running'",
    );
    assert_eq!(stored_running, 0);
    assert_eq!(query::<String>(&db, "PRAGMA integrity_check"), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tmpfs of `size` mounted on a scratch dir named after `test` while it lives.
struct Mount(PathBuf);

impl Mount {
    /// The mount, or why there is none (outside CI, the caller skips with that reason; in
    /// CI, which runs as root, it is a failure).
    fn tmpfs(test: &str, size: &str) -> Option<Mount> {
        let dir = scratch(test);
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Mount(dir)),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var_os("CI").is_none(),
                    "cannot mount a tmpfs in CI: {why}"
                );
                println!("SKIPPED: cannot mount a small tmpfs here ({why}); run as root");
                eprintln!("SKIPPED: cannot mount a small tmpfs here ({why}); run as root");
                None
            }
        }
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_full_disk_is_a_warning_and_a_count() {
    let Some(mount) = Mount::tmpfs("full", "1m") else {
        return;
    };
    let db = mount.0.join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let exec = executor(store.clone());
    let config = workflow(100, 1000);
    let rt = runtime();
    let mut full = None;
    let mut complete = 0;
    for _ in 0..40 {
        // The workflow never fails for its store.
        let run = rt
            .block_on(exec.run_config(&config, json!({"topic": "t"})))
            .unwrap();
        if run.warnings.is_empty() {
            complete += 1;
            continue;
        }
        full = Some(run);
        break;
    }
    let run = full.expect("a 1 MB disk never filled");
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    let warning = &run.warnings[0];
    assert!(warning.contains("store writes failed"), "{warning}");
    assert!(warning.contains("full"), "{warning}");
    let lost: usize = warning
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {warning}"));
    // What is counted plus what is kept covers every write of the run: its start, its
    // 102 node states, its end.
    let kept = store.states(&run.record.id).unwrap().len();
    println!("{complete} runs stored whole; the last: {kept} node states kept, {lost} writes lost");
    assert!((1..=104).contains(&lost), "{warning}");
    assert!(kept + lost >= 102, "kept {kept}, lost {lost}");
    drop(exec);
    drop(store);
    // The runs before are intact, and the tool reads the store.
    assert_eq!(query::<String>(&db, "PRAGMA integrity_check"), "ok");
    let listed = ok_json(&cli(&db, &["runs", "--json"]));
    let completed = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "completed")
        .count();
    assert!(completed >= complete, "{listed}");
}

#[test]
fn a_read_only_disk_refuses_writers_in_one_line_and_is_read() {
    let Some(mount) = Mount::tmpfs("readonly", "8m") else {
        return;
    };
    let db = mount.0.join("runs.sqlite3");
    {
        let exec = executor(RunStore::open(&db).unwrap());
        runtime()
            .block_on(exec.run_config(&workflow(5, 0), json!({"topic": "t"})))
            .unwrap();
    }
    // A writer killed mid-run leaves the store in WAL mode, with its -wal and -shm.
    let mut child = spawn_child(&db);
    let deadline = Instant::now() + Duration::from_secs(20);
    while query::<i64>(&db, "SELECT COUNT(*) FROM execution_states") < 30 {
        assert!(Instant::now() < deadline, "the child stored nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    mount.read_only();
    let err = RunStore::open(&db).unwrap_err().to_string();
    assert!(
        err.contains(db.to_str().unwrap()) && !err.contains('\n'),
        "{err}"
    );
    let listed = ok_json(&cli(&db, &["runs", "--json"]));
    let runs = listed["runs"].as_array().unwrap();
    assert!(runs.len() >= 2, "{listed}");
    // What the tool lists is what SQLite reads through the WAL the killed writer left.
    let wal = std::fs::metadata(mount.0.join("runs.sqlite3-wal")).map_or(0, |m| m.len());
    println!("read-only disk: -wal of {wal} bytes left by the killed writer");
    assert_eq!(
        runs.len() as i64,
        query::<i64>(&db, "SELECT COUNT(*) FROM workflow_runs")
    );
    assert!(runs.iter().any(|r| r["status"] == "completed"));
    assert!(runs.iter().all(|r| r["status"] != "running"), "{listed}");
}

const HOT_JOURNAL_ENV: &str = "AGENT_PROFILER_HOT_JOURNAL_CHILD";

/// The child of [`a_hot_journal_is_one_line_and_a_writer_recovers`]: a writer of the old
/// kind (rollback journal) in the middle of a large transaction, spilled to the file; says
/// `ready` and waits to be killed. Nothing unless `AGENT_PROFILER_HOT_JOURNAL_CHILD` is set.
#[test]
fn hot_journal_child() {
    let Some(db) = std::env::var_os(HOT_JOURNAL_ENV) else {
        return;
    };
    let conn = rusqlite::Connection::open(PathBuf::from(db)).unwrap();
    conn.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA cache_size = 2; BEGIN;")
        .unwrap();
    let big = "x".repeat(4000);
    for i in 0..300 {
        conn.execute(
            "INSERT INTO workflow_runs (id, workflow_name, status, config_snapshot, inputs, \
             started_at) VALUES (?1, 'hot', 'running', ?2, '{}', 0)",
            rusqlite::params![format!("hot-{i}"), big],
        )
        .unwrap();
    }
    println!("ready");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_hot_journal_is_one_line_and_a_writer_recovers() {
    use std::io::BufRead as _;
    let dir = scratch("hot");
    let db = dir.join("runs.sqlite3");
    {
        let exec = executor(RunStore::open(&db).unwrap());
        runtime()
            .block_on(exec.run_config(&workflow(3, 0), json!({"topic": "t"})))
            .unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "hot_journal_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOT_JOURNAL_ENV, &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("ready")));
    child.kill().unwrap();
    child.wait().unwrap();
    let journal = dir.join("runs.sqlite3-journal");
    assert!(
        std::fs::metadata(&journal).unwrap().len() > 0,
        "no hot journal"
    );
    let out = cli(&db, &["runs"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("killed mid-write") && err.contains(db.to_str().unwrap()),
        "{err}"
    );
    assert!(!err.contains("readonly database"), "{err}");
    // A writer rolls it back; then the tool reads the store, without the half-written runs.
    drop(RunStore::open(&db).unwrap());
    let listed = ok_json(&cli(&db, &["runs", "--json"]));
    assert_eq!(listed["runs"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(query::<String>(&db, "PRAGMA integrity_check"), "ok");
    let _ = std::fs::remove_dir_all(&dir);
}
