//! `agent-profiler check` and `trend --fail-on-slow` end to end: stores of planted runs
//! (runs that differ only by noise, a run with a slow node, too little history), the exit
//! codes a CI job reads, the text and Markdown output, and the budgets.

use std::path::{Path, PathBuf};
use std::process::Output;

use agent_profiler_executor::store::{RunStore, WorkflowRunRecord, WorkflowStatus};

mod support;

use support::output::{cli, stderr, stdout};
use support::scratch;

/// Runs of noise: every figure of a run is the steady one times its factor (±3%).
const JITTER: [f64; 11] = [
    1.00, 0.97, 1.03, 0.99, 1.02, 0.98, 1.01, 1.03, 0.97, 1.00, 1.03,
];

/// 2026-05-01 10:00 UTC.
const T0: f64 = 1_777_629_600.0;

/// Asserts the exit code and an empty stderr; returns stdout.
fn exits(code: i32, out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(stderr(&out), "");
    stdout(&out)
}

/// Exit code 2, nothing on stdout, one line `error: ...`; returns that line.
fn gate_error(out: Output) -> String {
    assert_eq!(out.status.code(), Some(2), "stderr:\n{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    err.trim_end().to_owned()
}

fn fits_80(text: &str) {
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "{line}\nin:\n{text}");
    }
}

fn id(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-{n:012x}")
}

/// A completed run of `research`: nodes (id, total ms, cost USD), one call each; the wall
/// time is their sum plus 5 ms.
fn record(n: u32, nodes: &[(&str, f64, f64)]) -> WorkflowRunRecord {
    let started_at = T0 + f64::from(n) * 60.0;
    support::runs::completed("research", &id(n), started_at, nodes, 5.0)
}

/// A run of noise: `fetch` about 20 ms, `analyze` about 100 ms, $0.002 in all.
fn noisy(n: u32, factor: f64) -> WorkflowRunRecord {
    record(
        n,
        &[
            ("fetch", 20.0 * factor, 0.0),
            ("analyze", 100.0 * factor, 0.002),
        ],
    )
}

/// A store in a temp dir named after `test`, holding `runs`.
fn store_with(test: &str, runs: &[WorkflowRunRecord]) -> PathBuf {
    let db = scratch::temp_dir(&format!("agent-profiler-check-{test}")).join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    for run in runs {
        store.save_run(run).unwrap();
    }
    db
}

/// Eleven runs that differ only by noise (±3%), the newest among the slowest.
fn noise_store(test: &str) -> PathBuf {
    let runs: Vec<_> = (0..11u32).map(|n| noisy(n, JITTER[n as usize])).collect();
    store_with(test, &runs)
}

/// Ten runs of noise, then a newest run whose `analyze` took twice as long.
fn slow_store(test: &str) -> PathBuf {
    let mut runs: Vec<_> = (0..10u32).map(|n| noisy(n, JITTER[n as usize])).collect();
    runs.push(record(
        10,
        &[("fetch", 20.0, 0.0), ("analyze", 200.0, 0.002)],
    ));
    store_with(test, &runs)
}

#[test]
fn runs_that_differ_only_by_noise_pass() {
    let db = noise_store("noise");
    let text = exits(0, cli(&db, &["check"]));
    fits_80(&text);
    assert!(
        text.starts_with("check: run 0000000a of `research`, completed"),
        "{text}"
    );
    assert!(
        text.contains("baseline: 10 completed runs before it, 05-01 10:00 to 05-01 10:09 UTC"),
        "{text}"
    );
    assert!(text.ends_with("PASS\n"), "{text}");
    assert!(!text.contains("REGRESSED"), "{text}");
    for figure in ["wall time", "cost", "node analyze", "node fetch"] {
        let line = text.lines().find(|l| l.starts_with(figure)).unwrap();
        assert!(line.ends_with(" ok"), "{line}\n{text}");
    }
    // The rule is printed with the numbers in force.
    assert!(text.contains("rule: regressed when value > median + max(3 x 1.4826 x MAD"));

    // The same store is held to a tighter rule: 3% is then a regression.
    let out = cli(
        &db,
        &[
            "check",
            "--min-change-pct",
            "1",
            "--noise-factor",
            "0",
            "--min-change-ms",
            "0",
        ],
    );
    let text = exits(1, out);
    assert!(text.contains("rule: regressed when value > median + max(0 x 1.4826 x MAD, 1%"));
    assert!(text.contains("FAIL\n  wall time: "), "{text}");
}

#[test]
fn a_planted_slow_node_fails_and_is_named() {
    let db = slow_store("slow");
    let text = exits(1, cli(&db, &["check"]));
    fits_80(&text);
    let row = text
        .lines()
        .find(|l| l.starts_with("node analyze"))
        .unwrap();
    for part in ["200.0 ms", "100.0 ms", "REGRESSED"] {
        assert!(row.contains(part), "{part} in {row}");
    }
    let fetch = text.lines().find(|l| l.starts_with("node fetch")).unwrap();
    assert!(fetch.ends_with(" ok"), "{fetch}");
    // Regressed nodes come first, after the run's wall time and cost.
    let figures: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("figure"))
        .skip(1)
        .take(4)
        .map(|l| l.split("  ").next().unwrap())
        .collect();
    assert_eq!(figures, ["wall time", "cost", "node analyze", "node fetch"]);
    let failed: Vec<&str> = text.lines().skip_while(|l| *l != "FAIL").collect();
    assert_eq!(failed.len(), 3, "{text}");
    assert!(
        failed[1].starts_with("  wall time: 225.0 ms, limit "),
        "{}",
        failed[1]
    );
    assert_eq!(
        failed[2],
        "  node analyze: 200.0 ms, limit 110.0 ms (median 100.0 ms, +100.0%)"
    );

    // An older run, named by its prefix, is judged against the runs before it.
    let text = exits(0, cli(&db, &["check", "00000009"]));
    assert!(text.contains("check: run 00000009"), "{text}");
    assert!(
        text.contains("baseline: 9 completed runs before it"),
        "{text}"
    );
}

#[test]
fn markdown_for_a_job_summary() {
    let db = slow_store("markdown");
    let out = cli(
        &db,
        &["check", "--format", "markdown", "--max-cost-usd", "0.001"],
    );
    let md = exits(1, out);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines[0], "### agent-profiler check: FAIL");
    assert!(
        lines[2].starts_with(
            "Run `0000000a` of workflow research (completed, started 2026-05-01 10:10 UTC)"
        ),
        "{}",
        lines[2]
    );
    assert!(md.contains(
        "| figure | value | median | MAD | limit | change | verdict |\n\
         |---|---:|---:|---:|---:|---:|---|\n"
    ));
    assert!(
        md.contains(
            "| node analyze | 200.0 ms | 100.0 ms | 2.0 ms | 110.0 ms | +100.0% | **REGRESSED** |"
        ),
        "{md}"
    );
    assert!(
        md.contains("| cost | \\$0.002000 | \\$0.001000 | **EXCEEDED** |"),
        "{md}"
    );
    assert!(md.contains("**Failed:**\n\n- wall time: "), "{md}");
    assert!(
        md.contains("- node analyze: 200.0 ms, limit 110.0 ms"),
        "{md}"
    );
    assert!(
        md.contains("- budget: cost \\$0.002000 over \\$0.001000"),
        "{md}"
    );
    assert!(
        md.ends_with("judged with at least 5 baseline runs.\n"),
        "{md}"
    );

    let md = exits(
        0,
        cli(
            &noise_store("markdown-pass"),
            &["check", "--format", "markdown"],
        ),
    );
    assert!(md.starts_with("### agent-profiler check: PASS\n"), "{md}");
    assert!(!md.contains("Failed"), "{md}");
}

#[test]
fn the_cost_budget() {
    let db = noise_store("cost-budget");
    let text = exits(1, cli(&db, &["check", "--max-cost-usd", "0.0015"]));
    fits_80(&text);
    let budget = text.lines().skip_while(|l| !l.starts_with("budget"));
    let row = budget.clone().find(|l| l.starts_with("cost ")).unwrap();
    assert!(row.contains("EXCEEDED"), "{row}");
    assert!(
        text.ends_with("FAIL\n  budget: cost $0.002000 over $0.001500\n"),
        "{text}"
    );
    let text = exits(0, cli(&db, &["check", "--max-cost-usd", "0.0025"]));
    assert!(text.contains("$0.002500  ok"), "{text}");
}

#[test]
fn the_duration_budget() {
    let db = noise_store("duration-budget");
    // The newest run took 1.03 x 120 + 5 = 128.6 ms.
    let text = exits(1, cli(&db, &["check", "--max-duration-ms", "100"]));
    assert!(
        text.ends_with("FAIL\n  budget: duration 128.6 ms over 100.0 ms\n"),
        "{text}"
    );
    exits(0, cli(&db, &["check", "--max-duration-ms", "130"]));
    // Budgets hold even with no history at all.
    let db = store_with("duration-alone", &[noisy(0, 1.0)]);
    exits(1, cli(&db, &["check", "--max-duration-ms", "100"]));
}

#[test]
fn too_few_runs_is_not_enough_history() {
    let runs: Vec<_> = (0..4u32)
        .map(|n| noisy(n, 1.0))
        .chain([record(4, &[("analyze", 500.0, 0.01)])])
        .collect();
    let db = store_with("few", &runs);
    let text = exits(0, cli(&db, &["check"]));
    fits_80(&text);
    assert!(
        text.contains(
            "baseline: 4 completed runs before it (5 needed): not enough history\n\
             only the budgets are checked\n\n"
        ),
        "{text}"
    );
    assert!(text.contains("few runs"), "{text}");
    assert!(text.ends_with("PASS\n"), "{text}");
    let text = exits(1, cli(&db, &["check", "--require-baseline"]));
    assert!(
        text.ends_with("FAIL\n  not enough history (--require-baseline)\n"),
        "{text}"
    );
    // Four runs are enough when four are asked for.
    let text = exits(1, cli(&db, &["check", "--min-runs", "4"]));
    assert!(text.contains("  node analyze: 500.0 ms"), "{text}");

    // A failed run is no baseline, and a run that failed does not pass.
    let mut runs: Vec<_> = (0..6u32).map(|n| noisy(n, 1.0)).collect();
    runs[5].status = WorkflowStatus::Failed;
    let db = store_with("failed", &runs);
    let text = exits(1, cli(&db, &["check"]));
    assert!(
        text.ends_with("FAIL\n  the run failed (only a completed run passes)\n"),
        "{text}"
    );
    assert!(
        text.contains("baseline: 5 completed runs before it"),
        "{text}"
    );
}

#[test]
fn trend_fails_on_slow_when_asked() {
    let db = slow_store("trend-slow");
    let text = exits(0, cli(&db, &["trend", "research"]));
    assert!(text.contains("flagged: analyze"), "{text}");
    let text = exits(1, cli(&db, &["trend", "research", "--fail-on-slow"]));
    assert!(text.contains("flagged: analyze"), "{text}");
    exits(
        1,
        cli(&db, &["trend", "research", "--fail-on-slow", "--json"]),
    );
    exits(
        0,
        cli(
            &noise_store("trend-noise"),
            &["trend", "research", "--fail-on-slow"],
        ),
    );
    let err = gate_error(cli(&db, &["trend", "nope", "--fail-on-slow"]));
    assert!(err.contains("no finished runs of workflow `nope`"), "{err}");
}

#[test]
fn gate_errors_exit_2() {
    let db = slow_store("errors");
    let err = gate_error(cli(&db, &["check", "ffff"]));
    assert!(err.contains("ffff"), "{err}");
    let err = gate_error(cli(&db, &["check", "--baseline", "3"]));
    assert_eq!(
        err,
        "error: --baseline 3 is below --min-runs 5: no figure could ever be judged"
    );
    let err = gate_error(cli(Path::new("/nonexistent/runs.sqlite3"), &["check"]));
    assert!(err.contains("/nonexistent/runs.sqlite3"), "{err}");
    let empty = store_with("empty", &[]);
    assert!(gate_error(cli(&empty, &["check"])).contains("no runs in"));
    for bad in [
        &["check", "--max-cost-usd", "-1"][..],
        &["check", "--format", "html"],
        &["check", "--baseline", "0"],
    ] {
        let out = cli(&db, bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    let help = exits(0, cli(&db, &["check", "--help"]));
    fits_80(&help);
    assert!(help.contains("value > median + max(K x 1.4826 x MAD, P% of median, floor)"));
}
