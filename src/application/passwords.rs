use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{AccessGuard, ApplicationError, LinkTemplate, Notices, PasswordRules, email_change::notice_to};
use crate::domain::{
    ClientAddress, DomainEvent, Email, EndedSessions, LoginAttemptKeys, NewPassword, OpaqueToken,
    PasswordResetRequested, PlaintextPassword, ResendPolicy, RevocationReason, ThrottleKey, ThrottlePolicy, User,
    UserChange, UserEvent, UserStatus,
    ports::{
        AccountRepository, Clock, InvalidAccessToken, LoginThrottles, NewSingleUseToken, PasswordChangeRefused,
        PasswordHasher, SingleUseTokens, TokenPurpose, UserRepository,
    },
    resend_policy::RESEND_WINDOW,
};

/// The words a user is likely to build a password from, for zxcvbn. Without a
/// valid email (a sign-up with an invalid one) only the names count.
pub fn password_context(email: Option<&Email>, names: &[Option<&str>]) -> Vec<String> {
    let mut words = Vec::new();
    if let Some(email) = email {
        words.extend([email.as_str().to_owned(), email.local_part().to_owned()]);
        // "ada.lovelace" also yields "ada" and "lovelace", so "adalovelace" scores as guessable.
        words.extend(
            email.local_part().split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| p.len() >= 3).map(str::to_owned),
        );
    }
    for name in names.iter().flatten() {
        words.extend(name.split_whitespace().map(str::to_owned));
    }
    words
}

fn context_of(user: &User) -> Vec<String> {
    password_context(
        Some(user.email()),
        &[
            user.display_name().map(|n| n.as_str()),
            user.first_name().map(|n| n.as_str()),
            user.last_name().map(|n| n.as_str()),
        ],
    )
}

async fn parse_new_password(rules: &PasswordRules, raw: String, user: &User) -> Result<NewPassword, ApplicationError> {
    rules.check(raw, &context_of(user)).await?.map_err(|e| ApplicationError::invalid_field("new_password", e))
}

/// The notice to write with a password change, unless notices are off.
fn notice(is_on: bool, event: impl FnOnce() -> DomainEvent) -> Vec<DomainEvent> {
    if is_on { vec![event()] } else { Vec::new() }
}

const SAME_PASSWORD: &str = "must differ from the current password";

/// Changes the caller's password, proving the current one first.
pub struct ChangePassword {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub rules: PasswordRules,
    pub clock: Arc<dyn Clock>,
    pub notices: Notices,
}

impl ChangePassword {
    /// A wrong current password counts as a failed login (a stolen access token
    /// must not become a password oracle). Every other session ends, with its
    /// access tokens, and outstanding reset links are spent.
    ///
    /// # Errors
    /// Invalid token; wrong current password or unacceptable new one
    /// (`InvalidInput`); throttled; storage failures.
    #[tracing::instrument(name = "change_password", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        access_token: &str,
        current: PlaintextPassword,
        new: String,
        client: Option<ClientAddress>,
    ) -> Result<(), ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let (user, stored) =
            self.accounts.find_credentials_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?;
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        if let Err(retry_after) = self.throttles.admit(&keys, self.clock.now(), self.throttle_policy).await? {
            return Err(ApplicationError::RateLimited { retry_after });
        }
        if !self.hasher.verify(&current, Some(&stored.hash)).await? {
            tracing::info!(throttle_key = keys.account.as_str(), "password change refused: wrong current password");
            return Err(ApplicationError::invalid_field("current_password", "is not the current password"));
        }
        self.throttles.succeeded(&keys, self.clock.now()).await?;
        let new = parse_new_password(&self.rules, new, &user).await?;
        if new.as_plaintext().expose() == current.expose() {
            return Err(ApplicationError::invalid_field("new_password", SAME_PASSWORD));
        }
        let hash = self.hasher.hash(&new).await?;
        // Taken after hashing: the change happens at commit, not when it began.
        let now = self.clock.now();
        let mut events = notice(self.notices.password_changed, || DomainEvent::PasswordChanged(notice_to(&user, now)));
        events.extend([
            UserEvent::new(user.id(), now, UserChange::PasswordChanged { was_reset: false }).into(),
            // Names the login kept once the repository found it.
            UserEvent::sessions_revoked(user.id(), EndedSessions::AllBut(None), RevocationReason::PasswordChanged, now)
                .into(),
        ]);
        let revocation = match self
            .accounts
            .change_password(user.id(), &hash, stored.version, claims.session_id, now, &events)
            .await?
        {
            Ok(revocation) => revocation,
            Err(PasswordChangeRefused::PasswordChanged) => {
                return Err(ApplicationError::invalid_field("current_password", "is not the current password"));
            }
            Err(PasswordChangeRefused::NotActive | PasswordChangeRefused::SessionEnded) => {
                return Err(InvalidAccessToken::Revoked.into());
            }
        };
        self.guard.apply(&revocation).await;
        tracing::info!(user_id = %user.id(), revoked = revocation.revoked_sessions.len(), "password changed; other sessions revoked");
        Ok(())
    }
}

/// Emails a reset link to an active user; answers the same for everyone.
pub struct RequestPasswordReset {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub clock: Arc<dyn Clock>,
    pub links: LinkTemplate,
    pub ttl: Duration,
    pub policy: ResendPolicy,
}

impl RequestPasswordReset {
    /// The transport pads the answer to a fixed minimum time, so that the work
    /// done for a registered address cannot be told apart from none.
    ///
    /// # Errors
    /// Storage failures only.
    #[tracing::instrument(name = "request_password_reset", skip_all)]
    pub async fn execute(&self, email: Email) -> Result<(), ApplicationError> {
        let Some(user) = self.users.find_by_email(&email).await? else { return Ok(()) };
        if user.status() != UserStatus::Active {
            return Ok(());
        }
        let now = self.clock.now();
        let history = self.tokens.history(TokenPurpose::PasswordReset, user.id(), now - RESEND_WINDOW).await?;
        if !self.policy.allows(history, now) {
            tracing::info!(user_id = %user.id(), "password reset email not sent: rate limited");
            return Ok(());
        }
        let token = OpaqueToken::generate();
        let expires_at = now + self.ttl;
        let record = NewSingleUseToken { hash: token.hash(), created_at: now, expires_at, email_change: None };
        let event = DomainEvent::PasswordResetRequested(PasswordResetRequested {
            event_id: Uuid::now_v7(),
            user_id: user.id(),
            email: user.email().clone(),
            display_name: user.greeting_name(),
            reset_link: self.links.link_for(&token),
            expires_at,
            occurred_at: now,
        });
        if self
            .tokens
            .replace(
                TokenPurpose::PasswordReset,
                user.id(),
                history.last_sent_at,
                &record,
                std::slice::from_ref(&event),
            )
            .await?
        {
            tracing::info!(user_id = %user.id(), event_id = %event.id(), "password reset requested");
        }
        Ok(())
    }
}

/// Presentations of one reset link before it is spent: enough for a few
/// refused new passwords, too few to make the link a strength oracle.
pub const MAX_RESET_ATTEMPTS: u32 = 5;

/// Sets a new password from a reset link and ends every session.
pub struct ResetPassword {
    pub accounts: Arc<dyn AccountRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub guard: Arc<AccessGuard>,
    pub rules: PasswordRules,
    pub clock: Arc<dyn Clock>,
    pub notices: Notices,
}

impl ResetPassword {
    /// # Errors
    /// `InvalidResetToken` for unknown, used, expired or over-tried tokens;
    /// `InvalidInput` for an unacceptable password; storage failures.
    #[tracing::instrument(name = "reset_password", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken, new: String) -> Result<(), ApplicationError> {
        let hash = token.hash();
        // Counted before anything is checked, so that concurrent attempts
        // cannot exceed the budget.
        let record = self
            .tokens
            .count_attempt(TokenPurpose::PasswordReset, &hash, MAX_RESET_ATTEMPTS)
            .await?
            .ok_or(ApplicationError::InvalidResetToken)?;
        if record.is_spent || self.clock.now() >= record.expires_at {
            return Err(ApplicationError::InvalidResetToken);
        }
        let (user, stored) =
            self.accounts.find_credentials_by_id(record.user_id).await?.ok_or(ApplicationError::InvalidResetToken)?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if user.status() != UserStatus::Active {
            return Err(ApplicationError::InvalidResetToken);
        }
        let new = parse_new_password(&self.rules, new, &user).await?;
        if self.hasher.verify(new.as_plaintext(), Some(&stored.hash)).await? {
            return Err(ApplicationError::invalid_field("new_password", SAME_PASSWORD));
        }
        let new_hash = self.hasher.hash(&new).await?;
        // Taken after hashing, so that an access token minted while the hash
        // was computed is refused too.
        let now = self.clock.now();
        let mut events = notice(self.notices.password_changed, || DomainEvent::PasswordReset(notice_to(&user, now)));
        events.extend([
            UserEvent::new(user.id(), now, UserChange::PasswordChanged { was_reset: true }).into(),
            UserEvent::sessions_revoked(user.id(), EndedSessions::AllBut(None), RevocationReason::PasswordReset, now)
                .into(),
        ]);
        let revocation = self
            .accounts
            .complete_password_reset(&hash, user.id(), &new_hash, now, &events)
            .await?
            .ok_or(ApplicationError::InvalidResetToken)?;
        self.guard.apply(&revocation).await;
        // Whoever was guessing the old password has nothing left to guess.
        self.throttles.reset(&ThrottleKey::for_email(user.email())).await?;
        tracing::info!(user_id = %user.id(), revoked = revocation.revoked_sessions.len(), "password reset; every session revoked");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::{
        application::{
            SessionIssuer,
            fakes::{
                FakeHasher, FakeSessions, FakeThrottles, FakeTokenIssuer, FakeTokens, FakeUsers, FixedClock, T0,
                active_user, guard, issuer, password, throttle_policy,
            },
            password_rules::fake::LengthMeter,
        },
        domain::{
            PasswordPolicy,
            ports::{AccessTokenIssuer, Revocation, SingleUseTokenRecord},
        },
    };

    const CURRENT: &str = "correct horse battery";
    const NEW: &str = "an entirely new passphrase";

    struct World {
        user: User,
        users: Arc<FakeUsers>,
        sessions: Arc<FakeSessions>,
        throttles: Arc<FakeThrottles>,
        guard: Arc<AccessGuard>,
        issuer: Arc<SessionIssuer>,
        clock: Arc<FixedClock>,
    }

    fn world() -> World {
        let clock = FixedClock::at(T0);
        let user = active_user("ada@example.com");
        let users = FakeUsers::with(&user, CURRENT);
        let sessions = Arc::new(FakeSessions::default());
        let guard = guard(&users, &sessions, &clock);
        let issuer = issuer(&clock, Duration::from_secs(30 * 86_400));
        World { user, users, sessions, throttles: Arc::new(FakeThrottles::default()), guard, issuer, clock }
    }

    fn rules() -> PasswordRules {
        PasswordRules { policy: PasswordPolicy { min_length: 12 }, meter: Arc::new(LengthMeter) }
    }

    impl World {
        /// A live session of the user and an access token for it.
        fn logged_in(&self) -> (Uuid, String) {
            let (session, _) = self.issuer.new_session(&self.user, crate::domain::ClientContext::default());
            self.sessions.store(&session, |_| {});
            let access = FakeTokenIssuer.issue(self.user.id(), session.id, T0).unwrap();
            (session.id, access.token.expose_secret().to_owned())
        }

        fn change_password(&self) -> ChangePassword {
            ChangePassword {
                guard: self.guard.clone(),
                accounts: self.users.clone(),
                hasher: Arc::new(FakeHasher::default()),
                throttles: self.throttles.clone(),
                throttle_policy: throttle_policy(),
                rules: rules(),
                clock: self.clock.clone(),
                notices: Notices::default(),
            }
        }

        fn reset_password(&self, tokens: Arc<FakeTokens>) -> ResetPassword {
            ResetPassword {
                accounts: self.users.clone(),
                tokens,
                hasher: Arc::new(FakeHasher::default()),
                throttles: self.throttles.clone(),
                guard: self.guard.clone(),
                rules: rules(),
                clock: self.clock.clone(),
                notices: Notices::default(),
            }
        }

        fn reset_token(&self, attempts: u32) -> (OpaqueToken, Arc<FakeTokens>) {
            let token = OpaqueToken::generate();
            let record = SingleUseTokenRecord {
                user_id: self.user.id(),
                expires_at: T0 + Duration::from_secs(3600),
                is_spent: false,
                email_change: None,
            };
            let tokens = Arc::new(FakeTokens::default());
            tokens.tokens.lock().unwrap().insert(token.hash(), (record, attempts));
            (token, tokens)
        }
    }

    #[tokio::test]
    async fn a_wrong_current_password_counts_as_a_failed_login_and_changes_nothing() {
        let w = world();
        let (_, access) = w.logged_in();
        let result = w.change_password().execute(&access, password("wrong horse battery"), NEW.into(), None).await;
        assert!(
            matches!(&result, Err(ApplicationError::InvalidInput(v)) if v[0].field == "current_password"),
            "{result:?}"
        );
        assert_eq!((w.throttles.admitted(), w.throttles.succeeded()), (1, 0));
        assert!(w.users.changes.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_password_change_keeps_the_callers_login_and_ends_the_other_sessions_through_the_repository() {
        let w = world();
        let (mine, access) = w.logged_in();
        let (other, other_access) = w.logged_in();
        w.guard.authenticate(&other_access).await.expect("the other session works before the change");
        let mut after = w.user.clone();
        after.touch(T0);
        *w.users.change_outcome.lock().unwrap() =
            Some(Ok(Revocation { user: after, revoked_sessions: vec![other], changed: true }));

        w.change_password().execute(&access, password(CURRENT), NEW.into(), None).await.expect("the change is made");
        let changes = w.users.changes.lock().unwrap().clone();
        assert_eq!(changes.len(), 1);
        let (user_id, hash, verified_version, keep) = &changes[0];
        assert_eq!((*user_id, *verified_version, *keep), (w.user.id(), 0, Some(mine)));
        assert_eq!(hash.as_str(), FakeHasher::hash_of(NEW).as_str());
        // The revoked session is refused here at once, though the fake store still calls it live.
        let refused = w.guard.authenticate(&other_access).await;
        assert!(matches!(refused, Err(ApplicationError::InvalidAccessToken(_))), "{refused:?}");
        w.guard.authenticate(&access).await.expect("the caller's own session goes on");
    }

    #[tokio::test]
    async fn a_password_change_announces_itself_and_the_sessions_it_ends_leaving_the_kept_one_to_the_repository() {
        let w = world();
        let (_, access) = w.logged_in();
        *w.users.change_outcome.lock().unwrap() =
            Some(Ok(Revocation { user: w.user.clone(), revoked_sessions: vec![], changed: true }));
        w.change_password().execute(&access, password(CURRENT), NEW.into(), None).await.expect("the change is made");
        let events = w.users.password_events.lock().unwrap().clone();
        let changes: Vec<_> = events
            .iter()
            .filter_map(|event| match event {
                DomainEvent::User(event) => Some((event.user_id, event.occurred_at, event.change.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            changes,
            [
                (w.user.id(), T0, UserChange::PasswordChanged { was_reset: false }),
                (
                    w.user.id(),
                    T0,
                    UserChange::SessionRevoked {
                        ended: EndedSessions::AllBut(None),
                        reason: RevocationReason::PasswordChanged
                    }
                ),
            ]
        );
        assert!(events.iter().any(|event| matches!(event, DomainEvent::PasswordChanged(_))), "and the notice");
    }

    #[tokio::test]
    async fn a_reset_token_presented_too_often_is_refused_even_with_an_acceptable_password() {
        let w = world();
        let (token, tokens) = w.reset_token(MAX_RESET_ATTEMPTS - 1);
        let reset = w.reset_password(tokens);
        // The last attempt is spent on a refused password...
        let refused = reset.execute(OpaqueToken::parse(token.expose()).unwrap(), "short".into()).await;
        assert!(matches!(refused, Err(ApplicationError::InvalidInput(_))), "{refused:?}");
        // ...so the next one is refused before the password is looked at.
        let result = reset.execute(token, NEW.into()).await;
        assert!(matches!(result, Err(ApplicationError::InvalidResetToken)), "{result:?}");
    }

    #[tokio::test]
    async fn a_reset_applies_the_revocation_so_that_this_replica_refuses_the_ended_sessions_at_once() {
        let w = world();
        let (session, access) = w.logged_in();
        w.guard.authenticate(&access).await.expect("the session works before the reset");
        let (token, tokens) = w.reset_token(0);
        let mut after = w.user.clone();
        after.revoke_tokens(T0);
        *w.users.reset_outcome.lock().unwrap() =
            Some(Revocation { user: after, revoked_sessions: vec![session], changed: true });

        w.reset_password(tokens).execute(token, NEW.into()).await.expect("the reset is made");
        let refused = w.guard.authenticate(&access).await;
        assert!(matches!(refused, Err(ApplicationError::InvalidAccessToken(_))), "{refused:?}");
        assert_eq!(*w.throttles.resets.lock().unwrap(), [ThrottleKey::for_email(w.user.email())]);
    }
}
