use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Session revocation, login throttling and password resets.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Access tokens issued before this instant are refused (log out everywhere,
        // password reset, disable).
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(timestamp_with_time_zone_null(UsersSecurity::TokensValidAfter))
                    .to_owned(),
            )
            .await?;
        // Keyed by a digest of the canonical email, for unknown addresses too, so
        // that throttling reveals nothing about which addresses are registered.
        manager
            .create_table(
                Table::create()
                    .table(LoginThrottles::Table)
                    .if_not_exists()
                    .col(char_len(LoginThrottles::EmailHash, 64).primary_key())
                    .col(integer(LoginThrottles::Failures).default(0))
                    .col(timestamp_with_time_zone(LoginThrottles::LastFailureAt))
                    .col(timestamp_with_time_zone_null(LoginThrottles::LockedUntil))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PasswordResetTokens::Table)
                    .if_not_exists()
                    .col(uuid(PasswordResetTokens::Id).primary_key())
                    .col(uuid(PasswordResetTokens::UserId))
                    .col(char_len_uniq(PasswordResetTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(PasswordResetTokens::CreatedAt))
                    .col(timestamp_with_time_zone(PasswordResetTokens::ExpiresAt))
                    .col(timestamp_with_time_zone_null(PasswordResetTokens::SpentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("password_reset_tokens_user_id_fkey")
                            .from(PasswordResetTokens::Table, PasswordResetTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("password_reset_tokens_user_id_idx")
                    .table(PasswordResetTokens::Table)
                    .col(PasswordResetTokens::UserId)
                    .col(PasswordResetTokens::Id)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(PasswordResetTokens::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(LoginThrottles::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(Users::Table).drop_column(UsersSecurity::TokensValidAfter).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum UsersSecurity {
    TokensValidAfter,
}

#[derive(DeriveIden)]
enum LoginThrottles {
    Table,
    EmailHash,
    Failures,
    LastFailureAt,
    LockedUntil,
}

#[derive(DeriveIden)]
enum PasswordResetTokens {
    Table,
    Id,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    SpentAt,
}
