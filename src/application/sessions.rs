use std::sync::Arc;

use super::{AccessGuard, ApplicationError, SessionIssuer, SessionTokens};
use crate::domain::{
    OpaqueToken,
    ports::{AccountRepository, Clock, InvalidAccessToken, SessionRepository, UserRepository},
};

fn invalid_refresh_token() -> ApplicationError {
    ApplicationError::InvalidAccessToken(InvalidAccessToken::Revoked)
}

/// Exchanges a refresh token for a new pair. Each refresh token works once: a
/// second presentation means it leaked, so the whole family of sessions that
/// descends from the same login is revoked.
pub struct RefreshSession {
    pub sessions: Arc<dyn SessionRepository>,
    pub users: Arc<dyn UserRepository>,
    pub issuer: Arc<SessionIssuer>,
    pub clock: Arc<dyn Clock>,
}

impl RefreshSession {
    /// # Errors
    /// Unknown, expired, revoked or reused tokens; a user who may no longer log in.
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
        let user = self.users.find_by_id(session.user_id).await?.ok_or_else(invalid_refresh_token)?;
        if user.ensure_can_log_in().is_err() {
            return Err(invalid_refresh_token());
        }
        let (next, refresh) = self.issuer.new_session(&user, Some(session.family_id));
        if !self.sessions.rotate(session.id, &next, now).await? {
            // Rotated (or revoked) between our read and our write: the token was
            // presented twice at once, which is reuse too.
            return Err(self.reuse_detected(session.family_id, now).await);
        }
        tracing::info!(user_id = %user.id(), session_id = %next.id, "session refreshed");
        self.issuer.tokens_for(user, &next, &refresh)
    }

    async fn reuse_detected(&self, family_id: uuid::Uuid, now: time::OffsetDateTime) -> ApplicationError {
        match self.sessions.revoke_family(family_id, now).await {
            Ok(revoked) => {
                tracing::warn!(family_id = %family_id, revoked, "refresh token reused: revoked its whole session family");
                invalid_refresh_token()
            }
            Err(error) => error.into(),
        }
    }
}

/// Ends the session of a refresh token.
pub struct Logout {
    pub sessions: Arc<dyn SessionRepository>,
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
        if !self.sessions.revoke(session.id, now).await? {
            return Err(invalid_refresh_token());
        }
        tracing::info!(user_id = %session.user_id, session_id = %session.id, "logged out");
        Ok(())
    }
}

/// Ends every session of the caller and refuses every access token issued so far.
pub struct LogoutAll {
    pub guard: Arc<AccessGuard>,
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub clock: Arc<dyn Clock>,
}

impl LogoutAll {
    /// # Errors
    /// An invalid access token; storage failures.
    #[tracing::instrument(name = "logout_all", skip_all, fields(user_id))]
    pub async fn execute(&self, access_token: &str) -> Result<u64, ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        let mut user = self.users.find_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?;
        user.revoke_tokens(self.clock.now());
        let revoked = self.accounts.save_account_state(&user, true).await?;
        self.guard.remember(&user);
        tracing::info!(user_id = %user.id(), revoked, "logged out everywhere");
        Ok(revoked)
    }
}
