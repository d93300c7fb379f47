use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{classify, entities::outbox, is_postgres};
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
pub(super) async fn insert_event(txn: &DatabaseTransaction, event: &DomainEvent) -> Result<(), RepositoryError> {
    let row = outbox::ActiveModel {
        id: Set(event.id()),
        event_type: Set(event.event_type().to_owned()),
        payload: Set(payload::encode(event)?),
        // The request's trace continues through the relay and the mailer.
        trace_context: Set(
            trace_context::inject(&tracing::Span::current()).and_then(|carrier| serde_json::to_string(&carrier).ok())
        ),
        created_at: Set(event.occurred_at()),
        published_at: Set(None),
        attempts: Set(0),
        last_error: Set(None),
        user_id: Set(Some(event.user_id().as_uuid())),
    };
    outbox::Entity::insert(row).exec_without_returning(txn).await.map_err(classify)?;
    Ok(())
}

/// The relay's view of the outbox table.
#[derive(Clone)]
pub struct SeaOrmOutboxStore {
    db: DatabaseConnection,
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
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl OutboxStore for SeaOrmOutboxStore {
    async fn claim_batch(&self, limit: u64) -> Result<Box<dyn OutboxClaim>, RepositoryError> {
        let pending = outbox::Entity::find()
            .filter(outbox::Column::PublishedAt.is_null())
            .order_by_asc(outbox::Column::Id)
            .limit(limit);
        let (txn, rows) = if is_postgres(&self.db) {
            let txn = self.db.begin().await.map_err(classify)?;
            let rows = pending
                .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
                .all(&txn)
                .await
                .map_err(classify)?;
            (Some(txn), rows)
        } else {
            (None, pending.all(&self.db).await.map_err(classify)?)
        };
        let events = rows
            .into_iter()
            .map(|row| OutboxEvent {
                id: row.id,
                event_type: row.event_type,
                payload: row.payload,
                trace_context: row.trace_context,
                created_at: row.created_at,
            })
            .collect();
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
            .col_expr(outbox::Column::Payload, Expr::value(payload::redact(&row.payload)))
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
