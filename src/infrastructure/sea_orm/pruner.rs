use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{LockBehavior, LockType, Query},
};
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    classify,
    entities::{login_throttles, mfa_challenges, sessions, single_use_tokens, user_totp, users},
    is_postgres, outbox_store,
    single_use_tokens::of_purpose,
};
use crate::domain::{
    DomainEvent, UserChange, UserEvent, UserId, UserStatus,
    ports::{PruneCutoffs, PruneReport, Pruner, RepositoryError, TokenPurpose},
};

/// Deletes at most `batch` rows of `E` that are `stale`: selects their keys
/// first, then deletes those keys whose rows are still stale.
async fn delete_batch<E, K>(
    db: &DatabaseConnection,
    key: E::Column,
    stale: Condition,
    batch: u64,
) -> Result<u64, RepositoryError>
where
    E: EntityTrait,
    K: sea_orm::TryGetableMany + Into<sea_orm::Value> + Send + Sync,
{
    let keys: Vec<K> = E::find()
        .select_only()
        .column(key)
        .filter(stale.clone())
        .limit(batch)
        .into_tuple()
        .all(db)
        .await
        .map_err(classify)?;
    if keys.is_empty() {
        return Ok(0);
    }
    let deleted = E::delete_many().filter(key.is_in(keys)).filter(stale).exec(db).await.map_err(classify)?;
    Ok(deleted.rows_affected)
}

/// Deletes stale rows in batches: each delete names at most `batch` primary keys
/// it selected first (and re-checks the condition), so one run holds no lock
/// for long and its work is bounded, on SQLite and PostgreSQL alike.
#[derive(Clone)]
pub struct SeaOrmPruner {
    db: DatabaseConnection,
    /// Woken after pending users were deleted: their `user.deleted` events wait.
    outbox_written: Arc<Notify>,
}

impl SeaOrmPruner {
    pub fn new(db: DatabaseConnection, outbox_written: Arc<Notify>) -> Self {
        Self { db, outbox_written }
    }

    async fn sessions(&self, c: &PruneCutoffs, batch: u64) -> Result<u64, RepositoryError> {
        let stale = Condition::any()
            .add(sessions::Column::ExpiresAt.lt(c.sessions))
            .add(sessions::Column::RevokedAt.lt(c.sessions))
            .add(sessions::Column::RotatedAt.lt(c.sessions));
        delete_batch::<sessions::Entity, Uuid>(&self.db, sessions::Column::Id, stale, batch).await
    }

    async fn login_throttles(&self, c: &PruneCutoffs, batch: u64) -> Result<u64, RepositoryError> {
        // A row that still locks its address must stay, however old its last
        // failure; so must one that marks an address the owner logs in from.
        let stale = Condition::all()
            .add(login_throttles::Column::LastFailureAt.lt(c.login_throttles))
            .add(
                Condition::any()
                    .add(login_throttles::Column::LockedUntil.is_null())
                    .add(login_throttles::Column::LockedUntil.lte(c.now)),
            )
            .add(
                Condition::any()
                    .add(login_throttles::Column::LastSuccessAt.is_null())
                    .add(login_throttles::Column::LastSuccessAt.lt(c.known_addresses)),
            );
        delete_batch::<login_throttles::Entity, String>(&self.db, login_throttles::Column::EmailHash, stale, batch)
            .await
    }

    /// Deletes at most `batch` single-use tokens that are `stale`.
    async fn tokens(&self, stale: Condition, batch: u64) -> Result<u64, RepositoryError> {
        delete_batch::<single_use_tokens::Entity, Uuid>(&self.db, single_use_tokens::Column::Id, stale, batch).await
    }

    async fn verification_tokens(&self, c: &PruneCutoffs, batch: u64) -> Result<u64, RepositoryError> {
        // A pending user's unspent token is their last one: it stays, expired or
        // not, because it tells how long ago the sign-up was abandoned (the user
        // and it go together, below).
        let pending = Query::select()
            .column(users::Column::Id)
            .from(users::Entity)
            .and_where(users::Column::Status.eq(UserStatus::PendingVerification.as_str()))
            .to_owned();
        let stale = Condition::all().add(of_purpose(TokenPurpose::EmailVerification)).add(
            Condition::any().add(single_use_tokens::Column::SpentAt.lt(c.single_use_tokens)).add(
                Condition::all()
                    .add(single_use_tokens::Column::ExpiresAt.lt(c.single_use_tokens))
                    .add(single_use_tokens::Column::UserId.not_in_subquery(pending)),
            ),
        );
        self.tokens(stale, batch).await
    }

    async fn password_reset_tokens(&self, c: &PruneCutoffs, batch: u64) -> Result<u64, RepositoryError> {
        let stale = Condition::all().add(of_purpose(TokenPurpose::PasswordReset)).add(
            Condition::any()
                .add(single_use_tokens::Column::SpentAt.lt(c.single_use_tokens))
                .add(single_use_tokens::Column::ExpiresAt.lt(c.single_use_tokens)),
        );
        self.tokens(stale, batch).await
    }

    /// Users still pending verification, signed up before the cut-off, with no
    /// verification token that expires after it. Deleted with a `user.deleted`
    /// event each, like an operator's deletion; their tokens cascade.
    async fn pending_users(&self, c: &PruneCutoffs, batch: u64) -> Result<u64, RepositoryError> {
        let live_tokens = Query::select()
            .column(single_use_tokens::Column::UserId)
            .from(single_use_tokens::Entity)
            .and_where(of_purpose(TokenPurpose::EmailVerification))
            .and_where(single_use_tokens::Column::ExpiresAt.gte(c.pending_users))
            .to_owned();
        let abandoned = Condition::all()
            .add(users::Column::Status.eq(UserStatus::PendingVerification.as_str()))
            .add(users::Column::CreatedAt.lt(c.pending_users))
            .add(users::Column::Id.not_in_subquery(live_tokens));
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let mut candidates =
            users::Entity::find().select_only().column(users::Column::Id).filter(abandoned.clone()).limit(batch);
        if is_postgres(&txn) {
            // A resend or verification holds the user's row lock: skip that user
            // this time rather than delete it from under them.
            candidates = candidates.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let ids: Vec<Uuid> = candidates.into_tuple().all(&txn).await.map_err(classify)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = users::Entity::delete_many()
            .filter(users::Column::Id.is_in(ids.clone()))
            .filter(abandoned)
            .exec(&txn)
            .await
            .map_err(classify)?;
        if deleted.rows_affected != u64::try_from(ids.len()).unwrap_or(u64::MAX) {
            // One changed in the meantime, and the events must name exactly the
            // users deleted: roll back, the next run tries again.
            return Ok(0);
        }
        for id in &ids {
            let event = DomainEvent::User(UserEvent::new(UserId::from_uuid(*id), c.now, UserChange::Deleted));
            outbox_store::insert_event(&txn, &event).await?;
        }
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(deleted.rows_affected)
    }
}

#[async_trait]
impl Pruner for SeaOrmPruner {
    async fn prune(&self, cutoffs: &PruneCutoffs, batch: u64) -> Result<PruneReport, RepositoryError> {
        Ok(PruneReport {
            sessions: self.sessions(cutoffs, batch).await?,
            login_throttles: self.login_throttles(cutoffs, batch).await?,
            verification_tokens: self.verification_tokens(cutoffs, batch).await?,
            password_reset_tokens: self.password_reset_tokens(cutoffs, batch).await?,
            pending_users: self.pending_users(cutoffs, batch).await?,
            // An expired challenge opens nothing, spent or not.
            mfa_challenges: delete_batch::<mfa_challenges::Entity, Uuid>(
                &self.db,
                mfa_challenges::Column::Id,
                Condition::all().add(mfa_challenges::Column::ExpiresAt.lt(cutoffs.now)),
                batch,
            )
            .await?,
            // An enrolment never confirmed in time: its secret opens nothing,
            // and while it stays the server would demand the key at start-up.
            // The condition is re-checked by the delete, so an enrolment
            // confirmed meanwhile stays.
            pending_enrolments: delete_batch::<user_totp::Entity, Uuid>(
                &self.db,
                user_totp::Column::UserId,
                Condition::all()
                    .add(user_totp::Column::ConfirmedAt.is_null())
                    .add(user_totp::Column::PendingExpiresAt.lt(cutoffs.now)),
                batch,
            )
            .await?,
        })
    }
}
