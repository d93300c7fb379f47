//! Passwords: the policy a new password must meet, and the secret wrappers that
//! keep them out of logs.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Passwords longer than this are refused before any hashing, so that nobody can
/// make the server hash megabytes. 128 code points fit every passphrase manager.
pub const MAX_PASSWORD_LENGTH: usize = 128;

/// zxcvbn scores 0 (too guessable) to 4 (very unguessable); 3 is "safely
/// unguessable: moderate protection from offline slow-hash scenario".
const MIN_ZXCVBN_SCORE: u8 = 3;

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
    /// Checks a chosen password against the policy. `user_inputs` (the email,
    /// the names) make passwords built from them score as guessable.
    ///
    /// # Errors
    /// The first rule broken; a guessable password says why and how to do better.
    pub fn parse(raw: String, policy: PasswordPolicy, user_inputs: &[&str]) -> Result<Self, PasswordError> {
        let plaintext = PlaintextPassword::parse(raw)?;
        let length = plaintext.expose().chars().count();
        if length < policy.min_length {
            return Err(PasswordError::TooShort(policy.min_length));
        }
        let entropy = zxcvbn::zxcvbn(plaintext.expose(), user_inputs);
        if u8::from(entropy.score()) < MIN_ZXCVBN_SCORE {
            return Err(PasswordError::TooGuessable(explain_weakness(entropy.feedback())));
        }
        Ok(Self(plaintext))
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

fn explain_weakness(feedback: Option<&zxcvbn::feedback::Feedback>) -> String {
    let mut reasons: Vec<String> = Vec::new();
    if let Some(feedback) = feedback {
        if let Some(warning) = feedback.warning() {
            reasons.push(warning.to_string());
        }
        reasons.extend(feedback.suggestions().iter().map(ToString::to_string));
    }
    if reasons.is_empty() {
        "add more words or characters that are hard to guess".to_owned()
    } else {
        reasons.join(" ")
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

    #[test]
    fn a_long_unusual_passphrase_is_accepted() {
        assert!(NewPassword::parse("correct horse battery staple 93!".into(), POLICY, &[]).is_ok());
    }

    #[test]
    fn length_is_counted_in_code_points_without_trimming() {
        // 12 code points, 24 bytes: long enough.
        let raw = "ŝŵŷĉĝĥĵķļņŗţ".to_owned();
        assert!(NewPassword::parse(raw, POLICY, &[]).is_ok());
        // Leading and trailing spaces count: 11 characters plus one space is 12.
        assert_eq!(NewPassword::parse("Zq8#vL2!mXw".into(), POLICY, &[]).unwrap_err(), PasswordError::TooShort(12));
        assert!(PlaintextPassword::parse(" Zq8#vL2!mXw ".into()).unwrap().expose().starts_with(' '));
    }

    #[test]
    fn too_long_is_refused_before_any_strength_check() {
        assert_eq!(NewPassword::parse("x".repeat(129), POLICY, &[]).unwrap_err(), PasswordError::TooLong);
        assert_eq!(PlaintextPassword::parse("é".repeat(129)).unwrap_err(), PasswordError::TooLong);
        assert!(PlaintextPassword::parse("é".repeat(128)).is_ok());
    }

    #[test]
    fn common_passwords_are_refused_with_a_reason() {
        match NewPassword::parse("password1234".into(), POLICY, &[]) {
            Err(PasswordError::TooGuessable(reason)) => assert!(!reason.is_empty()),
            other => panic!("expected TooGuessable, got {other:?}"),
        }
    }

    #[test]
    fn passwords_built_from_the_users_own_data_are_refused() {
        let email = "margaret.hamilton@example.com";
        let result = NewPassword::parse("margarethamilton".into(), POLICY, &[email, "margaret", "hamilton"]);
        assert!(matches!(result, Err(PasswordError::TooGuessable(_))), "{result:?}");
    }

    #[test]
    fn debug_never_shows_the_password() {
        let password = PlaintextPassword::parse("hunter2-hunter2".into()).unwrap();
        assert!(!format!("{password:?}").contains("hunter2"));
    }
}
