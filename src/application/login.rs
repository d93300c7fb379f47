use std::sync::Arc;

use std::time::Duration;

use secrecy::SecretString;

use super::{ApplicationError, MfaChallengeIssued, SessionIssuer, SessionTokens};
use crate::domain::{
    ClientAddress, ClientContext, Email, LoginAttemptKeys, NewPassword, OpaqueToken, PasswordHash, PlaintextPassword,
    ThrottlePolicy, User, UserEvent,
    ports::{
        Clock, LoginCommit, LoginThrottles, MfaRepository, NewMfaChallenge, PasswordHasher, SessionRepository,
        UserRepository,
    },
};

/// How long a login challenge waits for its second factor.
pub const MFA_CHALLENGE_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct LoginCommand {
    pub email: Email,
    pub password: PlaintextPassword,
    /// Where the attempt comes from as the transport saw it: throttling counts
    /// per account and this address (not one the caller names, which it could
    /// vary at will).
    pub client: Option<ClientAddress>,
    /// The device logging in, stored with the session for its user to see.
    pub context: ClientContext,
}

pub type LoginOutcome = SessionTokens;

/// Exchanges credentials for an access token and a refresh-token session.
pub struct Login {
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub issuer: Arc<SessionIssuer>,
    /// Where a login that needs a second factor leaves its challenge.
    pub mfa: Arc<dyn MfaRepository>,
    pub clock: Arc<dyn Clock>,
    /// Sign-up answers a taken address like a free one; then Login must not
    /// tell an unverified account (made by whoever signed up first) from a
    /// wrong password either.
    pub is_enumeration_safe: bool,
}

impl Login {
    /// Unknown emails and wrong passwords take the same path: the same hash
    /// cost, the same throttling bookkeeping, the same answer. The account's
    /// state is revealed only once the password proved right.
    ///
    /// # Errors
    /// [`ApplicationError::InvalidCredentials`] for an unknown email or a wrong
    /// password alike; `RateLimited` while throttled (the password is then not
    /// even checked); `EmailNotVerified`/`AccountDisabled` after a right password;
    /// `MfaRequired` after a right password for an account with a second factor.
    #[tracing::instrument(name = "login", skip_all, fields(user_id))]
    pub async fn execute(&self, command: LoginCommand) -> Result<LoginOutcome, ApplicationError> {
        let keys = LoginAttemptKeys::new(&command.email, command.client.as_ref());
        let refused = |outcome: &str| {
            tracing::info!(
                outcome,
                throttle_key = keys.account.as_str(),
                client_address = command.client.map(|c| c.to_string()),
                "login refused"
            );
        };
        // Counted before the password is checked: concurrent guesses cannot
        // all slip in under the limit.
        if let Err(retry_after) = self.throttles.admit(&keys, self.clock.now(), self.throttle_policy).await? {
            refused("throttled");
            return Err(ApplicationError::RateLimited { retry_after });
        }
        let found = self.users.find_credentials_by_email(&command.email).await?;
        let is_valid = self.hasher.verify(&command.password, found.as_ref().map(|(_, c)| &c.hash)).await?;
        let (user, credentials) = match found {
            Some(found) if is_valid => found,
            _ => {
                refused("bad_credentials");
                return Err(ApplicationError::InvalidCredentials);
            }
        };
        if self.is_enumeration_safe && user.is_pending_verification() {
            // Whoever signed up first chose this password, not necessarily the
            // address's owner: answer as for a wrong one (and keep the count).
            refused("bad_credentials");
            return Err(ApplicationError::InvalidCredentials);
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if credentials.has_second_factor {
            // The failure counted above stays until the second factor is
            // right: otherwise a known password would buy unlimited guesses
            // at codes, five per challenge.
            if let Err(refusal) = user.ensure_can_log_in() {
                tracing::info!(user_id = %user.id(), outcome = %refusal, "login refused");
                return Err(refusal.into());
            }
            // The password is at hand only now: the session CompleteMfaLogin
            // stores cannot upgrade the hash.
            if self.hasher.needs_rehash(&credentials.hash)
                && let Some(upgraded) = self.upgraded_hash(&command.password).await
                && self.users.upgrade_password_hash(user.id(), credentials.version, &upgraded).await?
            {
                tracing::info!(user_id = %user.id(), "password hash upgraded to the configured parameters");
            }
            return Err(self.challenge(&user, credentials.version).await?);
        }
        if let Err(refusal) = user.ensure_can_log_in() {
            // The password was right: its failures are forgiven all the same.
            self.throttles.succeeded(&keys, self.clock.now()).await?;
            tracing::info!(user_id = %user.id(), outcome = %refusal, "login refused");
            return Err(refusal.into());
        }
        let upgraded = if self.hasher.needs_rehash(&credentials.hash) {
            self.upgraded_hash(&command.password).await
        } else {
            None
        };
        let (session, refresh) = self.issuer.new_session(&user, command.context);
        let created = UserEvent::session_created(user.id(), session.family_id, false, session.created_at);
        let device = self.issuer.device_sighting(&user, &session);
        match self
            .sessions
            .insert_for_login(
                &session,
                credentials.version,
                upgraded.as_ref(),
                &[created.into()],
                device.as_ref(),
                &keys,
            )
            .await?
        {
            LoginCommit::Created => {}
            LoginCommit::CredentialsChanged => {
                // The password changed while this one was being checked.
                refused("bad_credentials");
                return Err(ApplicationError::InvalidCredentials);
            }
            LoginCommit::Refused(refusal) => {
                // Disabled (say) since it was read: the right password is
                // forgiven its failures as above.
                self.throttles.succeeded(&keys, self.clock.now()).await?;
                return Err(refusal.into());
            }
        }
        if upgraded.is_some() {
            tracing::info!(user_id = %user.id(), "password hash upgraded to the configured parameters");
        }
        tracing::info!(user_id = %user.id(), session_id = %session.id, outcome = "success", "user logged in");
        self.issuer.tokens_for(user, &session, &refresh)
    }

    /// Stores a single-use challenge for the second factor; the caller gets
    /// the token, the database its digest.
    async fn challenge(&self, user: &User, password_version: i32) -> Result<ApplicationError, ApplicationError> {
        let token = OpaqueToken::generate();
        let now = self.clock.now();
        let expires_at = now + MFA_CHALLENGE_TTL;
        let challenge = NewMfaChallenge {
            user_id: user.id(),
            token_hash: token.hash(),
            password_version,
            created_at: now,
            expires_at,
        };
        self.mfa.insert_challenge(&challenge).await?;
        tracing::info!(user_id = %user.id(), outcome = "mfa_required", "login needs a second factor");
        Ok(ApplicationError::MfaRequired(MfaChallengeIssued {
            challenge: SecretString::from(token.expose().to_owned()),
            expires_at,
        }))
    }

    /// Re-hashes with today's parameters while the password is at hand. Best
    /// effort: the login succeeds whether or not this does.
    async fn upgraded_hash(&self, password: &PlaintextPassword) -> Option<PasswordHash> {
        match self.hasher.hash(&NewPassword::trusted(password.clone())).await {
            Ok(hash) => Some(hash),
            Err(error) => {
                tracing::warn!(
                    error = format!("{:#}", anyhow::Error::new(error)),
                    "could not upgrade the password hash"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::*;
    use crate::{
        application::fakes::{
            FakeHasher, FakeMfa, FakeSessions, FakeThrottles, FakeUsers, FixedClock, T0, active_user, email, issuer,
            password, throttle_policy,
        },
        domain::{PersonNames, User, UserId},
    };

    const PASSWORD: &str = "correct horse battery";

    struct World {
        sessions: Arc<FakeSessions>,
        hasher: Arc<FakeHasher>,
        throttles: Arc<FakeThrottles>,
        login: Login,
    }

    fn world(user: &User, is_enumeration_safe: bool) -> World {
        let clock = FixedClock::at(T0);
        let sessions = Arc::new(FakeSessions::default());
        let hasher = Arc::new(FakeHasher::default());
        let throttles = Arc::new(FakeThrottles::default());
        let login = Login {
            users: FakeUsers::with(user, PASSWORD),
            sessions: sessions.clone(),
            hasher: hasher.clone(),
            throttles: throttles.clone(),
            throttle_policy: throttle_policy(),
            issuer: issuer(&clock, Duration::from_secs(30 * 86_400)),
            mfa: Arc::new(FakeMfa::default()),
            clock,
            is_enumeration_safe,
        };
        World { sessions, hasher, throttles, login }
    }

    fn command(address: &str, raw_password: &str) -> LoginCommand {
        LoginCommand {
            email: email(address),
            password: password(raw_password),
            client: None,
            context: ClientContext::default(),
        }
    }

    #[tokio::test]
    async fn a_login_hands_its_device_to_storage_with_the_new_device_notice_and_an_unknown_device_is_not() {
        let w = world(&active_user("ada@example.com"), false);
        let mut from_phone = command("ada@example.com", PASSWORD);
        from_phone.context = ClientContext {
            user_agent: crate::domain::UserAgent::parse_optional("Firefox/133.0 (phone)").unwrap(),
            address: crate::domain::parse_client_address("203.0.113.9").unwrap(),
        };
        let phone = from_phone.context.fingerprint();
        w.login.execute(from_phone).await.unwrap();
        w.login.execute(command("ada@example.com", PASSWORD)).await.unwrap();
        let sightings = w.sessions.sightings.lock().unwrap().clone();
        assert_eq!(sightings.len(), 1, "a login without user agent or address has no device to remember");
        assert_eq!(Some(sightings[0].fingerprint), phone);
        assert_eq!(sightings[0].seen_at, T0);
        let crate::domain::DomainEvent::NewDeviceSignIn(notice) = &sightings[0].notice else {
            panic!("not a new-device notice: {:?}", sightings[0].notice);
        };
        assert_eq!(notice.user_agent.as_deref(), Some("Firefox/133.0 (phone)"));
        assert_eq!(notice.network.as_deref(), Some("203.0.113.0/24"));
        assert_eq!(notice.notice.email.as_str(), "ada@example.com");
    }

    #[tokio::test]
    async fn an_unknown_email_and_a_wrong_password_are_answered_alike_and_both_count_a_failed_attempt() {
        let w = world(&active_user("ada@example.com"), false);
        let unknown = w.login.execute(command("nobody@example.com", PASSWORD)).await;
        let wrong = w.login.execute(command("ada@example.com", "wrong horse battery")).await;
        assert!(matches!(unknown, Err(ApplicationError::InvalidCredentials)), "{unknown:?}");
        assert!(matches!(wrong, Err(ApplicationError::InvalidCredentials)), "{wrong:?}");
        assert_eq!(w.hasher.verifications(), 2, "the unknown address costs a verification too");
        assert_eq!((w.throttles.admitted(), w.throttles.succeeded()), (2, 0));
        assert!(w.sessions.inserted.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_throttled_login_is_refused_without_checking_the_password() {
        let w = world(&active_user("ada@example.com"), false);
        *w.throttles.refuse_with.lock().unwrap() = Some(Duration::from_secs(30));
        let result = w.login.execute(command("ada@example.com", PASSWORD)).await;
        assert!(
            matches!(result, Err(ApplicationError::RateLimited { retry_after }) if retry_after == Duration::from_secs(30)),
            "{result:?}"
        );
        assert_eq!(w.hasher.verifications(), 0);
    }

    #[tokio::test]
    async fn an_unverified_account_in_enumeration_safe_mode_is_answered_like_a_wrong_password() {
        let pending = User::sign_up(UserId::new_v7(), email("ada@example.com"), PersonNames::default(), T0);
        let safe = world(&pending, true);
        let result = safe.login.execute(command("ada@example.com", PASSWORD)).await;
        assert!(matches!(result, Err(ApplicationError::InvalidCredentials)), "{result:?}");
        assert_eq!((safe.throttles.admitted(), safe.throttles.succeeded()), (1, 0), "the failure is kept");
        // Without the mode, the right password learns the account's state.
        let plain = world(&pending, false);
        let result = plain.login.execute(command("ada@example.com", PASSWORD)).await;
        assert!(matches!(result, Err(ApplicationError::EmailNotVerified)), "{result:?}");
    }

    #[tokio::test]
    async fn a_successful_login_clears_its_throttle_in_the_session_transaction_and_a_refused_one_on_its_own() {
        let w = world(&active_user("ada@example.com"), false);
        w.login.execute(command("ada@example.com", PASSWORD)).await.expect("the login succeeds");
        assert_eq!(w.throttles.succeeded(), 0, "no transaction of its own");
        let cleared = w.sessions.cleared_throttles.lock().unwrap().clone();
        assert_eq!(cleared, [LoginAttemptKeys::new(&email("ada@example.com"), None)]);

        let pending = User::sign_up(UserId::new_v7(), email("bob@example.com"), PersonNames::default(), T0);
        let w = world(&pending, false);
        let result = w.login.execute(command("bob@example.com", PASSWORD)).await;
        assert!(matches!(result, Err(ApplicationError::EmailNotVerified)), "{result:?}");
        assert_eq!(w.throttles.succeeded(), 1, "the right password is forgiven its failures without a session");
        assert!(w.sessions.cleared_throttles.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_login_that_stops_at_the_second_factor_still_upgrades_a_weak_hash() {
        let user = active_user("ada@example.com");
        let users = FakeUsers::with(&user, PASSWORD);
        users.users.lock().unwrap().get_mut(&user.id()).unwrap().1.has_second_factor = true;
        let mut w = world(&user, false);
        w.login.users = users.clone();
        *w.hasher.weaker_than_configured.lock().unwrap() = true;
        let result = w.login.execute(command("ada@example.com", PASSWORD)).await;
        assert!(matches!(result, Err(ApplicationError::MfaRequired(_))), "{result:?}");
        assert_eq!(*users.upgraded.lock().unwrap(), [user.id()]);

        let wrong = w.login.execute(command("ada@example.com", "wrong horse battery")).await;
        assert!(matches!(wrong, Err(ApplicationError::InvalidCredentials)), "{wrong:?}");
        assert_eq!(users.upgraded.lock().unwrap().len(), 1, "a wrong password upgrades nothing");
    }

    #[tokio::test]
    async fn a_password_changed_between_verification_and_commit_gives_invalid_credentials() {
        let w = world(&active_user("ada@example.com"), false);
        *w.sessions.login_commit.lock().unwrap() = Some(LoginCommit::CredentialsChanged);
        let result = w.login.execute(command("ada@example.com", PASSWORD)).await;
        assert!(matches!(result, Err(ApplicationError::InvalidCredentials)), "{result:?}");
        assert!(w.sessions.inserted.lock().unwrap().is_empty());
        assert!(w.sessions.events.lock().unwrap().is_empty(), "no session, no session.created");
    }

    #[tokio::test]
    async fn a_login_stores_its_session_with_a_session_created_event_naming_the_login() {
        let user = active_user("ada@example.com");
        let w = world(&user, false);
        w.login.execute(command("ada@example.com", PASSWORD)).await.expect("the login succeeds");
        let session = w.sessions.inserted.lock().unwrap()[0].clone();
        let events = w.sessions.events.lock().unwrap().clone();
        let [crate::domain::DomainEvent::User(event)] = events.as_slice() else { panic!("{events:?}") };
        assert_eq!(event.user_id, user.id());
        assert_eq!(
            event.change,
            crate::domain::UserChange::SessionCreated { session_id: session.family_id, used_second_factor: false }
        );
    }
}
