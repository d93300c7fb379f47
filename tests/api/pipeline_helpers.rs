//! A server publishing to the real RabbitMQ, the real mailer consuming from it,
//! and a wiremock SendGrid: the whole email path with only the provider faked.

use std::{sync::Arc, time::Duration};

use identity::{
    application::{ExpectedEmails, RetryPolicy},
    config::{AmqpSettings, ConsumerSettings, MailerSettings, TelemetrySettings},
    domain::{Email, ports::Clock},
    infrastructure::{
        email::{EmailProvider, EmailSettings},
        rabbitmq::MailerTopology,
        sea_orm::DatabaseSettings,
    },
    startup::{Mailer, Overrides},
    telemetry::LogFormat,
};
use lapin::{Connection, ConnectionProperties, options::ExchangeDeleteOptions, options::QueueDeleteOptions};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use wiremock::{
    Mock, MockServer, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{Backend, TestApp, spawn_app_with};

pub const SENDGRID_KEY: &str = "SG.test-key-not-real";

pub fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Whether RabbitMQ answers; locally a missing broker skips, in CI it fails.
pub async fn broker_available() -> bool {
    match Connection::connect(&amqp_url(), ConnectionProperties::default()).await {
        Ok(connection) => {
            let _ = connection.close(200, "probe".into()).await;
            true
        }
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping: RabbitMQ unreachable at {}: {error}", amqp_url());
            false
        }
        Err(error) => panic!("RabbitMQ unreachable and CI is set: {error}"),
    }
}

/// Exchange and queue names of one test, so that tests never see each other's messages.
pub struct Names {
    pub topology: MailerTopology,
}

impl Names {
    pub fn fresh() -> Self {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        Self {
            topology: MailerTopology::new(
                &format!("identity.test.{unique}"),
                &format!("identity.test.{unique}.mailer"),
            ),
        }
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let Ok(connection) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in [&topology.queue, &topology.retry_queue, &topology.dead_letter_queue] {
                        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
                    }
                    let _ = channel
                        .exchange_delete(topology.exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "cleanup".into()).await;
            });
        })
        .join();
    }
}

pub struct Pipeline {
    pub app: TestApp,
    pub sendgrid: MockServer,
    pub names: Names,
    mailer_stop: Option<CancellationToken>,
    mailer_task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(stop) = &self.mailer_stop {
            stop.cancel();
        }
    }
}

pub async fn sendgrid_accepting() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    server
}

/// The broker at `url`, with emails and user events on the test's `exchange`.
pub fn amqp_settings(url: &str, exchange: &str) -> AmqpSettings {
    AmqpSettings {
        url: SecretString::from(url.to_owned()),
        exchange: exchange.to_owned(),
        events_exchange: exchange.to_owned(),
        events_source: "/identity".to_owned(),
    }
}

/// The server, publishing to RabbitMQ through `amqp_url` (the real broker
/// unless a test puts a proxy in between).
pub async fn start_server(backend: Backend, names: &Names, amqp_url: &str) -> Option<TestApp> {
    let amqp = amqp_settings(amqp_url, &names.topology.exchange);
    spawn_app_with(backend, move |settings| {
        settings.amqp = Some(amqp);
        settings.outbox.poll_interval = Duration::from_millis(200);
        settings.outbox.max_backoff = Duration::from_millis(500);
    })
    .await
}

pub fn mailer_settings(app: &TestApp, names: &Names, sendgrid: &MockServer) -> MailerSettings {
    MailerSettings {
        amqp: amqp_settings(&amqp_url(), &names.topology.exchange),
        consumer: ConsumerSettings {
            queue: names.topology.queue.clone(),
            prefetch: 16,
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(5),
            },
            health_addr: "127.0.0.1:0".parse().unwrap(),
        },
        database: DatabaseSettings {
            url: app.database.url().into(),
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
            // The server already migrated this database.
            auto_migrate: false,
        },
        email: EmailSettings {
            provider: EmailProvider::SendGrid,
            from: Email::parse("no-reply@identity.test").unwrap(),
            sendgrid_api_key: Some(SecretString::from(SENDGRID_KEY)),
            sendgrid_base_url: sendgrid.uri(),
            smtp_url: None,
            timeout: Duration::from_secs(5),
        },
        expected: {
            // The links the test server makes, as the mailer would read them.
            let server = crate::helpers::test_settings(&app.database.url());
            ExpectedEmails {
                verification_links: server.links.verification_url,
                reset_links: server.links.password_reset_url,
                email_change_links: server.links.email_change_url,
            }
        },
        telemetry: TelemetrySettings { log_format: LogFormat::Json, metrics_addr: None, otlp: None },
    }
}

/// Starts the mailer and waits until it holds a broker connection.
pub async fn start_mailer(
    app: &TestApp,
    names: &Names,
    sendgrid: &MockServer,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>, u16) {
    let overrides = Overrides { clock: Some(Arc::clone(&app.clock) as Arc<dyn Clock>), email_sender: None };
    let mailer = Mailer::build(mailer_settings(app, names, sendgrid), overrides).await.expect("the mailer starts");
    let stop = mailer.shutdown_token();
    let port = mailer.health_port();
    let mut connected = mailer.connection_state();
    let task = tokio::spawn(mailer.run_until_stopped());
    tokio::time::timeout(Duration::from_secs(20), connected.wait_for(|is_up| *is_up))
        .await
        .expect("the mailer connects")
        .unwrap();
    (stop, task, port)
}

impl Pipeline {
    /// Server, mailer and fake SendGrid, all connected; `None` when a service is
    /// missing locally.
    pub async fn start(backend: Backend, sendgrid: MockServer) -> Option<Self> {
        if !broker_available().await {
            return None;
        }
        let names = Names::fresh();
        let app = start_server(backend, &names, &amqp_url()).await?;
        Some(Self::with_app(app, sendgrid, names).await)
    }

    /// The mailer, started for a server already publishing to `names`.
    pub async fn with_app(app: TestApp, sendgrid: MockServer, names: Names) -> Self {
        let mut pipeline = Self { app, sendgrid, names, mailer_stop: None, mailer_task: None };
        pipeline.start_mailer().await;
        pipeline
    }

    pub async fn start_mailer(&mut self) -> u16 {
        let (stop, task, port) = start_mailer(&self.app, &self.names, &self.sendgrid).await;
        self.mailer_stop = Some(stop);
        self.mailer_task = Some(task);
        port
    }

    /// Stops the mailer the graceful way and waits for it to exit.
    pub async fn stop_mailer(&mut self) {
        if let Some(stop) = self.mailer_stop.take() {
            stop.cancel();
        }
        if let Some(task) = self.mailer_task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// The requests SendGrid received.
    pub async fn sendgrid_requests(&self) -> Vec<wiremock::Request> {
        self.sendgrid.received_requests().await.unwrap_or_default()
    }

    /// Waits until SendGrid received at least `count` requests.
    pub async fn wait_for_requests(&self, count: usize) -> Vec<wiremock::Request> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let requests = self.sendgrid_requests().await;
            if requests.len() >= count {
                return requests;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {count} SendGrid requests, got {}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The verification token in a SendGrid request's text body.
pub fn token_in_request(request: &wiremock::Request) -> String {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let text = body["content"][0]["value"].as_str().unwrap();
    let start = text.find("token=").unwrap() + "token=".len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect()
}

pub fn recipient_of(request: &wiremock::Request) -> String {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    body["personalizations"][0]["to"][0]["email"].as_str().unwrap().to_owned()
}
