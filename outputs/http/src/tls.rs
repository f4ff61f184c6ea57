//! The one TLS setup of every HTTP client of agent-profiler (the MLflow client, the OTLP
//! exporter, the LLM clients): rustls with the `ring` provider and the platform's verifier,
//! plus any extra CA file, or no verification when the user asked for it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use rustls::ClientConfig;

/// Accepts any certificate: only when the user turned verification off
/// (`MLFLOW_TRACKING_INSECURE_TLS=true`, `OtlpConfig::insecure_tls(true)`...).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A client configuration for HTTP/1.1: no certificate checks when `insecure`, else the
/// platform's verifier with the certificates of the PEM file `ca_file` trusted as well. The
/// error is a message for the caller's own error type.
pub fn client_config(
    insecure: bool,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if insecure {
        Arc::new(NoVerification(provider))
    } else {
        let mut extra = Vec::new();
        if let Some(path) = ca_file {
            use rustls::pki_types::pem::PemObject;
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read CA file {}: {e}", path.display()))?;
            for cert in certs {
                extra
                    .push(cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?);
            }
        }
        Arc::new(
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
                .map_err(|e| format!("TLS certificate verifier: {e}"))?,
        )
    };
    let mut tls = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// The certificate problem behind a failed request (`e` or any of its sources), if that is
/// what it is: the message to show instead of reqwest's generic "error sending request".
pub fn certificate_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    /// A rustls error in `e`'s sources, also inside `io::Error`s (whose `source` skips the
    /// error they wrap).
    fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = find(inner)
        {
            return Some(tls);
        }
        e.source().and_then(find)
    }
    match find(e)? {
        tls @ (rustls::Error::InvalidCertificate(_)
        | rustls::Error::InvalidCertRevocationList(_)) => Some(tls.to_string()),
        _ => None,
    }
}
