use std::sync::Arc;

use super::{ApplicationError, SessionIssuer, SessionTokens};
use crate::domain::{
    Email, PlaintextPassword, ThrottleKey, ThrottlePolicy,
    ports::{AccountRepository, Clock, LoginThrottles, PasswordHasher, SessionRepository, UserRepository},
};

#[derive(Debug)]
pub struct LoginCommand {
    pub email: Email,
    pub password: PlaintextPassword,
}

pub type LoginOutcome = SessionTokens;

/// Exchanges credentials for an access token and a refresh-token session.
pub struct Login {
    pub users: Arc<dyn UserRepository>,
    pub accounts: Arc<dyn AccountRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub throttles: Arc<dyn LoginThrottles>,
    pub throttle_policy: ThrottlePolicy,
    pub issuer: Arc<SessionIssuer>,
    pub clock: Arc<dyn Clock>,
}

impl Login {
    /// Unknown emails and wrong passwords take the same path: the same hash
    /// cost, the same throttling bookkeeping, the same answer. The account's
    /// state is revealed only once the password proved right.
    ///
    /// # Errors
    /// [`ApplicationError::InvalidCredentials`] for an unknown email or a wrong
    /// password alike; `RateLimited` while throttled (the password is then not
    /// even checked); `EmailNotVerified`/`AccountDisabled` after a right password.
    #[tracing::instrument(name = "login", skip_all, fields(user_id))]
    pub async fn execute(&self, command: LoginCommand) -> Result<LoginOutcome, ApplicationError> {
        let key = ThrottleKey::for_email(&command.email);
        let throttle = self.throttles.state(&key).await?;
        if let Some(wait) = ThrottlePolicy::wait(throttle, self.clock.now()) {
            tracing::info!(outcome = "throttled", "login refused");
            return Err(ApplicationError::RateLimited { retry_after: wait });
        }
        let found = self.users.find_credentials_by_email(&command.email).await?;
        let is_valid = self.hasher.verify(&command.password, found.as_ref().map(|(_, hash)| hash)).await?;
        let (user, stored_hash) = match found {
            Some(found) if is_valid => found,
            _ => {
                let state = self.throttles.record_failure(&key, self.clock.now(), self.throttle_policy).await?;
                tracing::info!(outcome = "bad_credentials", failures = state.failures, "login refused");
                return Err(ApplicationError::InvalidCredentials);
            }
        };
        // Only a right password gets here, so skipping the reset when there is
        // nothing to reset reveals nothing (and saves a write on most logins).
        if throttle.is_some() {
            self.throttles.reset(&key).await?;
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if let Err(refusal) = user.ensure_can_log_in() {
            tracing::info!(user_id = %user.id(), outcome = %refusal, "login refused");
            return Err(refusal.into());
        }
        if self.hasher.needs_rehash(&stored_hash) {
            self.upgrade_hash(&user, &command.password).await;
        }
        let (session, refresh) = self.issuer.new_session(&user, None);
        self.sessions.insert(&session).await?;
        tracing::info!(user_id = %user.id(), session_id = %session.id, outcome = "success", "user logged in");
        self.issuer.tokens_for(user, &session, &refresh)
    }

    /// Re-hashes with today's parameters while the password is at hand. Best
    /// effort: the login succeeds whether or not this does.
    async fn upgrade_hash(&self, user: &crate::domain::User, password: &PlaintextPassword) {
        let new_password = crate::domain::NewPassword::trusted(password.clone());
        match self.hasher.hash(&new_password).await {
            Ok(hash) => match self.accounts.upgrade_password_hash(user.id(), &hash).await {
                Ok(()) => tracing::info!(user_id = %user.id(), "password hash upgraded to the configured parameters"),
                Err(error) => tracing::warn!(
                    error = format!("{:#}", anyhow::Error::new(error)),
                    "could not store the upgraded hash"
                ),
            },
            Err(error) => tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(error)),
                "could not upgrade the password hash"
            ),
        }
    }
}
