use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait, Insert,
    QueryFilter, QueryOrder, QuerySelect, Select, Statement, Value,
    sea_query::{Alias, Expr, ExprTrait, LockBehavior, LockType, OnConflict, Query},
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    classify,
    entities::{outbox, user_event_streams},
    is_postgres,
    write_batch::WriteBatch,
};
use crate::{
    domain::{
        DomainEvent,
        ports::{OutboxBacklog, OutboxClaim, OutboxEvent, OutboxStore, RepositoryError},
    },
    infrastructure::outbox::payload,
    observability::trace_context,
};

/// Writes an event inside the caller's transaction: it commits or rolls back
/// together with the change that caused it.
///
/// # Errors
/// The event cannot be encoded or written.
pub(super) async fn insert_event(txn: &DatabaseTransaction, event: &DomainEvent) -> Result<(), RepositoryError> {
    let mut batch = WriteBatch::new(txn);
    push_event(&mut batch, event)?;
    batch.run(txn).await.map_err(classify)
}

/// Adds `events` to the transaction's batch, runs it and commits; then wakes
/// the relays if there was an event to publish.
///
/// # Errors
/// An event cannot be encoded, a statement or the commit fails.
pub(super) async fn commit_with_events(
    txn: DatabaseTransaction,
    mut batch: WriteBatch,
    events: &[DomainEvent],
    outbox_written: &Notify,
) -> Result<(), RepositoryError> {
    push_events(&mut batch, events)?;
    batch.run(&txn).await.map_err(classify)?;
    commit_and_wake(txn, events, outbox_written).await
}

/// Commits a transaction that wrote `events` and wakes the relays if there
/// was one to publish.
///
/// # Errors
/// The commit fails.
pub(super) async fn commit_and_wake(
    txn: DatabaseTransaction,
    events: &[DomainEvent],
    outbox_written: &Notify,
) -> Result<(), RepositoryError> {
    txn.commit().await.map_err(classify)?;
    if !events.is_empty() {
        outbox_written.notify_one();
    }
    Ok(())
}

/// [`push_event`] for each of `events`, in order.
///
/// # Errors
/// An event cannot be encoded.
pub(super) fn push_events(batch: &mut WriteBatch, events: &[DomainEvent]) -> Result<(), RepositoryError> {
    events.iter().try_for_each(|event| push_event(batch, event))
}

/// Adds the statements that write `event` to a transaction's batch. A user
/// event takes the next position in its user's stream: the upsert of the
/// stream's row locks it until the transaction ends, so one user's positions
/// are handed out in the order their transactions commit. Events are written
/// just before the commit, so that lock is the last of its transaction and
/// cannot close a cycle with the locks taken before it.
///
/// # Errors
/// The event cannot be encoded.
fn push_event(batch: &mut WriteBatch, event: &DomainEvent) -> Result<(), RepositoryError> {
    let payload = payload::encode(event)?;
    // The request's trace continues through the relay and the mailer.
    let trace_context =
        trace_context::inject(&tracing::Span::current()).and_then(|carrier| serde_json::to_string(&carrier).ok());
    let user_id = event.user_id().as_uuid();
    if !matches!(event, DomainEvent::User(_)) {
        let row = outbox::ActiveModel {
            id: Set(event.id()),
            event_type: Set(event.event_type().to_owned()),
            payload: Set(payload),
            trace_context: Set(trace_context),
            created_at: Set(event.occurred_at()),
            published_at: Set(None),
            attempts: Set(0),
            last_error: Set(None),
            user_id: Set(Some(user_id)),
            stream_position: Set(None),
        };
        batch.push_query(&outbox::Entity::insert(row));
        return Ok(());
    }
    let values: [Value; 6] = [
        user_id.into(),
        event.id().into(),
        event.event_type().into(),
        payload.into(),
        trace_context.into(),
        event.occurred_at().into(),
    ];
    match batch.backend() {
        DbBackend::Postgres => {
            batch.push(Statement::from_sql_and_values(DbBackend::Postgres, POSITIONED_INSERT, values))
        }
        backend => {
            let [stream, id, event_type, payload, trace_context, occurred_at] = values;
            batch.push_query(&bump_stream(user_id));
            batch.push(Statement::from_sql_and_values(
                backend,
                INSERT_AT_STREAM_POSITION,
                [id, event_type, payload, trace_context, occurred_at, stream],
            ));
        }
    }
    Ok(())
}

/// PostgreSQL: the stream's upsert as a data-modifying CTE feeding the outbox
/// row, one statement.
const POSITIONED_INSERT: &str = "\
WITH stream AS (
    INSERT INTO user_event_streams (user_id, last_position) VALUES ($1, 1)
    ON CONFLICT (user_id) DO UPDATE SET last_position = user_event_streams.last_position + 1
    RETURNING last_position
)
INSERT INTO outbox (id, event_type, payload, trace_context, created_at, attempts, user_id, stream_position)
SELECT $2, $3, $4, $5, $6, 0, $1, last_position FROM stream";

/// SQLite (which allows no `RETURNING` in a CTE): the same in two statements
/// of one batch, this upsert and then [`INSERT_AT_STREAM_POSITION`], which
/// reads the position it just wrote inside the same transaction.
fn bump_stream(user_id: Uuid) -> Insert<user_event_streams::ActiveModel> {
    let first = user_event_streams::ActiveModel { user_id: Set(user_id), last_position: Set(1) };
    let bump = OnConflict::column(user_event_streams::Column::UserId)
        .value(
            user_event_streams::Column::LastPosition,
            Expr::col((user_event_streams::Entity, user_event_streams::Column::LastPosition)).add(1),
        )
        .to_owned();
    user_event_streams::Entity::insert(first).on_conflict(bump)
}

const INSERT_AT_STREAM_POSITION: &str = "\
INSERT INTO outbox (id, event_type, payload, trace_context, created_at, attempts, user_id, stream_position)
SELECT ?, ?, ?, ?, ?, 0, user_id, last_position FROM user_event_streams WHERE user_id = ?";

/// Which rows a relay publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Rows without a position, oldest first, each on its own.
    Emails,
    /// Rows with a position: each user's strictly in order.
    UserEvents,
}

/// The relay's view of the outbox table: one store (and one relay) for the
/// emails, one for the user events, so that neither waits behind the other.
#[derive(Clone)]
pub struct SeaOrmOutboxStore {
    db: DatabaseConnection,
    stream: Stream,
}

/// Rows claimed by this relay. On PostgreSQL they stay row-locked (`FOR UPDATE
/// SKIP LOCKED`) until [`OutboxClaim::finish`], so each row is published by one
/// replica only; SQLite is single-node and holds no transaction, so that slow
/// publishing never blocks its single connection.
pub struct ClaimedBatch {
    txn: Option<DatabaseTransaction>,
    db: DatabaseConnection,
    events: Vec<OutboxEvent>,
}

impl SeaOrmOutboxStore {
    /// The emails' rows.
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, stream: Stream::Emails }
    }

    /// The user events' rows.
    pub fn user_events(db: DatabaseConnection) -> Self {
        Self { db, stream: Stream::UserEvents }
    }
}

fn pending() -> Select<outbox::Entity> {
    outbox::Entity::find().filter(outbox::Column::PublishedAt.is_null())
}

/// `FOR UPDATE` on PostgreSQL (SQLite runs one transaction at a time, and
/// claims hold none there); `skip_locked` passes over rows another relay holds.
fn lock(select: Select<outbox::Entity>, is_postgres: bool, skip_locked: bool) -> Select<outbox::Entity> {
    match (is_postgres, skip_locked) {
        (false, _) => select,
        (true, true) => select.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked),
        (true, false) => select.lock_exclusive(),
    }
}

/// The unpublished user events that are the first unpublished one of their
/// user (the heads of the streams), oldest first, at most `limit`, locked
/// (skipping heads another relay holds: that relay owns the user's stream
/// until it commits).
///
/// On PostgreSQL, a head another relay published and committed after this
/// statement's snapshot is re-checked when it is locked and drops out; the
/// row after it is not a head in that snapshot, so nobody takes it twice. A
/// row before a head cannot appear later: positions follow commit order.
async fn stream_heads(
    conn: &impl ConnectionTrait,
    is_postgres: bool,
    limit: u64,
) -> Result<Vec<outbox::Model>, RepositoryError> {
    let earlier = Alias::new("earlier");
    let earlier_unpublished = Query::select()
        .expr(Expr::val(1))
        .from_as(outbox::Entity, earlier.clone())
        .and_where(
            Expr::col((earlier.clone(), outbox::Column::UserId)).equals((outbox::Entity, outbox::Column::UserId)),
        )
        .and_where(Expr::col((earlier.clone(), outbox::Column::PublishedAt)).is_null())
        .and_where(
            Expr::col((earlier, outbox::Column::StreamPosition))
                .lt(Expr::col((outbox::Entity, outbox::Column::StreamPosition))),
        )
        .to_owned();
    let heads = pending()
        .filter(outbox::Column::StreamPosition.is_not_null())
        .filter(Expr::exists(earlier_unpublished).not())
        .order_by_asc(outbox::Column::Id)
        .limit(limit);
    lock(heads, is_postgres, true).all(conn).await.map_err(classify)
}

/// The unpublished events of the users whose heads were claimed, in stream
/// order, at most `limit` (the heads among them). Nobody else can hold them:
/// a relay takes a user's events only after locking its head. They are locked
/// anyway (waiting, never skipping: a skipped row would be a gap).
async fn streams_of(
    conn: &impl ConnectionTrait,
    is_postgres: bool,
    heads: &[outbox::Model],
    limit: u64,
) -> Result<Vec<outbox::Model>, RepositoryError> {
    if heads.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<Uuid> = heads.iter().filter_map(|head| head.user_id).collect();
    let rows = pending()
        .filter(outbox::Column::StreamPosition.is_not_null())
        .filter(outbox::Column::UserId.is_in(users))
        .order_by_asc(outbox::Column::UserId)
        .order_by_asc(outbox::Column::StreamPosition)
        .limit(limit);
    let rows = lock(rows, is_postgres, false).all(conn).await.map_err(classify)?;
    Ok(in_stream_order(heads, rows))
}

/// `rows` grouped by user in the order of their heads (oldest head first),
/// each user's from its head on, in position order, without gaps: a user whose
/// rows do not start at its claimed head is left for a later round.
fn in_stream_order(heads: &[outbox::Model], rows: Vec<outbox::Model>) -> Vec<outbox::Model> {
    let mut by_user: std::collections::HashMap<Uuid, Vec<outbox::Model>> = std::collections::HashMap::new();
    for row in rows {
        if let Some(user) = row.user_id {
            by_user.entry(user).or_default().push(row);
        }
    }
    let mut ordered = Vec::new();
    for head in heads {
        let Some(rows) = head.user_id.and_then(|user| by_user.remove(&user)) else { continue };
        if rows.first().map(|first| first.id) != Some(head.id) {
            continue;
        }
        ordered.extend(rows);
    }
    ordered
}

fn to_event(row: outbox::Model) -> OutboxEvent {
    OutboxEvent {
        id: row.id,
        user_id: row.user_id,
        event_type: row.event_type,
        payload: row.payload,
        trace_context: row.trace_context,
        created_at: row.created_at,
    }
}

#[async_trait]
impl OutboxStore for SeaOrmOutboxStore {
    async fn claim_batch(&self, limit: u64) -> Result<Box<dyn OutboxClaim>, RepositoryError> {
        let is_postgres = is_postgres(&self.db);
        let txn = if is_postgres { Some(super::begin_write(&self.db).await.map_err(classify)?) } else { None };
        let rows = match (&txn, self.stream) {
            (Some(txn), Stream::Emails) => emails(txn, is_postgres, limit).await?,
            (None, Stream::Emails) => emails(&self.db, is_postgres, limit).await?,
            (Some(txn), Stream::UserEvents) => {
                let heads = stream_heads(txn, is_postgres, limit).await?;
                streams_of(txn, is_postgres, &heads, limit).await?
            }
            (None, Stream::UserEvents) => {
                let heads = stream_heads(&self.db, is_postgres, limit).await?;
                streams_of(&self.db, is_postgres, &heads, limit).await?
            }
        };
        let events = rows.into_iter().map(to_event).collect();
        Ok(Box::new(ClaimedBatch { txn, db: self.db.clone(), events }))
    }

    async fn prune_published(&self, before: OffsetDateTime) -> Result<u64, RepositoryError> {
        let deleted = outbox::Entity::delete_many()
            .filter(outbox::Column::PublishedAt.is_not_null())
            .filter(outbox::Column::PublishedAt.lt(before))
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok(deleted.rows_affected)
    }

    async fn redact_published(&self, limit: u64) -> Result<u64, RepositoryError> {
        let rows: Vec<(Uuid, String)> =
            outbox::Entity::find()
                .select_only()
                .column(outbox::Column::Id)
                .column(outbox::Column::Payload)
                .filter(outbox::Column::PublishedAt.is_not_null())
                .filter(payload::LINK_FIELDS.iter().fold(Condition::any(), |any, field| {
                    any.add(outbox::Column::Payload.contains(format!("\"{field}\"")))
                }))
                .limit(limit)
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(classify)?;
        for (id, stored) in &rows {
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Payload, Expr::value(payload::redact(stored)))
                .filter(outbox::Column::Id.eq(*id))
                .exec(&self.db)
                .await
                .map_err(classify)?;
        }
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }

    async fn backlog(&self) -> Result<OutboxBacklog, RepositoryError> {
        let pending = outbox::Entity::find().filter(outbox::Column::PublishedAt.is_null());
        let count = sea_orm::PaginatorTrait::count(pending.clone(), &self.db).await.map_err(classify)?;
        let oldest =
            pending.order_by_asc(outbox::Column::Id).one(&self.db).await.map_err(classify)?.map(|row| row.created_at);
        Ok(OutboxBacklog { unpublished: count, oldest_created_at: oldest })
    }
}

/// Unpublished emails, oldest first, locked (skipping those another relay holds).
async fn emails(
    conn: &impl ConnectionTrait,
    is_postgres: bool,
    limit: u64,
) -> Result<Vec<outbox::Model>, RepositoryError> {
    let rows = pending().filter(outbox::Column::StreamPosition.is_null()).order_by_asc(outbox::Column::Id).limit(limit);
    lock(rows, is_postgres, true).all(conn).await.map_err(classify)
}

impl ClaimedBatch {
    async fn exec(&self, update: sea_orm::UpdateMany<outbox::Entity>) -> Result<(), RepositoryError> {
        let result = match &self.txn {
            Some(txn) => update.exec(txn).await,
            None => update.exec(&self.db).await,
        };
        result.map(|_| ()).map_err(classify)
    }
}

#[async_trait]
impl OutboxClaim for ClaimedBatch {
    fn events(&self) -> &[OutboxEvent] {
        &self.events
    }

    /// `note` records why a row was settled without being delivered (a
    /// permanent failure), for operators reading the table. The same statement
    /// replaces the payload with its redacted form (`payload`, the row as
    /// claimed): once settled, the single-use link has no business at rest.
    async fn mark_published(
        &self,
        row: &OutboxEvent,
        at: OffsetDateTime,
        note: Option<&str>,
    ) -> Result<(), RepositoryError> {
        let update = outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(at))
            .col_expr(outbox::Column::LastError, Expr::value(note.map(str::to_owned)))
            .col_expr(outbox::Column::Payload, Expr::value(payload::at_rest(&row.event_type, &row.payload)))
            .filter(outbox::Column::Id.eq(row.id));
        self.exec(update).await
    }

    async fn mark_failed(&self, event: &OutboxEvent, error: &str) -> Result<(), RepositoryError> {
        let update = outbox::Entity::update_many()
            .col_expr(outbox::Column::Attempts, Expr::col(outbox::Column::Attempts).add(1))
            .col_expr(outbox::Column::LastError, Expr::value(error.to_owned()))
            .filter(outbox::Column::Id.eq(event.id));
        self.exec(update).await
    }

    /// Commits the claim (releasing the row locks on PostgreSQL).
    async fn finish(self: Box<Self>) -> Result<(), RepositoryError> {
        if let Some(txn) = self.txn {
            txn.commit().await.map_err(classify)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn row(user: Uuid, position: i64) -> outbox::Model {
        outbox::Model {
            id: Uuid::now_v7(),
            event_type: "identity.v1.user.enabled".into(),
            payload: String::new(),
            trace_context: None,
            created_at: datetime!(2026-01-01 0:00 UTC),
            published_at: None,
            attempts: 0,
            last_error: None,
            user_id: Some(user),
            stream_position: Some(position),
        }
    }

    #[test]
    fn streams_go_out_whole_from_their_claimed_head_in_head_order_and_never_with_a_gap() {
        let (ada, bob, cy) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let (ada1, ada2, ada3) = (row(ada, 1), row(ada, 2), row(ada, 3));
        let (bob4, bob5) = (row(bob, 4), row(bob, 5));
        let (cy7, cy8) = (row(cy, 7), row(cy, 8));
        // Heads oldest first: Bob's, then Ada's, then Cy's.
        let heads = vec![bob4.clone(), ada1.clone(), cy7];
        // Cy's head is missing from the rows read (cut off by the limit, say):
        // Cy's later row alone would be a gap, so Cy waits for a later round.
        let rows = vec![ada1.clone(), ada2.clone(), ada3.clone(), bob4.clone(), bob5.clone(), cy8];
        let ordered: Vec<Uuid> = in_stream_order(&heads, rows).into_iter().map(|r| r.id).collect();
        assert_eq!(ordered, [bob4.id, bob5.id, ada1.id, ada2.id, ada3.id]);
    }

    #[test]
    fn only_user_events_keep_their_payload_when_settled() {
        assert_eq!(payload::at_rest("identity.v1.user.deleted", "CgR1c2Vy"), "CgR1c2Vy");
        assert!(payload::at_rest("user.verification_email_requested", "CgR1c2Vy").contains("redacted"));
    }
}
