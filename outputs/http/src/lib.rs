//! agent-profiler's private HTTP layer: what its exporters (MLflow, OTLP) and its LLM clients
//! share, written once. Not a public API of its own; the exporters' and clients' types are.
//!
//! - [`tls`]: the one TLS setup (rustls, the platform's verifier, an extra CA, or none);
//! - [`wait`]: locks that survive poisoning and condvar waits bounded by a deadline, for the
//!   background senders' shutdown.
#![warn(missing_docs)]

pub mod tls;
pub mod wait;
