use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// User events for other services are published per user in commit order.
/// Each user's events get consecutive positions from `user_event_streams`,
/// taken under that row's lock at the end of the writing transaction, so that
/// one user's positions follow the order their transactions commit in (UUIDv7
/// ids follow the order they were generated in, which is not the same). The
/// relay publishes a user's events only from the lowest unpublished position.
/// Email rows keep no position (`stream_position` stays null): their order
/// does not matter, and they never wait behind a user's events.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserEventStreams::Table)
                    .if_not_exists()
                    .col(uuid(UserEventStreams::UserId).primary_key())
                    .col(big_integer(UserEventStreams::LastPosition))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(Outbox::Table).add_column(big_integer_null(Outbox::StreamPosition)).to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_user_stream_idx")
                    .table(Outbox::Table)
                    .col(Outbox::UserId)
                    .col(Outbox::StreamPosition)
                    .to_owned(),
            )
            .await?;
        // `user.deleted` used to be a JSON row published with `mandatory`, which
        // nothing consumed: one still waiting would block the emails behind it
        // forever. Its user is gone; settle it, saying why.
        let superseded = Query::update()
            .table(Outbox::Table)
            .value(Outbox::PublishedAt, Expr::col(Outbox::CreatedAt))
            .value(Outbox::LastError, "superseded by identity.v1.user.deleted (migration 21)")
            .and_where(Expr::col(Outbox::EventType).eq("user.deleted"))
            .and_where(Expr::col(Outbox::PublishedAt).is_null())
            .to_owned();
        manager.exec_stmt(superseded).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("outbox_user_stream_idx").table(Outbox::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Outbox::Table).drop_column(Outbox::StreamPosition).to_owned()).await?;
        manager.drop_table(Table::drop().table(UserEventStreams::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum UserEventStreams {
    Table,
    UserId,
    LastPosition,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    UserId,
    StreamPosition,
    EventType,
    CreatedAt,
    PublishedAt,
    LastError,
}
