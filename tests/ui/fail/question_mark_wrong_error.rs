use agent_profiler::profile_node;

#[derive(Debug)]
struct MyError;

#[profile_node("parse")]
fn parse(s: &str) -> Result<u32, MyError> {
    let n = s.parse::<u32>()?;
    Ok(n)
}

fn main() {
    let _ = parse("1");
}
