use agent_profiler::profile_node;

#[profile_node("résumé:v2")]
fn summarize() {}

fn main() {
    summarize();
}
