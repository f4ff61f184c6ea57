use agent_profiler::profile_node;

trait Retrieve {
    #[profile_node("retrieve")]
    fn retrieve(&self) -> Vec<String>;
}

struct Store;

impl Retrieve for Store {
    fn retrieve(&self) -> Vec<String> {
        Vec::new()
    }
}

fn main() {
    let _ = Store.retrieve();
}
