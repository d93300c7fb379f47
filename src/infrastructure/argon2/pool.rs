//! The worker threads, their memory and the queue in front of them.

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

/// Computations of at most this much work (KiB-passes, `m × t × p`) run on the
/// caller's thread: at argon2's ~1 GiB/s per pass that is a few tens of
/// microseconds, less than the two thread hand-offs through the pool cost.
/// Only hashes at about the minimum cost qualify; nothing a deployment would
/// configure does.
pub(super) const INLINE_WORK_LIMIT: u64 = 32;

type Work = Box<dyn FnOnce(&mut WorkerMemory) -> anyhow::Result<Vec<u8>> + Send>;

/// Hears what the pool does, for metrics. Called on the thread where it
/// happens (a worker, or the caller's task): keep each call cheap.
pub trait HashingObserver: Send + Sync {
    /// A worker picked up a request that waited this long since submission.
    fn waited(&self, _wait: Duration) {}
    /// Requests now waiting for a worker (in the queue, or for room in it).
    fn queue_depth(&self, _depth: usize) {}
    /// A request was answered `Saturated`.
    fn shed(&self) {}
}

/// Observes nothing.
pub(super) struct Unobserved;

impl HashingObserver for Unobserved {}

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
}

struct Counters {
    waiting: AtomicUsize,
    busy: AtomicUsize,
    picked_up: AtomicU64,
    shed: AtomicU64,
    observer: Arc<dyn HashingObserver>,
}

/// Counts a request as waiting from submission until a worker picks it up
/// or it is dropped (timed out, caller gone, pool stopped), whichever path
/// it takes.
struct Waiting(Arc<Counters>);

impl Waiting {
    fn new(counters: &Arc<Counters>) -> Self {
        let depth = counters.waiting.fetch_add(1, Ordering::Relaxed) + 1;
        counters.observer.queue_depth(depth);
        Self(Arc::clone(counters))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let depth = self.0.waiting.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        self.0.observer.queue_depth(depth);
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
    /// Memory for a computation run outside the pool, in tests.
    #[cfg(test)]
    pub(super) fn for_tests() -> Self {
        Self { blocks: Vec::new(), capacity: 0 }
    }

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

/// How many workers, with how much memory each, how long a job may wait, and
/// how nice the workers are to the rest of the process.
pub(super) struct PoolShape {
    pub workers: usize,
    pub blocks: usize,
    pub queue_timeout: Duration,
    pub nice: i32,
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
    pub(super) fn start(shape: PoolShape, observer: Arc<dyn HashingObserver>) -> anyhow::Result<Self> {
        let PoolShape { workers, blocks, queue_timeout, nice } = shape;
        let (sender, receiver) = mpsc::channel(workers.saturating_mul(QUEUE_SLOTS_PER_WORKER));
        // Workers take turns at the one receiver; the lock is held only while
        // a worker waits for its next job, never while it hashes.
        let receiver = Arc::new(Mutex::new(receiver));
        let counters = Arc::new(Counters {
            waiting: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            picked_up: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            observer,
        });
        for index in 0..workers {
            let receiver = Arc::clone(&receiver);
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    work(&receiver, &counters, WorkerMemory { blocks: Vec::new(), capacity: blocks })
                })
                .context("starting a password hashing thread")?;
        }
        Ok(Self { sender, counters, workers, queue_timeout })
    }

    /// Runs `work`, which costs `work_units` KiB-passes: on the caller's thread
    /// when that is below [`INLINE_WORK_LIMIT`], else on a worker ([`Self::run`]).
    ///
    /// # Errors
    /// As [`Self::run`]; inline work is never shed.
    pub(super) async fn run_sized(
        &self,
        work_units: u64,
        work: impl FnOnce(&mut WorkerMemory) -> anyhow::Result<Vec<u8>> + Send + 'static,
    ) -> Result<Vec<u8>, HashingError> {
        if work_units > INLINE_WORK_LIMIT {
            return self.run(work).await;
        }
        // A few KiB, allocated for this one computation.
        let mut memory = WorkerMemory { blocks: Vec::new(), capacity: usize::try_from(work_units).unwrap_or(0) };
        std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut memory)))
            .unwrap_or_else(|_| Err(anyhow::anyhow!("password hashing panicked")))
            .map_err(HashingError::Unexpected)
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
        }
    }

    #[cfg(test)]
    fn counters(&self) -> std::sync::Weak<Counters> {
        Arc::downgrade(&self.counters)
    }
}

fn shed(counters: &Counters) -> HashingError {
    counters.shed.fetch_add(1, Ordering::Relaxed);
    counters.observer.shed();
    HashingError::Saturated { retry_after: RETRY_AFTER }
}

/// Makes the calling thread yield the cores to the rest of the process: a
/// higher nice value and the `SCHED_BATCH` policy (CPU-bound, never preempt
/// an interactive thread on wake-up). Unprivileged processes may always lower
/// their own priority; a refusal is logged and the worker runs as it is.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread (a tid of 0 is
        // "this thread" for both), with a parameter that outlives the call.
        let (policy, priority) = unsafe {
            let parameter = libc::sched_param { sched_priority: 0 };
            let policy = libc::sched_setscheduler(0, libc::SCHED_BATCH, &raw const parameter);
            let priority = libc::setpriority(libc::PRIO_PROCESS, 0, nice.min(19));
            (policy, priority)
        };
        if policy != 0 || priority != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower the priority of a password hashing thread"
            );
        }
    }
}

/// A worker's life: take jobs until every sender is gone (the hasher was
/// dropped), then return, freeing its memory.
fn work(receiver: &Mutex<mpsc::Receiver<Job>>, counters: &Counters, mut memory: WorkerMemory) {
    loop {
        let next = receiver.lock().unwrap_or_else(PoisonError::into_inner).blocking_recv();
        let Some(Job { work, reply, submitted_at, deadline, span, waiting }) = next else { return };
        drop(waiting);
        let now = Instant::now();
        counters.observer.waited(now.duration_since(submitted_at));
        counters.picked_up.fetch_add(1, Ordering::Relaxed);
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
        HashingPool::start(PoolShape { workers, blocks: 8, queue_timeout, nice: 0 }, Arc::new(Unobserved)).unwrap()
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

    #[derive(Default)]
    struct Recorder {
        sheds: AtomicU64,
        deepest: AtomicUsize,
        last_depth: AtomicUsize,
    }

    impl HashingObserver for Recorder {
        fn queue_depth(&self, depth: usize) {
            self.deepest.fetch_max(depth, Ordering::SeqCst);
            self.last_depth.store(depth, Ordering::SeqCst);
        }
        fn shed(&self) {
            self.sheds.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_observer_hears_of_sheds_and_of_the_queue_depth() {
        let recorder = Arc::new(Recorder::default());
        let shape = PoolShape { workers: 1, blocks: 8, queue_timeout: Duration::from_millis(20), nice: 0 };
        let pool = Arc::new(HashingPool::start(shape, recorder.clone()).unwrap());
        let (release, hold) = holding_job();
        let holder = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(hold).await }
        });
        until(|| pool.stats().busy_workers == 1).await;
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.run(|_| Ok(Vec::new())).await }
        });
        until(|| pool.stats().queue_depth == 1).await;
        tokio::time::sleep(Duration::from_millis(40)).await;
        drop(release);
        assert!(matches!(waiter.await.unwrap(), Err(HashingError::Saturated { .. })));
        holder.await.unwrap().unwrap();
        assert_eq!(recorder.sheds.load(Ordering::SeqCst), 1);
        assert_eq!(recorder.deepest.load(Ordering::SeqCst), 1);
        assert_eq!(recorder.last_depth.load(Ordering::SeqCst), 0);
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

    /// The scheduling policy and nice value of the worker that runs the job.
    #[cfg(target_os = "linux")]
    async fn worker_scheduling(nice: i32) -> (i32, i32) {
        let shape = PoolShape { workers: 1, blocks: 8, queue_timeout: Duration::from_secs(60), nice };
        let pool = HashingPool::start(shape, Arc::new(Unobserved)).unwrap();
        let seen = pool
            .run(|_| {
                // SAFETY: queries about the calling thread only.
                let (policy, nice) = unsafe { (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS, 0)) };
                Ok([policy.to_ne_bytes(), nice.to_ne_bytes()].concat())
            })
            .await
            .unwrap();
        let word = |at: usize| i32::from_ne_bytes(seen[at..at + 4].try_into().unwrap());
        (word(0), word(4))
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn niced_workers_run_as_sched_batch_at_their_nice_value() {
        assert_eq!(worker_scheduling(7).await, (libc::SCHED_BATCH, 7));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn workers_at_nice_zero_are_scheduled_as_the_rest_of_the_process() {
        // SAFETY: queries about the calling thread only.
        let own = unsafe { (libc::sched_getscheduler(0), libc::getpriority(libc::PRIO_PROCESS, 0)) };
        assert_eq!(worker_scheduling(0).await, own);
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
