//! Token buckets in this replica's memory: the budgets on SQLite, and the
//! fallback on PostgreSQL while the database cannot answer.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use crate::domain::ports::{RateLimitStore, RepositoryError};

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// The budget's size: budgets of several sizes share one store.
    per_minute: u32,
}

impl Bucket {
    /// Whether the bucket has refilled to its budget (an idle key, which
    /// behaves exactly like an absent one).
    fn is_full(&self, now: Instant) -> bool {
        let burst = f64::from(self.per_minute);
        self.tokens + now.duration_since(self.updated).as_secs_f64() * burst / 60.0 >= burst
    }
}

/// At most `capacity` buckets: when full, the full ones are dropped.
pub struct InMemoryRateLimits {
    capacity: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for InMemoryRateLimits {
    fn default() -> Self {
        Self { capacity: 100_000, buckets: Mutex::new(HashMap::new()) }
    }
}

impl InMemoryRateLimits {
    fn take_at(&self, key: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(per_minute);
        let per_second = burst / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= self.capacity && !buckets.contains_key(key) {
            buckets.retain(|_, b| !b.is_full(now));
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, updated: now, per_minute });
        let refilled = (bucket.tokens + now.duration_since(bucket.updated).as_secs_f64() * per_second).min(burst);
        bucket.updated = now;
        if refilled >= 1.0 {
            bucket.tokens = refilled - 1.0;
            Ok(())
        } else {
            bucket.tokens = refilled;
            Err(Duration::from_secs_f64((1.0 - refilled) / per_second).max(Duration::from_millis(1)))
        }
    }
}

#[async_trait]
impl RateLimitStore for InMemoryRateLimits {
    async fn take(&self, key: &str, per_minute: u32) -> Result<Result<(), Duration>, RepositoryError> {
        Ok(self.take_at(key, per_minute, Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_up_to_the_limit_passes_then_it_refills_over_time() {
        let limits = InMemoryRateLimits::default();
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limits.take_at("a", 3, start).is_ok());
        }
        let wait = limits.take_at("a", 3, start).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(limits.take_at("b", 3, start).is_ok(), "keys are independent");
        assert!(limits.take_at("a", 3, start + Duration::from_secs(20)).is_ok());
    }

    #[test]
    fn making_room_judges_each_bucket_by_its_own_budget() {
        let limits = InMemoryRateLimits { capacity: 2, ..InMemoryRateLimits::default() };
        let start = Instant::now();
        // Half of a budget of 600 spent: 300 left, more than a small budget's
        // whole, yet far from full.
        for _ in 0..300 {
            assert!(limits.take_at("big", 600, start).is_ok());
        }
        assert!(limits.take_at("small", 1, start).is_ok());
        assert!(limits.take_at("other", 1, start).is_ok(), "the store makes room");
        for _ in 0..300 {
            assert!(limits.take_at("big", 600, start).is_ok());
        }
        assert!(limits.take_at("big", 600, start).is_err(), "the half-spent budget was not forgotten");
    }

    #[test]
    fn when_full_idle_buckets_make_room_and_spent_ones_stay() {
        let limits = InMemoryRateLimits { capacity: 2, ..InMemoryRateLimits::default() };
        let start = Instant::now();
        assert!(limits.take_at("spent", 1, start).is_ok());
        assert!(limits.take_at("other", 1, start).is_ok());
        // Both buckets are below full, so neither may go: the third key is still served.
        assert!(limits.take_at("third", 1, start).is_ok());
        assert!(limits.take_at("spent", 1, start).is_err(), "a spent budget is not forgotten to make room");
    }
}
