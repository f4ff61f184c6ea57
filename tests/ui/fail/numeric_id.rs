use agent_profiler::profile_node;

#[profile_node(42)]
fn retrieve() {}

fn main() {
    retrieve();
}
