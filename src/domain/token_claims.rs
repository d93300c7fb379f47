//! What an access token asserts, once its signature and validity were checked.

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::UserId;

/// The verified claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub user_id: UserId,
    pub issuer: String,
    pub audience: String,
    pub issued_at: OffsetDateTime,
    pub not_before: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub token_id: Uuid,
    /// PASERK id of the key that signed the token.
    pub key_id: String,
    /// The refresh-token session the token was issued for (claim `sid`).
    pub session_id: Option<Uuid>,
}

/// A token handed to a caller, with its expiry.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_at: OffsetDateTime,
}
