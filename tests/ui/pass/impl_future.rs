#![deny(warnings)]
//! Non-async fns whose body ends in an `async` block: the future's run is timed.

use agent_profiler::profile_node;
use std::future::Future;
use std::pin::Pin;

#[profile_node("async_tail")]
fn async_tail(x: u8) -> impl Future<Output = u8> + Send {
    let y = x + 1;
    async move { y * 2 }
}

#[profile_node("async_tail_result")]
fn async_tail_result(s: &str) -> impl Future<Output = Result<u32, std::num::ParseIntError>> + '_ {
    async move {
        let n: u32 = s.parse()?;
        Ok(n)
    }
}

#[profile_node("boxed")]
fn boxed(x: u8) -> Pin<Box<dyn Future<Output = u8> + Send>> {
    Box::pin(async move { x })
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[profile_node("boxed_alias")]
fn boxed_alias(s: &str) -> BoxFuture<'_, usize> {
    Box::pin(async move { s.len() })
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(async_tail(1)), 4);
    assert!(rt.block_on(async_tail_result("x")).is_err());
    assert_eq!(rt.block_on(boxed(3)), 3);
    assert_eq!(rt.block_on(boxed_alias("ab")), 2);
}
