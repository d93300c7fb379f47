//! The transactional outbox's moving part: a relay that publishes committed
//! events and marks them published only once the publisher accepted them.

mod in_process;
pub mod payload;
mod relay;

pub use in_process::InProcessEmailPublisher;
pub use relay::{OutboxPublisher, OutboxRelay, PublishError, RelaySettings};
