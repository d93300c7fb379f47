//! `IDENTITY_TLS_*`: TLS on the gRPC listener, mutual when a client CA is given.

use std::time::Duration;

use super::{ConfigError, Source, error};
use crate::grpc::tls::TlsSettings;

/// `None` serves plaintext (behind a mesh, say).
///
/// # Errors
/// A certificate without its key or the other way round, a client CA without
/// either, or an invalid reload interval.
pub fn tls<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<Option<TlsSettings>, ConfigError> {
    let cert = env.get("IDENTITY_TLS_CERT_FILE");
    let key = env.get("IDENTITY_TLS_KEY_FILE");
    let client_ca = env.get("IDENTITY_TLS_CLIENT_CA_FILE");
    match (cert, key) {
        (None, None) if client_ca.is_some() => Err(error(
            "IDENTITY_TLS_CLIENT_CA_FILE",
            "needs IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE (mutual TLS is TLS)",
        )),
        (None, None) => Ok(None),
        (Some(_), None) => Err(error("IDENTITY_TLS_KEY_FILE", "is required with IDENTITY_TLS_CERT_FILE")),
        (None, Some(_)) => Err(error("IDENTITY_TLS_CERT_FILE", "is required with IDENTITY_TLS_KEY_FILE")),
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert_file: cert.trim().into(),
            key_file: key.trim().into(),
            client_ca_file: client_ca.map(|ca| ca.trim().into()),
            reload_interval: env.positive_duration("IDENTITY_TLS_RELOAD_INTERVAL", Duration::from_secs(30))?,
        })),
    }
}
