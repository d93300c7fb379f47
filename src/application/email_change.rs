//! Moving an account to another email address: asked for with the password,
//! confirmed through a link sent to the new address.

use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{AccessGuard, ApplicationError, LinkTemplate, Notices};
use crate::domain::{
    AccountNotice, ClientAddress, DomainEvent, Email, EmailChangeRequested, EndedSessions, LoginAttemptKeys,
    OpaqueToken, PlaintextPassword, ResendPolicy, RevocationReason, ThrottlePolicy, User, UserChange, UserEvent,
    UserStatus,
    ports::{
        AccountRepository, Clock, EmailChangeRefused, EmailChangeTarget, InvalidAccessToken, LoginThrottles,
        NewSingleUseToken, PasswordHasher, SingleUseTokens, TokenPurpose, UserRepository,
    },
    resend_policy::RESEND_WINDOW,
};

/// Presentations of one confirmation link before it is spent.
pub const MAX_CONFIRM_ATTEMPTS: u32 = 5;

/// A notice to `user` at the address they have now.
pub(crate) fn notice_to(user: &User, now: time::OffsetDateTime) -> AccountNotice {
    AccountNotice {
        event_id: Uuid::now_v7(),
        user_id: user.id(),
        email: user.email().clone(),
        display_name: user.greeting_name(),
        occurred_at: now,
    }
}

/// Sends a confirmation link to the new address, after proving the password.
pub struct RequestEmailChange {
    pub guard: Arc<AccessGuard>,
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub clock: Arc<dyn Clock>,
    pub links: LinkTemplate,
    pub ttl: Duration,
    pub policy: ResendPolicy,
    pub notices: Notices,
}

impl RequestEmailChange {
    /// The password is checked like a login's (the same throttle, counted
    /// first; the same hashing pool). A taken new address answers the same as
    /// a free one: its owner is told someone tried, and the caller learns
    /// nothing. Both spend the same send budget (the resend policy, per
    /// account), so the budget tells nothing either; over it, the call answers
    /// OK and sends nothing.
    ///
    /// # Errors
    /// Invalid token; wrong password or the current address (`InvalidInput`);
    /// throttled; storage failures.
    #[tracing::instrument(name = "request_email_change", skip_all, fields(user_id))]
    pub async fn execute(
        &self,
        access_token: &str,
        new_email: Email,
        current: PlaintextPassword,
        client: Option<ClientAddress>,
    ) -> Result<(), ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let (user, stored) =
            self.accounts.find_credentials_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?;
        if user.status() != UserStatus::Active {
            return Err(InvalidAccessToken::Revoked.into());
        }
        let keys = LoginAttemptKeys::new(user.email(), client.as_ref());
        if let Err(retry_after) = self.throttles.admit(&keys, self.clock.now(), self.throttle_policy).await? {
            return Err(ApplicationError::RateLimited { retry_after });
        }
        if !self.hasher.verify(&current, Some(&stored.hash)).await? {
            tracing::info!(throttle_key = keys.account.as_str(), "email change refused: wrong current password");
            return Err(ApplicationError::invalid_field("current_password", "is not the current password"));
        }
        self.throttles.succeeded(&keys, self.clock.now()).await?;
        if &new_email == user.email() {
            return Err(ApplicationError::invalid_field("new_email", "is already the account's address"));
        }
        let now = self.clock.now();
        let history = self.tokens.history(TokenPurpose::EmailChange, user.id(), now - RESEND_WINDOW).await?;
        if !self.policy.allows(history, now) {
            tracing::info!(user_id = %user.id(), "email change not sent: rate limited");
            return Ok(());
        }
        let owner = self.users.find_by_email(&new_email).await?;
        let token = OpaqueToken::generate();
        let expires_at = now + self.ttl;
        // A taken address still gets a token stored (never sent): both paths
        // spend the budget alike and replace the earlier link alike.
        let record = NewSingleUseToken {
            hash: token.hash(),
            created_at: now,
            expires_at,
            email_change: Some(EmailChangeTarget { new_email: new_email.clone(), session_id: claims.session_id }),
        };
        let mut events = vec![match &owner {
            Some(owner) => DomainEvent::EmailChangeAttempted(notice_to(owner, now)),
            None => DomainEvent::EmailChangeRequested(EmailChangeRequested {
                event_id: Uuid::now_v7(),
                user_id: user.id(),
                // Greeted by the address: the caller's own names must not travel
                // to an address nobody has proved they own.
                display_name: new_email.local_part().to_owned(),
                email: new_email,
                confirmation_link: self.links.link_for(&token),
                expires_at,
                occurred_at: now,
            }),
        }];
        if self.notices.email_changed {
            events.push(DomainEvent::EmailChangePending(notice_to(&user, now)));
        }
        if self.tokens.replace(TokenPurpose::EmailChange, user.id(), history.last_sent_at, &record, &events).await? {
            tracing::info!(user_id = %user.id(), is_taken = owner.is_some(), "email change requested");
        }
        Ok(())
    }
}

/// Moves the account to the address its link was sent to.
pub struct ConfirmEmailChange {
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub guard: Arc<AccessGuard>,
    pub clock: Arc<dyn Clock>,
    pub notices: Notices,
}

impl ConfirmEmailChange {
    /// What moving `user` (as read) to the target address writes: the notice
    /// to the old address and the user events.
    fn events(&self, user: &User, target: &EmailChangeTarget, now: time::OffsetDateTime) -> Vec<DomainEvent> {
        let mut events: Vec<DomainEvent> =
            if self.notices.email_changed { vec![DomainEvent::EmailChanged(notice_to(user, now))] } else { Vec::new() };
        let changed = UserChange::EmailChanged {
            email: target.new_email.clone(),
            previous_email: user.email().clone(),
            is_verified: true,
        };
        events.push(UserEvent::new(user.id(), now, changed).into());
        events.push(
            UserEvent::sessions_revoked(user.id(), EndedSessions::AllBut(None), RevocationReason::EmailChanged, now)
                .into(),
        );
        events
    }

    /// Every session but the asking one's login ends; the old address is told.
    ///
    /// # Errors
    /// `InvalidEmailChangeToken` for unknown, used, expired or over-tried
    /// tokens; `EmailTaken` when another account took the address since;
    /// storage failures.
    #[tracing::instrument(name = "confirm_email_change", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken) -> Result<User, ApplicationError> {
        let hash = token.hash();
        let record = self
            .tokens
            .count_attempt(TokenPurpose::EmailChange, &hash, MAX_CONFIRM_ATTEMPTS)
            .await?
            .ok_or(ApplicationError::InvalidEmailChangeToken)?;
        let now = self.clock.now();
        if record.is_spent || now >= record.expires_at {
            return Err(ApplicationError::InvalidEmailChangeToken);
        }
        let target = record.email_change.ok_or(ApplicationError::InvalidEmailChangeToken)?;
        let user = self.users.find_by_id(record.user_id).await?.ok_or(ApplicationError::InvalidEmailChangeToken)?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        // The events name the address being left, so they are built from this
        // read, and the write checks under the row lock that the address is
        // still the one read. Any change of address that lands in between
        // (an operator's) also spent this token: the answer is then the
        // spent token's.
        let events = self.events(&user, &target, now);
        let revocation = match self.accounts.complete_email_change(&hash, &user, &target, now, &events).await? {
            Ok(revocation) => revocation,
            Err(EmailChangeRefused::EmailTaken) => return Err(ApplicationError::EmailTaken),
            Err(EmailChangeRefused::NoLongerApplies | EmailChangeRefused::ChangedMeanwhile) => {
                return Err(ApplicationError::InvalidEmailChangeToken);
            }
        };
        self.guard.apply(&revocation).await;
        tracing::info!(user_id = %user.id(), revoked = revocation.revoked_sessions.len(), "email address changed; other sessions revoked");
        Ok(revocation.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        application::fakes::{
            FakeHasher, FakeSessions, FakeThrottles, FakeTokenIssuer, FakeTokens, FakeUsers, FixedClock, T0,
            active_user, email, guard, issuer, password, throttle_policy,
        },
        domain::ports::{AccessTokenIssuer, SingleUseTokenRecord},
    };
    use secrecy::ExposeSecret;

    const CURRENT: &str = "correct horse battery";

    struct World {
        user: User,
        users: Arc<FakeUsers>,
        sessions: Arc<FakeSessions>,
        tokens: Arc<FakeTokens>,
        throttles: Arc<FakeThrottles>,
        guard: Arc<AccessGuard>,
        clock: Arc<FixedClock>,
    }

    fn world() -> World {
        let clock = FixedClock::at(T0);
        let user = active_user("ada@example.com");
        let users = FakeUsers::with(&user, CURRENT);
        let sessions = Arc::new(FakeSessions::default());
        let guard = guard(&users, &sessions, &clock);
        World {
            user,
            users,
            sessions,
            tokens: Arc::new(FakeTokens::default()),
            throttles: Arc::new(FakeThrottles::default()),
            guard,
            clock,
        }
    }

    impl World {
        fn access_token(&self) -> String {
            let (session, _) = issuer(&self.clock, Duration::from_secs(86_400))
                .new_session(&self.user, crate::domain::ClientContext::default());
            self.sessions.store(&session, |_| {});
            FakeTokenIssuer.issue(self.user.id(), session.id, T0).unwrap().token.expose_secret().to_owned()
        }

        fn request(&self, notices: Notices) -> RequestEmailChange {
            RequestEmailChange {
                guard: self.guard.clone(),
                users: self.users.clone(),
                accounts: self.users.clone(),
                tokens: self.tokens.clone(),
                hasher: Arc::new(FakeHasher::default()),
                throttles: self.throttles.clone(),
                throttle_policy: throttle_policy(),
                clock: self.clock.clone(),
                links: LinkTemplate::parse("https://app.example/change?token={token}").unwrap(),
                ttl: Duration::from_secs(3600),
                policy: ResendPolicy { cooldown: Duration::ZERO, max_per_hour: 5 },
                notices,
            }
        }

        fn sent(&self) -> Vec<DomainEvent> {
            self.tokens.replaced.lock().unwrap().iter().flat_map(|(_, _, events)| events.clone()).collect()
        }
    }

    fn all_notices() -> Notices {
        Notices { password_changed: true, email_changed: true, new_device: false }
    }

    #[tokio::test]
    async fn a_wrong_password_counts_as_a_failed_login_and_sends_nothing() {
        let w = world();
        let access = w.access_token();
        let result = w
            .request(all_notices())
            .execute(&access, email("grace@example.com"), password("wrong horse battery"), None)
            .await;
        assert!(
            matches!(&result, Err(ApplicationError::InvalidInput(v)) if v[0].field == "current_password"),
            "{result:?}"
        );
        assert_eq!((w.throttles.admitted(), w.throttles.succeeded()), (1, 0));
        assert!(w.sent().is_empty());
    }

    #[tokio::test]
    async fn a_free_address_gets_the_link_and_the_old_one_a_notice_unless_notices_are_off() {
        let w = world();
        let access = w.access_token();
        w.request(all_notices()).execute(&access, email("grace@example.com"), password(CURRENT), None).await.unwrap();
        let sent = w.sent();
        assert!(
            matches!(&sent[..], [DomainEvent::EmailChangeRequested(link), DomainEvent::EmailChangePending(notice)]
            if link.email.as_str() == "grace@example.com" && link.display_name == "grace"
                && notice.email.as_str() == "ada@example.com"),
            "{sent:?}"
        );
        let w = world();
        let access = w.access_token();
        let quiet = Notices { email_changed: false, ..all_notices() };
        w.request(quiet).execute(&access, email("grace@example.com"), password(CURRENT), None).await.unwrap();
        assert!(matches!(&w.sent()[..], [DomainEvent::EmailChangeRequested(_)]));
    }

    #[tokio::test]
    async fn a_taken_address_tells_its_owner_and_answers_the_caller_the_same() {
        let w = world();
        let owner = active_user("grace@example.com");
        w.users.users.lock().unwrap().insert(
            owner.id(),
            (
                owner.clone(),
                crate::domain::ports::StoredCredentials {
                    hash: FakeHasher::hash_of("x"),
                    version: 0,
                    has_second_factor: false,
                },
            ),
        );
        let access = w.access_token();
        w.request(all_notices()).execute(&access, email("grace@example.com"), password(CURRENT), None).await.unwrap();
        let sent = w.sent();
        assert!(
            matches!(&sent[..], [DomainEvent::EmailChangeAttempted(notice), DomainEvent::EmailChangePending(_)]
            if notice.user_id == owner.id()),
            "{sent:?}"
        );
    }

    #[tokio::test]
    async fn an_expired_confirmation_link_is_refused_before_the_account_is_touched() {
        let w = world();
        let token = OpaqueToken::generate();
        let record = SingleUseTokenRecord {
            user_id: w.user.id(),
            expires_at: T0,
            is_spent: false,
            email_change: Some(EmailChangeTarget { new_email: email("grace@example.com"), session_id: None }),
        };
        w.tokens.tokens.lock().unwrap().insert(token.hash(), (record, 0));
        let confirm = ConfirmEmailChange {
            users: w.users.clone(),
            accounts: w.users.clone(),
            tokens: w.tokens.clone(),
            guard: w.guard.clone(),
            clock: w.clock.clone(),
            notices: all_notices(),
        };
        let result = confirm.execute(token).await;
        assert!(matches!(result, Err(ApplicationError::InvalidEmailChangeToken)), "{result:?}");
        assert!(w.users.email_change_events.lock().unwrap().is_empty());
    }
}
