//! MLflow servers for the tests: the tracking server `scripts/test` starts (its URI, or a
//! skip), a private server a test can stop and restart on the same port and database, and
//! an HTTPS server with a self-signed certificate answering like MLflow.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http_stub;
use super::scratch;

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

/// Whether `GET /health` answers 200 at `authority`.
fn healthy(authority: &str) -> bool {
    http_stub::call(authority, "GET", "/health", None, Duration::from_secs(5))
        .is_ok_and(|answer| answer.status == 200)
}

/// The `mlflow` program: `MLFLOW_BIN`, the workspace's `.venv`, or `mlflow` on the PATH.
fn mlflow_bin() -> Option<PathBuf> {
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
        let dir = scratch::temp_dir("agent-profiler-mlflow");
        let mut server = Self {
            port: http_stub::closed_port(),
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
        let dir = scratch::temp_dir("agent-profiler-tls");
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
