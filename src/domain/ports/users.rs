//! Users, their credentials and account state.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// A user's stored password hash and its version, which every password change
/// or reset bumps: a login that verified an older version creates no session.
#[derive(Debug, Clone)]
pub struct StoredCredentials {
    pub hash: PasswordHash,
    pub version: i32,
    /// A second factor (TOTP) is confirmed: a right password alone opens no session.
    pub has_second_factor: bool,
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

/// Why an email change found, under the lock, that it cannot be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailChangeRefused {
    /// The token was spent meanwhile, or the user is gone or no longer active.
    NoLongerApplies,
    /// Another account holds the address (the unique index decided).
    EmailTaken,
    /// The user's address changed since `read` was taken: the events built
    /// from it would name the wrong previous address. Read again and retry.
    ChangedMeanwhile,
}

/// Users and their credentials, with the sign-up and verification steps that
/// must change a user and a single-use token together. Operations that must be
/// atomic with an outbox event take the event and write both in one transaction.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Stores a new user, their password hash, their first verification token and
    /// the events (the verification email, `user.signed_up`), atomically.
    ///
    /// # Errors
    /// [`InsertUserError::DuplicateEmail`] when the canonical email is taken
    /// (enforced by a unique index, so concurrent sign-ups cannot both win).
    async fn insert_with_verification(
        &self,
        user: &User,
        password_hash: &PasswordHash,
        token: &NewSingleUseToken,
        events: &[DomainEvent],
    ) -> Result<(), InsertUserError>;

    /// # Errors
    /// Storage failures only; an unknown id is `Ok(None)`.
    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError>;

    /// # Errors
    /// Storage failures only.
    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError>;

    /// The user imported with this key from the system they came from.
    ///
    /// # Errors
    /// Storage failures only.
    async fn find_by_legacy_id(&self, legacy_id: &str) -> Result<Option<User>, RepositoryError>;

    /// Replaces the stored hash with `hash`, of the same password at today's
    /// cost, provided the password version is still `verified_version` (the
    /// version stays, so concurrent logins with that password go on). For
    /// logins that stop at a second factor, which store no session to upgrade
    /// the hash with. Whether it was replaced.
    ///
    /// # Errors
    /// Storage failures only.
    async fn upgrade_password_hash(
        &self,
        id: UserId,
        verified_version: i32,
        hash: &PasswordHash,
    ) -> Result<bool, RepositoryError>;

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
    /// the meantime (a concurrent verification won); the events are written
    /// only with the change.
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_verification(
        &self,
        hash: &TokenHash,
        user: &User,
        events: &[DomainEvent],
    ) -> Result<bool, RepositoryError>;
}

/// Filters and position of one page of users.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserListQuery {
    pub status: Option<crate::domain::UserStatus>,
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
    /// rotated into), spends outstanding reset links and writes the events
    /// (each told which login was kept: [`DomainEvent::with_kept_session`]),
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
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, PasswordChangeRefused>, RepositoryError>;

    /// Refuses every access token issued before `now` and ends every session
    /// (log out everywhere), with the events. `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError>;

    /// Disables the user and ends every session, with the events; unchanged
    /// (and no events) when already disabled. `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn disable(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError>;

    /// Re-enables a disabled user, with the events; unchanged (and no events)
    /// otherwise. `None` for an unknown user.
    ///
    /// # Errors
    /// Storage failures only.
    async fn enable(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError>;

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

    /// Spends the email-change token (and every other outstanding one of the
    /// user), moves the account to the token's address (verified: the link
    /// proved it), ends every session but those of the asking session's
    /// family, and writes the events (told which login was kept), atomically,
    /// provided the address is still `read`'s (the events were built from it).
    ///
    /// # Errors
    /// `Ok(Err(_))` when the change cannot be made; storage failures.
    async fn complete_email_change(
        &self,
        token: &TokenHash,
        read: &User,
        target: &EmailChangeTarget,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError>;

    /// An operator's change of address: moves the account to `email`, spends
    /// outstanding email-change tokens, refuses every access token issued
    /// before `now`, ends every session, stores `verification` (a new
    /// verification token, when the address is not verified) and writes the
    /// events, atomically.
    ///
    /// # Errors
    /// `Ok(Err(NoLongerApplies))` for an unknown user, `Ok(Err(EmailTaken))`
    /// when another account holds the address, `Ok(Err(ChangedMeanwhile))`
    /// when the address is no longer `read`'s (the events were built from
    /// it); storage failures.
    async fn set_email(
        &self,
        read: &User,
        email: &Email,
        is_verified: bool,
        now: OffsetDateTime,
        verification: Option<&NewSingleUseToken>,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError>;

    /// Spends the reset token (and every other outstanding one of the user),
    /// stores the new hash, refuses every access token issued before `now`, ends
    /// every session and writes the events, atomically. `None` (and no events)
    /// when the token was spent meanwhile or the user is no longer active.
    ///
    /// # Errors
    /// Storage failures only.
    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        user_id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError>;
}
