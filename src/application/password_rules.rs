use std::sync::Arc;

use crate::domain::{
    NewPassword, PasswordError, PasswordPolicy,
    ports::{HashingError, PasswordStrengthMeter},
};

/// What a newly chosen password must meet: the length policy, checked first
/// and cheaply, then the strength meter, which runs off the async runtime.
#[derive(Clone)]
pub struct PasswordRules {
    pub policy: PasswordPolicy,
    pub meter: Arc<dyn PasswordStrengthMeter>,
}

impl PasswordRules {
    /// `context`: the words a user is likely to build a password from.
    ///
    /// # Errors
    /// The outer error when the meter is saturated; the inner one names the rule broken.
    pub async fn check(
        &self,
        raw: String,
        context: &[String],
    ) -> Result<Result<NewPassword, PasswordError>, HashingError> {
        let candidate = match NewPassword::check_length(raw, self.policy) {
            Ok(candidate) => candidate,
            Err(error) => return Ok(Err(error)),
        };
        let strength = self.meter.assess(&candidate, context).await?;
        Ok(NewPassword::accept(candidate, &strength))
    }
}

/// A strength meter for use-case tests: scores by length, and zero for any
/// password that contains one of the user's own words.
#[cfg(test)]
pub mod fake {
    use async_trait::async_trait;

    use crate::domain::{
        PasswordStrength, PlaintextPassword,
        ports::{HashingError, PasswordStrengthMeter},
    };

    pub struct LengthMeter;

    #[async_trait]
    impl PasswordStrengthMeter for LengthMeter {
        async fn assess(
            &self,
            password: &PlaintextPassword,
            user_inputs: &[String],
        ) -> Result<PasswordStrength, HashingError> {
            let lower = password.expose().to_lowercase();
            let is_personal = user_inputs.iter().any(|w| w.len() >= 3 && lower.contains(&w.to_lowercase()));
            let score = if is_personal { 0 } else { u8::try_from((lower.len() / 4).min(4)).unwrap_or(4) };
            Ok(PasswordStrength { score, feedback: if score < 3 { "too guessable".into() } else { String::new() } })
        }
    }
}
