use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Verification and password-reset tokens were two tables of one shape: they
/// become one, told apart by `purpose`. The rows move over with their purpose
/// (verification tokens with no attempts counted, as they never counted any),
/// and the old tables go.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SingleUseTokens::Table)
                    .if_not_exists()
                    // UUIDv7: ordering by id is ordering by creation time.
                    .col(uuid(SingleUseTokens::Id).primary_key())
                    .col(uuid(SingleUseTokens::UserId))
                    // `email_verification` or `password_reset`.
                    .col(string_len(SingleUseTokens::Purpose, 32))
                    // Hex SHA-256 of the token; the token itself is never stored.
                    .col(char_len_uniq(SingleUseTokens::TokenHash, 64))
                    .col(timestamp_with_time_zone(SingleUseTokens::CreatedAt))
                    .col(timestamp_with_time_zone(SingleUseTokens::ExpiresAt))
                    // Set when used or replaced by a newer token.
                    .col(timestamp_with_time_zone_null(SingleUseTokens::SpentAt))
                    // Presentations counted before checking (password resets).
                    .col(integer(SingleUseTokens::Attempts).default(0))
                    .foreign_key(
                        ForeignKey::create()
                            .name("single_use_tokens_user_id_fkey")
                            .from(SingleUseTokens::Table, SingleUseTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // A user's newest tokens of one purpose (send history, replacement).
        manager
            .create_index(
                Index::create()
                    .name("single_use_tokens_user_purpose_id_idx")
                    .table(SingleUseTokens::Table)
                    .col(SingleUseTokens::UserId)
                    .col(SingleUseTokens::Purpose)
                    .col(SingleUseTokens::Id)
                    .to_owned(),
            )
            .await?;
        // The pruning task's deletes and its "no live verification link" test.
        manager
            .create_index(
                Index::create()
                    .name("single_use_tokens_purpose_expires_at_idx")
                    .table(SingleUseTokens::Table)
                    .col(SingleUseTokens::Purpose)
                    .col(SingleUseTokens::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO single_use_tokens \
             (id, user_id, purpose, token_hash, created_at, expires_at, spent_at, attempts) \
             SELECT id, user_id, 'email_verification', token_hash, created_at, expires_at, spent_at, 0 \
             FROM verification_tokens",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO single_use_tokens \
             (id, user_id, purpose, token_hash, created_at, expires_at, spent_at, attempts) \
             SELECT id, user_id, 'password_reset', token_hash, created_at, expires_at, spent_at, attempts \
             FROM password_reset_tokens",
        )
        .await?;
        manager.drop_table(Table::drop().table(Old::VerificationTokens).to_owned()).await?;
        manager.drop_table(Table::drop().table(Old::PasswordResetTokens).to_owned()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, fkey, index, expires_index) in [
            (
                Old::VerificationTokens,
                "verification_tokens_user_id_fkey",
                "verification_tokens_user_id_idx",
                "verification_tokens_expires_at_idx",
            ),
            (
                Old::PasswordResetTokens,
                "password_reset_tokens_user_id_fkey",
                "password_reset_tokens_user_id_idx",
                "password_reset_tokens_expires_at_idx",
            ),
        ] {
            let mut create = Table::create();
            create
                .table(table)
                .col(uuid(SingleUseTokens::Id).primary_key())
                .col(uuid(SingleUseTokens::UserId))
                .col(char_len_uniq(SingleUseTokens::TokenHash, 64))
                .col(timestamp_with_time_zone(SingleUseTokens::CreatedAt))
                .col(timestamp_with_time_zone(SingleUseTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(SingleUseTokens::SpentAt));
            if matches!(table, Old::PasswordResetTokens) {
                create.col(integer(SingleUseTokens::Attempts).default(0));
            }
            create.foreign_key(
                ForeignKey::create()
                    .name(fkey)
                    .from(table, SingleUseTokens::UserId)
                    .to(Users::Table, Users::Id)
                    .on_delete(ForeignKeyAction::Cascade),
            );
            manager.create_table(create.to_owned()).await?;
            manager
                .create_index(
                    Index::create()
                        .name(index)
                        .table(table)
                        .col(SingleUseTokens::UserId)
                        .col(SingleUseTokens::Id)
                        .to_owned(),
                )
                .await?;
            manager
                .create_index(
                    Index::create().name(expires_index).table(table).col(SingleUseTokens::ExpiresAt).to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO verification_tokens (id, user_id, token_hash, created_at, expires_at, spent_at) \
             SELECT id, user_id, token_hash, created_at, expires_at, spent_at \
             FROM single_use_tokens WHERE purpose = 'email_verification'",
        )
        .await?;
        db.execute_unprepared(
            "INSERT INTO password_reset_tokens (id, user_id, token_hash, created_at, expires_at, spent_at, attempts) \
             SELECT id, user_id, token_hash, created_at, expires_at, spent_at, attempts \
             FROM single_use_tokens WHERE purpose = 'password_reset'",
        )
        .await?;
        manager.drop_table(Table::drop().table(SingleUseTokens::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum SingleUseTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    SpentAt,
    Attempts,
}

#[derive(DeriveIden, Clone, Copy)]
enum Old {
    VerificationTokens,
    PasswordResetTokens,
}
