use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{classify, entities::sessions};
use crate::domain::{
    TokenHash, UserId,
    ports::{NewSession, RepositoryError, SessionRecord, SessionRepository},
};

/// Refresh-token sessions in SQL; only the token's digest is stored.
#[derive(Clone)]
pub struct SeaOrmSessionRepository {
    db: DatabaseConnection,
}

impl SeaOrmSessionRepository {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn row(session: &NewSession) -> sessions::ActiveModel {
    sessions::ActiveModel {
        id: Set(session.id),
        family_id: Set(session.family_id),
        user_id: Set(session.user_id.as_uuid()),
        token_hash: Set(session.token_hash.to_hex()),
        created_at: Set(session.created_at),
        expires_at: Set(session.expires_at),
        rotated_at: Set(None),
        revoked_at: Set(None),
    }
}

#[async_trait]
impl SessionRepository for SeaOrmSessionRepository {
    async fn insert(&self, session: &NewSession) -> Result<(), RepositoryError> {
        sessions::Entity::insert(row(session)).exec_without_returning(&self.db).await.map_err(classify)?;
        Ok(())
    }

    async fn find_by_token_hash(&self, hash: &TokenHash) -> Result<Option<SessionRecord>, RepositoryError> {
        let found = sessions::Entity::find()
            .filter(sessions::Column::TokenHash.eq(hash.to_hex()))
            .one(&self.db)
            .await
            .map_err(classify)?;
        Ok(found.map(|s| SessionRecord {
            id: s.id,
            family_id: s.family_id,
            user_id: UserId::from_uuid(s.user_id),
            expires_at: s.expires_at,
            is_rotated: s.rotated_at.is_some(),
            is_revoked: s.revoked_at.is_some(),
        }))
    }

    async fn rotate(&self, old: Uuid, new: &NewSession, now: OffsetDateTime) -> Result<bool, RepositoryError> {
        let txn = self.db.begin().await.map_err(classify)?;
        // The conditional update is the claim: of concurrent rotations of one
        // token exactly one sees a row affected.
        let claimed = sessions::Entity::update_many()
            .col_expr(sessions::Column::RotatedAt, Expr::value(now))
            .filter(sessions::Column::Id.eq(old))
            .filter(sessions::Column::RotatedAt.is_null())
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&txn)
            .await
            .map_err(classify)?;
        if claimed.rows_affected != 1 {
            return Ok(false);
        }
        sessions::Entity::insert(row(new)).exec_without_returning(&txn).await.map_err(classify)?;
        txn.commit().await.map_err(classify)?;
        Ok(true)
    }

    async fn revoke_family(&self, family_id: Uuid, now: OffsetDateTime) -> Result<u64, RepositoryError> {
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::FamilyId.eq(family_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok(revoked.rows_affected)
    }

    async fn revoke(&self, session_id: Uuid, now: OffsetDateTime) -> Result<bool, RepositoryError> {
        let revoked = sessions::Entity::update_many()
            .col_expr(sessions::Column::RevokedAt, Expr::value(now))
            .filter(sessions::Column::Id.eq(session_id))
            .filter(sessions::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(classify)?;
        Ok(revoked.rows_affected == 1)
    }
}
