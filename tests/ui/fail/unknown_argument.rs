use agent_profiler::profile_node;

#[profile_node("retrieve", level = "debug")]
fn retrieve() {}

fn main() {
    retrieve();
}
