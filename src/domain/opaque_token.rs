//! Opaque secrets handed to users (verification links, refresh tokens), of which
//! only a SHA-256 digest is stored: a database leak then reveals no usable token.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// 256 random bits: beyond guessing, and beyond the ≥128 the verification link needs.
const TOKEN_BYTES: usize = 32;
/// Unpadded base64url of 32 bytes.
pub const ENCODED_LENGTH: usize = 43;

/// A freshly generated or caller-presented opaque token.
pub struct OpaqueToken(SecretString);

/// The stored digest of an [`OpaqueToken`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is not a token this service issued")]
pub struct MalformedToken;

impl OpaqueToken {
    pub fn generate() -> Self {
        let mut bytes = [0_u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut bytes);
        Self(SecretString::from(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts only strings of the shape we issue, so that garbage never reaches
    /// the database.
    ///
    /// # Errors
    /// Wrong length or alphabet.
    pub fn parse(raw: &str) -> Result<Self, MalformedToken> {
        let raw = raw.trim();
        if raw.len() != ENCODED_LENGTH {
            return Err(MalformedToken);
        }
        match URL_SAFE_NO_PAD.decode(raw) {
            Ok(bytes) if bytes.len() == TOKEN_BYTES => Ok(Self(SecretString::from(raw.to_owned()))),
            _ => Err(MalformedToken),
        }
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.expose_secret().as_bytes()).into())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl TokenHash {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(<hidden>)")
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_hash_alike() {
        let token = OpaqueToken::generate();
        let parsed = OpaqueToken::parse(token.expose()).unwrap();
        assert_eq!(token.hash(), parsed.hash());
        assert_eq!(token.expose().len(), ENCODED_LENGTH);
    }

    #[test]
    fn two_tokens_differ() {
        assert_ne!(OpaqueToken::generate().hash(), OpaqueToken::generate().hash());
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let valid = OpaqueToken::generate();
        for raw in ["", "abc", &valid.expose()[..42], &format!("{}A", valid.expose()), &"*".repeat(43)] {
            assert!(OpaqueToken::parse(raw).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = OpaqueToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
