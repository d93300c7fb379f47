//! Optional TLS on the gRPC listener, with the certificate reloaded when its
//! files change (cert-manager renews them in place) and, optionally, mutual TLS
//! against a client CA. ring is the only crypto provider, as everywhere else.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier},
        sign::CertifiedKey,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// A handshake that has not finished by then is dropped, so that slow or
/// malicious clients cannot hold the accept loop.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    pub reload_interval: Duration,
}

fn load_certified_key(settings: &TlsSettings) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&settings.cert_file)
        .with_context(|| format!("cannot read {} (IDENTITY_TLS_CERT_FILE)", settings.cert_file.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!("{} holds no valid PEM certificate (IDENTITY_TLS_CERT_FILE)", settings.cert_file.display())
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "{} holds no certificate (IDENTITY_TLS_CERT_FILE)",
        settings.cert_file.display()
    );
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).with_context(|| {
        format!("cannot read a PEM private key from {} (IDENTITY_TLS_KEY_FILE)", settings.key_file.display())
    })?;
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(chain, key, &provider).context("the TLS certificate and key do not match")
}

fn modified(settings: &TlsSettings) -> Option<(SystemTime, SystemTime)> {
    let cert = std::fs::metadata(&settings.cert_file).and_then(|m| m.modified()).ok()?;
    let key = std::fs::metadata(&settings.key_file).and_then(|m| m.modified()).ok()?;
    Some((cert, key))
}

/// Serves whichever certificate was loaded last.
#[derive(Debug)]
struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|key| Arc::clone(&key))
    }
}

/// Builds the acceptor and starts watching the certificate files.
///
/// # Errors
/// Unreadable or mismatched certificate, key or client CA.
pub fn acceptor(settings: &TlsSettings, stop: CancellationToken) -> anyhow::Result<TlsAcceptor> {
    let resolver = Arc::new(ReloadingResolver { current: RwLock::new(Arc::new(load_certified_key(settings)?)) });
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &settings.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca_file)
                .with_context(|| format!("cannot read {} (IDENTITY_TLS_CLIENT_CA_FILE)", ca_file.display()))?
            {
                roots
                    .add(certificate.context("invalid PEM in IDENTITY_TLS_CLIENT_CA_FILE")?)
                    .context("invalid client CA")?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("cannot build the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    // gRPC runs over HTTP/2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio::spawn(watch(settings.clone(), resolver, stop));
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn watch(settings: TlsSettings, resolver: Arc<ReloadingResolver>, stop: CancellationToken) {
    let mut seen = modified(&settings);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(settings.reload_interval) => {}
        }
        let now = modified(&settings);
        if now.is_none() || now == seen {
            continue;
        }
        match load_certified_key(&settings) {
            Ok(key) => {
                if let Ok(mut current) = resolver.current.write() {
                    *current = Arc::new(key);
                }
                seen = now;
                tracing::info!(cert = %settings.cert_file.display(), "TLS certificate reloaded");
            }
            // Half-written files during a renewal: keep serving the old pair and retry.
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "TLS certificate changed but could not be loaded; keeping the previous one"
            ),
        }
    }
}

/// Accepts TCP connections and hands completed TLS handshakes to the server.
pub fn incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    stop: CancellationToken,
) -> ReceiverStream<std::io::Result<TlsStream<tokio::net::TcpStream>>> {
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, peer)) = accepted else { continue };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(error)) => tracing::info!(peer = %peer, error = %error, "TLS handshake failed"),
                    Err(_) => tracing::info!(peer = %peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(receiver)
}
