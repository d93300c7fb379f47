//! The argon2id [`PasswordHasher`]: PHC strings, the dummy hash, the cost
//! ceiling; the computations run on [`super::pool`].

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash as Phc, Version,
    password_hash::phc::{Output, ParamsString, Salt},
};
use async_trait::async_trait;
use rand::{RngCore, TryRngCore};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::domain::{
    NewPassword, PasswordHash, PlaintextPassword,
    ports::{HashingError, PasswordHasher},
};

use super::{
    django::{self, Stored},
    pool::{self, HashingObserver, HashingPoolStats, Unobserved},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    /// Memory cost in KiB.
    pub m_cost: u32,
    pub t_cost: u32,
    pub p_cost: u32,
    /// Worker threads, hence hashes computed at once; the cores the process may use.
    pub max_concurrent: usize,
    /// How long a request may wait for a worker before it is shed.
    pub queue_timeout: Duration,
    /// The workers' nice value (0 to 19; they also run as `SCHED_BATCH` when
    /// above 0): under a login storm the runtime's threads, which answer the
    /// cheap calls, win the cores.
    pub nice: i32,
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
            nice: 10,
        }
    }

    /// # Errors
    /// Parameters argon2 refuses (too little memory for the lanes, say).
    pub fn params(&self) -> anyhow::Result<Params> {
        Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))
    }
}

/// Stored hashes costing more than this multiple of ours are refused instead of
/// computed: a tampered row must not be able to make one login take a minute.
/// The total work (`m × t × p`) and the memory (`m`, allocated per worker) are
/// each bounded, so neither a long nor a wide hash gets past.
const COST_CEILING_FACTOR: u64 = 2;

/// Salt length recommended by the PHC string format and argon2's authors.
const SALT_LEN: usize = 16;

/// Hash output length of the PHC strings we write.
const OUTPUT_LEN: usize = 32;

/// Everything one argon2 computation needs, moved to a worker thread.
pub(super) struct Computation {
    pub(super) algorithm: Algorithm,
    pub(super) version: Version,
    pub(super) params: Params,
    pub(super) password: SecretString,
    pub(super) salt: Vec<u8>,
}

impl Computation {
    pub(super) fn run(&self, memory: &mut pool::WorkerMemory) -> anyhow::Result<Vec<u8>> {
        let mut output = vec![0u8; self.params.output_len().unwrap_or(OUTPUT_LEN)];
        let argon2 = Argon2::new(self.algorithm, self.version, self.params.clone());
        memory
            .with_blocks(self.params.block_count(), |blocks| {
                argon2.hash_password_into_with_memory(
                    self.password.expose_secret().as_bytes(),
                    &self.salt,
                    &mut output,
                    blocks,
                )
            })
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
        Ok(output)
    }
}

pub struct Argon2Hasher {
    params: Params,
    pool: pool::HashingPool,
    /// Our parameters with a random salt and a random output: verifying against
    /// it computes a full hash with our parameters, exactly like a real check,
    /// so an unknown email costs the same as a wrong password. No password can
    /// match it (and a match is ignored anyway).
    dummy_hash: String,
}

impl Argon2Hasher {
    /// Starts the worker threads; they stop when the hasher is dropped.
    ///
    /// # Errors
    /// Invalid parameters, or the threads could not be started.
    pub fn new(settings: Argon2Settings) -> anyhow::Result<Self> {
        Self::with_observer(settings, Arc::new(Unobserved))
    }

    /// Like [`Argon2Hasher::new`], and tells `observer` of each request's wait
    /// for a worker, of the queue depth as it changes and of every shed request.
    ///
    /// # Errors
    /// Invalid parameters, or the threads could not be started.
    pub fn with_observer(settings: Argon2Settings, observer: Arc<dyn HashingObserver>) -> anyhow::Result<Self> {
        let params = settings.params()?;
        let mut dummy_output = [0u8; OUTPUT_LEN];
        rand::rng().fill_bytes(&mut dummy_output);
        let dummy_hash = phc_string(&params, &random_salt()?, &dummy_output)?;
        let workers = settings.max_concurrent.max(1);
        let pool = pool::HashingPool::start(
            pool::PoolShape {
                workers,
                blocks: params.block_count(),
                queue_timeout: settings.queue_timeout,
                nice: settings.nice,
            },
            observer,
        )?;
        Ok(Self { params, pool, dummy_hash })
    }

    /// Queue depth, busy workers, requests picked up and shed since start.
    pub fn stats(&self) -> HashingPoolStats {
        self.pool.stats()
    }

    /// Whether a stored hash's parameters stay within the ceiling.
    fn is_within_ceiling(&self, stored: &Params) -> bool {
        let within = work(stored) <= work(&self.params).saturating_mul(COST_CEILING_FACTOR)
            && u64::from(stored.m_cost()) <= u64::from(self.params.m_cost()).saturating_mul(COST_CEILING_FACTOR);
        if !within {
            // The parameters only: the hash itself stays out of the log.
            tracing::warn!(
                m_cost = stored.m_cost(),
                t_cost = stored.t_cost(),
                p_cost = stored.p_cost(),
                "stored password hash costs more than the ceiling allows: refused as a failed verification"
            );
        }
        within
    }

    /// The computation that checks `password` against a stored PHC string, and
    /// the output it must produce; `None` for a hash over the cost ceiling.
    fn verification(
        &self,
        password: &PlaintextPassword,
        stored: &str,
    ) -> Result<Option<(Computation, Output)>, HashingError> {
        let phc = Phc::new(stored).map_err(|e| anyhow::anyhow!("stored password hash is not a PHC string: {e}"))?;
        let algorithm = Algorithm::try_from(phc.algorithm.as_str())
            .map_err(|e| anyhow::anyhow!("stored password hash is not argon2: {e}"))?;
        // Taken from the stored hash itself, so hashes made under older
        // parameters still verify (and get upgraded on login).
        let version = phc
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(|e| anyhow::anyhow!("stored password hash has an unknown argon2 version: {e}"))?
            .unwrap_or_default();
        let params = Params::try_from(&phc).map_err(|e| anyhow::anyhow!("stored hash has invalid parameters: {e}"))?;
        if !self.is_within_ceiling(&params) {
            return Ok(None);
        }
        let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
            return Err(anyhow::anyhow!("stored password hash has no salt or no output").into());
        };
        let password = SecretString::from(password.expose().to_owned());
        Ok(Some((Computation { algorithm, version, params, password, salt: salt.to_vec() }, expected)))
    }
}

impl Argon2Hasher {
    /// A Django hash imported with its user, checked on the same pool. A check
    /// cheaper than ours (MD5, low iteration counts) is followed by the
    /// dummy's work, and one over its format's cap is answered after the
    /// dummy's work alone, so that neither tells itself apart by its timing
    /// from an unknown email.
    async fn verify_django(
        &self,
        password: &PlaintextPassword,
        algorithm: &str,
        rest: &str,
    ) -> Result<bool, HashingError> {
        let Some(check) = django::check(algorithm, rest, password.expose())? else {
            return self.verify(password, None).await;
        };
        let is_cheap = check.is_cheaper_than_ours(work(&self.params));
        let outcome = self.pool.run(move |memory| check.run(memory)).await?;
        if is_cheap {
            self.verify(password, None).await?;
        }
        Ok(outcome == [1])
    }
}

/// An argon2 computation's work in KiB-passes (`m × t × p`).
pub(super) fn work(params: &Params) -> u64 {
    u64::from(params.m_cost()) * u64::from(params.t_cost()) * u64::from(params.p_cost())
}

fn random_salt() -> anyhow::Result<[u8; SALT_LEN]> {
    let mut salt = [0u8; SALT_LEN];
    rand::rngs::OsRng.try_fill_bytes(&mut salt).context("the system random source failed")?;
    Ok(salt)
}

/// `$argon2id$v=19$m=..,t=..,p=..$<salt>$<hash>`, base64 without padding.
fn phc_string(params: &Params, salt: &[u8], output: &[u8]) -> anyhow::Result<String> {
    let phc = Phc {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(|e| anyhow::anyhow!("encoding argon2 parameters: {e}"))?,
        salt: Some(Salt::new(salt).map_err(|e| anyhow::anyhow!("encoding the salt: {e}"))?),
        hash: Some(Output::new(output).map_err(|e| anyhow::anyhow!("encoding the hash: {e}"))?),
    };
    Ok(phc.to_string())
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &NewPassword) -> Result<PasswordHash, HashingError> {
        let salt = random_salt()?;
        let computation = Computation {
            algorithm: Algorithm::Argon2id,
            version: Version::V0x13,
            params: self.params.clone(),
            password: SecretString::from(password.as_plaintext().expose().to_owned()),
            salt: salt.to_vec(),
        };
        let work = work(&computation.params);
        let output = self.pool.run_sized(work, move |memory| computation.run(memory)).await?;
        Ok(PasswordHash::from_phc(phc_string(&self.params, &salt, &output)?))
    }

    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError> {
        match hash.map(|hash| django::classify(hash.as_str())) {
            Some(Stored::Django(algorithm, rest)) => return self.verify_django(password, algorithm, rest).await,
            // Nothing matches it; answered after the dummy's work, like a miss.
            Some(Stored::Unusable) => return self.verify(password, None).await,
            Some(Stored::Phc) | None => {}
        }
        // The dummy takes the very same path as a stored hash: parse, ceiling,
        // queue, compute, compare.
        let stored = hash.map_or(self.dummy_hash.as_str(), PasswordHash::as_str);
        let (computation, expected, is_dummy) = match self.verification(password, stored)? {
            Some((computation, expected)) => (computation, expected, hash.is_none()),
            // Over the ceiling: a failed verification, answered after the
            // dummy's work so that it takes as long as any other.
            None => match self.verification(password, &self.dummy_hash)? {
                Some((computation, expected)) => (computation, expected, true),
                None => return Ok(false),
            },
        };
        let work = work(&computation.params);
        let output = self.pool.run_sized(work, move |memory| computation.run(memory)).await?;
        let matches: bool = output.as_slice().ct_eq(expected.as_bytes()).into();
        Ok(matches && !is_dummy)
    }

    fn can_verify(&self, hash: &PasswordHash) -> bool {
        match django::classify(hash.as_str()) {
            Stored::Django(..) => django::is_supported(hash.as_str()),
            Stored::Unusable => false,
            Stored::Phc => Phc::new(hash.as_str()).is_ok_and(|phc| Algorithm::try_from(phc.algorithm.as_str()).is_ok()),
        }
    }

    fn needs_rehash(&self, hash: &PasswordHash) -> bool {
        if matches!(django::classify(hash.as_str()), Stored::Django(..)) {
            // A Django hash that just verified: replaced by ours.
            return true;
        }
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
    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn fast() -> Argon2Settings {
        Argon2Settings {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
            max_concurrent: 2,
            queue_timeout: Duration::from_secs(5),
            nice: 0,
        }
    }

    fn new_password(raw: &str) -> NewPassword {
        NewPassword::trusted(PlaintextPassword::parse(raw.into()).unwrap())
    }

    fn plaintext(raw: &str) -> PlaintextPassword {
        PlaintextPassword::parse(raw.into()).unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_and_no_other() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let hash = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert!(hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&hash)).await.unwrap());
        assert!(!hasher.verify(&plaintext("violet-tundra-kettle-8"), Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_differ_by_their_salt() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let first = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        let second = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert_ne!(first.as_str(), second.as_str());
    }

    #[tokio::test]
    async fn our_hashes_and_the_argon2_crates_hashes_verify_each_other() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let ours = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert!(Argon2::default().verify_password(b"violet-tundra-kettle-9", ours.as_str()).is_ok());

        let params = fast().params().unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"violet-tundra-kettle-9")
            .unwrap()
            .to_string();
        let theirs = PasswordHash::from_phc(theirs);
        assert!(hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&theirs)).await.unwrap());
        assert!(!hasher.verify(&plaintext("violet-tundra-kettle-8"), Some(&theirs)).await.unwrap());
    }

    #[tokio::test]
    async fn the_dummy_hash_never_matches() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        assert!(!hasher.verify(&plaintext("whatever-it-is"), None).await.unwrap());
    }

    #[test]
    fn the_dummy_hash_has_our_parameters_so_it_costs_a_real_verification() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let dummy = Phc::new(&hasher.dummy_hash).unwrap();
        let params = Params::try_from(&dummy).unwrap();
        assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (64, 1, 1));
        assert_eq!(dummy.algorithm, ARGON2ID_IDENT);
    }

    /// A hash of the right password under other parameters: what a tampered row holds.
    async fn stored_with(m_cost: u32, t_cost: u32, p_cost: u32) -> PasswordHash {
        let settings = Argon2Settings { m_cost, t_cost, p_cost, ..fast() };
        Argon2Hasher::new(settings).unwrap().hash(&new_password("violet-tundra-kettle-9")).await.unwrap()
    }

    #[tokio::test]
    async fn stored_hashes_costing_more_than_twice_ours_fail_to_verify_even_with_the_right_password() {
        let hasher = Argon2Hasher::new(Argon2Settings { m_cost: 64, t_cost: 2, p_cost: 1, ..fast() }).unwrap();
        // Each parameter alone within 8x (the old ceiling), the total far above 2x;
        // then the total within 2x but twice the memory of 2x.
        for (m, t, p) in [(64 * 4, 2, 1), (64, 8, 1), (64 * 2, 2, 2), (64 * 8, 1, 1), (64 * 4, 1, 1)] {
            let hash = stored_with(m, t, p).await;
            assert!(
                !hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&hash)).await.unwrap(),
                "m={m} t={t} p={p}"
            );
        }
    }

    #[tokio::test]
    async fn stored_hashes_up_to_twice_our_cost_still_verify() {
        let hasher = Argon2Hasher::new(Argon2Settings { m_cost: 64, t_cost: 2, p_cost: 1, ..fast() }).unwrap();
        for (m, t, p) in [(64 * 2, 2, 1), (64, 4, 1), (64, 2, 2), (64 * 2, 1, 2), (32, 8, 1)] {
            let hash = stored_with(m, t, p).await;
            assert!(
                hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&hash)).await.unwrap(),
                "m={m} t={t} p={p}"
            );
            assert!(
                !hasher.verify(&plaintext("violet-tundra-kettle-8"), Some(&hash)).await.unwrap(),
                "m={m} t={t} p={p}"
            );
        }
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_an_error_not_a_wrong_password() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        for corrupt in ["not a hash", "$argon2id$v=19$m=64,t=1,p=1", "$scrypt$ln=15,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2g"] {
            let stored = PasswordHash::from_phc(corrupt.to_owned());
            assert!(
                matches!(
                    hasher.verify(&plaintext("whatever-it-is"), Some(&stored)).await,
                    Err(HashingError::Unexpected(_))
                ),
                "{corrupt}"
            );
        }
    }

    #[tokio::test]
    async fn a_django_check_cheaper_than_ours_is_padded_with_the_dummys_work_and_one_over_its_cap_costs_only_that() {
        let hasher = Argon2Hasher::new(fast()).unwrap();
        let md5 = PasswordHash::from_phc("md5$seasalt$3f86d0d3d465b7b458c231bf3555c0e3".into());
        assert!(hasher.verify(&plaintext("lètmein"), Some(&md5)).await.unwrap());
        assert_eq!(hasher.stats().picked_up, 2, "the MD5 check, then the dummy");
        let over_cap =
            PasswordHash::from_phc("bcrypt$$2b$14$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW".into());
        assert!(!hasher.verify(&plaintext("U*U"), Some(&over_cap)).await.unwrap());
        assert_eq!(hasher.stats().picked_up, 3, "the dummy alone");
        let unusable = PasswordHash::from_phc("!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH".into());
        assert!(
            !hasher.verify(&plaintext("!Ykb3nJ0bLK1zvhY2Zx0cJ8FVnz1XhH7gq5xPqXyH"), Some(&unusable)).await.unwrap()
        );
        assert_eq!(hasher.stats().picked_up, 4, "the dummy alone");
        assert!(hasher.needs_rehash(&md5));
        assert!(!hasher.needs_rehash(&unusable));
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
    async fn the_observer_hears_of_every_requests_wait() {
        struct CountWaits(std::sync::atomic::AtomicUsize);
        impl HashingObserver for CountWaits {
            fn waited(&self, _: Duration) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let waits = Arc::new(CountWaits(std::sync::atomic::AtomicUsize::new(0)));
        let hasher = Argon2Hasher::with_observer(fast(), waits.clone()).unwrap();
        let hash = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&hash)).await.unwrap();
        hasher.verify(&plaintext("violet-tundra-kettle-9"), None).await.unwrap();
        assert_eq!(waits.0.load(std::sync::atomic::Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn many_concurrent_hashes_all_complete_on_a_small_pool() {
        let hasher = Arc::new(Argon2Hasher::new(fast()).unwrap());
        let password = new_password("violet-tundra-kettle-9");
        let hashes: Vec<_> = (0..32)
            .map(|_| {
                let (hasher, password) = (Arc::clone(&hasher), password.clone());
                tokio::spawn(async move { hasher.hash(&password).await })
            })
            .collect();
        for hash in hashes {
            hash.await.unwrap().unwrap();
        }
        let stats = hasher.stats();
        assert_eq!((stats.workers, stats.queue_depth, stats.picked_up), (2, 0, 32));
    }
}
