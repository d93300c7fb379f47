use async_trait::async_trait;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LikeExpr, Query},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    SeaOrmUserRepository, classify,
    entities::{sessions, users},
    errors::is_unique_violation,
    outbox_store, single_use_tokens,
    user_lock::{Lock, lock_user, revoke_sessions, try_write_changes, write_changes},
    user_repository::{credentials_of, to_user},
    write_batch::WriteBatch,
};
use crate::domain::{
    DomainEvent, Email, PasswordHash, TokenHash, User, UserId, UserStatus,
    ports::{
        AccountRepository, EmailChangeRefused, EmailChangeTarget, NewSingleUseToken, PasswordChangeRefused,
        RepositoryError, Revocation, StoredCredentials, TokenPurpose, UserListQuery,
    },
};

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
    single_use_tokens::spend_outstanding(txn, TokenPurpose::PasswordReset, user_id, now).await
}

/// The family of `session_id` if its login is still live (its newest session
/// neither revoked nor rotated): the login a change keeps going.
async fn live_family(txn: &DatabaseTransaction, session_id: Uuid) -> Result<Option<Uuid>, RepositoryError> {
    let family_of_kept = Query::select()
        .column(sessions::Column::FamilyId)
        .from(sessions::Entity)
        .and_where(sessions::Column::Id.eq(session_id))
        .to_owned();
    let live_tip = sessions::Entity::find()
        .filter(sessions::Column::FamilyId.in_subquery(family_of_kept))
        .filter(sessions::Column::RevokedAt.is_null())
        .filter(sessions::Column::RotatedAt.is_null())
        .one(txn)
        .await
        .map_err(classify)?;
    Ok(live_tip.map(|tip| tip.family_id))
}

/// Writes the new address; the unique index refuses one another account holds
/// (of concurrent changes to one address, the first to commit wins).
async fn write_new_address(
    txn: &DatabaseTransaction,
    before: &User,
    after: &User,
) -> Result<Result<(), EmailChangeRefused>, RepositoryError> {
    match try_write_changes(txn, before, after).await {
        Ok(()) => Ok(Ok(())),
        Err(error) if is_unique_violation(&error) => Ok(Err(EmailChangeRefused::EmailTaken)),
        Err(error) => Err(classify(error)),
    }
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
    async fn complete_email_change(
        &self,
        token: &TokenHash,
        read: &User,
        target: &EmailChangeTarget,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError> {
        let user_id = read.id();
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else {
            return Ok(Err(EmailChangeRefused::NoLongerApplies));
        };
        let before = to_user(&row)?;
        if before.email() != read.email() {
            return Ok(Err(EmailChangeRefused::ChangedMeanwhile));
        }
        if before.status() != UserStatus::Active
            || !single_use_tokens::claim(&txn, TokenPurpose::EmailChange, token, user_id, now).await?
        {
            return Ok(Err(EmailChangeRefused::NoLongerApplies));
        }
        let mut after = before.clone();
        after.change_email(target.new_email.clone(), true, now);
        if let Err(refused) = write_new_address(&txn, &before, &after).await? {
            return Ok(Err(refused));
        }
        // The login that asked goes on (if it still does); every other ends.
        let kept_family = match target.session_id {
            Some(session_id) => live_family(&txn, session_id).await?,
            None => None,
        };
        let revoked_sessions = revoke_sessions(&txn, user_id, kept_family, self.rotated_since(now), now).await?;
        single_use_tokens::spend_outstanding(&txn, TokenPurpose::EmailChange, user_id, now).await?;
        self.commit_with_events(txn, &kept(events, kept_family)).await?;
        Ok(Ok(Revocation { user: after, revoked_sessions, changed: true }))
    }

    async fn set_email(
        &self,
        read: &User,
        email: &Email,
        is_verified: bool,
        now: OffsetDateTime,
        verification: Option<&NewSingleUseToken>,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, EmailChangeRefused>, RepositoryError> {
        let user_id = read.id();
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else {
            return Ok(Err(EmailChangeRefused::NoLongerApplies));
        };
        let before = to_user(&row)?;
        if before.email() != read.email() {
            return Ok(Err(EmailChangeRefused::ChangedMeanwhile));
        }
        let mut after = before.clone();
        after.change_email(email.clone(), is_verified, now);
        after.revoke_tokens(now);
        if let Err(refused) = write_new_address(&txn, &before, &after).await? {
            return Ok(Err(refused));
        }
        let revoked_sessions = revoke_sessions(&txn, user_id, None, self.rotated_since(now), now).await?;
        single_use_tokens::spend_outstanding(&txn, TokenPurpose::EmailChange, user_id, now).await?;
        // Links to the old address verify nothing any more.
        single_use_tokens::spend_outstanding(&txn, TokenPurpose::EmailVerification, user_id, now).await?;
        let mut writes = WriteBatch::new(&txn);
        if let Some(token) = verification {
            single_use_tokens::push_insert(&mut writes, TokenPurpose::EmailVerification, user_id, token);
        }
        outbox_store::commit_with_events(txn, writes, events, &self.outbox_written).await?;
        Ok(Ok(Revocation { user: after, revoked_sessions, changed: true }))
    }

    async fn find_credentials_by_id(&self, id: UserId) -> Result<Option<(User, StoredCredentials)>, RepositoryError> {
        let row = users::Entity::find_by_id(id.as_uuid()).one(&self.reads).await.map_err(classify)?;
        row.map(|row| Ok((to_user(&row)?, credentials_of(row)))).transpose()
    }

    async fn change_password(
        &self,
        user_id: UserId,
        hash: &PasswordHash,
        verified_version: i32,
        keep: Option<Uuid>,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Result<Revocation, PasswordChangeRefused>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
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
            Some(session_id) => match live_family(&txn, session_id).await? {
                Some(family) => Some(family),
                None => return Ok(Err(PasswordChangeRefused::SessionEnded)),
            },
        };
        let mut after = before.clone();
        after.touch(now);
        save_password(&txn, &row, hash).await?;
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, kept_family, self.rotated_since(now), now).await?;
        spend_reset_tokens(&txn, user_id, now).await?;
        self.commit_with_events(txn, &kept(events, kept_family)).await?;
        Ok(Ok(Revocation { user: after, revoked_sessions, changed: true }))
    }

    async fn revoke_all_sessions(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        self.transition(user_id, now, events, |user| {
            user.revoke_tokens(now);
            true
        })
        .await
    }

    async fn disable(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        self.transition(user_id, now, events, |user| user.disable(now).is_ok()).await
    }

    async fn enable(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let before = to_user(&row)?;
        let mut after = before.clone();
        let changed = after.enable(now).is_ok();
        if changed {
            write_changes(&txn, &before, &after).await?;
            self.commit_with_events(txn, events).await?;
        }
        Ok(Some(Revocation { user: after, revoked_sessions: Vec::new(), changed }))
    }

    async fn delete(&self, user_id: UserId, event: &DomainEvent) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
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
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(())
    }

    async fn complete_password_reset(
        &self,
        token: &TokenHash,
        user_id: UserId,
        hash: &PasswordHash,
        now: OffsetDateTime,
        events: &[DomainEvent],
    ) -> Result<Option<Revocation>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let claimed = single_use_tokens::claim(&txn, TokenPurpose::PasswordReset, token, user_id, now).await?;
        let before = to_user(&row)?;
        if !claimed || before.status() != UserStatus::Active {
            return Ok(None);
        }
        let mut after = before.clone();
        after.revoke_tokens(now);
        save_password(&txn, &row, hash).await?;
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, None, self.rotated_since(now), now).await?;
        spend_reset_tokens(&txn, user_id, now).await?;
        self.commit_with_events(txn, events).await?;
        Ok(Some(Revocation { user: after, revoked_sessions, changed: true }))
    }
}

impl SeaOrmUserRepository {
    pub(super) async fn commit_with_events(
        &self,
        txn: DatabaseTransaction,
        events: &[DomainEvent],
    ) -> Result<(), RepositoryError> {
        outbox_store::commit_with_events(txn, WriteBatch::new(&self.db), events, &self.outbox_written).await
    }

    /// A state transition that ends every session: under the user's lock,
    /// applies `change` to the user as stored now and writes what it changed.
    async fn transition(
        &self,
        user_id: UserId,
        now: OffsetDateTime,
        events: &[DomainEvent],
        change: impl FnOnce(&mut User) -> bool + Send,
    ) -> Result<Option<Revocation>, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(row) = lock_user(&txn, user_id, Lock::Update).await? else { return Ok(None) };
        let before = to_user(&row)?;
        let mut after = before.clone();
        if !change(&mut after) {
            return Ok(Some(Revocation { user: before, revoked_sessions: Vec::new(), changed: false }));
        }
        write_changes(&txn, &before, &after).await?;
        let revoked_sessions = revoke_sessions(&txn, user_id, None, self.rotated_since(now), now).await?;
        self.commit_with_events(txn, events).await?;
        Ok(Some(Revocation { user: after, revoked_sessions, changed: true }))
    }
}

/// The events, with a revocation of all but the caller's login naming the
/// login actually kept (found under the user's lock).
fn kept(events: &[DomainEvent], kept_family: Option<Uuid>) -> Vec<DomainEvent> {
    events.iter().cloned().map(|event| event.with_kept_session(kept_family)).collect()
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
