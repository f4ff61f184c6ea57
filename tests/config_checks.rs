//! What a workflow config is checked for before anything runs: every field a prompt uses
//! is provided by an earlier step or an input (declared in the file, or given to the run),
//! never by a sibling in the same parallel group or a later node; `max_tokens`, the file's
//! size and names are bounded; names hold no control characters; a byte order mark is
//! skipped. And the report of a run that failed before any node did work names no
//! bottleneck.

mod support {
    pub mod scratch;
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_profiler::executor::{
    Console, MAX_CONFIG_BYTES, MAX_MAX_TOKENS, WorkflowConfig, WorkflowError, WorkflowExecutor,
};
use agent_profiler::llm::{
    BoxFuture, LlmClient, LlmError, LlmRequest, LlmResponse, SimulatedClient,
};
use agent_profiler::store::RunStore;
use serde_json::json;

fn node(id: &str, prompt: &str, key: &str) -> String {
    format!(
        r#"{{"id": "{id}", "model": "gpt-4o-mini", "prompt": "{prompt}", "output_key": "{key}", "max_tokens": 5}}"#
    )
}

/// `text` is refused with this field and this message.
fn assert_error(text: &str, field: &str, message: &str) {
    assert_eq!(error(text), (field.to_owned(), message.to_owned()));
}

/// A workflow of `first`, then `second` (nodes from [`node`]); it must pass the checks.
fn two_steps(first: String, second: String) -> WorkflowConfig {
    let text = format!(r#"{{"name": "w", "steps": [{first}, {second}]}}"#);
    WorkflowConfig::from_json_str(&text).unwrap()
}

fn temp_dir(test: &str) -> std::path::PathBuf {
    support::scratch::temp_dir(&format!("agent-profiler-config-{test}"))
}

/// The error for `text`: (field, message).
fn error(text: &str) -> (String, String) {
    let err = WorkflowConfig::from_json_str(text).unwrap_err();
    (err.field.clone().unwrap_or_default(), err.message.clone())
}

#[test]
fn fields_no_earlier_step_provides_are_errors_before_the_run() {
    // A later node's output.
    let text = format!(
        r#"{{"name": "w", "steps": [{}, {}]}}"#,
        node("first", "Use {later}", "early"),
        node("second", "Plan", "later")
    );
    assert_error(
        &text,
        "steps[0].prompt",
        "node `first` uses `{later}`, the output of `second`, which runs later (steps[1])",
    );
    // A sibling's output in the same group.
    let text = format!(
        r#"{{"name": "w", "steps": [{}, {{"parallel": [{}, {}]}}]}}"#,
        node("plan", "Plan {topic}", "plan"),
        node("web", "Web {plan}", "web"),
        node("papers", "Papers {plan} {web}", "papers")
    );
    let (field, message) = error(&text);
    assert_eq!(field, "steps[1].parallel[1].prompt");
    assert!(
        message.starts_with(
            "node `papers` uses `{web}`, the output of `web` in the same parallel group"
        ),
        "{message}"
    );
    // In a system prompt too.
    let text = format!(
        r#"{{"name": "w", "steps": [{{"id": "a", "model": "m", "system": "Be {{later}}", "prompt": "p", "output_key": "x"}}, {}]}}"#,
        node("b", "p", "later")
    );
    assert_eq!(error(&text).0, "steps[0].system");

    // Declared inputs: a field that is neither an input nor an earlier output.
    let text = format!(
        r#"{{"name": "w", "inputs": ["topic"], "steps": [{}, {}]}}"#,
        node("plan", "Plan {topic}", "plan"),
        node("write", "Write {plan} {nonexistent}", "report")
    );
    assert_error(
        &text,
        "steps[1].prompt",
        "node `write` uses `{nonexistent}`, which no input and no earlier step provides \
         (available: `plan`, `topic`)",
    );
    // The example's workflow declares its input and passes.
    WorkflowConfig::from_path(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/workflows/research.json"
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_not_declared_are_checked_against_the_run_s_inputs_before_it_starts() {
    // Undeclared inputs may be anything: the file passes.
    let config = two_steps(
        node("plan", "Plan {topic}", "plan"),
        node("write", "Write {plan} {nonexistent}", "report"),
    );
    let store = RunStore::in_memory().unwrap();
    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .console(Console::Silent)
        .store(store.clone());
    let err = executor
        .run_config(&config, json!({"topic": "t"}))
        .await
        .unwrap_err();
    let WorkflowError::Config(err) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(err.field.as_deref(), Some("steps[1].prompt"));
    assert_eq!(
        err.message,
        "node `write` uses `{nonexistent}`, which no input and no earlier step provides \
         (available: `plan`, `topic`)"
    );
    // Nothing ran, nothing stored.
    assert!(store.list_runs(None, 10).unwrap().is_empty());
    // Given, it runs.
    executor
        .run_config(&config, json!({"topic": "t", "nonexistent": "now here"}))
        .await
        .unwrap();
}

#[test]
fn max_tokens_is_bounded() {
    for (value, ok) in [
        (1_u64, true),
        (u64::from(MAX_MAX_TOKENS), true),
        (u64::from(MAX_MAX_TOKENS) + 1, false),
        (4_294_967_295, false),
        (0, false),
    ] {
        let text = format!(
            r#"{{"name": "w", "steps": [{{"id": "a", "model": "m", "prompt": "p", "output_key": "o", "max_tokens": {value}}}]}}"#
        );
        match WorkflowConfig::from_json_str(&text) {
            Ok(_) => assert!(ok, "{value} accepted"),
            Err(e) => {
                assert!(!ok, "{value}: {e}");
                assert_eq!(e.field.as_deref(), Some("steps[0].max_tokens"));
                assert_eq!(
                    e.message,
                    format!("{value} is out of range: must be 1 to 1000000")
                );
            }
        }
    }
}

#[test]
fn a_config_file_over_1_mib_is_refused_before_it_is_read() {
    let dir = temp_dir("size");
    let path = dir.join("huge.json");
    let padding = " ".repeat(MAX_CONFIG_BYTES as usize);
    let text = format!(
        r#"{{"name": "w", "steps": [{}]}}{padding}"#,
        node("a", "p", "o")
    );
    std::fs::write(&path, &text).unwrap();
    let start = Instant::now();
    let err = WorkflowConfig::from_path(&path).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(err.file.as_deref(), Some(path.as_path()));
    assert_eq!(
        err.message,
        format!(
            "the file is {} bytes; a workflow config holds at most 1048576 bytes (1 MiB)",
            text.len()
        )
    );
    assert!(WorkflowConfig::from_json_str(&text).is_err());
    // Just under the limit is fine.
    let text = &text[..MAX_CONFIG_BYTES as usize];
    std::fs::write(&path, text).unwrap();
    WorkflowConfig::from_path(&path).unwrap();
    // Not a regular file.
    let err = WorkflowConfig::from_path(&dir).unwrap_err();
    assert!(err.message.starts_with("cannot read the file: "), "{err}");
}

#[test]
fn names_are_bounded_and_hold_no_control_characters() {
    let cases = [
        (
            json!({"name": "evil\n\u{1b}[2J", "steps": [{"id": "a", "model": "m", "prompt": "p", "output_key": "o"}]}),
            "name",
            "the workflow name contains the control character '\\n', which is not allowed",
        ),
        (
            json!({"name": "x".repeat(201), "steps": [{"id": "a", "model": "m", "prompt": "p", "output_key": "o"}]}),
            "name",
            "the workflow name is 201 characters long; the limit is 200",
        ),
        (
            json!({"name": "w", "steps": [{"id": "a", "model": "gpt\u{1b}[31m", "prompt": "p", "output_key": "o"}]}),
            "steps[0].model",
            "the model contains the control character '\\u{1b}', which is not allowed",
        ),
        (
            json!({"name": "w", "steps": [{"id": "a", "model": "m", "prompt": "p", "output_key": "o\tk"}]}),
            "steps[0].output_key",
            "the output key contains the control character '\\t', which is not allowed",
        ),
        (
            json!({"name": "w", "inputs": ["topic", "topic"], "steps": [{"id": "a", "model": "m", "prompt": "p", "output_key": "o"}]}),
            "inputs[1]",
            "input `topic` is declared twice",
        ),
    ];
    for (config, field, message) in cases {
        let (f, m) = error(&config.to_string());
        assert_eq!((f.as_str(), m.as_str()), (field, message));
    }
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = temp_dir("bom");
    let path = dir.join("bom.json");
    let text = format!(
        "\u{feff}{{\"name\": \"w\", \"steps\": [{}]}}",
        node("a", "p", "o")
    );
    std::fs::write(&path, &text).unwrap();
    assert_eq!(WorkflowConfig::from_path(&path).unwrap().name, "w");
    assert_eq!(WorkflowConfig::from_json_str(&text).unwrap().name, "w");
}

struct Refusing {
    after: Duration,
}

impl LlmClient for Refusing {
    fn complete<'a>(&'a self, r: &'a LlmRequest) -> BoxFuture<'a, Result<LlmResponse, LlmError>> {
        Box::pin(async move {
            if r.prompt.starts_with("slow") {
                tokio::time::sleep(self.after).await;
            }
            if r.prompt.contains("ok") {
                return SimulatedClient::new()
                    .base_latency(Duration::from_millis(1))
                    .per_token_latency(Duration::ZERO)
                    .complete(r)
                    .await;
            }
            Err(LlmError::Other {
                message: "refused".into(),
            })
        })
    }
    fn describe(&self) -> String {
        "refusing".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_failed_before_any_work_names_no_bottleneck() {
    let config = two_steps(
        node("first", "fails at once", "a"),
        node("second", "never runs {a}", "b"),
    );
    let executor = WorkflowExecutor::new(Arc::new(Refusing {
        after: Duration::ZERO,
    }))
    .console(Console::Silent);
    let err = executor.run_config(&config, json!({})).await.unwrap_err();
    let run = err.run().unwrap();
    assert!(
        run.report.starts_with("Slowest node: first ("),
        "{}",
        run.report
    );
    let first = run.report.lines().next().unwrap();
    assert!(first.ends_with("ms avg), every call failed"), "{first}");
    assert!(
        run.report
            .contains("of total time):\n  (none: no node completed a call)\n"),
        "{}",
        run.report
    );
    assert!(!run.report.contains("  - first:"), "{}", run.report);

    // A node that spent its time failing (a timeout, say) next to one that worked: the
    // bottleneck is named, and marked.
    let text = format!(
        r#"{{"name": "w", "steps": [{{"parallel": [{}, {}]}}]}}"#,
        node("waits", "slow then fails", "a"),
        node("works", "ok", "b")
    );
    let config = WorkflowConfig::from_json_str(&text).unwrap();
    let executor = WorkflowExecutor::new(Arc::new(Refusing {
        after: Duration::from_millis(150),
    }))
    .console(Console::Silent);
    let err = executor.run_config(&config, json!({})).await.unwrap_err();
    let report = &err.run().unwrap().report;
    let line = report
        .lines()
        .find(|l| l.starts_with("  - waits: "))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(line.ends_with("ms total), every call failed"), "{line}");
    assert!(!report.contains("  - works"), "{report}");
}

/// Workflows written in code follow the rule of configured ones: a name with a control
/// character is refused before anything runs, and the error shows it escaped.
#[tokio::test]
async fn a_code_workflow_name_with_control_characters_is_refused() {
    use std::sync::Arc;

    use agent_profiler::executor::{WorkflowError, WorkflowExecutor};
    use agent_profiler::llm::SimulatedClient;

    let executor = WorkflowExecutor::new(Arc::new(SimulatedClient::new()))
        .no_otlp()
        .progress(false);
    let err = executor
        .run_fn(
            "evil\n\u{1b}[2J",
            serde_json::json!({}),
            |_ctx, state| async move { Ok::<_, String>(state) },
        )
        .await
        .unwrap_err();
    let WorkflowError::Name(message) = &err else {
        panic!("expected a name error, got {err}");
    };
    assert!(message.contains(r"evil\n\u{1b}[2J"), "{message}");
    assert!(!err.to_string().contains('\u{1b}'), "{err}");
}
