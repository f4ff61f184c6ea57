//! Two profiled nodes, one calling the other twice, with known sleeps: for the tests of self
//! time under nesting. `outer` takes at least 25 ms in all, 5 ms of it its own; `inner` at
//! least 10 ms a call.

use std::time::Duration;

use agent_profiler::profile_node;

/// Sleeps 5 ms, then calls [`inner`] twice.
#[profile_node("outer")]
pub fn outer() {
    std::thread::sleep(Duration::from_millis(5));
    inner();
    inner();
}

/// Sleeps 10 ms.
#[profile_node("inner")]
pub fn inner() {
    std::thread::sleep(Duration::from_millis(10));
}
