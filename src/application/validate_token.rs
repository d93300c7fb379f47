use std::sync::Arc;

use super::ApplicationError;
use crate::domain::{
    AccessTokenClaims,
    ports::{AccessTokenIssuer, Clock},
};

/// Checks an access token without touching storage: tokens are self-contained.
pub struct ValidateToken {
    pub tokens: Arc<dyn AccessTokenIssuer>,
    pub clock: Arc<dyn Clock>,
}

impl ValidateToken {
    /// # Errors
    /// [`ApplicationError::InvalidAccessToken`] with the reason, for the log.
    pub fn execute(&self, token: &str) -> Result<AccessTokenClaims, ApplicationError> {
        Ok(self.tokens.verify(token, self.clock.now())?)
    }
}
