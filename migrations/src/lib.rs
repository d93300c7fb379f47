//! The database schema, as SeaORM migrations. Applied by `identity-server migrate`
//! and, unless `IDENTITY_AUTO_MIGRATE=false`, at server start.

pub use m20261127_000001_create_users::USERS_EMAIL_KEY;
pub use sea_orm_migration::prelude::*;

mod m20261127_000001_create_users;
mod m20261127_000002_create_verification_tokens;
mod m20261127_000003_create_sessions;
mod m20261127_000004_create_outbox;
mod m20261127_000005_create_mailer_deliveries;
mod m20261127_000006_account_security;
mod m20261202_000007_concurrent_account_state;
mod m20261202_000010_outbox_owner_and_pruning_indexes;
mod m20261202_000011_single_use_tokens;
mod m20261202_000012_users_legacy_id;
mod m20261202_000013_session_client_context;
mod m20261202_000014_email_change;
mod m20261202_000015_two_factor_login;
mod m20261202_000020_known_devices;
mod m20261202_000021_user_event_order;
mod m20261203_000022_shared_rate_limits;
mod m20261203_000023_hash_columns_varchar;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_create_users::Migration),
            Box::new(m20261127_000002_create_verification_tokens::Migration),
            Box::new(m20261127_000003_create_sessions::Migration),
            Box::new(m20261127_000004_create_outbox::Migration),
            Box::new(m20261127_000005_create_mailer_deliveries::Migration),
            Box::new(m20261127_000006_account_security::Migration),
            Box::new(m20261202_000007_concurrent_account_state::Migration),
            Box::new(m20261202_000010_outbox_owner_and_pruning_indexes::Migration),
            Box::new(m20261202_000011_single_use_tokens::Migration),
            Box::new(m20261202_000012_users_legacy_id::Migration),
            Box::new(m20261202_000013_session_client_context::Migration),
            Box::new(m20261202_000014_email_change::Migration),
            Box::new(m20261202_000015_two_factor_login::Migration),
            Box::new(m20261202_000021_user_event_order::Migration),
            Box::new(m20261202_000020_known_devices::Migration),
            Box::new(m20261203_000022_shared_rate_limits::Migration),
            Box::new(m20261203_000023_hash_columns_varchar::Migration),
        ]
    }
}
