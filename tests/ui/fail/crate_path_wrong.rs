use agent_profiler::profile_node;

mod not_the_profiler {}

#[profile_node("retrieve", crate = not_the_profiler)]
fn retrieve() -> Result<u8, String> {
    Ok(1)
}

fn main() {
    let _ = retrieve();
}
