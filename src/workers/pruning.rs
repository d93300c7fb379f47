//! Deletes stale records on a schedule.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::application::PruneStaleRecords;

/// Runs the pruning every `interval`, the first time one interval after start.
/// Every replica prunes: the deletes are idempotent and batch-limited.
pub async fn prune_periodically(task: PruneStaleRecords, interval: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(error) = task.execute().await {
            tracing::warn!(
                error = format!("{:#}", anyhow::Error::new(error)),
                "pruning failed; will retry at the next interval"
            );
        }
    }
}
