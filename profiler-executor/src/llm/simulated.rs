//! A client that answers without a model: for examples and tests offline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Completion, LlmClient, LlmError, LlmRequest, LlmResponse};

/// Answers every request after a configurable latency, with a Chat Completions body whose
/// `usage` is realistic: about one token per four characters of prompt, and most of
/// `max_tokens` generated. Its text starts with `[simulated <model>]`, so nobody mistakes
/// it for a model's answer.
///
/// Latency: a fixed part plus a part per generated token (like a real endpoint, a node
/// asking for long answers is slow), or a fixed latency per model.
///
/// A request that asks for a stream takes the same total time, and its first text comes
/// after the time to first token: by default the fixed part of the latency (the part a
/// real endpoint spends before it generates), or
/// [`first_token_latency`](Self::first_token_latency) when set; never later than the
/// whole latency. The answer says when ([`LlmResponse::first_chunk`]); its body and usage
/// are those of the same request not streamed.
#[derive(Clone, Debug)]
pub struct SimulatedClient {
    base: Duration,
    per_token: Duration,
    per_model: HashMap<String, Duration>,
    first_token: Option<Duration>,
}

impl Default for SimulatedClient {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedClient {
    /// 40 ms plus 0.5 ms per generated token.
    pub fn new() -> Self {
        Self {
            base: Duration::from_millis(40),
            per_token: Duration::from_micros(500),
            per_model: HashMap::new(),
            first_token: None,
        }
    }

    /// The time to the first text of a streamed answer, for every model (capped at the
    /// request's latency).
    pub fn first_token_latency(mut self, latency: Duration) -> Self {
        self.first_token = Some(latency);
        self
    }

    /// When the first text of a streamed answer to `request` comes, after the call starts.
    pub fn first_token_latency_for(&self, request: &LlmRequest) -> Duration {
        self.first_token
            .unwrap_or(self.base)
            .min(self.latency_for(request))
    }

    /// The fixed part of the latency.
    pub fn base_latency(mut self, latency: Duration) -> Self {
        self.base = latency;
        self
    }

    /// The latency per generated token.
    pub fn per_token_latency(mut self, latency: Duration) -> Self {
        self.per_token = latency;
        self
    }

    /// A fixed latency for every call of `model` (instead of base plus per token).
    pub fn model_latency(mut self, model: impl Into<String>, latency: Duration) -> Self {
        self.per_model.insert(model.into(), latency);
        self
    }

    /// The usage a request gets: (prompt tokens, completion tokens).
    pub fn usage_for(request: &LlmRequest) -> (u64, u64) {
        let chars = request.prompt.chars().count()
            + request.system.as_ref().map_or(0, |s| s.chars().count());
        let prompt = (chars as u64).div_ceil(4) + 8;
        let completion = (u64::from(request.max_tokens) * 4 / 5).max(1);
        (prompt, completion)
    }

    /// The latency a request gets.
    pub fn latency_for(&self, request: &LlmRequest) -> Duration {
        if let Some(l) = self.per_model.get(&request.model) {
            return *l;
        }
        let (_, completion) = Self::usage_for(request);
        self.base + self.per_token * u32::try_from(completion).unwrap_or(u32::MAX)
    }

    async fn call(&self, request: &LlmRequest) -> Result<LlmResponse, LlmError> {
        let latency = self.latency_for(request);
        let first_chunk = if request.stream {
            let first = self.first_token_latency_for(request);
            tokio::time::sleep(first).await;
            let at = Instant::now();
            tokio::time::sleep(latency - first).await;
            Some(at)
        } else {
            tokio::time::sleep(latency).await;
            None
        };
        let (prompt_tokens, completion_tokens) = Self::usage_for(request);
        let excerpt: String = request.prompt.chars().take(60).collect();
        let text = format!(
            "[simulated {}] answer to \"{}{}\" ({} tokens)",
            request.model,
            excerpt,
            if request.prompt.chars().count() > 60 {
                "…"
            } else {
                ""
            },
            completion_tokens
        );
        let raw = json!({
            "id": "chatcmpl-simulated",
            "object": "chat.completion",
            "model": request.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens
            },
            "simulated": true
        });
        Ok(LlmResponse {
            text,
            model: request.model.clone(),
            raw,
            simulated: true,
            first_chunk,
            stream: request.stream,
        })
    }
}

impl LlmClient for SimulatedClient {
    fn complete<'a>(&'a self, request: &'a LlmRequest) -> Completion<'a> {
        Box::pin(self.call(request))
    }

    fn describe(&self) -> String {
        "simulated (no model is called; latency and usage are made up)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: bool) -> LlmRequest {
        LlmRequest {
            model: "m".into(),
            system: None,
            prompt: "p".into(),
            max_tokens: 10,
            temperature: None,
            stream,
        }
    }

    #[tokio::test]
    async fn a_streamed_answer_comes_first_after_the_time_to_first_token() {
        let client = SimulatedClient::new()
            .model_latency("m", Duration::from_millis(60))
            .first_token_latency(Duration::from_millis(20));
        let started = Instant::now();
        let streamed = client.complete(&request(true)).await.unwrap();
        let total = started.elapsed();
        let first = streamed.first_chunk.unwrap() - started;
        assert!(streamed.stream);
        assert!(first >= Duration::from_millis(20), "{first:?}");
        assert!(total >= Duration::from_millis(60), "{total:?}");
        let plain = client.complete(&request(false)).await.unwrap();
        assert_eq!((plain.first_chunk, plain.stream), (None, false));
        assert_eq!(plain.raw["usage"], streamed.raw["usage"]);
        // Never later than the whole latency.
        let late = client.first_token_latency(Duration::from_secs(9));
        assert_eq!(
            late.first_token_latency_for(&request(true)),
            Duration::from_millis(60)
        );
    }
}
