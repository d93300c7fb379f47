//! Refresh-token sessions and login throttling.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

/// A login's device, for new-device notices, remembered with its session. If
/// the user has logged in before but never from this device, `notice` goes to
/// the outbox in the same transaction (once, however many logins race).
#[derive(Debug, Clone)]
pub struct DeviceSighting {
    pub fingerprint: DeviceFingerprint,
    pub seen_at: OffsetDateTime,
    pub notice: DomainEvent,
}

/// How many devices are remembered per user; the ones unused the longest go first.
pub const MAX_KNOWN_DEVICES: u64 = 50;

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
    /// How that login authenticated; rotations keep it too.
    pub methods: AuthMethods,
    /// The device that logged in or refreshed into this session.
    pub context: ClientContext,
}

/// A login that can still be refreshed, as its user sees it: one per family,
/// described by its newest live session (the last refresh).
#[derive(Debug, Clone)]
pub struct LiveSession {
    /// The family id: it stays the same through every refresh.
    pub id: Uuid,
    pub user_id: UserId,
    /// The login.
    pub created_at: OffsetDateTime,
    /// The last refresh (the login if there was none).
    pub last_used_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    /// The device of the last refresh (or of the login).
    pub context: ClientContext,
}

/// A stored refresh-token session.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id: Uuid,
    pub family_id: Uuid,
    pub user_id: UserId,
    pub expires_at: OffsetDateTime,
    pub authenticated_at: OffsetDateTime,
    pub methods: AuthMethods,
    /// When a refresh spent this session's token, if one did.
    pub rotated_at: Option<OffsetDateTime>,
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

/// Refresh-token sessions.
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Stores a login's session under the user's row lock, provided the user
    /// may still log in and the password version is still the one verified; with
    /// `upgraded_hash`, replaces the stored hash (same password, today's cost),
    /// and with `device`, remembers it (see [`DeviceSighting`]), in the same
    /// transaction; the events (`session.created`) are written only with the
    /// session, and the login's throttle counters are cleared with it (as
    /// [`LoginThrottles::succeeded`] does), so a login commits once.
    ///
    /// # Errors
    /// Storage failures only.
    async fn insert_for_login(
        &self,
        session: &NewSession,
        verified_version: i32,
        upgraded_hash: Option<&PasswordHash>,
        events: &[DomainEvent],
        device: Option<&DeviceSighting>,
        throttle: &LoginAttemptKeys,
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

    /// A retry of a refresh: under the user's lock, checks what `rotate`
    /// checks, and, in the statement that stores `new` (a sibling in the same
    /// family, leaving `spent` as it is), that `spent` was rotated after
    /// `rotated_after` (within the reuse grace) and that neither it nor any
    /// other member of its family was revoked. `Lost` when one of those fails.
    ///
    /// # Errors
    /// Storage failures only.
    async fn add_sibling(
        &self,
        spent: &SessionRecord,
        new: &NewSession,
        rotated_after: OffsetDateTime,
    ) -> Result<Rotation, RepositoryError>;

    /// Revokes every live session of `member`'s family; returns their ids. The
    /// events are written only when it revoked one.
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_family(
        &self,
        member: &SessionRecord,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Vec<Uuid>, RepositoryError>;

    /// The user's logins that can still be refreshed at `now`, newest login
    /// first, at most `limit` of them.
    ///
    /// # Errors
    /// Storage failures only.
    async fn list_live(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<LiveSession>, RepositoryError>;

    /// Revokes the family `family_id` if it is `user_id`'s and still has a
    /// session that can be refreshed at `now`; returns the ids revoked (with
    /// the rotated ones whose access tokens may still be live), or `None` when
    /// there is no such family (and then writes no events).
    ///
    /// # Errors
    /// Storage failures only.
    async fn revoke_live_family(
        &self,
        user_id: UserId,
        family_id: Uuid,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Vec<Uuid>>, RepositoryError>;
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
