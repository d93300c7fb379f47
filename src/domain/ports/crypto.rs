//! Password hashing and strength, and access tokens.

// The shared imports and sibling ports, as declared in `ports`.
use super::*;

#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every hashing slot stayed busy past the deadline: shed load, retry later.
    #[error("password hashing is saturated")]
    Saturated { retry_after: std::time::Duration },
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Judges how guessable a new password is. The judgement costs CPU that grows
/// with crafted input, so implementations bound it and run it off the async
/// runtime, behind the same kind of bounded pool as hashing.
#[async_trait]
pub trait PasswordStrengthMeter: Send + Sync {
    /// `user_inputs` (the email, the names) make passwords built from them
    /// score as guessable.
    ///
    /// # Errors
    /// Saturation or an unexpected failure.
    async fn assess(
        &self,
        password: &PlaintextPassword,
        user_inputs: &[String],
    ) -> Result<crate::domain::PasswordStrength, HashingError>;
}

/// Password hashing, bounded so that it cannot exhaust CPU or memory.
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// # Errors
    /// Saturation or an unexpected failure.
    async fn hash(&self, password: &NewPassword) -> Result<PasswordHash, HashingError>;

    /// Checks a password against a stored hash. With `None` (no such user) it
    /// checks against a dummy hash of the same cost and returns `false`, so that
    /// an unknown email takes as long as a wrong password.
    ///
    /// # Errors
    /// Saturation or an unexpected failure (a corrupt stored hash, say).
    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError>;

    /// Whether a stored hash is weaker than what we hash with now, so that a
    /// successful login should replace it.
    fn needs_rehash(&self, hash: &PasswordHash) -> bool;

    /// Whether a stored hash from elsewhere (an import) is one this hasher
    /// can verify; the import stores the others as unusable.
    fn can_verify(&self, hash: &PasswordHash) -> bool;
}

/// Why an access token was refused. Deliberately coarse: callers learn only
/// that the token is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAccessToken {
    #[error("the token is malformed or its signature does not verify")]
    Malformed,
    #[error("the token was signed by a key this service does not know")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than the access tokens this service issues")]
    LifetimeTooLong,
    #[error("the token was issued by someone else or for someone else")]
    WrongIssuerOrAudience,
    #[error("the token was revoked (log out everywhere, password reset, or the account is disabled or deleted)")]
    Revoked,
}

/// A refresh token that is unknown, expired, revoked or spent. One reason for
/// all: the caller must log in again either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the refresh token is unknown, expired, revoked or already used")]
pub struct InvalidRefreshToken;

/// A public key that verifies access tokens, in PASERK form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// `k4.pid.`...
    pub kid: String,
    /// `k4.public.`...
    pub public_key: String,
}

/// Issues and checks signed access tokens.
pub trait AccessTokenIssuer: Send + Sync {
    /// `session_id` goes into the `sid` claim, so that "log out my other
    /// sessions" knows which one is the caller's.
    ///
    /// # Errors
    /// Only a broken signing key can fail.
    fn issue(&self, user_id: UserId, session_id: Uuid, now: OffsetDateTime) -> anyhow::Result<IssuedToken> {
        let grant = AccessGrant { user_id, session_id, methods: AuthMethods::Password, authenticated_at: now };
        self.issue_for(&grant, now)
    }

    /// Issues a token for `grant`, carrying its `amr` and `auth_time`.
    ///
    /// # Errors
    /// Only a broken signing key can fail.
    fn issue_for(&self, grant: &AccessGrant, now: OffsetDateTime) -> anyhow::Result<IssuedToken>;

    /// # Errors
    /// The reason the token is refused.
    fn verify(&self, token: &str, now: OffsetDateTime) -> Result<AccessTokenClaims, InvalidAccessToken>;

    /// The signing key first, then every older key that still verifies.
    fn public_keys(&self) -> Vec<PublicKeyInfo>;
}
