//! The ports: what the use cases need from the outside world, stated in domain
//! terms. Adapters in `infrastructure` implement them; tests use small fakes.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AccessTokenClaims, DomainEvent, Email, IssuedToken, NewPassword, PasswordHash, PlaintextPassword, ThrottleKey,
    ThrottlePolicy, ThrottleState, TokenHash, User, UserId,
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

/// A single-use token (email verification, password reset) to store: its
/// digest only, never the token.
#[derive(Debug, Clone)]
pub struct NewSingleUseToken {
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// A stored verification token as read back.
#[derive(Debug, Clone)]
pub struct SingleUseTokenRecord {
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    /// Set once the token was used, or when a newer one replaced it.
    pub is_spent: bool,
}

/// How many emails of one kind a user was sent recently, for rate limiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendHistory {
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
        token: &NewSingleUseToken,
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
    async fn find_verification_token(&self, hash: &TokenHash) -> Result<Option<SingleUseTokenRecord>, RepositoryError>;

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
    ) -> Result<SendHistory, RepositoryError>;

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
        token: &NewSingleUseToken,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;
}

/// Which sessions a password change ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRevocation {
    All,
    /// Every session but the caller's own.
    AllExcept(Uuid),
}

/// A stored refresh-token session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    pub is_rotated: bool,
    pub is_revoked: bool,
}

/// Filters and position of one page of users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserListQuery {
    pub status: Option<super::UserStatus>,
    /// Lower-case; matched literally (no wildcards).
    pub email_prefix: Option<String>,
    /// Only users created after this one (ids sort by creation).
    pub after: Option<UserId>,
    pub limit: u64,
}

/// Account changes beyond sign-up and verification: passwords, resets, account
/// state, deletion, listing.
#[async_trait]
pub trait AccountRepository: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, PasswordHash)>, RepositoryError>;

    /// Stores a new password hash, ends sessions as asked, saves the user's token
    /// cutoff, and writes the notice event, atomically.
    ///
    /// # Errors
    /// Storage failures only.
    async fn change_password(
        &self,
        user: &User,
        hash: &PasswordHash,
        revoke: SessionRevocation,
        event: &DomainEvent,
    ) -> Result<(), RepositoryError>;

    /// Replaces a hash with a stronger one of the same password (no other change).
    ///
    /// # Errors
    /// Storage failures only.
    async fn upgrade_password_hash(&self, user_id: UserId, hash: &PasswordHash) -> Result<(), RepositoryError>;

    /// Saves status and token cutoff; with `revoke_sessions`, ends every session
    /// in the same transaction. Returns how many sessions were ended.
    ///
    /// # Errors
    /// Storage failures only.
    async fn save_account_state(&self, user: &User, revoke_sessions: bool) -> Result<u64, RepositoryError>;

    /// Deletes the user with everything that hangs off them, and writes the
    /// event, atomically. Returns whether there was such a user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn delete(&self, user_id: UserId, event: &DomainEvent) -> Result<bool, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn list(&self, query: &UserListQuery) -> Result<Vec<User>, RepositoryError>;

    /// Writes an event on its own (a notice with no state change).
    ///
    /// # Errors
    /// Storage failures only.
    async fn record_event(&self, event: &DomainEvent) -> Result<(), RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_password_reset_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn password_reset_history(
        &self,
        user_id: UserId,
        since: OffsetDateTime,
    ) -> Result<SendHistory, RepositoryError>;

    /// Like [`UserRepository::replace_verification_token`], for reset tokens.
    ///
    /// # Errors
    /// Storage failures only.
    async fn replace_password_reset_token(
        &self,
        user_id: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        token: &NewSingleUseToken,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;

    /// Spends the reset token, stores the new hash, ends every session, saves
    /// the token cutoff and writes the notice, atomically. `false` when the
    /// token was spent in the meantime.
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        user: &User,
        hash: &PasswordHash,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;
}

/// Refresh-token sessions.
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn insert(&self, session: &NewSession) -> Result<(), RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError>;

    /// Marks `old` rotated, if it is neither rotated nor revoked, and stores
    /// `new`, atomically. `false` when `old` was rotated or revoked meanwhile.
    ///
    /// # Errors
    /// Storage failures only.
    async fn rotate(&self, old: Uuid, new: &NewSession, now: OffsetDateTime) -> Result<bool, RepositoryError>;

    /// Revokes every live session of a family; returns how many.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<u64, RepositoryError>;

    /// Revokes one session; `false` if it was already revoked.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke(&self, session_id: Uuid, now: OffsetDateTime) -> Result<bool, RepositoryError>;
}

/// Consecutive failed logins per account, shared by every replica.
#[async_trait]
pub trait LoginThrottles: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn state(&self, key: &ThrottleKey) -> Result<Option<ThrottleState>, RepositoryError>;

    /// Counts one more failure and returns the new state.
    ///
    /// # Errors
    /// Storage failures only.
    async fn record_failure(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        policy: ThrottlePolicy,
    ) -> Result<ThrottleState, RepositoryError>;

    /// Forgets the failures after a successful login.
    ///
    /// # Errors
    /// Storage failures only.
    async fn reset(&self, key: &ThrottleKey) -> Result<(), RepositoryError>;
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

    /// Whether a stored hash is weaker than what we hash with now, so that a
    /// successful login should replace it.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;
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
    #[error("the token was revoked (log out everywhere, password reset, or the account is disabled or deleted)")]
    Revoked,
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
    /// `session_id` goes into the `sid` claim, so that "log out my other
    /// sessions" knows which one is the caller's.
    ///
    /// # Errors
    /// Only a broken signing key can fail.
    fn issue(&self, user_id: UserId, session_id: Uuid, now: OffsetDateTime) -> anyhow::Result<IssuedToken>;

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

/// "Someone tried to sign up with your address" notices, counted from the
/// outbox so that the cap holds however many replicas answer.
#[async_trait]
pub trait RegistrationNotices: Send + Sync {
    /// The notices written for `owner` (their newest first) since `since`.
    ///
    /// # Errors
    /// Storage failures only.
    async fn history(&self, owner: UserId, since: OffsetDateTime) -> Result<SendHistory, RepositoryError>;

    /// Writes the notice event, but only if the owner's newest notice is still
    /// the one written at `expected_last_sent_at`; `false` when a concurrent
    /// sign-up got there first.
    ///
    /// # Errors
    /// Storage failures only.
    async fn record(
        &self,
        owner: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;
}

/// How many rows one pruning run deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub sessions: u64,
    pub login_throttles: u64,
    pub verification_tokens: u64,
    pub password_reset_tokens: u64,
    pub pending_users: u64,
}

impl PruneReport {
    pub fn total(&self) -> u64 {
        self.sessions
            + self.login_throttles
            + self.verification_tokens
            + self.password_reset_tokens
            + self.pending_users
    }
}

/// The cut-offs of one pruning run: rows settled before them are deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCutoffs {
    /// Sessions that expired, or were revoked or rotated, before this.
    pub sessions: OffsetDateTime,
    /// Throttle rows whose last failure is older than this and that are not locked at `now`.
    pub login_throttles: OffsetDateTime,
    /// Single-use tokens spent or expired before this.
    pub single_use_tokens: OffsetDateTime,
    /// Users still pending verification whose every verification token expired
    /// before this (and who signed up before it).
    pub pending_users: OffsetDateTime,
    pub now: OffsetDateTime,
}

/// Deletes what no longer serves a purpose, a bounded batch at a time.
#[async_trait]
pub trait Pruner: Send + Sync {
    /// Deletes at most `batch` rows of each kind, with one `UserDeleted` event
    /// per pending user deleted (written with the deletion).
    ///
    /// # Errors
    /// Storage failures only.
    async fn prune(&self, cutoffs: &PruneCutoffs, batch: u64) -> Result<PruneReport, RepositoryError>;
}
