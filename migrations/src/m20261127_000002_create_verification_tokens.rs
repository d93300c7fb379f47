use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(VerificationTokens::Table)
                    .if_not_exists()
                    // UUIDv7: ordering by id is ordering by creation time.
                    .col(uuid(VerificationTokens::Id).primary_key())
                    .col(uuid(VerificationTokens::UserId))
                    // Hex SHA-256 of the token; the token itself is never stored.
                    .col(char_len_uniq(VerificationTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(VerificationTokens::CreatedAt))
                    .col(timestamp_with_time_zone(VerificationTokens::ExpiresAt))
                    // Set when used or replaced by a newer token.
                    .col(timestamp_with_time_zone_null(VerificationTokens::SpentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("verification_tokens_user_id_fkey")
                            .from(VerificationTokens::Table, VerificationTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("verification_tokens_user_id_idx")
                    .table(VerificationTokens::Table)
                    .col(VerificationTokens::UserId)
                    .col(VerificationTokens::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(VerificationTokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum VerificationTokens {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    SpentAt,
}
