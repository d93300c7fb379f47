use sea_orm_migration::{prelude::*, schema::*};

use super::m20261127_000001_create_users::Users;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The devices each user has logged in from, for new-device notices: a digest
/// of the user agent and the coarse address (neither is kept here), with when
/// it was first and last seen. One row per user and device, so that two
/// concurrent logins from a new device notice it once.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(KnownDevices::Table)
                    .if_not_exists()
                    .col(uuid(KnownDevices::UserId))
                    .col(char_len(KnownDevices::Fingerprint, 64))
                    .col(timestamp_with_time_zone(KnownDevices::FirstSeenAt))
                    .col(timestamp_with_time_zone(KnownDevices::LastSeenAt))
                    .primary_key(Index::create().col(KnownDevices::UserId).col(KnownDevices::Fingerprint))
                    .foreign_key(
                        ForeignKey::create()
                            .name("known_devices_user_id_fkey")
                            .from(KnownDevices::Table, KnownDevices::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(KnownDevices::Table).to_owned()).await
    }
}

#[derive(DeriveIden)]
pub enum KnownDevices {
    Table,
    UserId,
    Fingerprint,
    FirstSeenAt,
    LastSeenAt,
}
