//! The import's writes: a batch of users, each inserted only if its id,
//! legacy id and canonical email are all free.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicU64, Ordering},
};

use async_trait::async_trait;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::OnConflict,
};
use uuid::Uuid;

use super::{classify, entities::users, is_postgres, user_repository::user_row};
use crate::domain::ports::{ImportOutcome, ImportedUser, ImportedUserStore, RepositoryError};

pub struct SeaOrmImportedUsers {
    db: DatabaseConnection,
    batches: AtomicU64,
}

impl SeaOrmImportedUsers {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, batches: AtomicU64::new(0) }
    }

    /// PostgreSQL plans each batch's lookup from the table's statistics, and
    /// an import into an empty table outgrows them at once: planned for an
    /// empty table, every lookup reads the whole table, and the import slows
    /// down with each batch (1,050 rows/s over 50,000 users, measured).
    /// Refreshing them whenever the number of batches doubles keeps the index
    /// plan for a logarithmic number of `ANALYZE`s.
    async fn keep_statistics_current(&self) -> Result<(), RepositoryError> {
        let done = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        if is_postgres(&self.db) && done.is_power_of_two() {
            self.db.execute_unprepared("ANALYZE users").await.map_err(classify)?;
        }
        Ok(())
    }
}

/// What each user would become given the rows already stored: one query for
/// the whole batch.
async fn outcomes(db: &impl ConnectionTrait, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = users.iter().map(|u| u.user.id().as_uuid()).collect();
    let emails: Vec<&str> = users.iter().map(|u| u.user.email().as_str()).collect();
    let legacy_ids: Vec<&str> = users.iter().filter_map(|u| u.legacy_id.as_deref()).collect();
    let mut any = Condition::any().add(users::Column::Id.is_in(ids)).add(users::Column::Email.is_in(emails));
    if !legacy_ids.is_empty() {
        any = any.add(users::Column::LegacyId.is_in(legacy_ids));
    }
    let stored: Vec<(Uuid, String, Option<String>)> = users::Entity::find()
        .select_only()
        .columns([users::Column::Id, users::Column::Email, users::Column::LegacyId])
        .filter(any)
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)?;
    let stored_ids: HashSet<Uuid> = stored.iter().map(|(id, _, _)| *id).collect();
    let stored_legacy: HashSet<&str> = stored.iter().filter_map(|(_, _, legacy)| legacy.as_deref()).collect();
    let mut taken_emails: HashSet<&str> = stored.iter().map(|(_, email, _)| email.as_str()).collect();
    Ok(users
        .iter()
        .map(|u| {
            let is_present = stored_ids.contains(&u.user.id().as_uuid())
                || u.legacy_id.as_deref().is_some_and(|legacy| stored_legacy.contains(legacy));
            if is_present {
                ImportOutcome::AlreadyPresent
            } else if !taken_emails.insert(u.user.email().as_str()) {
                // Taken by a stored user, or by an earlier row of this batch.
                ImportOutcome::DuplicateEmail
            } else {
                ImportOutcome::Inserted
            }
        })
        .collect())
}

#[async_trait]
impl ImportedUserStore for SeaOrmImportedUsers {
    async fn insert_absent(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let mut outcomes = outcomes(&txn, users).await?;
        let fresh: Vec<usize> = (0..users.len()).filter(|i| outcomes[*i] == ImportOutcome::Inserted).collect();
        if !fresh.is_empty() {
            let rows = fresh.iter().map(|i| user_row(&users[*i].user, &users[*i].password_hash));
            let mut insert = users::Entity::insert_many(rows).into_query();
            // A sign-up racing the import may take an address between the
            // check and the insert: that row is skipped, never overwritten.
            insert.on_conflict(OnConflict::new().do_nothing().to_owned()).returning_col(users::Column::Id);
            let backend = txn.get_database_backend();
            let returned = txn.query_all_raw(backend.build(&insert)).await.map_err(classify)?;
            let inserted: HashSet<Uuid> =
                returned.iter().map(|row| row.try_get::<Uuid>("", "id")).collect::<Result<_, _>>().map_err(classify)?;
            for i in fresh {
                if !inserted.contains(&users[i].user.id().as_uuid()) {
                    outcomes[i] = ImportOutcome::DuplicateEmail;
                }
            }
        }
        txn.commit().await.map_err(classify)?;
        self.keep_statistics_current().await?;
        Ok(outcomes)
    }

    async fn classify(&self, users: &[ImportedUser]) -> Result<Vec<ImportOutcome>, RepositoryError> {
        outcomes(&self.db, users).await
    }
}
