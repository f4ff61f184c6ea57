//! The main example's exit codes and its run store errors (`examples/agent_workflow.rs`,
//! included as a module): a failed workflow exits 1 after its report; an invalid workflow
//! file exits 2; a run store that cannot be opened is one warning naming the path and the
//! cause, and the run goes on (its report printed, "stored run" not claimed); a store that
//! opens but refuses the write is not claimed either.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/agent_workflow.rs"]
mod agent_workflow;

mod support {
    pub mod scratch;
}

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_profiler::llm::{
    BoxFuture, LlmClient, LlmError, LlmRequest, LlmResponse, SimulatedClient,
};

const WORKFLOW: &str = r#"{"name": "exit_codes", "steps": [
  {"id": "plan", "model": "gpt-4o-mini", "prompt": "Plan {topic}", "output_key": "plan", "max_tokens": 5},
  {"id": "write", "model": "gpt-4o-mini", "prompt": "Write {plan}", "output_key": "report", "max_tokens": 5}
]}"#;

fn temp_dir(test: &str) -> PathBuf {
    support::scratch::temp_dir(&format!("agent-profiler-example-{test}"))
}

struct Refusing;

impl LlmClient for Refusing {
    fn complete<'a>(&'a self, _: &'a LlmRequest) -> BoxFuture<'a, Result<LlmResponse, LlmError>> {
        Box::pin(async {
            Err(LlmError::Other {
                message: "no answer today".into(),
            })
        })
    }
    fn describe(&self) -> String {
        "refusing".into()
    }
}

/// What `main_with` returned and printed: (exit code, stdout, stderr).
fn example(
    dir: &Path,
    config: &str,
    store: &Path,
    client: Arc<dyn LlmClient>,
) -> (u8, String, String) {
    let path = dir.join("workflow.json");
    std::fs::write(&path, config).unwrap();
    let store = store.to_str().unwrap().to_owned();
    let env = move |name: &str| (name == "AGENT_PROFILER_DB").then(|| store.clone());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = [path.to_str().unwrap().to_owned(), "exits".to_owned()];
    let code = agent_workflow::main_with(&args, Some(client), &env, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn one_error_line(err: &str) {
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        !err.contains("Sqlite {") && !err.contains("SqliteFailure"),
        "{err}"
    );
}

#[test]
fn a_completed_run_exits_0_and_is_stored() {
    let dir = temp_dir("completed");
    let db = dir.join("runs.sqlite3");
    let (code, out, err) = example(&dir, WORKFLOW, &db, Arc::new(SimulatedClient::new()));
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(
        out.contains(&format!(" in {}\n", db.display())) && out.contains("\nstored run "),
        "{out}"
    );
    assert!(
        out.contains("per node over the last 1 runs of `exit_codes`"),
        "{out}"
    );
}

#[test]
fn a_failed_run_exits_1_after_its_report() {
    let dir = temp_dir("failed");
    let db = dir.join("runs.sqlite3");
    let (code, out, err) = example(&dir, WORKFLOW, &db, Arc::new(Refusing));
    assert_eq!(code, 1, "{out}{err}");
    one_error_line(&err);
    assert!(
        err.contains("failed") && err.contains("no answer today"),
        "{err}"
    );
    // The failed run is stored all the same.
    assert!(out.contains("\nstored run "), "{out}");
}

#[test]
fn an_invalid_workflow_file_exits_2() {
    let dir = temp_dir("invalid");
    let db = dir.join("runs.sqlite3");
    let (code, out, err) = example(&dir, "{\"name\": 1}", &db, Arc::new(Refusing));
    assert_eq!((code, out.as_str()), (2, ""));
    one_error_line(&err);
    assert!(err.contains("invalid workflow config"), "{err}");
    assert!(!db.exists());
}

#[test]
fn a_store_that_cannot_be_opened_is_one_warning_and_the_run_goes_on() {
    let dir = temp_dir("bad_store");
    let not_sqlite = dir.join("notes.txt");
    std::fs::write(
        &not_sqlite,
        "these are not runs, and this is no database at all",
    )
    .unwrap();
    // A real store cut short.
    let truncated = dir.join("truncated.sqlite3");
    let (code, ..) = example(&dir, WORKFLOW, &truncated, Arc::new(SimulatedClient::new()));
    assert_eq!(code, 0);
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    for store in [dir.clone(), not_sqlite.clone(), truncated.clone()] {
        let before = std::fs::read(&store).ok();
        let (code, out, err) = example(&dir, WORKFLOW, &store, Arc::new(SimulatedClient::new()));
        assert_eq!((code, err.as_str()), (0, ""), "{store:?}: {out}");
        let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning:")).collect();
        assert_eq!(warnings.len(), 1, "{store:?}: {out}");
        let warning = warnings[0];
        assert!(
            warning.starts_with(&format!("warning: run store {}: ", store.display())),
            "{warning}"
        );
        assert!(warning.ends_with("; the run goes on without the run store"));
        assert!(!out.contains("stored run"), "{out}");
        assert!(out.contains(" not stored"), "{out}");
        // Nothing written over.
        assert_eq!(std::fs::read(&store).ok(), before, "{store:?}");
    }
}

#[test]
fn a_store_that_refuses_the_write_is_not_claimed() {
    let dir = temp_dir("refusing_store");
    let db = dir.join("runs.sqlite3");
    let (code, ..) = example(&dir, WORKFLOW, &db, Arc::new(SimulatedClient::new()));
    assert_eq!(code, 0);
    // The store opens, but every new run is refused (as a read-only file is for a user
    // that is not root; this test may run as root, who may write any file).
    let status = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(
            "CREATE TRIGGER refuse BEFORE INSERT ON workflow_runs \
             BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END;",
        )
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!("sqlite3 is needed to plant the trigger: {other:?}"),
    }
    let (code, out, err) = example(&dir, WORKFLOW, &db, Arc::new(SimulatedClient::new()));
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    // (The executor's own warning, "run not stored: ...", goes to its console.)
    assert!(!out.contains("stored run"), "{out}");
    assert!(out.contains(" not stored (see the warning above)"), "{out}");
}
