//! The user's row lock that orders every account change against every session
//! creation. PostgreSQL locks the row (`FOR UPDATE` to change the account,
//! `FOR SHARE` to add a session beside it); SQLite has one connection and runs
//! transactions one at a time, which orders them just as well.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    classify,
    entities::{sessions, users},
    is_postgres,
};
use crate::domain::{User, UserId, ports::RepositoryError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lock {
    /// The account itself changes.
    Update,
    /// Something is added beside the account (a session) that a concurrent
    /// change must either see or wait for.
    Share,
}

/// Reads the user's row under the lock, for the rest of the transaction.
pub(super) async fn lock_user(
    txn: &DatabaseTransaction,
    user_id: UserId,
    lock: Lock,
) -> Result<Option<users::Model>, RepositoryError> {
    let mut select = users::Entity::find_by_id(user_id.as_uuid());
    if is_postgres(txn) {
        select = match lock {
            Lock::Update => select.lock_exclusive(),
            Lock::Share => select.lock_shared(),
        };
    }
    select.one(txn).await.map_err(classify)
}

/// Writes what a domain transition changed, and nothing else: the row is
/// locked, but a column this change did not touch is still not its to write.
pub(super) async fn write_changes(
    txn: &DatabaseTransaction,
    before: &User,
    after: &User,
) -> Result<(), RepositoryError> {
    let mut update = users::Entity::update_many().filter(users::Column::Id.eq(after.id().as_uuid()));
    let mut changed = false;
    if before.status() != after.status() {
        update = update.col_expr(users::Column::Status, Expr::value(after.status().as_str()));
        changed = true;
    }
    if before.verified_at() != after.verified_at() {
        update = update.col_expr(users::Column::VerifiedAt, Expr::value(after.verified_at()));
        changed = true;
    }
    if before.tokens_valid_after() != after.tokens_valid_after() {
        update = update.col_expr(users::Column::TokensValidAfter, Expr::value(after.tokens_valid_after()));
        changed = true;
    }
    if before.updated_at() != after.updated_at() {
        update = update.col_expr(users::Column::UpdatedAt, Expr::value(after.updated_at()));
        changed = true;
    }
    if changed {
        update.exec(txn).await.map_err(classify)?;
    }
    Ok(())
}

/// Revokes the live sessions of a user (all, or all but one); returns their ids.
/// Under the user's lock no session can be added meanwhile, so the ids read
/// are exactly the ones revoked.
pub(super) async fn revoke_sessions(
    txn: &impl ConnectionTrait,
    user_id: UserId,
    except: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<Vec<Uuid>, RepositoryError> {
    let mut live = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
        .filter(sessions::Column::RevokedAt.is_null());
    if let Some(kept) = except {
        live = live.filter(sessions::Column::Id.ne(kept));
    }
    let ids: Vec<Uuid> = live.into_tuple().all(txn).await.map_err(classify)?;
    if !ids.is_empty() {
        let mut update = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
            .filter(sessions::Column::RevokedAt.is_null());
        if let Some(kept) = except {
            update = update.filter(sessions::Column::Id.ne(kept));
        }
        update.exec(txn).await.map_err(classify)?;
    }
    Ok(ids)
}
