//! The outbox relay's ports: where committed events wait, and where they go.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::RepositoryError;

/// A committed event waiting to be published, in the wire form it was stored
/// in, so that publishers forward it without re-encoding.
#[derive(Clone)]
pub struct OutboxEvent {
    pub id: Uuid,
    /// Whose event it is (a CloudEvents subject); absent on rows written
    /// before the outbox recorded it.
    pub user_id: Option<Uuid>,
    /// The routing key, e.g. `user.verification_email_requested`.
    pub event_type: String,
    /// Versioned JSON; carries single-use links, so it never goes to a log.
    pub payload: String,
    /// The W3C trace context of the request that wrote the event, as JSON.
    pub trace_context: Option<String>,
    pub created_at: OffsetDateTime,
}

impl fmt::Debug for OutboxEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxEvent")
            .field("id", &self.id)
            .field("event_type", &self.event_type)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Try again later (broker down, provider timing out).
    #[error("transient publish failure: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help (undecodable payload, provider refusing the request).
    #[error("permanent publish failure: {0:#}")]
    Permanent(anyhow::Error),
}

/// Where outbox events go: in-process email delivery, or a message broker.
#[async_trait]
pub trait OutboxPublisher: Send + Sync {
    fn name(&self) -> &'static str;

    /// Returns once the event is safely handed over.
    ///
    /// # Errors
    /// Whether a retry can help.
    async fn publish(&self, event: &OutboxEvent) -> Result<(), PublishError>;
}

/// How far behind the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxBacklog {
    pub unpublished: u64,
    pub oldest_created_at: Option<OffsetDateTime>,
}

/// The relay's view of the stored events.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` unpublished events, oldest first, for this relay
    /// alone until the claim is finished.
    async fn claim_batch(&self, limit: u64) -> Result<Box<dyn OutboxClaim>, RepositoryError>;

    /// Deletes events published before `before`; returns how many.
    async fn prune_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError>;

    /// Removes the links from up to `limit` published events that still hold
    /// them (published before links were removed at publishing); returns how many.
    async fn redact_published(&self, limit: u64) -> Result<u64, RepositoryError>;

    async fn backlog(&self) -> Result<OutboxBacklog, RepositoryError>;
}

/// Claimed events. Their outcomes are recorded through the claim, because on a
/// store that locks claimed events they belong to the claim's transaction.
#[async_trait]
pub trait OutboxClaim: Send + Sync {
    fn events(&self) -> &[OutboxEvent];

    /// Settles the event: published, or given up on with `note` saying why.
    /// Its single-use links are removed from storage at the same time.
    async fn mark_published(
        &self,
        event: &OutboxEvent,
        at: OffsetDateTime,
        note: Option<&str>,
    ) -> Result<(), RepositoryError>;

    /// Counts a failed attempt; the event stays unpublished, for a retry.
    async fn mark_failed(&self, event: &OutboxEvent, error: &str) -> Result<(), RepositoryError>;

    /// Ends the claim (releasing its locks, where there are any).
    async fn finish(self: Box<Self>) -> Result<(), RepositoryError>;
}
