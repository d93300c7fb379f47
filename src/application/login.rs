use std::sync::Arc;

use super::{ApplicationError, SessionIssuer, SessionTokens};
use crate::domain::{
    ClientAddress, Email, LoginAttemptKeys, NewPassword, PasswordHash, PlaintextPassword, ThrottlePolicy,
    ports::{Clock, LoginCommit, LoginThrottles, PasswordHasher, SessionRepository, UserRepository},
};

#[derive(Debug)]
pub struct LoginCommand {
    pub email: Email,
    pub password: PlaintextPassword,
    /// Where the attempt comes from: throttling counts per account and address.
    pub client: Option<ClientAddress>,
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
    /// even checked); `EmailNotVerified`/`AccountDisabled` after a right password.
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
        self.throttles.succeeded(&keys, self.clock.now()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if let Err(refusal) = user.ensure_can_log_in() {
            tracing::info!(user_id = %user.id(), outcome = %refusal, "login refused");
            return Err(refusal.into());
        }
        let upgraded = if self.hasher.needs_rehash(&credentials.hash) {
            self.upgraded_hash(&command.password).await
        } else {
            None
        };
        let (session, refresh) = self.issuer.new_session(&user);
        match self.sessions.insert_for_login(&session, credentials.version, upgraded.as_ref()).await? {
            LoginCommit::Created => {}
            LoginCommit::CredentialsChanged => {
                // The password changed while this one was being checked.
                refused("bad_credentials");
                return Err(ApplicationError::InvalidCredentials);
            }
            LoginCommit::Refused(refusal) => return Err(refusal.into()),
        }
        if upgraded.is_some() {
            tracing::info!(user_id = %user.id(), "password hash upgraded to the configured parameters");
        }
        tracing::info!(user_id = %user.id(), session_id = %session.id, outcome = "success", "user logged in");
        self.issuer.tokens_for(user, &session, &refresh)
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
