#![deny(warnings)]
//! Bodies written on one line, as a user may paste them: the expansion must not make them
//! warn (`unused_braces` once fired on the user's braces nested in the generated block).
//! `rustfmt::skip` keeps them on one line. `cargo clippy` sees the same shapes with the
//! pedantic group in `tests/macro_shapes.rs` (module `one_line`).

use agent_profiler::profile_node;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[rustfmt::skip]
mod shapes {
    use super::*;

    #[profile_node("unit")] pub fn unit(out: &mut u32) { *out += 1 }
    #[profile_node("unit_call")] pub fn unit_call() { std::hint::black_box(()) }
    #[profile_node("value")] pub fn value(x: u32) -> u32 { x + 1 }
    #[profile_node("no_params")] pub fn no_params() -> u32 { 7 }
    #[profile_node("result")] pub fn result(s: &str) -> Result<u32, std::num::ParseIntError> { s.parse() }
    #[profile_node("io_result")] pub fn io_result(fail: bool) -> io::Result<u8> { if fail { Err(io::Error::other("x")) } else { Ok(1) } }
    #[profile_node("impl_trait")] pub fn impl_trait(n: u8) -> impl Iterator<Item = u8> { 0..n }
    #[profile_node("never")] pub fn never() -> ! { panic!("never") }
    #[profile_node("track_caller")] #[track_caller] pub fn track_caller() -> u32 { Location::caller().line() }
    #[profile_node("track_caller_unit")] #[track_caller] pub fn track_caller_unit(out: &mut u32) { *out = Location::caller().line() }
    #[profile_node("track_caller_result")] #[track_caller] pub fn track_caller_result(fail: bool) -> Result<u32, String> { if fail { Err("x".into()) } else { Ok(Location::caller().line()) } }
    #[profile_node("async_unit")] pub async fn async_unit(out: &mut u32) { *out += 1 }
    #[profile_node("async_value")] pub async fn async_value(x: u32) -> u32 { x + 1 }
    #[profile_node("retrieve")] pub async fn retrieve(query: &str) -> Vec<String> { vec![query.to_owned()] }
    #[profile_node("async_result")] pub async fn async_result(s: &str) -> Result<u32, std::num::ParseIntError> { s.parse() }
    #[profile_node("async_impl_trait")] pub async fn async_impl_trait(n: u8) -> impl Iterator<Item = u8> { 0..n }
    #[profile_node("async_tail")] pub fn async_tail(x: u32) -> impl Future<Output = u32> + Send { async move { x + 1 } }
    #[profile_node("boxed_tail")] pub fn boxed_tail(x: u32) -> Pin<Box<dyn Future<Output = Result<u32, String>> + Send>> { Box::pin(async move { Ok(x) }) }

    pub struct S(pub u32);

    impl S {
        #[profile_node("method")] pub fn get(&self) -> u32 { self.0 }
        #[profile_node("method_mut")] pub fn bump(&mut self) { self.0 += 1 }
        #[profile_node("method_result")] pub fn check(&self) -> Result<u32, String> { if self.0 > 0 { Ok(self.0) } else { Err("zero".into()) } }
        #[profile_node("async_method")] pub async fn get_async(&self) -> u32 { self.0 }
        #[profile_node("method_track_caller")] #[track_caller] pub fn here(&self) -> u32 { Location::caller().line() + self.0 - self.0 }
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

fn main() {
    use shapes::*;
    let mut n = 0;
    unit(&mut n);
    unit_call();
    assert_eq!(n, 1);
    assert_eq!(value(1), 2);
    assert_eq!(no_params(), 7);
    assert_eq!(result("3"), Ok(3));
    assert!(result("x").is_err());
    assert_eq!(io_result(false).unwrap(), 1);
    assert!(io_result(true).is_err());
    assert_eq!(impl_trait(3).count(), 3);
    assert!(std::panic::catch_unwind(|| never()).is_err());
    assert_eq!(track_caller(), line!());
    let mut line = 0;
    track_caller_unit(&mut line);
    assert_eq!(line, line!() - 1);
    assert_eq!(track_caller_result(false), Ok(line!()));
    assert!(track_caller_result(true).is_err());
    block_on(assert_send(async_unit(&mut n)));
    assert_eq!(n, 2);
    assert_eq!(block_on(assert_send(async_value(1))), 2);
    assert_eq!(block_on(assert_send(retrieve("q"))), vec!["q".to_owned()]);
    assert_eq!(block_on(async_result("4")), Ok(4));
    assert_eq!(block_on(async_impl_trait(2)).count(), 2);
    assert_eq!(block_on(assert_send(async_tail(1))), 2);
    assert_eq!(block_on(boxed_tail(5)), Ok(5));
    let mut s = S(1);
    s.bump();
    assert_eq!(s.get(), 2);
    assert_eq!(s.check(), Ok(2));
    assert_eq!(block_on(assert_send(s.get_async())), 2);
    assert_eq!(s.here(), line!());
}
