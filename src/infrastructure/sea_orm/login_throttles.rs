use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, DatabaseConnection, EntityTrait, QuerySelect, TransactionTrait, sea_query::OnConflict,
};
use time::OffsetDateTime;

use super::{classify, entities::login_throttles, is_postgres};
use crate::domain::{
    ThrottleKey, ThrottlePolicy, ThrottleState,
    ports::{LoginThrottles, RepositoryError},
};

/// Failed-login counters in SQL, so that every replica throttles alike.
#[derive(Clone)]
pub struct SeaOrmLoginThrottles {
    db: DatabaseConnection,
}

impl SeaOrmLoginThrottles {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn to_state(row: &login_throttles::Model) -> ThrottleState {
    ThrottleState { failures: u32::try_from(row.failures).unwrap_or(0), locked_until: row.locked_until }
}

#[async_trait]
impl LoginThrottles for SeaOrmLoginThrottles {
    async fn state(&self, key: &ThrottleKey) -> Result<Option<ThrottleState>, RepositoryError> {
        let row = login_throttles::Entity::find_by_id(key.as_str().to_owned()).one(&self.db).await.map_err(classify)?;
        Ok(row.as_ref().map(to_state))
    }

    async fn record_failure(
        &self,
        key: &ThrottleKey,
        now: OffsetDateTime,
        policy: ThrottlePolicy,
    ) -> Result<ThrottleState, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        let mut select = login_throttles::Entity::find_by_id(key.as_str().to_owned());
        if is_postgres(&txn) {
            select = select.lock_exclusive();
        }
        let previous = select.one(&txn).await.map_err(classify)?;
        let failures = previous.as_ref().map_or(0, |row| u32::try_from(row.failures).unwrap_or(0)).saturating_add(1);
        let state = ThrottleState { failures, locked_until: policy.locked_until(failures, now) };
        let row = login_throttles::ActiveModel {
            email_hash: Set(key.as_str().to_owned()),
            failures: Set(i32::try_from(failures).unwrap_or(i32::MAX)),
            last_failure_at: Set(now),
            locked_until: Set(state.locked_until),
        };
        // Two first failures at once on PostgreSQL: the upsert keeps the later count.
        login_throttles::Entity::insert(row)
            .on_conflict(
                OnConflict::column(login_throttles::Column::EmailHash)
                    .update_columns([
                        login_throttles::Column::Failures,
                        login_throttles::Column::LastFailureAt,
                        login_throttles::Column::LockedUntil,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(state)
    }

    async fn reset(&self, key: &ThrottleKey) -> Result<(), RepositoryError> {
        login_throttles::Entity::delete_by_id(key.as_str().to_owned()).exec(&self.db).await.map_err(classify)?;
        Ok(())
    }
}
