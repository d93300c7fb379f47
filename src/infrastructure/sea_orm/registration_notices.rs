use async_trait::async_trait;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use time::OffsetDateTime;

use super::{
    SeaOrmUserRepository, classify,
    entities::{outbox, users},
    is_postgres, outbox_store,
    single_use_tokens::history_of,
};
use crate::domain::{
    AccountNotice, DomainEvent, UserId,
    ports::{RegistrationNotices, RepositoryError, SendHistory},
};

/// More than the hourly cap, so that counting the newest rows is enough.
const HISTORY_ROWS: u64 = 16;

async fn newest_notices(
    db: &impl sea_orm::ConnectionTrait,
    owner: UserId,
) -> Result<Vec<OffsetDateTime>, RepositoryError> {
    // Event ids are UUIDv7: id order is creation order. Published rows stay in
    // the outbox for IDENTITY_OUTBOX_RETENTION (never less than the cap's window).
    let rows = outbox::Entity::find()
        .select_only()
        .column(outbox::Column::CreatedAt)
        .filter(outbox::Column::UserId.eq(owner.as_uuid()))
        .filter(outbox::Column::EventType.eq(AccountNotice::REGISTRATION_ATTEMPTED))
        .order_by_desc(outbox::Column::Id)
        .limit(HISTORY_ROWS)
        .into_tuple::<OffsetDateTime>()
        .all(db)
        .await
        .map_err(classify)?;
    Ok(rows)
}

#[async_trait]
impl RegistrationNotices for SeaOrmUserRepository {
    async fn history(&self, owner: UserId, since: OffsetDateTime) -> Result<SendHistory, RepositoryError> {
        Ok(history_of(newest_notices(&self.db, owner).await?, since))
    }

    async fn record(
        &self,
        owner: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        if is_postgres(&txn) {
            // Serialises concurrent notices to one owner on PostgreSQL; SQLite
            // runs write transactions one at a time already.
            users::Entity::find_by_id(owner.as_uuid()).lock_exclusive().one(&txn).await.map_err(classify)?;
        }
        let newest = newest_notices(&txn, owner).await?.first().copied();
        if newest != expected_last_sent_at {
            return Ok(false);
        }
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(true)
    }
}
