use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Users imported from Django whose id was not a UUID (Django's integer keys)
/// keep that id as `legacy_id`, so that other services can still find them by
/// it; unique, so that a second import recognises the rows it already brought
/// over (NULLs, every other user, do not collide).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(Users::Table).add_column(string_len_null(Users::LegacyId, 64)).to_owned())
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_legacy_id_key")
                    .table(Users::Table)
                    .col(Users::LegacyId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name("users_legacy_id_key").table(Users::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Users::LegacyId).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    LegacyId,
}
