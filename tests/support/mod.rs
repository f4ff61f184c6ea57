//! Helpers of the MLflow tests: the server from `scripts/test`, a private server the test
//! can stop and restart, and a loopback proxy that injects faults.
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_profiler::mlflow::{MlflowClient, MlflowConfig};

/// The tracking server `scripts/test` started, or `None` (after printing why) when the test
/// should be skipped. In CI (`CI` set) a missing server fails the test.
pub fn tracking_uri(test: &str) -> Option<String> {
    match std::env::var("MLFLOW_TRACKING_URI") {
        Ok(uri) if !uri.is_empty() => Some(uri),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: MLFLOW_TRACKING_URI is not set in CI; run the tests with scripts/test, \
                 which starts an MLflow server"
            );
            eprintln!(
                "{test}: skipped: MLFLOW_TRACKING_URI is not set (scripts/test starts a server)"
            );
            None
        }
    }
}

/// A name no other test (or earlier run against the same server) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A configuration for `uri` with fast retries and a fresh experiment, no warnings.
pub fn config(uri: &str, test: &str) -> MlflowConfig {
    MlflowConfig::new(uri)
        .unwrap()
        .experiment_name(unique(test))
        .run_name(test)
        .backoff_factor(0.05)
        .backoff_jitter(0.05)
        .max_retries(10)
        .flush_interval(Duration::from_millis(50))
        .warnings(false)
}

/// A client for reading back.
pub fn client(uri: &str) -> MlflowClient {
    MlflowClient::new(&MlflowConfig::new(uri).unwrap()).unwrap()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `host:port` of an `http://host:port[/...]` URI.
pub fn authority(uri: &str) -> String {
    let rest = uri.split("://").nth(1).unwrap_or(uri);
    rest.split('/').next().unwrap().to_owned()
}

/// Whether `GET /health` answers 200 at `authority`.
pub fn healthy(authority: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(authority) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200")
}

/// What the proxy does to the requests it sees.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Forwards everything.
    None,
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
}

/// A loopback HTTP/1.1 proxy in front of a server, one request per connection.
pub struct FaultProxy {
    pub port: u16,
    pub requests: Arc<AtomicU64>,
    pub faults: Arc<AtomicU64>,
    /// Every `Authorization` header seen.
    pub auth_seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = Self {
            port,
            requests: Arc::new(AtomicU64::new(0)),
            faults: Arc::new(AtomicU64::new(0)),
            auth_seen: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (requests, faults, auth_seen, stop) = (
            proxy.requests.clone(),
            proxy.faults.clone(),
            proxy.auth_seen.clone(),
            proxy.stop.clone(),
        );
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (requests, faults, auth_seen, upstream, fault) = (
                    requests.clone(),
                    faults.clone(),
                    auth_seen.clone(),
                    upstream.clone(),
                    fault.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(stream, &upstream, &fault, &requests, &faults, &auth_seen);
                });
            }
        });
        proxy
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: &Fault,
    requests: &AtomicU64,
    faults: &AtomicU64,
    auth_seen: &Mutex<Vec<String>>,
) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut headers = Vec::new();
    let mut length = 0usize;
    let mut auth = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            let name_lc = name.trim().to_ascii_lowercase();
            match name_lc.as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => auth = Some(value.trim().to_owned()),
                "connection" => continue,
                _ => {}
            }
        }
        headers.push(trimmed.to_owned());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if let Some(auth) = &auth {
        auth_seen.lock().unwrap().push(auth.clone());
    }
    let i = requests.fetch_add(1, Ordering::Relaxed);
    let respond = |client: &mut TcpStream, status: u16, extra: &str, body: &str| {
        let answer = format!(
            "HTTP/1.1 {status} Injected\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
             Connection: close\r\n{extra}\r\n{body}",
            body.len()
        );
        client.write_all(answer.as_bytes())
    };
    if let Fault::EchoAuth = fault {
        faults.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            "{{\"error_code\": \"BAD_REQUEST\", \"message\": \"rejected credentials {}\"}}",
            auth.unwrap_or_default()
        );
        respond(&mut client, 400, "", &body)?;
        return client.shutdown(Shutdown::Both);
    }
    if let Fault::RejectBodyContaining(needle) = fault
        && String::from_utf8_lossy(&body).contains(needle.as_str())
    {
        faults.fetch_add(1, Ordering::Relaxed);
        let body = format!(
            "{{\"error_code\": \"INVALID_PARAMETER_VALUE\", \"message\": \"refused {needle}\"}}"
        );
        respond(&mut client, 400, "", &body)?;
        return client.shutdown(Shutdown::Both);
    }
    if let Some((status, retry_after)) = fault.pick(i) {
        faults.fetch_add(1, Ordering::Relaxed);
        let extra = retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        respond(
            &mut client,
            status,
            &extra,
            "<html><body>injected fault</body></html>",
        )?;
        return client.shutdown(Shutdown::Both);
    }
    if let Fault::Delay(delay) = fault {
        std::thread::sleep(*delay);
    }
    let mut up = TcpStream::connect(upstream)?;
    let mut head = request_line.clone();
    for h in &headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    client.write_all(&answer)?;
    client.shutdown(Shutdown::Both)
}

/// The `mlflow` program: `MLFLOW_BIN`, the workspace's `.venv`, or `mlflow` on the PATH.
pub fn mlflow_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("MLFLOW_BIN") {
        return Some(PathBuf::from(bin));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/mlflow");
    if venv.exists() {
        return Some(venv);
    }
    Command::new("mlflow")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(|s| s.success())
        .map(|_| PathBuf::from("mlflow"))
}

/// An MLflow server of the test's own, which it can stop (kill) and restart on the same
/// port and database.
pub struct PrivateServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    /// Starts one and waits for `/health` (up to 120 s). `None` when there is no `mlflow`
    /// program (then CI fails, a run by hand skips).
    pub fn start(test: &str) -> Option<Self> {
        let Some(bin) = mlflow_bin() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: no `mlflow` program (MLFLOW_BIN, .venv or PATH) in CI"
            );
            eprintln!("{test}: skipped: no `mlflow` program to start a private server");
            return None;
        };
        let dir = std::env::temp_dir().join(unique("agent-profiler-mlflow"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port: closed_port(),
            dir,
            bin,
            child: None,
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "server",
                "--backend-store-uri",
                &format!("sqlite:///{}", self.dir.join("db.sqlite").display()),
                "--artifacts-destination",
                &self.dir.join("artifacts").display().to_string(),
                "--serve-artifacts",
                "--host",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--workers",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start mlflow server");
        self.child = Some(child);
        let started = Instant::now();
        let authority = format!("127.0.0.1:{}", self.port);
        while !healthy(&authority) {
            if started.elapsed() > Duration::from_secs(120) {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
                panic!(
                    "private mlflow server did not start in 120 s; log (last lines first):\n{tail}"
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server and its workers.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The server's process group: the launcher, uvicorn and its job runners.
            // (bash's own `kill`: a minimal system may have no /usr/bin/kill.)
            let _ = Command::new("bash")
                .args(["-c", &format!("kill -s KILL -- -{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let authority = format!("127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(&authority).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port and database.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Python of the `mlflow` program's virtualenv (it has `cryptography`, an MLflow
/// dependency), for helpers written in Python.
pub fn venv_python() -> Option<PathBuf> {
    let bin = mlflow_bin()?;
    let python = bin.parent()?.join("python");
    python.exists().then_some(python)
}

/// An HTTPS server with a fresh self-signed certificate for 127.0.0.1, answering every
/// GET with MLflow's answer to `experiments/get` for the default experiment.
pub struct TlsServer {
    pub port: u16,
    /// The server's certificate (PEM), to trust it explicitly.
    pub cert_path: PathBuf,
    dir: PathBuf,
    child: Child,
}

const TLS_SERVER: &str = r#"
import datetime, http.server, ipaddress, ssl, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
d = sys.argv[1]
key = ec.generate_private_key(ec.SECP256R1())
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent-profiler test")])
now = datetime.datetime.now(datetime.timezone.utc)
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
    .public_key(key.public_key()).serial_number(x509.random_serial_number())
    .not_valid_before(now - datetime.timedelta(days=1))
    .not_valid_after(now + datetime.timedelta(days=1))
    .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    .sign(key, hashes.SHA256()))
open(d + "/cert.pem", "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(d + "/key.pem", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"experiment": {"experiment_id": "0", "name": "Default", "lifecycle_stage": "active"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

impl TlsServer {
    pub fn start(python: &std::path::Path) -> Self {
        let dir = std::env::temp_dir().join(unique("agent-profiler-tls"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(python)
            .args(["-c", TLS_SERVER, &dir.display().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("TLS server port");
        Self {
            port,
            cert_path: dir.join("cert.pem"),
            dir,
            child,
        }
    }

    pub fn uri(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
