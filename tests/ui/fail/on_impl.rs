use agent_profiler::profile_node;

struct Retriever;

#[profile_node("retriever")]
impl Retriever {
    fn retrieve(&self) -> usize {
        1
    }
}

fn main() {
    let _ = Retriever.retrieve();
}
