//! The one store of single-use tokens (email verification, password reset,
//! email change),
//! and the statements the account transactions use to spend them.

use anyhow::Context;
use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    SeaOrmUserRepository, classify,
    entities::single_use_tokens,
    outbox_store,
    user_lock::{Lock, lock_user},
    write_batch::WriteBatch,
};
use crate::domain::{
    DomainEvent, Email, TokenHash, UserId,
    ports::{
        EmailChangeTarget, NewSingleUseToken, RepositoryError, SendHistory, SingleUseTokenRecord, SingleUseTokens,
        TokenPurpose,
    },
};

/// More than the hourly resend cap, so that counting the newest rows is enough.
const HISTORY_ROWS: u64 = 16;

/// Rows of one purpose only.
pub(super) fn of_purpose(purpose: TokenPurpose) -> sea_orm::sea_query::SimpleExpr {
    single_use_tokens::Column::Purpose.eq(purpose.as_str())
}

fn record_of(row: single_use_tokens::Model) -> Result<SingleUseTokenRecord, RepositoryError> {
    let email_change = match row.new_email {
        None => None,
        Some(raw) => Some(EmailChangeTarget {
            new_email: Email::hydrate(raw)
                .with_context(|| format!("single-use token {} holds an invalid address", row.id))
                .map_err(RepositoryError::Unexpected)?,
            session_id: row.session_id,
        }),
    };
    Ok(SingleUseTokenRecord {
        user_id: UserId::from_uuid(row.user_id),
        expires_at: row.expires_at,
        is_spent: row.spent_at.is_some(),
        email_change,
    })
}

/// Stores a new, unspent token, as part of the caller's batch.
pub(super) fn push_insert(batch: &mut WriteBatch, purpose: TokenPurpose, user_id: UserId, token: &NewSingleUseToken) {
    batch.push_query(&single_use_tokens::Entity::insert(single_use_tokens::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id.as_uuid()),
        purpose: Set(purpose.as_str().to_owned()),
        token_hash: Set(token.hash.to_hex()),
        created_at: Set(token.created_at),
        expires_at: Set(token.expires_at),
        spent_at: Set(None),
        attempts: Set(0),
        new_email: Set(token.email_change.as_ref().map(|target| target.new_email.as_str().to_owned())),
        session_id: Set(token.email_change.as_ref().and_then(|target| target.session_id)),
    }));
}

/// Spends the user's token if it is still unspent; whether this call did. The
/// conditional update is the claim: of concurrent claims only one sees a row
/// affected (PostgreSQL re-checks the condition after the winner commits;
/// SQLite runs them one after another). Call it under the user's row lock.
pub(super) async fn claim(
    txn: &DatabaseTransaction,
    purpose: TokenPurpose,
    hash: &TokenHash,
    user_id: UserId,
    at: OffsetDateTime,
) -> Result<bool, RepositoryError> {
    let claimed = single_use_tokens::Entity::update_many()
        .col_expr(single_use_tokens::Column::SpentAt, Expr::value(at))
        .filter(of_purpose(purpose))
        .filter(single_use_tokens::Column::TokenHash.eq(hash.to_hex()))
        .filter(single_use_tokens::Column::UserId.eq(user_id.as_uuid()))
        .filter(single_use_tokens::Column::SpentAt.is_null())
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(claimed.rows_affected == 1)
}

/// Spends every outstanding token of the user for this purpose.
pub(super) async fn spend_outstanding(
    txn: &DatabaseTransaction,
    purpose: TokenPurpose,
    user_id: UserId,
    at: OffsetDateTime,
) -> Result<(), RepositoryError> {
    single_use_tokens::Entity::update_many()
        .col_expr(single_use_tokens::Column::SpentAt, Expr::value(at))
        .filter(of_purpose(purpose))
        .filter(single_use_tokens::Column::UserId.eq(user_id.as_uuid()))
        .filter(single_use_tokens::Column::SpentAt.is_null())
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Creation times of the user's newest tokens for this purpose, newest first.
async fn recent(
    db: &impl ConnectionTrait,
    purpose: TokenPurpose,
    user_id: UserId,
) -> Result<Vec<OffsetDateTime>, RepositoryError> {
    // Ids are UUIDv7, so id order is creation order on both backends.
    single_use_tokens::Entity::find()
        .select_only()
        .column(single_use_tokens::Column::CreatedAt)
        .filter(single_use_tokens::Column::UserId.eq(user_id.as_uuid()))
        .filter(of_purpose(purpose))
        .order_by_desc(single_use_tokens::Column::Id)
        .limit(HISTORY_ROWS)
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)
}

/// What was sent since `since`, from the creation times of the newest rows
/// (newest first): tokens or notices alike.
pub(super) fn history_of(newest_first: impl IntoIterator<Item = OffsetDateTime>, since: OffsetDateTime) -> SendHistory {
    let mut created = newest_first.into_iter().peekable();
    let last_sent_at = created.peek().copied();
    let sent_since = created.filter(|at| *at >= since).count();
    SendHistory { sent_since: u32::try_from(sent_since).unwrap_or(u32::MAX), last_sent_at }
}

#[async_trait]
impl SingleUseTokens for SeaOrmUserRepository {
    async fn find(
        &self,
        purpose: TokenPurpose,
        hash: &TokenHash,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
        let row = single_use_tokens::Entity::find()
            .filter(of_purpose(purpose))
            .filter(single_use_tokens::Column::TokenHash.eq(hash.to_hex()))
            .one(&self.db)
            .await
            .map_err(classify)?;
        row.map(record_of).transpose()
    }

    async fn count_attempt(
        &self,
        purpose: TokenPurpose,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<SingleUseTokenRecord>, RepositoryError> {
        let limit = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        // The conditional increment is the count: of concurrent attempts over
        // the budget, none gets through, however they interleave.
        let counted = single_use_tokens::Entity::update_many()
            .col_expr(single_use_tokens::Column::Attempts, Expr::col(single_use_tokens::Column::Attempts).add(1))
            .filter(of_purpose(purpose))
            .filter(single_use_tokens::Column::TokenHash.eq(hash.to_hex()))
            .filter(single_use_tokens::Column::SpentAt.is_null())
            .filter(single_use_tokens::Column::Attempts.lt(limit))
            .exec(&self.db)
            .await
            .map_err(classify)?;
        if counted.rows_affected != 1 {
            return Ok(None);
        }
        self.find(purpose, hash).await
    }

    async fn history(
        &self,
        purpose: TokenPurpose,
        user_id: UserId,
        since: OffsetDateTime,
    ) -> Result<SendHistory, RepositoryError> {
        Ok(history_of(recent(&self.db, purpose, user_id).await?, since))
    }

    async fn replace(
        &self,
        purpose: TokenPurpose,
        user_id: UserId,
        expected_last_sent_at: Option<OffsetDateTime>,
        token: &NewSingleUseToken,
        events: &[DomainEvent],
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // The user's row first, as every account change takes it: concurrent
        // replacements for one user run one after another, and none deadlocks
        // against a verification or a reset (user, then tokens).
        if lock_user(&txn, user_id, Lock::Update).await?.is_none() {
            return Ok(false);
        }
        let newest = recent(&txn, purpose, user_id).await?.first().copied();
        if newest != expected_last_sent_at {
            return Ok(false);
        }
        spend_outstanding(&txn, purpose, user_id, token.created_at).await?;
        let mut writes = WriteBatch::new(&txn);
        push_insert(&mut writes, purpose, user_id, token);
        outbox_store::commit_with_events(txn, writes, events, &self.outbox_written).await?;
        Ok(true)
    }
}
