use agent_profiler::profile_node;

#[profile_node("fetch docs")]
fn retrieve() {}

fn main() {
    retrieve();
}
