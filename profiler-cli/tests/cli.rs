//! The `agent-profiler` binary end to end: stores built in temp dirs (runs of the real
//! workflow executor, and records saved directly with planted figures), every command's
//! text and JSON, the 80-column rule, `--help`, and every error path.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_profiler_executor::llm::{LlmClient, SimulatedClient};
use agent_profiler_executor::store::{RunStore, WorkflowRunRecord};
use agent_profiler_executor::{Console, NodeError, WorkflowExecutor};
use agent_profiler_runtime::BottleneckAnalyzer;
use serde_json::{Value, json};

mod support;

use support::output::{cli, stderr, stdout};
use support::{BIN, scratch};

/// A node id of 60 characters: tables must cut it to stay within 80 columns.
const LONG_NODE: &str = "a_very_long_node_identifier_that_goes_on_and_on_for_60_chars";

fn temp_dir(test: &str) -> PathBuf {
    scratch::temp_dir(&format!("agent-profiler-cli-{test}"))
}

/// Exit code 0; returns stdout. Nothing on stderr.
fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stderr(&out), "");
    stdout(&out)
}

/// Exit code 1, nothing on stdout, one line `error: ...` on stderr; returns that line.
fn error(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.ends_with('\n'));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_owned()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

/// Asserts that `line`, of the output `text`, holds each of `parts`.
fn assert_holds(line: &str, parts: &[&str], text: &str) {
    for part in parts {
        assert!(line.contains(part), "`{part}` not in `{line}` of:\n{text}");
    }
}

fn fits_80(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}\nin:\n{text}",
            line.chars().count()
        );
    }
}

/// A finished run with these nodes: (id, total ms, cost USD), one call each.
fn record(
    workflow: &str,
    id: &str,
    started_at: f64,
    nodes: &[(&str, f64, f64)],
) -> WorkflowRunRecord {
    support::runs::completed(workflow, id, started_at, nodes, 3.0)
}

/// 2026-05-01 10:00 UTC.
const T0: f64 = 1_777_629_600.0;

fn id(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-{n:012x}")
}

/// A store of planted runs:
/// - `research`: six runs; `analyze` steady at about 100 ms, then 300 ms in the newest run;
///   `fetch` steady at 20 ms; the newest run also has the 60-character node.
/// - `other`: one run.
/// - two runs whose ids start alike (`abcd1234...`, `abcd5678...`).
fn planted(test: &str) -> (PathBuf, RunStore) {
    let analyze = [100.0, 104.0, 98.0, 250.0, 101.0];
    let mut runs = Vec::new();
    for (i, ms) in analyze.iter().enumerate() {
        let i = i as u32;
        runs.push(record(
            "research",
            &id(i + 1),
            T0 + f64::from(i) * 60.0,
            &[
                ("fetch", 20.0 + f64::from(i % 2), 0.0),
                ("analyze", *ms, 0.002),
            ],
        ));
    }
    runs.push(record(
        "research",
        &id(6),
        T0 + 360.0,
        &[
            ("fetch", 20.5, 0.0),
            ("analyze", 300.0, 0.003),
            (LONG_NODE, 5.0, 0.0001),
        ],
    ));
    runs.push(record("other", &id(7), T0 - 3600.0, &[("solo", 7.0, 0.0)]));
    for (n, at) in [("abcd1234", 1.0), ("abcd5678", 2.0)] {
        runs.push(record(
            "prefix",
            &format!("{n}-0000-4000-8000-000000000000"),
            T0 - 7200.0 + at,
            &[("p", 1.0, 0.0)],
        ));
    }
    store_with(test, &runs)
}

/// A new run store in a temp dir named after `test`, holding `runs`: its path, and the store.
fn store_with(test: &str, runs: &[WorkflowRunRecord]) -> (PathBuf, RunStore) {
    let db = temp_dir(test).join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    for run in runs {
        store.save_run(run).unwrap();
    }
    (db, store)
}

#[test]
fn help_on_every_command_fits_80_columns() {
    let db = Path::new("/nonexistent/store.sqlite3");
    for command in [
        &[][..],
        &["runs"],
        &["show"],
        &["compare"],
        &["trend"],
        &["report"],
        &["trace"],
    ] {
        for flag in ["--help", "-h"] {
            let mut args = command.to_vec();
            args.push(flag);
            let out = ok(cli(db, &args));
            assert!(out.contains("Usage: agent-profiler"), "{args:?}: {out}");
            fits_80(&out);
        }
    }
    let trend = ok(cli(db, &["trend", "--help"]));
    for words in [
        "SLOW",
        "prev median",
        "--threshold",
        "default 1.5",
        "at least 3",
    ] {
        assert!(trend.contains(words), "{words}: {trend}");
    }
    let top = ok(cli(db, &["help"]));
    for command in ["runs", "show", "compare", "trend", "report", "trace"] {
        assert!(top.contains(&format!("  {command} ")), "{top}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let db = Path::new("/nonexistent/store.sqlite3");
    for args in [
        &["compare", "a"][..],
        &["bogus"],
        &["trend", "x", "--threshold", "abc"],
        &["trend", "x", "--threshold", "0.5"],
        &["runs", "--limit", "0"],
        &["report", "run"],
        &["trace", "run"],
        &[],
    ] {
        let out = cli(db, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "");
        assert!(
            stderr(&out).starts_with("error:"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn runs_lists_newest_first_in_text_and_json() {
    let (db, _store) = planted("runs");
    let text = ok(cli(&db, &["runs"]));
    fits_80(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id"), "{text}");
    for header in [
        "workflow",
        "status",
        "started UTC",
        "duration",
        "cost",
        "slowest node",
    ] {
        assert!(lines[0].contains(header), "{header}: {text}");
    }
    assert_eq!(lines.len(), 1 + 9);
    // Newest first; ids shown by their first 8 characters, except where 8 do not
    // tell two runs apart (abcd1234-..., abcd5678-... differ at the 5th, so 8 do).
    assert!(
        lines[1].starts_with("00000006  research  completed  05-01 10:06"),
        "{text}"
    );
    assert_holds(lines[1], &["328.5 ms", "$0.003100"], &text);
    assert!(lines[1].ends_with("analyze"), "{text}");
    assert!(lines[8].starts_with("abcd5678  prefix"), "{text}");

    let limited = ok(cli(
        &db,
        &["runs", "--limit", "2", "--workflow", "research"],
    ));
    assert_eq!(limited.lines().count(), 3);
    assert!(limited.lines().all(|l| !l.contains("other")));

    let value = json_of(&ok(cli(&db, &["runs", "--json"])));
    assert_eq!(value["store"], db.display().to_string());
    let runs = value["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 9);
    let first = &runs[0];
    assert_eq!(first["id"], id(6));
    assert_eq!(first["workflow"], "research");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["started_at"], T0 + 360.0);
    assert_eq!(first["started_at_utc"], "2026-05-01T10:06:00Z");
    assert_eq!(first["duration_ms"], 20.5 + 300.0 + 5.0 + 3.0);
    assert_eq!(first["slowest_node"], "analyze");
    assert_eq!(first["slowest_node_ms"], 300.0);
    assert_eq!(first["llm_calls"], 3);
    assert!((first["total_cost_usd"].as_f64().unwrap() - 0.0031).abs() < 1e-12);
    let filtered = json_of(&ok(cli(&db, &["runs", "--json", "-w", "other"])));
    assert_eq!(filtered["runs"].as_array().unwrap().len(), 1);

    // No runs of a workflow: said, with the workflows there are.
    let none = ok(cli(&db, &["runs", "-w", "nope"]));
    assert!(none.starts_with("no runs of workflow `nope` in "), "{none}");
    assert!(
        none.contains("workflows: other, prefix, research"),
        "{none}"
    );
    let empty = json_of(&ok(cli(&db, &["runs", "-w", "nope", "--json"])));
    assert_eq!(empty["runs"], json!([]));
}

#[test]
fn long_ids_use_more_characters_and_names_are_cut() {
    let workflow = "a-workflow-with-a-name-much-longer-than-any-column-should-hold";
    let (db, _store) = store_with(
        "long-names",
        &[
            record(
                workflow,
                "run-18f3a2b4c5d6e-1a2b-0",
                T0,
                &[(LONG_NODE, 5.0, 0.0)],
            ),
            record(
                workflow,
                "run-18f3a2b4c5d6e-1a2b-1",
                T0 + 1.0,
                &[(LONG_NODE, 9.0, 0.0)],
            ),
        ],
    );
    let text = ok(cli(&db, &["runs"]));
    fits_80(&text);
    // Old-style ids share 23 characters: the listing shows 24, and they find the run.
    assert!(text.contains("run-18f3a2b4c5d6e-1a2b-1  "), "{text}");
    assert!(text.contains('…'), "{text}");
    let shown = ok(cli(&db, &["show", "run-18f3a2b4c5d6e-1a2b-0"]));
    assert!(shown.contains("(run run-18f3a2b4c5d6e-1a2b-0)"), "{shown}");
    // The report's fixed lines (`Slowest node: ...`, the bottlenecks, the closing
    // `workflow ...` line) name nodes and workflows in full: scripts match those lines, so
    // they are never cut or reflowed. The node table cuts them.
    let table: Vec<&str> = shown
        .lines()
        .filter(|l| !l.contains(LONG_NODE) && !l.contains(workflow))
        .collect();
    fits_80(&table.join("\n"));
    let compare = ok(cli(
        &db,
        &[
            "compare",
            "run-18f3a2b4c5d6e-1a2b-0",
            "run-18f3a2b4c5d6e-1a2b-1",
        ],
    ));
    fits_80(&compare);
    assert!(compare.contains("a_very_long_node_identifier"), "{compare}");
    assert!(compare.contains('…'), "{compare}");
}

/// An executor over `client` that keeps its runs in a new store named after `test` and
/// captures what it prints (no progress lines, no trace export); the store's path, a
/// runtime to drive it, and the capture.
fn stored_executor(
    test: &str,
    client: Arc<dyn LlmClient>,
) -> (
    PathBuf,
    tokio::runtime::Runtime,
    WorkflowExecutor,
    Arc<Mutex<String>>,
) {
    let db = temp_dir(test).join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (console, printed) = Console::capture();
    let executor = WorkflowExecutor::new(client)
        .store(store)
        .console(console)
        .progress(false)
        .no_otlp();
    (db, runtime, executor, printed)
}

#[test]
fn show_prints_the_report_the_executor_printed() {
    let client = SimulatedClient::new()
        .base_latency(Duration::from_millis(2))
        .per_token_latency(Duration::ZERO);
    let (db, runtime, executor, printed) = stored_executor("show", Arc::new(client));
    let dir = db.parent().unwrap().to_path_buf();
    let run = runtime
        .block_on(
            executor.run_fn("code", json!({"q": "why"}), |ctx, mut state| async move {
                let plan = ctx.llm("plan", "gpt-4o-mini", "plan an answer").await?;
                let answer = ctx.llm("write", "gpt-4o-mini", &plan).await?;
                state.insert("answer".into(), json!(answer));
                Ok::<_, NodeError>(state)
            }),
        )
        .unwrap();
    let printed_report = printed.lock().unwrap().clone();
    assert_eq!(printed_report, format!("\n{}", run.report));

    let id = &run.record.id;
    let shown = ok(cli(&db, &["show", id]));
    fits_80(&shown);
    assert_eq!(shown, run.report);
    // By the first 8 characters (ids are UUID-like: the first 8 are random).
    assert_eq!(ok(cli(&db, &["show", &id[..8]])), run.report);

    let value = json_of(&ok(cli(&db, &["show", &id[..8], "--json"])));
    assert_eq!(value["run"]["id"], id.as_str());
    assert_eq!(value["run"]["workflow_name"], "code");
    assert_eq!(value["run"]["status"], "completed");
    assert_eq!(value["report"], run.report.as_str());
    let nodes = value["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .any(|n| n["node_id"] == "plan" && n["call_count"] == 1)
    );
    assert!(nodes.iter().all(|n| n["cost_usd"].as_f64().unwrap() > 0.0));
    assert_eq!(value["states"].as_array().unwrap().len(), 2);

    // A failed run: the trailer carries the error, as printed.
    let failed = runtime
        .block_on(
            executor.run_fn("code", json!({}), |ctx, _state| async move {
                ctx.llm("plan", "gpt-4o-mini", "x")
                    .await
                    .map_err(|e| e.to_string())?;
                Err::<serde_json::Map<String, Value>, _>("no answer today".to_owned())
            }),
        )
        .unwrap_err();
    let failed = failed.run().unwrap();
    let shown = ok(cli(&db, &["show", &failed.record.id]));
    assert_eq!(shown, failed.report);
    assert!(
        shown.ends_with(": workflow failed: no answer today\n"),
        "{shown}"
    );

    // The HTML report and the Perfetto trace (the executor keeps a trace by default).
    let html = dir.join("report.html");
    let said = ok(cli(
        &db,
        &["report", &id[..8], "--html", html.to_str().unwrap()],
    ));
    assert_eq!(
        said,
        format!(
            "wrote {}\n(HTML report of run {}, with its timeline)\n",
            html.display(),
            &id[..8]
        )
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && page.contains("plan") && page.contains(id.as_str()));
    let perfetto = dir.join("run.trace.json");
    let said = ok(cli(
        &db,
        &["trace", &id[..8], "--out", perfetto.to_str().unwrap()],
    ));
    assert!(
        said.starts_with(&format!("wrote {}\n(trace of run ", perfetto.display())),
        "{said}"
    );
    assert!(
        said.contains(": 2 spans; open it at ui.perfetto.dev)"),
        "{said}"
    );
    let events = json_of(&std::fs::read_to_string(&perfetto).unwrap());
    let events = events["traceEvents"].as_array().unwrap();
    for node in ["plan", "write"] {
        assert!(
            events.iter().any(|e| e["name"] == node),
            "{node}: {events:?}"
        );
    }
    // Output paths that cannot be written: one line, exit 1, nothing left behind.
    for (command, flag) in [("report", "--html"), ("trace", "--out")] {
        let err = error(cli(
            &db,
            &[command, &id[..8], flag, "/nonexistent/dir/out.file"],
        ));
        assert!(
            err.starts_with("error: cannot write /nonexistent/dir/out.file: "),
            "{err}"
        );
        let err = error(cli(&db, &[command, &id[..8], flag, dir.to_str().unwrap()]));
        assert!(
            err.starts_with(&format!("error: cannot write {}: ", dir.display())),
            "{err}"
        );
    }

    // Listed and compared like the planted ones.
    let runs = ok(cli(&db, &["runs"]));
    fits_80(&runs);
    assert!(runs.contains("failed"), "{runs}");
    let compare = ok(cli(&db, &["compare", &id[..8], &failed.record.id[..8]]));
    fits_80(&compare);
    assert!(compare.contains("only A"), "{compare}"); // `write` ran only in the first
}

#[test]
fn show_of_a_run_without_report_lists_its_states() {
    let db = temp_dir("show-running").join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let mut run = WorkflowRunRecord::started("live", json!({}), json!({}));
    run.id = id(42);
    store.save_run(&run).unwrap();
    store
        .save_state(&agent_profiler_executor::store::ExecutionStateRecord {
            run_id: run.id.clone(),
            node_id: LONG_NODE.into(),
            step: 0,
            status: "completed".into(),
            state: json!({}),
            execution_time_ms: 12.5,
            cost_usd: 0.001,
            error_message: None,
            created_at: T0,
        })
        .unwrap();
    let text = ok(cli(&db, &["show", "0000002a"]));
    fits_80(&text);
    assert!(text.contains("running, no report stored"), "{text}");
    assert!(text.contains("12.5 ms"), "{text}");
    assert!(text.contains("$0.001000"), "{text}");
    let value = json_of(&ok(cli(&db, &["show", "0000002a", "--json"])));
    assert_eq!(value["report"], Value::Null);
    assert_eq!(value["nodes"][0]["total_duration_ms"], 12.5);
    // A running run is no point of a trend.
    let err = error(cli(&db, &["trend", "live"]));
    assert!(err.contains("no finished runs of workflow `live`"), "{err}");
}

#[test]
fn compare_puts_regressions_first() {
    let a = record(
        "wf",
        &id(1),
        T0,
        &[
            ("steady", 50.0, 0.001),
            ("faster", 200.0, 0.004),
            ("slower", 10.0, 0.0),
            ("gone", 30.0, 0.0),
        ],
    );
    let b = record(
        "wf",
        &id(2),
        T0 + 60.0,
        &[
            ("steady", 50.0, 0.001),
            ("faster", 120.0, 0.002),
            ("slower", 110.0, 0.0),
            ("new", 40.0, 0.0005),
        ],
    );
    let (db, _store) = store_with("compare", &[a, b]);
    let text = ok(cli(&db, &["compare", "00000001", "00000002"]));
    fits_80(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].starts_with("A  00000001  wf"), "{text}");
    assert!(lines[2].starts_with("B  00000002  wf"), "{text}");
    // Durations 293 ms and 323 ms.
    assert!(
        lines[3].starts_with("B - A: +30.0 ms (+10.2%), cost -$0.001500 (-30.0%)"),
        "{text}"
    );
    let table: Vec<&str> = lines[5..].to_vec();
    assert!(table[0].starts_with("node"), "{text}");
    let order: Vec<&str> = table[1..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(
        order,
        ["slower", "new", "steady", "gone", "faster"],
        "{text}"
    );
    assert_holds(
        table[1],
        &["10.0 ms", "110.0 ms", "+100.0 ms", "+1000.0%"],
        &text,
    );
    assert_holds(table[2], &["only B", "+$0.000500"], &text);
    assert_holds(table[4], &["only A", "-30.0 ms"], &text);
    assert_holds(table[5], &["-80.0 ms", "-40.0%"], &text);
    assert!(table[5].ends_with("-$0.002000"), "{text}");

    let value = json_of(&ok(cli(
        &db,
        &["compare", "00000001", "00000002", "--json"],
    )));
    assert_eq!(value["run_a"]["id"], id(1));
    assert_eq!(value["run_b"]["id"], id(2));
    assert_eq!(value["duration_delta_ms"], 30.0);
    let nodes = value["nodes"].as_array().unwrap();
    let order: Vec<&str> = nodes
        .iter()
        .map(|n| n["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["slower", "new", "steady", "gone", "faster"]);
    assert_eq!(nodes[0]["delta_ms"], 100.0);
    assert_eq!(nodes[0]["delta_percent"], 1000.0);
    assert_eq!(nodes[0]["only_in"], Value::Null);
    assert_eq!(nodes[1]["only_in"], "b");
    assert_eq!(nodes[1]["time_a_ms"], Value::Null);
    assert_eq!(nodes[1]["delta_percent"], Value::Null);
    assert_eq!(nodes[3]["only_in"], "a");
    assert_eq!(nodes[4]["time_b_ms"], 120.0);
    assert!((nodes[4]["cost_delta_usd"].as_f64().unwrap() + 0.002).abs() < 1e-12);
}

#[test]
fn trend_flags_a_slow_latest_run() {
    let (db, _store) = planted("trend");
    let text = ok(cli(&db, &["trend", "research"]));
    fits_80(&text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "`research`: 6 finished runs, 05-01 10:00 to 05-01 10:06 UTC"
    );
    assert!(
        lines[1].starts_with("node") && lines[1].contains("prev median"),
        "{text}"
    );
    // analyze: previous 100, 104, 98, 250, 101 → median 101; latest 300 > 151.5.
    assert!(lines[2].starts_with("analyze"), "{text}");
    assert_holds(
        lines[2],
        &["101.0 ms", "300.0 ms", "+197.0%", "▃▃▃▇▃█"],
        &text,
    );
    assert!(lines[2].ends_with("SLOW"), "{text}");
    // fetch is steady; the long node ran once (no baseline): neither is flagged.
    let fetch = lines.iter().find(|l| l.starts_with("fetch")).unwrap();
    assert!(!fetch.contains("SLOW"), "{text}");
    let long = lines.iter().find(|l| l.starts_with("a_very_long")).unwrap();
    assert!(long.contains('…') && !long.contains("SLOW"), "{text}");
    assert!(text.contains("flagged: analyze\n"), "{text}");

    let value = json_of(&ok(cli(&db, &["trend", "research", "--json"])));
    assert_eq!(value["workflow"], "research");
    assert_eq!(value["rule"]["threshold"], 1.5);
    assert_eq!(value["rule"]["min_delta_ms"], 1.0);
    assert_eq!(value["rule"]["min_previous_runs"], 3);
    assert_eq!(value["flagged"], json!(["analyze"]));
    let runs = value["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 6);
    assert_eq!(runs[0]["run_id"], id(1)); // oldest first
    let analyze = &value["nodes"][0];
    assert_eq!(analyze["node_id"], "analyze");
    assert_eq!(analyze["flagged"], true);
    assert_eq!(analyze["median_previous_ms"], 101.0);
    assert_eq!(analyze["latest_ms"], 300.0);
    assert_eq!(analyze["previous_runs"], 5);
    assert_eq!(analyze["latest_cost_usd"], 0.003);
    let series = analyze["series"].as_array().unwrap();
    assert_eq!(series.len(), 6);
    assert_eq!(series[3]["total_duration_ms"], 250.0);
    let long = value["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node_id"] == LONG_NODE)
        .unwrap();
    assert_eq!(long["previous_runs"], 0);
    assert_eq!(long["median_previous_ms"], Value::Null);
    assert_eq!(long["flagged"], false);

    // A higher threshold, a larger floor, or a window too short for a baseline: no flag.
    for args in [
        &["trend", "research", "--threshold", "3"][..],
        &["trend", "research", "--min-delta-ms", "250"],
        &["trend", "research", "--limit", "3"],
    ] {
        let text = ok(cli(&db, args));
        fits_80(&text);
        assert!(text.contains("no node flagged"), "{args:?}: {text}");
    }
    let four = json_of(&ok(cli(&db, &["trend", "research", "-n", "4", "--json"])));
    assert_eq!(four["runs"].as_array().unwrap().len(), 4);
    // Previous 98, 250, 101: median 101 → flagged with 3 previous runs.
    assert_eq!(four["flagged"], json!(["analyze"]));

    let err = error(cli(&db, &["trend", "nope"]));
    assert!(err.contains("no finished runs of workflow `nope`"), "{err}");
    assert!(err.contains("workflows: other, prefix, research"), "{err}");
}

#[test]
fn bad_input_is_one_line_and_exit_1() {
    let (db, store) = planted("errors");

    // No store: an error, and no file created.
    let missing = db.with_file_name("typo.sqlite3");
    let err = error(cli(&missing, &["runs"]));
    assert!(
        err.contains("no run store at") && err.contains("typo.sqlite3"),
        "{err}"
    );
    assert!(!missing.exists());
    let err = error(cli(
        Path::new("/nonexistent/dir/runs.sqlite3"),
        &["show", "x"],
    ));
    assert!(err.contains("does not exist"), "{err}");
    // Not a store.
    let text_file = db.with_file_name("notes.txt");
    std::fs::write(
        &text_file,
        "these are not the runs you are looking for, not at all",
    )
    .unwrap();
    let err = error(cli(&text_file, &["runs"]));
    assert!(err.contains("notes.txt"), "{err}");

    // Unknown and ambiguous runs.
    let err = error(cli(&db, &["show", "ffffffff"]));
    assert_eq!(
        err,
        format!(
            "error: no run with an id starting with `ffffffff` in {}",
            db.display()
        )
    );
    let err = error(cli(&db, &["show", "abcd"]));
    assert!(
        err.contains("run id `abcd` is ambiguous: 2 runs start with it (abcd5678-"),
        "{err}"
    );
    assert!(err.ends_with("type more of the id"), "{err}");
    assert!(ok(cli(&db, &["show", "abcd1"])).lines().count() > 3);
    let err = error(cli(&db, &["compare", &id(1), "abcd"]));
    assert!(err.contains("ambiguous"), "{err}");
    let err = error(cli(&db, &["compare", "nope", &id(1)]));
    assert!(err.contains("`nope`"), "{err}");

    // A run without trace.
    let err = error(cli(
        &db,
        &["trace", &id(1)[..8], "--out", "/tmp/never-written.json"],
    ));
    assert_eq!(
        err,
        format!("error: run {} has no trace (trace mode was off)", id(1))
    );
    assert!(!Path::new("/tmp/never-written.json").exists());
    // Its report has no timeline.
    let html = db.with_file_name("no-trace.html");
    let said = ok(cli(
        &db,
        &["report", "00000001", "--html", html.to_str().unwrap()],
    ));
    assert!(said.ends_with("(HTML report of run 00000001, no timeline: the run has no trace)\n"));
    assert!(std::fs::read_to_string(&html).unwrap().contains("analyze"));
    // A run still running has nothing to draw.
    let mut live = WorkflowRunRecord::started("live", json!({}), json!({}));
    live.id = id(99);
    store.save_run(&live).unwrap();
    let err = error(cli(
        &db,
        &["report", "00000063", "--html", html.to_str().unwrap()],
    ));
    assert!(err.contains("has no report to draw (running"), "{err}");
    // A corrupt trace.
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(8);
    analyzer.record_node("fetch", 2.0).unwrap();
    store
        .save_trace(&id(2), &analyzer.trace().unwrap())
        .unwrap();
    let out = db.with_file_name("t.json");
    ok(cli(
        &db,
        &["trace", "00000002", "--out", out.to_str().unwrap()],
    ));
    drop(store);
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE run_traces SET trace_json = '[' WHERE run_id = ?1",
        [id(2)],
    )
    .unwrap();
    drop(conn);
    let err = error(cli(
        &db,
        &["trace", "00000002", "--out", out.to_str().unwrap()],
    ));
    assert!(
        err.contains(&format!(
            "run {}: column `trace_json` holds bad JSON",
            id(2)
        )),
        "{err}"
    );

    // A corrupt record, written with raw SQL.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE workflow_runs SET bottleneck_info = '{\"total_time_ms\": oops' WHERE id = ?1",
        [id(3)],
    )
    .unwrap();
    drop(conn);
    for args in [
        &["show", "00000003"][..],
        &["show", "00000003", "--json"],
        &["trend", "research"],
        &["compare", "00000001", "00000003"],
    ] {
        let err = error(cli(&db, args));
        assert!(
            err.contains(&format!(
                "run {}: column `bottleneck_info` holds bad JSON",
                id(3)
            )),
            "{args:?}: {err}"
        );
    }
    // The listing shows the corrupt row as corrupt, and every other run.
    let listed = ok(cli(&db, &["runs"]));
    assert!(listed.contains("CORRUPT"), "{listed}");
    assert!(
        listed.contains(&format!(
            "run {}: corrupt record (bad `bottleneck_info`)",
            id(3)
        )),
        "{listed}"
    );
    assert!(
        listed.contains("00000001") && listed.contains("00000006"),
        "{listed}"
    );
    let listed = json_of(&ok(cli(&db, &["runs", "--json"])));
    let rows = listed["runs"].as_array().unwrap();
    let bad: Vec<_> = rows.iter().filter(|r| r.get("corrupt").is_some()).collect();
    assert_eq!(bad.len(), 1, "{listed}");
    assert_eq!(bad[0]["id"], json!(id(3)));
    assert!(rows.len() > 5);
    // The other runs still show.
    ok(cli(&db, &["show", "00000001"]));
    ok(cli(&db, &["runs", "-w", "other"]));
}

#[test]
fn store_from_the_environment() {
    let (db, _store) = planted("env");
    let run = |vars: &[(&str, &Path)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["runs", "--json"])
            .env_remove("AGENT_PROFILER_STORE")
            .env_remove("AGENT_PROFILER_DB")
            .current_dir(db.parent().unwrap());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let missing = db.with_file_name("missing.sqlite3");
    let value = json_of(&ok(run(&[("AGENT_PROFILER_STORE", &db)])));
    assert_eq!(value["runs"].as_array().unwrap().len(), 9);
    let value = json_of(&ok(run(&[("AGENT_PROFILER_DB", &db)])));
    assert_eq!(value["runs"].as_array().unwrap().len(), 9);
    // AGENT_PROFILER_STORE wins over AGENT_PROFILER_DB.
    let err = error(run(&[
        ("AGENT_PROFILER_STORE", &missing),
        ("AGENT_PROFILER_DB", &db),
    ]));
    assert!(err.contains("missing.sqlite3"), "{err}");
    // Neither: the default file in the current directory, which is not there.
    let err = error(run(&[]));
    assert!(err.contains("agent-profiler-runs.sqlite3"), "{err}");
    assert!(!db.with_file_name("agent-profiler-runs.sqlite3").exists());
}

/// The cells of the row of `node` in the time-split table of `report` (the table after the
/// `llm calls` header).
fn split_row<'a>(report: &'a str, node: &str) -> Vec<&'a str> {
    let table = report
        .split_once("llm calls")
        .unwrap_or_else(|| panic!("no time split in:\n{report}"))
        .1;
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no split row of {node} in:\n{report}"));
    row.split_whitespace().collect()
}

#[test]
fn console_show_and_html_split_each_node_into_llm_and_own_time() {
    // 30 ms per call, the first token of a streamed answer after 12 ms.
    let client = SimulatedClient::new()
        .base_latency(Duration::from_millis(30))
        .per_token_latency(Duration::ZERO)
        .first_token_latency(Duration::from_millis(12));
    let (db, runtime, executor, printed) = stored_executor("time-split", Arc::new(client));
    let dir = db.parent().unwrap().to_path_buf();
    let config = agent_profiler_executor::WorkflowConfig::from_json_str(
        r#"{"name": "split", "steps": [
            {"id": "draft", "model": "gpt-4o-mini", "prompt": "draft {q}", "output_key": "d",
             "stream": true},
            {"id": "check", "model": "gpt-4o-mini", "prompt": "check {d}", "output_key": "c"}
        ]}"#,
    )
    .unwrap();
    let run = runtime
        .block_on(executor.run_config(&config, json!({"q": "why"})))
        .unwrap();
    let printed = printed.lock().unwrap().clone();

    // The console: both nodes' LLM time (at least the 30 ms the client took) and own
    // time; the time to first token only for the streamed node.
    for report in [printed.as_str(), run.report.as_str()] {
        fits_80(report);
        assert!(
            report.contains("\nnode  llm calls    llm ms    own ms  llm% ttft p50 ttft p95\n"),
            "{report}"
        );
        let draft = split_row(report, "draft");
        assert_eq!(draft[1], "1", "{report}");
        assert!(draft[2].parse::<f64>().unwrap() >= 30.0, "{report}");
        assert!(draft[3].parse::<f64>().unwrap() >= 0.0, "{report}");
        assert!(draft[5].parse::<f64>().unwrap() >= 12.0, "{report}");
        assert!(draft[6].parse::<f64>().unwrap() >= 12.0, "{report}");
        let check = split_row(report, "check");
        assert!(check[2].parse::<f64>().unwrap() >= 30.0, "{report}");
        assert_eq!((check[5], check[6]), ("-", "-"), "{report}");
        // The original lines, unchanged, come first.
        assert!(
            report.trim_start().starts_with("Slowest node: "),
            "{report}"
        );
        assert!(report.contains("(outcomes: ok/err/panic/cancel)\ntotal self time: "));
    }

    // `show` prints the same report from the store, and its JSON has the splits.
    let id = &run.record.id;
    let shown = ok(cli(&db, &["show", &id[..8]]));
    assert_eq!(shown, run.report);
    let value = json_of(&ok(cli(&db, &["show", &id[..8], "--json"])));
    let splits = value["time_splits"].as_array().unwrap();
    assert_eq!(splits.len(), 2, "{value}");
    let draft = splits.iter().find(|s| s["node_id"] == "draft").unwrap();
    assert!(draft["llm_time_ms"].as_f64().unwrap() >= 30.0, "{draft}");
    assert!(draft["ttft_p50_ms"].as_f64().unwrap() >= 12.0, "{draft}");
    assert_eq!(
        (
            draft["llm_calls"].as_u64(),
            draft["streamed_calls"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let check = splits.iter().find(|s| s["node_id"] == "check").unwrap();
    assert_eq!(check["ttft_p50_ms"], Value::Null, "{check}");

    // The HTML report: each bar split into its LLM part and its own part, with tooltips.
    let html = dir.join("report.html");
    ok(cli(
        &db,
        &["report", &id[..8], "--html", html.to_str().unwrap()],
    ));
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(page.matches(r#"<rect class="bar-llm""#).count(), 2);
    assert_eq!(page.matches(r#"<rect class="bar-own""#).count(), 2);
    assert!(page.contains("<title>draft: LLM time "), "{page}");
    assert!(page.contains(" over 1 streamed call</title>"), "{page}");
    assert!(page.contains("<title>draft: own time "), "{page}");
    assert!(page.contains("<th>LLM / own time</th><th>TTFT p50 / p95</th>"));
}

#[test]
fn show_prints_the_critical_path_and_its_json_holds_it() {
    // The simulated latencies of the main example: the paper search outlasts the web search
    // by about 16 ms, more than any scheduling jitter.
    let (db, runtime, executor, _) =
        stored_executor("critical-path", Arc::new(SimulatedClient::new()));
    let research =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/workflows/research.json");
    let run = runtime
        .block_on(executor.run_workflow_from_config(&research, json!({"topic": "agents"})))
        .unwrap();
    let id = &run.record.id;

    let shown = ok(cli(&db, &["show", id]));
    assert_eq!(shown, run.report);
    let path = run.summary.critical_path.as_ref().unwrap();
    let text = path.to_text(&run.summary.bottlenecks);
    assert!(shown.contains(&text), "{shown}");
    assert!(
        shown.contains("critical path (") && shown.contains("from the workflow's structure"),
        "{shown}"
    );
    assert!(
        shown.contains("\n  plan -> search_papers -> analyze -> write_report\n"),
        "{shown}"
    );
    assert!(
        shown.contains("speeding up analyze saves the most"),
        "{shown}"
    );

    let value = json_of(&ok(cli(&db, &["show", &id[..8], "--json"])));
    let stored = &value["run"]["bottleneck_info"]["critical_path"];
    assert_eq!(stored["method"], "structure", "{value}");
    let on_path: Vec<&str> = stored["path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        on_path,
        ["plan", "search_papers", "analyze", "write_report"]
    );
    assert_eq!(stored["off_path"][0]["node_id"], "search_web");
    assert_eq!(stored["what_if"][0]["node_id"], "analyze");
    assert!(value["report"].as_str().unwrap().contains(&text));
}
