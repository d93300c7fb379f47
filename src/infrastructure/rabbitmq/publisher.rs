use std::time::Duration;

use async_trait::async_trait;
use lapin::{BasicProperties, Channel, Confirmation, Connection, options::BasicPublishOptions, types::FieldTable};
use secrecy::SecretString;
use tokio::sync::Mutex;

use super::{cloud_events, connect, declare_exchange, headers::long_string};
use crate::{
    domain::ports::{OutboxEvent, OutboxPublisher, PublishError},
    infrastructure::outbox::user_events,
    observability::trace_context,
};

/// How long the broker may take to confirm a message before we treat the
/// connection as broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// AMQP delivery mode 2: written to disk by the broker.
const PERSISTENT: u8 = 2;

/// What the publisher publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Messages {
    /// JSON for the mailer, `mandatory`: an email nobody is bound for comes back.
    Emails,
    /// User events as CloudEvents (binary mode, protobuf data) from `source`,
    /// not `mandatory`: nobody listening is fine.
    UserEvents { source: String },
}

/// Publishes outbox events to the topic exchange, one confirmed message at a
/// time, on a connection of its own.
pub struct RabbitMqPublisher {
    url: SecretString,
    exchange: String,
    messages: Messages,
    link: Mutex<Option<(Connection, Channel)>>,
}

impl RabbitMqPublisher {
    /// The emails' publisher.
    pub fn new(url: SecretString, exchange: String) -> Self {
        Self { url, exchange, messages: Messages::Emails, link: Mutex::new(None) }
    }

    /// The user events' publisher; `source` is their CloudEvents source.
    pub fn for_user_events(url: SecretString, exchange: String, source: String) -> Self {
        Self { url, exchange, messages: Messages::UserEvents { source }, link: Mutex::new(None) }
    }

    /// The message body and properties of `row`.
    fn message(&self, row: &OutboxEvent) -> Result<(Vec<u8>, BasicProperties), PublishError> {
        match &self.messages {
            Messages::Emails => Ok((row.payload.as_bytes().to_vec(), Self::properties(row, "application/json"))),
            Messages::UserEvents { source } => {
                let body = user_events::from_payload(&row.payload).map_err(PublishError::Permanent)?;
                let subject = row
                    .user_id
                    .map(|user| user.hyphenated().to_string())
                    .ok_or_else(|| PublishError::Permanent(anyhow::anyhow!("the user event names no user")))?;
                let mut properties = Self::properties(row, cloud_events::CONTENT_TYPE);
                let mut headers = properties.headers().clone().unwrap_or_default();
                for (name, value) in &cloud_events::attribute_headers(row, source, &subject) {
                    headers.insert(name.clone(), value.clone());
                }
                properties = properties.with_headers(headers);
                Ok((body, properties))
            }
        }
    }

    fn properties(row: &OutboxEvent, content_type: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        // The publish span's context: the mailer's spans become its children.
        for (name, value) in trace_context::inject(&tracing::Span::current()).unwrap_or_default() {
            headers.insert(name.as_str().into(), long_string(&value));
        }
        BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_content_type(content_type.into())
            .with_message_id(row.id.to_string().into())
            .with_type(row.event_type.as_str().into())
            .with_timestamp(u64::try_from(row.created_at.unix_timestamp()).unwrap_or_default())
            .with_app_id("identity-server".into())
            .with_headers(headers)
    }
}

#[async_trait]
impl OutboxPublisher for RabbitMqPublisher {
    fn name(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, row: &OutboxEvent) -> Result<(), PublishError> {
        tracing::Span::current().record("messaging.destination.name", self.exchange.as_str());
        let (body, properties) = self.message(row)?;
        let is_mandatory = self.messages == Messages::Emails;
        let mut link = self.link.lock().await;
        let is_connected = link
            .as_ref()
            .is_some_and(|(connection, channel)| connection.status().connected() && channel.status().connected());
        if !is_connected {
            let (connection, channel) =
                connect(&self.url, "identity-server outbox relay").await.map_err(PublishError::Transient)?;
            declare_exchange(&channel, &self.exchange)
                .await
                .map_err(|e| PublishError::Transient(anyhow::Error::new(e).context("declaring the exchange")))?;
            tracing::info!(exchange = self.exchange.as_str(), "outbox relay connected to RabbitMQ");
            *link = Some((connection, channel));
        }
        let Some((_, channel)) = link.as_ref() else {
            return Err(PublishError::Transient(anyhow::anyhow!("no RabbitMQ channel")));
        };
        let publish = async {
            channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    row.event_type.as_str().into(),
                    // Mandatory for emails: one no queue is bound for comes back
                    // to us instead of vanishing, and stays in the outbox. User
                    // events are for whoever listens, maybe nobody yet.
                    BasicPublishOptions { mandatory: is_mandatory, ..BasicPublishOptions::default() },
                    &body,
                    properties,
                )
                .await?
                .await
        };
        let outcome = tokio::time::timeout(CONFIRM_TIMEOUT, publish).await;
        let broken = |error: anyhow::Error| PublishError::Transient(error);
        match outcome {
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(broken(anyhow::anyhow!(
                "RabbitMQ returned the message: no queue is bound to exchange {} for {}; has the mailer declared its topology?",
                self.exchange,
                row.event_type
            ))),
            Ok(Ok(Confirmation::Nack(_))) => Err(broken(anyhow::anyhow!("RabbitMQ refused the message (nack)"))),
            Ok(Ok(Confirmation::NotRequested)) => Err(broken(anyhow::anyhow!("publisher confirms are not enabled"))),
            Ok(Err(error)) => {
                *link = None;
                Err(broken(anyhow::Error::new(error).context("publishing to RabbitMQ")))
            }
            Err(_) => {
                *link = None;
                Err(broken(anyhow::anyhow!("RabbitMQ did not confirm within {CONFIRM_TIMEOUT:?}")))
            }
        }
    }
}
