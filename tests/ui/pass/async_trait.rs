#![deny(warnings)]
//! Methods rewritten by `#[async_trait]` (`Box::pin(async move { .. })` bodies).

use agent_profiler::profile_node;
use async_trait::async_trait;

#[async_trait]
trait Fetch {
    async fn fetch(&self, key: &str) -> Result<String, String>;

    #[profile_node("fetch_all")]
    async fn fetch_all(&self, keys: &[&str]) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for key in keys {
            out.push(self.fetch(key).await?);
        }
        Ok(out)
    }
}

struct Store;

#[async_trait]
impl Fetch for Store {
    #[profile_node("fetch")]
    async fn fetch(&self, key: &str) -> Result<String, String> {
        if key.is_empty() {
            return Err("empty key".into());
        }
        Ok(key.to_uppercase())
    }
}

#[async_trait]
trait Notify {
    async fn notify(&mut self);
}

#[async_trait]
impl Notify for Store {
    #[profile_node("notify")]
    async fn notify(&mut self) {}
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut store = Store;
    assert_eq!(store.fetch_all(&["a", "b"]).await.unwrap(), ["A", "B"]);
    assert!(store.fetch("").await.is_err());
    store.notify().await;
}
