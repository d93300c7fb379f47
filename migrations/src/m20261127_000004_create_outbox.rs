use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The transactional outbox: events written in the same transaction as the
/// change that caused them, published afterwards by the relay.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Outbox::Table)
                    .if_not_exists()
                    // UUIDv7 event id: publishing in id order is publishing in commit-ish order.
                    .col(uuid(Outbox::Id).primary_key())
                    .col(string_len(Outbox::EventType, 100))
                    // The event as versioned JSON.
                    .col(text(Outbox::Payload))
                    // W3C trace context of the request that wrote the event.
                    .col(text_null(Outbox::TraceContext))
                    .col(timestamp_with_time_zone(Outbox::CreatedAt))
                    .col(timestamp_with_time_zone_null(Outbox::PublishedAt))
                    .col(integer(Outbox::Attempts).default(0))
                    .col(text_null(Outbox::LastError))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_pending_idx")
                    .table(Outbox::Table)
                    .col(Outbox::PublishedAt)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Outbox::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Outbox {
    Table,
    Id,
    EventType,
    Payload,
    TraceContext,
    CreatedAt,
    PublishedAt,
    Attempts,
    LastError,
}
