//! TOTP enrolments, recovery codes and login challenges in SQL. Every use of a
//! second factor is a conditional update (a step only if newer than the last
//! one accepted, a recovery code only if unused, a challenge only if unspent):
//! of concurrent uses exactly one sees a row affected (PostgreSQL re-checks the
//! condition after the winner commits; SQLite runs them one after another).

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    SeaOrmUserRepository, classify,
    entities::{mfa_challenges, recovery_codes, sessions, user_totp, users},
    known_devices, outbox_store,
    session_repository::row as session_row,
    user_lock::{Lock, lock_user},
    user_repository::to_user,
};
use crate::domain::{
    DomainEvent, TokenHash, UserId,
    ports::{
        DeviceSighting, MfaChallengeRecord, MfaLoginCommit, MfaRepository, NewMfaChallenge, NewSession,
        RepositoryError, SecondFactorProof, TotpEnrollment,
    },
};

/// Whether any user has TOTP set up (pending or confirmed): start-up refuses
/// to run without the key that opens their secrets.
///
/// # Errors
/// Storage failures only.
pub async fn has_totp_secrets(db: &DatabaseConnection) -> Result<bool, RepositoryError> {
    Ok(user_totp::Entity::find().count(db).await.map_err(classify)? > 0)
}

/// Spends a second factor; whether this call did.
async fn spend(
    txn: &DatabaseTransaction,
    user_id: UserId,
    proof: &SecondFactorProof,
    now: OffsetDateTime,
) -> Result<bool, RepositoryError> {
    let result = match proof {
        SecondFactorProof::TotpStep(step) => {
            user_totp::Entity::update_many()
                .col_expr(user_totp::Column::LastStep, Expr::value(*step))
                .filter(user_totp::Column::UserId.eq(user_id.as_uuid()))
                .filter(user_totp::Column::ConfirmedAt.is_not_null())
                .filter(
                    Condition::any()
                        .add(user_totp::Column::LastStep.is_null())
                        .add(user_totp::Column::LastStep.lt(*step)),
                )
                .exec(txn)
                .await
        }
        SecondFactorProof::RecoveryCode(hash) => {
            recovery_codes::Entity::update_many()
                .col_expr(recovery_codes::Column::UsedAt, Expr::value(now))
                .filter(recovery_codes::Column::UserId.eq(user_id.as_uuid()))
                .filter(recovery_codes::Column::CodeHash.eq(hash.to_hex()))
                .filter(recovery_codes::Column::UsedAt.is_null())
                .exec(txn)
                .await
        }
    };
    Ok(result.map_err(classify)?.rows_affected == 1)
}

/// Replaces every recovery code of the user with these.
async fn store_recovery_codes(
    txn: &DatabaseTransaction,
    user_id: UserId,
    codes: &[TokenHash],
    now: OffsetDateTime,
) -> Result<(), RepositoryError> {
    recovery_codes::Entity::delete_many()
        .filter(recovery_codes::Column::UserId.eq(user_id.as_uuid()))
        .exec(txn)
        .await
        .map_err(classify)?;
    if codes.is_empty() {
        return Ok(());
    }
    let rows = codes.iter().map(|hash| recovery_codes::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id.as_uuid()),
        code_hash: Set(hash.to_hex()),
        created_at: Set(now),
        used_at: Set(None),
    });
    recovery_codes::Entity::insert_many(rows).exec_without_returning(txn).await.map_err(classify)?;
    Ok(())
}

async fn set_mfa_enabled(
    txn: &DatabaseTransaction,
    user_id: UserId,
    enabled_at: Option<OffsetDateTime>,
) -> Result<(), RepositoryError> {
    users::Entity::update_many()
        .col_expr(users::Column::MfaEnabledAt, Expr::value(enabled_at))
        .filter(users::Column::Id.eq(user_id.as_uuid()))
        .exec(txn)
        .await
        .map_err(classify)?;
    Ok(())
}

#[async_trait]
impl MfaRepository for SeaOrmUserRepository {
    async fn find_totp(&self, user_id: UserId) -> Result<Option<TotpEnrollment>, RepositoryError> {
        let found = user_totp::Entity::find_by_id(user_id.as_uuid()).one(&self.db).await.map_err(classify)?;
        Ok(found.map(|row| TotpEnrollment {
            ciphertext: row.secret_ciphertext,
            is_confirmed: row.confirmed_at.is_some(),
            pending_expires_at: row.pending_expires_at,
            last_step: row.last_step,
        }))
    }

    async fn save_pending_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        if lock_user(&txn, user_id, Lock::Update).await?.is_none() {
            return Ok(false);
        }
        // Only a pending secret is replaced; a confirmed one stays until disabled.
        user_totp::Entity::delete_many()
            .filter(user_totp::Column::UserId.eq(user_id.as_uuid()))
            .filter(user_totp::Column::ConfirmedAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        let confirmed = user_totp::Entity::find_by_id(user_id.as_uuid()).count(&txn).await.map_err(classify)?;
        if confirmed > 0 {
            return Ok(false);
        }
        let row = user_totp::ActiveModel {
            user_id: Set(user_id.as_uuid()),
            secret_ciphertext: Set(ciphertext.to_owned()),
            created_at: Set(now),
            pending_expires_at: Set(expires_at),
            confirmed_at: Set(None),
            last_step: Set(None),
        };
        user_totp::Entity::insert(row).exec_without_returning(&txn).await.map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn confirm_totp(
        &self,
        user_id: UserId,
        ciphertext: &str,
        step: i64,
        codes: &[TokenHash],
        now: OffsetDateTime,
        event: &DomainEvent,
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        if lock_user(&txn, user_id, Lock::Update).await?.is_none() {
            return Ok(false);
        }
        let confirmed = user_totp::Entity::update_many()
            .col_expr(user_totp::Column::ConfirmedAt, Expr::value(now))
            .col_expr(user_totp::Column::LastStep, Expr::value(step))
            .filter(user_totp::Column::UserId.eq(user_id.as_uuid()))
            .filter(user_totp::Column::SecretCiphertext.eq(ciphertext))
            .filter(user_totp::Column::ConfirmedAt.is_null())
            .filter(user_totp::Column::PendingExpiresAt.gt(now))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if confirmed.rows_affected != 1 {
            return Ok(false);
        }
        store_recovery_codes(&txn, user_id, codes, now).await?;
        set_mfa_enabled(&txn, user_id, Some(now)).await?;
        outbox_store::insert_event(&txn, event).await?;
        txn.commit().await.map_err(classify)?;
        self.outbox_written.notify_one();
        Ok(true)
    }

    async fn replace_recovery_codes(
        &self,
        user_id: UserId,
        proof: &SecondFactorProof,
        codes: &[TokenHash],
        now: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        if lock_user(&txn, user_id, Lock::Update).await?.is_none() || !spend(&txn, user_id, proof, now).await? {
            return Ok(false);
        }
        store_recovery_codes(&txn, user_id, codes, now).await?;
        txn.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn disable_totp(
        &self,
        user_id: UserId,
        proof: Option<&SecondFactorProof>,
        now: OffsetDateTime,
        event: Option<&DomainEvent>,
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        if lock_user(&txn, user_id, Lock::Update).await?.is_none() {
            return Ok(false);
        }
        if let Some(proof) = proof
            && !spend(&txn, user_id, proof, now).await?
        {
            return Ok(false);
        }
        let removed = user_totp::Entity::delete_many()
            .filter(user_totp::Column::UserId.eq(user_id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if removed.rows_affected == 0 {
            return Ok(false);
        }
        store_recovery_codes(&txn, user_id, &[], now).await?;
        mfa_challenges::Entity::delete_many()
            .filter(mfa_challenges::Column::UserId.eq(user_id.as_uuid()))
            .exec(&txn)
            .await
            .map_err(classify)?;
        set_mfa_enabled(&txn, user_id, None).await?;
        if let Some(event) = event {
            outbox_store::insert_event(&txn, event).await?;
        }
        txn.commit().await.map_err(classify)?;
        if event.is_some() {
            self.outbox_written.notify_one();
        }
        Ok(true)
    }

    async fn insert_challenge(&self, challenge: &NewMfaChallenge) -> Result<(), RepositoryError> {
        let row = mfa_challenges::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(challenge.user_id.as_uuid()),
            token_hash: Set(challenge.token_hash.to_hex()),
            password_version: Set(challenge.password_version),
            created_at: Set(challenge.created_at),
            expires_at: Set(challenge.expires_at),
            attempts: Set(0),
            spent_at: Set(None),
        };
        mfa_challenges::Entity::insert(row).exec_without_returning(&self.db).await.map_err(classify)?;
        Ok(())
    }

    async fn count_challenge_attempt(
        &self,
        hash: &TokenHash,
        max_attempts: u32,
    ) -> Result<Option<MfaChallengeRecord>, RepositoryError> {
        let max_attempts = i32::try_from(max_attempts).unwrap_or(i32::MAX);
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // Counted before the code is checked: concurrent guesses cannot all
        // slip in under the limit.
        let counted = mfa_challenges::Entity::update_many()
            .col_expr(mfa_challenges::Column::Attempts, Expr::col(mfa_challenges::Column::Attempts).add(1))
            .filter(mfa_challenges::Column::TokenHash.eq(hash.to_hex()))
            .filter(mfa_challenges::Column::SpentAt.is_null())
            .filter(mfa_challenges::Column::Attempts.lt(max_attempts))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if counted.rows_affected != 1 {
            return Ok(None);
        }
        let row = mfa_challenges::Entity::find()
            .filter(mfa_challenges::Column::TokenHash.eq(hash.to_hex()))
            .one(&txn)
            .await
            .map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(row.map(|row| MfaChallengeRecord {
            user_id: UserId::from_uuid(row.user_id),
            password_version: row.password_version,
            expires_at: row.expires_at,
        }))
    }

    async fn complete_login(
        &self,
        challenge: &TokenHash,
        proof: &SecondFactorProof,
        session: &NewSession,
        verified_version: i32,
        events: &[DomainEvent],
        device: Option<&DeviceSighting>,
    ) -> Result<MfaLoginCommit, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        let Some(user_row) = lock_user(&txn, session.user_id, Lock::Share).await? else {
            return Ok(MfaLoginCommit::CredentialsChanged);
        };
        if user_row.password_version != verified_version || user_row.mfa_enabled_at.is_none() {
            return Ok(MfaLoginCommit::CredentialsChanged);
        }
        if let Err(refusal) = to_user(&user_row)?.ensure_can_log_in() {
            return Ok(MfaLoginCommit::Refused(refusal));
        }
        let claimed = mfa_challenges::Entity::update_many()
            .col_expr(mfa_challenges::Column::SpentAt, Expr::value(session.created_at))
            .filter(mfa_challenges::Column::TokenHash.eq(challenge.to_hex()))
            .filter(mfa_challenges::Column::UserId.eq(session.user_id.as_uuid()))
            .filter(mfa_challenges::Column::SpentAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        if claimed.rows_affected != 1 {
            return Ok(MfaLoginCommit::ChallengeSpent);
        }
        // Dropping the transaction rolls the challenge's claim back: a replayed
        // code costs an attempt, not the challenge.
        if !spend(&txn, session.user_id, proof, session.created_at).await? {
            return Ok(MfaLoginCommit::ProofSpent);
        }
        sessions::Entity::insert(session_row(session)).exec_without_returning(&txn).await.map_err(classify)?;
        if let Some(device) = device {
            known_devices::remember(&txn, user_row.id, device).await?;
        }
        for event in events {
            outbox_store::insert_event(&txn, event).await?;
        }
        txn.commit().await.map_err(classify)?;
        if !events.is_empty() {
            self.outbox_written.notify_one();
        }
        Ok(MfaLoginCommit::Created)
    }
}
