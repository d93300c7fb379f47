//! The ports: what the use cases need from the outside world, stated in domain
//! terms. Adapters in `infrastructure` implement them; tests use small fakes.

mod crypto;
mod email;
mod import;
mod mfa;
mod outbox;
mod pruning;
mod replicas;
mod sessions;
mod tokens;
mod users;

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AccessGrant, AccessTokenClaims, AuthMethods, ClientContext, DeviceFingerprint, DomainEvent, Email, IssuedToken,
    LoginAttemptKeys, LoginRefusal, NewPassword, PasswordHash, PlaintextPassword, ThrottleKey, ThrottlePolicy,
    TokenHash, User, UserId,
};

pub use crypto::*;
pub use email::*;
pub use import::*;
pub use mfa::*;
pub use outbox::{OutboxBacklog, OutboxClaim, OutboxEvent, OutboxPublisher, OutboxStore, PublishError};
pub use pruning::*;
pub use replicas::*;
pub use sessions::*;
pub use tokens::*;
pub use users::*;

/// Storage failures, classified where they happen.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The database could not be reached in time: the caller may retry.
    #[error("the database is unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum InsertUserError {
    #[error("a user with this email already exists")]
    DuplicateEmail,
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// The time, injected so that expiry can be tested without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}
