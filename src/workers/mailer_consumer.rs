use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions,
    },
    types::{AMQPValue, FieldTable},
};
use secrecy::SecretString;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    application::{Disposition, HandleEmailEvent},
    infrastructure::{
        outbox::payload,
        rabbitmq::{
            ATTEMPT_HEADER, DEAD_LETTER_REASON_HEADER, LAST_ERROR_HEADER, MailerTopology, connect, integer_header,
            long_string, string_header, with_headers,
        },
    },
    observability::{
        Metrics,
        trace_context::{self, Carrier},
    },
};

const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// Consumes email events: manual acks, bounded prefetch, one task per message
/// in flight. A message is acknowledged only after its email was accepted by
/// the provider, or after it was safely moved to the retry or dead-letter queue.
pub struct MailerConsumer {
    pub url: SecretString,
    pub topology: MailerTopology,
    pub prefetch: u16,
    pub handler: Arc<HandleEmailEvent>,
    pub metrics: Arc<Metrics>,
    /// `true` while connected to the broker; health follows it.
    pub connected: watch::Sender<bool>,
}

impl MailerConsumer {
    /// Runs until `stop` is cancelled, reconnecting with backoff when the broker
    /// goes away. On stop: cancels the consumer, finishes the messages in
    /// flight, acknowledges them, and closes the connection.
    pub async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::ZERO;
        while !stop.is_cancelled() {
            match connect(&self.url, "identity-mailer").await {
                Ok((connection, channel)) => match self.topology.declare(&channel).await {
                    Ok(()) => {
                        backoff = Duration::ZERO;
                        self.connected.send_replace(true);
                        tracing::info!(queue = self.topology.queue.as_str(), "mailer connected to RabbitMQ");
                        let result = self.consume(&channel, &stop).await;
                        self.connected.send_replace(false);
                        close(&connection, &channel).await;
                        match result {
                            Ok(()) => break,
                            Err(error) => tracing::warn!(error = format!("{error:#}"), "lost the RabbitMQ connection"),
                        }
                    }
                    Err(error) => tracing::warn!(error = %error, "cannot declare the mailer topology"),
                },
                Err(error) => tracing::warn!(error = format!("{error:#}"), "cannot reach RabbitMQ"),
            }
            backoff = (backoff * 2).clamp(Duration::from_millis(200), MAX_RECONNECT_BACKOFF);
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
        }
        self.connected.send_replace(false);
        tracing::info!("mailer consumer stopped");
    }

    async fn consume(&self, channel: &Channel, stop: &CancellationToken) -> anyhow::Result<()> {
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        let tag = format!("identity-mailer-{}", uuid::Uuid::new_v4());
        let mut deliveries = channel
            .basic_consume(
                self.topology.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut in_flight = JoinSet::new();
        let outcome = loop {
            tokio::select! {
                () = stop.cancelled() => {
                    tracing::info!(in_flight = in_flight.len(), "stopping: no new messages, finishing those in flight");
                    let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    break Ok(());
                }
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => {
                        let worker = Worker {
                            channel: channel.clone(),
                            topology: self.topology.clone(),
                            handler: Arc::clone(&self.handler),
                            metrics: Arc::clone(&self.metrics),
                        };
                        in_flight.spawn(worker.process(delivery));
                    }
                    Some(Err(error)) => break Err(anyhow::Error::new(error).context("consuming from RabbitMQ")),
                    None => break Err(anyhow::anyhow!("the RabbitMQ consumer was cancelled by the broker")),
                },
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            }
        };
        while in_flight.join_next().await.is_some() {}
        outcome
    }
}

async fn close(connection: &Connection, channel: &Channel) {
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
}

struct Worker {
    channel: Channel,
    topology: MailerTopology,
    handler: Arc<HandleEmailEvent>,
    metrics: Arc<Metrics>,
}

/// The W3C trace context headers of a message, as a carrier.
fn carrier_of(properties: &BasicProperties) -> Carrier {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| string_header(properties, name).map(|value| (name.to_owned(), value)))
        .collect()
}

impl Worker {
    async fn process(self, delivery: Delivery) {
        // Back from the retry queue the routing key is the queue's name; the
        // event type travels in the `type` property.
        let event_type = delivery
            .properties
            .kind()
            .as_ref()
            .map_or_else(|| delivery.routing_key.as_str().to_owned(), |kind| kind.as_str().to_owned());
        let message_id = delivery.properties.message_id().as_ref().map(|id| id.as_str().to_owned()).unwrap_or_default();
        let attempt =
            integer_header(&delivery.properties, ATTEMPT_HEADER).and_then(|a| u32::try_from(a).ok()).unwrap_or(1);
        // Semantic conventions for messaging: "<destination> process", a consumer
        // span, child of the relay's publish span (its context is in the headers).
        let span = tracing::info_span!(
            "mailer.process",
            otel.name = format!("{} process", self.topology.queue),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.destination.name = self.topology.queue.as_str(),
            messaging.message.id = message_id.as_str(),
            messaging.rabbitmq.destination.routing_key = delivery.routing_key.as_str(),
            event_type = event_type.as_str(),
            attempt,
            redelivered = delivery.redelivered,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        trace_context::continue_from(&span, &carrier_of(&delivery.properties));
        trace_context::record_ids(&span);
        let provider = self.handler.deliver.sender.provider();
        async move {
            let disposition = match payload::decode(&event_type, &delivery.data) {
                Ok(event) => self.handler.execute(&event, attempt).await,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "undecodable message; dead-lettering");
                    Disposition::DeadLetter { reason: format!("undecodable message: {error:#}") }
                }
            };
            let outcome = match &disposition {
                Disposition::Delivered { was_duplicate: false } => "sent",
                Disposition::Delivered { was_duplicate: true } => "duplicate",
                Disposition::RetryLater { .. } => "retry",
                Disposition::DeadLetter { .. } => "dead_letter",
            };
            self.metrics.record_delivery(outcome, provider);
            match &disposition {
                Disposition::RetryLater { .. } => self.metrics.mailer_retries.inc(),
                Disposition::DeadLetter { .. } => self.metrics.mailer_dead_letters.inc(),
                Disposition::Delivered { .. } => 0,
            };
            if let Err(error) = self.settle(&delivery, attempt, disposition).await {
                tracing::warn!(error = format!("{error:#}"), "could not settle the message; it will be redelivered");
                let requeue = BasicNackOptions { requeue: true, ..BasicNackOptions::default() };
                let _ = delivery.acker.nack(requeue).await;
            }
        }
        .instrument(span)
        .await;
    }

    async fn settle(&self, delivery: &Delivery, attempt: u32, disposition: Disposition) -> anyhow::Result<()> {
        match disposition {
            Disposition::Delivered { .. } => {}
            Disposition::RetryLater { delay, reason } => {
                let headers = with_headers(
                    &delivery.properties,
                    &[
                        (ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(attempt) + 1)),
                        (LAST_ERROR_HEADER, long_string(&reason)),
                    ],
                );
                let properties = delivery
                    .properties
                    .clone()
                    .with_headers(headers)
                    .with_expiration(delay.as_millis().max(1).to_string().into());
                self.republish(&self.topology.retry_queue, &delivery.data, properties).await?;
            }
            Disposition::DeadLetter { reason } => {
                let headers = with_headers(
                    &delivery.properties,
                    &[
                        (ATTEMPT_HEADER, AMQPValue::LongLongInt(i64::from(attempt))),
                        (DEAD_LETTER_REASON_HEADER, long_string(&reason)),
                    ],
                );
                // RabbitMQ drops `expiration` when it dead-letters, so this copy never expires.
                let properties = delivery.properties.clone().with_headers(headers);
                self.republish(&self.topology.dead_letter_queue, &delivery.data, properties).await?;
            }
        }
        delivery.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Publishes a copy straight to a queue (default exchange) and waits for the
    /// broker's confirm; only then may the original be acknowledged.
    async fn republish(&self, queue: &str, body: &[u8], properties: BasicProperties) -> anyhow::Result<()> {
        let confirmation = self
            .channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties)
            .await?
            .await?;
        anyhow::ensure!(
            matches!(confirmation, Confirmation::Ack(None)),
            "RabbitMQ did not accept the message for {queue}"
        );
        Ok(())
    }
}
