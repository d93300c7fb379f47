//! Workers: what drives the use cases from outside a request, beside `grpc`
//! which drives them from requests. The outbox relay, the in-process email
//! publisher it uses without a broker (and the sink for user events then), the mailer's RabbitMQ consumer, and the
//! scheduled loops. Adapters stay in `infrastructure`; the workers use them
//! through the ports, or through the technology they are bound to (the
//! consumer speaks AMQP).

mod in_process_email;
mod mailer_consumer;
mod outbox_relay;
mod pruning;

pub use in_process_email::{InProcessEmailPublisher, UnheardEvents};
pub use mailer_consumer::MailerConsumer;
pub use outbox_relay::{OutboxRelay, RelaySettings};
pub use pruning::prune_periodically;
