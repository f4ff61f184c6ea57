//! Stand-ins for LLM providers, real HTTP servers on loopback.
//!
//! [`LlmProvider`]: an [`HttpStub`] speaking OpenAI Chat Completions JSON, with usage, for
//! the executor tests. The model name chooses the behaviour: `fail-500` answers HTTP 500,
//! `garbage` a body that is not JSON, `no-choices` JSON with usage but no answer,
//! `echo-auth` HTTP 401 quoting the Authorization header back (as some proxies do); any
//! other model answers after `max_tokens / 4` ms, with usage computed from the prompt's
//! length and `max_tokens`.
//!
//! [`StreamingProvider`]: OpenAI Chat Completions and Anthropic Messages, in one body or as
//! server-sent events (`"stream": true`), with the event sequences and JSON the real APIs
//! send, paced and broken as a [`StreamPlan`] says: the first text after a delay, the rest
//! spread over a total time, the connection cut or an error event after some deltas, every
//! event written in small pieces that split its lines.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http_stub::{HttpStub, Reply, Request, read_request};

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

// The streaming provider's public items carry `allow(dead_code)`: the files that use only
// the OpenAI stub leave them unused (and what only they reach follows).

/// Input usage of the streaming provider's Anthropic answers: tokens outside the cache, read
/// from it and written to it.
#[allow(dead_code)]
pub const ANTHROPIC_INPUT_TOKENS: u64 = 11;
#[allow(dead_code)]
pub const ANTHROPIC_CACHE_READ_TOKENS: u64 = 1000;
#[allow(dead_code)]
pub const ANTHROPIC_CACHE_CREATION_TOKENS: u64 = 300;
/// Prompt tokens of the streaming provider's OpenAI answers. Output tokens: one per delta.
#[allow(dead_code)]
pub const OPENAI_PROMPT_TOKENS: u64 = 21;

/// How [`StreamingProvider`] answers a request that asked for a stream.
#[allow(dead_code)]
#[derive(Clone, Debug)]
pub struct StreamPlan {
    /// The text deltas, in order; the answer is their concatenation.
    pub deltas: Vec<String>,
    /// When the first delta is sent, after the request was read (the events before it, the
    /// role chunk or `message_start`, go at once).
    pub first_chunk_after: Duration,
    /// When the last delta is sent; the deltas between are spread evenly.
    pub total: Duration,
    /// Close the connection after this many deltas, without the end marker. At or past the
    /// number of deltas, the closing usage (OpenAI's usage chunk, Anthropic's
    /// `message_delta`) is still sent.
    pub cut_after: Option<usize>,
    /// At the cut, end the HTTP body properly (its last chunk) before closing: the body is
    /// whole, the stream is not, as when a proxy gives up.
    pub cut_cleanly: bool,
    /// Send the API's error event after this many deltas, then close.
    pub error_after: Option<usize>,
    /// Write each event in pieces of a few bytes, flushed apart (lines, `\r\n` and UTF-8
    /// characters split), with `\r\n` line ends.
    pub split: bool,
}

impl Default for StreamPlan {
    fn default() -> Self {
        Self {
            deltas: ["Hel", "lo, ", "wörld", "!"].map(str::to_owned).to_vec(),
            first_chunk_after: Duration::ZERO,
            total: Duration::ZERO,
            cut_after: None,
            cut_cleanly: false,
            error_after: None,
            split: false,
        }
    }
}

#[allow(dead_code)]
impl StreamPlan {
    /// The whole text.
    pub fn text(&self) -> String {
        self.deltas.concat()
    }
}

/// The streaming provider; it stops when dropped (connections still streaming are cut).
#[allow(dead_code)]
pub struct StreamingProvider {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stopped: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

#[allow(dead_code)]
impl StreamingProvider {
    /// Serves every request by `plan`.
    pub fn start(plan: StreamPlan) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (seen, stop) = (requests.clone(), stopped.clone());
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (plan, seen, stop) = (plan.clone(), seen.clone(), stop.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &plan, &seen, &stop);
                });
            }
        });
        Self {
            addr,
            requests,
            stopped,
            acceptor: Some(acceptor),
        }
    }

    /// `http://127.0.0.1:port/v1`, the base URL an OpenAI client takes.
    pub fn openai_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:port`, the base URL an Anthropic client takes.
    pub fn anthropic_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The body of every request, in order (`null` where it was not JSON).
    pub fn bodies(&self) -> Vec<Value> {
        self.requests().iter().map(body).collect()
    }
}

impl Drop for StreamingProvider {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the acceptor, which sees the flag and returns: the port closes.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    plan: &StreamPlan,
    seen: &Mutex<Vec<Request>>,
    stopped: &AtomicBool,
) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let mut request = read_request(&mut BufReader::new(stream.try_clone()?))?
        .ok_or(io::ErrorKind::UnexpectedEof)?;
    let started = Instant::now();
    {
        let mut seen = seen.lock().unwrap();
        request.index = seen.len();
        seen.push(request.clone());
    }
    let request_body = body(&request);
    let model = request_body["model"].as_str().unwrap_or("model").to_owned();
    let anthropic = request.target.ends_with("/v1/messages");
    let mut out = Writer {
        stream,
        split: plan.split,
        stopped,
    };
    if request_body["stream"] != json!(true) {
        let answer = if anthropic {
            anthropic_message(&model, &plan.text(), plan.deltas.len())
        } else {
            openai_completion(&model, &plan.text(), plan.deltas.len())
        };
        let answer = answer.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            answer.len()
        );
        out.raw(head.as_bytes())?;
        out.raw(answer.as_bytes())?;
        return out.cut();
    }
    out.raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n\
          Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )?;
    let events: Box<dyn Events> = if anthropic {
        Box::new(AnthropicEvents { model })
    } else {
        Box::new(OpenAiEvents { model })
    };
    for event in events.opening() {
        out.event(&event)?;
    }
    let n = plan.deltas.len();
    for (i, delta) in plan.deltas.iter().enumerate() {
        if plan.error_after == Some(i) {
            let key = request
                .header("x-api-key")
                .or(request.header("authorization"));
            out.event(&events.error(key.unwrap_or_default()))?;
            return out.close();
        }
        if plan.cut_after == Some(i) {
            return out.cut_stream(plan.cut_cleanly);
        }
        // The first delta at `first_chunk_after`, the last at `total`.
        let due = if n <= 1 {
            plan.first_chunk_after
        } else {
            let spread = plan.total.saturating_sub(plan.first_chunk_after);
            plan.first_chunk_after + spread * i as u32 / (n as u32 - 1)
        };
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        out.event(&events.delta(delta))?;
    }
    if plan.error_after.is_some_and(|k| k >= n) {
        out.event(&events.error(""))?;
        return out.close();
    }
    for event in events.closing(n) {
        out.event(&event)?;
    }
    if plan.cut_after.is_some_and(|k| k >= n) {
        return out.cut_stream(plan.cut_cleanly);
    }
    out.event(&events.end())?;
    out.close()
}

/// The SSE events of one API (each a whole event, ending with its blank line).
trait Events {
    /// Before the first text.
    fn opening(&self) -> Vec<String>;
    fn delta(&self, text: &str) -> String;
    /// After the last text: the usage.
    fn closing(&self, deltas: usize) -> Vec<String>;
    /// The end marker.
    fn end(&self) -> String;
    /// The API's error event; `quoted` goes into its message (a key, for the leak checks).
    fn error(&self, quoted: &str) -> String;
}

fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

struct OpenAiEvents {
    model: String,
}

impl OpenAiEvents {
    fn chunk(&self, choices: Value, usage: Value) -> String {
        let chunk = json!({
            "id": "chatcmpl-loopback",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": self.model,
            "system_fingerprint": "fp_loopback",
            "choices": choices,
            "usage": usage,
        });
        sse(None, &chunk)
    }
}

impl Events for OpenAiEvents {
    fn opening(&self) -> Vec<String> {
        let role = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
            "logprobs": null, "finish_reason": null}]);
        vec![self.chunk(role, Value::Null)]
    }

    fn delta(&self, text: &str) -> String {
        let choices = json!([{"index": 0, "delta": {"content": text},
            "logprobs": null, "finish_reason": null}]);
        self.chunk(choices, Value::Null)
    }

    fn closing(&self, deltas: usize) -> Vec<String> {
        let stop = json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}]);
        vec![
            self.chunk(stop, Value::Null),
            self.chunk(json!([]), openai_usage(deltas)),
        ]
    }

    fn end(&self) -> String {
        "data: [DONE]\n\n".to_owned()
    }

    fn error(&self, quoted: &str) -> String {
        let message = format!("The server had an error while processing your request {quoted}");
        sse(
            None,
            &json!({"error": {"message": message, "type": "server_error"}}),
        )
    }
}

struct AnthropicEvents {
    model: String,
}

impl Events for AnthropicEvents {
    fn opening(&self) -> Vec<String> {
        let mut usage = anthropic_usage(1);
        usage["service_tier"] = json!("standard");
        let start = json!({"type": "message_start", "message": {
            "id": "msg_loopback", "type": "message", "role": "assistant", "content": [],
            "model": self.model, "stop_reason": null, "stop_sequence": null, "usage": usage}});
        let block = json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}});
        vec![
            sse(Some("message_start"), &start),
            sse(Some("content_block_start"), &block),
            sse(Some("ping"), &json!({"type": "ping"})),
        ]
    }

    fn delta(&self, text: &str) -> String {
        let delta = json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}});
        sse(Some("content_block_delta"), &delta)
    }

    fn closing(&self, deltas: usize) -> Vec<String> {
        let stop = json!({"type": "content_block_stop", "index": 0});
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": deltas}});
        vec![
            sse(Some("content_block_stop"), &stop),
            sse(Some("message_delta"), &delta),
        ]
    }

    fn end(&self) -> String {
        sse(Some("message_stop"), &json!({"type": "message_stop"}))
    }

    fn error(&self, quoted: &str) -> String {
        let error = json!({"type": "error",
            "error": {"type": "overloaded_error", "message": format!("Overloaded {quoted}")}});
        sse(Some("error"), &error)
    }
}

/// An OpenAI usage object with one output token per delta.
#[allow(dead_code)]
pub fn openai_usage(deltas: usize) -> Value {
    json!({
        "prompt_tokens": OPENAI_PROMPT_TOKENS,
        "completion_tokens": deltas,
        "total_tokens": OPENAI_PROMPT_TOKENS + deltas as u64,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
    })
}

/// An Anthropic usage object with the cache counters and `output_tokens`.
#[allow(dead_code)]
pub fn anthropic_usage(output_tokens: usize) -> Value {
    json!({
        "input_tokens": ANTHROPIC_INPUT_TOKENS,
        "cache_creation_input_tokens": ANTHROPIC_CACHE_CREATION_TOKENS,
        "cache_read_input_tokens": ANTHROPIC_CACHE_READ_TOKENS,
        "output_tokens": output_tokens
    })
}

fn openai_completion(model: &str, text: &str, deltas: usize) -> Value {
    json!({
        "id": "chatcmpl-loopback",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
            "finish_reason": "stop"}],
        "usage": openai_usage(deltas)
    })
}

fn anthropic_message(model: &str, text: &str, deltas: usize) -> Value {
    json!({
        "id": "msg_loopback",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": anthropic_usage(deltas)
    })
}

/// Writes an answer as a chunked HTTP body, whole or in small pieces.
struct Writer<'a> {
    stream: TcpStream,
    split: bool,
    stopped: &'a AtomicBool,
}

impl Writer<'_> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(io::ErrorKind::ConnectionAborted.into());
        }
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// One HTTP chunk.
    fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut framed = format!("{:x}\r\n", bytes.len()).into_bytes();
        framed.extend_from_slice(bytes);
        framed.extend_from_slice(b"\r\n");
        self.raw(&framed)
    }

    fn event(&mut self, event: &str) -> io::Result<()> {
        if !self.split {
            return self.chunk(event.as_bytes());
        }
        // Pieces of 5 bytes cut lines, the `\r` from its `\n` and `ö` in two.
        let event = event.replace('\n', "\r\n");
        for piece in event.as_bytes().chunks(5) {
            self.chunk(piece)?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The end of the body, then the connection closes.
    fn close(mut self) -> io::Result<()> {
        self.raw(b"0\r\n\r\n")?;
        self.stream.shutdown(Shutdown::Both)
    }

    /// The stream ends without its end marker: the body ends too when `cleanly`, else the
    /// connection closes mid-body.
    fn cut_stream(self, cleanly: bool) -> io::Result<()> {
        if cleanly { self.close() } else { self.cut() }
    }

    /// The connection closes: mid-body in a chunked answer, at its end after a
    /// `Content-Length` body.
    fn cut(self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Both)
    }
}
