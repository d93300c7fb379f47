use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use uuid::Uuid;

use super::ApplicationError;
use time::OffsetDateTime;

use crate::domain::{
    AccessGrant, AuthMethods, ClientContext, IssuedToken, OpaqueToken, User, UserId,
    ports::{AccessTokenIssuer, Clock, NewSession, SessionRecord},
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
    /// However often it is refreshed, a login's session family ends this long
    /// after the login (`IDENTITY_SESSION_MAX_LIFETIME`).
    pub max_lifetime: Duration,
}

impl SessionIssuer {
    /// A password login's first session (a new family), and the secret refresh token for it.
    pub fn new_session(&self, user: &User, context: ClientContext) -> (NewSession, OpaqueToken) {
        self.login_session(user, AuthMethods::Password, context)
    }

    /// A login's first session, authenticated by `methods`, from the device `context`.
    pub fn login_session(
        &self,
        user: &User,
        methods: AuthMethods,
        context: ClientContext,
    ) -> (NewSession, OpaqueToken) {
        let now = self.clock.now();
        let id = Uuid::now_v7();
        self.session(user.id(), id, now, now, methods, context)
    }

    /// The session a refresh rotates `old` into: same family, same login time,
    /// never past the family's absolute lifetime. `None` once that is over.
    pub fn rotated(&self, old: &SessionRecord, context: ClientContext) -> Option<(NewSession, OpaqueToken)> {
        let now = self.clock.now();
        let (session, refresh) =
            self.session(old.user_id, old.family_id, old.authenticated_at, now, old.methods, context);
        (session.expires_at > now).then_some((session, refresh))
    }

    fn session(
        &self,
        user_id: UserId,
        family_id: Uuid,
        authenticated_at: OffsetDateTime,
        now: OffsetDateTime,
        methods: AuthMethods,
        context: ClientContext,
    ) -> (NewSession, OpaqueToken) {
        let refresh = OpaqueToken::generate();
        let session = NewSession {
            id: Uuid::now_v7(),
            family_id,
            user_id,
            token_hash: refresh.hash(),
            created_at: now,
            expires_at: (now + self.refresh_ttl).min(authenticated_at + self.max_lifetime),
            authenticated_at,
            context,
            methods,
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
        let grant = AccessGrant {
            user_id: user.id(),
            session_id: session.id,
            methods: session.methods,
            authenticated_at: session.authenticated_at,
        };
        let access_token = self.tokens.issue_for(&grant, self.clock.now())?;
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
