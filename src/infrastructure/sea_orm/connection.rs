use std::time::Duration;

use anyhow::Context;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqliteTransactionMode,
    TransactionOptions, TransactionTrait,
};
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
/// Reads outside a transaction may go to [`connect_readers`]' pool instead.
/// Another process on the same file (the mailer) is the one other writer: write
/// transactions start with [`begin_write`] for it.
///
/// # Errors
/// The URL is invalid or the database cannot be reached.
pub async fn connect(settings: &DatabaseSettings) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    let mut options = base_options(settings);
    if url.starts_with("sqlite:") {
        options
            .max_connections(1)
            .test_before_acquire(false)
            .map_sqlx_sqlite_opts(|opts| sqlite_wal(opts).foreign_keys(true));
    } else {
        options.max_connections(settings.max_connections).test_before_acquire_if_idle_for(PING_IF_IDLE_FOR);
    }
    open(options, "cannot connect to the database (IDENTITY_DATABASE_URL)").await
}

/// sqlx pings a connection on every return to its pool, and by default again
/// on every checkout: one more round trip (on SQLite, one more hand-off to the
/// connection's worker thread) per statement run outside a transaction. A
/// PostgreSQL connection is pinged at checkout only once it has sat idle this
/// long, when a restart, a proxy or a firewall may have dropped it since its
/// last ping; a busy pool's connections were pinged moments ago. An SQLite
/// connection is a file handle with no peer to hang up: never at checkout.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// What every pool shares: the URL, the timeouts, one connection kept open.
fn base_options(settings: &DatabaseSettings) -> ConnectOptions {
    let mut options = ConnectOptions::new(settings.url.expose_secret());
    options
        .acquire_timeout(settings.acquire_timeout)
        .connect_timeout(settings.acquire_timeout)
        .sqlx_logging(false)
        .min_connections(1);
    options
}

fn sqlite_wal(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.journal_mode(SqliteJournalMode::Wal).busy_timeout(Duration::from_secs(5))
}

async fn open(options: ConnectOptions, failure: &'static str) -> anyhow::Result<DatabaseConnection> {
    let mut db = Database::connect(options).await.context(failure)?;
    // Every statement counts toward the RPC that runs it (its log line says how many).
    db.set_metric_callback(|_| crate::observability::statements::count_one());
    Ok(db)
}

/// Opens the connections that only read, beside [`connect`]'s: on an SQLite
/// file, a pool of up to `max_connections` query-only connections in WAL mode,
/// so that a read (a token check whose cache entry expired, a login's lookup)
/// never queues behind the one writer's statements and its commit's `fsync`.
/// A WAL reader sees every transaction that committed before its statement
/// began, so a read sent after a write returns sees that write, as on the
/// PostgreSQL pool. On PostgreSQL, and on an in-memory SQLite database (which
/// another connection could not see), it is `writer` itself.
///
/// # Errors
/// The database cannot be opened.
pub async fn connect_readers(
    settings: &DatabaseSettings,
    writer: &DatabaseConnection,
) -> anyhow::Result<DatabaseConnection> {
    let url = settings.url.expose_secret();
    if !url.starts_with("sqlite:") || is_in_memory(url) {
        return Ok(writer.clone());
    }
    let mut options = base_options(settings);
    // `query_only` refuses any write: a write sent here by mistake fails
    // loudly instead of racing the writer for the lock.
    options
        .max_connections(settings.max_connections.max(1))
        .test_before_acquire(false)
        .map_sqlx_sqlite_opts(|opts| sqlite_wal(opts).pragma("query_only", "ON"));
    open(options, "cannot open the SQLite readers (IDENTITY_DATABASE_URL)").await
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// Starts a transaction that may write. On SQLite it takes the write lock at
/// `BEGIN IMMEDIATE`: a deferred transaction that read first and then writes
/// after another connection committed (the mailer's, on the file they share by
/// default) fails at once with SQLITE_BUSY_SNAPSHOT, which no busy timeout
/// waits out; an immediate one waits for the lock (the busy timeout) and then
/// reads what is current. PostgreSQL ignores the mode.
///
/// # Errors
/// The database cannot start the transaction.
pub async fn begin_write<C: TransactionTrait>(db: &C) -> Result<C::Transaction, DbErr> {
    let options =
        TransactionOptions { sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate), ..Default::default() };
    db.begin_with_options(options).await
}
