use std::sync::Arc;

use super::{AccessGuard, ApplicationError};
use crate::domain::AccessTokenClaims;

/// Checks an access token: signature and claims, then (from a cache, in the
/// common case) whether its user still honours it.
pub struct ValidateToken {
    pub guard: Arc<AccessGuard>,
}

impl ValidateToken {
    /// # Errors
    /// [`ApplicationError::InvalidAccessToken`] with the reason, for the log.
    pub async fn execute(&self, token: &str) -> Result<AccessTokenClaims, ApplicationError> {
        self.guard.authenticate(token).await
    }
}
