//! The process-wide switch. In its own test binary: it would disturb tests running beside it.

use agent_profiler::{BottleneckAnalyzer, ProfilerScope, is_enabled, profile_node, set_enabled};

#[profile_node("switched")]
fn switched() -> u8 {
    1
}

#[test]
fn set_enabled_false_records_nothing_and_true_resumes() {
    let analyzer = BottleneckAnalyzer::new();
    let _scope = ProfilerScope::new(&analyzer);
    assert!(is_enabled());
    set_enabled(false);
    assert!(!is_enabled());
    assert_eq!(switched(), 1);
    assert!(analyzer.get_timings().is_empty());
    set_enabled(true);
    switched();
    assert_eq!(analyzer.get_node("switched").unwrap().call_count, 1);
}
