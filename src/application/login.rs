use std::{sync::Arc, time::Duration};

use secrecy::SecretString;
use uuid::Uuid;

use super::ApplicationError;
use crate::domain::{
    Email, IssuedToken, OpaqueToken, PlaintextPassword, User,
    ports::{AccessTokenIssuer, Clock, NewSession, PasswordHasher, SessionRepository, UserRepository},
};

#[derive(Debug)]
pub struct LoginCommand {
    pub email: Email,
    pub password: PlaintextPassword,
}

#[derive(Debug)]
pub struct LoginOutcome {
    pub access_token: IssuedToken,
    pub refresh_token: IssuedToken,
    pub user: User,
}

/// Exchanges credentials for an access token and a refresh-token session.
pub struct Login {
    pub users: Arc<dyn UserRepository>,
    pub sessions: Arc<dyn SessionRepository>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub clock: Arc<dyn Clock>,
    pub refresh_ttl: Duration,
}

impl Login {
    /// The password is checked before anything about the account is revealed,
    /// and an unknown email costs one hash like a wrong password does.
    ///
    /// # Errors
    /// [`ApplicationError::InvalidCredentials`] for an unknown email or a wrong
    /// password alike; `EmailNotVerified`/`AccountDisabled` only after the
    /// password proved right.
    #[tracing::instrument(name = "login", skip_all, fields(user_id))]
    pub async fn execute(&self, command: LoginCommand) -> Result<LoginOutcome, ApplicationError> {
        let found = self.users.find_credentials_by_email(&command.email).await?;
        let is_valid = self
            .hasher
            .verify(&command.password, found.as_ref().map(|(_, hash)| hash))
            .await?;
        let user = match found {
            Some((user, _)) if is_valid => user,
            _ => {
                tracing::info!(outcome = "bad_credentials", "login refused");
                return Err(ApplicationError::InvalidCredentials);
            }
        };
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        if let Err(refusal) = user.ensure_can_log_in() {
            tracing::info!(user_id = %user.id(), outcome = %refusal, "login refused");
            return Err(refusal.into());
        }

        let now = self.clock.now();
        let access_token = self.tokens.issue(user.id(), now)?;
        let refresh = OpaqueToken::generate();
        let session_id = Uuid::now_v7();
        let session = NewSession {
            id: session_id,
            family_id: session_id,
            user_id: user.id(),
            token_hash: refresh.hash(),
            created_at: now,
            expires_at: now + self.refresh_ttl,
        };
        self.sessions.insert(&session).await?;
        tracing::info!(user_id = %user.id(), session_id = %session_id, outcome = "success", "user logged in");
        Ok(LoginOutcome {
            access_token,
            refresh_token: IssuedToken {
                token: SecretString::from(refresh.expose().to_owned()),
                expires_at: session.expires_at,
            },
            user,
        })
    }
}
