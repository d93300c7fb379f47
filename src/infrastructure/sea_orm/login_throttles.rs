use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, InsertMany,
    sea_query::OnConflict,
};
use time::OffsetDateTime;

use super::{classify, entities::login_throttles, write_batch::WriteBatch};
use crate::domain::{
    LoginAttemptKeys, ThrottleKey, ThrottlePolicy, ThrottleState,
    ports::{LoginThrottles, RepositoryError},
};

/// Failed-login counters in SQL, so that every replica throttles alike. Rows
/// are keyed by digests (see `ThrottleKey`): the account's, and the account's
/// from one address bucket.
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
    ThrottleState {
        failures: u32::try_from(row.failures).unwrap_or(0),
        last_failure_at: Some(row.last_failure_at),
        locked_until: row.locked_until,
        last_success_at: row.last_success_at,
    }
}

/// Reads both counters of an attempt, locked for the rest of the transaction,
/// in one statement. An upsert that changes nothing does both at once: it
/// creates a missing row (so that two first attempts on PostgreSQL wait on one
/// row lock instead of both reading "no row") and locks and returns an
/// existing one; its rows are taken in the order given, account first, the
/// one lock order of every caller. SQLite runs one transaction at a time anyway.
async fn read_locked(
    txn: &DatabaseTransaction,
    keys: &LoginAttemptKeys,
    now: OffsetDateTime,
) -> Result<(ThrottleState, ThrottleState), RepositoryError> {
    let fresh = |key: &ThrottleKey| login_throttles::ActiveModel {
        email_hash: Set(key.as_str().to_owned()),
        failures: Set(0),
        last_failure_at: Set(now),
        locked_until: Set(None),
        last_success_at: Set(None),
    };
    let rows = login_throttles::Entity::insert_many([fresh(&keys.account), fresh(&keys.from_address)])
        .on_conflict(
            OnConflict::column(login_throttles::Column::EmailHash)
                .update_column(login_throttles::Column::EmailHash)
                .to_owned(),
        )
        .exec_with_returning(txn)
        .await
        .map_err(classify)?;
    let state_of = |key: &ThrottleKey| {
        rows.iter()
            .find(|row| row.email_hash == key.as_str())
            .map(to_state)
            .ok_or_else(|| anyhow::anyhow!("the throttle upsert returned no row for one of its keys"))
    };
    Ok((state_of(&keys.account)?, state_of(&keys.from_address)?))
}

fn row(key: &ThrottleKey, state: ThrottleState, now: OffsetDateTime) -> login_throttles::ActiveModel {
    login_throttles::ActiveModel {
        email_hash: Set(key.as_str().to_owned()),
        failures: Set(i32::try_from(state.failures).unwrap_or(i32::MAX)),
        last_failure_at: Set(state.last_failure_at.unwrap_or(now)),
        locked_until: Set(state.locked_until),
        last_success_at: Set(state.last_success_at),
    }
}

/// The statement that writes counters, one row per key.
fn upsert(rows: impl IntoIterator<Item = login_throttles::ActiveModel>) -> InsertMany<login_throttles::ActiveModel> {
    login_throttles::Entity::insert_many(rows).on_conflict(
        OnConflict::column(login_throttles::Column::EmailHash)
            .update_columns([
                login_throttles::Column::Failures,
                login_throttles::Column::LastFailureAt,
                login_throttles::Column::LockedUntil,
                login_throttles::Column::LastSuccessAt,
            ])
            .to_owned(),
    )
}

/// Writes counters, one row per key, in one statement.
async fn store(
    db: &impl ConnectionTrait,
    rows: impl IntoIterator<Item = login_throttles::ActiveModel>,
) -> Result<(), RepositoryError> {
    upsert(rows).exec_without_returning(db).await.map_err(classify)?;
    Ok(())
}

/// A right password: the account's failures are forgiven, and the address
/// is remembered as one the account logs in from (see `ThrottlePolicy`), both
/// in one statement. A forgiven counter is a row with no failures, which reads
/// as no row would; the pruner removes it in time like any other.
fn cleared_after_success(keys: &LoginAttemptKeys, now: OffsetDateTime) -> InsertMany<login_throttles::ActiveModel> {
    let forgiven = ThrottleState { failures: 0, last_failure_at: Some(now), locked_until: None, last_success_at: None };
    let known = ThrottleState { failures: 0, last_failure_at: None, locked_until: None, last_success_at: Some(now) };
    upsert([row(&keys.account, forgiven, now), row(&keys.from_address, known, now)])
}

/// [`cleared_after_success`] in the caller's transaction (a login's own, so
/// that it commits once).
pub(super) fn push_clear_after_success(batch: &mut WriteBatch, keys: &LoginAttemptKeys, now: OffsetDateTime) {
    batch.push_query(&cleared_after_success(keys, now));
}

#[async_trait]
impl LoginThrottles for SeaOrmLoginThrottles {
    async fn admit(
        &self,
        keys: &LoginAttemptKeys,
        now: OffsetDateTime,
        policy: ThrottlePolicy,
    ) -> Result<Result<(), Duration>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let (account, from_address) = read_locked(&txn, keys, now).await?;
        let admitted = match policy.admit(Some(account), Some(from_address), now) {
            Ok(admitted) => admitted,
            Err(wait) => return Ok(Err(wait)),
        };
        store(&txn, [row(&keys.account, admitted.account, now), row(&keys.from_address, admitted.from_address, now)])
            .await?;
        txn.commit().await.map_err(classify)?;
        Ok(Ok(()))
    }

    async fn succeeded(&self, keys: &LoginAttemptKeys, now: OffsetDateTime) -> Result<(), RepositoryError> {
        // One statement: atomic without a transaction of its own.
        cleared_after_success(keys, now).exec_without_returning(&self.db).await.map_err(classify)?;
        Ok(())
    }

    async fn reset(&self, key: &ThrottleKey) -> Result<(), RepositoryError> {
        login_throttles::Entity::delete_by_id(key.as_str().to_owned()).exec(&self.db).await.map_err(classify)?;
        Ok(())
    }
}
