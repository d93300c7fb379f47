//! Schema migrations at start-up, safe when the server and the mailer start
//! together against one database.

use std::time::Duration;

use anyhow::Context;
use migration::MigratorTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::is_postgres;

/// An arbitrary constant naming our migration lock among PostgreSQL advisory locks.
const MIGRATION_LOCK_ID: i64 = 0x01DE_7177;

/// Applies pending migrations, all in one transaction. The server and the mailer
/// may start together against one database: on PostgreSQL an advisory lock lets
/// one of them migrate while the other waits; on SQLite the loser of the race gets
/// "database is locked", retries, and finds the work done.
///
/// # Errors
/// A migration failed, repeatedly.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 10;
    let mut attempt = 1;
    loop {
        match migrate_once(db).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < ATTEMPTS => {
                tracing::warn!(attempt, error = %error, "migrations failed; retrying (another process may be migrating)");
                tokio::time::sleep(Duration::from_millis(300)).await;
                attempt += 1;
            }
            Err(error) => return Err(error).context("applying database migrations"),
        }
    }
}

async fn migrate_once(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    let txn = super::begin_write(db).await?;
    if is_postgres(&txn) {
        txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")).await?;
    }
    migration::Migrator::up(&txn, None).await?;
    txn.commit().await
}
