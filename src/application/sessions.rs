use std::sync::Arc;

use super::{AccessGuard, ApplicationError, SessionIssuer, SessionTokens};
use crate::domain::{
    ClientContext, DomainEvent, EndedSessions, OpaqueToken, RevocationReason, UserEvent,
    ports::{AccountRepository, Clock, InvalidRefreshToken, LiveSession, Rotation, SessionRecord, SessionRepository},
};

fn invalid_refresh_token() -> ApplicationError {
    ApplicationError::InvalidRefreshToken(InvalidRefreshToken)
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: a
/// second presentation means it leaked, so the whole family of sessions that
/// descends from the same login is revoked; except within `reuse_grace` of
/// the rotation, where it is taken for a retry (a lost answer, two tabs
/// refreshing at once) and answered with a sibling session of the same family.
pub struct RefreshSession {
    pub sessions: Arc<dyn SessionRepository>,
    pub issuer: Arc<SessionIssuer>,
    pub guard: Arc<AccessGuard>,
    pub clock: Arc<dyn Clock>,
    /// `IDENTITY_REFRESH_REUSE_GRACE`; zero: every second presentation is theft.
    pub reuse_grace: std::time::Duration,
}

impl RefreshSession {
    /// # Errors
    /// Unknown, expired, revoked or reused tokens; a user who may no longer log
    /// in or revoked every session since this one's login.
    #[tracing::instrument(name = "refresh_session", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken, context: ClientContext) -> Result<SessionTokens, ApplicationError> {
        let now = self.clock.now();
        let session = self.sessions.find_by_token_hash(&token.hash()).await?.ok_or_else(invalid_refresh_token)?;
        tracing::Span::current().record("user_id", tracing::field::display(session.user_id));
        if session.is_revoked {
            return Err(invalid_refresh_token());
        }
        if let Some(rotated_at) = session.rotated_at {
            if !self.is_retry(rotated_at, now) {
                return Err(self.reuse_detected(&session, now).await);
            }
            if now >= session.expires_at {
                return Err(invalid_refresh_token());
            }
            return self.retried(&session, context, now).await;
        }
        if now >= session.expires_at {
            return Err(invalid_refresh_token());
        }
        // Past the family's absolute lifetime there is nothing to rotate into.
        let (next, refresh) = self.issuer.rotated(&session, context.clone()).ok_or_else(invalid_refresh_token)?;
        let user = match self.sessions.rotate(&session, &next, now).await? {
            Rotation::Rotated(user) => user,
            // Rotated (or revoked) between our read and our write: the token
            // was presented twice at once, a retry within the grace, reuse
            // without it.
            Rotation::Lost if !self.reuse_grace.is_zero() => return self.retried(&session, context, now).await,
            Rotation::Lost => return Err(self.reuse_detected(&session, now).await),
            Rotation::Refused => return Err(invalid_refresh_token()),
        };
        tracing::info!(user_id = %user.id(), session_id = %next.id, "session refreshed");
        self.issuer.tokens_for(user, &next, &refresh)
    }

    /// Whether a token spent at `rotated_at` and presented again at `now` is
    /// a retry rather than a replay.
    fn is_retry(&self, rotated_at: time::OffsetDateTime, now: time::OffsetDateTime) -> bool {
        now < rotated_at + self.reuse_grace
    }

    /// Answers a retry with a sibling of the session its token was rotated
    /// into; revokes the family if the session was revoked meanwhile.
    async fn retried(
        &self,
        spent: &SessionRecord,
        context: ClientContext,
        now: time::OffsetDateTime,
    ) -> Result<SessionTokens, ApplicationError> {
        let (sibling, refresh) = self.issuer.rotated(spent, context).ok_or_else(invalid_refresh_token)?;
        let user = match self.sessions.add_sibling(spent, &sibling, now - self.reuse_grace).await? {
            Rotation::Rotated(user) => user,
            Rotation::Lost => return Err(self.reuse_detected(spent, now).await),
            Rotation::Refused => return Err(invalid_refresh_token()),
        };
        tracing::info!(user_id = %user.id(), session_id = %sibling.id, "refresh retried within the reuse grace");
        self.issuer.tokens_for(user, &sibling, &refresh)
    }

    async fn reuse_detected(&self, session: &SessionRecord, now: time::OffsetDateTime) -> ApplicationError {
        let family_id = session.family_id;
        let events = [revoked_one(session, RevocationReason::RefreshTokenReused, now)];
        match self.sessions.revoke_family(session, now, &events).await {
            Ok(revoked) => {
                self.guard.sessions_ended(&revoked).await;
                tracing::warn!(family_id = %family_id, revoked = revoked.len(), "refresh token reused: revoked its whole session family");
                invalid_refresh_token()
            }
            Err(error) => error.into(),
        }
    }
}

/// `session.revoked` for the login `session` belongs to (its family).
fn revoked_one(session: &SessionRecord, reason: RevocationReason, now: time::OffsetDateTime) -> DomainEvent {
    UserEvent::sessions_revoked(session.user_id, EndedSessions::One(session.family_id), reason, now).into()
}

/// Ends the login a refresh token belongs to: its session and whatever it was
/// rotated into, so that a refresh racing the logout cannot keep it alive.
pub struct Logout {
    pub sessions: Arc<dyn SessionRepository>,
    pub guard: Arc<AccessGuard>,
    pub clock: Arc<dyn Clock>,
}

impl Logout {
    /// # Errors
    /// Unknown, expired or already revoked tokens.
    #[tracing::instrument(name = "logout", skip_all)]
    pub async fn execute(&self, token: OpaqueToken) -> Result<(), ApplicationError> {
        let now = self.clock.now();
        let session = self.sessions.find_by_token_hash(&token.hash()).await?.ok_or_else(invalid_refresh_token)?;
        if session.is_revoked || session.rotated_at.is_some() || now >= session.expires_at {
            return Err(invalid_refresh_token());
        }
        let events = [revoked_one(&session, RevocationReason::Logout, now)];
        let revoked = self.sessions.revoke_family(&session, now, &events).await?;
        if !revoked.contains(&session.id) {
            return Err(invalid_refresh_token());
        }
        self.guard.sessions_ended(&revoked).await;
        tracing::info!(user_id = %session.user_id, session_id = %session.id, "logged out");
        Ok(())
    }
}

/// Ends every session of the caller and refuses every access token issued so far.
pub struct LogoutAll {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub clock: Arc<dyn Clock>,
}

impl LogoutAll {
    /// # Errors
    /// An invalid access token; storage failures.
    #[tracing::instrument(name = "logout_all", skip_all, fields(user_id))]
    pub async fn execute(&self, access_token: &str) -> Result<u64, ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        let now = self.clock.now();
        let event =
            UserEvent::sessions_revoked(claims.user_id, EndedSessions::AllBut(None), RevocationReason::LogoutAll, now);
        let revocation = self
            .accounts
            .revoke_all_sessions(claims.user_id, now, &[event.into()])
            .await?
            .ok_or(crate::domain::ports::InvalidAccessToken::Revoked)?;
        self.guard.apply(&revocation).await;
        let revoked = u64::try_from(revocation.revoked_sessions.len()).unwrap_or(u64::MAX);
        tracing::info!(user_id = %revocation.user.id(), revoked, "logged out everywhere");
        Ok(revoked)
    }
}

/// Most sessions `ListSessions` answers: hostile numbers of logins cost a
/// bounded read.
pub const MAX_LISTED_SESSIONS: usize = 100;

/// A user's logins that can still be refreshed, newest first, with the one of
/// the calling access token marked.
pub struct ListSessions {
    pub guard: Arc<AccessGuard>,
    pub sessions: Arc<dyn SessionRepository>,
    pub clock: Arc<dyn Clock>,
}

/// One listed session, and whether the caller's access token belongs to it.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub session: LiveSession,
    pub is_current: bool,
}

impl ListSessions {
    /// # Errors
    /// An invalid access token; storage failures.
    #[tracing::instrument(name = "list_sessions", skip_all, fields(user_id))]
    pub async fn execute(&self, access_token: &str) -> Result<Vec<ListedSession>, ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let live = self.sessions.list_live(claims.user_id, self.clock.now(), MAX_LISTED_SESSIONS).await?;
        // The token names the session it was issued with; later refreshes of
        // that login made new ones, but they share its family.
        let current_family = match claims.session_id {
            Some(id) => self.sessions.find_by_id(id).await?.map(|record| record.family_id),
            None => None,
        };
        Ok(live
            .into_iter()
            .map(|session| ListedSession { is_current: Some(session.id) == current_family, session })
            .collect())
    }
}

/// Ends one of the caller's logins (by the id `ListSessions` shows) and its
/// access tokens.
pub struct RevokeSession {
    pub guard: Arc<AccessGuard>,
    pub sessions: Arc<dyn SessionRepository>,
    pub clock: Arc<dyn Clock>,
}

impl RevokeSession {
    /// # Errors
    /// An invalid access token; [`ApplicationError::SessionNotFound`] for an
    /// unknown id, another user's, or one already ended (the same answer, so
    /// that ids of others' sessions cannot be probed); storage failures.
    #[tracing::instrument(name = "revoke_session", skip_all, fields(user_id))]
    pub async fn execute(&self, access_token: &str, session_id: uuid::Uuid) -> Result<(), ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let now = self.clock.now();
        let event = UserEvent::sessions_revoked(
            claims.user_id,
            EndedSessions::One(session_id),
            RevocationReason::RevokedByUser,
            now,
        );
        let revoked = self
            .sessions
            .revoke_live_family(claims.user_id, session_id, now, &[event.into()])
            .await?
            .ok_or(ApplicationError::SessionNotFound)?;
        self.guard.sessions_ended(&revoked).await;
        tracing::info!(user_id = %claims.user_id, session_id = %session_id, revoked = revoked.len(), "session revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use secrecy::ExposeSecret;

    use super::*;
    use crate::{
        application::fakes::{FakeSessions, FakeTokenIssuer, FakeUsers, FixedClock, T0, active_user, guard, issuer},
        domain::{User, ports::AccessTokenIssuer},
    };

    const HOUR: Duration = Duration::from_secs(3600);

    struct World {
        user: User,
        sessions: Arc<FakeSessions>,
        issuer: Arc<SessionIssuer>,
        guard: Arc<AccessGuard>,
        refresh: RefreshSession,
    }

    const GRACE: Duration = Duration::from_secs(10);

    fn world(max_lifetime: Duration) -> World {
        let clock = FixedClock::at(T0);
        let user = active_user("ada@example.com");
        let users = FakeUsers::with(&user, "correct horse battery");
        let sessions = Arc::new(FakeSessions::default());
        let guard = guard(&users, &sessions, &clock);
        let issuer = issuer(&clock, max_lifetime);
        let refresh = RefreshSession {
            sessions: sessions.clone(),
            issuer: issuer.clone(),
            guard: guard.clone(),
            clock: clock.clone(),
            reuse_grace: GRACE,
        };
        World { user, sessions, issuer, guard, refresh }
    }

    #[tokio::test]
    async fn a_refresh_rotates_the_session_into_a_new_one_of_the_same_family() {
        let w = world(30 * 24 * HOUR);
        let (session, token) = w.issuer.new_session(&w.user, ClientContext::default());
        w.sessions.store(&session, |_| {});
        *w.sessions.rotation.lock().unwrap() = Some(Rotation::Rotated(w.user.clone()));
        let presented = token.expose().to_owned();
        let tokens = w.refresh.execute(token, ClientContext::default()).await.expect("a live session refreshes");
        let inserted = w.sessions.inserted.lock().unwrap().clone();
        assert_eq!(inserted.len(), 1);
        assert_eq!(inserted[0].family_id, session.family_id);
        assert_eq!(inserted[0].authenticated_at, session.authenticated_at, "rotation keeps the login time");
        assert_ne!(inserted[0].id, session.id);
        assert_ne!(tokens.refresh_token.token.expose_secret(), presented);
    }

    #[tokio::test]
    async fn a_reused_refresh_token_revokes_its_whole_family() {
        let w = world(30 * 24 * HOUR);
        let (old, old_token) = w.issuer.new_session(&w.user, ClientContext::default());
        w.sessions.store(&old, |r| r.rotated_at = Some(T0 - GRACE));
        let (next, _) =
            w.issuer.rotated(&FakeSessions::record_of(&old), ClientContext::default()).expect("within the lifetime");
        w.sessions.store(&next, |_| {});
        let access = FakeTokenIssuer.issue(w.user.id(), next.id, T0).unwrap();
        w.guard.authenticate(access.token.expose_secret()).await.expect("the live session's token works");

        let result = w.refresh.execute(old_token, ClientContext::default()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidRefreshToken(_))), "{result:?}");
        assert_eq!(*w.sessions.revoked_families.lock().unwrap(), [old.family_id]);
        // The family's live session ends on this replica at once, access token included.
        let refused = w.guard.authenticate(access.token.expose_secret()).await;
        assert!(matches!(refused, Err(ApplicationError::InvalidAccessToken(_))), "{refused:?}");
    }

    #[tokio::test]
    async fn a_family_past_its_absolute_lifetime_is_refused_though_its_session_has_not_expired() {
        let w = world(2 * HOUR);
        let (session, token) = w.issuer.new_session(&w.user, ClientContext::default());
        // A session rotated into recently, of a login two hours ago.
        w.sessions.store(&session, |r| r.authenticated_at = T0 - 2 * HOUR);
        let result = w.refresh.execute(token, ClientContext::default()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidRefreshToken(_))), "{result:?}");
        assert!(w.sessions.inserted.lock().unwrap().is_empty());
        assert!(w.sessions.revoked_families.lock().unwrap().is_empty(), "expiry is not reuse");
    }

    #[tokio::test]
    async fn a_token_presented_again_within_the_grace_gets_a_sibling_and_revokes_nothing() {
        let w = world(30 * 24 * HOUR);
        let (old, old_token) = w.issuer.new_session(&w.user, ClientContext::default());
        w.sessions.store(&old, |r| r.rotated_at = Some(T0 - GRACE + Duration::from_secs(1)));
        *w.sessions.rotation.lock().unwrap() = Some(Rotation::Rotated(w.user.clone()));
        w.refresh.execute(old_token, ClientContext::default()).await.expect("a retry within the grace");
        let inserted = w.sessions.inserted.lock().unwrap().clone();
        assert_eq!(inserted.len(), 1);
        assert_eq!(inserted[0].family_id, old.family_id, "a sibling in the same family");
        assert!(w.sessions.revoked_families.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_zero_grace_treats_a_concurrent_loser_as_reuse() {
        let mut w = world(30 * 24 * HOUR);
        w.refresh.reuse_grace = Duration::ZERO;
        let (old, old_token) = w.issuer.new_session(&w.user, ClientContext::default());
        w.sessions.store(&old, |_| {});
        *w.sessions.rotation.lock().unwrap() = Some(Rotation::Lost);
        let result = w.refresh.execute(old_token, ClientContext::default()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidRefreshToken(_))), "{result:?}");
        assert_eq!(*w.sessions.revoked_families.lock().unwrap(), [old.family_id]);
    }

    #[tokio::test]
    async fn a_retry_of_a_session_revoked_meanwhile_is_refused() {
        let w = world(30 * 24 * HOUR);
        let (old, old_token) = w.issuer.new_session(&w.user, ClientContext::default());
        w.sessions.store(&old, |r| r.rotated_at = Some(T0));
        // Revoked between the read and the sibling's write.
        w.sessions.by_id.lock().unwrap().get_mut(&old.id).unwrap().is_revoked = true;
        let result = w.refresh.execute(old_token, ClientContext::default()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidRefreshToken(_))), "{result:?}");
        assert!(w.sessions.inserted.lock().unwrap().is_empty());
    }
}
