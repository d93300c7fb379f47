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
    user_repository::{history_of, to_user},
};
use crate::domain::{
    DomainEvent, PasswordHash, TokenHash, User, UserId,
    ports::{
        AccountRepository, NewSingleUseToken, RepositoryError, SendHistory, SessionRevocation, SingleUseTokenRecord,
        UserListQuery,
    },
};

/// More than the hourly cap, so that counting the newest rows is enough.
const HISTORY_ROWS: u64 = 16;

/// Revokes the live sessions of a user (all, or all but one); returns how many.
pub(super) async fn revoke_sessions(
    txn: &impl ConnectionTrait,
    user_id: UserId,
    except: Option<Uuid>,
    now: OffsetDateTime,
) -> Result<u64, RepositoryError> {
    let mut update = sessions::Entity::update_many()
        .col_expr(sessions::Column::RevokedAt, Expr::value(now))
        .filter(sessions::Column::UserId.eq(user_id.as_uuid()))
        .filter(sessions::Column::RevokedAt.is_null());
    if let Some(kept) = except {
        update = update.filter(sessions::Column::Id.ne(kept));
    }
    Ok(update.exec(txn).await.map_err(classify)?.rows_affected)
}

async fn save_state(txn: &DatabaseTransaction, user: &User) -> Result<(), RepositoryError> {
    users::Entity::update_many()
        .col_expr(users::Column::Status, Expr::value(user.status().as_str()))
        .col_expr(users::Column::UpdatedAt, Expr::value(user.updated_at()))
        .col_expr(users::Column::TokensValidAfter, Expr::value(user.tokens_valid_after()))
        .filter(users::Column::Id.eq(user.id().as_uuid()))
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}

async fn save_password(
    txn: &DatabaseTransaction,
    user_id: UserId,
    hash: &PasswordHash,
    now: OffsetDateTime,
) -> Result<(), RepositoryError> {
    users::Entity::update_many()
        .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
        .col_expr(users::Column::UpdatedAt, Expr::value(now))
        .filter(users::Column::Id.eq(user_id.as_uuid()))
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
    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, PasswordHash)>, RepositoryError> {
        let row = users::Entity::find_by_id(id.as_uuid()).one(&self.db).await.map_err(classify)?;
        row.map(|row| Ok((to_user(&row)?, PasswordHash::from_phc(row.password_hash)))).transpose()
    }

    async fn change_password(
        &self,
        user: &User,
        hash: &PasswordHash,
        revoke: SessionRevocation,
        event: &DomainEvent,
    ) -> Result<(), RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        save_password(&txn, user.id(), hash, user.updated_at()).await?;
        let except = match revoke {
            SessionRevocation::All => None,
            SessionRevocation::AllExcept(kept) => Some(kept),
        };
        revoke_sessions(&txn, user.id(), except, user.updated_at()).await?;
        save_state(&txn, user).await?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(())
    }

    async fn upgrade_password_hash(&self, user_id: UserId, hash: &PasswordHash) -> Result<(), RepositoryError> {
        users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
            .filter(users::Column::Id.eq(user_id.as_uuid()))
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn save_account_state(&self, user: &User, revoke_sessions_too: bool) -> Result<u64, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        save_state(&txn, user).await?;
        let revoked =
            if revoke_sessions_too { revoke_sessions(&txn, user.id(), None, user.updated_at()).await? } else { 0 };
        txn.commit().await.map_err(classify)?;
        Ok(revoked)
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

    async fn find_password_reset_token(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
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
        user: &User,
        hash: &PasswordHash,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError> {
        let now = user.updated_at();
        let txn = self.db.begin().await.map_err(classify)?;
        let claimed = password_reset_tokens::Entity::update_many()
            .col_expr(password_reset_tokens::Column::SpentAt, Expr::value(now))
            .filter(password_reset_tokens::Column::TokenHash.eq(token.to_hex()))
            .filter(password_reset_tokens::Column::SpentAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        if claimed.rows_affected != 1 {
            return Ok(false);
        }
        save_password(&txn, user.id(), hash, now).await?;
        revoke_sessions(&txn, user.id(), None, now).await?;
        save_state(&txn, user).await?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(true)
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
