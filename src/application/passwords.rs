use std::{sync::Arc, time::Duration};

use uuid::Uuid;

use super::{AccessGuard, ApplicationError, LinkTemplate, PasswordRules};
use crate::domain::{
    AccountNotice, ClientAddress, DomainEvent, Email, LoginAttemptKeys, NewPassword, OpaqueToken,
    PasswordResetRequested, PlaintextPassword, ResendPolicy, ThrottleKey, ThrottlePolicy, User, UserStatus,
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
    pub rules: PasswordRules,
    pub clock: Arc<dyn Clock>,
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
        let event = password_changed(&user, now);
        let revocation = match self
            .accounts
            .change_password(user.id(), &hash, stored.version, claims.session_id, now, &event)
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
        self.guard.apply(&revocation);
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
        if self.tokens.replace(TokenPurpose::PasswordReset, user.id(), history.last_sent_at, &record, &event).await? {
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
        let event = password_changed(&user, now);
        let revocation = self
            .accounts
            .complete_password_reset(&hash, user.id(), &new_hash, now, &event)
            .await?
            .ok_or(ApplicationError::InvalidResetToken)?;
        self.guard.apply(&revocation);
        // Whoever was guessing the old password has nothing left to guess.
        self.throttles.reset(&ThrottleKey::for_email(user.email())).await?;
        tracing::info!(user_id = %user.id(), revoked = revocation.revoked_sessions.len(), "password reset; every session revoked");
        Ok(())
    }
}
