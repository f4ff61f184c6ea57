use agent_profiler::profile_node;

#[profile_node("retrieve" crate = ::agent_profiler)]
fn retrieve() {}

fn main() {
    retrieve();
}
