use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Sessions remember the device that logged in or refreshed into them (user
/// agent and address), so that a user listing their sessions can tell them
/// apart. Both are nullable: older sessions, and calls that sent neither.
/// One column per statement, because SQLite alters one at a time.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(Sessions::Table).add_column(string_len_null(Sessions::UserAgent, 256)).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(string_len_null(Sessions::ClientAddress, 64))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::ClientAddress).to_owned())
            .await?;
        manager.alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::UserAgent).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    UserAgent,
    ClientAddress,
}
