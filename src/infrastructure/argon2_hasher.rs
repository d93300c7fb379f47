//! argon2id password hashing on a fixed pool of worker threads.
//!
//! Each hash costs `m_cost` KiB of memory and tens of milliseconds of a core.
//! Allocating that memory per request made the footprint follow the request
//! rate and the allocator: 64 concurrent hashes through `spawn_blocking` peaked
//! above 600 MiB, glibc keeping the freed areas in per-thread arenas. Instead
//! `max_concurrent` dedicated threads each own one argon2 memory area, reused
//! for every hash they compute, so the hashing memory is `max_concurrent ×
//! m_cost` however many logins arrive (the one exception, a stored hash made
//! with more memory than ours, is described at `WorkerMemory::with_blocks`).
//! Requests reach the workers through a short bounded queue; one that cannot
//! get a worker within `queue_timeout` is shed with [`HashingError::Saturated`]
//! (gRPC `RESOURCE_EXHAUSTED` with a retry delay) instead of waiting forever.
//! Nothing else in the server goes through this queue, so token checks never
//! wait behind password hashing.

use std::time::Duration;

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

pub use pool::HashingPoolStats;

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
struct Computation {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: SecretString,
    salt: Vec<u8>,
}

impl Computation {
    fn run(&self, memory: &mut pool::WorkerMemory) -> anyhow::Result<Vec<u8>> {
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
        Self::build(settings, None)
    }

    /// Like [`Argon2Hasher::new`], and calls `observe` with each request's wait
    /// for a worker (for a latency histogram), on the worker thread: keep it cheap.
    ///
    /// # Errors
    /// Invalid parameters, or the threads could not be started.
    pub fn with_wait_observer(
        settings: Argon2Settings,
        observe: impl Fn(Duration) + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        Self::build(settings, Some(Box::new(observe)))
    }

    fn build(settings: Argon2Settings, observe_wait: Option<pool::WaitObserver>) -> anyhow::Result<Self> {
        let params = settings.params()?;
        let mut dummy_output = [0u8; OUTPUT_LEN];
        rand::rng().fill_bytes(&mut dummy_output);
        let dummy_hash = phc_string(&params, &random_salt()?, &dummy_output)?;
        let workers = settings.max_concurrent.max(1);
        let pool = pool::HashingPool::start(workers, params.block_count(), settings.queue_timeout, observe_wait)?;
        Ok(Self { params, pool, dummy_hash })
    }

    /// Requests waiting for a worker right now (for metrics).
    pub fn queue_depth(&self) -> usize {
        self.pool.stats().queue_depth
    }

    /// Queue depth, busy workers and waiting times since start (for metrics).
    pub fn stats(&self) -> HashingPoolStats {
        self.pool.stats()
    }

    /// Whether a stored hash's parameters stay within the ceiling.
    fn is_within_ceiling(&self, stored: &Params) -> bool {
        let work = |p: &Params| u64::from(p.m_cost()) * u64::from(p.t_cost()) * u64::from(p.p_cost());
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
        let output = self.pool.run(move |memory| computation.run(memory)).await?;
        Ok(PasswordHash::from_phc(phc_string(&self.params, &salt, &output)?))
    }

    async fn verify(&self, password: &PlaintextPassword, hash: Option<&PasswordHash>) -> Result<bool, HashingError> {
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
        let output = self.pool.run(move |memory| computation.run(memory)).await?;
        let matches: bool = output.as_slice().ct_eq(expected.as_bytes()).into();
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

/// The worker threads, their memory and the queue in front of them.
mod pool {
    use std::{
        panic::AssertUnwindSafe,
        sync::{
            Arc, Mutex, PoisonError,
            atomic::{AtomicU64, AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    use anyhow::Context;
    use argon2::Block;
    use tokio::sync::{mpsc, oneshot};

    use crate::domain::ports::HashingError;

    /// Room in the queue per worker: enough that a worker finishing a hash
    /// finds the next one waiting, few enough that waiting is mostly done by
    /// callers (cheap futures), where the deadline applies.
    const QUEUE_SLOTS_PER_WORKER: usize = 4;

    /// What a shed caller is told to wait before retrying.
    const RETRY_AFTER: Duration = Duration::from_secs(1);

    type Work = Box<dyn FnOnce(&mut WorkerMemory) -> anyhow::Result<Vec<u8>> + Send>;

    /// Told each request's wait from submission to pickup.
    pub(super) type WaitObserver = Box<dyn Fn(Duration) + Send + Sync>;

    /// A snapshot of the pool, for metrics.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct HashingPoolStats {
        pub workers: usize,
        /// Requests waiting for a worker: in the queue, or waiting for room in it.
        pub queue_depth: usize,
        pub busy_workers: usize,
        /// Requests a worker picked up (computed, or shed because their deadline passed).
        pub picked_up: u64,
        /// Requests answered `Saturated`.
        pub shed: u64,
        /// Sum and maximum of the time from submission to pickup.
        pub total_wait: Duration,
        pub max_wait: Duration,
    }

    #[derive(Default)]
    struct Counters {
        waiting: AtomicUsize,
        busy: AtomicUsize,
        picked_up: AtomicU64,
        shed: AtomicU64,
        total_wait_micros: AtomicU64,
        max_wait_micros: AtomicU64,
        observe_wait: Option<WaitObserver>,
    }

    /// Counts a request as waiting from submission until a worker picks it up
    /// or it is dropped (timed out, caller gone, pool stopped), whichever path
    /// it takes.
    struct Waiting(Arc<Counters>);

    impl Waiting {
        fn new(counters: &Arc<Counters>) -> Self {
            counters.waiting.fetch_add(1, Ordering::Relaxed);
            Self(Arc::clone(counters))
        }
    }

    impl Drop for Waiting {
        fn drop(&mut self) {
            self.0.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    struct Job {
        work: Work,
        reply: oneshot::Sender<Result<Vec<u8>, HashingError>>,
        submitted_at: Instant,
        deadline: Instant,
        /// The caller's span, so that the worker's logs land in the request's trace.
        span: tracing::Span,
        waiting: Waiting,
    }

    /// One worker's argon2 memory: allocated on its first job and kept for its
    /// lifetime, so that a server that never hashes stays small and one that
    /// does holds exactly `workers × m_cost`.
    pub(super) struct WorkerMemory {
        blocks: Vec<Block>,
        capacity: usize,
    }

    impl WorkerMemory {
        /// Runs `f` on at least `count` blocks. A stored hash made with more
        /// memory than ours (the operator lowered `m_cost`; bounded by the cost
        /// ceiling) gets a temporary area, freed right after: rare, and refusing
        /// those users' logins would be worse.
        pub(super) fn with_blocks<R>(&mut self, count: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
            if count > self.capacity {
                tracing::info!(
                    blocks = count,
                    "stored hash needs more memory than the pool's workers own: allocating for this one"
                );
                return f(&mut vec![Block::new(); count]);
            }
            if self.blocks.is_empty() {
                self.blocks = vec![Block::new(); self.capacity];
            }
            f(&mut self.blocks)
        }
    }

    pub(super) struct HashingPool {
        sender: mpsc::Sender<Job>,
        counters: Arc<Counters>,
        workers: usize,
        queue_timeout: Duration,
    }

    impl HashingPool {
        /// # Errors
        /// A thread could not be started.
        pub(super) fn start(
            workers: usize,
            blocks: usize,
            queue_timeout: Duration,
            observe_wait: Option<WaitObserver>,
        ) -> anyhow::Result<Self> {
            let (sender, receiver) = mpsc::channel(workers.saturating_mul(QUEUE_SLOTS_PER_WORKER));
            // Workers take turns at the one receiver; the lock is held only while
            // a worker waits for its next job, never while it hashes.
            let receiver = Arc::new(Mutex::new(receiver));
            let counters = Arc::new(Counters { observe_wait, ..Counters::default() });
            for index in 0..workers {
                let receiver = Arc::clone(&receiver);
                let counters = Arc::clone(&counters);
                std::thread::Builder::new()
                    .name(format!("argon2-{index}"))
                    .spawn(move || work(&receiver, &counters, WorkerMemory { blocks: Vec::new(), capacity: blocks }))
                    .context("starting a password hashing thread")?;
            }
            Ok(Self { sender, counters, workers, queue_timeout })
        }

        /// Runs `work` on a worker thread with that worker's memory.
        ///
        /// # Errors
        /// `Saturated` when no worker took the job within the queue timeout.
        pub(super) async fn run(
            &self,
            work: impl FnOnce(&mut WorkerMemory) -> anyhow::Result<Vec<u8>> + Send + 'static,
        ) -> Result<Vec<u8>, HashingError> {
            let (reply, answer) = oneshot::channel();
            let submitted_at = Instant::now();
            let job = Job {
                work: Box::new(work),
                reply,
                submitted_at,
                deadline: submitted_at + self.queue_timeout,
                span: tracing::Span::current(),
                waiting: Waiting::new(&self.counters),
            };
            match self.sender.send_timeout(job, self.queue_timeout).await {
                Ok(()) => {}
                Err(mpsc::error::SendTimeoutError::Timeout(_)) => return Err(self.shed()),
                Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                    return Err(anyhow::anyhow!("the password hashing pool has stopped").into());
                }
            }
            answer.await.map_err(|_| anyhow::anyhow!("a password hashing worker stopped"))?
        }

        fn shed(&self) -> HashingError {
            shed(&self.counters)
        }

        pub(super) fn stats(&self) -> HashingPoolStats {
            let counters = &self.counters;
            HashingPoolStats {
                workers: self.workers,
                queue_depth: counters.waiting.load(Ordering::Relaxed),
                busy_workers: counters.busy.load(Ordering::Relaxed),
                picked_up: counters.picked_up.load(Ordering::Relaxed),
                shed: counters.shed.load(Ordering::Relaxed),
                total_wait: Duration::from_micros(counters.total_wait_micros.load(Ordering::Relaxed)),
                max_wait: Duration::from_micros(counters.max_wait_micros.load(Ordering::Relaxed)),
            }
        }

        #[cfg(test)]
        fn counters(&self) -> std::sync::Weak<Counters> {
            Arc::downgrade(&self.counters)
        }
    }

    fn shed(counters: &Counters) -> HashingError {
        counters.shed.fetch_add(1, Ordering::Relaxed);
        HashingError::Saturated { retry_after: RETRY_AFTER }
    }

    /// A worker's life: take jobs until every sender is gone (the hasher was
    /// dropped), then return, freeing its memory.
    fn work(receiver: &Mutex<mpsc::Receiver<Job>>, counters: &Counters, mut memory: WorkerMemory) {
        loop {
            let next = receiver.lock().unwrap_or_else(PoisonError::into_inner).blocking_recv();
            let Some(Job { work, reply, submitted_at, deadline, span, waiting }) = next else { return };
            drop(waiting);
            let now = Instant::now();
            let wait = now.duration_since(submitted_at);
            if let Some(observe) = &counters.observe_wait {
                observe(wait);
            }
            let waited = u64::try_from(wait.as_micros()).unwrap_or(u64::MAX);
            counters.picked_up.fetch_add(1, Ordering::Relaxed);
            counters.total_wait_micros.fetch_add(waited, Ordering::Relaxed);
            counters.max_wait_micros.fetch_max(waited, Ordering::Relaxed);
            if reply.is_closed() {
                // The caller gave up (cancelled call, client deadline): spend no core on it.
                continue;
            }
            if now > deadline {
                let _ = reply.send(Err(shed(counters)));
                continue;
            }
            counters.busy.fetch_add(1, Ordering::Relaxed);
            // A panic must cost one answer, not one worker for the rest of the process.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| span.in_scope(|| work(&mut memory))))
                .unwrap_or_else(|_| Err(anyhow::anyhow!("password hashing panicked")))
                .map_err(HashingError::Unexpected);
            counters.busy.fetch_sub(1, Ordering::Relaxed);
            let _ = reply.send(outcome);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn pool(workers: usize, queue_timeout: Duration) -> HashingPool {
            HashingPool::start(workers, 8, queue_timeout, None).unwrap()
        }

        /// A job that holds its worker until the returned sender is used or dropped.
        fn holding_job() -> (std::sync::mpsc::Sender<()>, impl FnOnce(&mut WorkerMemory) -> anyhow::Result<Vec<u8>>) {
            let (release, held) = std::sync::mpsc::channel::<()>();
            (release, move |_: &mut WorkerMemory| {
                let _ = held.recv();
                Ok(Vec::new())
            })
        }

        /// Polls until `condition` holds; the bound only keeps a broken pool from hanging the suite.
        async fn until(condition: impl Fn() -> bool) {
            let give_up = Instant::now() + Duration::from_secs(30);
            while !condition() {
                assert!(Instant::now() < give_up, "the pool never reached the expected state");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }

        #[tokio::test]
        async fn a_request_no_worker_takes_before_its_deadline_is_shed() {
            let pool = Arc::new(pool(1, Duration::from_millis(20)));
            let (release, hold) = holding_job();
            let holder = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(hold).await }
            });
            until(|| pool.stats().busy_workers == 1).await;
            let waiter = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(|_| Ok(vec![1])).await }
            });
            // Queued before the deadline, picked up after it: shed without being computed.
            until(|| pool.stats().queue_depth == 1).await;
            tokio::time::sleep(Duration::from_millis(40)).await;
            drop(release);
            assert!(matches!(waiter.await.unwrap(), Err(HashingError::Saturated { .. })));
            assert!(holder.await.unwrap().is_ok());
            assert_eq!(pool.stats().shed, 1);
        }

        #[tokio::test]
        async fn a_request_finding_the_queue_full_past_its_deadline_is_shed() {
            let pool = Arc::new(pool(1, Duration::from_millis(20)));
            let (release, hold) = holding_job();
            let _holder = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(hold).await }
            });
            until(|| pool.stats().busy_workers == 1).await;
            let queued: Vec<_> = (0..QUEUE_SLOTS_PER_WORKER)
                .map(|_| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move { pool.run(|_| Ok(Vec::new())).await })
                })
                .collect();
            until(|| pool.stats().queue_depth == QUEUE_SLOTS_PER_WORKER).await;
            // The queue is full and the worker busy: this one never gets in.
            assert!(matches!(pool.run(|_| Ok(Vec::new())).await, Err(HashingError::Saturated { .. })));
            drop(release);
            for job in queued {
                let _ = job.await.unwrap();
            }
            assert_eq!(pool.stats().queue_depth, 0);
        }

        #[tokio::test]
        async fn queue_depth_counts_the_waiting_and_drops_back_to_zero() {
            let pool = Arc::new(pool(1, Duration::from_secs(60)));
            let (release, hold) = holding_job();
            let holder = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(hold).await }
            });
            until(|| pool.stats().busy_workers == 1).await;
            let waiting: Vec<_> = (0..3u8)
                .map(|i| {
                    let pool = Arc::clone(&pool);
                    tokio::spawn(async move { pool.run(move |_| Ok(vec![i])).await })
                })
                .collect();
            until(|| pool.stats().queue_depth == 3).await;
            drop(release);
            holder.await.unwrap().unwrap();
            for (i, job) in (0..3u8).zip(waiting) {
                assert_eq!(job.await.unwrap().unwrap(), vec![i]);
            }
            let stats = pool.stats();
            assert_eq!((stats.queue_depth, stats.busy_workers, stats.picked_up, stats.shed), (0, 0, 4, 0));
        }

        #[tokio::test]
        async fn a_job_whose_caller_gave_up_is_not_run() {
            let pool = Arc::new(pool(1, Duration::from_secs(60)));
            let (release, hold) = holding_job();
            let holder = tokio::spawn({
                let pool = Arc::clone(&pool);
                async move { pool.run(hold).await }
            });
            until(|| pool.stats().busy_workers == 1).await;
            let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let abandoned = tokio::spawn({
                let (pool, ran) = (Arc::clone(&pool), Arc::clone(&ran));
                async move { pool.run(move |_| Ok(vec![u8::from(ran.swap(true, Ordering::SeqCst))])).await }
            });
            until(|| pool.stats().queue_depth == 1).await;
            abandoned.abort();
            let _ = abandoned.await;
            drop(release);
            holder.await.unwrap().unwrap();
            // A job queued after the abandoned one runs, so the worker got past it.
            pool.run(|_| Ok(Vec::new())).await.unwrap();
            assert!(!ran.load(Ordering::SeqCst));
        }

        #[tokio::test]
        async fn a_panicking_job_fails_alone_and_the_worker_lives_on() {
            let pool = pool(1, Duration::from_secs(60));
            assert!(matches!(pool.run(|_| panic!("boom")).await, Err(HashingError::Unexpected(_))));
            assert_eq!(pool.run(|_| Ok(vec![7])).await.unwrap(), vec![7]);
        }

        #[tokio::test]
        async fn the_workers_stop_when_the_pool_is_dropped() {
            let pool = pool(2, Duration::from_secs(60));
            pool.run(|_| Ok(Vec::new())).await.unwrap();
            let counters = pool.counters();
            drop(pool);
            // Each worker holds the counters until it returns.
            until(|| counters.strong_count() == 0).await;
        }

        #[test]
        fn worker_memory_is_allocated_once_and_reused() {
            let mut memory = WorkerMemory { blocks: Vec::new(), capacity: 8 };
            let first = memory.with_blocks(8, |blocks| blocks.as_ptr());
            let second = memory.with_blocks(4, |blocks| blocks.as_ptr());
            assert_eq!(first, second);
            let larger = memory.with_blocks(16, |blocks| blocks.len());
            assert_eq!((larger, memory.blocks.len()), (16, 8));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use argon2::{PasswordHasher as _, PasswordVerifier as _};

    use super::*;

    fn fast() -> Argon2Settings {
        Argon2Settings { m_cost: 64, t_cost: 1, p_cost: 1, max_concurrent: 2, queue_timeout: Duration::from_secs(5) }
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
    async fn weaker_stored_hashes_need_a_rehash() {
        let weak = Argon2Hasher::new(fast()).unwrap();
        let strong = Argon2Hasher::new(Argon2Settings { m_cost: 128, ..fast() }).unwrap();
        let hash = weak.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        assert!(strong.needs_rehash(&hash));
        assert!(!weak.needs_rehash(&hash));
    }

    #[tokio::test]
    async fn the_wait_observer_hears_of_every_request() {
        let waits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = Arc::clone(&waits);
        let hasher = Argon2Hasher::with_wait_observer(fast(), move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        let hash = hasher.hash(&new_password("violet-tundra-kettle-9")).await.unwrap();
        hasher.verify(&plaintext("violet-tundra-kettle-9"), Some(&hash)).await.unwrap();
        hasher.verify(&plaintext("violet-tundra-kettle-9"), None).await.unwrap();
        assert_eq!(waits.load(std::sync::atomic::Ordering::Relaxed), 3);
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
