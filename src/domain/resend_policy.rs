//! How often a verification email may be sent to one address.

use std::time::Duration;

use time::OffsetDateTime;

use super::ports::SendHistory;

/// The window over which [`ResendPolicy::max_per_hour`] counts.
pub const RESEND_WINDOW: time::Duration = time::Duration::HOUR;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendPolicy {
    /// Minimum time between two emails to one address; zero turns it off.
    pub cooldown: Duration,
    /// Most emails to one address within [`RESEND_WINDOW`].
    pub max_per_hour: u32,
}

impl ResendPolicy {
    /// Whether another email may go out now, given what was sent in the last hour.
    pub fn allows(&self, history: SendHistory, now: OffsetDateTime) -> bool {
        if history.sent_since >= self.max_per_hour {
            return false;
        }
        match history.last_sent_at {
            Some(last) if !self.cooldown.is_zero() => now - last >= self.cooldown,
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const POLICY: ResendPolicy = ResendPolicy { cooldown: Duration::from_secs(60), max_per_hour: 5 };
    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn history(sent_since: u32, seconds_ago: Option<i64>) -> SendHistory {
        SendHistory { sent_since, last_sent_at: seconds_ago.map(|s| NOW - time::Duration::seconds(s)) }
    }

    #[test]
    fn the_cooldown_counts_from_the_last_email() {
        assert!(!POLICY.allows(history(1, Some(59)), NOW));
        assert!(POLICY.allows(history(1, Some(60)), NOW));
    }

    #[test]
    fn at_most_five_an_hour() {
        assert!(POLICY.allows(history(4, Some(600)), NOW));
        assert!(!POLICY.allows(history(5, Some(600)), NOW));
    }

    #[test]
    fn a_zero_cooldown_turns_the_cooldown_off_but_not_the_hourly_cap() {
        let policy = ResendPolicy { cooldown: Duration::ZERO, ..POLICY };
        assert!(policy.allows(history(1, Some(0)), NOW));
        assert!(!policy.allows(history(5, Some(0)), NOW));
    }
}
