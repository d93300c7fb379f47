//! Two-factor login: the second factors a user presents (a TOTP code or a
//! recovery code), the TOTP time steps they are checked in, and the methods a
//! login used (`amr`).

use std::fmt;

use rand::Rng;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::TokenHash;

/// RFC 6238 as every authenticator app speaks it: 30-second steps.
pub const TOTP_STEP_SECONDS: i64 = 30;
/// Steps of clock skew accepted either side of the server's.
pub const TOTP_SKEW_STEPS: i64 = 1;
/// Digits in a TOTP code.
pub const TOTP_DIGITS: usize = 6;
/// Recovery codes handed out at once.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Characters of a recovery code; 5 bits each (see [`RECOVERY_ALPHABET`]): 80 bits,
/// beyond guessing, so a fast digest is enough to store them.
const RECOVERY_CODE_LENGTH: usize = 16;
/// Crockford's base32: digits and lower-case letters without i, l, o and u;
/// when read back, o is taken for 0 and i or l for 1.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The TOTP time step that `at` falls in.
pub fn totp_step(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(TOTP_STEP_SECONDS)
}

/// The steps a code presented at `at` may belong to, oldest first.
pub fn acceptable_steps(at: OffsetDateTime) -> impl Iterator<Item = i64> {
    let now = totp_step(at);
    (now - TOTP_SKEW_STEPS)..=(now + TOTP_SKEW_STEPS)
}

/// A TOTP shared secret (20 random bytes, as RFC 4226 recommends for SHA-1).
pub struct TotpSecret(SecretBox<[u8]>);

impl TotpSecret {
    pub const LENGTH: usize = 20;

    pub fn generate() -> Self {
        let mut bytes = vec![0_u8; Self::LENGTH];
        rand::rng().fill(bytes.as_mut_slice());
        Self(SecretBox::new(bytes.into_boxed_slice()))
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(SecretBox::new(bytes.into_boxed_slice()))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<hidden>)")
    }
}

/// Six digits as typed (spaces allowed between them).
pub struct TotpCode(SecretString);

impl TotpCode {
    /// # Errors
    /// Anything but six digits.
    pub fn parse(raw: &str) -> Result<Self, SecondFactorError> {
        let digits: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() == TOTP_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(SecretString::from(digits)))
        } else {
            Err(SecondFactorError)
        }
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(<hidden>)")
    }
}

/// A single-use recovery code: generated here, shown once in groups of four
/// (`abcd-efgh-jkmn-pqrs`), stored as a digest.
pub struct RecoveryCode(SecretString);

impl RecoveryCode {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let code: String = (0..RECOVERY_CODE_LENGTH)
            .map(|_| char::from(RECOVERY_ALPHABET[rng.random_range(0..RECOVERY_ALPHABET.len())]))
            .collect();
        Self(SecretString::from(code))
    }

    /// A fresh set of [`RECOVERY_CODE_COUNT`] codes.
    pub fn generate_set() -> Vec<Self> {
        (0..RECOVERY_CODE_COUNT).map(|_| Self::generate()).collect()
    }

    /// Accepts any case, with or without the dashes and spaces of the grouping.
    ///
    /// # Errors
    /// The wrong length or a character outside the alphabet.
    pub fn parse(raw: &str) -> Result<Self, SecondFactorError> {
        let code: String = raw
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                other => other,
            })
            .collect();
        if code.len() == RECOVERY_CODE_LENGTH && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)) {
            Ok(Self(SecretString::from(code)))
        } else {
            Err(SecondFactorError)
        }
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::from_bytes(Sha256::digest(self.0.expose_secret().as_bytes()).into())
    }

    /// The code as shown to the user, in groups of four.
    pub fn grouped(&self) -> SecretString {
        let code = self.0.expose_secret();
        let groups: Vec<&str> = (0..code.len()).step_by(4).map(|i| &code[i..(i + 4).min(code.len())]).collect();
        SecretString::from(groups.join("-"))
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<hidden>)")
    }
}

/// What a caller presented as a second factor.
#[derive(Debug)]
pub enum SecondFactor {
    Totp(TotpCode),
    RecoveryCode(RecoveryCode),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a 6-digit authenticator code or a recovery code")]
pub struct SecondFactorError;

impl SecondFactor {
    /// Six digits are a TOTP code; anything else must be a recovery code.
    ///
    /// # Errors
    /// Neither shape.
    pub fn parse(raw: &str) -> Result<Self, SecondFactorError> {
        TotpCode::parse(raw).map(Self::Totp).or_else(|_| RecoveryCode::parse(raw).map(Self::RecoveryCode))
    }
}

/// How a login authenticated (RFC 8176 `amr` values): a session keeps the
/// methods of the login it descends from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethods {
    /// The password alone.
    #[default]
    Password,
    /// The password and a one-time code (TOTP or recovery code).
    PasswordAndOtp,
}

impl AuthMethods {
    /// The `amr` claim's values.
    pub const fn amr(self) -> &'static [&'static str] {
        match self {
            Self::Password => &["pwd"],
            Self::PasswordAndOtp => &["pwd", "otp"],
        }
    }

    /// The stored form: the `amr` values joined by spaces.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Password => "pwd",
            Self::PasswordAndOtp => "pwd otp",
        }
    }

    /// Reads the stored or claimed values back; `None` for anything we never issue.
    pub fn from_amr<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let values: Vec<&str> = values.into_iter().collect();
        [Self::Password, Self::PasswordAndOtp].into_iter().find(|m| m.amr() == values.as_slice())
    }

    /// Reads [`Self::as_str`] back.
    pub fn parse(stored: &str) -> Option<Self> {
        Self::from_amr(stored.split_whitespace())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn totp_steps_are_thirty_seconds_and_one_step_of_skew_is_accepted_each_side() {
        // RFC 6238's test time 59 s is in step 1.
        assert_eq!(totp_step(datetime!(1970-01-01 00:00:59 UTC)), 1);
        assert_eq!(acceptable_steps(datetime!(1970-01-01 00:01:00 UTC)).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn a_second_factor_is_a_totp_code_when_it_is_six_digits_and_a_recovery_code_otherwise() {
        assert!(matches!(SecondFactor::parse("123 456"), Ok(SecondFactor::Totp(_))));
        let code = RecoveryCode::generate();
        let grouped = code.grouped();
        let Ok(SecondFactor::RecoveryCode(parsed)) = SecondFactor::parse(&grouped.expose_secret().to_uppercase())
        else {
            panic!("a grouped, upper-cased recovery code parses")
        };
        assert_eq!(parsed.hash(), code.hash());
        for bad in ["", "12345", "1234567", "abcd-efgh", "abcd-efgh-jkmn-pqru"] {
            assert!(SecondFactor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn recovery_codes_are_grouped_in_fours_and_differ() {
        let codes = RecoveryCode::generate_set();
        assert_eq!(codes.len(), 10);
        let shown = codes[0].grouped();
        assert_eq!(shown.expose_secret().len(), 19);
        assert_eq!(shown.expose_secret().matches('-').count(), 3);
        assert_ne!(codes[0].hash(), codes[1].hash());
    }

    #[test]
    fn auth_methods_round_trip_through_their_stored_form() {
        for methods in [AuthMethods::Password, AuthMethods::PasswordAndOtp] {
            assert_eq!(AuthMethods::parse(methods.as_str()), Some(methods));
        }
        assert_eq!(AuthMethods::from_amr(["pwd", "otp"]), Some(AuthMethods::PasswordAndOtp));
        assert_eq!(AuthMethods::from_amr(["otp"]), None);
    }

    #[test]
    fn secrets_and_codes_never_reach_debug_output() {
        let code = TotpCode::parse("123456").unwrap();
        assert!(!format!("{code:?}{:?}", TotpSecret::generate()).contains("123456"));
    }
}
