//! What an access token asserts, once its signature and validity were checked.

use secrecy::SecretString;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AuthMethods, UserId};

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
    /// How the login the token descends from authenticated (claim `amr`;
    /// tokens from before two-factor login carry none and count as a password).
    pub methods: AuthMethods,
    /// When that login happened (claim `auth_time`), if the token says.
    pub authenticated_at: Option<OffsetDateTime>,
}

/// What an access token is issued for: a session, and the login it descends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessGrant {
    pub user_id: UserId,
    pub session_id: Uuid,
    pub methods: AuthMethods,
    pub authenticated_at: OffsetDateTime,
}

/// A token handed to a caller, with its expiry.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_at: OffsetDateTime,
}
