//! TLS with the node's own certificate, for the plain-text ports (`tls` on the peer port, the
//! chat port's TLS mode).
//!
//! The certificate is the self-signed X.509 certificate on the node's Ed25519 agent key, so a
//! client that knows the agent id can check it is talking to that node. Clients that do not
//! (an interactive `kith shell` session against an address) get encryption without
//! authentication: [`client_config`] accepts any certificate whose handshake signature is
//! valid, and reports the agent id in the certificate so the user can compare it.

use kith_crypto::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS setup: {0}")]
pub struct TlsError(String);

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting the node certificate.
pub fn server_config(identity: &Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let cert = identity
        .self_signed_certificate()
        .map_err(|e| TlsError(e.to_string()))?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.agent_pkcs8_der().to_vec(),
    ));
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.der)], key)
        .map_err(|e| TlsError(e.to_string()))?;
    Ok(Arc::new(config))
}

/// A client configuration that encrypts but does not authenticate the server (its certificate
/// is self-signed); the handshake signature is still checked, so the server holds the key of
/// the certificate it shows.
pub fn client_config() -> Arc<ClientConfig> {
    let provider = provider();
    let verifier = Arc::new(AnyNodeCertificate(Arc::clone(&provider)));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| unreachable!("the ring provider supports the default versions"));
    Arc::new(config)
}

/// The server name a client presents (the certificate's SAN).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from(kith_crypto::identity::CERTIFICATE_DNS_NAME)
        .unwrap_or_else(|_| unreachable!("a valid DNS name"))
}

#[derive(Debug)]
struct AnyNodeCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyNodeCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_client_completes_a_handshake_with_the_node_certificate() {
        let identity = Identity::generate(&mut rand::rngs::OsRng);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&identity).unwrap());
        let connector = tokio_rustls::TlsConnector::from(client_config());
        let (client, server) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut tls = acceptor.accept(server).await.unwrap();
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.unwrap();
            tls.write_all(&buf).await.unwrap();
            tls.flush().await.unwrap();
        });
        let mut tls = connector.connect(server_name(), client).await.unwrap();
        tls.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        tls.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        let (_, session) = tls.get_ref();
        let cert = &session.peer_certificates().unwrap()[0];
        let expected = identity.self_signed_certificate().unwrap().der;
        assert_eq!(cert.as_ref(), expected.as_slice());
        server.await.unwrap();
    }
}
