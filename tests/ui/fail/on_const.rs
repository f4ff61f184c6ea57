use agent_profiler::profile_node;

#[profile_node("limit")]
const LIMIT: usize = 10;

fn main() {
    let _ = LIMIT;
}
