//! Passwords: the policy a new password must meet, and the secret wrappers that
//! keep them out of logs.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Passwords longer than this are refused before any hashing, so that nobody can
/// make the server hash megabytes. 128 code points fit every passphrase manager.
pub const MAX_PASSWORD_LENGTH: usize = 128;

/// Strength meters score 0 (too guessable) to 4 (very unguessable); 3 is zxcvbn's
/// "safely unguessable: moderate protection from offline slow-hash scenario".
pub const MIN_STRENGTH_SCORE: u8 = 3;

/// A strength meter's verdict on a password (see
/// [`super::ports::PasswordStrengthMeter`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordStrength {
    /// 0 to 4.
    pub score: u8,
    /// Why it is guessable and how to do better, in words for the user.
    pub feedback: String,
}

/// A password exactly as the caller sent it: never trimmed, never truncated.
/// Used for login, where the policy of the day must not lock anybody out.
#[derive(Clone)]
pub struct PlaintextPassword(SecretString);

/// A password that met the policy when it was chosen.
#[derive(Clone)]
pub struct NewPassword(PlaintextPassword);

/// The stored PHC string of a password hash (`$argon2id$v=19$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub min_length: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("is required")]
    Empty,
    #[error("must be at least {0} characters")]
    TooShort(usize),
    #[error("must be at most {MAX_PASSWORD_LENGTH} characters")]
    TooLong,
    #[error("is too easy to guess: {0}")]
    TooGuessable(String),
}

impl PlaintextPassword {
    /// # Errors
    /// Empty or longer than [`MAX_PASSWORD_LENGTH`] code points.
    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        if raw.is_empty() {
            return Err(PasswordError::Empty);
        }
        // Byte length bounds the count below; checking it first keeps a 1 MB input cheap.
        if raw.len() > MAX_PASSWORD_LENGTH * 4 || raw.chars().count() > MAX_PASSWORD_LENGTH {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl NewPassword {
    /// The cheap rules of a chosen password (present, not too long, long
    /// enough), checked before the strength meter spends any CPU on it.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn check_length(raw: String, policy: PasswordPolicy) -> Result<PlaintextPassword, PasswordError> {
        let plaintext = PlaintextPassword::parse(raw)?;
        if plaintext.expose().chars().count() < policy.min_length {
            return Err(PasswordError::TooShort(policy.min_length));
        }
        Ok(plaintext)
    }

    /// A password that passed [`Self::check_length`], judged by a strength meter.
    ///
    /// # Errors
    /// Too guessable; the error says why and how to do better.
    pub fn accept(candidate: PlaintextPassword, strength: &PasswordStrength) -> Result<Self, PasswordError> {
        if strength.score < MIN_STRENGTH_SCORE {
            let feedback = if strength.feedback.is_empty() {
                "add more words or characters that are hard to guess".to_owned()
            } else {
                strength.feedback.clone()
            };
            return Err(PasswordError::TooGuessable(feedback));
        }
        Ok(Self(candidate))
    }

    /// A password that already passed the policy once (re-hashing an existing
    /// password at login): today's policy does not apply to it again.
    pub fn trusted(password: PlaintextPassword) -> Self {
        Self(password)
    }

    pub fn as_plaintext(&self) -> &PlaintextPassword {
        &self.0
    }
}

impl PasswordHash {
    /// Wraps a PHC string produced by the hasher or read back from storage.
    pub fn from_phc(phc: String) -> Self {
        Self(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlaintextPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlaintextPassword(<hidden>)")
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(<hidden>)")
    }
}

impl fmt::Debug for PasswordHash {
    // A hash is offline-crackable material; keep it out of logs as well.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: PasswordPolicy = PasswordPolicy { min_length: 12 };

    fn strength(score: u8) -> PasswordStrength {
        PasswordStrength { score, feedback: String::new() }
    }

    #[test]
    fn length_is_counted_in_code_points_without_trimming() {
        // 12 code points, 24 bytes: long enough.
        assert!(NewPassword::check_length("ŝŵŷĉĝĥĵķļņŗţ".to_owned(), POLICY).is_ok());
        // Leading and trailing spaces count: 11 characters plus one space is 12.
        assert_eq!(NewPassword::check_length("Zq8#vL2!mXw".into(), POLICY).unwrap_err(), PasswordError::TooShort(12));
        assert!(PlaintextPassword::parse(" Zq8#vL2!mXw ".into()).unwrap().expose().starts_with(' '));
    }

    #[test]
    fn too_long_is_refused_before_any_strength_check() {
        assert_eq!(NewPassword::check_length("x".repeat(129), POLICY).unwrap_err(), PasswordError::TooLong);
        assert_eq!(PlaintextPassword::parse("é".repeat(129)).unwrap_err(), PasswordError::TooLong);
        assert!(PlaintextPassword::parse("é".repeat(128)).is_ok());
    }

    #[test]
    fn a_guessable_verdict_is_refused_with_a_reason() {
        let candidate = NewPassword::check_length("password1234".into(), POLICY).unwrap();
        match NewPassword::accept(candidate.clone(), &strength(MIN_STRENGTH_SCORE - 1)) {
            Err(PasswordError::TooGuessable(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected TooGuessable, got {other:?}"),
        }
        assert!(NewPassword::accept(candidate, &strength(MIN_STRENGTH_SCORE)).is_ok());
    }

    #[test]
    fn debug_never_shows_the_password() {
        let password = PlaintextPassword::parse("hunter2-hunter2".into()).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
