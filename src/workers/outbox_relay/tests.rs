//! The relay against a hand-written store and publisher.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use time::{OffsetDateTime, macros::datetime};
use uuid::Uuid;

use super::*;
use crate::domain::ports::{OutboxBacklog, OutboxClaim, RepositoryError};

const NOW: OffsetDateTime = datetime!(2030-01-01 12:00 UTC);

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        NOW
    }
}

/// One stored event and what the relay recorded about it.
struct Stored {
    event: OutboxEvent,
    /// Every `mark_published` call: when, and the note.
    published: Vec<(OffsetDateTime, Option<String>)>,
    failures: Vec<String>,
}

struct FakeStore {
    rows: Arc<Mutex<Vec<Stored>>>,
}

impl FakeStore {
    fn with_events(count: usize) -> Self {
        let rows = (0..count)
            .map(|i| Stored {
                event: OutboxEvent {
                    id: Uuid::now_v7(),
                    user_id: None,
                    event_type: "user.verification_email_requested".into(),
                    payload: format!("{{\"n\":{i}}}"),
                    trace_context: None,
                    created_at: NOW,
                },
                published: Vec::new(),
                failures: Vec::new(),
            })
            .collect();
        Self { rows: Arc::new(Mutex::new(rows)) }
    }

    fn times_published(&self) -> Vec<usize> {
        self.rows.lock().unwrap().iter().map(|row| row.published.len()).collect()
    }

    fn failures(&self) -> Vec<usize> {
        self.rows.lock().unwrap().iter().map(|row| row.failures.len()).collect()
    }
}

struct FakeClaim {
    rows: Arc<Mutex<Vec<Stored>>>,
    events: Vec<OutboxEvent>,
}

#[async_trait]
impl OutboxStore for FakeStore {
    async fn claim_batch(&self, limit: u64) -> Result<Box<dyn OutboxClaim>, RepositoryError> {
        let events = self
            .rows
            .lock()
            .unwrap()
            .iter()
            .filter(|row| row.published.is_empty())
            .take(usize::try_from(limit).unwrap())
            .map(|row| row.event.clone())
            .collect();
        Ok(Box::new(FakeClaim { rows: Arc::clone(&self.rows), events }))
    }

    async fn prune_published(&self, _before: OffsetDateTime) -> Result<u64, RepositoryError> {
        Ok(0)
    }

    async fn redact_published(&self, _limit: u64) -> Result<u64, RepositoryError> {
        Ok(0)
    }

    async fn backlog(&self) -> Result<OutboxBacklog, RepositoryError> {
        let rows = self.rows.lock().unwrap();
        let unpublished = rows.iter().filter(|row| row.published.is_empty()).count();
        Ok(OutboxBacklog { unpublished: unpublished as u64, oldest_created_at: None })
    }
}

impl FakeClaim {
    fn update(&self, event: &OutboxEvent, change: impl FnOnce(&mut Stored)) {
        let mut rows = self.rows.lock().unwrap();
        change(rows.iter_mut().find(|row| row.event.id == event.id).expect("a claimed event is stored"));
    }
}

#[async_trait]
impl OutboxClaim for FakeClaim {
    fn events(&self) -> &[OutboxEvent] {
        &self.events
    }

    async fn mark_published(
        &self,
        event: &OutboxEvent,
        at: OffsetDateTime,
        note: Option<&str>,
    ) -> Result<(), RepositoryError> {
        self.update(event, |row| row.published.push((at, note.map(str::to_owned))));
        Ok(())
    }

    async fn mark_failed(&self, event: &OutboxEvent, error: &str) -> Result<(), RepositoryError> {
        self.update(event, |row| row.failures.push(error.to_owned()));
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), RepositoryError> {
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Answer {
    Accept,
    Transient,
    Permanent,
}

/// Answers every publish alike, as told, and remembers what it was handed.
struct FakePublisher {
    answer: Mutex<Answer>,
    handed: Mutex<Vec<Uuid>>,
}

impl FakePublisher {
    fn answering(answer: Answer) -> Arc<Self> {
        Arc::new(Self { answer: Mutex::new(answer), handed: Mutex::new(Vec::new()) })
    }
}

#[async_trait]
impl OutboxPublisher for FakePublisher {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn publish(&self, event: &OutboxEvent) -> Result<(), PublishError> {
        self.handed.lock().unwrap().push(event.id);
        match *self.answer.lock().unwrap() {
            Answer::Accept => Ok(()),
            Answer::Transient => Err(PublishError::Transient(anyhow::anyhow!("broker down"))),
            Answer::Permanent => Err(PublishError::Permanent(anyhow::anyhow!("provider refused"))),
        }
    }
}

fn relay(store: &FakeStore, publisher: &Arc<FakePublisher>) -> OutboxRelay {
    OutboxRelay {
        metrics: Arc::new(Metrics::new()),
        store: Arc::new(FakeStore { rows: Arc::clone(&store.rows) }),
        publisher: Arc::clone(publisher) as Arc<dyn OutboxPublisher>,
        wake: Arc::new(Notify::new()),
        clock: Arc::new(FixedClock),
        settings: RelaySettings { max_backoff: Duration::from_millis(300), ..RelaySettings::default() },
    }
}

#[tokio::test]
async fn a_failing_publish_backs_off_and_leaves_the_event_for_a_retry() {
    let store = FakeStore::with_events(2);
    let publisher = FakePublisher::answering(Answer::Transient);
    let relay = relay(&store, &publisher);

    let first = relay.round(Duration::ZERO).await;
    assert_eq!(first, Round { backoff: Duration::from_millis(100), is_more_waiting: false });
    // The first failure stops the batch, so that events keep their order.
    assert_eq!(publisher.handed.lock().unwrap().len(), 1);
    assert_eq!(store.times_published(), [0, 0]);
    assert_eq!(store.failures(), [1, 0]);

    assert_eq!(relay.round(first.backoff).await.backoff, Duration::from_millis(200));
    assert_eq!(relay.round(Duration::from_millis(200)).await.backoff, Duration::from_millis(300), "capped");
    assert_eq!(store.failures(), [3, 0]);

    *publisher.answer.lock().unwrap() = Answer::Accept;
    assert_eq!(relay.round(Duration::from_millis(300)).await.backoff, Duration::ZERO);
    assert_eq!(store.times_published(), [1, 1]);
}

#[tokio::test]
async fn a_published_event_is_marked_published_once() {
    let store = FakeStore::with_events(3);
    let publisher = FakePublisher::answering(Answer::Accept);
    let relay = relay(&store, &publisher);

    assert_eq!(relay.round(Duration::ZERO).await, Round { backoff: Duration::ZERO, is_more_waiting: false });
    assert_eq!(relay.round(Duration::ZERO).await, Round { backoff: Duration::ZERO, is_more_waiting: false });

    assert_eq!(store.times_published(), [1, 1, 1]);
    assert_eq!(publisher.handed.lock().unwrap().len(), 3, "nothing is published twice");
    let rows = store.rows.lock().unwrap();
    assert!(rows.iter().all(|row| row.published == [(NOW, None)] && row.failures.is_empty()));
}

#[tokio::test]
async fn an_event_that_can_never_be_published_is_settled_with_a_note() {
    let store = FakeStore::with_events(1);
    let publisher = FakePublisher::answering(Answer::Permanent);
    let relay = relay(&store, &publisher);

    assert_eq!(relay.round(Duration::ZERO).await.backoff, Duration::ZERO);
    let rows = store.rows.lock().unwrap();
    assert_eq!(rows[0].published, [(NOW, Some("permanent failure: provider refused".to_owned()))]);
    assert!(rows[0].failures.is_empty(), "retrying cannot help, so it is not counted as a failed attempt");
}

#[tokio::test]
async fn a_full_batch_sends_the_relay_round_again_at_once() {
    let store = FakeStore::with_events(3);
    let publisher = FakePublisher::answering(Answer::Accept);
    let mut relay = relay(&store, &publisher);
    relay.settings.batch_size = 2;

    assert!(relay.round(Duration::ZERO).await.is_more_waiting);
    assert!(!relay.round(Duration::ZERO).await.is_more_waiting);
    assert_eq!(store.times_published(), [1, 1, 1]);
}
