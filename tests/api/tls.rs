//! TLS and mutual TLS on the gRPC listener, with certificates made on the spot.

use std::{path::Path, time::Duration};

use identity::grpc::proto::{GetPublicKeysRequest, user_service_client::UserServiceClient};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{Backend, TestApp, spawn_app_with};

struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, name: &str, purpose: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![purpose];
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

fn write(dir: &Path, leaf: &Leaf) {
    // Write the key first: the server reloads once both files changed.
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
}

async fn tls_app(dir: &Path, client_ca: Option<&Ca>) -> Option<TestApp> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let client_ca_file = client_ca.map(|ca| {
        let path = dir.join("client-ca.crt");
        std::fs::write(&path, ca.pem()).unwrap();
        path
    });
    spawn_app_with(Backend::Sqlite, move |settings| {
        settings.tls = Some(identity::grpc::tls::TlsSettings {
            cert_file: cert,
            key_file: key,
            client_ca_file,
            reload_interval: Duration::from_millis(100),
        });
    })
    .await
}

async fn call(port: u16, ca: &Ca, identity: Option<&Leaf>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())).domain_name("localhost");
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
    }
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    UserServiceClient::new(channel)
        .get_public_keys(GetPublicKeysRequest {})
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
}

fn temp_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("identity-tls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_grpc_and_picks_up_a_renewed_certificate() {
    identity::infrastructure::email::install_crypto_provider();
    let dir = temp_dir();
    let first_ca = Ca::new("first CA");
    write(&dir, &first_ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth));
    // The app builds its own test client over plaintext, which a TLS listener refuses.
    let app = tls_app(&dir, None).await;
    let Some(app) = app else { return };
    call(app.port, &first_ca, None).await.expect("a TLS client is served");

    let plaintext = async {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", app.port)).unwrap().connect().await?;
        Ok::<_, tonic::transport::Error>(
            UserServiceClient::new(channel).get_public_keys(GetPublicKeysRequest {}).await.is_ok(),
        )
    };
    assert!(
        !matches!(tokio::time::timeout(Duration::from_secs(5), plaintext).await, Ok(Ok(true))),
        "plaintext must not be served"
    );

    // cert-manager renews in place: the next connections get the new certificate.
    let second_ca = Ca::new("second CA");
    write(&dir, &second_ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call(app.port, &second_ca, None).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the renewed certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(call(app.port, &first_ca, None).await.is_err(), "the old certificate is gone");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    identity::infrastructure::email::install_crypto_provider();
    let dir = temp_dir();
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let stranger_ca = Ca::new("stranger CA");
    write(&dir, &server_ca.leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth));
    let Some(app) = tls_app(&dir, Some(&client_ca)).await else { return };

    call(app.port, &server_ca, Some(&client_ca.leaf("billing-service", ExtendedKeyUsagePurpose::ClientAuth)))
        .await
        .expect("a client with a certificate from the client CA is served");
    assert!(call(app.port, &server_ca, None).await.is_err(), "no client certificate, no service");
    let stranger = stranger_ca.leaf("intruder", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(call(app.port, &server_ca, Some(&stranger)).await.is_err(), "a certificate from another CA is refused");
    let _ = std::fs::remove_dir_all(dir);
}
