use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use time::OffsetDateTime;
use tokio::sync::Notify;

use super::{
    classify,
    entities::users,
    errors::is_duplicate_email,
    outbox_store, single_use_tokens,
    user_lock::{Lock, lock_user},
    write_batch::WriteBatch,
};
use crate::domain::{
    DomainEvent, Email, PasswordHash, PersonName, PersonNames, TokenHash, User, UserId, UserStatus, UserTimestamps,
    ports::{InsertUserError, NewSingleUseToken, RepositoryError, StoredCredentials, TokenPurpose, UserRepository},
};

/// Users, their credentials and their single-use tokens in SQL, with outbox events written in the same
/// transaction as the change. `outbox_written` wakes the relay after a commit.
#[derive(Clone)]
pub struct SeaOrmUserRepository {
    pub(super) db: DatabaseConnection,
    /// Where reads outside a transaction go (see [`super::connect_readers`]).
    pub(super) reads: DatabaseConnection,
    pub(super) outbox_written: Arc<Notify>,
    access_token_lifetime: Option<std::time::Duration>,
}

impl SeaOrmUserRepository {
    pub fn new(db: DatabaseConnection, outbox_written: Arc<Notify>) -> Self {
        Self { reads: db.clone(), db, outbox_written, access_token_lifetime: None }
    }

    /// Sends the reads made outside a transaction to `reads` instead.
    #[must_use]
    pub fn with_readers(mut self, reads: DatabaseConnection) -> Self {
        self.reads = reads;
        self
    }

    /// How long an access token may live (its lifetime plus the leeway): a
    /// session rotated longer ago than that has no access token left to
    /// revoke. Without it, revocations revisit every rotated session.
    #[must_use]
    pub fn with_access_token_lifetime(mut self, lifetime: std::time::Duration) -> Self {
        self.access_token_lifetime = Some(lifetime);
        self
    }

    pub(super) fn rotated_since(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        self.access_token_lifetime.map(|lifetime| now - lifetime)
    }
}

#[async_trait]
impl UserRepository for SeaOrmUserRepository {
    async fn insert_with_verification(
        &self,
        user: &User,
        password_hash: &PasswordHash,
        token: &NewSingleUseToken,
        events: &[DomainEvent],
    ) -> Result<(), InsertUserError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // Nothing here needs an answer back: one command on SQLite. A taken
        // address stops the batch at its first statement.
        let mut writes = WriteBatch::new(&txn);
        writes.push_query(&users::Entity::insert(user_row(user, password_hash)));
        single_use_tokens::push_insert(&mut writes, TokenPurpose::EmailVerification, user.id(), token);
        outbox_store::push_events(&mut writes, events)?;
        if let Err(error) = writes.run(&txn).await {
            return Err(if is_duplicate_email(&error) {
                InsertUserError::DuplicateEmail
            } else {
                classify(error).into()
            });
        }
        Ok(outbox_store::commit_and_wake(txn, events, &self.outbox_written).await?)
    }

    async fn find_by_id(&self, id: UserId) -> Result<Option<User>, RepositoryError> {
        let row = users::Entity::find_by_id(id.as_uuid()).one(&self.reads).await.map_err(classify)?;
        row.map(|row| to_user(&row)).transpose()
    }

    async fn find_by_email(&self, email: &Email) -> Result<Option<User>, RepositoryError> {
        let row = users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&self.reads)
            .await
            .map_err(classify)?;
        row.map(|row| to_user(&row)).transpose()
    }

    async fn find_by_legacy_id(&self, legacy_id: &str) -> Result<Option<User>, RepositoryError> {
        let row = users::Entity::find()
            .filter(users::Column::LegacyId.eq(legacy_id))
            .one(&self.reads)
            .await
            .map_err(classify)?;
        row.map(|row| to_user(&row)).transpose()
    }

    async fn upgrade_password_hash(
        &self,
        id: UserId,
        verified_version: i32,
        hash: &PasswordHash,
    ) -> Result<bool, RepositoryError> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
            .filter(users::Column::Id.eq(id.as_uuid()))
            .filter(users::Column::PasswordVersion.eq(verified_version))
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok(result.rows_affected == 1)
    }

    async fn find_credentials_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<(User, StoredCredentials)>, RepositoryError> {
        let row = users::Entity::find()
            .filter(users::Column::Email.eq(email.as_str()))
            .one(&self.reads)
            .await
            .map_err(classify)?;
        row.map(|row| Ok((to_user(&row)?, credentials_of(row)))).transpose()
    }

    async fn complete_verification(
        &self,
        hash: &TokenHash,
        user: &User,
        events: &[DomainEvent],
    ) -> Result<bool, RepositoryError> {
        let txn = super::begin_write(&self.db).await.map_err(classify)?;
        // The user's row first, as every other change to the account takes it:
        // locking the token first would deadlock against a resend (user, then
        // tokens) on PostgreSQL.
        if lock_user(&txn, user.id(), Lock::Update).await?.is_none() {
            return Ok(false);
        }
        // Of concurrent verifications, only one claims the token.
        if !single_use_tokens::claim(&txn, TokenPurpose::EmailVerification, hash, user.id(), user.updated_at()).await? {
            return Ok(false);
        }
        let updated = users::Entity::update_many()
            .col_expr(users::Column::Status, Expr::value(user.status().as_str()))
            .col_expr(users::Column::VerifiedAt, Expr::value(user.verified_at()))
            .col_expr(users::Column::UpdatedAt, Expr::value(user.updated_at()))
            .filter(users::Column::Id.eq(user.id().as_uuid()))
            .filter(users::Column::Status.eq(UserStatus::PendingVerification.as_str()))
            .exec(&txn)
            .await
            .map_err(classify)?;
        if updated.rows_affected != 1 {
            // Disabled (or verified) in the meantime: leave everything as it was.
            return Ok(false);
        }
        self.commit_with_events(txn, events).await?;
        Ok(true)
    }
}

pub(super) fn user_row(user: &User, password_hash: &PasswordHash) -> users::ActiveModel {
    let name = |n: Option<&PersonName>| n.map(|n| n.as_str().to_owned());
    users::ActiveModel {
        id: Set(user.id().as_uuid()),
        email: Set(user.email().as_str().to_owned()),
        password_hash: Set(password_hash.as_str().to_owned()),
        display_name: Set(name(user.display_name())),
        first_name: Set(name(user.first_name())),
        last_name: Set(name(user.last_name())),
        status: Set(user.status().as_str().to_owned()),
        created_at: Set(user.created_at()),
        updated_at: Set(user.updated_at()),
        verified_at: Set(user.verified_at()),
        tokens_valid_after: Set(user.tokens_valid_after()),
        password_version: Set(0),
        mfa_enabled_at: Set(None),
        legacy_id: Set(user.legacy_id().map(str::to_owned)),
    }
}

pub(super) fn credentials_of(row: users::Model) -> StoredCredentials {
    StoredCredentials {
        hash: PasswordHash::from_phc(row.password_hash),
        version: row.password_version,
        has_second_factor: row.mfa_enabled_at.is_some(),
    }
}

/// Rebuilds the domain user from a row; a row that breaks an invariant is a
/// corrupted database, reported as unexpected rather than silently patched.
pub(super) fn to_user(row: &users::Model) -> Result<User, RepositoryError> {
    let name = |raw: &Option<String>| -> anyhow::Result<Option<PersonName>> {
        match raw {
            Some(raw) => Ok(PersonName::parse_optional(raw)?),
            None => Ok(None),
        }
    };
    let build = || -> anyhow::Result<User> {
        Ok(User::hydrate(
            UserId::from_uuid(row.id),
            Email::hydrate(row.email.clone())?,
            PersonNames {
                display_name: name(&row.display_name)?,
                first_name: name(&row.first_name)?,
                last_name: name(&row.last_name)?,
            },
            UserStatus::parse(&row.status).map_err(anyhow::Error::msg)?,
            UserTimestamps {
                created_at: row.created_at,
                updated_at: row.updated_at,
                verified_at: row.verified_at,
                tokens_valid_after: row.tokens_valid_after,
            },
        )
        .with_legacy_id(row.legacy_id.clone()))
    };
    build().with_context(|| format!("user row {} is invalid", row.id)).map_err(RepositoryError::Unexpected)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::SecretString;
    use testkit::{Backend, TestDatabase, on_both_databases};
    use time::macros::datetime;

    use super::*;
    use crate::{
        domain::UserId,
        infrastructure::sea_orm::{DatabaseSettings, connect, migrate},
    };

    on_both_databases!(a_taken_address_is_a_duplicate_and_no_other_collision_is);

    /// The sign-up's writes go as one batch; only the email's unique index
    /// may read as "taken", whichever statement of the batch failed.
    async fn a_taken_address_is_a_duplicate_and_no_other_collision_is(backend: Backend) {
        let Some(database) = TestDatabase::for_test(backend).await else { return };
        let settings = DatabaseSettings {
            url: SecretString::from(database.url()),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(10),
            auto_migrate: true,
        };
        let db = connect(&settings).await.unwrap();
        migrate(&db).await.unwrap();
        let users = SeaOrmUserRepository::new(db, Arc::new(Notify::new()));
        let now = datetime!(2026-12-01 0:00 UTC);
        let hash = PasswordHash::from_phc("$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".to_owned());
        let token = |byte| NewSingleUseToken {
            hash: TokenHash::from_bytes([byte; 32]),
            created_at: now,
            expires_at: now + Duration::from_secs(3600),
            email_change: None,
        };
        let user =
            |email: &str| User::sign_up(UserId::new_v7(), Email::parse(email).unwrap(), PersonNames::default(), now);

        users.insert_with_verification(&user("ada@example.com"), &hash, &token(1), &[]).await.unwrap();
        let taken = users.insert_with_verification(&user("ada@example.com"), &hash, &token(2), &[]).await;
        assert!(matches!(taken, Err(InsertUserError::DuplicateEmail)), "{taken:?}");
        // A fresh address with a token digest already stored: a unique index
        // fails, but not the email's.
        let collided = users.insert_with_verification(&user("bob@example.com"), &hash, &token(1), &[]).await;
        assert!(matches!(collided, Err(InsertUserError::Repository(_))), "{collided:?}");
        // Neither failed sign-up left a row behind.
        assert!(users.find_by_email(&Email::parse("bob@example.com").unwrap()).await.unwrap().is_none());
    }
}
