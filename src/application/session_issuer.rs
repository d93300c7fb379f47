use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use uuid::Uuid;

use super::ApplicationError;
use crate::domain::{
    IssuedToken, OpaqueToken, User,
    ports::{AccessTokenIssuer, Clock, NewSession},
};

/// A new session's tokens, as handed to the caller.
#[derive(Debug)]
pub struct SessionTokens {
    pub access_token: IssuedToken,
    pub refresh_token: IssuedToken,
    pub user: User,
}

/// Mints the refresh-token session and the access token bound to it.
pub struct SessionIssuer {
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub clock: Arc<dyn Clock>,
    pub refresh_ttl: Duration,
}

impl SessionIssuer {
    /// A session to store, in `family` (a login starts a new family) and the
    /// secret refresh token for it.
    pub fn new_session(&self, user: &User, family: Option<Uuid>) -> (NewSession, OpaqueToken) {
        let now = self.clock.now();
        let refresh = OpaqueToken::generate();
        let id = Uuid::now_v7();
        let session = NewSession {
            id,
            family_id: family.unwrap_or(id),
            user_id: user.id(),
            token_hash: refresh.hash(),
            created_at: now,
            expires_at: now + self.refresh_ttl,
        };
        (session, refresh)
    }

    /// # Errors
    /// Only a broken signing key.
    pub fn tokens_for(
        &self,
        user: User,
        session: &NewSession,
        refresh: &OpaqueToken,
    ) -> Result<SessionTokens, ApplicationError> {
        let access_token = self.tokens.issue(user.id(), session.id, self.clock.now())?;
        Ok(SessionTokens {
            access_token,
            refresh_token: IssuedToken {
                token: SecretString::from(refresh.expose().to_owned()),
                expires_at: session.expires_at,
            },
            user,
        })
    }
}
