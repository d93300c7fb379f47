//! Distinct access tokens for validate-token and login-storm: copies of real
//! ones that differ only in their `jti`, signed with the server's own key.
//!
//! Loading a server with a handful of tokens measures whatever it remembers
//! about them; real callers each present their own. The copies carry the
//! originals' claims (user, session, expiry) and footer, so the server checks
//! each exactly as it would the token it issued.

use anyhow::Context;
use pasetors::{
    Public, claims::Claims, footer::Footer, keys::AsymmetricSecretKey, token::UntrustedToken, version4::V4,
};

use super::Bench;

impl Bench {
    /// `count` tokens cycling through `originals`, each with a fresh `jti`.
    ///
    /// # Errors
    /// An original that is not a v4.public token with JSON claims.
    pub(super) fn distinct_copies(&self, originals: &[String], count: usize) -> anyhow::Result<Vec<String>> {
        let pasetors = |e: pasetors::errors::Error| anyhow::anyhow!("re-signing a token: {e}");
        let key = AsymmetricSecretKey::<V4>::try_from(self.token_secret.as_str()).map_err(pasetors)?;
        let parsed = originals
            .iter()
            .map(|token| {
                let untrusted = UntrustedToken::<Public, V4>::try_from(token.as_str()).map_err(pasetors)?;
                let claims = std::str::from_utf8(untrusted.untrusted_payload()).context("claims are not UTF-8")?;
                let claims = Claims::from_string(claims).map_err(pasetors)?;
                let mut footer = Footer::new();
                footer.parse_bytes(untrusted.untrusted_footer()).map_err(pasetors)?;
                Ok((claims, footer))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!parsed.is_empty(), "no tokens to copy");
        (0..count)
            .map(|index| {
                let (claims, footer) = &parsed[index % parsed.len()];
                let mut claims = claims.clone();
                claims.token_identifier(&uuid::Uuid::new_v4().to_string()).map_err(pasetors)?;
                pasetors::public::sign(&key, &claims, Some(footer), None).map_err(pasetors)
            })
            .collect()
    }
}
