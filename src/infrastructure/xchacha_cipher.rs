//! TOTP secrets at rest: XChaCha20-Poly1305 (RustCrypto), a random 192-bit
//! nonce per secret, the user id as associated data. Stored as
//! `v1.` + base64(nonce ‖ ciphertext ‖ tag).

use anyhow::Context;
use base64::{Engine, engine::general_purpose::STANDARD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};

use crate::domain::{TotpSecret, UserId, ports::SecretCipher};

const PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 24;

/// A 32-byte key, as configured (`IDENTITY_MFA_ENCRYPTION_KEY`).
pub type CipherKey = SecretBox<[u8; 32]>;

pub struct XChaChaCipher {
    current: XChaCha20Poly1305,
    /// Still opens secrets written before a key rotation.
    previous: Option<XChaCha20Poly1305>,
}

impl XChaChaCipher {
    pub fn new(current: &CipherKey, previous: Option<&CipherKey>) -> Self {
        Self {
            current: XChaCha20Poly1305::new(current.expose_secret().into()),
            previous: previous.map(|key| XChaCha20Poly1305::new(key.expose_secret().into())),
        }
    }
}

impl SecretCipher for XChaChaCipher {
    fn encrypt(&self, secret: &TotpSecret, user_id: UserId) -> anyhow::Result<String> {
        let mut nonce = [0_u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let aad = user_id.as_uuid();
        let sealed = self
            .current
            .encrypt(&XNonce::from(nonce), Payload { msg: secret.expose(), aad: aad.as_bytes() })
            .map_err(|_| anyhow::anyhow!("encrypting the TOTP secret failed"))?;
        let mut stored = nonce.to_vec();
        stored.extend(sealed);
        Ok(format!("{PREFIX}{}", STANDARD.encode(stored)))
    }

    fn decrypt(&self, stored: &str, user_id: UserId) -> anyhow::Result<TotpSecret> {
        let encoded = stored.strip_prefix(PREFIX).context("the stored TOTP secret has an unknown format")?;
        let bytes = STANDARD.decode(encoded).context("the stored TOTP secret is not base64")?;
        anyhow::ensure!(bytes.len() > NONCE_BYTES, "the stored TOTP secret is truncated");
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let nonce = XNonce::try_from(nonce).context("nonce length")?;
        let aad = user_id.as_uuid();
        let payload = || Payload { msg: sealed, aad: aad.as_bytes() };
        self.current
            .decrypt(&nonce, payload())
            .or_else(|_| self.previous.as_ref().ok_or(()).and_then(|key| key.decrypt(&nonce, payload()).map_err(|_| ())))
            .map(TotpSecret::from_bytes)
            .map_err(|()| {
                anyhow::anyhow!(
                    "no configured key opens the stored TOTP secret (IDENTITY_MFA_ENCRYPTION_KEY changed without IDENTITY_MFA_PREVIOUS_ENCRYPTION_KEY?)"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CipherKey {
        SecretBox::new(Box::new([byte; 32]))
    }

    fn hex(raw: &str) -> Vec<u8> {
        hex::decode(raw.split_whitespace().collect::<String>()).unwrap()
    }

    /// draft-irtf-cfrg-xchacha-03, appendix A.3.1 (AEAD_XChaCha20_Poly1305).
    #[test]
    fn the_cipher_matches_the_xchacha20_poly1305_test_vector() {
        let key: [u8; 32] = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f").try_into().unwrap();
        let nonce: [u8; 24] = hex("404142434445464748494a4b4c4d4e4f5051525354555657").try_into().unwrap();
        let aad = hex("50515253c0c1c2c3c4c5c6c7");
        let plaintext = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let expected = hex("bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
             731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
             2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
             21f9664c97637da9768812f615c68b13b52e
             c0875924c1c7987947deafd8780acf49");
        let cipher = XChaCha20Poly1305::new((&key).into());
        let sealed = cipher.encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: &aad }).unwrap();
        assert_eq!(sealed, expected);
    }

    #[test]
    fn a_secret_round_trips_and_only_for_its_own_user() {
        let cipher = XChaChaCipher::new(&key(1), None);
        let user = UserId::new_v7();
        let secret = TotpSecret::generate();
        let stored = cipher.encrypt(&secret, user).unwrap();
        assert!(stored.starts_with("v1."));
        assert_eq!(cipher.decrypt(&stored, user).unwrap().expose(), secret.expose());
        assert!(cipher.decrypt(&stored, UserId::new_v7()).is_err(), "moved to another user's row");
        assert_ne!(cipher.encrypt(&secret, user).unwrap(), stored, "a fresh nonce each time");
    }

    #[test]
    fn after_a_rotation_the_previous_key_still_opens_old_secrets() {
        let user = UserId::new_v7();
        let secret = TotpSecret::generate();
        let old = XChaChaCipher::new(&key(1), None).encrypt(&secret, user).unwrap();
        let rotated = XChaChaCipher::new(&key(2), Some(&key(1)));
        assert_eq!(rotated.decrypt(&old, user).unwrap().expose(), secret.expose());
        assert!(XChaChaCipher::new(&key(2), None).decrypt(&old, user).is_err());
        assert!(rotated.decrypt("v1.AAAA", user).is_err());
        assert!(rotated.decrypt("plain", user).is_err());
    }
}
