#![deny(warnings)]
//! `crate = path`: the runtime reached through a path other than `::agent_profiler`.

mod profiler {
    pub use agent_profiler::*;
}

#[agent_profiler::profile_node("local_reexport", crate = crate::profiler)]
fn local_reexport() -> u8 {
    1
}

#[agent_profiler::profile_node("absolute", crate = ::agent_profiler)]
async fn absolute() -> u8 {
    2
}

fn main() {
    let analyzer = profiler::BottleneckAnalyzer::new();
    let _scope = profiler::ProfilerScope::new(&analyzer);
    assert_eq!(local_reexport(), 1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(absolute()), 2);
    assert_eq!(analyzer.get_node("local_reexport").unwrap().call_count, 1);
}
