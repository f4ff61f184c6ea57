//! Names with control characters (a newline, terminal escape codes), as stores written by
//! older versions may hold: every command prints them escaped, never raw.

use std::process::Command;

#[allow(dead_code)] // one of its directories
#[path = "../../tests/support/scratch.rs"]
mod scratch;

use agent_profiler_executor::store::{RunStore, WorkflowRunRecord, WorkflowStatus};
use agent_profiler_runtime::BottleneckAnalyzer;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_agent-profiler");
const EVIL: &str = "evil\n\u{1b}[2J\u{1b}]0;pwned\u{7}";
const SHOWN: &str = "evil\\n\\u{1b}[2J\\u{1b}]0;pwned\\u{7}";
const RUN: &str = "0000000b-0000-4000-8000-00000000000b";

#[test]
fn control_characters_in_stored_names_are_escaped() {
    let dir = scratch::temp_dir("agent-profiler-names");
    let db = dir.join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let analyzer = BottleneckAnalyzer::new();
    analyzer.record_node("fetch", 20.0).unwrap();
    let mut run = WorkflowRunRecord::started(EVIL, json!({}), json!({}));
    run.id = RUN.to_owned();
    run.status = WorkflowStatus::Completed;
    run.duration_ms = Some(21.0);
    run.bottleneck_info = Some(analyzer.get_summary());
    store.save_run(&run).unwrap();
    drop(store);

    for args in [
        &["runs"][..],
        &["show", RUN],
        &["compare", RUN, RUN],
        &["trend", EVIL],
        &["runs", "-w", "nothing"],
        &["trend", "nothing"],
    ] {
        let out = Command::new(BIN)
            .arg("--store")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?}: {text:?}"
        );
        assert!(!text.contains("evil\n"), "{args:?}: {text:?}");
        assert!(text.contains("evil\\n"), "{args:?}: {text:?}");
    }
    let out = Command::new(BIN)
        .arg("--store")
        .arg(&db)
        .args(["show", RUN])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("workflow `{SHOWN}` completed")),
        "{text}"
    );
}
