use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;

use super::ApplicationError;
use crate::domain::{
    AccessTokenClaims, User, UserId, UserStatus,
    ports::{AccessTokenIssuer, Clock, InvalidAccessToken, UserRepository},
};

/// What decides whether a user's tokens are still honoured.
#[derive(Debug, Clone, Copy)]
struct AccessState {
    exists: bool,
    is_disabled: bool,
    tokens_valid_after: Option<OffsetDateTime>,
    fetched: Instant,
}

/// Checks access tokens: the signature and claims (stateless), then whether the
/// user still honours tokens of that age (disabled, logged out everywhere, reset
/// password). The second part reads a per-replica cache, so the common case costs
/// no database round trip; a change made on another replica is seen within the
/// cache's time to live, one made here at once.
pub struct AccessGuard {
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub users: Arc<dyn UserRepository>,
    pub clock: Arc<dyn Clock>,
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<UserId, AccessState>>,
}

impl AccessGuard {
    pub fn new(
        tokens: Arc<dyn AccessTokenIssuer>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
        ttl: Duration,
    ) -> Self {
        Self { tokens, users, clock, ttl, capacity: 100_000, cache: Mutex::new(HashMap::new()) }
    }

    /// # Errors
    /// [`ApplicationError::InvalidAccessToken`], or storage failures on a cache miss.
    pub async fn authenticate(&self, token: &str) -> Result<AccessTokenClaims, ApplicationError> {
        let claims = self.tokens.verify(token, self.clock.now())?;
        let state = match self.cached(claims.user_id) {
            Some(state) => state,
            None => {
                let user = self.users.find_by_id(claims.user_id).await?;
                self.remember_state(claims.user_id, user.as_ref())
            }
        };
        let is_honoured = state.exists
            && !state.is_disabled
            && state.tokens_valid_after.is_none_or(|after| claims.issued_at >= after);
        if is_honoured { Ok(claims) } else { Err(InvalidAccessToken::Revoked.into()) }
    }

    /// Updates the cache after this replica changed the user.
    pub fn remember(&self, user: &User) {
        self.remember_state(user.id(), Some(user));
    }

    /// Drops a user from the cache (deleted here).
    pub fn forget(&self, user_id: UserId) {
        self.lock().remove(&user_id);
    }

    fn cached(&self, user_id: UserId) -> Option<AccessState> {
        self.lock().get(&user_id).copied().filter(|state| state.fetched.elapsed() < self.ttl)
    }

    fn remember_state(&self, user_id: UserId, user: Option<&User>) -> AccessState {
        let state = AccessState {
            exists: user.is_some(),
            is_disabled: user.is_some_and(|u| u.status() == UserStatus::Disabled),
            tokens_valid_after: user.and_then(User::tokens_valid_after),
            fetched: Instant::now(),
        };
        let mut cache = self.lock();
        if cache.len() >= self.capacity {
            // Bounded memory: drop what expired; if that is not enough, start over.
            let ttl = self.ttl;
            cache.retain(|_, s| s.fetched.elapsed() < ttl);
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(user_id, state);
        state
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, AccessState>> {
        // A poisoned cache is still a valid cache: every entry is a plain copy.
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
