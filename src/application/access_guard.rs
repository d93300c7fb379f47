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
