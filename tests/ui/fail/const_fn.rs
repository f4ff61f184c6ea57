use agent_profiler::profile_node;

#[profile_node("square")]
const fn square(x: u32) -> u32 {
    x * x
}

const NINE: u32 = square(3);

fn main() {
    let _ = NINE;
}
