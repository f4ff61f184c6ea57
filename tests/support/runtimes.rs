//! Tokio runtimes built by hand, for the tests that drop the runtime before they check what
//! was recorded: its worker threads have exited by then, and what they recorded must still
//! be there (a `#[tokio::test]` runtime lives until the test returns).

use tokio::runtime::Runtime;

/// A multi-thread runtime with two workers and timers: spawned tasks may move between
/// threads, as in a real workflow.
pub fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}
