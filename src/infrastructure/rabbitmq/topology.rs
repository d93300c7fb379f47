use lapin::{
    Channel, ExchangeKind,
    options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, LongString},
};

/// The events the mailer turns into emails; each is bound to its queue.
pub const MAILER_ROUTING_KEYS: &[&str] = crate::domain::EMAIL_EVENT_TYPES;

/// Names of the mailer's queues, all derived from the main queue's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailerTopology {
    pub exchange: String,
    /// Quorum queue bound to the exchange: where emails wait to be sent.
    pub queue: String,
    /// Classic queue holding failed messages for their per-message TTL, then
    /// dead-lettering them back to `queue` through the default exchange.
    pub retry_queue: String,
    /// Quorum queue of messages given up on, with the reason in a header.
    pub dead_letter_queue: String,
}

impl MailerTopology {
    pub fn new(exchange: &str, queue: &str) -> Self {
        Self {
            exchange: exchange.to_owned(),
            queue: queue.to_owned(),
            retry_queue: format!("{queue}.retry"),
            dead_letter_queue: format!("{queue}.dead"),
        }
    }

    /// Declares the exchange, the three queues and the bindings. Idempotent.
    ///
    /// # Errors
    /// The broker refused a declaration (an existing queue with other arguments).
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        declare_exchange(channel, &self.exchange).await?;
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(self.queue.as_str().into(), durable, quorum()).await?;
        for key in MAILER_ROUTING_KEYS {
            channel
                .queue_bind(
                    self.queue.as_str().into(),
                    self.exchange.as_str().into(),
                    (*key).into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut retry = FieldTable::default();
        retry.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("")));
        retry.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(LongString::from(self.queue.as_str())));
        channel.queue_declare(self.retry_queue.as_str().into(), durable, retry).await?;
        channel.queue_declare(self.dead_letter_queue.as_str().into(), durable, quorum()).await?;
        Ok(())
    }
}

fn quorum() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    arguments
}

/// The durable topic exchange events are published to.
///
/// # Errors
/// The broker refused the declaration.
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> lapin::Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
            FieldTable::default(),
        )
        .await
}
