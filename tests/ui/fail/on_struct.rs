use agent_profiler::profile_node;

#[profile_node("docs")]
struct Docs {
    count: usize,
}

fn main() {
    let docs = Docs { count: 1 };
    let _ = docs.count;
}
