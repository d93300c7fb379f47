//! A consumer of the identity service's user events: binds a queue to the
//! events exchange, reads the CloudEvents headers, decodes the protobuf data
//! with the types generated from `proto/identity/v1/events.proto`, skips
//! redeliveries by event id, and prints one line per event.
//!
//! `AMQP_URL` (default the local broker) and `IDENTITY_EVENTS_EXCHANGE`
//! (default `identity.events`) say where; the optional argument is how many
//! events to print before exiting (without it, it runs until stopped). It
//! prints `listening` once its queue is bound.

use std::collections::HashSet;

use anyhow::Context;
use futures_util::StreamExt;
use identity::infrastructure::outbox::user_events::proto;
use lapin::{
    BasicProperties, Connection, ConnectionProperties, ExchangeKind,
    options::{BasicAckOptions, BasicConsumeOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable},
};
use prost::Message;

/// A CloudEvents attribute: binary mode carries each as a `cloudEvents:` header.
fn attribute(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(format!("cloudEvents:{name}").as_str())? {
        AMQPValue::LongString(value) => Some(String::from_utf8_lossy(value.as_bytes()).into_owned()),
        _ => None,
    }
}

/// What the event says, decoded with the type its `type` attribute names.
fn describe(event_type: &str, data: &[u8]) -> anyhow::Result<String> {
    Ok(match event_type {
        "identity.v1.user.signed_up" => format!("{:?}", proto::UserSignedUp::decode(data)?),
        "identity.v1.user.email_verified" => format!("{:?}", proto::UserEmailVerified::decode(data)?),
        "identity.v1.user.email_changed" => format!("{:?}", proto::UserEmailChanged::decode(data)?),
        "identity.v1.user.password_changed" => format!("{:?}", proto::UserPasswordChanged::decode(data)?),
        "identity.v1.user.disabled" => format!("{:?}", proto::UserDisabled::decode(data)?),
        "identity.v1.user.enabled" => format!("{:?}", proto::UserEnabled::decode(data)?),
        "identity.v1.user.deleted" => format!("{:?}", proto::UserDeleted::decode(data)?),
        "identity.v1.session.created" => format!("{:?}", proto::SessionCreated::decode(data)?),
        "identity.v1.session.revoked" => format!("{:?}", proto::SessionRevoked::decode(data)?),
        // Types added later: a consumer skips what it does not know.
        other => format!("(a type this consumer does not know: {other})"),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let exchange = std::env::var("IDENTITY_EVENTS_EXCHANGE").unwrap_or_else(|_| "identity.events".to_owned());
    let limit: Option<usize> = std::env::args().nth(1).map(|n| n.parse()).transpose().context("a count")?;

    let connection = Connection::connect(&url, ConnectionProperties::default()).await.context("connecting")?;
    let channel = connection.create_channel().await?;
    // Declared as the server declares it (idempotent), so the consumer may start first.
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await?;
    // A real consumer declares a durable queue of its own name; this one goes with it.
    let exclusive = QueueDeclareOptions { exclusive: true, ..QueueDeclareOptions::default() };
    let queue = channel.queue_declare("".into(), exclusive, FieldTable::default()).await?;
    let every_event = "identity.v1.#";
    let bind = QueueBindOptions::default();
    channel
        .queue_bind(queue.name().clone(), exchange.as_str().into(), every_event.into(), bind, FieldTable::default())
        .await?;
    let mut deliveries = channel
        .basic_consume(queue.name().clone(), "example".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    println!("listening on {exchange} for {every_event}");

    // Delivery is at least once: remember the ids seen (a real consumer keeps
    // them with its own writes, for as long as a redelivery can come).
    let mut seen = HashSet::new();
    let mut printed = 0;
    while let Some(delivery) = deliveries.next().await {
        let delivery = delivery?;
        let properties = &delivery.properties;
        let id = attribute(properties, "id").context("no cloudEvents:id")?;
        let event_type = attribute(properties, "type").context("no cloudEvents:type")?;
        if seen.insert(id.clone()) {
            let subject = attribute(properties, "subject").unwrap_or_default();
            let time = attribute(properties, "time").unwrap_or_default();
            println!("{time} {event_type} subject={subject} id={id} {}", describe(&event_type, &delivery.data)?);
            printed += 1;
        }
        delivery.ack(BasicAckOptions::default()).await?;
        if limit.is_some_and(|limit| printed >= limit) {
            break;
        }
    }
    connection.close(200, "done".into()).await?;
    Ok(())
}
