#![deny(warnings)]
//! `#[track_caller]` still reports the caller's location through the profiled fn.

use agent_profiler::profile_node;
use std::panic::Location;

#[profile_node("where_unit")]
#[track_caller]
fn where_unit(out: &mut u32) {
    *out = Location::caller().line();
}

#[profile_node("where_value")]
#[track_caller]
fn where_value() -> u32 {
    Location::caller().line()
}

#[profile_node("where_result")]
#[track_caller]
fn where_result(fail: bool) -> Result<u32, String> {
    if fail {
        return Err("failed".into());
    }
    Ok(Location::caller().line())
}

fn main() {
    let mut line = 0;
    where_unit(&mut line);
    assert_eq!(line, line!() - 1);
    assert_eq!(where_value(), line!());
    assert_eq!(where_result(false), Ok(line!()));
    assert!(where_result(true).is_err());
}
