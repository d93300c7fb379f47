//! One call budget (per caller address, say): `per_minute` calls per key per
//! minute, kept in a [`RateLimitStore`] (shared by every replica on
//! PostgreSQL, by default), with this replica's memory to fall back on while the store
//! cannot answer: limits then hold per replica rather than not at all.

use std::{sync::Arc, time::Duration};

use crate::domain::ports::RateLimitStore;

pub struct RateLimiter {
    /// Prefixes every key, so that budgets of one store never share a key.
    scope: &'static str,
    per_minute: u32,
    store: Arc<dyn RateLimitStore>,
    fallback: Arc<dyn RateLimitStore>,
}

impl RateLimiter {
    /// `per_minute == 0` turns the limiter off.
    pub fn new(
        scope: &'static str,
        per_minute: u32,
        store: Arc<dyn RateLimitStore>,
        fallback: Arc<dyn RateLimitStore>,
    ) -> Self {
        Self { scope, per_minute, store, fallback }
    }

    pub fn is_off(&self) -> bool {
        self.per_minute == 0
    }

    /// Takes one call for `key`.
    ///
    /// # Errors
    /// How long until a call is allowed again.
    pub async fn check(&self, key: &str) -> Result<(), Duration> {
        if self.is_off() {
            return Ok(());
        }
        let key = format!("{}:{key}", self.scope);
        match self.store.take(&key, self.per_minute).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(error = %error, "the shared rate limits are unavailable; limiting per replica meanwhile");
                // The in-memory fallback cannot fail.
                self.fallback.take(&key, self.per_minute).await.unwrap_or(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::domain::ports::RepositoryError;

    /// Allows `budget` calls in all, remembering the keys it was asked for;
    /// fails every call when `broken`.
    struct CountingStore {
        budget: Mutex<u32>,
        keys: Mutex<Vec<String>>,
        broken: bool,
    }

    impl CountingStore {
        fn new(budget: u32, broken: bool) -> Arc<Self> {
            Arc::new(Self { budget: Mutex::new(budget), keys: Mutex::new(Vec::new()), broken })
        }
    }

    #[async_trait]
    impl RateLimitStore for CountingStore {
        async fn take(&self, key: &str, _per_minute: u32) -> Result<Result<(), Duration>, RepositoryError> {
            self.keys.lock().unwrap().push(key.to_owned());
            if self.broken {
                return Err(RepositoryError::Unavailable(anyhow::anyhow!("down")));
            }
            let mut budget = self.budget.lock().unwrap();
            if *budget == 0 {
                return Ok(Err(Duration::from_secs(1)));
            }
            *budget -= 1;
            Ok(Ok(()))
        }
    }

    #[tokio::test]
    async fn the_store_decides_and_keys_carry_the_scope() {
        let store = CountingStore::new(1, false);
        let limiter = RateLimiter::new("address", 5, store.clone(), CountingStore::new(0, false));
        assert!(limiter.check("login:1.2.3.4").await.is_ok());
        assert_eq!(limiter.check("login:1.2.3.4").await, Err(Duration::from_secs(1)));
        assert_eq!(*store.keys.lock().unwrap(), ["address:login:1.2.3.4", "address:login:1.2.3.4"]);
    }

    #[tokio::test]
    async fn while_the_store_is_down_the_fallback_limits() {
        let fallback = CountingStore::new(1, false);
        let limiter = RateLimiter::new("email", 5, CountingStore::new(0, true), fallback.clone());
        assert!(limiter.check("a").await.is_ok());
        assert!(limiter.check("a").await.is_err(), "the fallback's budget is spent");
        assert_eq!(fallback.keys.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn zero_turns_it_off_without_asking_the_store() {
        let store = CountingStore::new(0, true);
        let limiter = RateLimiter::new("address", 0, store.clone(), store.clone());
        for _ in 0..10 {
            assert!(limiter.check("a").await.is_ok());
        }
        assert!(store.keys.lock().unwrap().is_empty());
    }
}
