//! Names and directories that no other test, nor an earlier run against the same MLflow
//! server, uses: experiment names, temporary directories (removed once the test process
//! that made them has exited, by the next one). The other crates' tests reach
//! this file with `#[path = ...]` (the CLI's `tests/support`, the executor's store tests).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `prefix`, the process id, the time in nanoseconds and a counter.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A new, empty directory named after `prefix`, in this test process's directory under the
/// system's temporary directory (see [`process_dir`]).
pub fn temp_dir(prefix: &str) -> PathBuf {
    dir_in(process_dir(), prefix)
}

/// Where this test process keeps its temporary directories: `agent-profiler-tests-<pid>`
/// under the system's temporary directory. Tests hand their directories to servers and
/// child processes, so nothing is removed while the process runs; instead the first call
/// removes the directories of earlier test processes that have exited (on Linux, where
/// `/proc` tells), so that runs do not pile up.
pub fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        remove_exited_processes_dirs();
        let dir = std::env::temp_dir().join(format!("{PROCESS_DIR}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}

const PROCESS_DIR: &str = "agent-profiler-tests-";

fn remove_exited_processes_dirs() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PROCESS_DIR));
        if let Some(pid) = pid.filter(|p| p.parse::<u32>().is_ok())
            && !Path::new("/proc").join(pid).exists()
        {
            // Another process may be removing it too: whatever is left is for the next run.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A new, empty directory under `parent`, named after `prefix`.
pub fn dir_in(parent: &Path, prefix: &str) -> PathBuf {
    let dir = parent.join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
