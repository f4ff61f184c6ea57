//! With the `noop` feature, `#[profile_node]` compiles to the function unchanged.
//! Run by `scripts/test` as `cargo test --features noop --test noop`.
#![cfg(feature = "noop")]

use agent_profiler::{BottleneckAnalyzer, ProfilerScope, profile_node};

#[profile_node("compiled_out")]
fn compiled_out(x: u32) -> Result<u32, String> {
    if x == 0 {
        return Err("zero".into());
    }
    Ok(x * 2)
}

#[profile_node("compiled_out_async")]
async fn compiled_out_async() -> u8 {
    3
}

#[tokio::test]
async fn noop_feature_records_nothing_and_keeps_behaviour() {
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    assert_eq!(compiled_out(2), Ok(4));
    assert!(compiled_out(0).is_err());
    assert_eq!(compiled_out_async().await, 3);
    assert!(analyzer.get_timings().is_empty());
}
