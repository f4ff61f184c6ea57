//! The endpoint: `GET /metrics` on a std `TcpListener`, one connection at a time on one
//! thread of its own, each bounded in time.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{Format, PrometheusExporter};

/// How long one connection may take to send its request and read the answer, in all, by
/// default: a slow or silent client holds the endpoint no longer than this (connections are
/// served one at a time; Prometheus' own scrape timeout is 10 s by default).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// How long a connection may take to send its request head: a client that connects and says
/// nothing (a health check, a port scanner) holds the endpoint no longer than this, well
/// within a scrape's timeout.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(2);

/// The longest request head read; longer ones get `431`.
const MAX_HEAD: usize = 16 * 1024;

/// A running endpoint (see [`PrometheusExporter::serve`]). Dropping it stops it.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    deadline: Duration,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    pub(crate) fn start(
        addr: impl ToSocketAddrs,
        exporter: PrometheusExporter,
        deadline: Duration,
    ) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("agent-profiler-prometheus".to_owned())
            .spawn(move || accept_loop(&listener, &exporter, &flag, deadline))?;
        Ok(MetricsServer {
            addr,
            deadline,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread (at most the connection in hand's deadline).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking `accept`; the loop sees the flag and ends.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(ip) if ip.is_unspecified() => Ipv6Addr::LOCALHOST.into(),
            ip => ip,
        };
        let woke =
            TcpStream::connect_timeout(&SocketAddr::new(wake, self.addr.port()), self.deadline);
        if woke.is_ok() {
            let _ = thread.join();
        }
        // Otherwise the thread is left to end at its next connection: never wait forever.
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: &TcpListener,
    exporter: &PrometheusExporter,
    stop: &AtomicBool,
    deadline: Duration,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match stream {
            // A failed connection concerns that client only.
            Ok(stream) => {
                let _ = serve(stream, exporter, deadline);
            }
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Answers one request on `stream`, then closes it.
fn serve(mut stream: TcpStream, exporter: &PrometheusExporter, limit: Duration) -> io::Result<()> {
    let started = Instant::now();
    let deadline = started + limit;
    let head = match read_head(&mut stream, started + limit.min(HEAD_DEADLINE)) {
        Ok(head) => head,
        Err(Refused::TooLarge) => {
            return respond(
                &mut stream,
                deadline,
                "431 Request Header Fields Too Large",
                &[],
                b"",
                true,
            );
        }
        Err(Refused::Io(e)) => return Err(e),
    };
    let request = Request::parse(&head);
    let Some(request) = request else {
        return respond(
            &mut stream,
            deadline,
            "400 Bad Request",
            &[],
            b"bad request\n",
            true,
        );
    };
    let path = request.target.split('?').next().unwrap_or("");
    if path != "/metrics" {
        return respond(
            &mut stream,
            deadline,
            "404 Not Found",
            &[],
            b"not found: try /metrics\n",
            true,
        );
    }
    let with_body = match request.method {
        "GET" => true,
        "HEAD" => false,
        _ => {
            let allow = [("Allow", "GET, HEAD")];
            return respond(
                &mut stream,
                deadline,
                "405 Method Not Allowed",
                &allow,
                b"",
                true,
            );
        }
    };
    let format = Format::from_accept(request.accept);
    let body = exporter.encode(format);
    let headers = [("Content-Type", format.content_type())];
    respond(
        &mut stream,
        deadline,
        "200 OK",
        &headers,
        body.as_bytes(),
        with_body,
    )
}

enum Refused {
    TooLarge,
    Io(io::Error),
}

/// Reads up to the blank line that ends the head, within `deadline`.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<String, Refused> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    loop {
        if let Some(end) = find_end(&head) {
            head.truncate(end);
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        if head.len() > MAX_HEAD {
            return Err(Refused::TooLarge);
        }
        stream
            .set_read_timeout(Some(remaining(deadline).map_err(Refused::Io)?))
            .map_err(Refused::Io)?;
        let n = stream.read(&mut chunk).map_err(Refused::Io)?;
        if n == 0 {
            return Err(Refused::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

fn find_end(head: &[u8]) -> Option<usize> {
    head.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The time left before `deadline`, or a timeout error when none is.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::ErrorKind::TimedOut.into())
    } else {
        Ok(left)
    }
}

fn respond(
    stream: &mut TcpStream,
    deadline: Instant,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    with_body: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        && !body.is_empty()
    {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if with_body {
        bytes.extend_from_slice(body);
    }
    // Written in pieces, each within what is left of the deadline: a client that reads
    // slowly cannot hold the endpoint past it.
    for piece in bytes.chunks(64 * 1024) {
        stream.set_write_timeout(Some(remaining(deadline)?))?;
        stream.write_all(piece)?;
    }
    stream.flush()
}

/// The parts of a request head the endpoint reads.
struct Request<'a> {
    method: &'a str,
    target: &'a str,
    accept: Option<&'a str>,
}

impl<'a> Request<'a> {
    fn parse(head: &'a str) -> Option<Request<'a>> {
        let mut lines = head.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, target, version) = (first.next()?, first.next()?, first.next()?);
        if !version.starts_with("HTTP/1.") || first.next().is_some() {
            return None;
        }
        let accept = lines
            .filter_map(|line| line.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("accept"))
            .map(|(_, value)| value.trim());
        Some(Request {
            method,
            target,
            accept,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_head_gives_its_method_target_and_accept() {
        let head = "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\naccept: text/plain;q=0.5";
        let request = Request::parse(head).unwrap();
        assert_eq!((request.method, request.target), ("GET", "/metrics?x=1"));
        assert_eq!(request.accept, Some("text/plain;q=0.5"));
        assert!(Request::parse("GET /metrics").is_none());
        assert!(Request::parse("GET /metrics SPDY/3").is_none());
        assert_eq!(find_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(14));
    }
}
