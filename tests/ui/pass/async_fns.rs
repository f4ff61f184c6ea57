#![deny(warnings)]
//! `async fn`: free, methods, in traits and trait impls; `?` and early returns.

use agent_profiler::profile_node;
use std::fmt::Display;

#[profile_node("free")]
async fn free(x: u32) -> u32 {
    x + 1
}

#[profile_node("unit")]
async fn unit() {}

#[profile_node("question_mark")]
async fn question_mark(s: &str) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    let n: u32 = s.parse()?;
    if n == 0 {
        return Err("zero".into());
    }
    Ok(n)
}

#[profile_node("early_return")]
async fn early_return(x: i32) -> Box<dyn Display> {
    if x < 0 {
        return Box::new("negative");
    }
    Box::new(x)
}

#[profile_node("impl_return")]
async fn impl_return() -> impl Display {
    1
}

#[profile_node("borrowing")]
async fn borrowing<'a>(s: &'a str) -> &'a str {
    &s[1..]
}

struct Service {
    name: String,
}

impl Service {
    #[profile_node("method")]
    async fn name_len(&self) -> usize {
        self.name.len()
    }

    #[profile_node("method_mut")]
    async fn rename(&mut self, name: &str) -> &str {
        self.name = name.to_owned();
        &self.name
    }
}

#[allow(async_fn_in_trait)]
pub trait Call {
    async fn call(&self) -> u8;

    #[profile_node("trait_default")]
    async fn call_twice(&self) -> u8 {
        self.call().await * 2
    }
}

impl Call for Service {
    #[profile_node("trait_impl")]
    async fn call(&self) -> u8 {
        1
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_eq!(assert_send(free(1)).await, 2);
    unit().await;
    assert!(question_mark("0").await.is_err());
    assert_eq!(early_return(-1).await.to_string(), "negative");
    assert_eq!(impl_return().await.to_string(), "1");
    assert_eq!(borrowing("ab").await, "b");
    let mut s = Service { name: "svc".into() };
    assert_eq!(assert_send(s.name_len()).await, 3);
    assert_eq!(s.rename("x").await, "x");
    assert_eq!(s.call_twice().await, 2);
}
