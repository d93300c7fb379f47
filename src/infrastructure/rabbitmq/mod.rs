//! RabbitMQ over lapin: the connection, the topology (retry and dead-letter
//! queues), message headers, and the outbox relay's publisher (publisher
//! confirms, persistent messages). The mailer's consumer, which drives a use
//! case, is in `workers`.

pub mod cloud_events;
mod connection;
mod headers;
mod publisher;
mod topology;

pub use connection::connect;
pub use headers::{
    ATTEMPT_HEADER, DEAD_LETTER_REASON_HEADER, LAST_ERROR_HEADER, integer_header, long_string, string_header,
    with_headers,
};
pub use publisher::RabbitMqPublisher;
pub use topology::{MAILER_ROUTING_KEYS, MailerTopology, declare_exchange};
