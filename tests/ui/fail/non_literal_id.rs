use agent_profiler::profile_node;

const NAME: &str = "retrieve";

#[profile_node(NAME)]
fn retrieve() {}

fn main() {
    let _ = NAME;
    retrieve();
}
