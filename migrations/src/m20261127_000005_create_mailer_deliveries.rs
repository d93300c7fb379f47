use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The mailer's idempotency record: one row per event whose email the provider
/// accepted. A redelivered message whose event is here is acknowledged unsent.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailerDeliveries::Table)
                    .if_not_exists()
                    .col(uuid(MailerDeliveries::EventId).primary_key())
                    .col(string_len(MailerDeliveries::EventType, 100))
                    .col(string_len(MailerDeliveries::Provider, 32))
                    .col(timestamp_with_time_zone(MailerDeliveries::DeliveredAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MailerDeliveries::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum MailerDeliveries {
    Table,
    EventId,
    EventType,
    Provider,
    DeliveredAt,
}
