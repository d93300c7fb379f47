//! The ports: what the use cases need from the outside world, stated in domain
//! terms. Adapters in `infrastructure` implement them; tests use small fakes.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AccessTokenClaims, DomainEvent, Email, IssuedToken, NewPassword, PasswordHash, PlaintextPassword, TokenHash, User,
    UserId,
};

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

/// A verification token to store: its digest only, never the token.
#[derive(Debug, Clone)]
pub struct NewVerificationToken {
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored verification token as read back.
#[derive(Debug, Clone)]
pub struct VerificationTokenRecord {
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    /// Set once the token was used, or when a newer one replaced it.
    pub is_spent: bool,
}

/// How many verification emails a user was sent recently, for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerificationHistory {
    pub sent_since: u32,
    pub last_sent_at: Option<OffsetDateTime>,
}

/// A refresh-token session to store.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    /// Every session rotated out of one login shares its family id, so that the
    /// whole family can be revoked when a rotated token is replayed.
    pub family_id: Uuid,
    pub user_id: UserId,
    pub token_hash: TokenHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Users, their credentials and their verification tokens. Operations that must
/// be atomic with an outbox event take the event and write both in one transaction.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Stores a new user, their password hash, their first verification token and
    /// the event asking for the verification email, atomically.
    ///
    /// # Errors
    /// [`InsertUserError::DuplicateEmail`] when the canonical email is taken
    /// (enforced by a unique index, so concurrent sign-ups cannot both win).
    async fn insert_with_verification(
        &self,
        user: &User,
        password_hash: &PasswordHash,
        token: &NewVerificationToken,
        event: &DomainEvent,
    ) -> Result<(), InsertUserError>;

    /// # Errors
    /// Storage failures only; an unknown id is `Ok(None)`.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError>;

    /// The user and their password hash, for login.
    ///
    /// # Errors
    /// Storage failures only.
    async fn find_credentials_by_email(&self, email: &Email) -> Result<Option<(User, PasswordHash)>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_verification_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<VerificationTokenRecord>, RepositoryError>;

    /// Spends the token and saves the verified user, atomically. Returns `false`
    /// when the token was spent in the meantime (a concurrent verification won).
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_verification(&self, hash: &TokenHash, user: &User) -> Result<bool, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn verification_history(
        &self,
        user_id: UserId,
        since: OffsetDateTime,
    ) -> Result<VerificationHistory, RepositoryError>;

    /// Spends every earlier verification token of the user, stores the new one
    /// and the event, atomically, but only if the newest token is still the one
    /// created at `expected_last_sent_at`; returns `false` when a concurrent resend
    /// got there first.
    ///
    /// # Errors
    /// Storage failures only.
    async fn replace_verification_token(
        &self,
        user_id: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        token: &NewVerificationToken,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;
}

/// Refresh-token sessions.
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn insert(&self, session: &NewSession) -> Result<(), RepositoryError>;
}

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every hashing slot stayed busy past the deadline: shed load, retry later.
    #[error("password hashing is saturated")]
    Saturated { retry_after: std::time::Duration },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Password hashing, bounded so that it cannot exhaust CPU or memory.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// # Errors
    /// Saturation or an unexpected failure.
    async fn hash(&self, password: &NewPassword) -> Result<PasswordHash, HashingError>;

    /// Checks a password against a stored hash. With `None` (no such user) it
    /// checks against a dummy hash of the same cost and returns `false`, so that
    /// an unknown email takes as long as a wrong password.
    ///
    /// # Errors
    /// Saturation or an unexpected failure (a corrupt stored hash, say).
    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError>;
}

/// Why an access token was refused. Deliberately coarse: callers learn only
/// that the token is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAccessToken {
    #[error("the token is malformed or its signature does not verify")]
    Malformed,
    #[error("the token was signed by a key this service does not know")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by someone else or for someone else")]
    WrongIssuerOrAudience,
}

/// A public key that verifies access tokens, in PASERK form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// `k4.pid.`...
    pub kid: String,
    /// `k4.public.`...
    pub public_key: String,
}

/// Issues and checks signed access tokens.
pub trait AccessTokenIssuer: Send + Sync {
    /// # Errors
    /// Only a broken signing key can fail.
    fn issue(&self, user_id: UserId, now: OffsetDateTime) -> anyhow::Result<IssuedToken>;

    /// # Errors
    /// The reason the token is refused.
    fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessTokenClaims, InvalidAccessToken>;

    /// The signing key first, then every older key that still verifies.
    fn public_keys(&self) -> Vec<PublicKeyInfo>;
}

/// The time, injected so that expiry can be tested without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

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
    Transient {
        reason: String,
        retry_after: Option<std::time::Duration>,
    },
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
