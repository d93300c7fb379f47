use sea_orm_migration::{prelude::*, schema::*};

use super::{m20261127_000001_create_users::Users, m20261127_000003_create_sessions::Sessions};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Two-factor login: one TOTP secret per user (encrypted; pending until its
/// first code is confirmed), hashed single-use recovery codes, the login
/// challenges between a right password and a right code, and the methods a
/// session's login used (`amr`), which its refreshed tokens keep. The users
/// row records whether TOTP is on, so that a login learns it from the row it
/// reads anyway.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(timestamp_with_time_zone_null(Mfa::MfaEnabledAt))
                    .to_owned(),
            )
            .await?;
        // NULL: a session from before this migration, a password login.
        manager
            .alter_table(Table::alter().table(Sessions::Table).add_column(string_len_null(Mfa::Amr, 32)).to_owned())
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(UserTotp::Table)
                    .if_not_exists()
                    .col(uuid(UserTotp::UserId).primary_key())
                    // Nonce and ciphertext (XChaCha20-Poly1305), base64.
                    .col(text(UserTotp::SecretCiphertext))
                    .col(timestamp_with_time_zone(UserTotp::CreatedAt))
                    // A pending enrolment ends here unless confirmed.
                    .col(timestamp_with_time_zone(UserTotp::PendingExpiresAt))
                    .col(timestamp_with_time_zone_null(UserTotp::ConfirmedAt))
                    // The newest time step accepted: no code of it or before works again.
                    .col(big_integer_null(UserTotp::LastStep))
                    .foreign_key(
                        ForeignKey::create()
                            .name("user_totp_user_id_fkey")
                            .from(UserTotp::Table, UserTotp::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RecoveryCodes::Table)
                    .if_not_exists()
                    .col(uuid(RecoveryCodes::Id).primary_key())
                    .col(uuid(RecoveryCodes::UserId))
                    // Hex SHA-256 of the code; the code itself is shown once and never stored.
                    .col(char_len(RecoveryCodes::CodeHash, 64))
                    .col(timestamp_with_time_zone(RecoveryCodes::CreatedAt))
                    .col(timestamp_with_time_zone_null(RecoveryCodes::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("recovery_codes_user_id_fkey")
                            .from(RecoveryCodes::Table, RecoveryCodes::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("recovery_codes_user_id_code_hash_idx")
                    .table(RecoveryCodes::Table)
                    .col(RecoveryCodes::UserId)
                    .col(RecoveryCodes::CodeHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MfaChallenges::Table)
                    .if_not_exists()
                    .col(uuid(MfaChallenges::Id).primary_key())
                    .col(uuid(MfaChallenges::UserId))
                    // Hex SHA-256 of the challenge token.
                    .col(char_len_uniq(MfaChallenges::TokenHash, 64))
                    // The password version the login verified.
                    .col(integer(MfaChallenges::PasswordVersion))
                    .col(timestamp_with_time_zone(MfaChallenges::CreatedAt))
                    .col(timestamp_with_time_zone(MfaChallenges::ExpiresAt))
                    // Codes tried, counted before each is checked.
                    .col(integer(MfaChallenges::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(MfaChallenges::SpentAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("mfa_challenges_user_id_fkey")
                            .from(MfaChallenges::Table, MfaChallenges::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The pruner's deletes of expired challenges.
        manager
            .create_index(
                Index::create()
                    .name("mfa_challenges_expires_at_idx")
                    .table(MfaChallenges::Table)
                    .col(MfaChallenges::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(MfaChallenges::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RecoveryCodes::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(UserTotp::Table).to_owned()).await?;
        manager.alter_table(Table::alter().table(Sessions::Table).drop_column(Mfa::Amr).to_owned()).await?;
        manager.alter_table(Table::alter().table(Users::Table).drop_column(Mfa::MfaEnabledAt).to_owned()).await
    }
}

#[derive(DeriveIden)]
enum Mfa {
    MfaEnabledAt,
    Amr,
}

#[derive(DeriveIden)]
enum UserTotp {
    Table,
    UserId,
    SecretCiphertext,
    CreatedAt,
    PendingExpiresAt,
    ConfirmedAt,
    LastStep,
}

#[derive(DeriveIden)]
enum RecoveryCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    CreatedAt,
    UsedAt,
}

#[derive(DeriveIden)]
pub enum MfaChallenges {
    Table,
    Id,
    UserId,
    TokenHash,
    PasswordVersion,
    CreatedAt,
    ExpiresAt,
    Attempts,
    SpentAt,
}
