use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{AccessGuard, ApplicationError, VerificationLinkTemplate};
use crate::domain::{
    AccountNotice, DomainEvent, Email, NewPassword, OpaqueToken, PasswordPolicy, PasswordResetRequested,
    PlaintextPassword, ResendPolicy, ThrottleKey, ThrottlePolicy, User, UserStatus,
    ports::{
        AccountRepository, Clock, InvalidAccessToken, LoginThrottles, NewSingleUseToken, PasswordHasher,
        SessionRevocation, UserRepository,
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

fn parse_new_password(raw: String, policy: PasswordPolicy, user: &User) -> Result<NewPassword, ApplicationError> {
    let context = context_of(user);
    let words: Vec<&str> = context.iter().map(String::as_str).collect();
    NewPassword::parse(raw, policy, &words).map_err(|e| ApplicationError::invalid_field("new_password", e))
}

fn password_changed(user: &User, now: time::OffsetDateTime) -> DomainEvent {
    DomainEvent::PasswordChanged(AccountNotice {
        event_id: Uuid::now_v7(),
        user_id: user.id(),
        email: user.email().clone(),
        display_name: user.greeting_name(),
        occurred_at: now,
    })
}

const SAME_PASSWORD: &str = "must differ from the current password";

/// Changes the caller's password, proving the current one first.
pub struct ChangePassword {
    pub guard: Arc<AccessGuard>,
    pub accounts: Arc<dyn AccountRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub policy: PasswordPolicy,
    pub clock: Arc<dyn Clock>,
}

impl ChangePassword {
    /// A wrong current password counts as a failed login (a stolen access token
    /// must not become a password oracle).
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
    ) -> Result<(), ApplicationError> {
        let claims = self.guard.authenticate(access_token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let (mut user, stored) =
            self.accounts.find_credentials_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?;
        let key = ThrottleKey::for_email(user.email());
        if let Some(wait) = ThrottlePolicy::wait(self.throttles.state(&key).await?, self.clock.now()) {
            return Err(ApplicationError::RateLimited { retry_after: wait });
        }
        if !self.hasher.verify(&current, Some(&stored)).await? {
            self.throttles.record_failure(&key, self.clock.now(), self.throttle_policy).await?;
            return Err(ApplicationError::invalid_field("current_password", "is not the current password"));
        }
        self.throttles.reset(&key).await?;
        let new = parse_new_password(new, self.policy, &user)?;
        if new.as_plaintext().expose() == current.expose() {
            return Err(ApplicationError::invalid_field("new_password", SAME_PASSWORD));
        }
        let hash = self.hasher.hash(&new).await?;
        let now = self.clock.now();
        let revoke = claims.session_id.map_or(SessionRevocation::All, SessionRevocation::AllExcept);
        let event = password_changed(&user, now);
        user.touch(now);
        self.accounts.change_password(&user, &hash, revoke, &event).await?;
        tracing::info!(user_id = %user.id(), "password changed; other sessions revoked");
        Ok(())
    }
}

/// Emails a reset link to an active user; answers the same for everyone.
pub struct RequestPasswordReset {
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub clock: Arc<dyn Clock>,
    pub links: VerificationLinkTemplate,
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
        let history = self.accounts.password_reset_history(user.id(), now - RESEND_WINDOW).await?;
        if !self.policy.allows(history, now) {
            tracing::info!(user_id = %user.id(), "password reset email not sent: rate limited");
            return Ok(());
        }
        let token = OpaqueToken::generate();
        let expires_at = now + self.ttl;
        let record = NewSingleUseToken { hash: token.hash(), created_at: now, expires_at };
        let event = DomainEvent::PasswordResetRequested(PasswordResetRequested {
            event_id: Uuid::now_v7(),
            user_id: user.id(),
            email: user.email().clone(),
            display_name: user.greeting_name(),
            reset_link: self.links.link_for(&token),
            expires_at,
            occurred_at: now,
        });
        if self.accounts.replace_password_reset_token(user.id(), history.last_sent_at, &record, &event).await? {
            tracing::info!(user_id = %user.id(), event_id = %event.id(), "password reset requested");
        }
        Ok(())
    }
}

/// Sets a new password from a reset link and ends every session.
pub struct ResetPassword {
    pub accounts: Arc<dyn AccountRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub guard: Arc<AccessGuard>,
    pub policy: PasswordPolicy,
    pub clock: Arc<dyn Clock>,
}

impl ResetPassword {
    /// # Errors
    /// `InvalidResetToken` for unknown, used or expired tokens; `InvalidInput`
    /// for an unacceptable password; storage failures.
    #[tracing::instrument(name = "reset_password", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken, new: String) -> Result<(), ApplicationError> {
        let hash = token.hash();
        let now = self.clock.now();
        let record =
            self.accounts.find_password_reset_token(&hash).await?.ok_or(ApplicationError::InvalidResetToken)?;
        if record.is_spent || now >= record.expires_at {
            return Err(ApplicationError::InvalidResetToken);
        }
        let (mut user, stored) =
            self.accounts.find_credentials_by_id(record.user_id).await?.ok_or(ApplicationError::InvalidResetToken)?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if user.status() != UserStatus::Active {
            return Err(ApplicationError::InvalidResetToken);
        }
        let new = parse_new_password(new, self.policy, &user)?;
        if self.hasher.verify(new.as_plaintext(), Some(&stored)).await? {
            return Err(ApplicationError::invalid_field("new_password", SAME_PASSWORD));
        }
        let new_hash = self.hasher.hash(&new).await?;
        user.revoke_tokens(now);
        let event = password_changed(&user, now);
        if !self.accounts.complete_password_reset(&hash, &user, &new_hash, &event).await? {
            return Err(ApplicationError::InvalidResetToken);
        }
        self.guard.remember(&user);
        // Whoever was guessing the old password has nothing left to guess.
        self.throttles.reset(&ThrottleKey::for_email(user.email())).await?;
        tracing::info!(user_id = %user.id(), "password reset; every session revoked");
        Ok(())
    }
}
