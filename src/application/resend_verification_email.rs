use std::{sync::Arc, time::Duration};

use super::{ApplicationError, sign_up::new_verification};
use crate::domain::{
    Email, ResendPolicy,
    ports::{Clock, SingleUseTokens, TokenPurpose, UserRepository},
    resend_policy::RESEND_WINDOW,
};

use super::LinkTemplate;

/// Sends a fresh verification link to a user still pending verification.
pub struct ResendVerificationEmail {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn SingleUseTokens>,
    pub clock: Arc<dyn Clock>,
    pub links: LinkTemplate,
    pub verification_ttl: Duration,
    pub policy: ResendPolicy,
}

impl ResendVerificationEmail {
    /// Answers the same whether or not anything was sent: unknown addresses,
    /// verified users and rate-limited calls all return `Ok(())`.
    ///
    /// # Errors
    /// Storage failures only.
    #[tracing::instrument(name = "resend_verification_email", skip_all)]
    pub async fn execute(&self, email: Email) -> Result<(), ApplicationError> {
        let Some(user) = self.users.find_by_email(&email).await? else {
            return Ok(());
        };
        if !user.is_pending_verification() {
            return Ok(());
        }
        let now = self.clock.now();
        let history = self.tokens.history(TokenPurpose::EmailVerification, user.id(), now - RESEND_WINDOW).await?;
        if !self.policy.allows(history, now) {
            tracing::info!(user_id = %user.id(), "verification email not resent: rate limited");
            return Ok(());
        }
        let (token, event) = new_verification(&user, &self.links, self.verification_ttl, now);
        if self
            .tokens
            .replace(
                TokenPurpose::EmailVerification,
                user.id(),
                history.last_sent_at,
                &token,
                std::slice::from_ref(&event),
            )
            .await?
        {
            tracing::info!(user_id = %user.id(), event_id = %event.id(), "verification email resent");
        } else {
            tracing::info!(user_id = %user.id(), "verification email not resent: a concurrent resend won");
        }
        Ok(())
    }
}
