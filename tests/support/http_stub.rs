//! A loopback HTTP/1.1 stub: a real server on 127.0.0.1, on a port the system picks, that
//! stands in for an outside service. Each request is answered by a closure
//! ([`HttpStub::start`]) or from a queue of canned replies ([`HttpStub::replying`]); every
//! request is recorded in the order it arrived ([`HttpStub::requests`]); the server stops
//! when the stub is dropped, cutting any connection still open.
//!
//! A [`Reply`] can be an HTTP answer, bytes that are not HTTP at all, or nothing (the
//! connection is closed), and can come late: what fault injection needs. One request per
//! connection: every answer says `Connection: close` and the connection is closed after it.
//!
//! Also the client side tests need by hand ([`call`], [`Reply::forward`]): a plain request
//! to a loopback server, for proxying and for REST routes the clients under test do not
//! cover.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a connection to the stub may stay silent while a request is read.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a forwarded request may wait for the upstream server's answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// One request, as the stub read it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Its place among the requests the stub got, from 0.
    pub index: usize,
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// In the order they came, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when it came in chunks.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request line and the headers, as a server quoting the request back shows them.
    pub fn head(&self) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head
    }
}

/// What the stub does with a request.
#[derive(Clone, Debug)]
pub struct Reply {
    delay: Duration,
    kind: ReplyKind,
}

#[derive(Clone, Debug)]
enum ReplyKind {
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Raw(Vec<u8>),
    HangUp,
}

impl Reply {
    /// An HTTP answer with this status, a body of this content type, and `Content-Length`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            delay: Duration::ZERO,
            kind: ReplyKind::Http {
                status,
                headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
                body: body.into(),
            },
        }
    }

    /// An HTTP answer with a JSON body.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    /// These bytes as they are (they need not be HTTP), then the connection closes.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            delay: Duration::ZERO,
            kind: ReplyKind::Raw(bytes.into()),
        }
    }

    /// No answer: the connection closes (after the delay, if any).
    pub fn hang_up() -> Self {
        Self {
            delay: Duration::ZERO,
            kind: ReplyKind::HangUp,
        }
    }

    /// One more header on an HTTP answer.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self.kind {
            ReplyKind::Http { headers, .. } => headers.push((name.to_owned(), value.to_owned())),
            _ => panic!("a header on a reply that is not HTTP"),
        }
        self
    }

    /// The same reply, sent this long after the request was read (or dropped when the stub
    /// stops first).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// What the server at `upstream` (`host:port`) answers to `request`, passed on byte for
    /// byte; a hang-up when it cannot be reached.
    pub fn forward(upstream: &str, request: &Request) -> Self {
        let mut bytes = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
        for (name, value) in &request.headers {
            let framing = ["connection", "content-length", "transfer-encoding"];
            if !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
                bytes.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        bytes.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            request.body.len()
        ));
        let mut bytes = bytes.into_bytes();
        bytes.extend_from_slice(&request.body);
        match exchange(upstream, &bytes, UPSTREAM_TIMEOUT) {
            Ok(answer) => Self::raw(answer),
            Err(_) => Self::hang_up(),
        }
    }

    fn bytes(&self) -> Option<Vec<u8>> {
        match &self.kind {
            ReplyKind::Http {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(*status));
                for (name, value) in headers {
                    out.push_str(&format!("{name}: {value}\r\n"));
                }
                out.push_str(&format!(
                    "Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ));
                let mut out = out.into_bytes();
                out.extend_from_slice(body);
                Some(out)
            }
            ReplyKind::Raw(bytes) => Some(bytes.clone()),
            ReplyKind::HangUp => None,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Stub",
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    requests: Mutex<Vec<Request>>,
    /// Connections being served, to cut them when the stub stops.
    open: Mutex<HashMap<u64, TcpStream>>,
    stopped: Mutex<bool>,
    stopping: Condvar,
}

impl Shared {
    /// Waits `delay`; `true` when the stub stopped meanwhile.
    fn wait(&self, delay: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap();
        let (stopped, _) = self
            .stopping
            .wait_timeout_while(stopped, delay, |stopped| !*stopped)
            .unwrap();
        *stopped
    }
}

/// The running server; see the module documentation.
pub struct HttpStub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpStub {
    /// Serves every request with `handler`'s reply.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            requests: Mutex::new(Vec::new()),
            open: Mutex::new(HashMap::new()),
            stopped: Mutex::new(false),
            stopping: Condvar::new(),
        });
        let serving = shared.clone();
        let acceptor = std::thread::spawn(move || {
            for (id, stream) in (0..).zip(listener.incoming()) {
                if *serving.stopped.lock().unwrap() {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let Ok(handle) = stream.try_clone() else {
                    continue;
                };
                serving.open.lock().unwrap().insert(id, handle);
                let shared = serving.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                    shared.open.lock().unwrap().remove(&id);
                });
            }
        });
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Answers request `i` with `replies[i]`, and every request after the last with the last.
    pub fn replying(replies: impl IntoIterator<Item = Reply>) -> Self {
        let replies: Vec<Reply> = replies.into_iter().collect();
        assert!(!replies.is_empty(), "a stub needs at least one reply");
        Self::start(move |request| replies[request.index.min(replies.len() - 1)].clone())
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request read so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// How many requests were read so far.
    pub fn request_count(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }
}

impl Drop for HttpStub {
    fn drop(&mut self) {
        *self.shared.stopped.lock().unwrap() = true;
        self.shared.stopping.notify_all();
        // Wakes the acceptor, which sees the flag and returns: the port closes.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        for stream in self.shared.open.lock().unwrap().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(mut request) = read_request(&mut reader)? else {
        return Ok(());
    };
    {
        let mut requests = shared.requests.lock().unwrap();
        request.index = requests.len();
        requests.push(request.clone());
    }
    let reply = (shared.handler)(&request);
    if !reply.delay.is_zero() && shared.wait(reply.delay) {
        return stream.shutdown(Shutdown::Both);
    }
    let mut stream = stream;
    if let Some(bytes) = reply.bytes() {
        stream.write_all(&bytes)?;
        stream.flush()?;
    }
    stream.shutdown(Shutdown::Both)
}

/// Reads one request; `None` when the connection closed before one began. Also the
/// streaming provider's, which writes its answers itself.
pub fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, line));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let headers = read_headers(reader)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(reader)?
    } else {
        let length = header("content-length").map_or(0, |v| v.parse().unwrap_or(0));
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request {
        index: 0,
        method,
        target,
        headers,
        body,
    }))
}

/// Header lines up to the blank line that ends them.
fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// A chunked body, de-chunked (trailers skipped).
fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = size.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size, 16)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            read_headers(reader)?;
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf)?;
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `host:port` of an `http://host:port[/...]` URI.
pub fn authority(uri: &str) -> String {
    let rest = uri.split("://").nth(1).unwrap_or(uri);
    rest.split('/').next().unwrap().to_owned()
}

/// An answer read by [`call`].
pub struct Response {
    pub status: u16,
    /// The body, de-chunked when it came in chunks.
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request to the server at `authority` (`host:port`), with a JSON body when given; the
/// answer, read until the server closes the connection or `timeout` passes in silence.
pub fn call(
    authority: &str,
    method: &str,
    target: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> io::Result<Response> {
    let body = json_body.unwrap_or("");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(authority, request.as_bytes(), timeout)?;
    let mut reader = BufReader::new(answer.as_slice());
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let headers = read_headers(&mut reader)?;
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = Vec::new();
        reader.read_to_end(&mut body)?;
        body
    };
    Ok(Response { status, body })
}

/// Writes `request` to `authority` and reads the answer to the end of the connection.
fn exchange(authority: &str, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}
