//! A loopback proxy in front of a real server (the MLflow tracking server, in these tests)
//! that injects faults: error answers to a share of requests (with `Retry-After` when
//! asked), slow answers, a refusal of one value, or an error quoting the credentials sent.
//! Built on [`HttpStub`]; what it does not inject it forwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::http_stub::{self, HttpStub, Reply, Request};

/// What the proxy does to the requests it sees.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Request number `i` (from 0) is answered `status` when `i % every == phase`, with a
    /// `Retry-After` header when given; the others are forwarded.
    Every {
        every: u64,
        phase: u64,
        status: u16,
        retry_after: Option<u64>,
    },
    /// Several fault rules; the first that matches wins.
    Mixed(Vec<Fault>),
    /// Forwards every request after waiting this long.
    Delay(Duration),
    /// Answers every request 400 with a body that quotes the request's `Authorization`.
    EchoAuth,
    /// Answers 400 `INVALID_PARAMETER_VALUE` to every request whose body contains this text
    /// (a server-side rejection of one value), forwards the others.
    RejectBodyContaining(String),
}

impl Fault {
    /// The status and `Retry-After` of an injected error for request `i`, if any.
    fn pick(&self, i: u64) -> Option<(u16, Option<u64>)> {
        match self {
            Fault::Every {
                every,
                phase,
                status,
                retry_after,
            } if i % every == *phase => Some((*status, *retry_after)),
            Fault::Mixed(rules) => rules.iter().find_map(|r| r.pick(i)),
            _ => None,
        }
    }

    /// The injected reply to `request`, or `None` to forward it.
    fn inject(&self, request: &Request) -> Option<Reply> {
        match self {
            Fault::EchoAuth => {
                let auth = request.header("authorization").unwrap_or_default();
                Some(Reply::json(
                    400,
                    format!(
                        "{{\"error_code\": \"BAD_REQUEST\", \"message\": \"rejected credentials {auth}\"}}"
                    ),
                ))
            }
            Fault::RejectBodyContaining(needle)
                if String::from_utf8_lossy(&request.body).contains(needle.as_str()) =>
            {
                Some(Reply::json(
                    400,
                    format!(
                        "{{\"error_code\": \"INVALID_PARAMETER_VALUE\", \"message\": \"refused {needle}\"}}"
                    ),
                ))
            }
            _ => self
                .pick(request.index as u64)
                .map(|(status, retry_after)| {
                    let reply = Reply::new(
                        status,
                        "text/html",
                        "<html><body>injected fault</body></html>",
                    );
                    match retry_after {
                        Some(seconds) => reply.header("Retry-After", &seconds.to_string()),
                        None => reply,
                    }
                }),
        }
    }
}

/// The running proxy; it stops when dropped.
pub struct FaultProxy {
    stub: HttpStub,
    faults: Arc<AtomicU64>,
}

impl FaultProxy {
    /// A proxy in front of the server at `upstream_uri` (`http://host:port`).
    pub fn start(upstream_uri: &str, fault: Fault) -> Self {
        let upstream = http_stub::authority(upstream_uri);
        let faults = Arc::new(AtomicU64::new(0));
        let injected = faults.clone();
        let stub = HttpStub::start(move |request| {
            if let Some(reply) = fault.inject(request) {
                injected.fetch_add(1, Ordering::Relaxed);
                return reply;
            }
            if let Fault::Delay(delay) = &fault {
                std::thread::sleep(*delay);
            }
            Reply::forward(&upstream, request)
        });
        Self { stub, faults }
    }

    pub fn port(&self) -> u16 {
        self.stub.port()
    }

    /// `http://127.0.0.1:port`, to use in place of the server's URI.
    pub fn uri(&self) -> String {
        self.stub.url()
    }

    /// How many requests it got.
    pub fn requests(&self) -> usize {
        self.stub.request_count()
    }

    /// How many of them it answered with a fault.
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Every `Authorization` header it saw, in order.
    pub fn auth_seen(&self) -> Vec<String> {
        self.stub
            .requests()
            .iter()
            .filter_map(|r| r.header("authorization").map(str::to_owned))
            .collect()
    }
}
