//! Names and directories that no other test, nor an earlier run against the same MLflow
//! server, uses: experiment names, temporary directories. The other crates' tests reach
//! this file with `#[path = ...]` (the CLI's `tests/support`, the executor's store tests).

use std::path::{Path, PathBuf};
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

/// A new, empty directory under the system's temporary directory, named after `prefix`.
pub fn temp_dir(prefix: &str) -> PathBuf {
    dir_in(&std::env::temp_dir(), prefix)
}

/// A new, empty directory under `parent`, named after `prefix`.
pub fn dir_in(parent: &Path, prefix: &str) -> PathBuf {
    let dir = parent.join(unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
