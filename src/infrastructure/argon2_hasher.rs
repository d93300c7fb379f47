//! argon2id password hashing, bounded: at most `max_concurrent` hashes run at
//! once (each costs `m_cost` KiB of memory and tens of milliseconds of a core),
//! on blocking threads so that they never stall the async runtime.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use argon2::{Algorithm, Argon2, Params, PasswordHash as Phc, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::domain::{
    NewPassword, PasswordHash, PlaintextPassword,
    ports::{HashingError, PasswordHasher},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Hashes allowed to run at once; the cores the process may use.
    pub max_concurrent: usize,
    /// How long a request may wait for a hashing slot before it is shed.
    pub queue_timeout: Duration,
}

impl Argon2Settings {
    /// OWASP's recommendation for argon2id: 19 MiB, 2 passes, 1 lane.
    pub fn recommended() -> Self {
        Self {
            m_cost: 19_456,
            t_cost: 2,
            p_cost: 1,
            max_concurrent: std::thread::available_parallelism().map_or(2, usize::from),
            queue_timeout: Duration::from_secs(5),
        }
    }

    /// # Errors
    /// Parameters argon2 refuses (too little memory for the lanes, say).
    pub fn params(&self) -> anyhow::Result<Params> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))
    }
}

/// Stored hashes with a cost above this multiple of ours are refused instead of
/// computed: a tampered row must not be able to make one login take a minute.
const COST_CEILING_FACTOR: u32 = 8;

pub struct Argon2Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    /// A hash of a random password with our parameters: verifying against it
    /// makes an unknown email cost the same as a wrong password.
    dummy_hash: String,
}

impl Argon2Hasher {
    /// # Errors
    /// Invalid parameters.
    pub fn new(settings: Argon2Settings) -> anyhow::Result<Self> {
        let params = settings.params()?;
        let random = uuid::Uuid::new_v4().to_string();
        let dummy_hash =
            argon2id(&params).hash_password(random.as_bytes()).context("computing the dummy hash")?.to_string();
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            queue_timeout: settings.queue_timeout,
            dummy_hash,
        })
    }

    async fn slot(&self) -> Result<OwnedSemaphorePermit, HashingError> {
        match tokio::time::timeout(self.queue_timeout, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(HashingError::Unexpected(closed.into())),
            Err(_) => Err(HashingError::Saturated { retry_after: Duration::from_secs(1) }),
        }
    }

    fn check_ceiling(&self, stored: &Phc) -> Result<(), HashingError> {
        let stored =
            Params::try_from(stored).map_err(|e| anyhow::anyhow!("stored hash has invalid parameters: {e}"))?;
        let too_costly = stored.m_cost() > self.params.m_cost().saturating_mul(COST_CEILING_FACTOR)
            || stored.t_cost() > self.params.t_cost().saturating_mul(COST_CEILING_FACTOR)
            || stored.p_cost() > self.params.p_cost().saturating_mul(COST_CEILING_FACTOR);
        if too_costly {
            return Err(HashingError::Unexpected(anyhow::anyhow!(
                "stored hash parameters exceed the configured ceiling"
            )));
        }
        Ok(())
    }
}

fn argon2id(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Runs CPU-heavy work on the blocking pool, inside the caller's span.
async fn off_runtime<T: Send + 'static>(
    permit: OwnedSemaphorePermit,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashingError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        span.in_scope(work)
    })
    .in_current_span()
    .await
    .context("the hashing task panicked")
    .map_err(HashingError::Unexpected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &NewPassword) -> Result<PasswordHash, HashingError> {
        let permit = self.slot().await?;
        let secret = SecretString::from(password.as_plaintext().expose().to_owned());
        let params = self.params.clone();
        let phc = off_runtime(permit, move || {
            argon2id(&params).hash_password(secret.expose_secret().as_bytes()).map(|h| h.to_string())
        })
        .await?
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(PasswordHash::from_phc(phc))
    }

    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError> {
        let is_dummy = hash.is_none();
        let phc_string = hash.map_or_else(|| self.dummy_hash.clone(), |h| h.as_str().to_owned());
        let phc =
            Phc::new(&phc_string).map_err(|e| anyhow::anyhow!("stored password hash is not a PHC string: {e}"))?;
        self.check_ceiling(&phc)?;
        let permit = self.slot().await?;
        let secret = SecretString::from(password.expose().to_owned());
        // Argon2::default() takes algorithm, version and cost from the stored
        // hash itself, so hashes made under older parameters still verify.
        let matches = off_runtime(permit, move || {
            Argon2::default().verify_password(secret.expose_secret().as_bytes(), &phc).is_ok()
        })
        .await?;
        Ok(matches && !is_dummy)
    }

    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        let Ok(phc) = Phc::new(hash.as_str()) else { return false };
        let Ok(stored) = Params::try_from(&phc) else { return false };
        phc.algorithm.as_str() != "argon2id"
            || stored.m_cost() < self.params.m_cost()
            || stored.t_cost() < self.params.t_cost()
            || stored.p_cost() < self.params.p_cost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PasswordPolicy;

    fn fast() -> Argon2Settings {
        Argon2Settings { m_cost: 64, t_cost: 1, p_cost: 1, max_concurrent: 2, queue_timeout: Duration::from_secs(5) }
    }

    fn new_password(raw: &str) -> NewPassword {
        NewPassword::parse(raw.into(), PasswordPolicy { min_length: 12 }, &[]).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let hash = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let right = PlaintextPassword::parse("violet-tundra-kettle-9".into()).unwrap();
        let wrong = PlaintextPassword::parse("violet-tundra-kettle-8".into()).unwrap();
        assert!(hasher.verify(&right, Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&wrong, Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_never_matches() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let any = PlaintextPassword::parse("whatever-it-is".into()).unwrap();
        assert!(!hasher.verify(&any, None).await.unwrap());
    }

    #[tokio::test]
    async fn stored_hashes_far_above_our_cost_are_refused() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let costly = Argon2Hasher::new(Argon2Settings { m_cost: 64 * 16, ..fast() }).unwrap();
        let hash = costly.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        let password = PlaintextPassword::parse("violet-tundra-kettle-9".into()).unwrap();
        assert!(matches!(hasher.verify(&password, Some(&hash)).await, Err(HashingError::Unexpected(_))));
    }

    #[tokio::test]
    async fn weaker_stored_hashes_need_a_rehash() {
        let weak = Argon2Hasher::new(fast()).unwrap();
        let strong = Argon2Hasher::new(Argon2Settings { m_cost: 128, ..fast() }).unwrap();
        let hash = weak.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert!(strong.needs_rehash(&hash));
        assert!(!weak.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn a_waiter_past_the_deadline_is_shed() {
        let hasher =
            Argon2Hasher::new(Argon2Settings { max_concurrent: 1, queue_timeout: Duration::from_millis(10), ..fast() })
                .unwrap();
        let _held = hasher.slot().await.unwrap();
        assert!(matches!(hasher.slot().await, Err(HashingError::Saturated { .. })));
    }
}
