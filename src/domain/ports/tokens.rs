//! Single-use tokens (email verification, password reset) and the notices
//! rate-limited like them.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// A single-use token (email verification, password reset) to store: its
/// digest only, never the token.
#[derive(Debug, Clone)]
pub struct NewSingleUseToken {
    pub hash: TokenHash,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// What an email-change token confirms; `None` for the other purposes.
    pub email_change: Option<EmailChangeTarget>,
}

/// The address an email-change token confirms, and the session that asked
/// for it (its login survives the change; every other session ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailChangeTarget {
    pub new_email: Email,
    pub session_id: Option<Uuid>,
}

/// A stored single-use token as read back.
#[derive(Debug, Clone)]
pub struct SingleUseTokenRecord {
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    /// Set once the token was used, or when a newer one replaced it.
    pub is_spent: bool,
    /// Set for email-change tokens.
    pub email_change: Option<EmailChangeTarget>,
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
    /// Confirms a new email address (sent to that address).
    EmailChange,
}

impl TokenPurpose {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::EmailVerification => "email_verification",
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
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
    /// one and the events, atomically, but only if the newest token is still the
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
        events: &[DomainEvent],
    ) -> Result<bool, RepositoryError>;
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
