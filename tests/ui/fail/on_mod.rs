use agent_profiler::profile_node;

#[profile_node("nodes")]
mod nodes {
    pub fn retrieve() {}
}

fn main() {
    nodes::retrieve();
}
