//! Brute-force throttling per account: after a number of consecutive failed
//! logins, each further attempt must wait, longer and longer.

use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Email;

/// Identifies an account for throttling: a digest of the canonical email, for
/// unregistered addresses too, so that being throttled reveals nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

impl ThrottleKey {
    pub fn for_email(email: &Email) -> Self {
        let digest = Sha256::digest(email.as_str().as_bytes());
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: u32,
    pub locked_until: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures allowed before throttling starts.
    pub free_attempts: u32,
    /// The wait after the first throttled failure; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl ThrottlePolicy {
    /// Until when an account with `failures` consecutive failures, the last at
    /// `now`, must wait; `None` while it is under the free attempts.
    pub fn locked_until(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let over = failures.checked_sub(self.free_attempts)?;
        let delay = self.base_delay.saturating_mul(2_u32.saturating_pow(over.min(30))).min(self.max_delay);
        Some(now + delay)
    }

    /// How long a login must still wait, if at all.
    pub fn wait(state: Option<ThrottleState>, now: OffsetDateTime) -> Option<Duration> {
        let until = state?.locked_until?;
        (until > now).then(|| Duration::try_from(until - now).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const POLICY: ThrottlePolicy =
        ThrottlePolicy { free_attempts: 5, base_delay: Duration::from_secs(1), max_delay: Duration::from_secs(900) };
    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    #[test]
    fn the_free_attempts_are_not_throttled() {
        assert_eq!(POLICY.locked_until(4, NOW), None);
    }

    #[test]
    fn the_delay_doubles_after_each_further_failure_up_to_the_cap() {
        assert_eq!(POLICY.locked_until(5, NOW), Some(NOW + Duration::from_secs(1)));
        assert_eq!(POLICY.locked_until(6, NOW), Some(NOW + Duration::from_secs(2)));
        assert_eq!(POLICY.locked_until(9, NOW), Some(NOW + Duration::from_secs(16)));
        assert_eq!(POLICY.locked_until(60, NOW), Some(NOW + Duration::from_secs(900)));
    }

    #[test]
    fn the_wait_is_what_remains() {
        let state = ThrottleState { failures: 6, locked_until: Some(NOW + Duration::from_secs(2)) };
        assert_eq!(ThrottlePolicy::wait(Some(state), NOW), Some(Duration::from_secs(2)));
        assert_eq!(ThrottlePolicy::wait(Some(state), NOW + Duration::from_secs(2)), None);
        assert_eq!(ThrottlePolicy::wait(None, NOW), None);
    }

    #[test]
    fn keys_depend_only_on_the_canonical_email() {
        let a = ThrottleKey::for_email(&Email::parse("Ada@Example.com").unwrap());
        let b = ThrottleKey::for_email(&Email::parse("ada@example.com").unwrap());
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
    }
}
