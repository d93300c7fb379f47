use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Email-change tokens live in the one single-use token store, with the address
/// they confirm and the session that asked (whose login survives the change).
/// SQLite adds one column per ALTER TABLE, so each is its own statement.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SingleUseTokens::Table)
                    .add_column(string_null(SingleUseTokens::NewEmail))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SingleUseTokens::Table)
                    .add_column(uuid_null(SingleUseTokens::SessionId))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The older code knows no email-change purpose: those tokens go.
        manager
            .get_connection()
            .execute_unprepared("DELETE FROM single_use_tokens WHERE purpose = 'email_change'")
            .await?;
        manager
            .alter_table(
                Table::alter().table(SingleUseTokens::Table).drop_column(SingleUseTokens::SessionId).to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(SingleUseTokens::Table).drop_column(SingleUseTokens::NewEmail).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SingleUseTokens {
    Table,
    NewEmail,
    SessionId,
}
