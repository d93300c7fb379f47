//! RabbitMQ over lapin: the topology, the outbox relay's publisher (publisher
//! confirms, persistent messages) and the mailer's consumer (manual acks,
//! bounded prefetch, retry and dead-letter queues).

mod connection;
mod consumer;
mod headers;
mod publisher;
mod topology;

pub use connection::connect;
pub use consumer::MailerConsumer;
pub use headers::{ATTEMPT_HEADER, DEAD_LETTER_REASON_HEADER, LAST_ERROR_HEADER, integer_header, string_header};
pub use publisher::RabbitMqPublisher;
pub use topology::{MAILER_ROUTING_KEYS, MailerTopology, declare_exchange};
