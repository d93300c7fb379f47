//! Emails: the provider boundary and the mailer's delivery log.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// An email ready to hand to a provider.
#[derive(Clone)]
pub struct OutgoingEmail {
    /// Idempotency key: the id of the event the email was made for.
    pub event_id: Uuid,
    pub to: Email,
    pub subject: String,
    pub text_body: String,
    pub html_body: String,
}

impl fmt::Debug for OutgoingEmail {
    // Bodies carry single-use links: they stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("event_id", &self.event_id)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SendEmailError {
    /// Worth retrying: timeouts, connection errors, 429 and 5xx answers.
    #[error("temporary email delivery failure: {reason}")]
    Transient { reason: String, retry_after: Option<std::time::Duration> },
    /// Retrying cannot help: the provider refused the request (bad key, bad address).
    #[error("permanent email delivery failure: {reason}")]
    Permanent { reason: String },
}

/// An email provider (SendGrid, SMTP, the console). Adding a provider means
/// adding one type that implements this trait.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// A short name for logs and metrics (`sendgrid`, `smtp`, `console`).
    fn provider(&self) -> &'static str;

    /// # Errors
    /// Whether the failure is worth a retry.
    async fn send(&self, email: &OutgoingEmail) -> Result<(), SendEmailError>;
}

/// The mailer's record of events whose email the provider accepted, so that a
/// redelivered message does not send a second email.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn has_delivered(&self, event_id: Uuid) -> Result<bool, RepositoryError>;

    /// Idempotent: recording an event twice is not an error.
    ///
    /// # Errors
    /// Storage failures only.
    async fn record_delivered(
        &self,
        event_id: Uuid,
        event_type: &str,
        provider: &str,
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError>;
}
