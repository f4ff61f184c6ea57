// A body without a tail expression is reported as without the macro.
use agent_profiler::profile_node;

#[profile_node("count")]
fn count(items: &[u8]) -> usize {
    items.len();
}

fn main() {
    let _ = count(&[1]);
}
