//! Tokio runtimes built by hand, for plain `#[test]`s that block on them; among them the
//! tests that drop the runtime before they check what was recorded: its worker threads have
//! exited by then, and what they recorded must still be there (a `#[tokio::test]` runtime
//! lives until the test returns).

use tokio::runtime::Runtime;

/// A multi-thread runtime with two workers and timers: spawned tasks may move between
/// threads, as in a real workflow.
pub fn two_workers() -> Runtime {
    multi_thread(2)
}

/// A multi-thread runtime with `workers` worker threads and timers.
pub fn multi_thread(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .unwrap()
}
