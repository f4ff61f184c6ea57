#![deny(warnings)]
//! Free functions of every signature shape.

use agent_profiler::profile_node;
use std::fmt::Display;
use std::io;

#[profile_node("unit")]
fn unit() {}

#[profile_node("value")]
fn value(x: u32) -> u32 {
    x + 1
}

#[profile_node("generic")]
fn generic<T, U: ?Sized>(t: T, u: &U) -> String
where
    T: Display,
    U: Display,
{
    format!("{t}{u}")
}

#[profile_node("lifetimes")]
fn lifetimes<'a, 'b: 'a>(x: &'a mut String, _y: &'b str) -> &'a str {
    x.push('!');
    x.as_str()
}

#[profile_node("unsafe_fn")]
unsafe fn unsafe_fn(p: *const u8) -> u8 {
    unsafe { *p }
}

#[profile_node("extern_c")]
extern "C" fn extern_c(x: i32) -> i32 {
    x * 2
}

#[profile_node("never")]
fn never() -> ! {
    panic!("never returns")
}

#[profile_node("cfg_param")]
fn cfg_param(#[cfg(any())] skipped: u8, kept: u8) -> u8 {
    kept
}

#[profile_node("patterns")]
fn patterns((a, b): (u8, u8), Wrapper(c): Wrapper, _: u8) -> u8 {
    a + b + c
}

struct Wrapper(u8);

#[profile_node("impl_arg")]
fn impl_arg(x: impl Display) -> String {
    x.to_string()
}

#[profile_node("impl_return")]
fn impl_return(n: u8) -> impl Iterator<Item = u8> {
    0..n
}

#[profile_node("impl_in_result")]
fn impl_in_result() -> Result<impl Display, String> {
    Ok(1)
}

#[profile_node("question_mark")]
fn question_mark(s: &str) -> Result<u32, std::num::ParseIntError> {
    let n: u32 = s.parse()?;
    Ok(n)
}

#[profile_node("early_return")]
fn early_return(x: i32) -> Box<dyn Display> {
    if x < 0 {
        return Box::new("negative");
    }
    Box::new(x)
}

#[profile_node("io_result")]
fn io_result() -> io::Result<()> {
    Err(io::Error::other("failed"))
}

#[profile_node("diverging_body")]
fn diverging_body() -> u32 {
    todo!()
}

fn main() {
    // The panics below are expected; keep the test output quiet.
    std::panic::set_hook(Box::new(|_| {}));
    unit();
    assert_eq!(value(1), 2);
    assert_eq!(generic(1, "a"), "1a");
    let mut s = String::new();
    assert_eq!(lifetimes(&mut s, "x"), "!");
    assert_eq!(unsafe { unsafe_fn(&3) }, 3);
    assert_eq!(extern_c(2), 4);
    assert!(std::panic::catch_unwind(|| never()).is_err());
    assert_eq!(cfg_param(1), 1);
    assert_eq!(patterns((1, 2), Wrapper(3), 0), 6);
    assert_eq!(impl_arg(1), "1");
    assert_eq!(impl_return(3).count(), 3);
    assert_eq!(impl_in_result().unwrap().to_string(), "1");
    assert!(question_mark("x").is_err());
    assert_eq!(early_return(-1).to_string(), "negative");
    assert!(io_result().is_err());
    assert!(std::panic::catch_unwind(diverging_body).is_err());
}
