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
    ports::{
        AccessTokenIssuer, Clock, InvalidAccessToken, NoOtherReplicas, Revocation, RevocationBroadcast,
        RevocationNotice, RevocationSubscriber, SessionRepository, UserRepository,
    },
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
    /// `None`: another replica changed this key as of `as_of`; the next check
    /// reads the database, and no read that started before is cached.
    state: Option<S>,
    /// When this state was known to be current: a read's start, or the moment
    /// a change made here committed (or word of one made elsewhere arrived).
    as_of: Instant,
}

struct Entries<K, S> {
    map: HashMap<K, Entry<S>>,
    /// Nothing known before this counts: notices may have been missed then.
    valid_after: Option<Instant>,
}

/// A bounded per-replica cache in which what this replica changed, or heard
/// another change, always wins over a read that started before.
struct Cache<K, S> {
    entries: Mutex<Entries<K, S>>,
    ttl: Duration,
    capacity: usize,
}

impl<K: Eq + Hash + Copy, S: Copy> Cache<K, S> {
    fn new(ttl: Duration, capacity: usize) -> Self {
        Self { entries: Mutex::new(Entries { map: HashMap::new(), valid_after: None }), ttl, capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, S>> {
        // A poisoned cache is still a valid cache: every entry is a plain copy.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: K) -> Option<S> {
        self.lock().map.get(&key).filter(|entry| entry.as_of.elapsed() < self.ttl).and_then(|entry| entry.state)
    }

    /// Stores what a read that started at `as_of` found, unless the cache
    /// already knows something newer (a state, or that the key changed). When
    /// the cache is full of live entries, the read is answered but not cached:
    /// clearing would forget revocations made here, which a read still in
    /// flight could then overwrite.
    fn put_read(&self, key: K, state: S, as_of: Instant) -> S {
        let mut entries = self.lock();
        if entries.valid_after.is_some_and(|after| as_of < after) {
            return state;
        }
        if let Some(existing) = entries.map.get(&key)
            && existing.as_of >= as_of
            && existing.as_of.elapsed() < self.ttl
        {
            return existing.state.unwrap_or(state);
        }
        if entries.map.len() >= self.capacity && !entries.map.contains_key(&key) {
            let ttl = self.ttl;
            entries.map.retain(|_, entry| entry.as_of.elapsed() < ttl);
            if entries.map.len() >= self.capacity {
                return state;
            }
        }
        entries.map.insert(key, Entry { state: Some(state), as_of });
        state
    }

    /// Stores a change this replica committed (`Some`), or that another one
    /// did (`None`: read it again), unless the cached entry outranks it: a
    /// state `keep` prefers, or word of another replica's change, which may
    /// have committed after this one (the database then holds the answer).
    /// Always stored, full or not: these entries expire with the TTL, so they
    /// are bounded by how many changes are made within it.
    fn put_change(&self, key: K, state: Option<S>, keep: impl Fn(&S, &S) -> bool) {
        let mut entries = self.lock();
        if let (Some(existing), Some(new)) = (entries.map.get(&key), state.as_ref())
            && existing.as_of.elapsed() < self.ttl
            && existing.state.is_none_or(|cached| keep(&cached, new))
        {
            return;
        }
        if entries.map.len() >= self.capacity {
            let ttl = self.ttl;
            entries.map.retain(|_, entry| entry.as_of.elapsed() < ttl);
        }
        entries.map.insert(key, Entry { state, as_of: Instant::now() });
    }

    /// Forgets everything, and refuses to cache any read that started before.
    fn invalidate_all(&self) {
        let mut entries = self.lock();
        entries.map.clear();
        entries.valid_after = Some(Instant::now());
    }
}

/// Checks access tokens: the signature and claims (stateless), then whether the
/// user still honours tokens of that age (disabled, logged out everywhere, reset
/// password) and whether the token's session still stands (logged out, replayed
/// refresh token, ended by a password change). Both read a per-replica cache, so
/// the common case costs no database round trip; a change made on another
/// replica is seen when its notice arrives (PostgreSQL), and within the cache's
/// time to live if the notice is lost; one made here at once.
pub struct AccessGuard {
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub clock: Arc<dyn Clock>,
    user_cache: Cache<UserId, UserState>,
    session_cache: Cache<Uuid, SessionState>,
    broadcast: Arc<dyn RevocationBroadcast>,
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
            broadcast: Arc::new(NoOtherReplicas),
        }
    }

    /// Tells `broadcast` of every revocation made here.
    #[must_use]
    pub fn with_broadcast(mut self, broadcast: Arc<dyn RevocationBroadcast>) -> Self {
        self.broadcast = broadcast;
        self
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
    /// change committed), and tells the other replicas.
    pub async fn remember(&self, user: &User) {
        self.remember_here(user);
        self.tell_others(RevocationNotice { user: Some(user.id()), sessions: Vec::new() }).await;
    }

    /// Updates the cache after this replica ended sessions (an ended session
    /// never comes back), and tells the other replicas.
    pub async fn sessions_ended(&self, session_ids: &[Uuid]) {
        self.end_sessions_here(session_ids);
        self.tell_others(RevocationNotice { user: None, sessions: session_ids.to_vec() }).await;
    }

    /// Both of the above, for a committed [`Revocation`].
    pub async fn apply(&self, revocation: &Revocation) {
        let user = &revocation.user;
        self.remember_here(user);
        self.end_sessions_here(&revocation.revoked_sessions);
        self.tell_others(RevocationNotice { user: Some(user.id()), sessions: revocation.revoked_sessions.clone() })
            .await;
    }

    /// Records a user deleted here, and tells the other replicas.
    pub async fn forget(&self, user_id: UserId) {
        self.user_cache.put_change(user_id, Some(user_state(None)), |_, _| false);
        self.tell_others(RevocationNotice { user: Some(user_id), sessions: Vec::new() }).await;
    }

    fn remember_here(&self, user: &User) {
        self.user_cache.put_change(user.id(), Some(user_state(Some(user))), UserState::outranks);
    }

    fn end_sessions_here(&self, session_ids: &[Uuid]) {
        for id in session_ids {
            self.session_cache.put_change(*id, Some(SessionState { is_live: false }), |_, _| false);
        }
    }

    /// The change is committed whatever happens here: a notice that cannot be
    /// sent leaves the other replicas to their cache's time to live.
    async fn tell_others(&self, notice: RevocationNotice) {
        if notice.is_empty() {
            return;
        }
        if let Err(error) = self.broadcast.broadcast(&notice).await {
            tracing::warn!(error = %error, "could not tell the other replicas of a revocation; they see it within the revocation cache's TTL");
        }
    }
}

impl RevocationSubscriber for AccessGuard {
    fn revoked(&self, notice: &RevocationNotice) {
        if let Some(user) = notice.user {
            self.user_cache.put_change(user, None, |_, _| false);
        }
        for id in &notice.sessions {
            self.session_cache.put_change(*id, None, |_, _| false);
        }
    }

    fn missed_notices(&self) {
        self.user_cache.invalidate_all();
        self.session_cache.invalidate_all();
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
        sessions: Arc<FakeSessions>,
        guard: Arc<AccessGuard>,
        access: String,
        session_id: Uuid,
    }

    /// The notices a guard sent.
    #[derive(Default)]
    struct RecordingBroadcast(std::sync::Mutex<Vec<RevocationNotice>>);

    #[async_trait::async_trait]
    impl RevocationBroadcast for RecordingBroadcast {
        async fn broadcast(&self, notice: &RevocationNotice) -> Result<(), crate::domain::ports::RepositoryError> {
            self.0.lock().unwrap().push(notice.clone());
            Ok(())
        }
    }

    /// Disables the user in the database (the fake) behind the guard's back, as
    /// another replica would.
    fn disable_elsewhere(w: &World) {
        let mut users = w.users.users.lock().unwrap();
        let (user, _) = users.get_mut(&w.user.id()).unwrap();
        user.disable(T0 + Duration::from_secs(1)).unwrap();
    }

    fn is_revoked(result: &Result<AccessTokenClaims, ApplicationError>) -> bool {
        matches!(result, Err(ApplicationError::InvalidAccessToken(InvalidAccessToken::Revoked)))
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
        World { user, users, sessions, guard, access, session_id: session.id }
    }

    #[tokio::test]
    async fn a_change_made_elsewhere_is_honoured_from_the_cache_until_its_notice_arrives() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        disable_elsewhere(&w);
        assert!(w.guard.authenticate(&w.access).await.is_ok(), "the cache still holds the active user");
        w.guard.revoked(&RevocationNotice { user: Some(w.user.id()), sessions: Vec::new() });
        assert!(is_revoked(&w.guard.authenticate(&w.access).await), "the notice made the guard read again");
    }

    #[tokio::test]
    async fn a_notice_naming_a_session_makes_the_guard_read_that_session_again() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        w.sessions.by_id.lock().unwrap().get_mut(&w.session_id).unwrap().is_revoked = true;
        assert!(w.guard.authenticate(&w.access).await.is_ok(), "the cache still holds the live session");
        w.guard.revoked(&RevocationNotice { user: None, sessions: vec![w.session_id] });
        assert!(is_revoked(&w.guard.authenticate(&w.access).await));
    }

    #[tokio::test]
    async fn after_missed_notices_nothing_cached_before_is_trusted() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        disable_elsewhere(&w);
        w.guard.missed_notices();
        assert!(is_revoked(&w.guard.authenticate(&w.access).await));
    }

    #[tokio::test]
    async fn a_read_started_before_a_notice_arrived_is_answered_but_not_cached() {
        let w = world();
        let gate = Arc::new(futures_util::lock::Mutex::new(()));
        *w.users.gate.lock().unwrap() = Some(Arc::clone(&gate));
        let held = gate.lock().await;
        // The read finds the user active and waits at the gate; meanwhile
        // another replica disables the user and its notice arrives.
        let read = w.guard.authenticate(&w.access);
        let notice_meanwhile = async {
            disable_elsewhere(&w);
            w.guard.revoked(&RevocationNotice { user: Some(w.user.id()), sessions: Vec::new() });
            drop(held);
        };
        let (overlapping, ()) = futures_util::join!(read, notice_meanwhile);
        assert!(overlapping.is_ok(), "the call overlapped the change: either answer is right");
        *w.users.gate.lock().unwrap() = None;
        assert!(is_revoked(&w.guard.authenticate(&w.access).await), "the stale read was not cached");
    }

    #[tokio::test]
    async fn a_change_made_here_after_hearing_of_one_elsewhere_does_not_hide_it() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        // Another replica disables the user and says so; this replica's own
        // (older) change of the same user reports afterwards.
        disable_elsewhere(&w);
        w.guard.revoked(&RevocationNotice { user: Some(w.user.id()), sessions: Vec::new() });
        w.guard.remember(&w.user).await;
        assert!(is_revoked(&w.guard.authenticate(&w.access).await), "the database decided, not the local copy");
    }

    #[tokio::test]
    async fn every_revocation_made_here_is_told_to_the_other_replicas() {
        let w = world();
        let broadcast = Arc::new(RecordingBroadcast::default());
        let guard = AccessGuard::new(
            w.guard.tokens.clone(),
            w.guard.users.clone(),
            w.guard.sessions.clone(),
            w.guard.clock.clone(),
            Duration::from_secs(60),
        )
        .with_broadcast(broadcast.clone());
        guard.sessions_ended(&[w.session_id]).await;
        guard.forget(w.user.id()).await;
        guard.sessions_ended(&[]).await;
        assert_eq!(
            *broadcast.0.lock().unwrap(),
            vec![
                RevocationNotice { user: None, sessions: vec![w.session_id] },
                RevocationNotice { user: Some(w.user.id()), sessions: Vec::new() },
            ],
            "one notice per change, none for an empty one"
        );
    }

    #[tokio::test]
    async fn a_session_revoked_on_this_replica_is_refused_at_once_though_the_cache_had_it_live() {
        let w = world();
        w.guard.authenticate(&w.access).await.expect("a live session's token works");
        w.guard.sessions_ended(&[w.session_id]).await;
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
            w.guard.remember(&disabled).await;
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
