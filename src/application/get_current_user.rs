use std::sync::Arc;

use super::{AccessGuard, ApplicationError};
use crate::domain::{
    User,
    ports::{InvalidAccessToken, UserRepository},
};

/// The user an access token belongs to.
pub struct GetCurrentUser {
    pub guard: Arc<AccessGuard>,
    pub users: Arc<dyn UserRepository>,
}

impl GetCurrentUser {
    /// # Errors
    /// An invalid or revoked token, or one whose user no longer exists.
    #[tracing::instrument(name = "get_current_user", skip_all, fields(user_id))]
    pub async fn execute(&self, token: &str) -> Result<User, ApplicationError> {
        let claims = self.guard.authenticate(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(claims.user_id));
        let user = self.users.find_by_id(claims.user_id).await?.ok_or(InvalidAccessToken::Revoked)?;
        // The cache may be a few seconds behind another replica; this read is not.
        if !user.accepts_tokens_issued_at(claims.issued_at) {
            return Err(InvalidAccessToken::Revoked.into());
        }
        Ok(user)
    }
}
