use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The unique index on the canonical email decides concurrent sign-ups; the
/// repository recognises its violation as "email taken".
pub const USERS_EMAIL_KEY: &str = "users_email_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(uuid(Users::Id).primary_key())
                    .col(string_len(Users::Email, 254))
                    .col(text(Users::PasswordHash))
                    .col(string_len_null(Users::DisplayName, 400))
                    .col(string_len_null(Users::FirstName, 400))
                    .col(string_len_null(Users::LastName, 400))
                    .col(string_len(Users::Status, 32))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::VerifiedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name(USERS_EMAIL_KEY).table(Users::Table).col(Users::Email).unique().to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Users::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    DisplayName,
    FirstName,
    LastName,
    Status,
    CreatedAt,
    UpdatedAt,
    VerifiedAt,
}
