//! The reqwest clients of every output, built one way (the [`tls`](crate::tls) setup, the
//! user agent, timeouts), and the text of their errors.

use std::time::Duration;

use rustls::ClientConfig;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("agent-profiler/", env!("CARGO_PKG_VERSION"));

/// How a client connects: its TLS setup, the timeout of a whole request and of connecting,
/// and whether it follows redirects.
#[derive(Debug)]
pub struct ClientSettings {
    tls: ClientConfig,
    timeout: Duration,
    connect_timeout: Duration,
    follow_redirects: bool,
}

/// Applies `settings` to a reqwest client builder (blocking or async: they have the same
/// methods and no common trait) and builds the client.
macro_rules! build {
    ($builder:expr, $settings:expr) => {{
        let settings = $settings;
        let redirects = if settings.follow_redirects {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        };
        $builder
            .redirect(redirects)
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .user_agent(USER_AGENT)
            .tls_backend_preconfigured(settings.tls)
            .build()
    }};
}

impl ClientSettings {
    /// A client with the TLS setup `tls` ([`tls::client_config`](crate::tls::client_config))
    /// and `timeout` per request, which connects within the timeout or 30 s, whichever is
    /// shorter, and follows up to 10 redirects.
    pub fn new(tls: ClientConfig, timeout: Duration) -> Self {
        Self {
            tls,
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(30)),
            follow_redirects: true,
        }
    }

    /// Connects within `timeout` (at most the request timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.min(self.timeout);
        self
    }

    /// Returns redirect answers instead of following them.
    pub fn no_redirects(mut self) -> Self {
        self.follow_redirects = false;
        self
    }

    /// A blocking client (for the exporters' threads; not inside an async task).
    ///
    /// # Errors
    /// When reqwest cannot build it.
    pub fn blocking(self) -> Result<reqwest::blocking::Client, reqwest::Error> {
        build!(reqwest::blocking::Client::builder(), self)
    }

    /// An async client (for the LLM clients).
    ///
    /// # Errors
    /// When reqwest cannot build it.
    pub fn asynchronous(self) -> Result<reqwest::Client, reqwest::Error> {
        build!(reqwest::Client::builder(), self)
    }
}

/// An error with its sources, `: `-separated, each said once (`error sending request:
/// connection refused`): reqwest's own message alone rarely says what went wrong.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Whether `e` or one of its sources is a refused connection (`ECONNREFUSED`: nothing
/// listens on that port) or a host or network known to be unreachable (`EHOSTUNREACH`,
/// `ENETUNREACH`), as opposed to no answer (a reset, a timeout).
pub fn connection_refused(e: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind;
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn chains_skip_what_was_said_already() {
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("refused", None))),
            ))),
        );
        assert_eq!(error_chain(&e), "error sending request: connection refused");
    }
}
