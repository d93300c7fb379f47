//! The mailer's composition root: consumes email events from RabbitMQ and sends
//! them through the configured provider, exposing gRPC health.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use secrecy::SecretString;
use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use crate::{
    application::{DeliverEmail, ExpectedEmails, HandleEmailEvent, RetryPolicy},
    config::{ConfigError, EmailSettings, LogFormat, Source, error},
    domain::ports::{Clock, EmailSender},
    grpc::mailer_health,
    infrastructure::{
        SystemClock,
        email::build_sender,
        rabbitmq::{MailerConsumer, MailerTopology},
        sea_orm::{DatabaseSettings, SeaOrmDeliveryLog, connect},
    },
    observability::{Metrics, metrics_server},
};

#[derive(Debug, Clone)]
pub struct MailerSettings {
    pub amqp_url: SecretString,
    pub exchange: String,
    pub queue: String,
    pub prefetch: u16,
    pub retry: RetryPolicy,
    pub database: DatabaseSettings,
    pub auto_migrate: bool,
    pub email: EmailSettings,
    /// The only links the mailer sends: those the server makes.
    pub expected: ExpectedEmails,
    pub health_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub log_format: LogFormat,
}

impl MailerSettings {
    /// # Errors
    /// The first invalid variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// # Errors
    /// The first invalid variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Source(lookup);
        let amqp = crate::config::AmqpSettings::from_source(&env)?.ok_or_else(|| {
            error("IDENTITY_AMQP_URL", "is required by the mailer (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)")
        })?;
        let max_attempts: u32 = env.parsed("IDENTITY_MAILER_MAX_ATTEMPTS", 8)?;
        if max_attempts == 0 {
            return Err(error("IDENTITY_MAILER_MAX_ATTEMPTS", "must be at least 1"));
        }
        let prefetch: u16 = env.parsed("IDENTITY_MAILER_PREFETCH", 16)?;
        if prefetch == 0 {
            return Err(error("IDENTITY_MAILER_PREFETCH", "must be at least 1"));
        }
        let log_format = crate::config::log_format(&env)?;
        Ok(Self {
            amqp_url: amqp.url,
            exchange: amqp.exchange,
            queue: env.string("IDENTITY_MAILER_QUEUE", "identity.mailer"),
            prefetch,
            retry: RetryPolicy {
                max_attempts,
                base_delay: env.positive_duration("IDENTITY_MAILER_RETRY_DELAY", Duration::from_secs(1))?,
                max_delay: env.positive_duration("IDENTITY_MAILER_MAX_RETRY_DELAY", Duration::from_secs(300))?,
            },
            database: DatabaseSettings {
                url: SecretString::from(env.string("IDENTITY_DATABASE_URL", "sqlite://identity.db?mode=rwc")),
                max_connections: env.parsed("IDENTITY_DATABASE_MAX_CONNECTIONS", 10)?,
                acquire_timeout: env.positive_duration("IDENTITY_DATABASE_ACQUIRE_TIMEOUT", Duration::from_secs(5))?,
            },
            auto_migrate: env.boolean("IDENTITY_AUTO_MIGRATE", true)?,
            email: EmailSettings::from_source(&env)?,
            expected: crate::config::expected_emails(&env)?,
            health_addr: env.parsed("IDENTITY_MAILER_HEALTH_ADDR", SocketAddr::from(([127, 0, 0, 1], 50052)))?,
            metrics_addr: crate::config::metrics_addr(&env)?,
            log_format,
        })
    }
}

/// Replacements for tests.
#[derive(Default, Clone)]
pub struct MailerOverrides {
    pub clock: Option<Arc<dyn Clock>>,
    pub email_sender: Option<Arc<dyn EmailSender>>,
}

pub struct Mailer {
    consumer: MailerConsumer,
    metrics: Arc<Metrics>,
    metrics_listener: Option<TcpListener>,
    health_listener: TcpListener,
    health_addr: SocketAddr,
    connected: watch::Receiver<bool>,
    stop: CancellationToken,
}

impl Mailer {
    /// # Errors
    /// Unreachable database, failed migration, a provider that cannot be built,
    /// or the health address is taken. An unreachable broker is not an error:
    /// the mailer keeps trying, NOT_SERVING meanwhile.
    pub async fn build(settings: MailerSettings, overrides: MailerOverrides) -> anyhow::Result<Self> {
        let db = connect(&settings.database).await?;
        if settings.auto_migrate {
            crate::startup::migrate(&db).await?;
        }
        let metrics = Arc::new(Metrics::new());
        let sender = match overrides.email_sender {
            Some(sender) => sender,
            None => {
                if settings.email.provider == crate::config::EmailProvider::Console {
                    tracing::warn!(
                        "IDENTITY_EMAIL_PROVIDER=console: every verification and password-reset link is written to the log; for development only"
                    );
                }
                build_sender(&settings.email, &metrics)?
            }
        };
        let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let handler = HandleEmailEvent {
            log: Arc::new(SeaOrmDeliveryLog::new(db)),
            deliver: DeliverEmail { sender },
            expected: settings.expected,
            clock,
            retry: settings.retry,
        };
        let (connected_tx, connected) = watch::channel(false);
        let consumer = MailerConsumer {
            url: settings.amqp_url,
            topology: MailerTopology::new(&settings.exchange, &settings.queue),
            prefetch: settings.prefetch,
            handler: Arc::new(handler),
            metrics: Arc::clone(&metrics),
            connected: connected_tx,
        };
        let metrics_listener = match settings.metrics_addr {
            Some(addr) => Some(metrics_server::bind(addr).await?),
            None => None,
        };
        let health_listener = mailer_health::bind(settings.health_addr).await?;
        let health_addr = health_listener.local_addr()?;
        tracing::info!(health = %health_addr, queue = settings.queue.as_str(), "identity mailer starting");
        Ok(Self {
            consumer,
            health_listener,
            health_addr,
            connected,
            metrics,
            metrics_listener,
            stop: CancellationToken::new(),
        })
    }

    /// The port `/metrics` is served on, if it is.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    pub fn health_port(&self) -> u16 {
        self.health_addr.port()
    }

    /// Cancelling it stops consuming, finishes the messages in flight and exits.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Whether the mailer holds a broker connection, as health reports it.
    pub fn connection_state(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// # Errors
    /// The health server failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let health = tokio::spawn(mailer_health::serve(self.health_listener, self.connected, self.stop.clone()));
        if let Some(listener) = self.metrics_listener {
            tokio::spawn(metrics_server::serve(listener, Arc::clone(&self.metrics), self.stop.clone()));
        }
        self.consumer.run(self.stop.clone()).await;
        self.stop.cancel();
        let result = health.await.map_err(anyhow::Error::new).and_then(|r| r);
        tracing::info!("identity mailer stopped");
        result
    }
}
