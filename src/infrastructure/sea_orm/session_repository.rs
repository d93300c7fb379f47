use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};

use super::{classify, entities::sessions};
use crate::domain::ports::{NewSession, RepositoryError, SessionRepository};

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

#[async_trait]
impl SessionRepository for SeaOrmSessionRepository {
    async fn insert(&self, session: &NewSession) -> Result<(), RepositoryError> {
        let row = sessions::ActiveModel {
            id: Set(session.id),
            family_id: Set(session.family_id),
            user_id: Set(session.user_id.as_uuid()),
            token_hash: Set(session.token_hash.to_hex()),
            created_at: Set(session.created_at),
            expires_at: Set(session.expires_at),
            rotated_at: Set(None),
            revoked_at: Set(None),
        };
        sessions::Entity::insert(row)
            .exec_without_returning(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
