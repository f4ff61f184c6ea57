//! Output paths of `report --html FILE` and `trace --out FILE`: one set of rules for both
//! commands. A regular file (or no file) is written atomically; a directory, a FIFO, a
//! device, a symbolic link and the run store itself (by any path: a hard link, another
//! spelling) are refused with one line and exit code 1, and left untouched.

use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agent_profiler_executor::store::{RunStore, WorkflowRunRecord, WorkflowStatus};
use agent_profiler_runtime::BottleneckAnalyzer;
use serde_json::json;

mod support;

use support::{BIN, run_tool, scratch};

const RUN: &str = "0000000a-0000-4000-8000-00000000000a";

/// A store in a fresh dir holding one finished run with a trace.
fn store(test: &str) -> (PathBuf, PathBuf) {
    let dir = scratch::temp_dir(&format!("agent-profiler-output-{test}"));
    let db = dir.join("runs.sqlite3");
    let store = RunStore::open(&db).unwrap();
    let analyzer = BottleneckAnalyzer::new();
    analyzer.enable_trace(8);
    analyzer.record_node("fetch", 20.0).unwrap();
    analyzer.record_node("analyze", 80.0).unwrap();
    let mut run = WorkflowRunRecord::started("research", json!({}), json!({}));
    run.id = RUN.to_owned();
    run.status = WorkflowStatus::Completed;
    run.completed_at = Some(run.started_at + 0.1);
    run.duration_ms = Some(100.0);
    run.bottleneck_info = Some(analyzer.get_summary());
    store.save_run(&run).unwrap();
    store.save_trace(RUN, &analyzer.trace().unwrap()).unwrap();
    (dir, db)
}

/// Runs the binary with `--store db` (killed after 20 s: a FIFO must never hang it).
fn cli(db: &Path, args: &[&str]) -> Output {
    run_tool(db, args, Duration::from_secs(20)).0
}

/// Exit code 1, nothing on stdout, one line `error: ...`; returns it.
fn error(out: Output) -> String {
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err.trim_end().to_owned()
}

fn ok(out: Output) -> String {
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{err}");
    assert_eq!(err, "");
    String::from_utf8(out.stdout).unwrap()
}

const COMMANDS: [(&str, &str); 2] = [("report", "--html"), ("trace", "--out")];

/// The names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn regular_files_are_written_and_replaced_atomically() {
    let (dir, db) = store("regular");
    for (command, flag) in COMMANDS {
        let out = dir.join(format!("{command}.out"));
        ok(cli(&db, &[command, RUN, flag, out.to_str().unwrap()]));
        let first = std::fs::read(&out).unwrap();
        assert!(first.len() > 100);
        // An existing file is replaced (a new inode: renamed over, never truncated in place).
        std::fs::write(&out, "old").unwrap();
        let inode = std::fs::metadata(&out).unwrap().ino();
        ok(cli(&db, &[command, RUN, flag, out.to_str().unwrap()]));
        assert_eq!(std::fs::read(&out).unwrap(), first);
        assert_ne!(std::fs::metadata(&out).unwrap().ino(), inode);
        // A relative path in the current directory.
        let out = Command::new(BIN)
            .current_dir(&dir)
            .args(["--store", "runs.sqlite3", command, RUN, flag, "here.out"])
            .output()
            .unwrap();
        ok(out);
        assert_eq!(std::fs::read(dir.join("here.out")).unwrap(), first);
        std::fs::remove_file(dir.join("here.out")).unwrap();
    }
    // No temp file left behind.
    assert_eq!(
        listing(&dir),
        ["report.out", "runs.sqlite3", "trace.out"],
        "{dir:?}"
    );
}

#[test]
fn the_store_is_never_written_over() {
    let (dir, db) = store("store");
    let before = std::fs::read(&db).unwrap();
    let hard = dir.join("hard-link.sqlite3");
    std::fs::hard_link(&db, &hard).unwrap();
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let spelled = sub.join("../runs.sqlite3");
    for (command, flag) in COMMANDS {
        for target in [&db, &hard, &spelled] {
            let err = error(cli(&db, &[command, RUN, flag, target.to_str().unwrap()]));
            assert_eq!(
                err,
                format!(
                    "error: cannot write {}: it is the run store ({}); name another file",
                    target.display(),
                    db.display()
                )
            );
        }
        // The store named through a hard link, the output through the store's own path.
        let err = error(cli(&hard, &[command, RUN, flag, db.to_str().unwrap()]));
        assert!(err.contains("it is the run store"), "{err}");
    }
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert_eq!(listing(&dir), ["hard-link.sqlite3", "runs.sqlite3", "sub"]);
}

#[test]
fn symbolic_links_are_refused_by_both_commands() {
    let (dir, db) = store("symlink");
    let target = dir.join("target.txt");
    std::fs::write(&target, "mine").unwrap();
    let link = dir.join("link.out");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let dangling = dir.join("dangling.out");
    std::os::unix::fs::symlink(dir.join("nowhere"), &dangling).unwrap();
    let to_store = dir.join("store-link.out");
    std::os::unix::fs::symlink(&db, &to_store).unwrap();
    for (command, flag) in COMMANDS {
        for (path, to) in [
            (&link, &target),
            (&dangling, &dir.join("nowhere")),
            (&to_store, &db),
        ] {
            let err = error(cli(&db, &[command, RUN, flag, path.to_str().unwrap()]));
            assert_eq!(
                err,
                format!(
                    "error: cannot write {}: it is a symbolic link (to {}); output files are \
                     not written through links: name the file itself",
                    path.display(),
                    to.display()
                )
            );
            assert!(
                std::fs::symlink_metadata(path)
                    .unwrap()
                    .file_type()
                    .is_symlink()
            );
        }
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "mine");
    assert!(!dir.join("nowhere").exists());
    assert_eq!(
        listing(&dir),
        [
            "dangling.out",
            "link.out",
            "runs.sqlite3",
            "store-link.out",
            "target.txt"
        ]
    );
}

#[test]
fn directories_fifos_and_devices_are_refused_untouched() {
    let (dir, db) = store("special");
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.clone(), "a directory"),
        (fifo.clone(), "a FIFO"),
        (PathBuf::from("/dev/full"), "a character device"),
        (PathBuf::from("/dev/null"), "a character device"),
    ];
    for (command, flag) in COMMANDS {
        for (path, kind) in &cases {
            let err = error(cli(&db, &[command, RUN, flag, path.to_str().unwrap()]));
            assert_eq!(
                err,
                format!(
                    "error: cannot write {}: it is {kind}, not a regular file",
                    path.display()
                )
            );
        }
    }
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    for device in ["/dev/full", "/dev/null"] {
        let meta = std::fs::symlink_metadata(device).unwrap();
        assert!(meta.file_type().is_char_device(), "{device} was replaced");
    }
    assert_eq!(listing(&dir), ["fifo", "runs.sqlite3"]);
}
