//! Password strength by zxcvbn, with its cost bounded.
//!
//! zxcvbn's l33t and pattern matching grows much faster than the input: a
//! crafted 128-character password costs most of a second of CPU. So only a
//! bounded prefix is scored (the rest can only make a password stronger, so a
//! prefix that scores well is a password that scores well), the work runs on
//! the blocking pool rather than on the async runtime's workers, and at most
//! `max_concurrent` checks run at once; a caller that waits longer than
//! `queue_timeout` for a slot is shed, as hashing sheds.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::domain::{
    PasswordStrength, PlaintextPassword,
    ports::{HashingError, PasswordStrengthMeter},
};

/// Code points scored. Long enough for a passphrase to earn its score (four
/// random words fit), short enough to bound crafted input. Measured here (one
/// core, optimised build) on a string dense in l33t substitutes: 32 code points
/// cost about 58 ms, about one default argon2 hash; 48 cost 150 ms, 128 cost
/// 690 ms. Ordinary passwords of 32 code points cost 1 to 2 ms.
pub const MAX_SCORED_CHARS: usize = 32;
/// Each user input (email, names) is cut as well: they are matched against
/// the password, and their length multiplies the work too.
const MAX_USER_INPUT_CHARS: usize = 64;

pub struct ZxcvbnMeter {
    slots: Arc<Semaphore>,
    queue_timeout: Duration,
}

impl ZxcvbnMeter {
    pub fn new(max_concurrent: usize, queue_timeout: Duration) -> Self {
        Self { slots: Arc::new(Semaphore::new(max_concurrent.max(1))), queue_timeout }
    }
}

fn prefix(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// The judgement itself, synchronous and bounded.
pub fn assess_now(password: &str, user_inputs: &[String]) -> PasswordStrength {
    let scored = prefix(password, MAX_SCORED_CHARS);
    let inputs: Vec<String> = user_inputs.iter().map(|input| prefix(input, MAX_USER_INPUT_CHARS)).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let entropy = zxcvbn::zxcvbn(&scored, &inputs);
    let mut reasons: Vec<String> = Vec::new();
    if let Some(feedback) = entropy.feedback() {
        if let Some(warning) = feedback.warning() {
            reasons.push(warning.to_string());
        }
        reasons.extend(feedback.suggestions().iter().map(ToString::to_string));
    }
    PasswordStrength { score: u8::from(entropy.score()), feedback: reasons.join(" ") }
}

#[async_trait]
impl PasswordStrengthMeter for ZxcvbnMeter {
    async fn assess(
        &self,
        password: &PlaintextPassword,
        user_inputs: &[String],
    ) -> Result<PasswordStrength, HashingError> {
        let permit = tokio::time::timeout(self.queue_timeout, Arc::clone(&self.slots).acquire_owned())
            .await
            .map_err(|_| HashingError::Saturated { retry_after: Duration::from_secs(1) })?
            .map_err(|_| HashingError::Unexpected(anyhow::anyhow!("the strength checker is shut down")))?;
        let password = password.clone();
        let user_inputs = user_inputs.to_vec();
        let span = tracing::debug_span!("password_strength");
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(|| assess_now(password.expose(), &user_inputs))
        })
        .await
        .map_err(|e| HashingError::Unexpected(anyhow::anyhow!("the strength check failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::password::MIN_STRENGTH_SCORE;

    fn score(password: &str, inputs: &[&str]) -> u8 {
        assess_now(password, &inputs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).score
    }

    #[test]
    fn a_long_unusual_passphrase_scores_well() {
        assert!(score("correct horse battery staple 93!", &[]) >= MIN_STRENGTH_SCORE);
    }

    #[test]
    fn common_passwords_score_badly_with_a_reason() {
        let verdict = assess_now("password1234", &[]);
        assert!(verdict.score < MIN_STRENGTH_SCORE);
        assert!(!verdict.feedback.is_empty());
    }

    #[test]
    fn passwords_built_from_the_users_own_data_score_badly() {
        let email = "margaret.hamilton@example.com";
        assert!(score("margarethamilton", &[email, "margaret", "hamilton"]) < MIN_STRENGTH_SCORE);
    }

    #[test]
    fn only_the_bounded_prefix_is_scored() {
        let weak_prefix = format!("{}{}", "a".repeat(MAX_SCORED_CHARS), "k9#Qz!v7@Lm2^Rt5");
        assert!(score(&weak_prefix, &[]) < MIN_STRENGTH_SCORE, "what lies past the prefix is not scored");
    }

    #[tokio::test]
    async fn checks_beyond_the_pool_wait_and_are_shed_after_the_queue_timeout() {
        let meter = ZxcvbnMeter::new(1, Duration::from_millis(20));
        let held = Arc::clone(&meter.slots).acquire_owned().await.unwrap();
        let password = PlaintextPassword::parse("correct horse battery staple 93!".into()).unwrap();
        let shed = meter.assess(&password, &[]).await;
        assert!(matches!(shed, Err(HashingError::Saturated { .. })), "{shed:?}");
        drop(held);
        assert!(meter.assess(&password, &[]).await.unwrap().score >= MIN_STRENGTH_SCORE);
    }
}
