//! The run store against SQLite: in memory, and in files opened read-only.

use std::path::PathBuf;

use agent_profiler_runtime::BottleneckAnalyzer;
use rusqlite::Connection;

use super::test_support::finished;
use super::*;
use serde_json::json;

/// The root package's scratch directories, shared as they are.
#[path = "../../../tests/support/scratch.rs"]
mod scratch;

fn temp_path(test: &str) -> PathBuf {
    scratch::temp_dir(&format!("agent-profiler-store-{test}")).join("runs.sqlite3")
}

/// An in-memory store holding `runs`.
fn store_with(runs: &[WorkflowRunRecord]) -> RunStore {
    let store = RunStore::in_memory().unwrap();
    for run in runs {
        store.save_run(run).unwrap();
    }
    store
}

/// Runs `sql` on the store's database behind the store's back, as a hand edit would.
fn edit(store: &RunStore, sql: &str) {
    store.sql(|c| c.execute_batch(sql)).unwrap();
}

#[test]
fn run_ids_are_random_uuids() {
    let ids: Vec<String> = (0..1000)
        .map(|_| WorkflowRunRecord::started("wf", json!({}), json!({})).id)
        .collect();
    for id in &ids {
        let uuid = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(uuid.get_version_num(), 4, "{id}");
        assert_eq!(id, &uuid.hyphenated().to_string(), "{id}");
    }
    let firsts: std::collections::HashSet<&str> = ids.iter().map(|i| &i[..8]).collect();
    // 1000 random 32-bit starts: a repeat is possible but very rare (p ~ 1e-4).
    assert!(firsts.len() >= 999);
}

#[test]
fn prefixes_find_runs_and_ambiguity_is_an_error() {
    let store = store_with(
        &[
            ("abc11111", 1.0),
            ("abc12222", 2.0),
            ("abd00000", 3.0),
            ("ab", 4.0),
        ]
        .map(|(id, at)| finished("wf", id, at, &[("n", 1.0)])),
    );
    assert_eq!(store.find_run("abd").unwrap().id, "abd00000");
    assert_eq!(store.find_run("abc12").unwrap().id, "abc12222");
    // An exact id wins over the longer ids that start with it.
    assert_eq!(store.find_run("ab").unwrap().id, "ab");
    let err = store.find_run("abc1").unwrap_err();
    assert!(
        matches!(&err, StoreError::AmbiguousRunId { count: 2, examples, .. } if examples.len() == 2)
    );
    let msg = err.to_string();
    assert!(msg.contains("`abc1` is ambiguous: 2 runs"), "{msg}");
    assert!(msg.contains("abc12222, abc11111"), "{msg}");
    let err = store.find_run("zzz").unwrap_err();
    assert!(matches!(err, StoreError::RunNotFound { .. }));
    assert_eq!(
        err.to_string(),
        "no run with an id starting with `zzz` in :memory:"
    );
    assert!(matches!(
        store.find_run(""),
        Err(StoreError::RunNotFound { .. })
    ));
    // Wildcards are plain characters.
    assert!(matches!(
        store.find_run("a%"),
        Err(StoreError::RunNotFound { .. })
    ));
    assert!(matches!(
        store.find_run("a_c"),
        Err(StoreError::RunNotFound { .. })
    ));
    // "ab" vs "abc11111" share 2, "abc11111" vs "abc12222" share 4.
    assert_eq!(store.unique_prefix_len(1).unwrap(), 5);
    assert_eq!(store.unique_prefix_len(8).unwrap(), 8);
}

#[test]
fn listing_filters_and_orders() {
    let store = store_with(&[
        finished("a", "r1", 1.0, &[("x", 1.0)]),
        finished("b", "r2", 2.0, &[("y", 1.0)]),
        finished("a", "r3", 3.0, &[("x", 2.0)]),
    ]);
    let ids = |runs: Vec<WorkflowRunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_runs(None, 10).unwrap()), ["r3", "r2", "r1"]);
    assert_eq!(ids(store.list_runs(None, 2).unwrap()), ["r3", "r2"]);
    assert_eq!(ids(store.list_runs(Some("a"), 10).unwrap()), ["r3", "r1"]);
    assert_eq!(store.workflow_names().unwrap(), ["a", "b"]);
}

#[test]
fn corrupt_columns_name_the_run_and_column() {
    let store = store_with(&[
        finished("wf", "good", 1.0, &[("n", 1.0)]),
        finished("wf", "bad", 2.0, &[("n", 1.0)]),
    ]);
    edit(
        &store,
        "UPDATE workflow_runs SET bottleneck_info = '{oops' WHERE id = 'bad'",
    );
    let err = store.find_run("bad").unwrap_err();
    assert!(
        matches!(&err, StoreError::Json { run_id, column: "bottleneck_info", .. } if run_id == "bad")
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("run bad: column `bottleneck_info` holds bad JSON"),
        "{msg}"
    );
    assert!(!msg.contains('\n'));
    assert!(store.list_runs(None, 10).is_err());
    assert!(store.find_run("good").is_ok());
    // A summary of the wrong shape is as bad as broken JSON.
    edit(
        &store,
        "UPDATE workflow_runs SET bottleneck_info = '[1]', inputs = 'x' WHERE id = 'bad'",
    );
    let err = store.get_run("bad").unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Json {
                column: "inputs",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn open_existing_is_read_only_and_never_creates() {
    let path = temp_path("open-existing");
    let err = RunStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }));
    assert!(
        err.to_string()
            .ends_with("runs.sqlite3: the file does not exist")
    );
    assert!(!path.exists());

    // Not a database at all.
    std::fs::write(
        &path,
        "hello, I am not SQLite, just some text that is long enough",
    )
    .unwrap();
    let err = RunStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::Sqlite { .. }), "{err}");
    // A database without the tables.
    std::fs::remove_file(&path).unwrap();
    Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE other (x INTEGER);")
        .unwrap();
    let err = RunStore::open_existing(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotARunStore { .. }), "{err}");
    std::fs::remove_file(&path).unwrap();

    let writer = RunStore::open(&path).unwrap();
    let run = finished("wf", "run-1", 1.0, &[("n", 1.0)]);
    writer.save_run(&run).unwrap();
    let reader = RunStore::open_existing(&path).unwrap();
    assert_eq!(reader.find_run("run").unwrap(), run);
    assert!(matches!(
        reader.save_run(&run),
        Err(StoreError::Sqlite { .. })
    ));
}

#[test]
fn old_store_without_trace_table_reads_no_trace() {
    let path = temp_path("no-trace-table");
    let writer = RunStore::open(&path).unwrap();
    writer
        .save_run(&finished("wf", "r", 1.0, &[("n", 1.0)]))
        .unwrap();
    edit(&writer, "DROP TABLE run_traces;");
    let reader = RunStore::open_existing(&path).unwrap();
    assert_eq!(reader.load_trace("r").unwrap(), None);
}

#[test]
fn traces_round_trip() {
    let store = RunStore::in_memory().unwrap();
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(16);
    analyzer.record_node("plan", 12.0).unwrap();
    analyzer.record_node("act", 3.5).unwrap();
    let trace = analyzer.trace().unwrap();
    let run = finished("wf", "r", 1.0, &[("plan", 12.0), ("act", 3.5)]);
    assert!(
        matches!(
            store.save_trace("r", &trace),
            Err(StoreError::Sqlite { .. })
        ),
        "the run must exist"
    );
    store.save_run(&run).unwrap();
    assert_eq!(store.load_trace("r").unwrap(), None);
    store.save_trace("r", &trace).unwrap();
    assert_eq!(store.load_trace("r").unwrap().as_ref(), Some(&trace));
    let mut shorter = trace.clone();
    shorter.spans.truncate(1);
    store.save_trace("r", &shorter).unwrap();
    assert_eq!(store.load_trace("r").unwrap(), Some(shorter));
    edit(&store, "UPDATE run_traces SET trace_json = 'nope'");
    let err = store.load_trace("r").unwrap_err();
    assert!(matches!(&err, StoreError::Json { run_id, column: "trace_json", .. } if run_id == "r"));
}

#[test]
fn report_matches_the_executor_form() {
    let mut run = finished("wf", "r1", 1.0, &[("slow", 450.0), ("fast", 50.0)]);
    run.status = WorkflowStatus::Failed;
    run.duration_ms = Some(512.4);
    run.error_message = Some("node `slow` failed: boom".into());
    let report = run.report().unwrap();
    assert!(report.starts_with(
        "Slowest node: slow (450.00ms avg)\nBottlenecks (>50% of total time):\n  - slow: 90.0% (450ms total)\n\n"
    ));
    assert!(
        report.ends_with("\nworkflow `wf` failed in 512ms (run r1): node `slow` failed: boom\n")
    );
}

/// A completed run whose node `answer` made one streamed LLM call (first chunk after about
/// 3 ms, 5 ms in all) and one that failed, and whose node `tidy` made none.
fn run_with_timed_calls(id: &str) -> WorkflowRunRecord {
    use agent_profiler_runtime::{
        LlmOutcome, MultiProviderCostTracker, ProfilerFutureExt, Usage, profile_call,
    };
    use std::{thread::sleep, time::Duration};

    let analyzer = BottleneckAnalyzer::new();
    let tracker = MultiProviderCostTracker::new();
    let answer = profile_call("answer", async {
        let call = tracker.start_call("openai", "gpt-4o-mini");
        call.set_stream(true);
        sleep(Duration::from_millis(3));
        call.first_chunk();
        sleep(Duration::from_millis(2));
        call.finish(Usage::new(100, 20)).unwrap();
        let call = tracker.start_call("openai", "gpt-4o-mini");
        let _ = call.fail(LlmOutcome::Timeout, "no answer", None);
    });
    let tidy = profile_call("tidy", async { sleep(Duration::from_millis(1)) });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(
        async {
            answer.await;
            tidy.await
        }
        .with_profiler(analyzer.clone()),
    );
    let mut run = finished("wf", id, 1.0, &[]);
    run.bottleneck_info = Some(analyzer.get_summary());
    run
}

#[test]
fn time_splits_round_trip_through_their_table() {
    let path = temp_path("time-splits");
    let writer = RunStore::open(&path).unwrap();
    let run = run_with_timed_calls("r");
    writer.save_run(&run).unwrap();
    let summary = run.bottleneck_info.as_ref().unwrap();
    let answer = summary.node("answer").unwrap();
    assert_eq!((answer.llm_calls, answer.llm_failed_calls), (1, 1));
    assert!(answer.llm_time_ms >= 5.0 && answer.ttft_p50_ms.unwrap() >= 3.0);

    let reader = RunStore::open_existing(&path).unwrap();
    let rows: i64 = reader
        .sql(|c| c.query_row("SELECT COUNT(*) FROM node_time_splits", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(rows, 2);
    let splits = reader.time_splits("r").unwrap();
    let want: Vec<NodeTimeSplit> = ["answer", "tidy"]
        .iter()
        .map(|id| NodeTimeSplit::from_timings(summary.node(id).unwrap()))
        .collect();
    assert_eq!(splits, want);
    assert_eq!(splits[1].ttft_p50_ms, None);
    // The summary keeps the same figures.
    assert_eq!(
        reader
            .get_run("r")
            .unwrap()
            .unwrap()
            .bottleneck_info
            .as_ref(),
        Some(summary)
    );
    // Saving the run again replaces its rows; a run without a summary has none.
    writer.save_run(&run).unwrap();
    assert_eq!(writer.time_splits("r").unwrap().len(), 2);
    assert_eq!(writer.time_splits("unknown").unwrap(), []);
}

#[test]
fn an_old_store_without_the_time_splits_opens_and_reads_zeros() {
    let path = temp_path("no-time-splits");
    let writer = RunStore::open(&path).unwrap();
    writer.save_run(&run_with_timed_calls("r")).unwrap();
    // The store as an older version left it: no table, and summaries without the fields.
    let fields = [
        "llm_failed_calls",
        "llm_time_ms",
        "own_time_ms",
        "streamed_calls",
        "ttft_p50_ms",
        "ttft_p95_ms",
        "tool_calls",
        "tool_time_ms",
    ];
    let paths: Vec<String> = (0..2)
        .flat_map(|i| fields.iter().map(move |f| format!("'$.nodes[{i}].{f}'")))
        .collect();
    edit(
        &writer,
        &format!(
            "DROP TABLE node_time_splits; \
             UPDATE workflow_runs SET bottleneck_info = json_remove(bottleneck_info, {});",
            paths.join(", ")
        ),
    );
    drop(writer);

    let reader = RunStore::open_existing(&path).unwrap();
    let splits = reader.time_splits("r").unwrap();
    assert_eq!(splits.len(), 2);
    for split in &splits {
        assert_eq!(split.llm_time_ms, 0.0, "{split:?}");
        assert_eq!(split.own_time_ms, 0.0, "{split:?}");
        assert_eq!((split.ttft_p50_ms, split.ttft_p95_ms), (None, None));
    }
    let answer = splits.iter().find(|s| s.node_id == "answer").unwrap();
    assert_eq!(answer.llm_calls, 1, "what the older summary did have");
    let report = reader.get_run("r").unwrap().unwrap().report().unwrap();
    assert!(
        !report.contains("llm ms"),
        "no split without timed calls:\n{report}"
    );

    // A writer opening it adds the table; the old run still reads from its summary.
    let writer = RunStore::open(&path).unwrap();
    assert_eq!(writer.time_splits("r").unwrap(), splits);
}
