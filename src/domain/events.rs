//! Events the domain records in the outbox, in the same transaction as the change
//! that caused them, so that an accepted change always gets its email.

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Email, UserId};

#[derive(Debug, Clone)]
pub enum DomainEvent {
    VerificationEmailRequested(VerificationEmailRequested),
}

impl DomainEvent {
    pub fn id(&self) -> Uuid {
        match self {
            Self::VerificationEmailRequested(event) => event.event_id,
        }
    }

    /// The routing key on the message bus.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::VerificationEmailRequested(_) => VerificationEmailRequested::EVENT_TYPE,
        }
    }

    pub fn occurred_at(&self) -> OffsetDateTime {
        match self {
            Self::VerificationEmailRequested(event) => event.occurred_at,
        }
    }
}

/// A user must receive a link to verify their email address.
#[derive(Debug, Clone)]
pub struct VerificationEmailRequested {
    pub event_id: Uuid,
    pub user_id: UserId,
    /// The stored canonical address: the only one we ever send to.
    pub email: Email,
    /// How to greet the user (display name, first name, or the address's local part).
    pub display_name: String,
    /// Carries the single-use token, so it is a secret until it is emailed.
    pub verification_link: SecretString,
    pub expires_at: OffsetDateTime,
    pub occurred_at: OffsetDateTime,
}

impl VerificationEmailRequested {
    pub const EVENT_TYPE: &'static str = "user.verification_email_requested";
}
