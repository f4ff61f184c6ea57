//! agent-profiler's private HTTP layer: what its exporters (MLflow, OTLP) and its LLM clients
//! share, written once. Not a public API of its own; the exporters' and clients' types are
//! (some re-exported from here: `Secret`, `Auth`).
//!
//! - [`tls`]: the one TLS setup (rustls, the platform's verifier, an extra CA, or none), and
//!   what a refused certificate says. Used by every client.
//! - [`client`]: the reqwest clients built from it (blocking for the exporters, async for the
//!   LLM clients), and the text of their errors.
//! - [`retry`]: the one retry policy (what is retried, backoff with jitter, `Retry-After`
//!   in seconds or as a date) and the loop that applies it; the MLflow client and the OTLP
//!   exporter send through it.
//! - [`secret`]: the secret type and the redactor that keeps secrets out of `Debug`, errors,
//!   statistics and warnings; [`url`]: user info hidden in URLs, percent-decoding.
//! - [`auth`]: `Authorization` headers (bearer, basic) and sensitive header values.
//! - [`env`](mod@env): environment variables read the same way by every output.
//! - [`sender`]: the background sender of both exporters (queue, counters, warn-once, flush,
//!   shutdown with a deadline); [`wait`]: the lock and the deadline-bounded waits under it.
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod env;
pub mod retry;
pub mod secret;
pub mod sender;
pub mod tls;
pub mod url;
pub mod wait;
