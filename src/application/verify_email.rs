use std::sync::Arc;

use super::ApplicationError;
use crate::domain::{
    OpaqueToken, User, UserChange, UserEvent,
    ports::{Clock, SingleUseTokens, TokenPurpose, UserRepository},
};

/// Spends a verification token and activates its user.
pub struct VerifyEmail {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub clock: Arc<dyn Clock>,
}

impl VerifyEmail {
    /// Unknown, spent and expired tokens all give the same error: the caller
    /// learns nothing about which it was.
    ///
    /// # Errors
    /// [`ApplicationError::InvalidVerificationToken`], storage failures.
    #[tracing::instrument(name = "verify_email", skip_all, fields(user_id))]
    pub async fn execute(&self, token: OpaqueToken) -> Result<User, ApplicationError> {
        let hash = token.hash();
        let now = self.clock.now();
        let record = self
            .tokens
            .find(TokenPurpose::EmailVerification, &hash)
            .await?
            .ok_or(ApplicationError::InvalidVerificationToken)?;
        if record.is_spent || now >= record.expires_at {
            return Err(ApplicationError::InvalidVerificationToken);
        }
        let mut user =
            self.users.find_by_id(record.user_id).await?.ok_or(ApplicationError::InvalidVerificationToken)?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id()));
        // A disabled account stays disabled; an active one has nothing to verify.
        user.verify_email(now).map_err(|_| ApplicationError::InvalidVerificationToken)?;
        let verified = UserEvent::new(user.id(), now, UserChange::EmailVerified { email: user.email().clone() });
        if !self.users.complete_verification(&hash, &user, &[verified.into()]).await? {
            // A concurrent call spent the token first.
            return Err(ApplicationError::InvalidVerificationToken);
        }
        tracing::info!(user_id = %user.id(), "email verified");
        Ok(user)
    }
}
