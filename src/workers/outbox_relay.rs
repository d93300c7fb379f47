//! The transactional outbox's moving part: publishes committed events and marks
//! them published only once the publisher accepted them.

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    domain::{
        ports::{Clock, OutboxEvent, OutboxPublisher, OutboxStore, PublishError},
        resend_policy::RESEND_WINDOW,
    },
    observability::{
        Metrics,
        metrics::PublisherLabels,
        trace_context::{self, Carrier},
    },
};

#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// Safety net for events the in-process wake-up missed (written by another
    /// replica, or while the publisher was down).
    pub poll_interval: Duration,
    pub batch_size: u64,
    /// Published rows are kept this long for inspection, then pruned.
    pub retention: Duration,
    /// Upper bound of the retry backoff after failures.
    pub max_backoff: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            batch_size: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_backoff: Duration::from_secs(30),
        }
    }
}

pub struct OutboxRelay {
    pub metrics: Arc<Metrics>,
    pub store: Arc<dyn OutboxStore>,
    pub publisher: Arc<dyn OutboxPublisher>,
    /// Signalled by the repositories after each commit that wrote an event.
    pub wake: Arc<Notify>,
    pub clock: Arc<dyn Clock>,
    pub settings: RelaySettings,
}

const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How often the backlog gauges are refreshed (a count over unpublished rows).
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// What one publishing round leaves the relay to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Round {
    /// Zero when the round succeeded; otherwise how long to wait before retrying.
    backoff: Duration,
    /// A full batch was published: more may be waiting, go again at once.
    is_more_waiting: bool,
}

impl OutboxRelay {
    /// Runs until `stop` is cancelled. Failures back off exponentially (from 100 ms
    /// to `max_backoff`) and are logged at warn once per attempt, never in a tight loop.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(publisher = self.publisher.name(), "outbox relay started");
        let mut backoff = Duration::ZERO;
        let mut last_prune: Option<tokio::time::Instant> = None;
        let mut last_backlog: Option<tokio::time::Instant> = None;
        loop {
            let round = self.round(backoff).await;
            backoff = round.backoff;
            if round.is_more_waiting {
                continue;
            }
            if last_backlog.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                self.measure_backlog().await;
                last_backlog = Some(tokio::time::Instant::now());
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                self.prune().await;
                last_prune = Some(tokio::time::Instant::now());
            }
            let wait = if backoff.is_zero() { self.settings.poll_interval } else { backoff };
            tokio::select! {
                () = stop.cancelled() => break,
                // While backing off, commits must not cut the backoff short.
                () = self.wake.notified(), if backoff.is_zero() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("outbox relay stopped");
    }

    /// Publishes one batch; `backoff` is the wait that preceded it (zero after
    /// a success). A failure doubles it, within 100 ms and `max_backoff`.
    async fn round(&self, backoff: Duration) -> Round {
        match self.publish_pending().await {
            Ok(count) => {
                if !backoff.is_zero() {
                    tracing::info!(publisher = self.publisher.name(), "outbox relay recovered");
                }
                Round { backoff: Duration::ZERO, is_more_waiting: count as u64 >= self.settings.batch_size }
            }
            Err(error) => {
                let labels = PublisherLabels { publisher: self.publisher.name().to_owned() };
                self.metrics.outbox_publish_errors.get_or_create(&labels).inc();
                let backoff = (backoff * 2).clamp(Duration::from_millis(100), self.settings.max_backoff);
                tracing::warn!(
                    publisher = self.publisher.name(),
                    error = format!("{error:#}"),
                    retry_in_ms = crate::domain::durations::millis(backoff),
                    "outbox relay could not publish; will retry"
                );
                Round { backoff, is_more_waiting: false }
            }
        }
    }

    /// Publishes one batch in order; stops at the first transient failure so
    /// that events keep their order. Returns how many events were settled.
    async fn publish_pending(&self) -> anyhow::Result<usize> {
        let claim = self.store.claim_batch(self.settings.batch_size).await?;
        let mut settled = 0;
        let mut failure = None;
        for event in claim.events() {
            match self.publish(event).await {
                Ok(()) => {
                    claim.mark_published(event, self.clock.now(), None).await?;
                    settled += 1;
                }
                Err(PublishError::Permanent(error)) => {
                    tracing::error!(event_id = %event.id, error = format!("{error:#}"), "outbox event cannot be published; giving up on it");
                    let note = format!("permanent failure: {error:#}");
                    claim.mark_published(event, self.clock.now(), Some(&note)).await?;
                    settled += 1;
                }
                Err(PublishError::Transient(error)) => {
                    claim.mark_failed(event, &format!("{error:#}")).await?;
                    failure = Some(error);
                    break;
                }
            }
        }
        claim.finish().await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(settled),
        }
    }

    /// Publishes in a producer span (semantic conventions for messaging:
    /// "<destination> publish"), child of the request that wrote the event.
    async fn publish(&self, event: &OutboxEvent) -> Result<(), PublishError> {
        let span = tracing::info_span!(
            "outbox.publish",
            otel.name = format!("{} publish", event.event_type),
            otel.kind = "producer",
            messaging.system = self.publisher.name(),
            messaging.operation.type = "send",
            messaging.message.id = %event.id,
            messaging.destination.name = tracing::field::Empty,
            event_type = %event.event_type,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        if let Some(carrier) = event.trace_context.as_deref().and_then(|c| serde_json::from_str::<Carrier>(c).ok()) {
            trace_context::continue_from(&span, &carrier);
        }
        trace_context::record_ids(&span);
        self.publisher.publish(event).instrument(span).await
    }

    async fn measure_backlog(&self) {
        match self.store.backlog().await {
            Ok(backlog) => {
                self.metrics.outbox_backlog.set(i64::try_from(backlog.unpublished).unwrap_or(i64::MAX));
                let age = backlog.oldest_created_at.map_or(0.0, |at| (self.clock.now() - at).as_seconds_f64().max(0.0));
                self.metrics.outbox_oldest_age.set(age);
            }
            Err(error) => tracing::debug!(error = format!("{error:#}"), "could not measure the outbox backlog"),
        }
    }

    async fn prune(&self) {
        // The registration-notice cap counts the owner's recent outbox rows: keep
        // at least the window it counts over, whatever the retention says.
        let retention = self.settings.retention.max(RESEND_WINDOW.unsigned_abs());
        let before = self.clock.now() - retention;
        match self.store.prune_published(before).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "pruned published outbox rows"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not prune the outbox"),
        }
        // Rows published by a version that kept their links: a batch each time.
        match self.store.redact_published(self.settings.batch_size).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "removed links from outbox rows published before redaction"),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "could not redact old outbox rows"),
        }
    }
}

#[cfg(test)]
mod tests;
