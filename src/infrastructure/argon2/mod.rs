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

mod django;
mod hasher;
mod pool;

use std::time::Duration;

pub use django::is_supported as is_supported_django_hash;
pub use hasher::{Argon2Hasher, Argon2Settings};
pub use pool::{HashingObserver, HashingPoolStats};

/// The server's observer: the queue-depth gauge follows every change (no
/// sampling task), waits feed the histogram, sheds the counter.
impl HashingObserver for crate::observability::Metrics {
    fn waited(&self, wait: Duration) {
        self.argon2_wait.observe(wait.as_secs_f64());
    }

    fn queue_depth(&self, depth: usize) {
        self.argon2_queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    fn shed(&self) {
        self.argon2_shed.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observability::Metrics;

    #[test]
    fn the_metrics_observer_exports_sheds_the_queue_depth_and_waits() {
        let metrics = Metrics::new();
        metrics.shed();
        metrics.shed();
        metrics.queue_depth(3);
        metrics.waited(Duration::from_millis(2));
        let rendered = metrics.render();
        assert!(rendered.contains("identity_argon2_shed_total 2"), "{rendered}");
        assert!(rendered.contains("identity_argon2_queue_depth 3"), "{rendered}");
        assert!(rendered.contains("identity_argon2_wait_seconds_count 1"), "{rendered}");
    }
}
