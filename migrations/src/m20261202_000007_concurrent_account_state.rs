use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What concurrent account changes need to be checked against each other:
/// a password version (a login that verified an older password creates no
/// session), the start of each session family (absolute session lifetime, and
/// refresh refused for families older than a revocation), the addresses an
/// account logged in from (a stranger's failures cannot lock them out), and
/// attempts per reset token (one link is not an unlimited oracle).
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(integer(Concurrency::PasswordVersion).default(0))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Sessions::Table)
                    .add_column(timestamp_with_time_zone_null(Sessions::AuthenticatedAt))
                    .to_owned(),
            )
            .await?;
        // Existing families started with their oldest session.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE sessions SET authenticated_at = \
                 (SELECT MIN(s2.created_at) FROM sessions s2 WHERE s2.family_id = sessions.family_id)",
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LoginThrottles::Table)
                    .add_column(timestamp_with_time_zone_null(LoginThrottles::LastSuccessAt))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(PasswordResetTokens::Table)
                    .add_column(integer(PasswordResetTokens::Attempts).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter().table(PasswordResetTokens::Table).drop_column(PasswordResetTokens::Attempts).to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter().table(LoginThrottles::Table).drop_column(LoginThrottles::LastSuccessAt).to_owned(),
            )
            .await?;
        manager
            .alter_table(Table::alter().table(Sessions::Table).drop_column(Sessions::AuthenticatedAt).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(Users::Table).drop_column(Concurrency::PasswordVersion).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Concurrency {
    PasswordVersion,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    AuthenticatedAt,
}

#[derive(DeriveIden)]
enum LoginThrottles {
    Table,
    LastSuccessAt,
}

#[derive(DeriveIden)]
enum PasswordResetTokens {
    Table,
    Attempts,
}
