use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (name, table, columns) of the indexes the pruning task's deletes use.
const PRUNING_INDEXES: &[(&str, &str, &[&str])] = &[
    ("sessions_expires_at_idx", "sessions", &["expires_at"]),
    ("login_throttles_last_failure_at_idx", "login_throttles", &["last_failure_at"]),
    ("verification_tokens_expires_at_idx", "verification_tokens", &["expires_at"]),
    ("password_reset_tokens_expires_at_idx", "password_reset_tokens", &["expires_at"]),
    ("users_status_created_at_idx", "users", &["status", "created_at"]),
];

/// The outbox learns whose event a row is, so that the "someone tried to
/// register" notices to one owner can be counted (and capped) in the database;
/// and the tables the pruning task deletes from get indexes on the times it
/// filters by, so that each bounded batch does not scan the table.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Outbox::Table).add_column(uuid_null(Outbox::UserId)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_user_event_idx")
                    .table(Outbox::Table)
                    .col(Outbox::UserId)
                    .col(Outbox::EventType)
                    .col(Outbox::Id)
                    .to_owned(),
            )
            .await?;
        for (name, table, columns) in PRUNING_INDEXES {
            let mut index = Index::create();
            index.name(*name).table(Alias::new(*table));
            for column in *columns {
                index.col(Alias::new(*column));
            }
            manager.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in PRUNING_INDEXES.iter().rev() {
            manager.drop_index(Index::drop().name(*name).table(Alias::new(*table)).to_owned()).await?;
        }
        manager.drop_index(Index::drop().name("outbox_user_event_idx").table(Outbox::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Outbox::Table).drop_column(Outbox::UserId).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    EventType,
    UserId,
}
