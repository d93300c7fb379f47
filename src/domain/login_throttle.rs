//! Brute-force throttling of logins. Two counters per attempt:
//! - per account *and* caller address: after a few consecutive failures each
//!   further attempt must wait, longer and longer;
//! - per account: a hard cap on consecutive failures from everywhere (NIST
//!   SP 800-63B allows at most 100), which does not apply to addresses the
//!   account has logged in from before, so that a stranger's failures cannot
//!   lock the owner out.
//!
//! An attempt is counted *before* its password is checked, so that concurrent
//! guesses cannot all slip in under the limit.

use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{ClientAddress, Email};

/// Identifies a throttle counter: a digest, for unregistered addresses too, so
/// that being throttled reveals nothing and no address is stored in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ThrottleKey(String);

fn hex_digest(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

impl ThrottleKey {
    /// The account's counter: a digest of the canonical email.
    pub fn for_email(email: &Email) -> Self {
        Self(hex_digest(&[email.as_str().as_bytes()]))
    }

    /// The counter of one account from one address bucket (see [`ClientAddress::bucket`]).
    pub fn for_email_from(email: &Email, from: Option<&ClientAddress>) -> Self {
        let bucket = from.map_or_else(|| "unknown".to_owned(), ClientAddress::bucket);
        Self(hex_digest(&[b"from\0", email.as_str().as_bytes(), b"\0", bucket.as_bytes()]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Both counters one login attempt touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAttemptKeys {
    pub account: ThrottleKey,
    pub from_address: ThrottleKey,
}

impl LoginAttemptKeys {
    pub fn new(email: &Email, from: Option<&ClientAddress>) -> Self {
        Self { account: ThrottleKey::for_email(email), from_address: ThrottleKey::for_email_from(email, from) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThrottleState {
    pub failures: u32,
    pub last_failure_at: Option<OffsetDateTime>,
    pub locked_until: Option<OffsetDateTime>,
    /// Per-address counters only: the account logged in successfully from there.
    pub last_success_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Consecutive failures allowed from one address before throttling starts.
    pub free_attempts: u32,
    /// The wait after the first throttled failure; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Consecutive failures after which a counter locks for `hard_cap_window`.
    pub hard_cap: u32,
    /// How long a hard-capped counter stays locked; also how far apart two
    /// failures may be and still count as consecutive.
    pub hard_cap_window: Duration,
}

/// The counters after an admitted attempt, to be stored before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmittedAttempt {
    pub account: ThrottleState,
    pub from_address: ThrottleState,
}

impl ThrottlePolicy {
    pub const NIST_HARD_CAP: u32 = 100;

    /// Until when an address with `failures` consecutive failures, the last at
    /// `now`, must wait; `None` while it is under the free attempts.
    pub fn locked_until(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if failures >= self.hard_cap {
            return Some(now + self.hard_cap_window);
        }
        let over = failures.checked_sub(self.free_attempts)?;
        let delay = super::durations::doubled(self.base_delay, over.min(30), self.max_delay);
        Some(now + delay)
    }

    /// How long an attempt must still wait, if at all.
    pub fn wait(state: Option<ThrottleState>, now: OffsetDateTime) -> Option<Duration> {
        let until = state?.locked_until?;
        (until > now).then(|| Duration::try_from(until - now).unwrap_or(Duration::ZERO))
    }

    /// Failures so far that still count: a failure longer than the window after
    /// the previous one starts a new run.
    fn consecutive(&self, state: Option<ThrottleState>, now: OffsetDateTime) -> u32 {
        match state {
            Some(s) if s.last_failure_at.is_some_and(|at| now - at <= self.hard_cap_window) => s.failures,
            _ => 0,
        }
    }

    /// Decides one attempt from the stored counters, counting it as a failure
    /// until the password proves right.
    ///
    /// # Errors
    /// How long the caller must wait; a refused attempt counts nothing.
    pub fn admit(
        &self,
        account: Option<ThrottleState>,
        from_address: Option<ThrottleState>,
        now: OffsetDateTime,
    ) -> Result<AdmittedAttempt, Duration> {
        if let Some(wait) = Self::wait(from_address, now) {
            return Err(wait);
        }
        let is_known_address = from_address.is_some_and(|s| s.last_success_at.is_some());
        if !is_known_address && let Some(wait) = Self::wait(account, now) {
            return Err(wait);
        }
        let address_failures = self.consecutive(from_address, now).saturating_add(1);
        let account_failures = self.consecutive(account, now).saturating_add(1);
        Ok(AdmittedAttempt {
            from_address: ThrottleState {
                failures: address_failures,
                last_failure_at: Some(now),
                locked_until: self.locked_until(address_failures, now),
                last_success_at: from_address.and_then(|s| s.last_success_at),
            },
            account: ThrottleState {
                failures: account_failures,
                last_failure_at: Some(now),
                // Only the hard cap applies account-wide: backing off here would
                // let one stranger slow every address down.
                locked_until: (account_failures >= self.hard_cap).then(|| now + self.hard_cap_window),
                last_success_at: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const POLICY: ThrottlePolicy = ThrottlePolicy {
        free_attempts: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(900),
        hard_cap: 100,
        hard_cap_window: Duration::from_secs(86_400),
    };
    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn failed(failures: u32, locked_until: Option<OffsetDateTime>) -> Option<ThrottleState> {
        Some(ThrottleState { failures, last_failure_at: Some(NOW), locked_until, last_success_at: None })
    }

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
        assert_eq!(POLICY.locked_until(100, NOW), Some(NOW + Duration::from_secs(86_400)));
    }

    #[test]
    fn the_wait_is_what_remains() {
        let state = failed(6, Some(NOW + Duration::from_secs(2)));
        assert_eq!(ThrottlePolicy::wait(state, NOW), Some(Duration::from_secs(2)));
        assert_eq!(ThrottlePolicy::wait(state, NOW + Duration::from_secs(2)), None);
        assert_eq!(ThrottlePolicy::wait(None, NOW), None);
    }

    #[test]
    fn an_attempt_is_counted_before_its_password_is_checked() {
        let admitted = POLICY.admit(None, failed(4, None), NOW).unwrap();
        assert_eq!(admitted.from_address.failures, 5);
        assert_eq!(admitted.from_address.locked_until, Some(NOW + Duration::from_secs(1)));
        assert_eq!(admitted.account.failures, 1);
        // The next concurrent attempt sees the lock the admitted one stored.
        assert!(POLICY.admit(Some(admitted.account), Some(admitted.from_address), NOW).is_err());
    }

    #[test]
    fn the_account_wide_cap_spares_addresses_the_owner_logged_in_from() {
        let capped = failed(100, Some(NOW + Duration::from_secs(86_400)));
        assert!(POLICY.admit(capped, None, NOW).is_err(), "a stranger's address is refused");
        let known = Some(ThrottleState { last_success_at: Some(NOW), ..ThrottleState::default() });
        assert!(POLICY.admit(capped, known, NOW).is_ok(), "the owner's own address is not");
    }

    #[test]
    fn failures_a_long_window_apart_are_not_consecutive() {
        let later = NOW + Duration::from_secs(86_401);
        let admitted = POLICY.admit(failed(99, None), failed(3, None), later).unwrap();
        assert_eq!(admitted.account.failures, 1);
        assert_eq!(admitted.from_address.failures, 1);
    }

    #[test]
    fn keys_depend_only_on_the_canonical_email_and_the_address_bucket() {
        let a = ThrottleKey::for_email(&Email::parse("Ada@Example.com").unwrap());
        let b = ThrottleKey::for_email(&Email::parse("ada@example.com").unwrap());
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 64);
        let email = Email::parse("ada@example.com").unwrap();
        let here = ClientAddress::new("2001:db8::1".parse().unwrap());
        let same_net = ClientAddress::new("2001:db8::2".parse().unwrap());
        assert_eq!(
            ThrottleKey::for_email_from(&email, Some(&here)),
            ThrottleKey::for_email_from(&email, Some(&same_net))
        );
        assert_ne!(ThrottleKey::for_email_from(&email, Some(&here)), a);
        assert_eq!(ThrottleKey::for_email_from(&email, None).as_str().len(), 64);
    }
}
