//! SeaORM adapters: one connection setup, repositories behind the domain ports,
//! and the outbox store. Works on SQLite and PostgreSQL alike.

mod account_repository;
mod connection;
mod delivery_log;
mod django_source;
mod entities;
mod errors;
mod imported_users;
mod known_devices;
mod login_throttles;
mod mfa_repository;
mod migrate;
mod outbox_store;
mod pruner;
mod registration_notices;
mod session_repository;
mod single_use_tokens;
mod user_lock;
mod user_repository;
mod write_batch;

pub use connection::{DatabaseSettings, begin_write, connect, connect_readers, is_postgres};
pub use delivery_log::SeaOrmDeliveryLog;
pub use django_source::SqlDjangoSource;
pub use errors::classify;
pub use imported_users::SeaOrmImportedUsers;
pub use login_throttles::SeaOrmLoginThrottles;
pub use mfa_repository::has_totp_secrets;
pub use migrate::migrate;
pub use outbox_store::{ClaimedBatch, SeaOrmOutboxStore};
pub use pruner::SeaOrmPruner;
pub use session_repository::SeaOrmSessionRepository;
pub use user_repository::SeaOrmUserRepository;
