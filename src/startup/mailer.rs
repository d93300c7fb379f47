//! The mailer's composition root: consumes email events from RabbitMQ and sends
//! them through the configured provider, exposing gRPC health.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;

use super::Overrides;
use crate::{
    application::{DeliverEmail, HandleEmailEvent},
    config::MailerSettings,
    grpc::mailer_health,
    infrastructure::{rabbitmq::MailerTopology, sea_orm::SeaOrmDeliveryLog},
    observability::{Metrics, metrics_server},
    workers::MailerConsumer,
};

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
    pub async fn build(settings: MailerSettings, overrides: Overrides) -> anyhow::Result<Self> {
        let db = super::open_database(&settings.database).await?;
        let metrics = Arc::new(Metrics::new());
        let handler = HandleEmailEvent {
            log: Arc::new(SeaOrmDeliveryLog::new(db)),
            deliver: DeliverEmail { sender: overrides.email_sender(&settings.email, &metrics)? },
            expected: settings.expected,
            clock: overrides.clock(),
            retry: settings.consumer.retry,
        };
        let (connected_tx, connected) = watch::channel(false);
        let consumer = MailerConsumer {
            url: settings.amqp.url,
            topology: MailerTopology::new(&settings.amqp.exchange, &settings.consumer.queue),
            prefetch: settings.consumer.prefetch,
            handler: Arc::new(handler),
            metrics: Arc::clone(&metrics),
            connected: connected_tx,
        };
        let metrics_listener = match settings.telemetry.metrics_addr {
            Some(addr) => Some(metrics_server::bind(addr).await?),
            None => None,
        };
        let health_listener = mailer_health::bind(settings.consumer.health_addr).await?;
        let health_addr = health_listener.local_addr()?;
        tracing::info!(health = %health_addr, queue = settings.consumer.queue.as_str(), "identity mailer starting");
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
