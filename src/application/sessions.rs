use std::sync::Arc;

use super::{AccessGuard, ApplicationError, SessionIssuer, SessionTokens};
use crate::domain::{
    OpaqueToken,
    ports::{AccountRepository, Clock, InvalidRefreshToken, Rotation, SessionRepository},
};

fn invalid_refresh_token() -> ApplicationError {
    ApplicationError::InvalidRefreshToken(InvalidRefreshToken)
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: a
/// second presentation means it leaked, so the whole family of sessions that
/// descends from the same login is revoked.
pub struct RefreshSession {
    pub sessions: Arc<dyn SessionRepository>,
    pub issuer: Arc<SessionIssuer>,
    pub guard: Arc<AccessGuard>,
    pub clock: Arc<dyn Clock>,
}

impl RefreshSession {
    /// # Errors
    /// Unknown, expired, revoked or reused tokens; a user who may no longer log
    /// in or revoked every session since this one's login.
    #[tracing::instrument(name = "refresh_session", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken) -> Result<SessionTokens, ApplicationError> {
        let now = self.clock.now();
        let session = self.sessions.find_by_token_hash(&token.hash()).await?.ok_or_else(invalid_refresh_token)?;
        tracing::Span::current().record("user_id", tracing::field::display(session.user_id));
        if session.is_revoked {
            return Err(invalid_refresh_token());
        }
        if session.is_rotated {
            return Err(self.reuse_detected(session.family_id, now).await);
        }
        if now >= session.expires_at {
            return Err(invalid_refresh_token());
        }
        // Past the family's absolute lifetime there is nothing to rotate into.
        let (next, refresh) = self.issuer.rotated(&session).ok_or_else(invalid_refresh_token)?;
        let user = match self.sessions.rotate(&session, &next, now).await? {
            Rotation::Rotated(user) => user,
            // Rotated (or revoked) between our read and our write: the token was
            // presented twice at once, which is reuse too.
            Rotation::Lost => return Err(self.reuse_detected(session.family_id, now).await),
            Rotation::Refused => return Err(invalid_refresh_token()),
        };
        tracing::info!(user_id = %user.id(), session_id = %next.id, "session refreshed");
        self.issuer.tokens_for(user, &next, &refresh)
    }

    async fn reuse_detected(&self, family_id: uuid::Uuid, now: time::OffsetDateTime) -> ApplicationError {
        match self.sessions.revoke_family(family_id, now).await {
            Ok(revoked) => {
                self.guard.sessions_ended(&revoked);
                tracing::warn!(family_id = %family_id, revoked = revoked.len(), "refresh token reused: revoked its whole session family");
                invalid_refresh_token()
            }
            Err(error) => error.into(),
        }
    }
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
        if session.is_revoked || session.is_rotated || now >= session.expires_at {
            return Err(invalid_refresh_token());
        }
        let revoked = self.sessions.revoke_family(session.family_id, now).await?;
        if !revoked.contains(&session.id) {
            return Err(invalid_refresh_token());
        }
        self.guard.sessions_ended(&revoked);
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
        let revocation = self
            .accounts
            .revoke_all_sessions(claims.user_id, self.clock.now())
            .await?
            .ok_or(crate::domain::ports::InvalidAccessToken::Revoked)?;
        self.guard.apply(&revocation);
        let revoked = u64::try_from(revocation.revoked_sessions.len()).unwrap_or(u64::MAX);
        tracing::info!(user_id = %revocation.user.id(), revoked, "logged out everywhere");
        Ok(revoked)
    }
}
