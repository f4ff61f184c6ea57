use agent_profiler::profile_node;

#[profile_node("retrieve", "fetch")]
fn retrieve() {}

fn main() {
    retrieve();
}
