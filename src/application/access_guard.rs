use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use super::ApplicationError;
use crate::domain::{
    AccessTokenClaims, User, UserId, UserStatus,
    ports::{AccessTokenIssuer, Clock, InvalidAccessToken, Revocation, SessionRepository, UserRepository},
};

/// What decides whether a user's tokens are still honoured.
#[derive(Debug, Clone, Copy)]
struct UserState {
    exists: bool,
    is_disabled: bool,
    tokens_valid_after: Option<OffsetDateTime>,
    /// Moves forward with every change: of two states, the later one wins,
    /// whichever of two local changes reports last.
    updated_at: Option<OffsetDateTime>,
}

impl UserState {
    /// Whether `self` (cached) must stay rather than give way to `new`.
    fn outranks(&self, new: &Self) -> bool {
        // Ids are never reused: a deletion is final.
        !self.exists || matches!((self.updated_at, new.updated_at), (Some(ours), Some(theirs)) if ours > theirs)
    }
}

/// Whether the session an access token was issued for still stands.
#[derive(Debug, Clone, Copy)]
struct SessionState {
    is_live: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry<S> {
    state: S,
    /// When this state was known to be current: a read's start, or the moment
    /// a change made here committed.
    as_of: Instant,
}

/// A bounded per-replica cache in which what this replica changed always wins
/// over a read that started before the change.
struct Cache<K, S> {
    entries: Mutex<HashMap<K, Entry<S>>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Copy, S: Copy> Cache<K, S> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(HashMap::new()), ttl, capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry<S>>> {
        // A poisoned cache is still a valid cache: every entry is a plain copy.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: K) -> Option<S> {
        self.lock().get(&key).filter(|entry| entry.as_of.elapsed() < self.ttl).map(|entry| entry.state)
    }

    /// Stores what a read that started at `as_of` found, unless the cache
    /// already knows something newer. When the cache is full of live entries,
    /// the read is answered but not cached: clearing would forget revocations
    /// made here, which a read still in flight could then overwrite.
    fn put_read(&self, key: K, state: S, as_of: Instant) -> S {
        let mut entries = self.lock();
        if let Some(existing) = entries.get(&key)
            && existing.as_of >= as_of
            && existing.as_of.elapsed() < self.ttl
        {
            return existing.state;
        }
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.as_of.elapsed() < ttl);
            if entries.len() >= self.capacity {
                return state;
            }
        }
        entries.insert(key, Entry { state, as_of });
        state
    }

    /// Stores a change this replica committed, unless `keep` says the cached
    /// state outranks it. Always stored, full or not: entries of changes made
    /// here expire with the TTL, so they are bounded by how many changes one
    /// replica commits within it.
    fn put_change(&self, key: K, state: S, keep: impl Fn(&S, &S) -> bool) {
        let mut entries = self.lock();
        if let Some(existing) = entries.get(&key)
            && existing.as_of.elapsed() < self.ttl
            && keep(&existing.state, &state)
        {
            return;
        }
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.as_of.elapsed() < ttl);
        }
        entries.insert(key, Entry { state, as_of: Instant::now() });
    }
}

/// Checks access tokens: the signature and claims (stateless), then whether the
/// user still honours tokens of that age (disabled, logged out everywhere, reset
/// password) and whether the token's session still stands (logged out, replayed
/// refresh token, ended by a password change). Both read a per-replica cache, so
/// the common case costs no database round trip; a change made on another
/// replica is seen within the cache's time to live, one made here at once.
pub struct AccessGuard {
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub clock: Arc<dyn Clock>,
    user_cache: Cache<UserId, UserState>,
    session_cache: Cache<Uuid, SessionState>,
}

const CAPACITY: usize = 100_000;

impl AccessGuard {
    pub fn new(
        tokens: Arc<dyn AccessTokenIssuer>,
        users: Arc<dyn UserRepository>,
        sessions: Arc<dyn SessionRepository>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self {
            tokens,
            users,
            sessions,
            clock,
            user_cache: Cache::new(ttl, CAPACITY),
            session_cache: Cache::new(ttl, CAPACITY),
        }
    }

    /// # Errors
    /// [`ApplicationError::InvalidAccessToken`], or storage failures on a cache miss.
    pub async fn authenticate(&self, token: &str) -> Result<AccessTokenClaims, ApplicationError> {
        let claims = self.tokens.verify(token, self.clock.now())?;
        let user = match self.user_cache.get(claims.user_id) {
            Some(state) => state,
            None => {
                let started = Instant::now();
                let user = self.users.find_by_id(claims.user_id).await?;
                self.user_cache.put_read(claims.user_id, user_state(user.as_ref()), started)
            }
        };
        let is_honoured =
            user.exists && !user.is_disabled && user.tokens_valid_after.is_none_or(|after| claims.issued_at >= after);
        if !is_honoured {
            return Err(InvalidAccessToken::Revoked.into());
        }
        if let Some(session_id) = claims.session_id {
            let session = match self.session_cache.get(session_id) {
                Some(state) => state,
                None => {
                    let started = Instant::now();
                    let session = self.sessions.find_by_id(session_id).await?;
                    let is_live = session.is_some_and(|s| !s.is_revoked && s.user_id == claims.user_id);
                    self.session_cache.put_read(session_id, SessionState { is_live }, started)
                }
            };
            if !session.is_live {
                return Err(InvalidAccessToken::Revoked.into());
            }
        }
        Ok(claims)
    }

    /// Updates the cache after this replica changed the user (call it after the
    /// change committed).
    pub fn remember(&self, user: &User) {
        self.user_cache.put_change(user.id(), user_state(Some(user)), UserState::outranks);
    }

    /// Updates the cache after this replica ended sessions (an ended session
    /// never comes back).
    pub fn sessions_ended(&self, session_ids: &[Uuid]) {
        for id in session_ids {
            self.session_cache.put_change(*id, SessionState { is_live: false }, |_, _| false);
        }
    }

    /// Both of the above, for a committed [`Revocation`].
    pub fn apply(&self, revocation: &Revocation) {
        self.remember(&revocation.user);
        self.sessions_ended(&revocation.revoked_sessions);
    }

    /// Records a user deleted here.
    pub fn forget(&self, user_id: UserId) {
        self.user_cache.put_change(user_id, user_state(None), |_, _| false);
    }
}

fn user_state(user: Option<&User>) -> UserState {
    UserState {
        exists: user.is_some(),
        is_disabled: user.is_some_and(|u| u.status() == UserStatus::Disabled),
        tokens_valid_after: user.and_then(User::tokens_valid_after),
        updated_at: user.map(User::updated_at),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::application::fakes::{
        FakeSessions, FakeTokenIssuer, FakeUsers, FixedClock, T0, active_user, guard, issuer,
    };

    struct World {
        user: User,
        users: Arc<FakeUsers>,
        guard: Arc<AccessGuard>,
        access: String,
        session_id: Uuid,
    }

    fn world() -> World {
        let clock = FixedClock::at(T0);
        let user = active_user("ada@example.com");
        let users = FakeUsers::with(&user, "correct horse battery");
        let sessions = Arc::new(FakeSessions::default());
        let (session, _) =
            issuer(&clock, Duration::from_secs(86_400)).new_session(&user, crate::domain::ClientContext::default());
        sessions.store(&session, |_| {});
        let access = FakeTokenIssuer.issue(user.id(), session.id, T0).unwrap().token.expose_secret().to_owned();
        let guard = guard(&users, &sessions, &clock);
        World { user, users, guard, access, session_id: session.id }
    }

    #[tokio::test]
    async fn a_session_revoked_on_this_replica_is_refused_at_once_though_the_cache_had_it_live() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        w.guard.sessions_ended(&[w.session_id]);
        let result = w.guard.authenticate(&w.access).await;
        assert!(matches!(result, Err(ApplicationError::InvalidAccessToken(InvalidAccessToken::Revoked))), "{result:?}");
    }

    #[tokio::test]
    async fn a_read_started_before_a_local_revocation_does_not_overwrite_it() {
        let w = world();
        let gate = Arc::new(futures_util::lock::Mutex::new(()));
        *w.users.gate.lock().unwrap() = Some(Arc::clone(&gate));
        let held = gate.lock().await;
        // `join!` polls in order: the read finds the user active and waits at
        // the gate before the second future disables the user on this replica
        // and opens the gate.
        let read = w.guard.authenticate(&w.access);
        let revoke_meanwhile = async {
            let mut disabled = w.user.clone();
            disabled.disable(T0 + Duration::from_secs(1)).unwrap();
            w.guard.remember(&disabled);
            drop(held);
        };
        let (stale, ()) = futures_util::join!(read, revoke_meanwhile);
        assert!(matches!(stale, Err(ApplicationError::InvalidAccessToken(_))), "{stale:?}");
        let after = w.guard.authenticate(&w.access).await;
        assert!(
            matches!(after, Err(ApplicationError::InvalidAccessToken(_))),
            "the stale read was not cached: {after:?}"
        );
    }
}
