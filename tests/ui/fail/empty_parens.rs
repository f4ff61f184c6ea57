use agent_profiler::profile_node;

#[profile_node()]
fn retrieve() {}

fn main() {
    retrieve();
}
