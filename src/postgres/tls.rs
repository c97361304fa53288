//! TLS for the PostgreSQL connection, as libpq's `sslmode` asks.
//!
//! Whether TLS is attempted at all is tokio-postgres' `SslMode` (set by
//! `connect`); this module decides what a handshake accepts:
//!
//! | sslmode | certificate check |
//! |---|---|
//! | disable, allow, prefer, require | none (libpq checks nothing either) |
//! | verify-ca | chain up to a trusted root; the host name is not checked |
//! | verify-full | chain and host name |
//!
//! Trusted roots come from `OPTIONS.sslrootcert` (a PEM file), or from the
//! system's store (`rustls-native-certs`, which honours `SSL_CERT_FILE`)
//! when it is unset or `system` (libpq's spelling for the same). Unlike
//! libpq, an unset sslrootcert does not mean `~/.postgresql/root.crt`: in a
//! container that file is never there, and the system store is what users mean.
//!
//! The handshake signatures are always verified (with ring), even when the
//! certificate is not: that costs nothing and keeps the session keys honest.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::settings::{DatabaseSettings, SslMode};

/// Why no TLS configuration could be built from the settings; one line,
/// naming the setting to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettingsError(pub String);

/// The TLS connector for these settings (used only when a handshake happens).
pub(crate) fn connector(db: &DatabaseSettings) -> Result<MakeRustlsConnect, TlsSettingsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match db.sslmode.value {
        SslMode::Disable | SslMode::Allow | SslMode::Prefer | SslMode::Require => {
            Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })
        }
        SslMode::VerifyCa => Arc::new(ChainOnly(webpki_verifier(db, &provider)?)),
        SslMode::VerifyFull => webpki_verifier(db, &provider)?,
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsSettingsError(format!("TLS setup failed: {error}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn webpki_verifier(
    db: &DatabaseSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, TlsSettingsError> {
    let roots = trusted_roots(db)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|error| TlsSettingsError(format!("TLS setup failed: {error}")))
}

fn trusted_roots(db: &DatabaseSettings) -> Result<RootCertStore, TlsSettingsError> {
    let mode = db.sslmode.value.as_str();
    match &db.sslrootcert {
        Some(file) if file.value != Path::new("system") => {
            let path = &file.value;
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|error| {
                    TlsSettingsError(format!(
                        "sslrootcert {} (from {}) could not be read: {error}; \
                         fix DATABASES.default.OPTIONS.sslrootcert",
                        path.display(),
                        file.source
                    ))
                })?;
            let mut roots = RootCertStore::empty();
            let (_, unusable) = roots.add_parsable_certificates(certs);
            if roots.is_empty() {
                return Err(TlsSettingsError(format!(
                    "sslrootcert {} (from {}) holds no usable CA certificate \
                     ({unusable} rejected); sslmode={mode} needs one: fix DATABASES.default.OPTIONS.sslrootcert",
                    path.display(),
                    file.source
                )));
            }
            Ok(roots)
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsSettingsError(format!(
                    "sslmode={mode} needs trusted CA certificates but the system store has none: \
                     set DATABASES.default.OPTIONS.sslrootcert to the server's CA file"
                )));
            }
            Ok(roots)
        }
    }
}

/// sslmode disable/allow/prefer/require: encryption without authentication
/// of the server, exactly what libpq does for these modes.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// sslmode verify-ca: the full webpki check, except that a certificate
/// valid for another name is accepted. webpki checks the chain (and
/// validity dates) before the name, so "not valid for name" means the chain
/// itself was good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
