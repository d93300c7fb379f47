//! Starts the real server on port 0 against a fresh database (a SQLite file or
//! a new PostgreSQL database) and talks to it through the generated client, as
//! another service would.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use identity::{
    config::Settings,
    domain::ports::{Clock, EmailSender, OutgoingEmail, SendEmailError},
    grpc::proto::user_service_client::UserServiceClient,
    infrastructure::{Argon2Settings, SystemClock},
    startup::{Application, Overrides},
};
pub use testkit::{Backend, TestDatabase};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const STRONG_PASSWORD: &str = "plum-orbit-canyon-47!";
/// The test servers' IDENTITY_VERIFICATION_URL; a mailer started as a process
/// must be given it too, or it refuses their links.
pub const VERIFICATION_URL: &str = "https://app.example/verify?token={token}";

/// The test servers' IDENTITY_MFA_ENCRYPTION_KEY.
pub const MFA_TEST_KEY: [u8; 32] = [7; 32];

/// A clock the test moves by hand, so expiry is tested without sleeping.
pub struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap();
        *now += by;
    }
}

impl Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap()
    }
}

/// The email provider boundary: records what would have been sent.
#[derive(Default)]
pub struct CapturingSender {
    sent: Mutex<Vec<OutgoingEmail>>,
    arrived: Notify,
}

#[async_trait]
impl EmailSender for CapturingSender {
    fn provider(&self) -> &'static str {
        "capture"
    }

    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendEmailError> {
        self.sent.lock().unwrap().push(email.clone());
        self.arrived.notify_waiters();
        Ok(())
    }
}

impl CapturingSender {
    pub fn sent(&self) -> Vec<OutgoingEmail> {
        self.sent.lock().unwrap().clone()
    }

    /// Waits until at least `count` emails were sent (the relay is asynchronous).
    pub async fn wait_for(&self, count: usize) -> Vec<OutgoingEmail> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let notified = self.arrived.notified();
            let sent = self.sent();
            if sent.len() >= count {
                return sent;
            }
            assert!(tokio::time::Instant::now() < deadline, "expected {count} emails, got {}", sent.len());
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
    }

    /// Gives the relay time to send anything it would send, then returns what was sent.
    pub async fn settle(&self) -> Vec<OutgoingEmail> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.sent()
    }
}

/// The verification token in an email's link.
pub fn token_in(email: &OutgoingEmail) -> String {
    let start = email.text_body.find("token=").expect("the email carries a link with a token") + "token=".len();
    email.text_body[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

pub struct TestApp {
    pub port: u16,
    pub metrics_port: Option<u16>,
    pub client: UserServiceClient<Channel>,
    pub emails: Arc<CapturingSender>,
    pub clock: Arc<TestClock>,
    pub database: TestDatabase,
    stop: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestApp {
    /// What the server's clock reads now.
    pub fn clock_now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://127.0.0.1:{}", self.port)).unwrap().connect().await.unwrap()
    }
}

/// Settings for tests: port 0, cheap argon2 (the cost is covered by the
/// benchmarks, not the tests), a fresh database.
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).unwrap();
    settings.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    settings.database.url = database_url.into();
    settings.passwords.argon2 = Argon2Settings { m_cost: 256, t_cost: 1, p_cost: 1, ..settings.passwords.argon2 };
    // Tests hammer one address on purpose; the rate-limit tests turn these back on.
    settings.telemetry.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    settings.limits.per_address = 0;
    settings.limits.per_email = 0;
    settings.links.verification_url = identity::application::LinkTemplate::parse(VERIFICATION_URL).unwrap();
    settings.mfa.encryption_key = Some(Arc::new(secrecy::SecretBox::new(Box::new(MFA_TEST_KEY))));
    // One signing key for every server of this test, as replicas share theirs.
    settings.tokens.secret_key = Some(test_signing_key());
    settings
}

/// A signing key generated once per test process.
fn test_signing_key() -> secrecy::SecretString {
    static KEY: std::sync::OnceLock<secrecy::SecretString> = std::sync::OnceLock::new();
    KEY.get_or_init(|| identity::infrastructure::PasetoTokens::generate_secret_key().expect("a fresh key").0).clone()
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let database = TestDatabase::for_test(backend).await?;
    let mut settings = test_settings(&database.url());
    configure(&mut settings);
    let emails = Arc::new(CapturingSender::default());
    let clock = Arc::new(TestClock(Mutex::new(SystemClock.now())));
    let overrides = Overrides {
        clock: Some(Arc::clone(&clock) as Arc<dyn Clock>),
        email_sender: Some(Arc::clone(&emails) as Arc<dyn EmailSender>),
    };
    let app = Application::build(settings, overrides).await.expect("the server starts");
    let port = app.port();
    let metrics_port = app.metrics_port();
    let stop = app.shutdown_token();
    tokio::spawn(app.run_until_stopped());
    // Lazy: a TLS test server does not answer this plaintext client, and need not.
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect_lazy();
    let client = UserServiceClient::new(channel);
    Some(TestApp { port, metrics_port, client, emails, clock, database, stop })
}

/// A second server on `app`'s database, as another replica would be: its own
/// clock (starting where `app`'s reads now), emails and caches.
pub struct Replica {
    pub client: UserServiceClient<Channel>,
    stop: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn spawn_replica(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> Replica {
    let mut settings = test_settings(&app.database.url());
    configure(&mut settings);
    let overrides = Overrides {
        clock: Some(Arc::new(TestClock(Mutex::new(app.clock_now()))) as Arc<dyn Clock>),
        email_sender: Some(Arc::new(CapturingSender::default()) as Arc<dyn EmailSender>),
    };
    let replica = Application::build(settings, overrides).await.expect("the second replica starts");
    let port = replica.port();
    let stop = replica.shutdown_token();
    tokio::spawn(replica.run_until_stopped());
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect_lazy();
    Replica { client: UserServiceClient::new(channel), stop }
}

pub fn sign_up_request(email: &str) -> identity::grpc::proto::SignUpRequest {
    identity::grpc::proto::SignUpRequest {
        email: email.to_owned(),
        password: STRONG_PASSWORD.to_owned(),
        ..Default::default()
    }
}

/// Signs up and verifies a user, returning the user's id.
pub async fn verified_user(app: &mut TestApp, email: &str) -> String {
    let user = app.client.sign_up(sign_up_request(email)).await.unwrap().into_inner().user.unwrap();
    // Other emails (notices of earlier steps) may arrive first: wait for this one.
    let token = token_in(&wait_for_email(app, &user.email, "Confirm your email address").await);
    app.client.verify_email(identity::grpc::proto::VerifyEmailRequest { token }).await.unwrap();
    user.id
}

/// A verified user's fresh login: (user id, access token, refresh token).
pub async fn logged_in(app: &mut TestApp, email: &str) -> (String, String, String) {
    let user_id = verified_user(app, email).await;
    let (access, refresh) = login_tokens(app, email, STRONG_PASSWORD).await;
    (user_id, access, refresh)
}

pub async fn login_tokens(app: &mut TestApp, email: &str, password: &str) -> (String, String) {
    let request = identity::grpc::proto::LoginRequest { email: email.into(), password: password.into(), client: None };
    let response = app.client.login(request).await.unwrap().into_inner();
    (response.access_token, response.refresh_token)
}

/// A request carrying `authorization: Bearer <token>`.
pub fn with_bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Adds the trusted client-IP header of a proxy (`x-forwarded-for`) naming
/// `address` as the caller.
pub fn from_address<T>(address: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    request.metadata_mut().insert("x-forwarded-for", address.parse().unwrap());
    request
}

/// Whether ValidateToken accepts the token.
pub async fn is_valid(app: &mut TestApp, token: &str) -> bool {
    let request = identity::grpc::proto::ValidateTokenRequest { access_token: token.into() };
    match app.client.validate_token(request).await {
        Ok(_) => true,
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
            false
        }
    }
}

/// Emails captured so far that went to `to` with `subject`.
pub fn emails_to(app: &TestApp, to: &str, subject: &str) -> Vec<OutgoingEmail> {
    app.emails.sent().into_iter().filter(|e| e.to.as_str() == to && e.subject == subject).collect()
}

/// Waits for an email to `to` with `subject`.
pub async fn wait_for_email(app: &TestApp, to: &str, subject: &str) -> OutgoingEmail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(email) = emails_to(app, to, subject).pop() {
            return email;
        }
        assert!(tokio::time::Instant::now() < deadline, "no {subject:?} email to {to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
