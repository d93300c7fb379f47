//! RFC 6238 TOTP through `totp-rs`: SHA-1, 6 digits, 30-second steps, which is
//! what every authenticator app speaks.

use anyhow::Context;
use secrecy::SecretString;
use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::domain::{
    TotpCode, TotpSecret,
    mfa::{TOTP_DIGITS, TOTP_STEP_SECONDS},
    ports::TotpAlgorithm,
};

/// Stateless: every call builds the generator from the secret it is given.
#[derive(Debug, Clone, Copy, Default)]
pub struct TotpRs;

fn generator(secret: &TotpSecret, issuer: Option<&str>, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(u8::try_from(TOTP_DIGITS).context("digits")?)
        // The caller picks the steps (and refuses replays); the crate checks one at a time.
        .with_skew(0)
        .with_step_duration(TOTP_STEP_SECONDS.unsigned_abs())
        .with_secret(Secret::new(secret.expose().to_vec().into_boxed_slice()))
        .with_issuer(issuer)
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow::anyhow!("building the TOTP generator: {e}"))
}

impl TotpAlgorithm for TotpRs {
    fn matching_step(&self, secret: &TotpSecret, code: &TotpCode, steps: &[i64]) -> anyhow::Result<Option<i64>> {
        let totp = generator(secret, None, "")?;
        // Every candidate is checked (the crate compares in constant time), so
        // which step matched does not show in the time taken.
        let mut matched = None;
        for &step in steps {
            let Ok(start) = u64::try_from(step * TOTP_STEP_SECONDS) else { continue };
            if totp.check(code.expose(), start).is_some() && matched.is_none() {
                matched = Some(step);
            }
        }
        Ok(matched)
    }

    fn encoded_secret(&self, secret: &TotpSecret) -> SecretString {
        SecretString::from(Secret::new(secret.expose().to_vec().into_boxed_slice()).to_base32())
    }

    fn provisioning_uri(&self, secret: &TotpSecret, issuer: &str, account: &str) -> anyhow::Result<SecretString> {
        // Neither part may hold a colon (it separates them in the label).
        let issuer = issuer.replace(':', " ");
        let totp = generator(secret, Some(&issuer), &account.replace(':', " "))?;
        Ok(SecretString::from(totp.to_url().map_err(|e| anyhow::anyhow!("building the otpauth URI: {e}"))?))
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// RFC 6238 appendix B, SHA-1: the seed "12345678901234567890" and the
    /// 8-digit codes at the listed times; 6-digit codes are their last six digits.
    const RFC_6238_SHA1: [(i64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec())
    }

    #[test]
    fn codes_match_the_rfc_6238_sha1_test_vectors() {
        for (time, eight_digits) in RFC_6238_SHA1 {
            let code = TotpCode::parse(&eight_digits[2..]).unwrap();
            let step = time / TOTP_STEP_SECONDS;
            assert_eq!(TotpRs.matching_step(&rfc_secret(), &code, &[step - 1, step, step + 1]).unwrap(), Some(step));
            assert_eq!(TotpRs.matching_step(&rfc_secret(), &code, &[step + 1]).unwrap(), None, "{time}");
        }
    }

    #[test]
    fn the_provisioning_uri_names_the_issuer_and_the_account_and_carries_the_secret() {
        let uri = TotpRs.provisioning_uri(&rfc_secret(), "Identity: Dev", "ada@example.com").unwrap();
        let uri = uri.expose_secret();
        assert!(uri.starts_with("otpauth://totp/"), "{uri}");
        assert!(uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"), "{uri}");
        assert!(uri.contains("ada%40example.com") || uri.contains("ada@example.com"), "{uri}");
        assert!(uri.contains("issuer=Identity"), "{uri}");
        assert_eq!(TotpRs.encoded_secret(&rfc_secret()).expose_secret(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }
}
