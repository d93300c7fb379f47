use time::OffsetDateTime;

use crate::domain::ports::Clock;

/// The real clock, in UTC, truncated to milliseconds: what is stored reads back
/// unchanged on every backend, and token claims round-trip exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_millisecond(now.millisecond()).unwrap_or(now)
    }
}
