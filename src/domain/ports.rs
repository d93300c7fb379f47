//! The ports: what the use cases need from the outside world, stated in domain
//! terms. Adapters in `infrastructure` implement them; tests use small fakes.

mod outbox;

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    AccessTokenClaims, DomainEvent, Email, IssuedToken, LoginAttemptKeys, LoginRefusal, NewPassword, PasswordHash,
    PlaintextPassword, ThrottleKey, ThrottlePolicy, TokenHash, User, UserId,
};

pub use outbox::{OutboxBacklog, OutboxClaim, OutboxEvent, OutboxPublisher, OutboxStore, PublishError};

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

/// A user's stored password hash and its version, which every password change
/// or reset bumps: a login that verified an older version creates no session.
#[derive(Debug, Clone)]
pub struct StoredCredentials {
    pub hash: PasswordHash,
    pub version: i32,
}

/// What a state change that ends sessions left behind: the user as now stored,
/// and the sessions it revoked (so that this replica refuses their access
/// tokens at once).
#[derive(Debug, Clone)]
pub struct Revocation {
    pub user: User,
    pub revoked_sessions: Vec<Uuid>,
    /// `false` when there was nothing to change (disabling a disabled user).
    pub changed: bool,
}

/// Why a password change found, under the lock, that it no longer applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordChangeRefused {
    /// Disabled or deleted meanwhile.
    NotActive,
    /// The caller's own login ended meanwhile.
    SessionEnded,
    /// The password changed since the current one was verified.
    PasswordChanged,
}

/// A stored single-use token as read back.
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

/// What a single-use token is for. Both kinds live in one store and share its
/// rules (one outstanding token per user and purpose, spent once); the purpose
/// keeps a verification link from resetting a password and the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPurpose {
    EmailVerification,
    PasswordReset,
}

impl TokenPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
        }
    }
}

/// Single-use tokens (email verification, password reset): their lookup, send
/// history and replacement. Spending one together with the account change it
/// authorises is the account's transaction ([`UserRepository::complete_verification`],
/// [`AccountRepository::complete_password_reset`]).
#[async_trait]
pub trait SingleUseTokens: Send + Sync {
    /// # Errors
    /// Storage failures only.
    async fn find(
        &self,
        purpose: TokenPurpose,
        hash: &TokenHash,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError>;

    /// Counts one more attempt with a token, before anything is checked, and
    /// returns the token unless it is unknown, spent, or has been presented
    /// `max_attempts` times already (a refused new password spends an attempt,
    /// so that one reset link is not an unlimited oracle).
    ///
    /// # Errors
    /// Storage failures only.
    async fn count_attempt(
        &self,
        purpose: TokenPurpose,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn history(
        &self,
        purpose: TokenPurpose,
        user_id: UserId,
        since: OffsetDateTime,
    ) -> Result<SendHistory, RepositoryError>;

    /// Spends every earlier token of the user for this purpose, stores the new
    /// one and the event, atomically, but only if the newest token is still the
    /// one created at `expected_last_sent_at`; returns `false` when a concurrent
    /// request got there first.
    ///
    /// # Errors
    /// Storage failures only.
    async fn replace(
        &self,
        purpose: TokenPurpose,
        user_id: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        token: &NewSingleUseToken,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError>;
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
    /// When the login that started the family happened; rotations keep it.
    pub authenticated_at: OffsetDateTime,
}

/// Users and their credentials, with the sign-up and verification steps that
/// must change a user and a single-use token together. Operations that must be
/// atomic with an outbox event take the event and write both in one transaction.
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
    async fn find_credentials_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(User, StoredCredentials)>, RepositoryError>;

    /// Under the user's row lock, spends the verification token and saves the
    /// verified user, atomically. Returns `false` when the token was spent in
    /// the meantime (a concurrent verification won).
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_verification(&self, hash: &TokenHash, user: &User) -> Result<bool, RepositoryError>;
}

/// A stored refresh-token session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    pub authenticated_at: OffsetDateTime,
    pub is_rotated: bool,
    pub is_revoked: bool,
}

/// How storing a login's session went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginCommit {
    Created,
    /// The password changed (or the user was deleted) after it was verified:
    /// what was verified is no longer the password.
    CredentialsChanged,
    /// The account's state changed meanwhile and no longer allows a session.
    Refused(LoginRefusal),
}

/// How a refresh-token rotation went.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// The new session is stored; the user as it stands now.
    Rotated(User),
    /// The old session was rotated or revoked meanwhile (a concurrent refresh won).
    Lost,
    /// The user is gone, may no longer log in, or revoked every session that
    /// started before a time this family started before.
    Refused,
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
    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, StoredCredentials)>, RepositoryError>;

    /// Every account change below locks the user's row, re-reads it, applies
    /// only its own transition and writes only the columns that transition
    /// changes, so that concurrent changes compose instead of overwriting each
    /// other; session creation takes the same lock, so that no session slips in
    /// beside a revocation.
    ///
    /// Stores a new password hash (bumping the password version), ends every
    /// session but those of `keep`'s family (the caller's login, whatever it was
    /// rotated into), spends outstanding reset links and writes the notice,
    /// atomically, provided the password is still the `verified_version`.
    ///
    /// # Errors
    /// `Ok(Err(_))` when the change no longer applies; storage failures.
    async fn change_password(
        &self,
        user_id: UserId,
        hash: &PasswordHash,
        verified_version: i32,
        keep: Option<Uuid>,
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<Result<Revocation, PasswordChangeRefused>, RepositoryError>;

    /// Refuses every access token issued before `now` and ends every session
    /// (log out everywhere). `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<Revocation>, RepositoryError>;

    /// Disables the user and ends every session; unchanged when already
    /// disabled. `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn disable(&self, user_id: UserId, now: OffsetDateTime) -> Result<Option<Revocation>, RepositoryError>;

    /// Re-enables a disabled user; unchanged otherwise. `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn enable(&self, user_id: UserId, now: OffsetDateTime) -> Result<Option<Revocation>, RepositoryError>;

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

    /// Spends the reset token (and every other outstanding one of the user),
    /// stores the new hash, refuses every access token issued before `now`, ends
    /// every session and writes the notice, atomically. `None` when the token
    /// was spent meanwhile or the user is no longer active.
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        user_id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<Option<Revocation>, RepositoryError>;
}

/// Refresh-token sessions.
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a login's session under the user's row lock, provided the user
    /// may still log in and the password version is still the one verified; with
    /// `upgraded_hash`, replaces the stored hash (same password, today's cost)
    /// in the same transaction.
    ///
    /// # Errors
    /// Storage failures only.
    async fn insert_for_login(
        &self,
        session: &NewSession,
        verified_version: i32,
        upgraded_hash: Option<&PasswordHash>,
    ) -> Result<LoginCommit, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_by_id(&self, id: Uuid) -> Result<Option<SessionRecord>, RepositoryError>;

    /// Under the user's row lock: checks that the user may still log in and did
    /// not revoke everything since `old` was authenticated, marks `old` rotated
    /// if it is neither rotated nor revoked, and stores `new`, atomically.
    ///
    /// # Errors
    /// Storage failures only.
    async fn rotate(
        &self,
        old: &SessionRecord,
        new: &NewSession,
        now: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError>;

    /// Revokes every live session of a family; returns their ids.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<Vec<Uuid>, RepositoryError>;

    /// Revokes one session; `false` if it was already revoked.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke(&self, session_id: Uuid, now: OffsetDateTime) -> Result<bool, RepositoryError>;
}

/// Consecutive failed logins (see [`crate::domain::login_throttle`]), shared by
/// every replica.
#[async_trait]
pub trait LoginThrottles: Send + Sync {
    /// Atomically decides an attempt with [`ThrottlePolicy::admit`] and, when
    /// admitted, stores it as a failure before the password is checked.
    ///
    /// # Errors
    /// `Ok(Err(wait))` when the attempt is refused; storage failures.
    async fn admit(
        &self,
        keys: &LoginAttemptKeys,
        now: OffsetDateTime,
        policy: ThrottlePolicy,
    ) -> Result<Result<(), std::time::Duration>, RepositoryError>;

    /// The password was right: forgets both runs of failures and remembers the
    /// address as one the account logs in from.
    ///
    /// # Errors
    /// Storage failures only.
    async fn succeeded(&self, keys: &LoginAttemptKeys, now: OffsetDateTime) -> Result<(), RepositoryError>;

    /// Forgets one counter's failures (after a password reset).
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

/// Judges how guessable a new password is. The judgement costs CPU that grows
/// with crafted input, so implementations bound it and run it off the async
/// runtime, behind the same kind of bounded pool as hashing.
#[async_trait]
pub trait PasswordStrengthMeter: Send + Sync {
    /// `user_inputs` (the email, the names) make passwords built from them
    /// score as guessable.
    ///
    /// # Errors
    /// Saturation or an unexpected failure.
    async fn assess(
        &self,
        password: &PlaintextPassword,
        user_inputs: &[String],
    ) -> Result<super::PasswordStrength, HashingError>;
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
    #[error("the token lives longer than the access tokens this service issues")]
    LifetimeTooLong,
    #[error("the token was issued by someone else or for someone else")]
    WrongIssuerOrAudience,
    #[error("the token was revoked (log out everywhere, password reset, or the account is disabled or deleted)")]
    Revoked,
}

/// A refresh token that is unknown, expired, revoked or spent. One reason for
/// all: the caller must log in again either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the refresh token is unknown, expired, revoked or already used")]
pub struct InvalidRefreshToken;

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
    /// Throttle rows that mark an address the account logged in from (which
    /// the account-wide lock spares) stay until their last success is older than this.
    pub known_addresses: OffsetDateTime,
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
