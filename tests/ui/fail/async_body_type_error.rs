// A mistake in an async body is reported at the user's code, as without the macro.
use agent_profiler::profile_node;

#[profile_node("count")]
async fn count(items: &[u8]) -> u32 {
    items.len()
}

fn main() {
    let _ = count(&[1]);
}
