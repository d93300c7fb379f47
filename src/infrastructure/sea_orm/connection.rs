use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend};
use secrecy::{ExposeSecret, SecretString};

/// How to reach the database, and whether to migrate it at start-up.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// May carry a password, so it is a secret (and `Debug` shows it redacted).
    pub url: SecretString,
    pub max_connections: u32,
    /// How long a request waits for a connection before it answers UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// Whether a binary applies pending migrations ([`super::migrate`]) when it
    /// starts; `connect` itself ignores it.
    pub auto_migrate: bool,
}

/// Opens the connection pool.
///
/// SQLite gets one connection in WAL mode: SQLite allows one writer at a time
/// anyway, and a single connection avoids the "database is locked" errors that
/// deferred transactions hit when several connections upgrade to writers.
///
/// # Errors
/// The URL is invalid or the database cannot be reached.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    let mut options = ConnectOptions::new(url);
    options.acquire_timeout(settings.acquire_timeout).connect_timeout(settings.acquire_timeout).sqlx_logging(false);
    if url.starts_with("sqlite:") {
        options.max_connections(1).min_connections(1).map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5))
                .foreign_keys(true)
        });
    } else {
        options.max_connections(settings.max_connections).min_connections(1);
    }
    let mut db = Database::connect(options).await.context("cannot connect to the database (IDENTITY_DATABASE_URL)")?;
    // Every statement counts toward the RPC that runs it (its log line says how many).
    db.set_metric_callback(|_| crate::observability::statements::count_one());
    Ok(db)
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}
