use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
    sea_query::{Expr, ExprTrait, LikeExpr},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    SeaOrmUserRepository, classify,
    entities::{password_reset_tokens, sessions, users},
    is_postgres, outbox_store,
    user_lock::{Lock, lock_user, revoke_sessions, write_changes},
    user_repository::{credentials_of, history_of, to_user},
};
use crate::domain::{
    DomainEvent, PasswordHash, TokenHash, User, UserId, UserStatus,
    ports::{
        AccountRepository, NewSingleUseToken, PasswordChangeRefused, RepositoryError, Revocation, SendHistory,
        SingleUseTokenRecord, StoredCredentials, UserListQuery,
    },
};

/// More than the hourly cap, so that counting the newest rows is enough.
const HISTORY_ROWS: u64 = 16;

/// A new hash of a new password: its version moves on, so that a login that
/// verified the old one creates no session.
async fn save_password(
    txn: &DatabaseTransaction,
    row: &users::Model,
    hash: &PasswordHash,
) -> Result<(), RepositoryError> {
    users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
        .col_expr(users::Column::PasswordVersion, Expr::value(row.password_version.saturating_add(1)))
        .filter(users::Column::Id.eq(row.id))
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Spends every outstanding reset link of the user: a password chosen since
/// makes them pointless, and a stolen one must not undo the change.
async fn spend_reset_tokens(
    txn: &DatabaseTransaction,
    user_id: UserId,
    now: OffsetDateTime,
) -> Result<(), RepositoryError> {
    password_reset_tokens::Entity::update_many()
        .col_expr(password_reset_tokens::Column::SpentAt, Expr::value(now))
        .filter(password_reset_tokens::Column::UserId.eq(user_id.as_uuid()))
        .filter(password_reset_tokens::Column::SpentAt.is_null())
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}

async fn recent_reset_tokens(
    db: &impl ConnectionTrait,
    user_id: UserId,
) -> Result<Vec<password_reset_tokens::Model>, RepositoryError> {
    password_reset_tokens::Entity::find()
        .filter(password_reset_tokens::Column::UserId.eq(user_id.as_uuid()))
        .order_by_desc(password_reset_tokens::Column::Id)
        .limit(HISTORY_ROWS)
        .all(db)
        .await
        .map_err(classify)
}

/// Escapes LIKE wildcards so that a prefix matches literally.
fn like_prefix(prefix: &str) -> LikeExpr {
    let escaped: String = prefix
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    LikeExpr::new(format!("{escaped}%")).escape('\\')
}

#[async_trait]
impl AccountRepository for SeaOrmUserRepository {
    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, StoredCredentials)>, RepositoryError> {
        let row = users::Entity::find_by_id(id.as_uuid()).one(&self.db).await.map_err(classify)?;
        row.map(|row| Ok((to_user(&row)?, credentials_of(row)))).transpose()
    }

    async fn change_password(
        &self,
        user_id: UserId,
        hash: &PasswordHash,
        verified_version: i32,
        keep: Option<Uuid>,
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<Result<Revocation, PasswordChangeRefused>, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else {
            return Ok(Err(PasswordChangeRefused::NotActive));
        };
        let before = to_user(&row)?;
        if before.status() != UserStatus::Active {
            return Ok(Err(PasswordChangeRefused::NotActive));
        }
        if row.password_version != verified_version {
            return Ok(Err(PasswordChangeRefused::PasswordChanged));
        }
        // The caller's login goes on, in whichever session it was rotated into
        // since its access token was issued.
        let kept_family = match keep {
            None => None,
            Some(session_id) => {
                let Some(session) = sessions::Entity::find_by_id(session_id).one(&txn).await.map_err(classify)? else {
                    return Ok(Err(PasswordChangeRefused::SessionEnded));
                };
                let live_tip = sessions::Entity::find()
                    .filter(sessions::Column::FamilyId.eq(session.family_id))
                    .filter(sessions::Column::RevokedAt.is_null())
                    .filter(sessions::Column::RotatedAt.is_null())
                    .one(&txn)
                    .await
                    .map_err(classify)?;
                if session.revoked_at.is_some() || live_tip.is_none() {
                    return Ok(Err(PasswordChangeRefused::SessionEnded));
                }
                Some(session.family_id)
            }
        };
        let mut after = before.clone();
        after.touch(now);
        save_password(&txn, &row, hash).await?;
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, kept_family, self.rotated_since(now), now).await?;
        spend_reset_tokens(&txn, user_id, now).await?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(Ok(Revocation { user: after, revoked_sessions, changed: true }))
    }

    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
    ) -> Result<Option<Revocation>, RepositoryError> {
        self.transition(user_id, now, |user| {
            user.revoke_tokens(now);
            true
        })
        .await
    }

    async fn disable(&self, user_id: UserId, now: OffsetDateTime) -> Result<Option<Revocation>, RepositoryError> {
        self.transition(user_id, now, |user| user.disable(now).is_ok()).await
    }

    async fn enable(&self, user_id: UserId, now: OffsetDateTime) -> Result<Option<Revocation>, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let before = to_user(&row)?;
        let mut after = before.clone();
        let changed = after.enable(now).is_ok();
        if changed {
            write_changes(&txn, &before, &after).await?;
            txn.commit().await.map_err(classify)?;
        }
        Ok(Some(Revocation { user: after, revoked_sessions: Vec::new(), changed }))
    }

    async fn delete(&self, user_id: UserId, event: &DomainEvent) -> Result<bool, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        // Foreign keys cascade to tokens and sessions.
        let deleted = users::Entity::delete_by_id(user_id.as_uuid()).exec(&txn).await.map_err(classify)?;
        if deleted.rows_affected == 0 {
            return Ok(false);
        }
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(true)
    }

    async fn list(&self, query: &UserListQuery) -> Result<Vec<User>, RepositoryError> {
        let mut select = users::Entity::find().order_by_asc(users::Column::Id).limit(query.limit);
        if let Some(status) = query.status {
            select = select.filter(users::Column::Status.eq(status.as_str()));
        }
        if let Some(prefix) = &query.email_prefix {
            select = select.filter(Expr::col(users::Column::Email).like(like_prefix(prefix)));
        }
        if let Some(after) = query.after {
            select = select.filter(users::Column::Id.gt(after.as_uuid()));
        }
        let rows = select.all(&self.db).await.map_err(classify)?;
        rows.iter().map(to_user).collect()
    }

    async fn record_event(&self, event: &DomainEvent) -> Result<(), RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(())
    }

    async fn count_password_reset_attempt(
        &self,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
        let limit = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        // The conditional increment is the count: of concurrent attempts over
        // the budget, none gets through, however they interleave.
        let counted = password_reset_tokens::Entity::update_many()
            .col_expr(
                password_reset_tokens::Column::Attempts,
                Expr::col(password_reset_tokens::Column::Attempts).add(1),
            )
            .filter(password_reset_tokens::Column::TokenHash.eq(hash.to_hex()))
            .filter(password_reset_tokens::Column::SpentAt.is_null())
            .filter(password_reset_tokens::Column::Attempts.lt(limit))
            .exec(&self.db)
            .await
            .map_err(classify)?;
        if counted.rows_affected != 1 {
            return Ok(None);
        }
        let row = password_reset_tokens::Entity::find()
            .filter(password_reset_tokens::Column::TokenHash.eq(hash.to_hex()))
            .one(&self.db)
            .await
            .map_err(classify)?;
        Ok(row.map(|row| SingleUseTokenRecord {
            user_id: UserId::from_uuid(row.user_id),
            expires_at: row.expires_at,
            is_spent: row.spent_at.is_some(),
        }))
    }

    async fn password_reset_history(
        &self,
        user_id: UserId,
        since: OffsetDateTime,
    ) -> Result<SendHistory, RepositoryError> {
        let rows = recent_reset_tokens(&self.db, user_id).await?;
        Ok(history_of(rows.iter().map(|row| row.created_at), since))
    }

    async fn replace_password_reset_token(
        &self,
        user_id: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        token: &NewSingleUseToken,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        if is_postgres(&txn) {
            users::Entity::find_by_id(user_id.as_uuid()).lock_exclusive().one(&txn).await.map_err(classify)?;
        }
        let newest = recent_reset_tokens(&txn, user_id).await?.first().map(|row| row.created_at);
        if newest != expected_last_sent_at {
            return Ok(false);
        }
        password_reset_tokens::Entity::update_many()
            .col_expr(password_reset_tokens::Column::SpentAt, Expr::value(token.created_at))
            .filter(password_reset_tokens::Column::UserId.eq(user_id.as_uuid()))
            .filter(password_reset_tokens::Column::SpentAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        let row = password_reset_tokens::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id.as_uuid()),
            token_hash: Set(token.hash.to_hex()),
            created_at: Set(token.created_at),
            expires_at: Set(token.expires_at),
            spent_at: Set(None),
            attempts: Set(0),
        };
        password_reset_tokens::Entity::insert(row).exec_without_returning(&txn).await.map_err(classify)?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(true)
    }

    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        user_id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<Option<Revocation>, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let claimed = password_reset_tokens::Entity::update_many()
            .col_expr(password_reset_tokens::Column::SpentAt, Expr::value(now))
            .filter(password_reset_tokens::Column::TokenHash.eq(token.to_hex()))
            .filter(password_reset_tokens::Column::UserId.eq(user_id.as_uuid()))
            .filter(password_reset_tokens::Column::SpentAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        let before = to_user(&row)?;
        if claimed.rows_affected != 1 || before.status() != UserStatus::Active {
            return Ok(None);
        }
        let mut after = before.clone();
        after.revoke_tokens(now);
        save_password(&txn, &row, hash).await?;
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, None, self.rotated_since(now), now).await?;
        spend_reset_tokens(&txn, user_id, now).await?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(Some(Revocation { user: after, revoked_sessions, changed: true }))
    }
}

impl SeaOrmUserRepository {
    /// A state transition that ends every session: under the user's lock,
    /// applies `change` to the user as stored now and writes what it changed.
    async fn transition(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        change: impl FnOnce(&mut User) -> bool + Send,
    ) -> Result<Option<Revocation>, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let before = to_user(&row)?;
        let mut after = before.clone();
        if !change(&mut after) {
            return Ok(Some(Revocation { user: before, revoked_sessions: Vec::new(), changed: false }));
        }
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, None, self.rotated_since(now), now).await?;
        txn.commit().await.map_err(classify)?;
        Ok(Some(Revocation { user: after, revoked_sessions, changed: true }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{DbBackend, QueryTrait};

    #[test]
    fn prefixes_match_literally() {
        let sql = users::Entity::find()
            .filter(Expr::col(users::Column::Email).like(like_prefix("a_b%c")))
            .build(DbBackend::Postgres)
            .to_string();
        assert!(sql.contains(r"LIKE E'a\\_b\\%c%' ESCAPE E'\\'") || sql.contains(r"a\_b\%c%"), "{sql}");
    }
}
