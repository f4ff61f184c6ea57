//! A loopback server speaking OpenAI Chat Completions JSON (with usage), for the executor
//! tests. The model name chooses the behaviour: `fail-500` answers HTTP 500, `garbage` a
//! body that is not JSON, `no-choices` JSON with usage but no answer, `echo-auth` HTTP 401
//! quoting the Authorization header back (as some proxies do); anything else answers after
//! `max_tokens / 4` ms with realistic usage.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

/// The running server; it stops with the test process.
pub struct LlmServer {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    /// Every Authorization header received.
    pub auth_headers: Arc<Mutex<Vec<String>>>,
    /// Every request body received.
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

impl LlmServer {
    /// Starts the server on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let auth_headers = Arc::new(Mutex::new(Vec::new()));
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (auth_headers.clone(), bodies.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (a, b) = (a.clone(), b.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &a, &b);
                });
            }
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            auth_headers,
            bodies,
        }
    }
}

fn serve(
    stream: TcpStream,
    auth: &Mutex<Vec<String>>,
    bodies: &Mutex<Vec<Value>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut length = 0usize;
    let mut authorization = String::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header)?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or((header, ""));
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse().unwrap_or(0);
        }
        if name.eq_ignore_ascii_case("authorization") {
            authorization = value.trim().to_owned();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    auth.lock().unwrap().push(authorization.clone());
    bodies.lock().unwrap().push(request.clone());
    let model = request["model"].as_str().unwrap_or("").to_owned();
    let max_tokens = request["max_tokens"].as_u64().unwrap_or(100);
    let prompt_chars: usize = request["messages"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["content"].as_str())
                .map(str::len)
                .sum()
        })
        .unwrap_or(0);
    let usage = json!({
        "prompt_tokens": prompt_chars / 4 + 5,
        "completion_tokens": max_tokens / 2,
        "total_tokens": prompt_chars / 4 + 5 + max_tokens as usize / 2
    });
    let (status, body) = match model.as_str() {
        "fail-500" => (
            "500 Internal Server Error",
            r#"{"error": {"message": "overloaded"}}"#.to_owned(),
        ),
        "garbage" => ("200 OK", "<html>this is not JSON</html>".to_owned()),
        "no-choices" => (
            "200 OK",
            json!({"id": "x", "model": model, "usage": usage}).to_string(),
        ),
        "echo-auth" => (
            "401 Unauthorized",
            json!({"error": {"message": format!("invalid key in header: {authorization}")}})
                .to_string(),
        ),
        _ => {
            std::thread::sleep(Duration::from_millis(max_tokens / 4));
            let answer = format!("answer of {model} ({max_tokens} max tokens)");
            (
                "200 OK",
                json!({
                    "id": "chatcmpl-loopback",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                    "usage": usage
                })
                .to_string(),
            )
        }
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
