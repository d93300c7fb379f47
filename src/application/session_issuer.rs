use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use uuid::Uuid;

use super::ApplicationError;
use time::OffsetDateTime;

use crate::domain::{
    AccessGrant, AuthMethods, ClientContext, DomainEvent, IssuedToken, NewDeviceSignIn, OpaqueToken, User, UserId,
    ports::{AccessTokenIssuer, Clock, DeviceSighting, NewSession, SessionRecord},
};

use super::email_change::notice_to;

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
    /// Whether logins remember their device and email the user about a new
    /// one (`IDENTITY_NOTIFY_NEW_DEVICE`).
    pub notify_new_device: bool,
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

    /// The device a login's `session` comes from, to remember with it, and the
    /// notice that goes out if it is new to `user`; `None` when new-device
    /// notices are off or the device is unknown (no user agent, no address).
    pub fn device_sighting(&self, user: &User, session: &NewSession) -> Option<DeviceSighting> {
        if !self.notify_new_device {
            return None;
        }
        let fingerprint = session.context.fingerprint()?;
        let notice = DomainEvent::NewDeviceSignIn(NewDeviceSignIn {
            notice: notice_to(user, session.created_at),
            user_agent: session.context.user_agent.as_ref().map(|agent| agent.as_str().to_owned()),
            network: session.context.coarse_address(),
        });
        Some(DeviceSighting { fingerprint, seen_at: session.created_at, notice })
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
