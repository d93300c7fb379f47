//! Health for Kubernetes probes: SERVING while the database answers, NOT_SERVING
//! while it does not, for both `""` (the whole server) and `identity.v1.UserService`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;
use tonic_health::{ServingStatus, server::HealthReporter};

/// Answers whether the database is reachable.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

pub const USER_SERVICE_NAME: &str = "identity.v1.UserService";

/// Re-checks readiness every `interval` until cancelled, reporting changes.
pub async fn watch_readiness(
    reporter: HealthReporter,
    check: ReadinessCheck,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut last: Option<bool> = None;
    loop {
        let is_ready = check().await;
        if last != Some(is_ready) {
            let status = if is_ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            reporter.set_service_status("", status).await;
            reporter.set_service_status(USER_SERVICE_NAME, status).await;
            if is_ready {
                tracing::info!("database reachable: SERVING");
            } else {
                tracing::warn!("database unreachable: NOT_SERVING");
            }
            last = Some(is_ready);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    reporter.set_service_status("", ServingStatus::NotServing).await;
    reporter.set_service_status(USER_SERVICE_NAME, ServingStatus::NotServing).await;
}
