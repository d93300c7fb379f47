use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, sea_query::OnConflict};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{classify, entities::mailer_deliveries};
use crate::domain::ports::{DeliveryLog, RepositoryError};

/// The mailer's delivered-events table (`mailer_deliveries`).
#[derive(Clone)]
pub struct SeaOrmDeliveryLog {
    db: DatabaseConnection,
}

impl SeaOrmDeliveryLog {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl DeliveryLog for SeaOrmDeliveryLog {
    async fn has_delivered(&self, event_id: Uuid) -> Result<bool, RepositoryError> {
        let row = mailer_deliveries::Entity::find_by_id(event_id).one(&self.db).await.map_err(classify)?;
        Ok(row.is_some())
    }

    async fn record_delivered(
        &self,
        event_id: Uuid,
        event_type: &str,
        provider: &str,
        at: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let row = mailer_deliveries::ActiveModel {
            event_id: Set(event_id),
            event_type: Set(event_type.to_owned()),
            provider: Set(provider.to_owned()),
            delivered_at: Set(at),
        };
        mailer_deliveries::Entity::insert(row)
            .on_conflict(OnConflict::column(mailer_deliveries::Column::EventId).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
