//! Duration arithmetic that several layers repeat: a delay that doubles up to
//! a cap (login throttling, email retries) and a duration as whole
//! milliseconds (log fields, broker expirations).

use std::time::Duration;

/// `base × 2^doublings`, never more than `cap`; saturates instead of overflowing.
pub fn doubled(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.saturating_mul(2_u32.saturating_pow(doublings)).min(cap)
}

/// Whole milliseconds, saturating at `u64::MAX` (a `Duration` holds more).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_stops_at_the_cap_and_never_overflows() {
        let second = Duration::from_secs(1);
        assert_eq!(doubled(second, 0, Duration::from_secs(60)), second);
        assert_eq!(doubled(second, 3, Duration::from_secs(60)), Duration::from_secs(8));
        assert_eq!(doubled(second, 10, Duration::from_secs(60)), Duration::from_secs(60));
        assert_eq!(doubled(Duration::MAX, u32::MAX, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn milliseconds_saturate() {
        assert_eq!(millis(Duration::from_micros(2_500)), 2);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
