use std::sync::Arc;

use super::ApplicationError;
use crate::domain::{
    User, UserStatus,
    ports::{AccessTokenIssuer, Clock, InvalidAccessToken, UserRepository},
};

/// The user an access token belongs to.
pub struct GetCurrentUser {
    pub users: Arc<dyn UserRepository>,
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub clock: Arc<dyn Clock>,
}

impl GetCurrentUser {
    /// # Errors
    /// An invalid token, or one whose user no longer exists or was disabled.
    #[tracing::instrument(name = "get_current_user", skip_all, fields(user_id))]
    pub async fn execute(&self, token: &str) -> Result<User, ApplicationError> {
        let claims = self.tokens.verify(token, self.clock.now())?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        match self.users.find_by_id(claims.user_id).await? {
            Some(user) if user.status() != UserStatus::Disabled => Ok(user),
            // A deleted or disabled user's token must not keep working.
            _ => Err(InvalidAccessToken::Malformed.into()),
        }
    }
}
