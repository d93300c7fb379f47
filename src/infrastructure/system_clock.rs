use time::OffsetDateTime;

use crate::domain::ports::Clock;

/// The real clock, in UTC, truncated to whole seconds: stored timestamps then
/// have one textual shape on every backend (SQLite compares them as text) and
/// token claims round-trip exactly.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}
