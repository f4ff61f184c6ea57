//! Instructions per profiled call, for callgrind (`scripts/callgrind`): a loop of N calls of
//! one case, so that the difference between two runs of N and 2N calls, divided by N, is the
//! cost of one call and nothing else (start-up, registration and exit cancel out).
//!
//! ```sh
//! target/release/deps/callgrind-* CASE N    # CASE: sync_installed, async_installed, sync_trace, sync_none, async_none
//! ```
//! Instruction counts repeat exactly for the same binary and input, unlike time on a shared
//! VM, so they tell a change to the call path from noise.

#[path = "cases/mod.rs"]
mod cases;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use agent_profiler::{BottleneckAnalyzer, ProfilerScope};

/// Spans kept in the trace-mode case: more than the calls of a run of 2N at the default N.
const TRACE_CAPACITY: usize = 1 << 21;

/// Polls `fut` once: the cases' futures finish on their first poll.
fn poll_once<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(fut).poll(&mut cx) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("the case's future finishes on its first poll"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_default();
    let calls: u64 = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let analyzer = BottleneckAnalyzer::new();
    let mut sum = 0u64;
    match case.as_str() {
        "sync_installed" => {
            let _scope = ProfilerScope::new(&analyzer);
            for i in 0..calls {
                sum = sum.wrapping_add(cases::profiled(black_box(i)));
            }
        }
        "async_installed" => {
            let _scope = ProfilerScope::new(&analyzer);
            for i in 0..calls {
                sum = sum.wrapping_add(poll_once(cases::profiled_async(black_box(i))));
            }
        }
        "sync_trace" => {
            // One buffer size for both runs (so that filling it in cancels out), large enough
            // that no call of either run is dropped.
            analyzer.enable_trace(TRACE_CAPACITY);
            let _scope = ProfilerScope::new(&analyzer);
            for i in 0..calls {
                sum = sum.wrapping_add(cases::profiled(black_box(i)));
            }
        }
        "async_none" => {
            for i in 0..calls {
                sum = sum.wrapping_add(poll_once(cases::profiled_async_none(black_box(i))));
            }
        }
        "sync_none" => {
            for i in 0..calls {
                sum = sum.wrapping_add(cases::profiled(black_box(i)));
            }
        }
        other => {
            eprintln!(
                "unknown case `{other}`: sync_installed, async_installed, sync_trace, sync_none or async_none"
            );
            std::process::exit(2);
        }
    }
    black_box(sum);
}
