use agent_profiler::profile_node;

#[profile_node("retrieve", crate =)]
fn retrieve() {}

fn main() {
    retrieve();
}
