//! A stand-in for an LLM provider: an [`HttpStub`] speaking OpenAI Chat Completions JSON,
//! with usage, for the executor tests. The model name chooses the behaviour: `fail-500`
//! answers HTTP 500, `garbage` a body that is not JSON, `no-choices` JSON with usage but no
//! answer, `echo-auth` HTTP 401 quoting the Authorization header back (as some proxies do);
//! any other model answers after `max_tokens / 4` ms, with usage computed from the prompt's
//! length and `max_tokens`.

use std::time::Duration;

use serde_json::{Value, json};

use super::http_stub::{HttpStub, Reply, Request};

/// The running provider; it stops when dropped.
pub struct LlmProvider {
    stub: HttpStub,
}

impl LlmProvider {
    pub fn start() -> Self {
        Self {
            stub: HttpStub::start(answer),
        }
    }

    /// `http://127.0.0.1:port/v1`, the base URL an OpenAI client takes.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.stub.url())
    }

    /// The Authorization header of every request, in order (empty where there was none).
    pub fn auth_headers(&self) -> Vec<String> {
        self.stub
            .requests()
            .iter()
            .map(|r| r.header("authorization").unwrap_or_default().to_owned())
            .collect()
    }

    /// The body of every request, in order (`null` where it was not JSON).
    pub fn bodies(&self) -> Vec<Value> {
        self.stub.requests().iter().map(body).collect()
    }
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap_or(Value::Null)
}

fn answer(request: &Request) -> Reply {
    let request_body = body(request);
    let model = request_body["model"].as_str().unwrap_or("");
    let max_tokens = request_body["max_tokens"].as_u64().unwrap_or(100);
    let prompt_chars: u64 = request_body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_str())
        .map(|c| c.len() as u64)
        .sum();
    let usage = json!({
        "prompt_tokens": prompt_chars / 4 + 5,
        "completion_tokens": max_tokens / 2,
        "total_tokens": prompt_chars / 4 + 5 + max_tokens / 2
    });
    match model {
        "fail-500" => Reply::json(500, r#"{"error": {"message": "overloaded"}}"#),
        "garbage" => Reply::json(200, "<html>this is not JSON</html>"),
        "no-choices" => Reply::json(
            200,
            json!({"id": "x", "model": model, "usage": usage}).to_string(),
        ),
        "echo-auth" => {
            let authorization = request.header("authorization").unwrap_or_default();
            let message = format!("invalid key in header: {authorization}");
            Reply::json(401, json!({"error": {"message": message}}).to_string())
        }
        _ => {
            let answer = format!("answer of {model} ({max_tokens} max tokens)");
            let choice = json!({
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop"
            });
            let completion = json!({
                "id": "chatcmpl-loopback",
                "object": "chat.completion",
                "model": model,
                "choices": [choice],
                "usage": usage
            });
            Reply::json(200, completion.to_string()).after(Duration::from_millis(max_tokens / 4))
        }
    }
}
