//! Samples the argon2 pool's queue into a gauge.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::{infrastructure::Argon2Hasher, observability::Metrics};

/// Keeps the queue-depth gauge current (the pool itself knows nothing of
/// Prometheus), every second until stopped or the pool is dropped.
pub async fn sample_hashing_queue(hasher: Weak<Argon2Hasher>, metrics: Arc<Metrics>, stop: CancellationToken) {
    loop {
        let Some(hasher) = hasher.upgrade() else { break };
        metrics.argon2_queue_depth.set(i64::try_from(hasher.queue_depth()).unwrap_or(i64::MAX));
        drop(hasher);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}
