//! Two-factor login: `IDENTITY_MFA_*`.

use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE},
};
use secrecy::SecretBox;

use super::{ConfigError, Source, error};
use crate::infrastructure::CipherKey;

#[derive(Clone)]
pub struct MfaSettings {
    /// Encrypts TOTP secrets; without it nobody can enrol, and start-up fails
    /// if anyone has.
    pub encryption_key: Option<std::sync::Arc<CipherKey>>,
    /// The key before a rotation: still opens the secrets written with it.
    pub previous_encryption_key: Option<std::sync::Arc<CipherKey>>,
    /// The name authenticator apps show next to the code.
    pub issuer: String,
}

impl std::fmt::Debug for MfaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaSettings")
            .field("encryption_key", &self.encryption_key.as_ref().map(|_| "<hidden>"))
            .field("previous_encryption_key", &self.previous_encryption_key.as_ref().map(|_| "<hidden>"))
            .field("issuer", &self.issuer)
            .finish()
    }
}

fn key<F: Fn(&str) -> Option<String>>(
    env: &Source<F>,
    name: &'static str,
) -> Result<Option<std::sync::Arc<CipherKey>>, ConfigError> {
    let Some(raw) = env.get(name) else { return Ok(None) };
    let raw = raw.trim();
    // Never echo the value: it is the key.
    let bytes = STANDARD
        .decode(raw)
        .or_else(|_| URL_SAFE.decode(raw))
        .map_err(|_| error(name, "must be 32 bytes in base64 (for example the output of `openssl rand -base64 32`)"))?;
    let bytes: [u8; 32] =
        bytes.try_into().map_err(|_| error(name, "must be exactly 32 bytes in base64 (`openssl rand -base64 32`)"))?;
    Ok(Some(std::sync::Arc::new(SecretBox::new(Box::new(bytes)))))
}

/// # Errors
/// A key that is not 32 bytes of base64, or a previous key without a current one.
pub fn mfa<F: Fn(&str) -> Option<String>>(env: &Source<F>, token_issuer: &str) -> Result<MfaSettings, ConfigError> {
    let encryption_key = key(env, "IDENTITY_MFA_ENCRYPTION_KEY")?;
    let previous_encryption_key = key(env, "IDENTITY_MFA_PREVIOUS_ENCRYPTION_KEY")?;
    if encryption_key.is_none() && previous_encryption_key.is_some() {
        return Err(error(
            "IDENTITY_MFA_ENCRYPTION_KEY",
            "must be set when IDENTITY_MFA_PREVIOUS_ENCRYPTION_KEY is (rotation needs a new key)",
        ));
    }
    Ok(MfaSettings { encryption_key, previous_encryption_key, issuer: env.string("IDENTITY_MFA_ISSUER", token_issuer) })
}
