//! The user's row lock that orders every account change against every session
//! creation. PostgreSQL locks the row (`FOR UPDATE` to change the account,
//! `FOR SHARE` to add a session beside it); SQLite runs write transactions
//! one at a time (one connection per process, and `BEGIN IMMEDIATE` across
//! processes: see `begin_write`), which orders them just as well.

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
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
    try_write_changes(txn, before, after).await.map_err(classify)
}

/// [`write_changes`], with the database's error as it is: a change of address
/// must tell the unique index's refusal from other failures.
pub(super) async fn try_write_changes(txn: &DatabaseTransaction, before: &User, after: &User) -> Result<(), DbErr> {
    let mut update = users::Entity::update_many().filter(users::Column::Id.eq(after.id().as_uuid()));
    let mut changed = false;
    if before.email() != after.email() {
        update = update.col_expr(users::Column::Email, Expr::value(after.email().as_str()));
        changed = true;
    }
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
        update.exec(txn).await?;
    }
    Ok(())
}

/// Which sessions still matter to a revocation: those not rotated, and those
/// rotated so recently that an access token issued for them may still be
/// valid. Older rotated rows can neither refresh nor carry a live access token,
/// and revoking them again would make one call's work grow with every refresh
/// a user ever made.
pub(super) fn still_matters(rotated_since: Option<OffsetDateTime>) -> Condition {
    let mut condition = Condition::all().add(sessions::Column::RevokedAt.is_null());
    if let Some(since) = rotated_since {
        condition = condition.add(
            Condition::any().add(sessions::Column::RotatedAt.is_null()).add(sessions::Column::RotatedAt.gte(since)),
        );
    }
    condition
}

/// Revokes the sessions of a user that still matter (all, or all but one
/// family's); returns their ids. Under the user's lock no session can be added
/// meanwhile, so the ids read are exactly the ones revoked.
pub(super) async fn revoke_sessions(
    txn: &impl ConnectionTrait,
    user_id: UserId,
    except_family: Option<Uuid>,
    rotated_since: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Vec<Uuid>, RepositoryError> {
    let mut live = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
        .filter(still_matters(rotated_since));
    if let Some(kept) = except_family {
        live = live.filter(sessions::Column::FamilyId.ne(kept));
    }
    let ids: Vec<Uuid> = live.into_tuple().all(txn).await.map_err(classify)?;
    if !ids.is_empty() {
        let mut update = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
            .filter(still_matters(rotated_since));
        if let Some(kept) = except_family {
            update = update.filter(sessions::Column::FamilyId.ne(kept));
        }
        update.exec(txn).await.map_err(classify)?;
    }
    Ok(ids)
}
