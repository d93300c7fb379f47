//! Access tokens and sessions: `IDENTITY_TOKEN_*`, `IDENTITY_*_TOKEN_TTL` and friends.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{ConfigError, Source, error};

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub secret_key: Option<SecretString>,
    pub previous_public_keys: Vec<String>,
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// However often it is refreshed, a session ends this long after its login.
    pub session_max_lifetime: Duration,
    /// How long a replica trusts its cached view of a user's token revocations.
    pub revocation_cache_ttl: Duration,
    /// A refresh token presented again this soon after it was rotated is a
    /// retry, not theft; zero: always theft.
    pub refresh_reuse_grace: Duration,
}

/// # Errors
/// The first invalid variable.
pub fn tokens<F: Fn(&str) -> Option<String>>(env: &Source<F>) -> Result<TokenSettings, ConfigError> {
    let secret_key = env.get("IDENTITY_TOKEN_SECRET_KEY").map(|raw| SecretString::from(raw.trim().to_owned()));
    // Never echo the value: it is the signing key.
    if let Some(key) = &secret_key
        && !key.expose_secret().starts_with("k4.secret.")
    {
        return Err(error(
            "IDENTITY_TOKEN_SECRET_KEY",
            "must be a PASERK k4.secret key (see `identity-server generate-key`)",
        ));
    }
    Ok(TokenSettings {
        secret_key,
        previous_public_keys: env
            .get("IDENTITY_PREVIOUS_PUBLIC_KEYS")
            .map(|raw| raw.split(',').map(str::trim).filter(|k| !k.is_empty()).map(ToOwned::to_owned).collect())
            .unwrap_or_default(),
        issuer: env.string("IDENTITY_TOKEN_ISSUER", "identity"),
        audience: env.string("IDENTITY_TOKEN_AUDIENCE", "identity"),
        access_token_ttl: env.positive_duration("IDENTITY_ACCESS_TOKEN_TTL", Duration::from_secs(600))?,
        refresh_token_ttl: env.positive_duration("IDENTITY_REFRESH_TOKEN_TTL", Duration::from_secs(30 * 86_400))?,
        session_max_lifetime: env
            .positive_duration("IDENTITY_SESSION_MAX_LIFETIME", Duration::from_secs(90 * 86_400))?,
        revocation_cache_ttl: env.duration("IDENTITY_REVOCATION_CACHE_TTL", Duration::from_secs(5))?,
        refresh_reuse_grace: env.duration("IDENTITY_REFRESH_REUSE_GRACE", Duration::from_secs(10))?,
    })
}
